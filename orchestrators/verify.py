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
a cheap one (in between: one paged ``statusOnly`` VM list per subscription plus the probes).

Rounds of more than :data:`READ_BURST` VMs are read in chunks, one after the other, with a short
durable timer between them, so a 700-VM ring does not empty ARM's read bucket in one burst.

Fail fast (issue 11): ``baselines`` (optional, ``{vm id: health sample}``, taken by
``start_install`` from the instance view it reads anyway before the POST) marks the VMs that were
healthy before patching; those fail at once after two consecutive unhealthy samples.

``startDelaySeconds`` (optional): wait this long before the health phases start (run_results
staggers its chunks of a large ring this way). ``ledger: {runId}`` (optional): write the per-VM
rows (installs + verdicts) to the ledger here, answering ``ledgerError`` when that fails;
``pack: true``: verdicts packed (``verdicts.pack_verdicts``; read with ``unpack_verdicts``).

Input :class:`~patchrings.boundary.rings.VerifyInput` ``{rolloutId, ringSpec (or, during the
transition, plan), ring, vms: [VmRef], installs: [VmInstall], decide: bool, baselines?,
startDelaySeconds?, ledger?, pack?}``; output :class:`~patchrings.boundary.rings.VerifyOutput`
``{verdicts: [VmVerdict dict], gate: GateDecision dict | None, ledgerError?, packed?, passed?}``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.verdicts import gate_for, pack_verdicts, ring_of, verdicts_for
from patchrings.boundary.activities import (
    CheckHealthBatchInput,
    HealthCheck,
    LedgerRecordVmResultsInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import VerifyInput, VerifyOutput
from patchrings.domain.health import HealthSample, HealthTracker, evaluate_sample
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
    policy = ring_of(ring_spec).health
    probes = [p.to_dict() for p in policy.probes]

    delay = int(spec.start_delay_seconds or 0)
    if delay > 0:  # a later chunk of a large ring (run_results): its reads follow the earlier chunks'
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
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
    health = {vm_id: t.state for vm_id, t in trackers.items()}
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
                    results=installs, verdicts=verdicts)))
        except Exception as exc:  # the caller turns this into an inconclusive gate note
            ledger_error = str(exc)[:300]
    if spec.pack:
        packed = pack_verdicts(vms, verdicts)
        return to_payload(VerifyOutput(verdicts=packed["verdicts"], gate=gate, ledger_error=ledger_error,
                                       packed=packed["packed"], passed=packed["passed"]))
    return to_payload(VerifyOutput(verdicts=verdicts, gate=gate, ledger_error=ledger_error))


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
