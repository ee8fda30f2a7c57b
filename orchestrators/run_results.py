"""Results of one scheduled maintenance run: collect per-VM outcomes, verify health, decide.

Why a sub-orchestration: a scheduled ring can be thousands of VMs; their per-VM results and
verdicts belong in this instance's history and in the ledger, not in the long-lived rollout's
history (which every later episode replays). The rollout gets back a small summary.

Retries (issue 13 item 2): membership and results are reads (``retries.READ``), the ledger write
is an idempotent upsert (``retries.WRITE``). A call that still fails does not fail the
orchestration: the gate turns *inconclusive* with the reason (unreadable members, unreadable
results, results not recorded), so a person decides and nothing passes on missing evidence.

Where the results come from (issue 12): Azure Resource Graph (``collect_run_results_arg``: the
run's ``patchinstallationresources`` summary rows with their per-patch rows and reboot state, one
query per 1,000 rows, not one read per VM). Resource Graph lags behind the run's end, so machines
without a finished row are re-queried after durable timers (:data:`ARG_REQUERY_DELAYS`, about
half an hour in all). Machines still without one -- or all of them when Resource Graph cannot be
read -- fall back to ``collect_run_results`` (instance views). That fallback's gap is stated in
the gate: an instance view carries neither the patch list nor the reboot state, so those machines
are *inconclusive*, never passed (``patchrings.domain.results``); a machine with no result at all
is inconclusive too.

Bounded history (issue 11): health is verified in sub-orchestrations of at most
:data:`VERIFY_CHUNK` VMs running side by side (staggered so their full reads do not burst
together), so no verify instance grows with the ring's size; lookups by VM id are dictionaries,
not scans per VM (a replayed orchestrator repeats them on every episode).

Input :class:`~patchrings.boundary.rings.RunResultsInput` ``{rolloutId, ringSpec (or, during the
transition, plan), ring, correlationId, since}``; output
:class:`~patchrings.boundary.rings.RunResultsOutput` ``{gate, healthSample, counts}``. Its verify
chunks get the ring's document (``ringSpec``), never the plan.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.ring_direct import health_sample
from orchestrators.status import count_verdicts
from orchestrators.verdicts import gate_for, unpack_verdicts, verdict_passed
from orchestrators.verify import BURST_PAUSE, READ_BURST
from orchestrators.wave import _lean
from patchrings.boundary.activities import (
    CollectRunResultsArgInput,
    CollectRunResultsInput,
    ResolveMembersInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import RunResultsInput, RunResultsOutput, VerifyInput, VerifyLedger

bp = df.Blueprint()

#: Waits before re-querying Resource Graph for machines whose rows of the run are not there yet
#: (ARG's propagation delay is undocumented, arc-and-resource-graph.md §5.8: never gate on the
#: first empty answer). 2 + 5 + 10 + 15 = 32 minutes after the first query, then the fallback.
ARG_REQUERY_DELAYS = (timedelta(minutes=2), timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=15))


#: At most this many VMs per verify sub-orchestration (issue 11, bounded history): a verify
#: instance's history grows with its read chunks per round (verify.READ_BURST), so 500 VMs keep
#: it to a few hundred events whatever the ring's size; the chunks run side by side.
VERIFY_CHUNK = 500


def install_entry(vms: list[dict[str, Any]] | dict[str, dict[str, Any]], entry: dict[str, Any]) -> dict[str, Any]:
    """A ``collect_run_results`` entry in the wave's ``VmInstall`` shape (name/os filled in);
    ``vms`` may be given as ``{lower-case id: VmRef}`` (one lookup, not a scan per entry)."""
    vm_id = str(entry.get("vm") or "")
    if isinstance(vms, dict):
        vm = vms.get(vm_id.lower(), {"id": vm_id})
    else:
        vm = next((v for v in vms if v["id"].lower() == vm_id.lower()), {"id": vm_id})
    error = entry.get("error")
    if not error and not entry.get("result"):
        error = {"code": "NoResult", "message": "no result for this VM in the run"}
    return _lean({
        "vm": vm["id"],
        "name": entry.get("name") or vm.get("name"),
        "os": entry.get("os") or vm.get("os"),
        "state": entry.get("state") or "missing",
        "result": entry.get("result"),
        "error": error,
    })


@bp.orchestration_trigger(context_name="context", orchestration=names.RUN_RESULTS)  # type: ignore[untyped-decorator]
def run_results_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = from_payload(RunResultsInput, context.get_input() or {})
    ring = spec.ring
    # The ring's document (issue 10: not the plan): its gate settings, and what its verify chunks read.
    ring_spec = dict(spec.ring_spec)
    notes: list[dict[str, str]] = []
    try:
        members = yield context.call_activity_with_retry(names.RESOLVE_MEMBERS, retries.READ,
                                                         to_payload(ResolveMembersInput(
                                                             ring=ring, ring_spec=ring_spec)))
    except Exception as exc:
        reason = f"the ring's members could not be resolved: {str(exc)[:300]}"
        return to_payload(RunResultsOutput(gate=gate_for(ring_spec, ring, [], notes=[{"vm": "", "reason": reason}]),
                                           health_sample=[], counts=count_verdicts([])))
    vms = list((members or {}).get("vms") or [])
    if (members or {}).get("error"):
        error = members["error"]
        notes.append({"vm": "", "reason": f"membership incomplete: {error.get('message') or error.get('code')}"})
    # Read by the status API through this instance's id (issue 9): what the ring is doing now.
    context.set_custom_status({"step": "collecting", "vms": len(vms)})
    collected = yield from collect_results(context, spec, vms, notes)
    vm_by_id = {vm["id"].lower(): vm for vm in vms}
    installs = [install_entry(vm_by_id, r) for r in collected]
    seen = {i["vm"].lower() for i in installs}
    installs.extend(install_entry(vm_by_id, {"vm": vm["id"], "state": "missing"}) for vm in vms
                    if vm["id"].lower() not in seen)
    context.set_custom_status({"step": "verifying", "vms": len(vms), "verifyInstance": f"{context.instance_id}:verify",
                               "verifyInstances": max(1, -(-len(vms) // VERIFY_CHUNK))})
    verdicts, ledger_errors = yield from verify_in_chunks(context, spec, ring_spec, vms, installs)
    if ledger_errors:
        notes.append({"vm": "", "reason": f"per-VM results could not be written to the ledger: {ledger_errors[0]}"})
    passed_ids = {str(v["vm"]).lower() for v in verdicts if verdict_passed(v)}
    passed = [vm for vm in vms if vm["id"].lower() in passed_ids]
    return to_payload(RunResultsOutput(gate=gate_for(ring_spec, ring, verdicts, notes=notes),
                                       health_sample=health_sample(passed), counts=count_verdicts(verdicts)))


def verify_in_chunks(context: df.DurableOrchestrationContext, spec: RunResultsInput, ring_spec: dict[str, Any],
                     vms: list[dict[str, Any]], installs: list[dict[str, Any]],
                     ) -> Generator[Any, Any, tuple[list[dict[str, Any]], list[str]]]:
    """Verify the ring in sub-orchestrations of at most :data:`VERIFY_CHUNK` VMs, side by side.

    Chunk ``i`` starts ``i x`` (its read bursts x ``verify.BURST_PAUSE``) later (``startDelaySeconds``),
    so the chunks' rounds of full reads follow one another as one verify's bursts would, instead
    of emptying ARM's per-subscription read bucket together. The first chunk keeps the instance
    id ``<this>:verify`` (what the status API follows); the others are ``<this>:verify:<i>``.
    Each chunk writes its own per-VM ledger rows and answers packed verdicts, so this instance
    replays neither the rows nor the passing VMs' verdicts. Returns ``(verdicts, ledger errors)``."""
    by_vm = {str(i["vm"]).lower(): i for i in installs}
    chunks = [vms[first:first + VERIFY_CHUNK] for first in range(0, len(vms), VERIFY_CHUNK)] or [[]]
    tasks = []
    delay = 0
    for index, chunk in enumerate(chunks):
        doc = VerifyInput(rollout_id=spec.rollout_id, ring_spec=ring_spec, ring=spec.ring,
                          vms=chunk, decide=False, pack=True,
                          ledger=VerifyLedger(run_id=spec.correlation_id),
                          installs=[by_vm[vm["id"].lower()] for vm in chunk if vm["id"].lower() in by_vm],
                          start_delay_seconds=delay or None)
        suffix = "" if index == 0 else f":{index}"
        tasks.append(context.call_sub_orchestrator(names.VERIFY, to_payload(doc),
                                                   f"{context.instance_id}:verify{suffix}"))
        delay += -(-len(chunk) // READ_BURST) * int(BURST_PAUSE.total_seconds())
    answers = yield context.task_all(tasks)
    verdicts: list[dict[str, Any]] = []
    errors: list[str] = []
    for chunk, answer in zip(chunks, answers or [], strict=False):
        verdicts.extend(unpack_verdicts(chunk, answer or {}))
        if (answer or {}).get("ledgerError"):
            errors.append(str(answer["ledgerError"]))
    return verdicts, errors


def collect_results(context: df.DurableOrchestrationContext, spec: RunResultsInput, vms: list[dict[str, Any]],
                    notes: list[dict[str, str]]) -> Generator[Any, Any, list[dict[str, Any]]]:
    """Per-VM entries: Resource Graph first (re-queried while rows are late), instance views for the rest."""
    done: dict[str, dict[str, Any]] = {}
    pending = list(vms)
    arg_error: str | None = None
    attempt = 0
    while pending:
        try:
            answer = yield context.call_activity_with_retry(
                names.COLLECT_RESULTS_ARG, retries.READ,
                to_payload(CollectRunResultsArgInput(
                    correlation_id=spec.correlation_id, vms=pending, since=spec.since, rollout_id=spec.rollout_id,
                    ring=spec.ring)),
            )
        except Exception as exc:
            arg_error = str(exc)[:300]
            break
        for entry in (answer or {}).get("results") or []:
            if entry.get("state") == "done" and entry.get("result"):
                done[str(entry.get("vm") or "").lower()] = entry
        pending = [vm for vm in vms if vm["id"].lower() not in done]
        if not pending or attempt >= len(ARG_REQUERY_DELAYS):
            break
        yield context.create_timer(context.current_utc_datetime + ARG_REQUERY_DELAYS[attempt])
        attempt += 1
    out = [done[vm["id"].lower()] for vm in vms if vm["id"].lower() in done]
    if not pending:
        return out
    if arg_error is not None:
        notes.append({"vm": "", "reason": f"Resource Graph could not be read ({arg_error}); per-VM results fall back "
                                          "to instance views, which list neither patches nor the reboot state"})
    else:
        notes.append({"vm": "", "reason": f"Resource Graph has no finished result of this run for {len(pending)} VM(s) "
                                          f"after {attempt + 1} queries; their results fall back to instance views, "
                                          "which list neither patches nor the reboot state (never a pass)"})
    try:
        collected = yield context.call_activity_with_retry(
            names.COLLECT_RESULTS, retries.READ,
            to_payload(CollectRunResultsInput(
                correlation_id=spec.correlation_id, vms=pending, since=spec.since, rollout_id=spec.rollout_id,
                ring=spec.ring)),
        )
    except Exception as exc:
        error = {"code": "ResultsUnreadable", "message": str(exc)[:300]}
        collected = {"results": [{"vm": vm["id"], "state": "unreadable", "error": error} for vm in pending]}
    out.extend((collected or {}).get("results") or [])
    return out
