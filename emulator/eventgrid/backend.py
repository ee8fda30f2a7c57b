"""The local Event Grid topic's backend: what one topic holds, below its HTTP handlers.

State: the accepted CloudEvents in publish order, the injected faults waiting for the next POSTs,
and the number of publish requests. Thread-safe (tests read it from other threads).
:mod:`emulator.eventgrid.server` validates requests and answers in Event Grid's shapes; the
package docstring (:mod:`emulator.eventgrid`) documents the behaviour.

SUPPORTED: ``publish_events`` (a validated batch, all or nothing), ``list_events`` (filter by
``type`` / ``source``, optional ``(source, id)`` dedupe), ``clear_events``, ``add_fault``
(``status`` / ``accept-then-drop``, ``count``) / ``next_fault`` / ``clear_faults``.

LIMITATIONS: in memory only; one topic per backend.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["TopicBackend"]


class TopicBackend:
    """See the module docstring."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._faults: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.requests = 0

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    # -- events ---------------------------------------------------------------------------------
    @property
    def events(self) -> list[dict[str, Any]]:
        """A copy of every accepted event, in publish order."""
        with self._lock:
            return [dict(e) for e in self._events]

    def publish_events(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._events.extend(events)

    def list_events(
        self, *, event_type: str | None = None, source: str | None = None, dedupe: bool = False
    ) -> list[dict[str, Any]]:
        events = self.events
        if event_type:
            events = [e for e in events if e.get("type") == event_type]
        if source:
            events = [e for e in events if e.get("source") == source]
        if dedupe:
            seen: set[tuple[str, str]] = set()
            unique = []
            for event in events:
                key = (str(event.get("source")), str(event.get("id")))
                if key not in seen:
                    seen.add(key)
                    unique.append(event)
            events = unique
        return events

    def clear_events(self) -> None:
        with self._lock:
            self._events.clear()

    # -- injected faults ------------------------------------------------------------------------
    def add_fault(self, fault: Any) -> int:
        """Queue a fault for the next POSTs; the number queued. ``ValueError`` names a bad field."""
        if not isinstance(fault, dict) or fault.get("mode") not in ("status", "accept-then-drop"):
            raise ValueError("mode must be 'status' or 'accept-then-drop'")
        count = fault.get("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        if fault["mode"] == "status" and not (isinstance(fault.get("status", 503), int)
                                              and 400 <= fault.get("status", 503) <= 599):
            raise ValueError("status must be an integer 400-599")
        with self._lock:
            self._faults.append(dict(fault))
        return len(self._faults)

    def next_fault(self) -> dict[str, Any] | None:
        """The fault that applies to this POST (its count spent by one), or ``None``."""
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault["count"] = int(fault.get("count", 1)) - 1
            if fault["count"] <= 0:
                self._faults.pop(0)
            return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
