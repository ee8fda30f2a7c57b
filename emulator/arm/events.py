"""Simulated Event Grid for the Maintenance system topic: Pre/PostMaintenanceEvent deliveries.

Why: the app reacts to these events (and must be idempotent under Event Grid's at-least-once,
unordered delivery), so the simulator delivers them the way Event Grid does (contracts §10):
one event per POST as a JSON array, ``aeg-*`` headers, retries on non-2xx with Event Grid's
back-off (10 s, 30 s, 1 min, 5 min, 10 min, 30 min, then hourly), no retry on 400/401/403/413.

SUPPORTED
* Event Grid schema and CloudEvents 1.0 per subscription (``schema``), camelCase or PascalCase
  ``data`` keys (``dataKeyCase``), ``includedEventTypes``, a filter on configurations;
* duplicates (``events.duplicateProbability``) and reordering (``events.reorderMaxDelaySeconds``:
  each delivery waits a seeded random delay, so later events can overtake earlier ones);
* injected webhook failures (fault ``eventDeliveryError``).

All waits are on the shared clock and every POST runs inside ``clock.busy()``.

* the endpoint-validation handshake (``validate: true`` on a subscription): before its first
  delivery, Event Grid schema endpoints get a ``SubscriptionValidationEvent`` and must answer 200
  ``{"validationResponse": code}`` (or GET the ``validationUrl``, served by the simulator);
  CloudEvents endpoints get ``OPTIONS`` with ``WebHook-Request-Origin``. Until validated, each
  delivery attempt fails (logged as ``endpoint validation failed``) and is retried with the usual
  back-off, re-running the handshake.

LIMITATIONS: no dead-lettering (a delivery that exhausts its attempts is logged as ``dropped``).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from emulator.clock import Clock

__all__ = ["RETRY_SCHEDULE", "EventBus", "EventSubscription", "build_event"]

RETRY_SCHEDULE = [10, 30, 60, 300, 600, 1800] + [3600] * 24
PRE = "Microsoft.Maintenance.PreMaintenanceEvent"
POST = "Microsoft.Maintenance.PostMaintenanceEvent"


@dataclass
class EventSubscription:
    name: str
    endpoint: str
    schema: str = "EventGridSchema"
    data_key_case: str = "camel"
    included_event_types: list[str] = field(default_factory=list)
    configurations: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    validate: bool = False
    validated: bool = False

    @classmethod
    def from_scenario(cls, entry: dict[str, Any]) -> EventSubscription:
        return cls(
            name=entry["name"],
            endpoint=entry["endpoint"],
            schema=entry.get("schema", "EventGridSchema"),
            data_key_case=entry.get("dataKeyCase", "camel"),
            included_event_types=list(entry.get("includedEventTypes") or []),
            configurations=list(entry.get("configurations") or []),
            headers=dict(entry.get("headers") or {}),
            validate=bool(entry.get("validate", False)),
        )

    def wants(self, event_type: str, config_id: str, config_name: str) -> bool:
        if self.included_event_types and event_type.lower() not in {t.lower() for t in self.included_event_types}:
            return False
        if self.configurations:
            names = {c.lower() for c in self.configurations}
            return config_id.lower() in names or config_name.lower() in names
        return True


def event_type_of(event: dict[str, Any]) -> str:
    return str(event.get("eventType") or event.get("type") or "")


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def build_event(
    event_type: str,
    *,
    config_id: str,
    config_name: str,
    data: dict[str, Any],
    time: datetime,
    schema: str = "EventGridSchema",
    data_key_case: str = "camel",
) -> dict[str, Any]:
    """One event in the subscription's schema; ``id`` is the run's correlationId."""
    if data_key_case == "pascal":
        data = {k[:1].upper() + k[1:]: v for k, v in data.items()}
    event_id = data.get("correlationId") or data.get("CorrelationId")
    if schema == "CloudEventSchemaV1_0":
        return {
            "id": event_id,
            "source": config_id,
            "subject": config_name,
            "data": data,
            "type": event_type,
            "time": _iso(time),
            "specversion": "1.0",
        }
    return {
        "id": event_id,
        "topic": config_id,
        "subject": config_name,
        "data": data,
        "eventType": event_type,
        "eventTime": _iso(time),
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


class EventBus:
    """Publishes maintenance events to the scenario's subscriptions."""

    def __init__(
        self,
        subscriptions: list[EventSubscription],
        clock: Clock,
        *,
        spawn: Callable[[Awaitable[Any]], Any],
        seed: int,
        options: dict[str, Any] | None = None,
        fault: Callable[[str], int | None] | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        self.clock = clock
        self._spawn = spawn
        self._rng = random.Random(f"{seed}/events")
        options = options or {}
        self.duplicate_probability = float(options.get("duplicateProbability", 0.0))
        self.reorder_max_delay = float(options.get("reorderMaxDelaySeconds", 0.0))
        self.max_attempts = int(options.get("maxDeliveryAttempts", 30))
        self._fault = fault
        self._session: aiohttp.ClientSession | None = None
        self.log: list[dict[str, Any]] = []
        self.published: list[dict[str, Any]] = []
        self.validations: list[dict[str, Any]] = []
        self.delivered: set[tuple[str, str]] = set()  # (event type, id) acknowledged with a 2xx
        self.validation_url_base = ""  # the simulator's endpoint; set at start
        self._pending_codes: dict[str, str] = {}
        self._validation_lock = asyncio.Lock()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def was_delivered(self, event_type: str, event_id: str) -> bool:
        """Whether any subscription acknowledged the event (2xx)."""
        return (event_type, event_id.lower()) in self.delivered

    def has_subscribers(self, event_type: str, config_id: str, config_name: str) -> bool:
        return any(sub.wants(event_type, config_id, config_name) for sub in self.subscriptions)

    def publish(self, event_type: str, *, config_id: str, config_name: str, data: dict[str, Any]) -> int:
        """Queue deliveries of one event to every interested subscription; returns how many."""
        now = self.clock.now()
        self.published.append({"time": _iso(now), "eventType": event_type, "data": dict(data)})
        queued = 0
        for sub in self.subscriptions:
            if not sub.wants(event_type, config_id, config_name):
                continue
            event = build_event(
                event_type,
                config_id=config_id,
                config_name=config_name,
                data=data,
                time=now,
                schema=sub.schema,
                data_key_case=sub.data_key_case,
            )
            copies = 2 if self._rng.random() < self.duplicate_probability else 1
            for copy in range(copies):
                delay = self._rng.uniform(0, self.reorder_max_delay) if self.reorder_max_delay else 0.0
                if copy:
                    delay += self._rng.uniform(1, max(2.0, self.reorder_max_delay or 60.0))
                self._spawn(self._deliver(sub, event, now + timedelta(seconds=delay), duplicate=bool(copy)))
                queued += 1
        return queued

    async def _deliver(self, sub: EventSubscription, event: dict[str, Any], at: datetime, *, duplicate: bool) -> None:
        await self.clock.sleep_until(at)
        for attempt in range(1, self.max_attempts + 1):
            status: int | None
            error: str | None
            with self.clock.busy():
                if sub.validate and not sub.validated:
                    async with self._validation_lock:
                        if not sub.validated:
                            await self._validate(sub)
                if sub.validate and not sub.validated:
                    status, error = None, "endpoint validation failed"
                else:
                    status, error = await self._post(sub, event, attempt)
                self._log(sub, event, attempt=attempt, status=status, error=error, duplicate=duplicate)
            if status is not None and 200 <= status < 300:
                self.delivered.add((event_type_of(event), str(event["id"]).lower()))
                return
            if status in (400, 401, 403, 413):
                return
            wait = RETRY_SCHEDULE[min(attempt - 1, len(RETRY_SCHEDULE) - 1)]
            await self.clock.sleep_until(self.clock.now() + timedelta(seconds=wait))
        self._log(sub, event, attempt=self.max_attempts, status=None, error="dropped", duplicate=duplicate)

    def _log(self, sub: EventSubscription, event: dict[str, Any], **fields: Any) -> None:
        event_type = event.get("eventType") or event.get("type") or ""
        self.log.append(
            {
                "time": _iso(self.clock.now()),
                "subscription": sub.name,
                "eventType": event_type,
                "id": event["id"],
                **fields,
            }
        )

    def confirm_validation(self, name: str, code: str) -> bool:
        """The manual handshake: a GET of ``validationUrl`` validates the subscription."""
        for sub in self.subscriptions:
            if sub.name.lower() == name.lower() and self._pending_codes.get(sub.name) == code:
                sub.validated = True
                self.validations.append(
                    {
                        "time": _iso(self.clock.now()),
                        "subscription": sub.name,
                        "validated": True,
                        "detail": "validationUrl GET",
                    }
                )
                return True
        return False

    async def _validate(self, sub: EventSubscription) -> None:
        """Event Grid's endpoint validation (contracts §10.4), before the first delivery."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        detail = ""
        try:
            if sub.schema == "CloudEventSchemaV1_0":
                origin = "eventgrid.azure.net"
                async with self._session.options(sub.endpoint, headers={"WebHook-Request-Origin": origin}) as resp:
                    allowed = resp.headers.get("WebHook-Allowed-Origin", "")
                    sub.validated = resp.status == 200 and allowed in (origin, "*")
                    detail = f"OPTIONS -> {resp.status}, WebHook-Allowed-Origin={allowed!r}"
            else:
                code = self._pending_codes.get(sub.name) or str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
                self._pending_codes[sub.name] = code  # stable, so a validationUrl handed out stays valid
                now = self.clock.now()
                event = {
                    "id": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
                    "topic": f"/subscriptions/{sub.name}",
                    "subject": "",
                    "data": {
                        "validationCode": code,
                        "validationUrl": f"{self.validation_url_base}/_sim/eventSubscriptions/{sub.name}"
                        f"/validate?code={code}",
                    },
                    "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                    "eventTime": _iso(now),
                    "metadataVersion": "1",
                    "dataVersion": "1",
                }
                headers = {
                    "Content-Type": "application/json",
                    "aeg-event-type": "SubscriptionValidation",
                    "aeg-subscription-name": sub.name.upper(),
                    "aeg-delivery-count": "0",
                    **sub.headers,
                }
                async with self._session.post(sub.endpoint, data=json.dumps([event]), headers=headers) as resp:
                    text = await resp.text()
                    try:
                        answer = json.loads(text) if text else {}
                    except ValueError:
                        answer = {}
                    sub.validated = sub.validated or (
                        resp.status == 200 and isinstance(answer, dict) and answer.get("validationResponse") == code
                    )
                    detail = f"POST -> {resp.status} {text[:200]}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
        self.validations.append(
            {"time": _iso(self.clock.now()), "subscription": sub.name, "validated": sub.validated, "detail": detail}
        )

    async def _post(self, sub: EventSubscription, event: dict[str, Any], attempt: int) -> tuple[int | None, str | None]:
        event_type = event.get("eventType") or event.get("type") or ""
        injected = self._fault(event_type) if self._fault else None
        if injected is not None:
            return injected, "injected fault"
        cloud = sub.schema == "CloudEventSchemaV1_0"
        headers = {
            "Content-Type": "application/cloudevents-batch+json; charset=utf-8" if cloud else "application/json",
            "aeg-event-type": "Notification",
            "aeg-subscription-name": sub.name.upper(),
            "aeg-delivery-count": str(attempt - 1),
            "aeg-data-version": "1.0",
            "aeg-metadata-version": "1",
            **sub.headers,
        }
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with self._session.post(sub.endpoint, data=json.dumps([event]), headers=headers) as response:
                await response.read()
                return response.status, None if response.status < 300 else f"HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
