"""Fixtures for the local Functions host tests: hosts on free ports, skip clocks, test apps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import make_clock
from emulator.host.testing import HostThread

APPS = Path(__file__).resolve().parent / "apps"
START = "2025-01-01T12:00:00Z"


@pytest.fixture
def host_factory() -> Iterator[Callable[..., HostThread]]:
    """``host_factory(app="basic", clock="skip", **HostThread kwargs)``; all are stopped at teardown."""
    started: list[HostThread] = []

    def factory(app: str | Path = "basic", *, clock: str = "skip", start: str = START, **kwargs: Any) -> HostThread:
        app_dir = app if isinstance(app, Path) else APPS / app
        ht = HostThread(app_dir, make_clock(clock, start=start), **kwargs)
        started.append(ht)
        return ht.start()

    yield factory
    for ht in reversed(started):
        ht.stop()
        ht.clock.close()


@pytest.fixture(scope="module")
def basic() -> Iterator[HostThread]:
    """The basic durable test app on a skip clock, shared by a module's tests (unique instance ids)."""
    clock = make_clock("skip", start=START)
    with HostThread(APPS / "basic", clock) as ht:
        yield ht
        assert ht.host.engine is not None
        assert ht.host.engine.stats["duplicate_completions"] == 0, "host/SDK sequence id mismatch"
    clock.close()
