"""Process-wide dependencies of the triggers, built lazily once: settings, plan, ledger.

Why lazily: the Functions worker imports ``function_app.py`` to index functions before any
request; building clients at import time would make indexing depend on the network and on
settings that only matter when a request arrives. Why cached: one Table client pool and one
parsed plan per worker process. Tests (and the local host's restarts) call :func:`reset`.
"""

from __future__ import annotations

import threading
from typing import Any

from patchrings.domain.plan import Plan, load_plan_file
from patchrings.settings import Settings

_lock = threading.Lock()
_cache: dict[str, Any] = {}


def settings() -> Settings:
    with _lock:
        if "settings" not in _cache:
            _cache["settings"] = Settings.from_env()
        return _cache["settings"]  # type: ignore[no-any-return]


def plan() -> Plan:
    """The plan the app is configured with (``PATCHRINGS_PLAN_PATH``), validated."""
    current = settings()
    with _lock:
        if "plan" not in _cache:
            _cache["plan"] = load_plan_file(current.plan_file)
        return _cache["plan"]  # type: ignore[no-any-return]


def ledger() -> Any:
    """The Table-storage ledger (``patchrings.ledger.Ledger``)."""
    current = settings()
    with _lock:
        if "ledger" not in _cache:
            from patchrings.clients import AzureClients
            from patchrings.ledger import Ledger

            _cache["ledger"] = Ledger.from_clients(AzureClients(current))
        return _cache["ledger"]


def override(**values: Any) -> None:
    """Inject ``settings``, ``plan`` and/or ``ledger`` (tests running the triggers with fakes)."""
    unknown = set(values) - {"settings", "plan", "ledger"}
    if unknown:
        raise ValueError(f"cannot override {sorted(unknown)}; allowed: settings, plan, ledger")
    with _lock:
        _cache.update(values)


def reset() -> None:
    with _lock:
        _cache.clear()
