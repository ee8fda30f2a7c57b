"""A direct ring: the orchestration itself installs patches, wave by wave, under a failure budget.

Why: Ring 0 (and any ring the plan marks ``direct``) is patched through the on-demand
installPatches API, which is the only one that takes ``maxPatchPublishDate``; that pins Windows to
what existed when the rollout started. Later direct rings install exactly the validated manifest.
Waves follow the domain's ``plan_waves`` (maxConcurrency, spread across zones / availability
sets); each wave is a sub-orchestration so history stays bounded for 5,000-VM rings; no new wave
starts once the domain's ``ErrorBudget`` says maxErrors is exceeded (in-flight installs finish).

Install polling (issue 11): each wave answers the longest install it saw done per OS
(``installSeconds``); the next wave gets these as ``expectedInstallSeconds`` and polls each
install first then, so after the first wave an install costs one status check.

Bounded history (issue 11): waves hand back packed verdicts (passing VMs as indexes into the
wave's VMs, see ``verdicts.pack_verdicts``) and per-VM install results only when this ring builds
the manifest; every :data:`WAVES_PER_EXECUTION` waves the instance continues as new with its
state in ``carry`` (its VMs, packed verdicts, learned durations, skipped, halted, next wave), so
its history stays a bounded number of events however many waves the ring has.

Input :class:`~patchrings.boundary.rings.RingDirectInput` ``{rolloutId, ringSpec (or, during
the transition, plan), ring, runId, startedAt, manifest?, buildManifest?, vms?,
expectedInstallSeconds?, wavesPerExecution?, carry?}``; output
:class:`~patchrings.boundary.rings.RingDirectOutput`, a small summary ``{gate, manifest,
healthSample, counts, skipped, budget, halted, installSeconds}``: per-VM results and verdicts stay
in this instance's history and the ledger, so the rollout's history does not grow with the ring's
size. Its waves get the ring's document (``ringSpec``), never the plan.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.status import count_verdicts, manifest_details
from orchestrators.verdicts import (
    build_manifest_dict,
    gate_for,
    install_parameters,
    pack_verdicts,
    ring_of,
    unpack_verdicts,
    verdict_ok,
    verdict_passed,
)
from orchestrators.wave import INSTALLED_IN_ROW, _compact  # noqa: F401  (the ledger row; the wave writes it)
from patchrings.boundary.activities import LedgerReadGateInput, ResolveMembersInput
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import RingDirectCarry, RingDirectInput, RingDirectOutput, WaveInput
from patchrings.domain.rate import ErrorBudget, spread_order
from patchrings.domain.timeutil import duration_or, iso

bp = df.Blueprint()
log = logging.getLogger("patchrings.orchestrators.ring_direct")

# Slack on top of maximumDuration before an install that never reports is called timed out.
INSTALL_GRACE = timedelta(minutes=30)
# How many passing VMs the rollout re-checks before authorising the next ring's run.
HEALTH_SAMPLE = 50
#: Waves per execution of this instance before it continues as new (issue 11, bounded history):
#: a wave costs the ring about 12 history events, so 60 waves stay well under 1,000 events; a
#: 10,000-VM ring in waves of 50 runs in 4 executions.
WAVES_PER_EXECUTION = 60
#: At most this many VMs per wave instance (issue 11): a wave of maxConcurrency 500 runs as 5
#: wave instances side by side, each about 6 history events per VM (start, first poll) + a few
#: hundred for its polls and verify, so no wave instance passes 2,000 events.
WAVE_SLICE = 100


@bp.orchestration_trigger(context_name="context", orchestration=names.RING_DIRECT)  # type: ignore[untyped-decorator]
def ring_direct_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = from_payload(RingDirectInput, context.get_input() or {})
    ring_name = spec.ring
    # The ring's resolved document: what this ring and its waves read (issue 10: not the plan).
    ring_spec = dict(spec.ring_spec)
    ring = ring_of(ring_spec)

    carry = spec.carry  # state of the earlier executions (continue-as-new)
    vms: list[dict[str, Any]] | None = carry.vms if carry is not None else spec.vms
    if vms is None:
        resolve = ResolveMembersInput(ring=ring_name, ring_spec=ring_spec)
        members = yield context.call_activity_with_retry(names.RESOLVE_MEMBERS, retries.READ, to_payload(resolve))
        vms = list((members or {}).get("vms") or [])
    by_id = {vm["id"]: vm for vm in vms}
    keep_results = bool(spec.build_manifest)  # only Ring 0's manifest reads per-VM install results
    per_execution = max(1, int(spec.waves_per_execution or WAVES_PER_EXECUTION))

    rate = ring.rate
    waves = rate.waves(vms)  # equal waves of maxConcurrency, or geometric (1, 2, 4, ...) when the plan says so
    budget = ErrorBudget.for_ring(rate, len(vms))
    base_install = ring.install
    parameters = install_parameters(base_install, spec.started_at, spec.manifest)
    max_duration = duration_or(base_install.get("maximumDuration"), timedelta(hours=2))
    poll_seconds = int(spec.poll_seconds or 120)

    run_started_at = str((carry.run_started_at if carry else None) or iso(context.current_utc_datetime))
    results: list[dict[str, Any]] = list(carry.results if carry else [])
    verdicts: list[dict[str, Any]] = unpack_verdicts(vms, carry.verdicts) if carry and carry.verdicts else []
    for verdict in verdicts:
        budget.record(str(verdict.get("vm")), verdict_ok(verdict))
    skipped: list[str] = list(carry.skipped if carry else [])
    halted = bool(carry.halted) if carry else False
    first_wave = int(carry.next or 0) if carry else 0
    # Expected install durations per OS (seconds), learned from each wave's longest install and
    # handed to the next wave so it polls once, when its installs should be done (issue 11).
    learned: dict[str, Any] = (carry.learned if carry else None) or _initial_expected(spec.expected_install_seconds)

    def progress(index: int, step: str) -> None:
        # What the API shows while the ring runs (read by this instance's deterministic id):
        # small and fixed-size whatever the ring's size.
        context.set_custom_status({
            "ring": ring_name, "step": step, "wave": index + 1, "waves": len(waves), "vms": len(vms),
            "finished": len(verdicts), "skipped": len(skipped),
            "inFlight": len(waves[index]) if step == "installing" and index < len(waves) else 0,
            "waveInstance": f"{context.instance_id}:w{index}" if step == "installing" else None,
            "counts": count_verdicts(verdicts),
        })

    progress(first_wave, "resolving" if not waves else "installing")
    for index, wave in enumerate(waves):
        if index < first_wave:
            continue  # run by an earlier execution of this instance
        if index >= first_wave + per_execution and budget.may_start_more() and not halted:
            # Bounded history (issue 11): a fresh execution every `per_execution` waves, carrying
            # the ring's state (its VMs, packed verdicts, learned durations) in its input.
            context.continue_as_new(to_payload(dataclasses.replace(spec, carry=RingDirectCarry(
                vms=vms, run_started_at=run_started_at, next=index, learned=learned,
                verdicts=pack_verdicts(vms, verdicts), results=results if keep_results else [],
                skipped=skipped, halted=halted))))
            return None
        if not budget.may_start_more() or halted:
            skipped.extend(wave)
            continue
        if index > 0 and (yield from _halt_requested(context, spec)):
            # A halt stops new waves; in-flight installs of earlier waves have finished.
            halted = True
            skipped.extend(wave)
            continue
        progress(index, "installing")
        wave_vms = [by_id[vm_id] for vm_id in wave]
        deadline = context.current_utc_datetime + max_duration + INSTALL_GRACE
        # A wave larger than WAVE_SLICE runs as several wave instances side by side (same start,
        # same deadline): each instance's history grows with its VMs (start + polls per VM).
        slices = [wave_vms[first:first + WAVE_SLICE] for first in range(0, len(wave_vms), WAVE_SLICE)]
        outcomes = yield context.task_all([
            context.call_sub_orchestrator(
                names.WAVE,
                to_payload(WaveInput(
                    rollout_id=spec.rollout_id,
                    ring_spec=ring_spec,
                    ring=ring_name,
                    run_id=spec.run_id,
                    wave=index,
                    vms=part,
                    parameters=parameters,
                    poll_seconds=poll_seconds,
                    run_started_at=run_started_at,
                    deadline=iso(deadline),
                    expected_install_seconds=dict(learned) or None,
                    keep_results=keep_results,
                )),
                f"{context.instance_id}:w{index}" + (f".{k}" if k else ""),
            )
            for k, part in enumerate(slices)
        ])
        wave_results: list[dict[str, Any]] = []
        wave_verdicts: list[dict[str, Any]] = []
        seen: dict[str, float] = {}
        for part, outcome in zip(slices, outcomes or [], strict=False):
            wave_results.extend((outcome or {}).get("results") or [])
            wave_verdicts.extend(unpack_verdicts(part, outcome) if isinstance(outcome, dict) and "packed" in outcome
                                 else list((outcome or {}).get("verdicts") or []))
            for os_key, seconds in ((outcome or {}).get("installSeconds") or {}).items():
                if isinstance(seconds, (int, float)) and seconds > 0:
                    seen[str(os_key).lower()] = max(seen.get(str(os_key).lower(), 0.0), float(seconds))
        learned.update(seen)
        if keep_results:
            results.extend(wave_results)
        verdicts.extend(wave_verdicts)
        for verdict in wave_verdicts:
            budget.record(str(verdict.get("vm")), verdict_ok(verdict))
        # The wave wrote its per-VM rows to the ledger itself (issue 11: they are not replayed here twice).
        if not context.is_replaying:
            log.info(
                "ring %s wave %d/%d done: %d errors of %d allowed",
                ring_name,
                index + 1,
                len(waves),
                budget.errors,
                budget.max_errors,
            )

    # Decide here and hand the rollout a small summary: its history stays small however large
    # the ring is (per-VM results and verdicts are in this instance's history and the ledger).
    gate = gate_for(ring_spec, ring_name, verdicts, skipped=skipped)
    manifest = build_manifest_dict(results, verdicts) if spec.build_manifest else None
    if manifest is not None:
        # titles and classifications of what it pins, for the people who approve it (issue 9)
        manifest["details"] = manifest_details(results, manifest)
    progress(max(len(waves) - 1, 0), "done")
    passed = [by_id[str(v["vm"])] for v in verdicts if verdict_passed(v) and str(v["vm"]) in by_id]
    return to_payload(RingDirectOutput(
        gate=gate,
        manifest=manifest,
        health_sample=health_sample(passed),
        counts={**count_verdicts(verdicts), "skipped": len(skipped), "waves": len(waves)},
        skipped=len(skipped),
        budget={"maxErrors": budget.max_errors, "errors": budget.errors, "exceeded": budget.exceeded},
        halted=halted,
        install_seconds=learned,  # per OS, for a later direct ring's expectedInstallSeconds
    ))


def _initial_expected(raw: Any) -> dict[str, Any]:
    """The caller's expected install durations (``{os: seconds}`` or one number for every OS)."""
    if isinstance(raw, dict):
        return {str(k).lower(): v for k, v in raw.items() if isinstance(v, (int, float)) and v > 0}
    if isinstance(raw, (int, float)) and raw > 0:
        return {"windows": raw, "linux": raw}
    return {}


def health_sample(vms: list[dict[str, Any]], size: int = HEALTH_SAMPLE) -> list[dict[str, Any]]:
    """Up to ``size`` VMs spread across zones / availability sets (deterministic), used to check
    that a ring is *still* healthy when the next ring's run is about to start."""
    by_id = {vm["id"]: vm for vm in vms}
    return [by_id[vm_id] for vm_id in spread_order(vms)[:size]]


def _halt_requested(context: df.DurableOrchestrationContext, spec: RingDirectInput) -> Any:
    """Has the HTTP API flagged a halt for this rollout in the ledger? (read via an activity)."""
    read = LedgerReadGateInput(rollout_id=spec.rollout_id, ring=spec.ring)
    gate = yield context.call_activity_with_retry(names.LEDGER_READ_GATE, retries.READ, to_payload(read))
    return bool(((gate or {}).get("rollout") or {}).get("haltRequested"))
