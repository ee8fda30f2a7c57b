"""``orchestrators.waits``: the SDK 1.7 event-buffer workaround behind one small interface.

Stepped without a host: a stub context records what the waits ask of the SDK. What is pinned is
the workaround's contract -- one waiter per event name, reused until consumed; consuming drops
the SDK's buffered copy (``context.deferred_tasks``, azure-functions-durable-python#507); a Halt
wins a race by raising ``Halted`` and cancels the timers it raced; timers never exceed
``MAX_TIMER`` -- so that deleting the workaround later is a change in this module only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrators import names
from orchestrators.waits import MAX_TIMER, Halted, Waits, forget_buffered_event

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)


class Waiter:
    def __init__(self, name: str) -> None:
        self.name, self.result, self.is_completed = name, None, False


class Timer:
    def __init__(self, at: datetime) -> None:
        self.at, self.is_completed, self.cancelled = at, False, False

    def cancel(self) -> None:
        self.cancelled = True


class Stub:
    def __init__(self) -> None:
        self.current_utc_datetime = T0
        self.deferred_tasks: dict[str, Any] = {}
        self.asked: list[str] = []

    def wait_for_external_event(self, name: str) -> Waiter:
        self.asked.append(name)
        return Waiter(name)

    def create_timer(self, at: datetime) -> Timer:
        return Timer(at)

    def task_any(self, tasks: list[Any]) -> tuple[str, list[Any]]:
        return ("any", tasks)


def step(gen: Any, winner_of: Any) -> Any:
    """Run ``gen`` to its first yield, answer it with ``winner_of(tasks)``, return its value."""
    kind, tasks = next(gen)
    assert kind == "any"
    try:
        gen.send(winner_of(tasks))
    except StopIteration as stop:
        return stop.value
    raise AssertionError("race yielded twice")


def test_one_waiter_per_name_reused_until_consumed_and_the_buffer_forgotten() -> None:
    ctx = Stub()
    waits = Waits(ctx)
    first = waits.event(names.EV_APPROVAL)
    assert waits.event(names.EV_APPROVAL) is first and ctx.asked == [names.EV_APPROVAL]
    first.result, first.is_completed = {"verdict": "approve"}, True
    ctx.deferred_tasks[names.EV_APPROVAL] = "the SDK's stale buffered copy"
    ctx.deferred_tasks[names.EV_MAINTENANCE] = "another name's buffer stays"
    assert waits.consume(names.EV_APPROVAL) == {"verdict": "approve"}
    assert names.EV_APPROVAL not in ctx.deferred_tasks and names.EV_MAINTENANCE in ctx.deferred_tasks
    again = waits.event(names.EV_APPROVAL)
    assert again is not first and ctx.asked == [names.EV_APPROVAL, names.EV_APPROVAL]


def test_forget_buffered_event_tolerates_a_context_without_the_buffer() -> None:
    forget_buffered_event(object(), names.EV_HALT)  # no deferred_tasks: nothing to do
    ctx = Stub()
    forget_buffered_event(ctx, names.EV_HALT)
    assert ctx.deferred_tasks == {}


def test_a_race_won_by_its_task_returns_it_and_keeps_the_halt_waiter() -> None:
    ctx = Stub()
    waits = Waits(ctx)
    event, timer = waits.event(names.EV_MAINTENANCE), waits.timer(T0 + timedelta(hours=1))
    assert step(waits.race(event, timer), lambda tasks: tasks[0]) is event
    assert not timer.cancelled and not waits.halt_arrived()
    assert waits.halt() is waits.halt() and ctx.asked.count(names.EV_HALT) == 1


def test_a_halt_wins_a_race_raises_halted_cancels_timers_and_is_taken_once() -> None:
    ctx = Stub()
    waits = Waits(ctx)
    event, timer = waits.event(names.EV_APPROVAL), waits.timer(T0 + timedelta(hours=4))
    gen = waits.race(event, timer)
    _kind, tasks = next(gen)
    halt = tasks[-1]
    halt.result, halt.is_completed = '{"by": "bob@contoso.com", "reason": "incident"}', True  # JSON text, as raised
    ctx.deferred_tasks[names.EV_HALT] = "buffered"
    with pytest.raises(Halted) as raised:
        gen.send(halt)
    assert (raised.value.by, raised.value.reason) == ("bob@contoso.com", "incident")
    assert timer.cancelled and not hasattr(event, "cancel")  # the approval waiter stays for later
    assert names.EV_HALT not in ctx.deferred_tasks and not waits.halt_arrived()
    waits.check_halt()  # taken: does not raise again
    assert waits.halt() is not halt  # a new Halt waiter for the next wait


def test_a_halt_that_already_arrived_stops_the_next_race_before_it_waits() -> None:
    ctx = Stub()
    waits = Waits(ctx)
    halt = waits.halt()
    halt.result, halt.is_completed = {"by": None}, True
    assert waits.halt_arrived()
    with pytest.raises(Halted) as raised:
        next(waits.race(waits.timer(T0 + timedelta(hours=1))))
    assert raised.value.reason == "halted by request" and raised.value.by is None


@pytest.mark.parametrize(("until", "expected"), [(T0 + timedelta(days=1), T0 + timedelta(days=1)),
                                                 (T0 + timedelta(days=30), T0 + MAX_TIMER)])
def test_timers_are_capped_at_max_timer(until: datetime, expected: datetime) -> None:
    assert Waits(Stub()).timer(until).at == expected
    assert timedelta(days=5) == MAX_TIMER < timedelta(days=6)  # below the SDK's longest short timer
