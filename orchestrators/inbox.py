"""Maintenance events as the rollout sees them: decoded, de-duplicated and matched to runs.

Why a separate pure module: Event Grid delivers at least once and in any order, and the Python
Durable SDK hands an external event over as JSON *text* when the client raised it (the payload is
double-encoded, durable-host-protocol.md §6). The rollout must apply each (correlationId, kind)
once, accept a post-event that overtakes its pre-event, and ignore runs it did not target. Kept
free of Durable types so the rules are unit-tested directly; the orchestrator rebuilds an inbox
on every replay from the same event sequence, so its state stays deterministic.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from patchrings.domain.arm_ids import same_arm_id
from patchrings.domain.events import MaintenanceEvent
from patchrings.domain.timeutil import iso, parse_instant
from patchrings.errors import EventRejected

__all__ = ["POST", "PRE", "EventInbox", "MaintenanceEvent", "decode_payload", "event_document",
           "event_from_payload", "event_key", "same_arm_id"]

PRE = "pre"
POST = "post"


def decode_payload(value: Any) -> dict[str, Any] | None:
    """An external-event payload as a dict: JSON text (Python client) or a dict (raw HTTP)."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return None
        # Some paths encode twice; unwrap once more.
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None
    return value if isinstance(value, dict) else None


#: keys of older payloads (short names) and the domain key each stands for
_SHORT_KEYS = {"configurationId": "maintenanceConfigurationId", "start": "startDateTime",
               "end": "endDateTime", "cancellationCutoff": "cancellationCutOffDateTime"}


def event_document(payload: Any) -> dict[str, Any] | None:
    """A raised maintenance event as the domain's ``MaintenanceEvent.to_dict()`` document (short
    key names of older payloads mapped, ``kind`` lower-cased); None unless it names a kind
    (pre / post), a correlationId and a maintenance configuration."""
    data = decode_payload(payload)
    if not data:
        return None
    doc = dict(data)
    for short, long in _SHORT_KEYS.items():
        if not doc.get(long) and doc.get(short):
            doc[long] = doc[short]
    doc["kind"] = str(doc.get("kind") or "").lower()
    if doc["kind"] not in (PRE, POST) or not doc.get("correlationId") or not doc.get("maintenanceConfigurationId"):
        return None
    return doc


def event_from_payload(payload: Any) -> MaintenanceEvent | None:
    """The :class:`MaintenanceEvent` an external-event payload carries (the trigger raises
    ``MaintenanceEvent.to_dict()``), or None when it is not a usable one (no kind, ids or a
    valid ``startDateTime``)."""
    doc = event_document(payload)
    if doc is None:
        return None
    try:
        return MaintenanceEvent.from_dict(doc)
    except (EventRejected, ValueError, TypeError, KeyError, OverflowError):
        return None


def event_key(event: MaintenanceEvent) -> tuple[str, str, str]:
    """De-duplication key: (correlationId, kind), plus the start for a pre-event, so a forged
    pre-event that reuses a real run's correlationId with another start cannot make the real
    one look like a duplicate."""
    start = event.start.strftime("%Y%m%d%H%M%S") if event.kind == PRE else ""
    return (event.correlation_id.lower(), event.kind, start)


class EventInbox:
    """Remembers every distinct event once; hands out the pre/post event a wait point needs."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str, str]] = set()
        self._pending: list[MaintenanceEvent] = []
        self.duplicates = 0
        self.rejected = 0

    def offer(self, payload: Any) -> MaintenanceEvent | None:
        """Accept one delivery; returns the event if it is new, None for duplicates/garbage."""
        event = event_from_payload(payload)
        if event is None:
            self.rejected += 1
            return None
        key = event_key(event)
        if key in self._seen:
            self.duplicates += 1
            return None
        self._seen.add(key)
        self._pending.append(event)
        return event

    def take_pre(self, configuration_id: str, not_before: str | None = None) -> MaintenanceEvent | None:
        """The earliest unconsumed pre-event of ``configuration_id`` for a run starting at or
        after ``not_before`` (ISO instant); older runs are left for the fail-closed guard."""
        for event in self._pending:
            if event.kind != PRE or not same_arm_id(event.configuration_id, configuration_id):
                continue
            if not_before and event.start < parse_instant(not_before):
                continue
            self._pending.remove(event)
            return event
        return None

    def take_pre_for(
        self,
        configuration_id: str,
        run_start: datetime,
        *,
        tolerance: timedelta = timedelta(minutes=5),
        keep_start: datetime | None = None,
    ) -> tuple[MaintenanceEvent | None, list[tuple[MaintenanceEvent, str]]]:
        """The pre-event of exactly the run the rollout computed (issue 13.14), and the refused ones.

        A pre-event of ``configuration_id`` matches when its correlationId is
        ``<configuration>/providers/Microsoft.Maintenance/applyUpdates/<name>`` with ``<name>`` the
        ``yyyyMMddHHmmss`` of the computed ``run_start``, and its own start is within ``tolerance``
        of that instant. Every other pending pre-event of the configuration is removed and returned
        with the reason it was refused, except one for ``keep_start`` (the next computed run, which
        may legitimately arrive early for short recurrences), which stays pending.
        """
        prefix = configuration_id.rstrip("/").lower() + "/providers/microsoft.maintenance/applyupdates/"
        wanted = run_start.astimezone(UTC).strftime("%Y%m%d%H%M%S")
        match: MaintenanceEvent | None = None
        refused: list[tuple[MaintenanceEvent, str]] = []
        for event in list(self._pending):
            if event.kind != PRE or not same_arm_id(event.configuration_id, configuration_id):
                continue
            start = event.start
            reason = None
            if not event.correlation_id.lower().startswith(prefix) or "/" in event.run_name:
                reason = "its correlationId is not a run of this maintenance configuration"
            elif event.run_name != start.strftime("%Y%m%d%H%M%S"):
                reason = f"its run name {event.run_name} is not the start it claims ({_fmt(start)})"
            elif keep_start is not None and abs(start - keep_start) <= tolerance and event.run_name != wanted:
                continue  # the next computed run: left for the next wait
            elif event.run_name != wanted or abs(start - run_start) > tolerance:
                reason = f"run {event.run_name} is not the run the rollout computed ({wanted}, {_fmt(run_start)})"
            elif match is not None:
                reason = "a pre-event for this run was already taken"
            self._pending.remove(event)
            if reason is None:
                match = event
            else:
                refused.append((event, reason))
        return match, refused

    def take_post(self, correlation_id: str) -> MaintenanceEvent | None:
        """The post-event of one run, even if it arrived before that run's pre-event."""
        for event in self._pending:
            if event.kind == POST and event.correlation_id.lower() == correlation_id.lower():
                self._pending.remove(event)
                return event
        return None


def _fmt(value: datetime) -> str:
    return iso(value)
