"""Event Grid ingress: Azure Update Manager pre/post maintenance events into the rollout.

Why it is this thin: Event Grid waits 30 s for an acknowledgement and delivers at least once,
in any order. So this function parses (both schemas, keys case-insensitive, via the domain),
records the event in the ledger, and only *routes*:

* Ring 0's pre-event starts the rollout, with an instance id derived from the correlationId, so
  a redelivery finds the existing instance and starts nothing;
* every pre-event of every configuration the plan names starts the fail-closed guard for that
  run (again with a correlationId-derived id), whatever the ring's patching mode: a gated
  scheduled ring's run goes ahead only if the rollout authorised it, and a *direct* ring whose
  members come from a maintenance configuration has that configuration's own runs cancelled (the
  rollout installs a direct ring itself and never authorises its configuration's schedule; issue
  13.3 — guarded rather than refused at plan validation, because selecting a direct ring's members
  through a configuration's assignments is a legitimate shape, it is only the configuration's own
  schedule that must not patch). Ring 0 is always direct (a plan rule), so its configuration's
  pre-event both starts the rollout and guards that configuration's own run;
* every event of a planned ring is raised into the active rollout as ``MaintenanceEvent``; the
  orchestrator de-duplicates by (correlationId, kind) and tolerates reordering.

Two entry points share :func:`handle_event`: the Event Grid trigger (``on_maintenance_event``,
delivered by an ``AzureFunction`` destination to ``/runtime/webhooks/eventgrid``, system key) and
``POST /api/events`` (``maintenance_events``, an HTTP trigger at function level), which a WebHook
destination with Entra ID delivery (``azureActiveDirectoryApplicationIdOrUri``) reaches when App
Service authentication protects the app: an ``AzureFunction`` destination cannot pass Easy Auth
(infra/event-subscriptions.json). The HTTP endpoint answers the subscription-validation handshake
itself (``aeg-event-type: SubscriptionValidation`` -> 200 ``{"validationResponse": code}``; the
``validationUrl`` is never fetched: the app calls no URL an event names) and the CloudEvents
``OPTIONS`` handshake, and parses the raw body itself, so no envelope can fail in a binding.

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
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from orchestrators import names
from patchrings import deps
from patchrings.arm.ids import parse_apply_update_id
from patchrings.boundary.rollout import GuardInput, RolloutInput
from patchrings.domain.arm_ids import last_segment, same_arm_id
from patchrings.domain.events import MaintenanceEvent, instance_id_for, parse_maintenance_event
from patchrings.domain.recurrence import run_name
from patchrings.domain.timeutil import format_duration, format_instant
from patchrings.errors import EventRejected
from triggers.rollouts import active_rollouts, exists, start_guard, start_rollout

bp = df.Blueprint()
log = logging.getLogger("patchrings.triggers.eventgrid")

GUARD_PREFIX = "guard-"
MAX_CORRELATION_ID = 512


def run_id_problem(event: MaintenanceEvent) -> str | None:
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
    named = run_name_instant(correlation_id)
    if named is not None and abs(event.start - named) > RUN_NAME_SLACK:
        # The run name is the run's start as yyyyMMddHHmmss (observed, not a documented contract:
        # update-manager-domain.md 2.1), so only a start far from it is refused -- e.g. a forged
        # pre-event for a real run with its start in 2099, which would otherwise hold that run's
        # guard and delivery slots until then.
        return (f"data.startDateTime {format_instant(event.start)} is not the run named by data.correlationId "
                f"({format_instant(named)})")
    return None


#: How far an event's start may be from the instant its run name spells (time zone offsets are at
#: most 14 h: the name may be local time rather than UTC).
RUN_NAME_SLACK = timedelta(hours=14)
#: ``yyyyMMddHHmmss``, what :func:`patchrings.domain.recurrence.run_name` writes
RUN_NAME_FORMAT = "%Y%m%d%H%M%S"


def run_name_instant(correlation_id: str) -> datetime | None:
    """The instant a run name ``.../applyUpdates/yyyyMMddHHmmss`` spells (None when it spells none):
    the inverse of :func:`patchrings.domain.recurrence.run_name`."""
    try:
        return datetime.strptime(last_segment(correlation_id), RUN_NAME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def guard_id_for(event: MaintenanceEvent) -> str:
    """One guard per (run, announced start): a forged pre-event for a real run with another start
    cannot take the real pre-event's guard (it gets a guard of its own, which can only cancel)."""
    return f"{GUARD_PREFIX}{instance_id_for(event)}-{run_name(event.start)}"


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


def already_recorded(ledger: Any, event: MaintenanceEvent) -> bool:
    """True when this (correlationId, kind, start) was already fully handled (it is in the ledger).

    The start is part of it: a forged event for a real run with another start, recorded first,
    must not make the real event look like a redelivery (it would never reach the rollout)."""
    start = format_instant(event.start)
    for row in ledger.events(event.configuration_id):
        if (row.get("kind") == event.kind
                and same_arm_id(str(row.get("correlationId", "")), event.correlation_id)
                and str(row.get("startDateTime") or start) == start):
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
    # The one JSON form of the event (``MaintenanceEvent.to_dict()``, read back by the inbox with
    # ``MaintenanceEvent.from_dict``): the rollout's trigger, the guard's input, the raised event
    # and the ledger row all carry this document.
    payload = event.to_dict()
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
                await start_rollout(client, instance_id, RolloutInput(
                    initiator="system:maintenance-event",
                    reason=f"pre-maintenance event of {ring.name}",
                    trigger={"kind": "event", **payload},
                ))
                actions.append(f"started rollout {instance_id}")
                active = [instance_id]
            except Exception:
                if not await exists(client, instance_id):
                    raise
                actions.append(f"duplicate: rollout {instance_id} started concurrently")
    if event.kind == "pre":
        guard_id = guard_id_for(event)
        if not await exists(client, guard_id):
            try:
                await start_guard(client, guard_id, GuardInput(
                    event=payload,
                    ring=ring.name,
                    cancel_margin=format_duration(plan.promotion.cancel_margin),
                ))
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
        f"{event.correlation_id}@{format_instant(event.start)}",  # one row per (run, announced start)
        # The event's own time (Event Grid's envelope: the platform's clock, simulated or Azure's);
        # the worker's wall clock only when the envelope has none.
        {**payload, "ring": ring.name, "receivedAt": format_instant(event.event_time or datetime.now(UTC))},
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


# ---------------------------------------------------------------------- POST /api/events
VALIDATION_EVENT = "microsoft.eventgrid.subscriptionvalidationevent"
MAX_DELIVERY_BYTES = 1024 * 1024  # Event Grid delivers at most 1 MB per event / batch
MAX_BATCH = 5000
_VALIDATION_CODE = re.compile(r"^[A-Za-z0-9-]{1,128}$")


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json",
                             headers=headers)


def _refuse(message: str, field: str = "body") -> func.HttpResponse:
    return _json({"error": {"code": "EventRejected", "message": message, "field": field}}, 400)


def validation_response(events: list[Any]) -> func.HttpResponse:
    """Echo the validation code of a SubscriptionValidation delivery (never fetch validationUrl)."""
    for event in events:
        if isinstance(event, dict) and str(event.get("eventType", "")).lower() == VALIDATION_EVENT:
            data = event.get("data")
            code = data.get("validationCode") if isinstance(data, dict) else None
            if isinstance(code, str) and _VALIDATION_CODE.match(code):
                log.info("Event Grid subscription validation answered")
                return _json({"validationResponse": code}, 200)
            return _refuse("data.validationCode is missing or malformed", "data.validationCode")
    return _refuse("a SubscriptionValidation delivery carries a Microsoft.EventGrid.SubscriptionValidationEvent",
                   "eventType")


@bp.function_name(name="maintenance_events")
@bp.route(route="events", methods=["POST", "OPTIONS"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def maintenance_events(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Event Grid WebHook delivery (Event Grid schema arrays or CloudEvents), with handshakes."""
    if req.method.upper() == "OPTIONS":  # CloudEvents abuse protection
        origin = str(req.headers.get("WebHook-Request-Origin") or "")[:256]
        if not origin:
            return _refuse("WebHook-Request-Origin header is required", "WebHook-Request-Origin")
        return func.HttpResponse(status_code=200, headers={"WebHook-Allowed-Origin": origin, "Allow": "POST"})
    raw = req.get_body() or b""
    if len(raw) > MAX_DELIVERY_BYTES:
        return _json({"error": {"code": "EventRejected", "message": "delivery larger than 1 MB", "field": "body"}},
                     413)
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, RecursionError):
        log.warning("Event Grid delivery that is not JSON refused (400: Event Grid does not retry it)")
        return _refuse("the body is not valid JSON")
    if body is None:
        return _refuse("the body is empty; expected an event or an array of events", "body")
    events = body if isinstance(body, list) else [body]
    if not events or len(events) > MAX_BATCH:
        return _refuse(f"expected 1-{MAX_BATCH} events")
    if str(req.headers.get("aeg-event-type") or "").lower() == "subscriptionvalidation":
        return validation_response(events)
    results = []
    for event in events:
        if not isinstance(event, dict):
            log.warning("Event Grid delivery item that is not an object acknowledged")
            results.append({"action": "rejected", "error": {"code": "EventRejected", "message": "not an object"}})
            continue
        # Transient failures (ledger, durable API) raise: a 500 makes Event Grid retry the batch,
        # and handle_event is idempotent per (correlationId, kind).
        results.append(await handle_event(event, client))
    return _json({"received": len(events), "results": [r.get("action") for r in results]}, 200)
