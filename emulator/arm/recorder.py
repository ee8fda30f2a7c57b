"""Recorder of every ARM request the simulator served.

Why: functional tests assert on what the app *did* to Azure ("no VM got installPatches twice for
one ring run", "Ring 2 was never touched", "only least-privilege actions were used"), not on
what it logged. Each record keeps simulated time, the caller's identity, method, path,
api-version, request body, status and the RBAC action. Thread-safe: tests read it from another
thread while the simulator's loop appends.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Recorder", "RequestRecord"]


@dataclass(frozen=True)
class RequestRecord:
    seq: int
    time: datetime
    identity: str | None
    method: str
    path: str
    query: dict[str, str]
    api_version: str | None
    body: Any
    status: int
    action: str | None
    operation: str | None
    error_code: str | None = None
    fault: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = self.time.isoformat().replace("+00:00", "Z")
        return data


class Recorder:
    """Append-only, queryable list of :class:`RequestRecord`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, **fields: Any) -> RequestRecord:
        with self._lock:
            record = RequestRecord(seq=len(self._records) + 1, **fields)
            self._records.append(record)
            return record

    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def find(
        self,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        action: str | None = None,
        identity: str | None = None,
        status: int | None = None,
        operation: str | None = None,
        since: datetime | None = None,
    ) -> list[RequestRecord]:
        """Records matching every given criterion (path and action compared case-insensitively)."""
        needle = path_contains.lower() if path_contains else None
        wanted_action = action.lower() if action else None
        out = []
        for record in self.records:
            if method and record.method != method.upper():
                continue
            if needle and needle not in record.path.lower():
                continue
            if wanted_action and (record.action or "").lower() != wanted_action:
                continue
            if identity and record.identity != identity:
                continue
            if status is not None and record.status != status:
                continue
            if operation and record.operation != operation:
                continue
            if since and record.time < since:
                continue
            out.append(record)
        return out
