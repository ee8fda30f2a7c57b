"""The durable engine on its own (no HTTP server): stopping, and the "still wanted" check.

These drive :class:`DurableEngine` directly on the test's event loop with an index built by hand,
so the timing that matters (what happens within one loop turn) is under the test's control.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import Clock, make_clock
from emulator.host import engine as engine_module
from emulator.host import history as h
from emulator.host.engine import DurableEngine, Instance
from emulator.host.indexing import AppIndex, FunctionEntry
from emulator.host.store import Store

pytestmark = pytest.mark.emulator

START = "2025-01-01T12:00:00Z"


def blocking_activity(release: asyncio.Event) -> FunctionEntry:
    """An async activity that runs until ``release`` is set (keeps one activity in flight)."""

    async def block(value: Any) -> Any:
        await release.wait()
        return value

    return FunctionEntry(name="block", trigger_type="activityTrigger", trigger_name="value",
                         trigger={}, bindings=[], user_function=block, durable_name="Block")


@pytest.fixture
async def clock() -> AsyncIterator[Clock]:
    clock = make_clock("skip", start=START)
    yield clock
    clock.close()


def running_instance(engine: DurableEngine, clock: Clock, instance_id: str) -> Instance:
    now = clock.now()
    inst = Instance(instance_id=instance_id, name="Nobody", execution_id="e1", status="Running",
                    input_text=None, created=now, updated=now)
    engine.instances[instance_id] = inst
    return inst


async def test_stop_ends_a_scheduler_woken_in_the_same_loop_turn(
        tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A stopping host whose scheduler was woken just before stop() (an activity ended, an event came
    in) stops at once. It used to keep running: Python 3.11's ``asyncio.wait_for`` returns instead of
    raising when the cancellation finds its inner wait already done, so stop() abandoned the
    scheduler after 5 s ("1 task(s) had not stopped after 5 s; abandoned")."""
    monkeypatch.setattr(engine_module, "STOP_WAIT_SECONDS", 2.0)
    release = asyncio.Event()
    index = AppIndex(app_dir=tmp_path)
    index.activities["block"] = blocking_activity(release)
    engine = DurableEngine(index, clock, Store(":memory:"), activity_workers=1, max_batch_delay=30.0)
    await engine.start()
    inst = running_instance(engine, clock, "i1")
    inst.pending[0] = {"kind": "activity", "name": "Block", "input": None, "group": None}
    engine.activities.enqueue(inst, 0)
    engine.deliver(inst, h.event_raised(clock.now(), "first", None))
    for _ in range(20):  # the scheduler now holds the batch for the activity in flight (a timed wait)
        await asyncio.sleep(0)
    assert engine.activities.in_flight("i1") == 1 and inst.episodes == 0
    scheduler = engine._tasks[0]

    engine.deliver(inst, h.event_raised(clock.now(), "second", None))  # wakes the scheduler...
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="emulator.host"):
        await engine.stop()  # ...and is cancelled in the same loop turn
    release.set()

    assert time.monotonic() - started < 1.0
    assert scheduler.done() and scheduler.cancelled()
    assert "abandoned" not in caplog.text
    assert inst.episodes == 0  # no episode ran while stopping


async def test_a_result_is_not_delivered_to_another_execution_or_an_ended_instance(
        tmp_path: Path, clock: Clock) -> None:
    """still_wanted: the one check shared by timers, activities, episodes and parent notification."""
    engine = DurableEngine(AppIndex(app_dir=tmp_path), clock, Store(":memory:"))
    inst = running_instance(engine, clock, "i1")
    inst.pending[3] = {"kind": "timer", "fireAt": h.fmt_ts(clock.now() + timedelta(hours=1)), "path": "0"}

    assert engine.still_wanted("i1", "e1", 3) is inst
    assert engine.still_wanted("i1", "e1") is inst
    assert engine.still_wanted("i1", "e1", 4) is None  # not (or no longer) pending
    assert engine.still_wanted("i1", "e0", 3) is None  # an earlier execution (restart, continue-as-new)
    assert engine.still_wanted("i2", "e1", 3) is None  # purged
    inst.status = "Terminated"
    assert engine.still_wanted("i1", "e1", 3) is None  # ended while the work ran
    assert engine.still_wanted("i1", "e1") is None
