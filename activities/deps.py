"""Process-wide dependencies of the activities, built lazily once from the environment.

Why lazy: the Functions worker imports every blueprint while indexing the app, before any
activity runs; building clients (or failing on settings) at import time would make indexing
slow and brittle. The first activity call builds :class:`Settings` (failing fast with
``SettingsInvalid`` naming every bad key), :class:`AzureClients` and the :class:`Ledger`, and
every later call in the process reuses them (thread-safe: sync activities run on a pool).

The cache is keyed by the ``PATCHRINGS_*`` environment: when it changes (the local host swaps
``os.environ`` for each platform it starts in one process, and does not re-import this
module), the next call builds fresh dependencies instead of talking to a stale endpoint.

Tests either call the activity cores directly with their own dependencies or install a
:class:`Deps` with :func:`set_deps` (which pins it regardless of the environment).
"""

from __future__ import annotations

import os
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
_current_key: tuple[tuple[str, str], ...] | None = None
_pinned = False


def _environment_key() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("PATCHRINGS_")))


def deps() -> Deps:
    """The process's dependencies, built from ``os.environ`` (rebuilt if the settings change)."""
    global _current, _current_key
    with _lock:
        if _pinned and _current is not None:
            return _current
        key = _environment_key()
        if _current is None or key != _current_key:
            stale = _current
            _current = Deps.from_settings(Settings.from_env())
            _current_key = key
            if stale is not None and hasattr(stale.clients, "close"):
                stale.clients.close()
        return _current


def set_deps(value: Deps | None) -> None:
    """Pin (or with ``None`` forget) the process's dependencies; for tests and tools."""
    global _current, _current_key, _pinned
    with _lock:
        _current = value
        _current_key = None
        _pinned = value is not None
