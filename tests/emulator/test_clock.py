"""The shared virtual clock: skip jumps only when idle, scale runs faster than real time."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest

from emulator.clock import make_clock, parse_instant

pytestmark = pytest.mark.emulator
START = parse_instant("2026-01-01T00:00:00Z")


def test_skip_clock_jumps_to_the_earliest_sleeper_in_order() -> None:
    clock = make_clock("skip", start=START)
    woke: list[str] = []

    async def sleeper(name: str, hours: int) -> None:
        await clock.sleep_until(START + timedelta(hours=hours))
        woke.append(f"{name}@{clock.now():%H}")

    async def main() -> None:
        await asyncio.gather(sleeper("b", 24), sleeper("a", 1), sleeper("c", 48))

    t0 = time.monotonic()
    asyncio.run(main())
    assert woke == ["a@01", "b@00", "c@00"]
    assert clock.now() == START + timedelta(hours=48)
    assert time.monotonic() - t0 < 5


def test_skip_clock_does_not_jump_while_busy_or_held() -> None:
    clock = make_clock("skip", start=START)
    done = threading.Event()

    def sleeper() -> None:
        clock.sleep_until_blocking(START + timedelta(hours=1))
        done.set()

    with clock.busy():
        threading.Thread(target=sleeper, daemon=True).start()
        assert not done.wait(0.2)
        assert clock.now() == START
    assert done.wait(2)
    with clock.hold():
        threading.Thread(target=sleeper, daemon=True).start()
        assert done.wait(2)  # already past 01:00, returns at once


def test_advance_until_steps_one_due_time_at_a_time() -> None:
    clock = make_clock("skip", start=START)
    hits: list[int] = []

    def ticker() -> None:
        for i in range(1, 5):
            clock.sleep_until_blocking(START + timedelta(minutes=10 * i))
            hits.append(i)

    with clock.hold():
        threading.Thread(target=ticker, daemon=True).start()
        clock.advance_until(lambda: len(hits) >= 2, timeout=5)
        assert clock.now() == START + timedelta(minutes=20)


def test_scale_clock_moves_n_times_faster() -> None:
    clock = make_clock("scale=600", start=START)
    time.sleep(0.1)
    elapsed = clock.now() - START
    assert timedelta(seconds=50) <= elapsed <= timedelta(seconds=300)


def test_bad_spec_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="scale=N"):
        make_clock("fast")


def test_advance_until_stops_at_the_state_it_waits_for() -> None:
    """A state reached right after a jump is seen before the next jump (no skipping past it)."""
    clock = make_clock("skip", start=START)
    state: list[str] = []
    loop = asyncio.new_event_loop()

    async def approval_flow() -> None:
        await clock.sleep_until(START + timedelta(hours=1))
        state.append("waiting-for-approval")
        await clock.sleep_until(START + timedelta(hours=25))  # the approval timeout
        state.append("timed-out")

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with clock.hold():
        flow = asyncio.run_coroutine_threadsafe(approval_flow(), loop)
        clock.advance_until(lambda: "waiting-for-approval" in state, timeout=5)
        assert clock.now() == START + timedelta(hours=1)
        assert state == ["waiting-for-approval"]
        clock.advance_until(lambda: "timed-out" in state, timeout=5)
        assert clock.now() == START + timedelta(hours=25)
    flow.result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


# ---------------------------------------------------------------------------- leases (issue 14.11)
def _sleeper_thread(clock: object, when: object) -> threading.Event:
    done = threading.Event()

    def run() -> None:
        clock.sleep_until_blocking(when)  # type: ignore[attr-defined]
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done


def test_a_lease_stops_automatic_jumps_until_released() -> None:
    clock = make_clock("skip", start=START)
    lease = clock.acquire_lease(60, "curl")
    done = _sleeper_thread(clock, START + timedelta(hours=1))
    assert not done.wait(0.3)  # a lease is held: the 1 h timer must not fire
    assert clock.now() == START
    assert [item["holder"] for item in clock.leases()] == ["curl"]
    assert clock.leases()[0]["blocking"] is True
    assert clock.release_lease(lease) is True
    assert done.wait(5)
    assert clock.now() == START + timedelta(hours=1)
    assert clock.release_lease(lease) is False
    assert clock.leases() == []
    clock.close()


def test_an_expired_lease_lets_time_go_on() -> None:
    """A crashed client cannot freeze time: its lease ends after its TTL in real seconds."""
    clock = make_clock("skip", start=START)
    lease = clock.acquire_lease(0.3, "crashed client")
    done = _sleeper_thread(clock, START + timedelta(hours=1))
    assert done.wait(10)
    assert clock.now() == START + timedelta(hours=1)
    assert not clock.has_lease(lease)
    assert clock.renew_lease(lease) is False
    clock.close()


def test_lease_suspended_unlocks_skipping_while_the_holder_waits() -> None:
    clock = make_clock("skip", start=START)
    lease = clock.acquire_lease(60, "long-poll")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def wait_for_timer() -> str:
        async with clock.lease_suspended(lease):
            await clock.sleep_until(START + timedelta(hours=2))
            return clock.now().isoformat()

    woke = asyncio.run_coroutine_threadsafe(wait_for_timer(), loop).result(timeout=10)
    assert woke.startswith("2026-01-01T02:00")
    assert clock.has_lease(lease)  # still held after the wait: jumps are locked again
    assert clock.leases()[0]["blocking"] is True
    later = _sleeper_thread(clock, START + timedelta(hours=3))
    assert not later.wait(0.3)
    clock.release_lease(lease)
    assert later.wait(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()
    clock.close()


def test_bad_lease_ttls_are_refused() -> None:
    clock = make_clock("skip", start=START)
    for ttl in (0, -1, 10**9):
        with pytest.raises(ValueError, match="ttlSeconds"):
            clock.acquire_lease(ttl)
    clock.close()


def test_a_busy_follower_blocks_jumps_and_its_next_due_counts_as_a_sleeper() -> None:
    clock = make_clock("skip", start=START)
    lease = clock.acquire_lease(60, "host", follower=True)
    # a fresh follower blocks until it has reported (it may have work queued already)
    assert clock.leases()[0]["blocking"] is True
    clock.follower_report(lease, seq=1, busy=False, next_due=START + timedelta(minutes=30), seen=START)
    assert clock.next_due() == START + timedelta(minutes=30)
    assert clock.leases()[0]["blocking"] is False
    # the authority jumps to the follower's due time, then waits for the follower to catch up
    done = _sleeper_thread(clock, START + timedelta(hours=1))
    deadline = time.monotonic() + 10
    while clock.now() != START + timedelta(minutes=30):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert clock.leases()[0]["blocking"] is True  # it has not seen 00:30 yet
    assert not done.wait(0.2)
    clock.follower_report(lease, seq=2, busy=True, next_due=None, seen=START + timedelta(minutes=30))
    assert not done.wait(0.2)  # busy
    clock.follower_report(lease, seq=1, busy=False, next_due=None, seen=START)  # stale: ignored
    assert clock.leases()[0]["busy"] is True
    clock.follower_report(lease, seq=3, busy=False, next_due=None, seen=START + timedelta(minutes=30))
    assert done.wait(5)
    clock.close()


def test_a_sleeper_abandoned_on_a_closed_loop_neither_breaks_a_jump_nor_stays_busy() -> None:
    """A crashed host closes its loop under a pending timer; the clock must go on without it.

    (CI once failed here: the next jump woke the dead sleeper, whose ``call_soon_threadsafe``
    raised "Event loop is closed" in the test thread.)
    """
    clock = make_clock("skip", start=START)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def abandoned() -> None:
        started.set()
        await clock.sleep_until(START + timedelta(hours=1))

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    with clock.hold():
        thread.start()
        asyncio.run_coroutine_threadsafe(abandoned(), loop)
        assert started.wait(5)
        deadline = time.monotonic() + 5
        while clock.next_due() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()  # the sleeper is never cancelled: abandoned, as a crashed host leaves it
        hits: list[int] = []

        def ticker() -> None:
            clock.sleep_until_blocking(START + timedelta(hours=2))
            hits.append(1)

        threading.Thread(target=ticker, daemon=True).start()
        clock.advance_until(lambda: bool(hits), timeout=5)
    assert clock.now() == START + timedelta(hours=2)


def test_a_cancelled_time_long_poll_ends_and_forgets_its_watcher() -> None:
    """``wait_changed`` cancelled (a stopping server) ends cancelled even when time moved in the same
    loop turn (Python 3.11's ``wait_for`` returned instead), and leaves no watcher behind."""
    clock = make_clock("skip", start=START)

    async def cancelled(after_change: bool) -> tuple[bool, int]:
        poll = asyncio.create_task(clock.wait_changed(START, 30))
        sleeper = asyncio.create_task(clock.sleep_until(START + timedelta(hours=1)))
        await asyncio.sleep(0.01)
        if after_change:
            assert clock.advance()  # resolves the poll's future (via the loop)
            await asyncio.sleep(0)
        poll.cancel()
        done, _ = await asyncio.wait([poll], timeout=2)
        sleeper.cancel()
        await asyncio.gather(sleeper, return_exceptions=True)
        return poll in done and poll.cancelled(), len(clock._watchers)

    try:
        with clock.hold():
            assert asyncio.run(cancelled(after_change=False)) == (True, 0)
            assert asyncio.run(cancelled(after_change=True)) == (True, 0)
    finally:
        clock.close()
