"""Fail-closed guard for one scheduled run of a gated ring.

Why a separate orchestration: AUM patches a run unless someone cancels it by T-10 (a failed or
silent pre-event handler does *not* stop it, update-manager-domain.md §2.3). The rollout decides
and authorises runs, but a rollout that is dead, stuck, halted or never started must not let an
unapproved ring patch. The Event Grid trigger therefore starts this guard for every pre-event of
a gated ring (instance id derived from the correlationId, so redeliveries never start two). It
sleeps until the decision deadline ``min(cancellationCutOff, start - 10 min) - margin``, reads
the ledger's gate for this exact run (``ledger_read_gate``) and cancels the run (``cancel_run``)
unless the rollout authorised it. Reading the ledger failing also cancels: fail closed.

Input ``{event: RunEvent dict, ring, cancelMargin}``; output ``{correlationId, decision, gate,
cancel}``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names
from orchestrators.inbox import RunEvent
from orchestrators.timeutil import iso, parse_duration
from orchestrators.verdicts import decision_deadline

bp = df.Blueprint()
log = logging.getLogger("patchrings.orchestrators.guard")


@bp.orchestration_trigger(context_name="context", orchestration=names.GUARD)
def guard_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec: dict[str, Any] = context.get_input() or {}
    event = RunEvent.from_payload(spec.get("event"))
    if event is None:
        return {"decision": "ignored", "reason": "not a usable pre-maintenance event"}
    margin = parse_duration(spec.get("cancelMargin"), timedelta(minutes=2))
    deadline = decision_deadline(event, margin)
    context.set_custom_status({"correlationId": event.correlation_id, "ring": spec.get("ring"),
                               "decideAt": iso(deadline), "decision": None})
    if context.current_utc_datetime < deadline:
        yield context.create_timer(deadline)

    gate: dict[str, Any] = {}
    try:
        gate = yield context.call_activity(
            names.LEDGER_READ_GATE,
            {
                "correlationId": event.correlation_id,
                "configurationId": event.configuration_id,
                "ring": spec.get("ring"),
            },
        )
        gate = gate or {}
    except Exception as err:  # the ledger could not be read: fail closed
        gate = {"authorised": False, "reason": f"gate could not be read: {err}"}

    if gate.get("authorised"):
        decision = "allowed"
        cancel = None
    else:
        cancel = yield context.call_activity(names.CANCEL_RUN, {"correlationId": event.correlation_id})
        status = str((cancel or {}).get("status"))
        # NotFound: the run does not exist (any more) - nothing will patch either.
        decision = "cancelled" if status in ("Cancelled", "AlreadyCancelled", "NotFound") else "cancel-failed"
    if not context.is_replaying:
        log.info("guard %s: run %s %s", context.instance_id, event.correlation_id, decision)
    result = {"correlationId": event.correlation_id, "ring": spec.get("ring"), "decision": decision,
              "gate": gate, "cancel": cancel, "decidedAt": iso(context.current_utc_datetime)}
    context.set_custom_status(result)
    return result
