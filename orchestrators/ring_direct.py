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

Bounded history (issue 11): the ring's members stay in the ledger, not in this instance's
history. ``plan_ring_waves`` resolves them, plans the waves (the domain's ``plan_waves``) and
writes them to the ledger in slices of at most :data:`WAVE_SLICE` VMs, answering counts only
(``{count, waves: [sizes], sliceSize, byOs, hash}``); each wave instance gets a reference to its
slice (``members: {planHash, slice, count}``, issue 11 item 2) and reads it itself
(``read_wave_members``), so no VM passes through this instance's history. Waves hand back packed
verdicts (plain passes counted here from their indexes) and a bounded summary: their share of the
health sample and, when this ring builds the manifest, the install entries it needs (one passing
entry per OS / image / patch list) and their share of its first sources. A slice a wave could not
read (``unread``) is a gate note (inconclusive, never passed) and ``counts.unread``. Every
:data:`WAVES_PER_EXECUTION` waves or :data:`VMS_PER_EXECUTION` VMs the
instance continues as new with its state in ``carry``: the plan's counts, verdicts that are not
plain passes (passes counted), the health sample so far (at most :data:`HEALTH_SAMPLE` VMs),
Ring 0's manifest inputs (non-passing VMs' entries, one passing entry per distinct OS / image /
patch list), the first :data:`MAX_SOURCES` sources, learned durations, skipped, halted, next
wave -- never the VM list, so both its events and its replayed bytes stay bounded however large
the ring is. The manifest names its first sources and counts them (``sourceCount``); a gate past
its budget names the first :data:`MAX_SKIPPED` VMs not started and counts the rest. A caller (a
test) may still hand the ring its VMs (``vms``): then nothing is planned in the ledger.

Input :class:`~patchrings.boundary.rings.RingDirectInput` ``{rolloutId, ringSpec (or, during
the transition, plan), ring, runId, startedAt, manifest?, buildManifest?, vms?,
expectedInstallSeconds?, wavesPerExecution?, pollSeconds?, carry?}``; output
:class:`~patchrings.boundary.rings.RingDirectOutput`, a small summary ``{gate, manifest,
healthSample, counts, skipped, budget, halted, installSeconds}``: per-VM results and verdicts stay
in the waves' histories and the ledger, so the rollout's history does not grow with the ring's
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
    ring_of,
    unpack_verdicts,
    verdict_ok,
    verdict_passed,
)
from orchestrators.wave import INSTALLED_IN_ROW, _compact, result_shape  # noqa: F401  (the ledger row: the wave)
from patchrings.boundary.activities import LedgerReadGateInput, PlanRingWavesInput, ReadWaveMembersInput
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import RingDirectCarry, RingDirectInput, RingDirectOutput, WaveInput, WaveMembers
from patchrings.domain.gates import MAX_LEFT_NAMED
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
#: ... and at most this many VMs' waves per execution (issue 11, bounded replayed bytes): each VM
#: costs the ring its VmRef twice (read from the ledger, handed to its wave) and, in Ring 0, its
#: lean install entry; 500 VMs keep one execution's history near half a megabyte.
VMS_PER_EXECUTION = 500
#: Most VMs a gate names as not started (the rest are counted in one ring-level reason).
MAX_SKIPPED = 100
#: Most manifest sources named (the first by id; ``sourceCount`` says how many there are).
MAX_SOURCES = 100


@bp.orchestration_trigger(context_name="context", orchestration=names.RING_DIRECT)  # type: ignore[untyped-decorator]
def ring_direct_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = from_payload(RingDirectInput, context.get_input() or {})
    ring_name = spec.ring
    # The ring's resolved document: what this ring and its waves read (issue 10: not the plan).
    ring_spec = dict(spec.ring_spec)
    ring = ring_of(ring_spec)
    run_id = str(spec.run_id or context.instance_id)

    carry = spec.carry  # state of the earlier executions (continue-as-new)
    # The ring's VMs are held here only when the caller gave them (``vms``) or an older execution
    # carried them; otherwise they stay in the ledger (issue 11): ``plan_ring_waves`` resolves the
    # members, plans the waves and answers counts, each wave's slices are read back when it starts.
    vms: list[dict[str, Any]] | None = carry.vms if carry is not None and carry.vms is not None else spec.vms
    plan: dict[str, Any] = dict(carry.plan) if carry is not None and carry.plan else {}
    if vms is None and not plan:
        planned = yield context.call_activity_with_retry(names.PLAN_RING_WAVES, retries.WRITE, to_payload(
            PlanRingWavesInput(ring=ring_name, run_id=run_id, ring_spec=ring_spec, slice_size=WAVE_SLICE,
                               rollout_id=spec.rollout_id)))
        plan = dict(planned or {})
    keep_results = bool(spec.build_manifest)  # only Ring 0's manifest reads per-VM install results
    per_execution = max(1, int(spec.waves_per_execution or WAVES_PER_EXECUTION))

    rate = ring.rate
    if vms is not None:
        by_id = {vm["id"]: vm for vm in vms}
        planned_ids = rate.waves(vms)  # equal waves of maxConcurrency, or geometric (1, 2, 4, ...)
        wave_ids: list[list[str]] | None = planned_ids
        sizes = [len(w) for w in planned_ids]
        total, slice_size = len(vms), WAVE_SLICE
    else:
        by_id, wave_ids = {}, None
        sizes = [int(n) for n in plan.get("waves") or []]
        total, slice_size = int(plan.get("count") or 0), max(1, int(plan.get("sliceSize") or WAVE_SLICE))
    budget = ErrorBudget.for_ring(rate, total)
    base_install = ring.install
    parameters = install_parameters(base_install, spec.started_at, spec.manifest)
    max_duration = duration_or(base_install.get("maximumDuration"), timedelta(hours=2))
    poll_seconds = int(spec.poll_seconds or 120)

    run_started_at = str((carry.run_started_at if carry else None) or iso(context.current_utc_datetime))
    # Verdicts: every one that is not a plain pass kept whole (in wave order), plain passes counted.
    others: list[dict[str, Any]] = []
    passed: dict[str, int] = {}
    if carry is not None and carry.verdicts:
        if "counts" in carry.verdicts:
            others = list(carry.verdicts.get("verdicts") or [])
            passed = {str(k): int(v) for k, v in (carry.verdicts.get("counts") or {}).items()}
        elif vms is not None:  # an older execution's carry: packed as indexes into the ring's VMs
            others, passed = _split(unpack_verdicts(vms, carry.verdicts))
    for verdict in others:
        budget.record(str(verdict.get("vm")), verdict_ok(verdict))
    results: list[dict[str, Any]] = list(carry.results if carry else [])
    shapes = {_shape(r) for r in results if r.get("verdict") is not None and verdict_passed(r["verdict"])}
    sample: list[dict[str, Any]] = list(carry.sample if carry else [])
    sources: list[str] = list(carry.sources if carry else [])
    source_count = int(carry.source_count if carry else 0)
    skipped: list[str] = list(carry.skipped if carry else [])
    skipped_count = int(carry.skipped_count if carry else 0) or len(skipped)
    halted = bool(carry.halted) if carry else False
    # slices whose members the wave could not read (issue 11, item 2): never installed, gate notes
    unread: list[dict[str, Any]] = list((carry.unread if carry else None) or [])
    unread_count = int((carry.unread_count if carry else None) or 0)
    left_count = int((carry.left_ring_count if carry else None) or 0)  # members that left the ring (issue 11)
    left_names: list[str] = list((carry.left_ring if carry else None) or [])
    first_wave = int(carry.next or 0) if carry else 0
    # Expected install durations per OS (seconds), learned from each wave's longest install and
    # handed to the next wave so it polls once, when its installs should be done (issue 11).
    learned: dict[str, Any] = (carry.learned if carry else None) or _initial_expected(spec.expected_install_seconds)

    def finished() -> int:
        return len(others) + sum(passed.values())

    def progress(index: int, step: str) -> None:
        # What the API shows while the ring runs (read by this instance's deterministic id):
        # small and fixed-size whatever the ring's size.
        context.set_custom_status({
            "ring": ring_name, "step": step, "wave": index + 1, "waves": len(sizes), "vms": total,
            "finished": finished(), "skipped": skipped_count,
            "inFlight": sizes[index] if step == "installing" and index < len(sizes) else 0,
            "waveInstance": f"{context.instance_id}:w{index}" if step == "installing" else None,
            "counts": _counts(others, passed),
        })

    def parts_of(index: int) -> list[tuple[int, list[dict[str, Any]] | None, int]]:
        """Wave ``index``'s slices of at most ``slice_size`` VMs: ``(slice, VmRefs, count)``, the
        VmRefs only when this ring holds them (``vms``); else they stay in the ledger (issue 11)."""
        if wave_ids is not None:
            wave_vms = [by_id[vm_id] for vm_id in wave_ids[index]]
            return [(k, wave_vms[first:first + slice_size], len(wave_vms[first:first + slice_size]))
                    for k, first in enumerate(range(0, len(wave_vms), slice_size))]
        return [(k, None, min(slice_size, sizes[index] - first))
                for k, first in enumerate(range(0, sizes[index], slice_size))]

    def skip(index: int) -> Any:
        """Wave ``index`` is not started: counted, and its VMs named while fewer than MAX_SKIPPED
        are (only the slices needed for that are read)."""
        nonlocal skipped_count
        skipped_count += sizes[index]
        for part, held, _ in parts_of(index):
            if len(skipped) >= MAX_SKIPPED:
                break
            members = held
            if members is None:
                try:
                    answer = yield context.call_activity_with_retry(
                        names.READ_WAVE_MEMBERS, retries.READ, to_payload(ReadWaveMembersInput(
                            run_id=run_id, plan_hash=str(plan.get("hash") or ""), wave=index, slice=part,
                            rollout_id=spec.rollout_id, ring=ring_name)))
                except Exception:  # unnamed: still counted (the gate's note says how many)
                    break
                members = list((answer or {}).get("vms") or [])
            skipped.extend(vm["id"] for vm in members[:MAX_SKIPPED - len(skipped)])

    progress(first_wave, "resolving" if not sizes else "installing")
    ran = 0  # VMs this execution started waves for
    for index in range(len(sizes)):
        if index < first_wave:
            continue  # run by an earlier execution of this instance
        if ((index >= first_wave + per_execution or ran >= VMS_PER_EXECUTION)
                and budget.may_start_more() and not halted):
            # Bounded history (issue 11): a fresh execution every `per_execution` waves or
            # VMS_PER_EXECUTION VMs, carrying counts, indexes and bounded lists (never the VMs).
            context.continue_as_new(to_payload(dataclasses.replace(spec, carry=RingDirectCarry(
                run_started_at=run_started_at, next=index, learned=learned,
                verdicts={"packed": True, "verdicts": others, "counts": passed},
                results=results if keep_results else [], skipped=skipped, skipped_count=skipped_count,
                halted=halted, plan=plan or None, sample=sample, sources=sources, source_count=source_count,
                vms=carry.vms if carry is not None else None, unread=unread or None,
                unread_count=unread_count or None, left_ring_count=left_count or None,
                left_ring=left_names or None))))
            return None
        if not budget.may_start_more() or halted:
            yield from skip(index)
            continue
        if index > 0 and (yield from _halt_requested(context, spec)):
            # A halt stops new waves; in-flight installs of earlier waves have finished.
            halted = True
            yield from skip(index)
            continue
        progress(index, "installing")
        slices = parts_of(index)
        ran += sizes[index]
        deadline = context.current_utc_datetime + max_duration + INSTALL_GRACE
        # A wave larger than WAVE_SLICE runs as several wave instances side by side (same start,
        # same deadline): each instance's history grows with its VMs (start + polls per VM).
        outcomes = yield context.task_all([
            context.call_sub_orchestrator(
                names.WAVE,
                to_payload(WaveInput(
                    rollout_id=spec.rollout_id,
                    ring_spec=ring_spec,
                    ring=ring_name,
                    run_id=spec.run_id,
                    wave=index,
                    # Issue 11, item 2: the slice by reference (the wave reads it from the
                    # ledger); its VMs only when this ring was given them
                    vms=members,
                    members=WaveMembers(plan_hash=str(plan.get("hash") or ""), slice=k, count=count)
                    if members is None else None,
                    parameters=parameters,
                    poll_seconds=poll_seconds,
                    run_started_at=run_started_at,
                    deadline=iso(deadline),
                    expected_install_seconds=dict(learned) or None,
                    keep_results=keep_results,
                    slices=len(slices),
                    # bounded answers: the whole wave hands back at most about HEALTH_SAMPLE VMs
                    # for the sample and MAX_SOURCES source ids (exact for a wave of one slice)
                    sample_size=-(-HEALTH_SAMPLE // len(slices)),
                    sources_wanted=-(-MAX_SOURCES // len(slices)) if keep_results else None,
                )),
                f"{context.instance_id}:w{index}" + (f".{k}" if k else ""),
            )
            for k, members, count in slices
        ])
        wave_results: list[dict[str, Any]] = []
        wave_sample: list[dict[str, Any]] = []
        wave_sources: list[str] = []
        wave_others: list[dict[str, Any]] = []
        seen: dict[str, float] = {}
        for (k, _, count), outcome in zip(slices, outcomes or [], strict=False):
            doc: dict[str, Any] = outcome if isinstance(outcome, dict) else {}
            # A packed answer's passes are counted from their indexes: no VM id needed here.
            part_others, part_passed = _split(list(doc.get("verdicts") or []))
            if not doc.get("unread"):
                # Members that left the ring before their install get no verdict (issue 11): the
                # slice's count minus its verdicts, unless the wave counts and names them itself.
                judged = len(part_others) + sum(part_passed.values()) + sum(
                    len(v or []) for v in (doc.get("passed") or {}).values())
                gone = doc.get("leftRingCount")
                left_count += int(gone) if gone is not None else max(0, int(doc.get("count") or count) - judged)
                left_names.extend(str(n) for n in (doc.get("leftRing") or [])[:MAX_LEFT_NAMED - len(left_names)])
            wave_others.extend(part_others)
            for key, count_passed in part_passed.items():
                passed[key] = passed.get(key, 0) + count_passed
            for key, indexes in (doc.get("passed") or {}).items():
                passed[str(key)] = passed.get(str(key), 0) + len(indexes or [])
            wave_results.extend(doc.get("results") or [])
            wave_sample.extend(doc.get("sample") or [])
            wave_sources.extend(str(v) for v in doc.get("sources") or [])
            source_count += int(doc.get("sourceCount") or 0)
            if doc.get("unread"):
                unread_count += int(doc["unread"].get("count") or count)
                if len(unread) < MAX_SKIPPED:
                    error = doc["unread"].get("error") or {}
                    unread.append({"vm": "", "reason": (
                        f"wave {index + 1} slice {k}: {int(doc['unread'].get('count') or count)} VM(s) not installed: "
                        f"the wave could not read its members from the ledger ({error.get('message') or error})")})
            for os_key, seconds in (doc.get("installSeconds") or {}).items():
                if isinstance(seconds, (int, float)) and seconds > 0:
                    seen[str(os_key).lower()] = max(seen.get(str(os_key).lower(), 0.0), float(seconds))
        learned.update(seen)
        others.extend(wave_others)
        for verdict in wave_others:  # plain passes never touch the budget
            budget.record(str(verdict.get("vm")), verdict_ok(verdict))
        # The health sample so far: spread_order's first HEALTH_SAMPLE of the passing VMs. A VM's
        # place in that order only moves back as VMs are added, so keeping the first ones of each
        # slice's (the wave's ``sample``) is the sample of all of them (exact for one-slice waves;
        # a wave of n slices hands back HEALTH_SAMPLE / n of each) and the carry stays bounded.
        sample = health_sample(sample + wave_sample)
        if keep_results:
            sources = sorted(set(sources) | set(wave_sources), key=str.lower)[:MAX_SOURCES]
            _keep(results, shapes, wave_results)
        # The wave wrote its per-VM rows to the ledger itself (issue 11: they are not replayed here twice).
        if not context.is_replaying:
            log.info(
                "ring %s wave %d/%d done: %d errors of %d allowed",
                ring_name,
                index + 1,
                len(sizes),
                budget.errors,
                budget.max_errors,
            )

    # Decide here and hand the rollout a small summary: its history stays small however large
    # the ring is (per-VM results and verdicts are in the waves' histories and the ledger).
    verdicts = others + _passes(passed)
    unnamed = skipped_count - len(skipped)
    notes = [{"vm": "", "reason": f"{unnamed} more VM(s) not started: the ring's error budget (maxErrors) "
                                  "was exceeded or the rollout was halted"}] if unnamed > 0 else []
    if len(unread) >= MAX_SKIPPED:  # slices past the first MAX_SKIPPED are counted only
        notes.append({"vm": "", "reason": f"{unread_count} VM(s) in all not installed: their wave slices could "
                                          "not be read from the ledger"})
    gate = gate_for(ring_spec, ring_name, verdicts, skipped=skipped, notes=unread + notes or None,
                    left_ring=left_count, left_names=left_names, planned=total)
    manifest = None
    if spec.build_manifest:
        manifest = build_manifest_dict(results, [r["verdict"] for r in results if r.get("verdict") is not None])
        # titles and classifications of what it pins, for the people who approve it (issue 9)
        manifest["details"] = manifest_details(results, manifest)
        # its sources: the first MAX_SOURCES by id and how many there are (issue 11: the rollout
        # replays this manifest several times; the ledger's VM rows name every one)
        manifest["sources"] = list(sources)
        manifest["sourceCount"] = source_count
    progress(max(len(sizes) - 1, 0), "done")
    return to_payload(RingDirectOutput(
        gate=gate,
        manifest=manifest,
        health_sample=sample,
        counts={**_counts(others, passed), "skipped": skipped_count, "waves": len(sizes),
                **({"unread": unread_count} if unread_count else {}),
                **({"leftRing": left_count} if left_count else {})},
        skipped=skipped_count,
        budget={"maxErrors": budget.max_errors, "errors": budget.errors, "exceeded": budget.exceeded},
        halted=halted,
        install_seconds=learned,  # per OS, for a later direct ring's expectedInstallSeconds
    ))


def _split(verdicts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Verdicts as (every one that is not a plain pass, whole; plain passes counted by
    ``install|health``): what the gate, the counts and the budget read of them."""
    others: list[dict[str, Any]] = []
    passed: dict[str, int] = {}
    for verdict in verdicts:
        if verdict.get("outcome") == "pass" and not verdict.get("reasons"):
            key = f"{verdict.get('install')}|{verdict.get('health')}"
            passed[key] = passed.get(key, 0) + 1
        else:
            others.append(verdict)
    return others, passed


def _passes(passed: dict[str, int]) -> list[dict[str, Any]]:
    """Stand-ins for the counted plain passes (the gate counts them; it lists only the others)."""
    out: list[dict[str, Any]] = []
    for key, count in sorted(passed.items()):
        install, _, health = key.partition("|")
        out.extend({"vm": f"passed:{key}:{i}", "install": install, "health": health, "outcome": "pass",
                    "reasons": []} for i in range(count))
    return out


def _counts(others: list[dict[str, Any]], passed: dict[str, int]) -> dict[str, int]:
    """``count_verdicts`` of the others plus the counted passes."""
    counts = count_verdicts(others)
    counts["vms"] = counts.get("vms", 0) + sum(passed.values())
    for key, count in passed.items():
        install, _, health = key.partition("|")
        for facet, value in (("install", install), ("health", health)):
            if value and value != "None":
                counts[f"{facet}:{value}"] = counts.get(f"{facet}:{value}", 0) + count
    return counts


def _shape(entry: dict[str, Any]) -> str:
    """What a passing VM's install entry tells the manifest: its OS, image and patch list."""
    return result_shape(entry)


def _keep(results: list[dict[str, Any]], shapes: set[str], wave_results: list[dict[str, Any]]) -> None:
    """Keep what Ring 0's manifest needs of a wave's install entries (issue 11, bounded carry):
    every entry of a VM that did not pass, whole; of the passing ones, the first of each distinct
    OS / image / patch list (the manifest's patches, exclusions, coverage and details are the
    same). Each entry carries its verdict (the wave's ``summarise`` kept the same per slice)."""
    for entry in wave_results:
        verdict = entry.get("verdict")
        if isinstance(verdict, dict) and verdict_passed(verdict):
            shape = _shape(entry)
            if shape in shapes:
                continue
            shapes.add(shape)
        results.append(dict(entry))


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
