"""Dry run of one ring: resolve its members and assess their patches, installing nothing.

Why: before anyone approves, an operator should see exactly which VMs each ring's selector
resolves to *now* and what assessPatches says they would get (update-manager-domain.md §14.8).
Assessments are long-running like installs, so they are started and polled with durable timers.

Input ``{rolloutId, plan, ring}``; output ``{ring, vms: [...], summary: {...}}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries

bp = df.Blueprint()

POLL = timedelta(minutes=1)
ASSESS_DEADLINE = timedelta(hours=1)


@bp.orchestration_trigger(context_name="context", orchestration=names.DRY_RUN_RING)
def dry_run_ring_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec: dict[str, Any] = context.get_input() or {}
    members = yield context.call_activity_with_retry(names.RESOLVE_MEMBERS, retries.READ,
                                                     {"plan": spec["plan"], "ring": spec["ring"]})
    vms: list[dict[str, Any]] = list((members or {}).get("vms") or [])
    run_id = f"{spec.get('rolloutId')}:{spec['ring']}:assess"
    starts = yield context.task_all(
        [context.call_activity_with_retry(names.START_ASSESS, retries.WRITE,
                                          {"rolloutId": spec.get("rolloutId"), "ring": spec["ring"],
                                           "runId": run_id, "vm": vm}) for vm in vms]
    )
    tokens = {vm["id"]: (s or {}).get("token") for vm, s in zip(vms, starts, strict=True)
              if (s or {}).get("state") in ("started", "already-started", "already-done")}
    results: dict[str, Any] = {vm["id"]: {"error": (s or {}).get("error")} for vm, s in zip(vms, starts, strict=True)
                               if vm["id"] not in tokens}
    deadline = context.current_utc_datetime + ASSESS_DEADLINE
    while tokens:
        polls = yield context.task_all(
            [context.call_activity_with_retry(names.POLL_ASSESS, retries.READ,
                                              {"runId": run_id, "vm": next(v for v in vms if v["id"] == vm_id),
                                               "token": token}) for vm_id, token in tokens.items()]
        )
        for vm_id, poll in zip(list(tokens), polls, strict=True):
            if (poll or {}).get("done"):
                tokens.pop(vm_id)
                results[vm_id] = {"result": (poll or {}).get("result"), "error": (poll or {}).get("error")}
        if not tokens or context.current_utc_datetime >= deadline:
            break
        yield context.create_timer(context.current_utc_datetime + POLL)
    for vm_id in tokens:
        results[vm_id] = {"error": {"code": "AssessDeadlineExceeded", "message": "no assessment result in time"}}

    out = []
    available = 0
    for vm in vms:
        entry = results.get(vm["id"]) or {}
        result = entry.get("result") or {}
        count = int(result.get("criticalAndSecurityPatchCount") or 0) + int(result.get("otherPatchCount") or 0)
        available += count
        out.append({"vm": vm["id"], "name": vm.get("name"), "os": vm.get("os"), "zone": vm.get("zone"),
                    "availablePatchCount": count, "status": result.get("status"),
                    "patches": [{"name": p.get("name"), "kbId": p.get("kbId"), "version": p.get("version"),
                                 "classifications": p.get("classifications")} for p in result.get("patches") or []],
                    "error": entry.get("error")})
    return {"ring": spec["ring"], "vms": out,
            "summary": {"vms": len(vms), "availablePatches": available,
                        "errors": sum(1 for o in out if o["error"])}}
