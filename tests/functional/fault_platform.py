"""Platforms for the fault-injection suites (test_fault_injection.py, test_guard_faults.py).

Why: those suites start one local platform per case, and each platform used to start its own
Azurite (~1.5 s of a few seconds' case). Here one Azurite serves a whole module and every
platform gets its own ledger tables (a fresh ``PATCHRINGS_LEDGER_TABLE_PREFIX``), so no case sees
another's rows. The host's durable store stays per platform (``:memory:``), and so do the ARM
simulator and the clock: a skip clock held from before anything starts (as
``LocalPlatform(hold_clock=True)`` does), at the suites' start instant.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

START = "2026-11-16T06:00:00Z"
_PREFIXES = itertools.count(1)


def shared_azurite(tmp_path_factory: Any) -> Iterator[str]:
    """Body of a module-scoped fixture: one in-memory Azurite; yields its connection string."""
    from emulator.azurite import Azurite

    azurite = Azurite(Path(tmp_path_factory.mktemp("azurite")) / "azurite", in_memory=True).start()
    try:
        yield azurite.connection_string
    finally:
        azurite.stop()


def held_platforms(connection: str, tmp_path: Path, start: str = START) -> Iterator[Callable[..., Any]]:
    """Body of a function-scoped fixture: ``held(scenario, settings=None)`` -> a started platform.

    Its skip clock is held from before it starts; its ledger lives in ``connection``'s Azurite
    under a prefix of its own (unless ``settings`` name another ledger). Every platform started is
    stopped (and its hold released) at teardown.
    """
    from emulator.clock import make_clock
    from emulator.platform import LocalPlatform

    started: list[tuple[Any, Any]] = []

    def factory(scenario: dict[str, Any], *, settings: dict[str, str] | None = None) -> Any:
        clock = make_clock("skip", start=start)
        hold = clock.hold()
        hold.__enter__()
        all_settings = {
            "PATCHRINGS_APPROVER_HEADER_FALLBACK": "true",
            "PATCHRINGS_LEDGER_CONNECTION": connection,
            "PATCHRINGS_LEDGER_TABLE_PREFIX": f"fi{next(_PREFIXES)}x",
            **(settings or {}),
        }
        platform = LocalPlatform(scenario, clock=clock, start=start, state_dir=tmp_path / f"platform-{len(started)}",
                                 settings=all_settings, use_azurite=False)
        started.append((platform, hold))
        return platform.start()

    try:
        yield factory
    finally:
        for platform, hold in reversed(started):
            platform.stop()
            hold.__exit__(None, None, None)
