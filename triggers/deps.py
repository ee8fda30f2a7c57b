"""Process-wide dependencies of the triggers, built lazily: settings, plan, ledger.

Why lazily: the Functions worker imports ``function_app.py`` to index functions before any
request; building clients at import time would make indexing depend on the network and on
settings that only matter when a request arrives. Why cached: one Table client pool and one
parsed plan per worker process. The cache is keyed by the ``PATCHRINGS_*`` environment (and the
App Service variables the settings read, e.g. ``WEBSITE_AUTH_ENABLED``), so a
process that runs several local hosts one after another (tests) never uses a stale ledger;
:func:`override` pins values regardless of the environment (tests with fakes).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from patchrings.domain.plan import Plan, load_plan_file
from patchrings.settings import PLATFORM_VARIABLES, Settings

_lock = threading.RLock()
_cache: dict[str, Any] = {}
_pinned: dict[str, Any] = {}
_key: tuple[tuple[str, str], ...] | None = None


def _environment_key() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items()
                        if k.upper().startswith("PATCHRINGS_") or k.upper() in PLATFORM_VARIABLES))


def _get(name: str, build: Any) -> Any:
    global _key
    with _lock:
        if name in _pinned:
            return _pinned[name]
        key = _environment_key()
        if key != _key:
            _cache.clear()
            _key = key
        if name not in _cache:
            _cache[name] = build()
        return _cache[name]


def settings() -> Settings:
    return _get("settings", Settings.from_env)  # type: ignore[no-any-return]


def plan() -> Plan:
    """The plan the app is configured with (``PATCHRINGS_PLAN_PATH``), validated."""
    return _get("plan", lambda: load_plan_file(settings().plan_file))  # type: ignore[no-any-return]


def ledger() -> Any:
    """The Table-storage ledger (``patchrings.ledger.Ledger``)."""

    def build() -> Any:
        from patchrings.clients import AzureClients
        from patchrings.ledger import Ledger

        return Ledger.from_clients(AzureClients(settings()))

    return _get("ledger", build)


def override(**values: Any) -> None:
    """Pin ``settings``, ``plan`` and/or ``ledger`` (tests running the triggers with fakes)."""
    unknown = set(values) - {"settings", "plan", "ledger"}
    if unknown:
        raise ValueError(f"cannot override {sorted(unknown)}; allowed: settings, plan, ledger")
    with _lock:
        _pinned.update(values)


def reset() -> None:
    global _key
    with _lock:
        _cache.clear()
        _pinned.clear()
        _key = None
