"""One durable orchestration instance as the engine keeps it, its statuses, the client-visible error.

Why a module of its own: the instance record is what every part of the engine (replay, the
activity runner, client operations, the durable HTTP API) reads and changes; keeping it apart
lets those modules import it without importing each other. ``Instance.meta()`` is the row the
store keeps besides history and inbox (its JSON shape is the persisted format: do not change it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from emulator.host import history as h

__all__ = ["ACTIVE", "TERMINAL", "EngineError", "Instance"]

ACTIVE = ("Pending", "Running", "Suspended")
TERMINAL = ("Completed", "Failed", "Terminated", "Canceled")


class EngineError(Exception):
    """A client-visible engine error with a stable ``code`` and an HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class Instance:
    """One orchestration instance; ``meta()`` is what the store keeps besides history/inbox."""

    instance_id: str
    name: str
    execution_id: str
    status: str
    input_text: str | None
    created: datetime
    updated: datetime
    output: Any = None
    custom_status: Any = None
    parent: dict[str, Any] | None = None
    prev_actions: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 0
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    groups: dict[int, dict[str, Any]] = field(default_factory=dict)
    episodes: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    inbox: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    inbox_since: float = 0.0
    version: str = ""
    #: CPU seconds this host process spent running the instance's episodes (not persisted)
    cpu_seconds: float = 0.0

    def meta(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "version": self.version,
            "name": self.name,
            "executionId": self.execution_id,
            "status": self.status,
            "input": self.input_text,
            "created": h.fmt_ts(self.created),
            "updated": h.fmt_ts(self.updated),
            "output": self.output,
            "customStatus": self.custom_status,
            "parent": self.parent,
            "prevActions": self.prev_actions,
            "nextId": self.next_id,
            "pending": {str(k): v for k, v in self.pending.items()},
            "groups": {str(k): v for k, v in self.groups.items()},
            "episodes": self.episodes,
        }

    @classmethod
    def from_meta(cls, m: dict[str, Any]) -> Instance:
        return cls(
            instance_id=m["instanceId"],
            name=m["name"],
            execution_id=m["executionId"],
            status=m["status"],
            input_text=m["input"],
            created=h.parse_ts(m["created"]),
            updated=h.parse_ts(m["updated"]),
            output=m.get("output"),
            custom_status=m.get("customStatus"),
            parent=m.get("parent"),
            prev_actions=m.get("prevActions") or [],
            next_id=m.get("nextId", 0),
            pending={int(k): v for k, v in (m.get("pending") or {}).items()},
            groups={int(k): v for k, v in (m.get("groups") or {}).items()},
            episodes=m.get("episodes", 0),
            version=m.get("version") or "",
        )
