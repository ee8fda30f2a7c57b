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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from patchrings.domain.arm_ids import last_segment, same_arm_id

__all__ = ["POST", "PRE", "EventInbox", "RunEvent", "decode_payload", "same_arm_id"]

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


@dataclass(frozen=True)
class RunEvent:
    """The fields of a pre/post maintenance event that the rollout acts on."""

    kind: str
    correlation_id: str
    configuration_id: str
    start: str | None
    end: str | None
    cancellation_cutoff: str | None
    status: str | None
    raw: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """De-duplication key: (correlationId, kind), plus the start for a pre-event, so a forged
        pre-event that reuses a real run's correlationId with another start cannot make the real
        one look like a duplicate."""
        start = ""
        if self.kind == PRE and self.start:
            try:
                start = _instant(self.start).strftime("%Y%m%d%H%M%S")
            except ValueError:
                start = str(self.start)
        return (self.correlation_id.lower(), self.kind, start)

    @property
    def run_name(self) -> str:
        """The run name at the end of the correlationId (``.../applyUpdates/<yyyyMMddHHmmss>``)."""
        return last_segment(self.correlation_id)

    @classmethod
    def from_payload(cls, payload: Any) -> RunEvent | None:
        """Build from the trigger's payload; None when it is not a usable maintenance event."""
        data = decode_payload(payload)
        if not data:
            return None
        # The domain's MaintenanceEvent.to_dict() keys, or the short keys of to_dict() below.
        kind = str(data.get("kind") or "").lower()
        correlation_id = data.get("correlationId")
        configuration_id = data.get("maintenanceConfigurationId") or data.get("configurationId")
        if kind not in (PRE, POST) or not correlation_id or not configuration_id:
            return None
        return cls(
            kind=kind,
            correlation_id=str(correlation_id),
            configuration_id=str(configuration_id),
            start=data.get("startDateTime") or data.get("start"),
            end=data.get("endDateTime") or data.get("end"),
            cancellation_cutoff=data.get("cancellationCutOffDateTime") or data.get("cancellationCutoff"),
            status=data.get("status"),
            raw=data,
        )

    def to_dict(self) -> dict[str, Any]:
        """In the domain's ``MaintenanceEvent.to_dict()`` key names (what the trigger raises)."""
        return {
            "kind": self.kind,
            "correlationId": self.correlation_id,
            "maintenanceConfigurationId": self.configuration_id,
            "startDateTime": self.start,
            "endDateTime": self.end,
            "cancellationCutOffDateTime": self.cancellation_cutoff,
            "status": self.status,
        }


class EventInbox:
    """Remembers every distinct event once; hands out the pre/post event a wait point needs."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str, str]] = set()
        self._pending: list[RunEvent] = []
        self.duplicates = 0
        self.rejected = 0

    def offer(self, payload: Any) -> RunEvent | None:
        """Accept one delivery; returns the event if it is new, None for duplicates/garbage."""
        event = RunEvent.from_payload(payload)
        if event is None:
            self.rejected += 1
            return None
        if event.key in self._seen:
            self.duplicates += 1
            return None
        self._seen.add(event.key)
        self._pending.append(event)
        return event

    def take_pre(self, configuration_id: str, not_before: str | None = None) -> RunEvent | None:
        """The earliest unconsumed pre-event of ``configuration_id`` for a run starting at or
        after ``not_before`` (ISO instant); older runs are left for the fail-closed guard."""
        for event in self._pending:
            if event.kind != PRE or not same_arm_id(event.configuration_id, configuration_id):
                continue
            if not_before and event.start and _instant(event.start) < _instant(not_before):
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
    ) -> tuple[RunEvent | None, list[tuple[RunEvent, str]]]:
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
        match: RunEvent | None = None
        refused: list[tuple[RunEvent, str]] = []
        for event in list(self._pending):
            if event.kind != PRE or not same_arm_id(event.configuration_id, configuration_id):
                continue
            start = _maybe_instant(event.start)
            reason = None
            if not event.correlation_id.lower().startswith(prefix) or "/" in event.run_name:
                reason = "its correlationId is not a run of this maintenance configuration"
            elif start is None:
                reason = "it has no valid startDateTime"
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

    def take_post(self, correlation_id: str) -> RunEvent | None:
        """The post-event of one run, even if it arrived before that run's pre-event."""
        for event in self._pending:
            if event.kind == POST and event.correlation_id.lower() == correlation_id.lower():
                self._pending.remove(event)
                return event
        return None

    def mark_seen(self, event: RunEvent) -> None:
        """Record an event handled elsewhere so a redelivery is recognised as a duplicate."""
        self._seen.add(event.key)


def _maybe_instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return _instant(str(text))
    except ValueError:
        return None


def _fmt(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
