"""Process-wide dependencies of the activities, built lazily once from the environment.

Why lazy: the Functions worker imports every blueprint while indexing the app, before any
activity runs; building clients (or failing on settings) at import time would make indexing
slow and brittle. The first activity call builds :class:`Settings` (failing fast with
``SettingsInvalid`` naming every bad key), :class:`AzureClients` and the :class:`Ledger`, and
every later call in the process reuses them (thread-safe: sync activities run on a pool).

Tests either call the activity cores directly with their own dependencies or install a
:class:`Deps` with :func:`set_deps`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from patchrings.clients import AzureClients
from patchrings.ledger import Ledger
from patchrings.settings import Settings

__all__ = ["Deps", "deps", "set_deps"]


@dataclass
class Deps:
    """Settings, clients and ledger for one process (ledger built on first use)."""

    settings: Settings
    clients: Any  # AzureClients or a fake with the same methods
    _ledger: Ledger | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ledger(self) -> Ledger:
        with self._lock:
            if self._ledger is None:
                self._ledger = Ledger.from_clients(self.clients)
            return self._ledger

    @classmethod
    def from_settings(cls, settings: Settings) -> Deps:
        return cls(settings=settings, clients=AzureClients(settings))


_lock = threading.Lock()
_current: Deps | None = None


def deps() -> Deps:
    """The process's dependencies, built from ``os.environ`` on first call."""
    global _current
    with _lock:
        if _current is None:
            _current = Deps.from_settings(Settings.from_env())
        return _current


def set_deps(value: Deps | None) -> None:
    """Install (or with ``None`` forget) the process's dependencies; for tests and tools."""
    global _current
    with _lock:
        _current = value
