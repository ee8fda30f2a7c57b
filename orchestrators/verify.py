"""Health verification of a set of VMs after their installs: the three health phases, verdicts.

Why a sub-orchestration: health checking is a long, timer-driven loop (wait, poll until healthy
up to the elastic limit, stay healthy for healthyStateDuration); as its own instance it keeps the
caller's history short and is reused by direct waves and scheduled rings alike. The phase logic
is the domain's pure :class:`HealthTracker`; this module only schedules the checks it asks for.

Health checks are reads: they run with ``retries.READ``, and a check that still fails is an
unreadable sample (unknown, never healthy), not a failed orchestration.

Fewer ARM calls (issue 11): each round is **one** ``check_vm_health_batch`` activity for every VM
due, not one activity (and one instance-view GET) per VM. The tracker says which VMs need a full
sample (the end of the wait phase, the elastic phase, the end of the stay-healthy phase) and which
a cheap one (in between: the power states from Resource Graph by id, 100 VMs a query, plus the probes).

Rounds of more than :data:`READ_BURST` VMs are read in chunks, one after the other, with a short
durable timer between them, so a 700-VM ring does not empty ARM's read bucket in one burst.

Fail fast (issue 11): ``baselines`` (optional, ``{vm id: health sample}``, taken by
``start_install`` from the instance view it reads anyway before the POST) marks the VMs that were
healthy before patching; those fail at once after two consecutive unhealthy samples.

``startDelaySeconds`` (optional): wait this long before the health phases start (run_results
staggers its chunks of a large ring this way). ``ledger: {runId}`` (optional): write the per-VM
rows (installs + verdicts) to the ledger here, answering ``ledgerError`` when that fails;
``pack: true``: verdicts packed (``verdicts.pack_verdicts``; read with ``unpack_verdicts``).

A scheduled ring's chunk (run_results, issue 11 bounded history): ``members: {runId, planHash,
wave, slice, count}`` reads the chunk's VMs from the ledger (``read_wave_members``; unreadable:
the summary's note makes the gate inconclusive), ``collect: {correlationId, since}`` collects
their results here (:func:`collect_results`: Resource Graph, re-queried after
:data:`ARG_REQUERY_DELAYS` while rows are late, then instance views, whose gap the caller states
from the summary's ``argPending`` / ``argError``), and ``summary: true`` answers a bounded
:class:`~patchrings.boundary.rings.VerifySummary` (:func:`summarize`) instead of verdicts, so
neither this instance's answer nor its caller's history grows with the ring.

Input :class:`~patchrings.boundary.rings.VerifyInput` ``{rolloutId, ringSpec (or, during the
transition, plan), ring, vms: [VmRef], installs: [VmInstall], decide: bool, baselines?,
startDelaySeconds?, ledger?, pack?, members?, collect?, summary?, sampleSize?}``; output
:class:`~patchrings.boundary.rings.VerifyOutput` ``{verdicts: [VmVerdict dict], gate: GateDecision
dict | None, ledgerError?, packed?, passed?, summary?}``.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.ring_direct import health_sample
from orchestrators.status import count_verdicts
from orchestrators.verdicts import gate_for, pack_verdicts, ring_of, verdict_passed, verdicts_for
from orchestrators.wave import _lean as lean
from patchrings.boundary.activities import (
    CheckHealthBatchInput,
    CollectRunResultsArgInput,
    CollectRunResultsInput,
    HealthCheck,
    LedgerRecordVmResultsInput,
    ReadStagedResultsInput,
    ReadStagedResultsOutput,
    ReadWaveMembersInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import VerifyCollect, VerifyInput, VerifyMembers, VerifyOutput, VerifySummary
from patchrings.domain.health import HealthSample, HealthState, HealthTracker, evaluate_sample
from patchrings.domain.membership import LEFT_RING
from patchrings.domain.timeutil import iso

bp = df.Blueprint()
log = logging.getLogger("patchrings.orchestrators.verify")

#: At most this many VMs per health activity, one activity at a time, BURST_PAUSE apart: a round
#: of full samples is one instance-view GET per VM, and ARM's per-subscription read bucket holds
#: 250 and refills 25/s (azure-arm-contracts.md §7); 200 reads, then 10 s, never empty it.
READ_BURST = 200
BURST_PAUSE = timedelta(seconds=10)


@bp.orchestration_trigger(context_name="context", orchestration=names.VERIFY)  # type: ignore[untyped-decorator]
def verify_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = from_payload(VerifyInput, context.get_input() or {})
    ring_name: str = spec.ring or ""
    # The ring's document (issue 10: not the plan): its health policy, install rules and gate.
    ring_spec = dict(spec.ring_spec)
    vms: list[dict[str, Any]] = spec.vms or []
    installs: list[dict[str, Any]] = spec.installs or []

    delay = int(spec.start_delay_seconds or 0)
    if delay > 0:  # a later chunk of a large ring (run_results): its reads follow the earlier chunks'
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
    arg = ArgOutcome()
    if spec.members is not None:  # a scheduled ring's chunk: its VMs from the ledger (issue 11)
        try:
            read = yield context.call_activity_with_retry(names.READ_WAVE_MEMBERS, retries.READ, to_payload(
                ReadWaveMembersInput(run_id=spec.members.run_id, plan_hash=spec.members.plan_hash,
                                     wave=spec.members.wave, slice=spec.members.slice,
                                     rollout_id=spec.rollout_id, ring=spec.ring)))
            vms = list((read or {}).get("vms") or [])
        except Exception as exc:  # nothing is known of these VMs: never a pass
            count = spec.members.count
            reason = (f"{count if count is not None else 'the'} member(s) of slice {spec.members.slice} could not be "
                      f"read from the ledger: {str(exc)[:300]}")
            return to_payload(VerifyOutput(verdicts=[], summary=VerifySummary(notes=[{"vm": "", "reason": reason}])))
    if spec.collect is not None:  # a scheduled ring's chunk collects its own VMs' results
        context.set_custom_status({"step": "collecting", "vms": len(vms)})
        # VMs the gate did not retag (they had left the ring, issue 11). Their rows are still read:
        # one the run did patch (the configuration's own member, another scope) is judged on its
        # result like any other; only one without a row is left-ring. Never waited for.
        gone = {str(v).lower() for v in spec.collect.left or []}
        collected = yield from collect_results(context, spec, vms, arg, optional=gone)
        vm_by_id = {vm["id"].lower(): vm for vm in vms}
        installs = [install_entry(vm_by_id, r) for r in collected]
        found = {str(r.get("vm") or "").lower() for r in collected}
        arg.left_judged = [vm["id"] for vm in vms if vm["id"].lower() in gone and vm["id"].lower() in found]
        installs.extend(install_entry(vm_by_id, {"vm": vm["id"], "state": LEFT_RING, "error": {
            "code": "LeftRing", "retryable": False, "status": None,
            "message": "not patched: the ring's gate did not open it (it had left the ring)"}})
            for vm in vms if vm["id"].lower() in gone and vm["id"].lower() not in found)
        seen = {str(i["vm"]).lower() for i in installs}
        installs.extend(install_entry(vm_by_id, {"vm": vm["id"], "state": "missing"}) for vm in vms
                        if vm["id"].lower() not in seen)

    health = yield from health_phases(context, spec, ring_spec, vms, installs)
    verdicts = verdicts_for(ring_spec, ring_name, vms, installs, health)
    gate = gate_for(ring_spec, ring_name, verdicts) if spec.decide else None
    if not context.is_replaying:
        log.info("verified %d VMs of ring %s", len(verdicts), ring_name)
    ledger_error: str | None = None
    if spec.ledger is not None:  # run_results' chunks write their own per-VM rows (bounded history)
        try:
            yield context.call_activity_with_retry(
                names.LEDGER_VM_RESULTS, retries.WRITE,
                to_payload(LedgerRecordVmResultsInput(
                    rollout_id=cast(str, spec.rollout_id), ring=ring_name, run_id=spec.ledger.run_id,
                    results=[_patches_staged(i) if str(i.get("vm") or "").lower() in arg.staged else i
                             for i in installs],
                    verdicts=verdicts, staged=_staged_ref(spec) if arg.staged else None)))
        except Exception as exc:  # the caller turns this into an inconclusive gate note
            ledger_error = str(exc)[:300]
    if spec.summary:
        return to_payload(VerifyOutput(verdicts=[], gate=gate, ledger_error=ledger_error,
                                       summary=summarize(vms, verdicts, arg, spec.sample_size, spec.named_size)))
    if spec.pack:
        packed = pack_verdicts(vms, verdicts)
        return to_payload(VerifyOutput(verdicts=packed["verdicts"], gate=gate, ledger_error=ledger_error,
                                       packed=packed["packed"], passed=packed["passed"]))
    return to_payload(VerifyOutput(verdicts=verdicts, gate=gate, ledger_error=ledger_error))


def health_phases(context: df.DurableOrchestrationContext, spec: VerifyInput, ring_spec: dict[str, Any],
                  vms: list[dict[str, Any]], installs: list[dict[str, Any]],
                  ) -> Generator[Any, Any, dict[str, HealthState]]:
    """Run the three health phases for the VMs whose install finished; their states by VM id."""
    policy = ring_of(ring_spec).health
    probes = [p.to_dict() for p in policy.probes]
    installed = {i["vm"].lower() for i in installs if i.get("state") in ("done", "not-needed")}
    checked = [vm for vm in vms if vm["id"].lower() in installed]
    start = context.current_utc_datetime
    baselines = {str(k).lower(): v for k, v in (spec.baselines or {}).items() if isinstance(v, dict)}

    def healthy_before(vm_id: str) -> bool:
        sample = baselines.get(vm_id.lower())
        return sample is not None and evaluate_sample(policy, HealthSample.from_dict(sample))[0] == "healthy"

    trackers = {vm["id"]: HealthTracker(policy, start, healthy_before(vm["id"])) for vm in checked}
    by_id = {vm["id"]: vm for vm in checked}

    while True:
        open_ids = [vm_id for vm_id, t in trackers.items() if not t.state.done]
        if not open_ids:
            break
        due = min(trackers[v].state.next_check_at or start for v in open_ids)
        _progress(context, trackers, len(vms))
        if due > context.current_utc_datetime:
            yield context.create_timer(due)
        now = context.current_utc_datetime
        batch = [v for v in open_ids if (trackers[v].state.next_check_at or start) <= now]
        samples = []
        for first in range(0, len(batch), READ_BURST):
            if first:  # let ARM's per-subscription read bucket refill before the next burst
                yield context.create_timer(context.current_utc_datetime + BURST_PAUSE)
            chunk = batch[first:first + READ_BURST]
            checks = [HealthCheck(vm=by_id[v], full=trackers[v].wants_full) for v in chunk]
            try:
                answer = yield context.call_activity_with_retry(
                    names.CHECK_HEALTH_BATCH, retries.READ,
                    to_payload(CheckHealthBatchInput(checks=checks, probes=probes, rollout_id=spec.rollout_id,
                                                           ring=spec.ring)))
                got = list((answer or {}).get("samples") or [])
                if len(got) != len(chunk):
                    raise ValueError(f"{len(got)} health samples for {len(chunk)} VMs")
            except Exception as exc:  # still failing after READ's attempts: unreadable, never healthy
                got = [{"readError": f"health check failed: {str(exc)[:300]}"} for _ in chunk]
            samples.extend(got)
        for vm_id, sample in zip(batch, samples, strict=True):
            trackers[vm_id].observe(now, sample or {"readError": "no health sample returned"})

    _progress(context, trackers, len(vms))
    return {vm_id: t.state for vm_id, t in trackers.items()}


# ------------------------------------------------------------------ a scheduled ring's chunk (issue 11)
#: Waits before re-querying Resource Graph for machines whose rows of the run are not there yet
#: (ARG's propagation delay is undocumented, arc-and-resource-graph.md §5.8: never gate on the
#: first empty answer). 2 + 5 + 10 + 15 = 32 minutes after the first query, then the fallback.
ARG_REQUERY_DELAYS = (timedelta(minutes=2), timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=15))

#: Most verdicts a chunk's summary names whole (the others are counted; the ledger has every row).
MAX_NAMED = 100


@dataclass
class ArgOutcome:
    """What a chunk's Resource Graph queries left open (the gate states it)."""

    pending: int = 0
    queries: int = 0
    error: str | None = None
    staged: set[str] = field(default_factory=set)  # VMs (lower-case ids) whose entry was read from the staged rows
    # VMs the gate did not retag whose run still has a result row (a configuration's own member, or a
    # scope that still selects it): Update Manager patched them, so they are judged, never left-ring
    left_judged: list[str] = field(default_factory=list)


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
    return lean({
        "vm": vm["id"],
        "name": entry.get("name") or vm.get("name"),
        "os": entry.get("os") or vm.get("os"),
        "state": entry.get("state") or "missing",
        "result": entry.get("result"),
        "error": error,
    })


def collect_results(context: df.DurableOrchestrationContext, spec: VerifyInput, vms: list[dict[str, Any]],
                    arg: ArgOutcome, *, optional: set[str] | frozenset[str] = frozenset(),
                    ) -> Generator[Any, Any, list[dict[str, Any]]]:
    """Per-VM entries of the run for ``vms``: Resource Graph first (one query per 1,000 rows,
    re-queried while rows are late), instance views for the rest (their gap stated by the caller
    from ``arg``: never a pass). ``optional`` (lower-case ids): VMs whose rows are taken when
    Resource Graph has them but never waited for nor read otherwise (the run may not hold them)."""
    collect = cast(VerifyCollect, spec.collect)
    done: dict[str, dict[str, Any]] = {}

    def missing(done: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ask = [vm for vm in vms if vm["id"].lower() not in done]
        return ask, [vm for vm in ask if vm["id"].lower() not in optional]

    ask, pending = missing(done)
    attempt = 0
    staged = (yield from staged_results(context, spec)) if collect.staged and spec.members is not None else None
    requery = True
    if staged is not None:  # the ring's queries, staged by run_results: they count as this chunk's first
        wanted = {vm["id"].lower() for vm in vms}
        for entry in staged:
            key = str(entry.get("vm") or "").lower()
            if key in wanted and entry.get("state") == "done" and entry.get("result"):
                done[key] = entry
                arg.staged.add(key)
        ask, pending = missing(done)
        rounds = max(1, int(collect.staged or 1))
        arg.queries = rounds
        attempt = rounds - 1
        requery = rounds <= len(ARG_REQUERY_DELAYS)
        if pending and requery:
            yield context.create_timer(context.current_utc_datetime + ARG_REQUERY_DELAYS[rounds - 1])
            attempt = rounds
    while pending and requery:
        try:
            answer = yield context.call_activity_with_retry(
                names.COLLECT_RESULTS_ARG, retries.READ,
                to_payload(CollectRunResultsArgInput(
                    correlation_id=collect.correlation_id, vms=ask, since=collect.since,
                    rollout_id=spec.rollout_id, ring=spec.ring)),
            )
        except Exception as exc:
            arg.error = str(exc)[:300]
            break
        arg.queries = attempt + 1
        for entry in (answer or {}).get("results") or []:
            if entry.get("state") == "done" and entry.get("result"):
                done[str(entry.get("vm") or "").lower()] = entry
        ask, pending = missing(done)
        if not pending or attempt >= len(ARG_REQUERY_DELAYS):
            break
        yield context.create_timer(context.current_utc_datetime + ARG_REQUERY_DELAYS[attempt])
        attempt += 1
    out = [done[vm["id"].lower()] for vm in vms if vm["id"].lower() in done]
    if not pending:
        return out
    if arg.error is None:
        arg.pending = len(pending)
        arg.queries = attempt + 1
    try:
        collected = yield context.call_activity_with_retry(
            names.COLLECT_RESULTS, retries.READ,
            to_payload(CollectRunResultsInput(
                correlation_id=collect.correlation_id, vms=pending, since=collect.since,
                rollout_id=spec.rollout_id, ring=spec.ring)),
        )
    except Exception as exc:
        error = {"code": "ResultsUnreadable", "message": str(exc)[:300]}
        collected = {"results": [{"vm": vm["id"], "state": "unreadable", "error": error} for vm in pending]}
    out.extend((collected or {}).get("results") or [])
    return out


def _patches_staged(install: dict[str, Any]) -> dict[str, Any]:
    """An install entry read from the staged rows, for the ledger write: its patch list left out
    (the write takes it from the same staged rows), so the chunk's history carries it once."""
    result = install.get("result")
    if not isinstance(result, dict) or "patches" not in result:
        return install
    return {**install, "result": {**{k: v for k, v in result.items() if k != "patches"}, "patchesStaged": True}}


def _staged_ref(spec: VerifyInput) -> ReadStagedResultsInput:
    members = cast(VerifyMembers, spec.members)
    return ReadStagedResultsInput(run_id=members.run_id, plan_hash=members.plan_hash, wave=members.wave,
                                  slice=members.slice, rollout_id=spec.rollout_id, ring=spec.ring)


def staged_results(context: df.DurableOrchestrationContext,
                   spec: VerifyInput) -> Generator[Any, Any, list[dict[str, Any]] | None]:
    """This chunk's slice of the run's Resource Graph entries as run_results staged them (one
    ledger read); None when the slice is not staged or cannot be read (the chunk then queries
    Resource Graph itself, as without staging)."""
    try:
        answer = yield context.call_activity_with_retry(names.READ_STAGED_RESULTS, retries.READ,
                                                        to_payload(_staged_ref(spec)))
        return from_payload(ReadStagedResultsOutput, answer or {}).results
    except Exception:
        return None


def summarize(vms: list[dict[str, Any]], verdicts: list[dict[str, Any]], arg: ArgOutcome,
              sample_size: int | None = None, named_size: int | None = None) -> VerifySummary:
    """A chunk's bounded answer: the first ``named_size`` (default :data:`MAX_NAMED`) verdicts that
    are not a plain pass, the others counted, plain passes counted, every verdict's counts, a
    passing health sample. The parent sets ``named_size`` to its share of the gate's names, so a
    ring where every VM fails does not bring every chunk's verdicts back into its history."""
    limit = MAX_NAMED if named_size is None else max(1, min(named_size, MAX_NAMED))
    named: list[dict[str, Any]] = []
    omitted: dict[str, int] = {}
    passed: dict[str, int] = {}
    passing: list[dict[str, Any]] = []
    by_id = {str(vm["id"]): vm for vm in vms}
    for verdict in verdicts:
        if verdict.get("outcome") == "pass" and not verdict.get("reasons"):
            key = f"{verdict.get('install')}|{verdict.get('health')}"
            passed[key] = passed.get(key, 0) + 1
        elif len(named) < limit:
            named.append(verdict)
        else:
            key = f"{verdict.get('outcome')}|{verdict.get('install')}|{verdict.get('health')}"
            omitted[key] = omitted.get(key, 0) + 1
        if verdict_passed(verdict) and str(verdict.get("vm")) in by_id:
            passing.append(by_id[str(verdict.get("vm"))])
    return VerifySummary(vms=len(verdicts), named=named, omitted=omitted, passed=passed,
                         counts=count_verdicts(verdicts),
                         health_sample=health_sample(passing, *([sample_size] if sample_size else [])),
                         arg_pending=arg.pending, arg_queries=arg.queries, arg_error=arg.error,
                         left_judged=list(arg.left_judged))


def _progress(context: df.DurableOrchestrationContext, trackers: dict[str, HealthTracker], vms: int) -> None:
    """This instance's custom status, read by the status API (issue 9): how many VMs are in each
    health phase, the phase most VMs are in, and until when it lasts at the latest (wait: the
    first check; elastic: the elastic limit; stay-healthy: when they have held for
    healthyStateDuration)."""
    phases: dict[str, int] = {}
    for tracker in trackers.values():
        phases[tracker.state.phase] = phases.get(tracker.state.phase, 0) + 1
    open_phases = {k: v for k, v in phases.items() if k != "done"}
    current = max(open_phases, key=lambda k: (open_phases[k], k)) if open_phases else "done"
    ends = []
    for tracker in trackers.values():
        state = tracker.state
        if state.phase != current:
            continue
        if current == "stayHealthy" and state.healthy_since is not None:
            ends.append(state.healthy_since + tracker.policy.healthy_state)
        elif current == "elastic":
            ends.append(tracker.elastic_deadline)  # polling until healthy, at the latest until then
        elif state.next_check_at is not None:
            ends.append(state.next_check_at)
    context.set_custom_status({"step": "verifying", "vms": vms, "checked": len(trackers), "healthPhases": phases,
                               "healthPhase": current, "until": iso(max(ends)) if ends else None})
