"""Event Grid ingress: Azure Update Manager pre/post maintenance events into the rollout.

Why it is this thin: Event Grid waits 30 s for an acknowledgement and delivers at least once,
in any order. So this function parses (both schemas, keys case-insensitive, via the domain),
records the event in the ledger, and only *routes*:

* Ring 0's pre-event starts the rollout, with an instance id derived from the correlationId, so
  a redelivery finds the existing instance and starts nothing;
* every pre-event of every configuration the plan names starts the fail-closed guard for that
  run (again with a correlationId-derived id), whatever the ring's patching mode: a scheduled
  ring's run goes ahead only if the rollout authorised it, and a *direct* ring whose members come
  from a maintenance configuration has that configuration's own runs cancelled (the rollout
  installs a direct ring itself and never authorises its configuration's schedule);
* every event of a planned ring is raised into the active rollout as ``MaintenanceEvent``; the
  orchestrator de-duplicates by (correlationId, kind) and tolerates reordering.

Events for configurations no plan knows are logged and acknowledged. Malformed events are
logged and acknowledged too (Event Grid would retry them for 24 hours otherwise), and so is an
event whose ``correlationId`` is not exactly ``<configuration id>/providers/Microsoft.Maintenance/
applyUpdates/<14 digits>`` of the configuration the event names (``patchrings.arm.ids.
parse_apply_update_id``): the run id later becomes part of an ARM request URL, so nothing else
may start anything. Transient failures (ledger or durable API unreachable) raise, so Event Grid
retries the delivery.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from orchestrators import names
from patchrings.arm.ids import parse_apply_update_id, same_arm_id
from patchrings.domain.events import instance_id_for, parse_maintenance_event
from patchrings.domain.timeutil import format_duration, format_instant
from patchrings.errors import EventRejected
from triggers import deps
from triggers.rollouts import active_rollouts, exists

bp = df.Blueprint()
log = logging.getLogger("patchrings.triggers.eventgrid")

GUARD_PREFIX = "guard-"
MAX_CORRELATION_ID = 512


def run_id_problem(event: Any) -> str | None:
    """Why an event's correlationId is not a run of the configuration it names, or None."""
    correlation_id = event.correlation_id
    if len(correlation_id) > MAX_CORRELATION_ID:
        return f"data.correlationId is longer than {MAX_CORRELATION_ID} characters"
    try:
        configuration_id, _ = parse_apply_update_id(correlation_id)
    except ValueError:
        return ("data.correlationId is not <configuration id>/providers/Microsoft.Maintenance/applyUpdates/"
                "<yyyyMMddHHmmss>")
    if not same_arm_id(configuration_id, event.configuration_id):
        return "data.correlationId is a run of another configuration than data.maintenanceConfigurationId"
    return None


def envelope_of(event: Any) -> dict[str, Any]:
    """The delivered event as a plain dict in its own schema (Event Grid or CloudEvents)."""
    if isinstance(event, dict):
        return event
    if hasattr(event, "specversion") or type(event).__name__ == "CloudEvent":
        out = {
            "specversion": getattr(event, "specversion", "1.0"),
            "id": getattr(event, "id", None),
            "source": getattr(event, "source", None),
            "type": getattr(event, "type", None),
            "subject": getattr(event, "subject", None),
            "time": _iso(getattr(event, "time", None)),
            "data": event.get_json() if hasattr(event, "get_json") else getattr(event, "data", None),
        }
        return out
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": _iso(event.event_time),
        "dataVersion": event.data_version,
        "data": event.get_json(),
    }


def _iso(value: Any) -> Any:
    return format_instant(value) if isinstance(value, datetime) else value


def run_event_payload(event: Any) -> dict[str, Any]:
    """The JSON the orchestrators receive: the domain's ``MaintenanceEvent.to_dict()``."""
    return event.to_dict()  # type: ignore[no-any-return]


def already_recorded(ledger: Any, event: Any) -> bool:
    """True when this (correlationId, kind) was already fully handled (it is in the ledger)."""
    for row in ledger.events(event.configuration_id):
        if row.get("kind") == event.kind and str(row.get("correlationId", "")).lower() == event.correlation_id.lower():
            return True
    return False


async def handle_event(raw: dict[str, Any], client: Any) -> dict[str, Any]:
    """Route one delivery; returns what was done (for logs and tests)."""
    try:
        event = parse_maintenance_event(raw)
    except EventRejected as err:
        log.warning("maintenance event rejected and acknowledged: %s", err.message)
        return {"action": "rejected", "error": err.to_dict()["error"]}
    problem = run_id_problem(event)
    if problem is not None:
        log.warning("maintenance event rejected and acknowledged: %s: %r", problem, event.correlation_id[:200])
        return {"action": "rejected", "error": {"code": "EventRejected", "message": problem,
                                                "field": "data.correlationId"}}
    plan = deps.plan()
    ring = plan.ring_for_configuration(event.configuration_id)
    payload = run_event_payload(event)
    if ring is None:
        log.info("event for unknown configuration %s acknowledged", event.configuration_id)
        return {"action": "ignored", "reason": "configuration not in the plan", "event": payload}

    ledger = deps.ledger()
    seen = await asyncio.to_thread(already_recorded, ledger, event)
    actions: list[str] = []
    active = await active_rollouts(client)
    if ring.index == 0 and event.kind == "pre":
        instance_id = instance_id_for(event)
        if await exists(client, instance_id):
            actions.append(f"duplicate: rollout {instance_id} already exists")
        elif active:
            actions.append(f"rollout {active[0]} is active; no second rollout started")
        else:
            try:
                await client.start_new(
                    names.ROLLOUT,
                    instance_id,
                    {
                        "initiator": "system:maintenance-event",
                        "reason": f"pre-maintenance event of {ring.name}",
                        "trigger": {"kind": "event", **payload},
                    },
                )
                actions.append(f"started rollout {instance_id}")
                active = [instance_id]
            except Exception:
                if not await exists(client, instance_id):
                    raise
                actions.append(f"duplicate: rollout {instance_id} started concurrently")
    if event.kind == "pre":
        guard_id = GUARD_PREFIX + instance_id_for(event)
        if not await exists(client, guard_id):
            try:
                await client.start_new(
                    names.GUARD,
                    guard_id,
                    {
                        "event": payload,
                        "ring": ring.name,
                        "cancelMargin": format_duration(plan.promotion.cancel_margin),
                    },
                )
                actions.append(f"started guard {guard_id}")
            except Exception:
                if not await exists(client, guard_id):
                    raise
    # Only scheduled rings' runs concern a rollout (a direct ring is installed by the rollout itself);
    # raising events nobody will wait for would only fill the SDK's one-slot event buffer.
    for rollout_id in active if ring.scheduled and not seen else []:
        await client.raise_event(rollout_id, names.EV_MAINTENANCE, payload)
        actions.append(f"raised {names.EV_MAINTENANCE} to {rollout_id}")
    if seen:
        actions.append("redelivery of a recorded event: not raised again")
    # Recorded last: a delivery that failed half-way is retried by Event Grid and routed again.
    await asyncio.to_thread(
        ledger.record_event,
        event.configuration_id,
        event.event_type,
        event.correlation_id,
        {**payload, "ring": ring.name, "receivedAt": format_instant(datetime.now(UTC))},
    )
    log.info("%s event %s of %s: %s", event.kind, event.correlation_id, ring.name, "; ".join(actions) or "none")
    return {"action": "routed", "ring": ring.name, "actions": actions, "event": payload}


@bp.function_name(name="on_maintenance_event")
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def on_maintenance_event(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    """Event Grid trigger for Microsoft.Maintenance pre/post events (both schemas)."""
    try:
        raw = envelope_of(event)
    except Exception as err:  # a delivery we cannot even read: acknowledge, never crash
        log.warning("unreadable Event Grid delivery acknowledged: %s", err)
        return
    await handle_event(raw, client)
