"""Health verification of a set of VMs after their installs: the three health phases, verdicts.

Why a sub-orchestration: health checking is a long, timer-driven loop (wait, poll until healthy
up to the elastic limit, stay healthy for healthyStateDuration); as its own instance it keeps the
caller's history short and is reused by direct waves and scheduled rings alike. The phase logic
is the domain's pure :class:`HealthTracker`; this module only schedules the checks it asks for.

Health checks are reads: they run with ``retries.READ``, and a check that still fails is an
unreadable sample (unknown, never healthy), not a failed orchestration.

Input ``{rolloutId, plan, ring, vms: [VmRef], installs: [VmInstall], decide: bool}``; output
``{verdicts: [VmVerdict dict], gate: GateDecision dict | None}``.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df

from orchestrators import names, plan_view, retries
from orchestrators.verdicts import gate_for, verdicts_for
from patchrings.domain.health import HealthPolicy, HealthTracker

bp = df.Blueprint()
log = logging.getLogger("patchrings.orchestrators.verify")


@bp.orchestration_trigger(context_name="context", orchestration=names.VERIFY)
def verify_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec: dict[str, Any] = context.get_input() or {}
    plan: dict[str, Any] = spec.get("plan") or {}
    ring_name: str = spec.get("ring") or ""
    vms: list[dict[str, Any]] = spec.get("vms") or []
    installs: list[dict[str, Any]] = spec.get("installs") or []
    policy = HealthPolicy.from_dict(plan_view.effective(plan, ring_name, "health"))
    probes = [p.to_dict() for p in policy.probes]

    installed = {i["vm"].lower() for i in installs if i.get("state") in ("done", "not-needed")}
    checked = [vm for vm in vms if vm["id"].lower() in installed]
    start = context.current_utc_datetime
    trackers = {vm["id"]: HealthTracker(policy, start) for vm in checked}
    by_id = {vm["id"]: vm for vm in checked}

    while True:
        open_ids = [vm_id for vm_id, t in trackers.items() if not t.state.done]
        if not open_ids:
            break
        due = min(trackers[v].state.next_check_at or start for v in open_ids)
        if due > context.current_utc_datetime:
            yield context.create_timer(due)
        now = context.current_utc_datetime
        batch = [v for v in open_ids if (trackers[v].state.next_check_at or start) <= now]
        try:
            samples = yield context.task_all(
                [context.call_activity_with_retry(names.CHECK_HEALTH, retries.READ, {"vm": by_id[v], "probes": probes})
                 for v in batch]
            )
        except Exception as exc:  # still failing after READ's attempts: unreadable, never healthy
            samples = [{"readError": f"health check failed: {str(exc)[:300]}"} for _ in batch]
        for vm_id, sample in zip(batch, samples, strict=True):
            trackers[vm_id].observe(now, sample or {"readError": "no health sample returned"})

    health = {vm_id: t.state for vm_id, t in trackers.items()}
    verdicts = verdicts_for(plan, ring_name, vms, installs, health)
    gate = gate_for(plan, ring_name, verdicts) if spec.get("decide") else None
    if not context.is_replaying:
        log.info("verified %d VMs of ring %s", len(verdicts), ring_name)
    return {"verdicts": verdicts, "gate": gate}
