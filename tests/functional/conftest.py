"""Fixtures shared by the functional tests that drive the app on the local platform."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

START = "2026-11-16T06:00:00Z"


@pytest.fixture
def held(platform_factory: Any) -> Iterator[Any]:
    """``held(scenario, **platform_kwargs)`` -> a started platform whose skip clock is held from
    before it starts (at ``START``).

    Why: the simulator's schedules would otherwise run the clock ahead (hours of simulated time)
    between the platform starting and the test taking the hold, making outcomes depend on timing.
    (The fault suites define their own ``held`` over ``fault_platform.held_platforms``.)
    """
    from emulator.clock import make_clock

    holds: list[Any] = []

    def start(scenario: dict[str, Any], **kwargs: Any) -> Any:
        clock = make_clock("skip", start=START)
        hold = clock.hold()
        hold.__enter__()
        holds.append(hold)
        return platform_factory(scenario=scenario, clock=clock, **kwargs)

    yield start
    for hold in holds:
        hold.__exit__(None, None, None)
