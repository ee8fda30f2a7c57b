"""The clock's HTTP interface (issue 14.11) and following it from another clock (14.12).

Everything is driven through :class:`ClockClient` -- the same calls a person makes with curl --
against a :class:`ClockServer`; waits are on state (a sleeper having woken, an answer), never on
wall time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from emulator.clock import RemoteClock, make_clock, parse_instant
from emulator.clock_http import MAX_TIMEOUT_SECONDS, ClockClient, ClockServer, _wait_for, parse_duration
from emulator.platform import LoopThread

pytestmark = pytest.mark.emulator
START = parse_instant("2026-11-16T06:00:00Z")


class Authority:
    def __init__(self, spec: str = "skip") -> None:
        self.clock = make_clock(spec, start=START)
        self.loop = LoopThread("clock-test")
        self.server = ClockServer(self.clock)
        self.loop.call(self.server.start())
        self.client = ClockClient(self.server.url, timeout=30)
        self.pending: list[Any] = []

    def sleeper(self, when: Any, woke: list[str], name: str) -> Any:
        async def run() -> None:
            await self.clock.sleep_until(when)
            woke.append(f"{name}@{self.clock.now():%H:%M}")

        future = asyncio.run_coroutine_threadsafe(run(), self.loop.loop)
        self.pending.append(future)
        return future

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.loop.call(self.server.stop())
        self.loop.close()
        self.clock.close()


@pytest.fixture
def authority() -> Iterator[Authority]:
    auth = Authority()
    yield auth
    auth.close()


def test_state_shows_now_next_due_mode_and_leases(authority: Authority) -> None:
    lease = authority.client.lease(30, "curl")
    authority.sleeper(START + timedelta(hours=1), [], "timer")
    state = authority.client.state()
    while state["nextDue"] is None:  # the sleeper registers on the loop thread
        state = authority.client.state()
    assert state["now"] == "2026-11-16T06:00:00Z"
    assert state["nextDue"] == "2026-11-16T07:00:00Z"
    assert state["mode"] == "skip"
    assert [(item["leaseId"], item["holder"]) for item in state["leases"]] == [(lease, "curl")]
    assert authority.client.release(lease)


def test_with_a_lease_an_event_beats_the_timer(authority: Authority) -> None:
    """The race from issue 14.11: approval (event) vs. timeout (timer). A lease holder wins."""
    outcome: list[str] = []
    event = threading.Event()
    lease = authority.client.lease(60, "approver")

    async def wait_for_approval() -> None:
        timeout = asyncio.ensure_future(authority.clock.sleep_until(START + timedelta(hours=24)))
        approval = asyncio.ensure_future(asyncio.to_thread(event.wait))
        done, _ = await asyncio.wait({timeout, approval}, return_when=asyncio.FIRST_COMPLETED)
        outcome.append("approved" if approval in done else "timed out")
        timeout.cancel()

    flow = asyncio.run_coroutine_threadsafe(wait_for_approval(), authority.loop.loop)
    while authority.client.state()["nextDue"] is None:
        pass
    event.set()  # the "curl approve" arrives while the lease holds time still
    flow.result(timeout=10)
    assert outcome == ["approved"]
    assert authority.client.now() == START
    assert authority.client.release(lease)


def test_advance_by_wakes_each_sleeper_in_order_on_the_way(authority: Authority) -> None:
    woke: list[str] = []
    for name, hours in (("b", 2), ("a", 1), ("c", 5)):
        authority.sleeper(START + timedelta(hours=hours), woke, name)
    while authority.client.state()["nextDue"] != "2026-11-16T07:00:00Z":
        pass
    lease = authority.client.lease(60, "test")  # explicit moves ignore the caller's lease
    status, body = authority.client.advance(by="PT2H30M")
    assert status == 200, body
    assert body["now"] == "2026-11-16T08:30:00Z"
    assert woke == ["a@07:00", "b@08:00"]
    status, body = authority.client.advance(next=True)
    assert (status, body["now"]) == (200, "2026-11-16T11:00:00Z")
    authority.client.advance(untilIdle=True)
    assert woke == ["a@07:00", "b@08:00", "c@11:00"]
    status, body = authority.client.advance(to="2026-11-17T00:00:00Z")
    assert (status, body["now"]) == (200, "2026-11-17T00:00:00Z")
    status, body = authority.client.advance(next=True)
    assert (status, body["error"]["code"]) == (409, "NothingDue")
    assert authority.client.release(lease)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "by"),
        ({"by": "PT1H", "next": True}, "next"),
        ({"by": "1 hour"}, "by"),
        ({"by": "P1M"}, "by"),
        ({"by": 3600}, "by"),
        ({"to": "tomorrow"}, "to"),
        ({"to": "2026-11-16T12:00:00"}, "to"),  # no offset: not RFC 3339
        ({"next": "yes"}, "next"),
        ({"untilIdle": 1}, "untilIdle"),
        ({"next": True, "timeoutSeconds": -1}, "timeoutSeconds"),
        ({"step": "PT1H"}, "step"),
    ],
)
def test_bad_advance_requests_get_400_naming_the_field(authority: Authority, body: dict[str, Any],
                                                       field: str) -> None:
    status, answer = authority.client._call("POST", "/advance", body)
    assert status == 400, answer
    assert answer["error"]["code"] == "InvalidClockRequest"
    assert answer["error"]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "ttlSeconds"), ({"ttlSeconds": 0}, "ttlSeconds"), ({"ttlSeconds": "10"}, "ttlSeconds"),
     ({"ttlSeconds": 10, "holder": 5}, "holder")],
)
def test_bad_lease_requests_get_400_naming_the_field(authority: Authority, body: dict[str, Any], field: str) -> None:
    status, answer = authority.client._call("POST", "/lease", body)
    assert (status, answer["error"]["field"]) == (400, field)
    status, answer = authority.client._call("POST", "/lease", [1, 2])
    assert (status, answer["error"]["field"]) == (400, "body")


def test_advancing_into_the_past_or_a_real_clock_is_a_conflict(authority: Authority) -> None:
    status, answer = authority.client.advance(to="2026-11-15T00:00:00Z")
    assert (status, answer["error"]["code"]) == (409, "InstantInPast")
    real = Authority("real")
    try:
        status, answer = real.client.advance(by="PT1H")
        assert (status, answer["error"]["code"]) == (409, "ClockNotSkippable")
        assert real.client.state()["mode"] == "real"
        lease = real.client.lease(5, "harmless")  # accepted, changes nothing on a real clock
        assert real.client.release(lease)
    finally:
        real.close()


def test_unknown_leases_are_404(authority: Authority) -> None:
    assert authority.client._call("DELETE", "/lease/nope")[0] == 404
    assert authority.client._call("POST", "/lease/nope", {})[0] == 404
    lease = authority.client.lease(30)
    assert authority.client.renew(lease, 60)
    assert authority.client.release(lease)
    assert not authority.client.release(lease)


def test_durations_parse_as_iso_8601() -> None:
    assert parse_duration("PT1H30M") == timedelta(hours=1, minutes=30)
    assert parse_duration("P1DT2H") == timedelta(days=1, hours=2)
    assert parse_duration("P2W") == timedelta(weeks=2)
    assert parse_duration("PT0.5S") == timedelta(seconds=0.5)
    for bad in ("P", "PT", "P1Y", "1H", "PT1H2"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_advance_until_over_http_stops_at_the_state_it_waits_for(authority: Authority) -> None:
    state: list[str] = []

    async def flow() -> None:
        await authority.clock.sleep_until(START + timedelta(hours=1))
        state.append("waiting")
        await authority.clock.sleep_until(START + timedelta(hours=25))
        state.append("timed-out")

    with authority.clock.hold():
        future = asyncio.run_coroutine_threadsafe(flow(), authority.loop.loop)
        authority.client.advance_until(lambda: "waiting" in state, timeout=30)
        assert authority.client.now() == START + timedelta(hours=1)
        authority.client.advance_until(lambda: "timed-out" in state, timeout=30)
        future.result(timeout=10)
    assert authority.clock.now() == START + timedelta(hours=25)


# ---------------------------------------------------------------------------- following (14.12)
def test_a_follower_shares_the_authoritys_time_line(authority: Authority) -> None:
    """Sleepers in two 'processes' wake in one order; a busy follower stops the authority."""
    follower = make_clock(f"follow={authority.server.url}")
    assert isinstance(follower, RemoteClock)
    loop = LoopThread("follower")
    woke: list[str] = []

    async def follower_sleeper(hours: int) -> None:
        await follower.sleep_until(START + timedelta(hours=hours))
        woke.append(f"follower@{follower.now():%H:%M}")

    try:
        authority.sleeper(START + timedelta(hours=2), woke, "authority")
        f1 = asyncio.run_coroutine_threadsafe(follower_sleeper(1), loop.loop)
        f3 = asyncio.run_coroutine_threadsafe(follower_sleeper(3), loop.loop)
        f1.result(timeout=30)
        f3.result(timeout=30)
        assert woke == ["follower@07:00", "authority@08:00", "follower@09:00"]
        # a busy follower holds the authority's time still
        late: list[str] = []
        with follower.busy():
            asyncio.run_coroutine_threadsafe(follower.confirm_busy(), loop.loop).result(timeout=10)
            authority.sleeper(START + timedelta(hours=4), late, "authority")
            assert not authority.client.state()["leases"][0]["nextDue"]
            status, answer = authority.client.advance(untilIdle=True, timeoutSeconds=0.5)
            assert (status, answer["error"]["code"]) == (409, "ClockBusy")
            assert late == []
        authority.client.advance_until(lambda: late, timeout=30)
        assert late == ["authority@10:00"]
    finally:
        follower.close()
        loop.close()


def test_a_dead_follower_cannot_freeze_time(authority: Authority) -> None:
    lease = authority.clock.acquire_lease(0.3, "host that was SIGKILLed", follower=True)
    woke: list[str] = []
    future = authority.sleeper(START + timedelta(hours=1), woke, "timer")
    future.result(timeout=10)
    assert woke == ["timer@07:00"]
    assert not authority.clock.has_lease(lease)


def test_the_clock_api_of_a_follower_acts_on_the_authority(authority: Authority) -> None:
    """A host following another process's clock serves /admin/clock too: leases, suspensions
    (its long-poll) and advances land on the authority, whose time is the one that counts."""
    follower = make_clock(f"follow={authority.server.url}")
    loop = LoopThread("follower-api")
    server = ClockServer(follower)
    loop.call(server.start())
    via_host = ClockClient(server.url, timeout=30)
    woke: list[str] = []
    try:
        lease = via_host.lease(60, "curl via the host")
        assert [item["leaseId"] for item in authority.client.state()["leases"] if not item.get("follower")] == [lease]
        future = authority.sleeper(START + timedelta(hours=1), woke, "timer")
        while authority.client.state()["nextDue"] is None:
            pass
        with pytest.raises(TimeoutError):
            future.result(timeout=0.3)  # the lease taken through the host holds the authority
        assert follower.suspend_lease(lease)  # what the host's long-poll does while it waits
        future.result(timeout=10)
        assert woke == ["timer@07:00"]
        assert follower.resume_lease(lease)
        status, answer = via_host.advance(by="PT2H")
        assert (status, answer["now"]) == (200, "2026-11-16T09:00:00Z")
        assert authority.clock.now() == START + timedelta(hours=3)
        assert via_host.release(lease) and not via_host.release(lease)
    finally:
        loop.call(server.stop())
        loop.close()
        follower.close()


def test_advance_until_longer_than_the_apis_limit_still_moves_time(authority: Authority) -> None:
    """An ``advance_until`` with a timeout beyond the API's 3,600 s per call used to send it,
    get 400 and retry for ever without moving time (a 10,000-VM bench waits for hours)."""
    state: list[str] = []

    async def flow() -> None:
        await authority.clock.sleep_until(START + timedelta(hours=2))
        state.append("done")

    assert _wait_for(time.monotonic() + 7200) == MAX_TIMEOUT_SECONDS
    with authority.clock.hold():
        future = asyncio.run_coroutine_threadsafe(flow(), authority.loop.loop)
        # in a thread, so the old endless retry fails this test instead of hanging the suite
        waiter = threading.Thread(target=authority.client.advance_until, args=(lambda: "done" in state,),
                                  kwargs={"timeout": 7200}, daemon=True)
        waiter.start()
        future.result(timeout=60)
        waiter.join(timeout=60)
        assert not waiter.is_alive()
    assert authority.clock.now() == START + timedelta(hours=2)
