"""SQLite persistence for durable instances (embedded, write-through).

Why this layout: a fan-out of N must stay O(N) in bytes written, so history is an
append-only table (one row per event) instead of a blob rewritten per episode; undelivered
events sit in an ``inbox`` table until the episode that consumes them commits, in the same
transaction as the history rows it appends. After a SIGKILL the host reloads everything,
re-arms timers and re-runs activities that were in flight (at-least-once, as in Azure).

``:memory:`` gives the same code path for tests. File databases use WAL with
``synchronous=NORMAL``: a killed *process* loses nothing committed (an OS crash may lose
the last transactions, which is acceptable for a local emulator).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, idx)
);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_by_instance ON inbox (instance_id, id);
"""


class Store:
    """A tiny write-through store: instance metadata, history rows, inbox rows."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes; nested uses join the outer transaction."""
        if self._depth == 0:
            self._db.execute("BEGIN")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ writes
    def put_meta(self, instance_id: str, meta: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO instances (instance_id, meta) VALUES (?, ?) "
            "ON CONFLICT(instance_id) DO UPDATE SET meta = excluded.meta",
            (instance_id, json.dumps(meta)),
        )

    def append_history(self, instance_id: str, start: int, events: Iterable[dict[str, Any]]) -> None:
        self._db.executemany(
            "INSERT INTO history (instance_id, idx, event) VALUES (?, ?, ?)",
            [(instance_id, start + i, json.dumps(ev)) for i, ev in enumerate(events)],
        )

    def clear_history(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))

    def add_inbox(self, instance_id: str, event: dict[str, Any]) -> int:
        cur = self._db.execute(
            "INSERT INTO inbox (instance_id, event) VALUES (?, ?)", (instance_id, json.dumps(event))
        )
        return int(cur.lastrowid or 0)

    def remove_inbox(self, row_ids: Iterable[int]) -> None:
        self._db.executemany("DELETE FROM inbox WHERE id = ?", [(r,) for r in row_ids])

    def delete_instance(self, instance_id: str) -> None:
        for table in ("instances", "history", "inbox"):
            self._db.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))

    # ------------------------------------------------------------------ reads
    def load_all(self) -> list[tuple[dict[str, Any], list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]]:
        """Every instance as (meta, history, [(inbox row id, event)])."""
        out = []
        for instance_id, meta in self._db.execute("SELECT instance_id, meta FROM instances").fetchall():
            history = [
                json.loads(row[0])
                for row in self._db.execute(
                    "SELECT event FROM history WHERE instance_id = ? ORDER BY idx", (instance_id,)
                )
            ]
            inbox = [
                (int(row[0]), json.loads(row[1]))
                for row in self._db.execute(
                    "SELECT id, event FROM inbox WHERE instance_id = ? ORDER BY id", (instance_id,)
                )
            ]
            out.append((json.loads(meta), history, inbox))
        return out
