"""The app's one dependency container: settings, plan, Azure clients and ledger, per process.

Why one: triggers and activities run in the same worker process and talk to the same Azure;
they share one set of clients (one connection pool, one credential) and one ledger.

Why lazy: the Functions worker imports every blueprint while indexing the app, before any
invocation; building clients at import time would make indexing depend on the network. The
composition root (``function_app.py``) calls :func:`load` when the app is imported: it forgets
anything built before (a fresh worker process has nothing built; the local host imports the app
afresh for every host it starts, with that host's settings) and validates the settings and the
plan at once, so a bad setting or plan stops the app at start-up with every error named. Clients
and the ledger are built on first use and then shared (thread-safe: sync functions run on a pool).

Settings changes in Azure restart the worker process, so nothing here watches the environment.
Tests and tools pin values with :func:`override` (which :func:`load` keeps) and forget
everything with :func:`reset`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from patchrings.clients import AzureClients
from patchrings.domain.plan import Plan, load_plan_file
from patchrings.ledger import Ledger
from patchrings.settings import Settings

__all__ = ["clients", "ledger", "load", "override", "plan", "reset", "settings"]

T = TypeVar("T")
NAMES = ("settings", "plan", "clients", "ledger")

_lock = threading.RLock()
_built: dict[str, Any] = {}
_pinned: dict[str, Any] = {}


def _get(name: str, build: Callable[[], T]) -> T:
    with _lock:
        if name in _pinned:
            return _pinned[name]  # type: ignore[no-any-return]
        if name not in _built:
            _built[name] = build()
        return _built[name]  # type: ignore[no-any-return]


def settings() -> Settings:
    """The validated settings (raises ``SettingsInvalid`` naming every bad key)."""
    return _get("settings", Settings.from_env)


def plan() -> Plan:
    """The plan the app is configured with (``PATCHRINGS_PLAN_PATH``), validated."""
    return _get("plan", lambda: load_plan_file(settings().plan_file))


def clients() -> AzureClients:
    """The Azure SDK clients built from the settings (or a pinned fake with the same methods)."""
    return _get("clients", lambda: AzureClients(settings()))


def ledger() -> Ledger:
    """The Table-storage ledger on the same clients."""
    return _get("ledger", lambda: Ledger.from_clients(clients()))


def load() -> None:
    """Forget what was built and validate settings and plan now (the app's start-up)."""
    _forget_built()
    settings()
    plan()


def override(**values: Any) -> None:
    """Pin ``settings``, ``plan``, ``clients`` and/or ``ledger`` (tests and tools with fakes)."""
    unknown = set(values) - set(NAMES)
    if unknown:
        raise ValueError(f"cannot override {sorted(unknown)}; allowed: {', '.join(NAMES)}")
    with _lock:
        _pinned.update(values)


def reset() -> None:
    """Forget everything: built values (clients closed) and overrides."""
    with _lock:
        _pinned.clear()
    _forget_built()


def _forget_built() -> None:
    with _lock:
        stale = _built.get("clients")
        _built.clear()
    close = getattr(stale, "close", None)
    if callable(close):
        close()
