"""The virtual clock shared by the local Functions host and the ARM fleet simulator.

Why one clock: simulated patch durations, maintenance schedules (T-40 freezes, pre/post
events) and durable timers must move on the same time line, otherwise a demo in scaled time
or a test that skips a day-long approval timeout would see the two halves of the platform
disagree about "now".

Modes (``make_clock(spec)``):

* ``real``     -- wall-clock UTC.
* ``scale=N``  -- N simulated seconds per real second, anchored at ``start`` (for demos).
  Two processes given the same ``start`` and ``anchor_unix`` agree on "now" without talking.
* ``skip``     -- virtual time that never moves by itself. When nothing is runnable
  (no ``busy()`` section open, no ``hold()`` taken) it jumps straight to the earliest
  registered sleeper: an hour-long soak or a 24 h approval timeout finishes in milliseconds,
  and in the same order every run.

What components must do for ``skip`` to be correct:

* wrap every unit of in-flight work in ``with clock.busy():`` (an HTTP request being served,
  an activity running, an episode being replayed, an event being delivered). The aiohttp
  middleware from :func:`busy_middleware` does this for request handling;
* wait for future times only through :meth:`Clock.sleep_until` (asyncio) or
  :meth:`Clock.sleep_until_blocking` (threads), so the clock knows the next due time.

A short real-time *settle* period (default 20 ms) must pass with nothing busy before a jump;
it absorbs hand-offs between tasks that are not wrapped in ``busy()`` (an ``await`` between
one component finishing and the next starting).

Test helpers: :meth:`Clock.hold` suspends automatic jumping while a test interacts, and
:meth:`Clock.advance_until` jumps one due time at a time until a predicate holds.

Leases (issue 14 item 11, modelled on Temporal's time-skipping test server, where skipping is
locked while a client holds it and unlocked while a client waits for a result):
:meth:`Clock.acquire_lease` stops *automatic* jumps while any unexpired lease is held. Leases
expire in REAL seconds (``ttl_seconds``), so a client that crashes cannot freeze time for good.
:meth:`Clock.lease_suspended` lets a long-poll ("wait for this instance") unlock skipping while
it waits. Explicit moves (:meth:`Clock.advance`, :meth:`Clock.advance_until`, the HTTP
``advance``) ignore holds and plain leases: they are the lease holder's own way to move time.
The HTTP interface is in :mod:`emulator.clock_http`.

Across processes (issue 14 item 12): one process is the time *authority* (the simulator's, in
the local platform); another process follows it with :class:`RemoteClock`
(``make_clock("follow=URL")``). The follower holds a *follower lease* on the authority and
reports, over ``POST /admin/clock/lease/{id}/report``, whether it has work in flight, its next
due time and the last instant it has seen. The authority never jumps while a follower is busy or
has not yet seen the current instant, and it counts a follower's next due time as a sleeper. A
follower that dies stops renewing: its lease expires after its TTL and time goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["Clock", "ClockBusyError", "RemoteClock", "busy_middleware", "clock_exempt", "make_clock",
           "parse_instant"]

log = logging.getLogger("emulator.clock")
MAX_LEASE_SECONDS = 24 * 3600.0


class ClockBusyError(RuntimeError):
    """An explicit advance could not find the platform idle within its timeout."""


@dataclass
class _Lease:
    """One lease; see :meth:`Clock.acquire_lease`. Times are ``time.monotonic()`` seconds."""

    lease_id: str
    holder: str
    ttl: float
    expires: float
    suspended: int = 0
    follower: bool = False
    busy: bool = True  # follower: work in flight (busy until its first report)
    next_due: datetime | None = None  # follower: its earliest sleeper
    seen: datetime | None = None  # follower: the last instant it has applied
    seq: int = -1  # follower: the last report applied (older ones are ignored)

    def blocking(self, now: datetime) -> bool:
        if self.follower:
            return self.busy or self.seen is None or self.seen < now
        return self.suspended == 0


def parse_instant(text: str) -> datetime:
    """Parse an ISO-8601 instant; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("clock times must be timezone-aware (UTC)")
    return value.astimezone(UTC)


class Clock:
    """A clock in one of three modes; see the module docstring."""

    def __init__(
        self,
        mode: str,
        *,
        start: datetime | None = None,
        scale: float = 1.0,
        anchor_unix: float | None = None,
        settle_seconds: float = 0.02,
    ) -> None:
        if mode not in ("real", "scale", "skip"):
            raise ValueError(f"unknown clock mode {mode!r}")
        if scale <= 0:
            raise ValueError("scale must be positive")
        self.mode = mode
        self.scale = scale if mode == "scale" else 1.0
        now_real = datetime.now(UTC)
        self._start = _utc(start) if start else now_real.replace(microsecond=0)
        self._anchor_unix = anchor_unix if anchor_unix is not None else time.time()
        self._settle = settle_seconds
        self._cond = threading.Condition(threading.RLock())
        self._virtual = self._start
        self._busy = 0
        self._holds = 0
        self._generation = 0
        self._seq = itertools.count()
        # heap of (when, seq, wake) ; wake() is idempotent and thread-safe
        self._sleepers: list[tuple[datetime, int, Callable[[], None]]] = []
        self._live: set[int] = set()
        self._jumps = 0
        self._driver: threading.Thread | None = None
        self._closed = False
        self._leases: dict[str, _Lease] = {}
        self._watchers: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        if mode == "skip" and self._drives():
            self._driver = threading.Thread(target=self._drive, name="clock-skip", daemon=True)
            self._driver.start()

    def _drives(self) -> bool:
        """Whether this clock jumps by itself (a follower takes its time from the authority)."""
        return True

    # ------------------------------------------------------------------ reading time
    @property
    def spec(self) -> str:
        """The ``--clock`` spelling of this clock."""
        return f"scale={self.scale:g}" if self.mode == "scale" else self.mode

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def anchor_unix(self) -> float:
        return self._anchor_unix

    @property
    def jumps(self) -> int:
        """How many times a skip clock has jumped (for benchmarks and diagnostics)."""
        return self._jumps

    def now(self) -> datetime:
        """The current simulated time, timezone-aware UTC."""
        if self.mode == "real":
            return datetime.now(UTC)
        if self.mode == "scale":
            elapsed = (time.time() - self._anchor_unix) * self.scale
            return self._start + timedelta(seconds=elapsed)
        with self._cond:
            return self._virtual

    def real_seconds(self, simulated: timedelta) -> float:
        """How many real seconds a simulated interval lasts (0 in skip mode)."""
        if self.mode == "skip":
            return 0.0
        return max(simulated.total_seconds(), 0.0) / self.scale

    # ------------------------------------------------------------------ waiting
    def _register(self, when: datetime, wake: Callable[[], None]) -> int:
        with self._cond:
            seq = next(self._seq)
            heapq.heappush(self._sleepers, (when, seq, wake))
            self._live.add(seq)
            self._generation += 1
            self._cond.notify_all()
            return seq

    def _unregister(self, seq: int) -> None:
        with self._cond:
            self._live.discard(seq)
            self._generation += 1
            self._cond.notify_all()

    async def sleep_until(self, when: datetime) -> None:
        """Suspend the calling coroutine until simulated time reaches ``when``."""
        when = _utc(when)
        if self.mode != "skip":
            while True:
                remaining = (when - self.now()).total_seconds()
                if remaining <= 0:
                    return
                await asyncio.sleep(min(remaining / self.scale, 1.0))
        if self.now() >= when:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        woken: list[bool] = []

        def wake() -> None:  # called by a jump, with the clock's lock held
            def _set() -> None:
                if not future.done():
                    future.set_result(None)

            if loop.is_closed():
                # The sleeper's host stopped (a simulated crash) and abandoned it: nobody will
                # resume it, so it must neither count as busy nor make the jump fail.
                return
            # Count the sleeper as busy from the jump until it has resumed: otherwise the gap
            # between "woken" and "running again" looks idle and the clock could jump twice.
            self.enter_busy()
            woken.append(True)
            try:
                loop.call_soon_threadsafe(_set)
            except RuntimeError:  # closed between the check and the call
                woken.pop()
                self.exit_busy()

        seq = self._register(when, wake)
        try:
            await future
        finally:
            self._unregister(seq)
            if woken:
                # One more loop turn lets the resumed code enter its own busy() section first.
                try:
                    loop.call_soon(self.exit_busy)
                except RuntimeError:  # the loop is closing under an abandoned sleeper
                    self.exit_busy()

    async def sleep(self, seconds: float) -> None:
        """Sleep a simulated interval."""
        await self.sleep_until(self.now() + timedelta(seconds=seconds))

    def sleep_until_blocking(self, when: datetime, *, interrupt: threading.Event | None = None) -> bool:
        """Block the calling thread until ``when``; returns False if ``interrupt`` was set first."""
        when = _utc(when)
        if self.mode != "skip":
            while True:
                remaining = (when - self.now()).total_seconds()
                if remaining <= 0:
                    return True
                if interrupt is not None:
                    if interrupt.wait(min(remaining / self.scale, 0.5)):
                        return False
                else:
                    time.sleep(min(remaining / self.scale, 0.5))
        event = interrupt or threading.Event()
        reached = threading.Event()

        def wake() -> None:  # called by a jump, with the clock's lock held
            self.enter_busy()  # busy until the woken thread runs again (see sleep_until)
            reached.set()
            event.set()

        if self.now() >= when:
            return True
        seq = self._register(when, wake)
        try:
            event.wait()
        finally:
            self._unregister(seq)
            if reached.is_set():
                self.exit_busy()
        return reached.is_set() or self.now() >= when

    # ------------------------------------------------------------------ skip control
    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark work in flight: a skip clock never jumps while any busy section is open."""
        self.enter_busy()
        try:
            yield
        finally:
            self.exit_busy()

    def enter_busy(self) -> None:
        """Non-context-manager form of :meth:`busy` for work that spans callbacks."""
        with self._cond:
            self._busy += 1
            self._generation += 1
            if self._busy == 1:
                self._busy_changed_locked()

    def exit_busy(self) -> None:
        with self._cond:
            self._busy -= 1
            self._generation += 1
            if self._busy == 0:
                self._busy_changed_locked()
            self._cond.notify_all()

    def _busy_changed_locked(self) -> None:
        """Hook: the busy count went 0 -> 1 or 1 -> 0 (a follower reports it)."""

    async def confirm_busy(self) -> None:
        """Return once the time authority knows this process is busy (no-op unless following)."""

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Suspend automatic jumping (skip mode) while a test or operator interacts."""
        with self._cond:
            self._holds += 1
            self._generation += 1
        try:
            yield
        finally:
            with self._cond:
                self._holds -= 1
                self._generation += 1
                self._cond.notify_all()

    def notify(self) -> None:
        """Tell the clock that something changed (new work queued, a sleeper moved)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def next_due(self) -> datetime | None:
        """The earliest registered sleeper (a follower's next due time counts), if any."""
        with self._cond:
            return self._next_due_locked()

    def _next_due_locked(self) -> datetime | None:
        self._prune()
        self._expire_locked()
        candidates = [self._sleepers[0][0]] if self._sleepers else []
        candidates += [lease.next_due for lease in self._leases.values() if lease.follower and lease.next_due]
        return min(candidates) if candidates else None

    def _prune(self) -> None:
        while self._sleepers and self._sleepers[0][1] not in self._live:
            heapq.heappop(self._sleepers)

    # ------------------------------------------------------------------ leases
    def acquire_lease(self, ttl_seconds: float, holder: str = "", *, follower: bool = False) -> str:
        """Stop automatic jumps until the lease is released or ``ttl_seconds`` REAL seconds pass.

        ``follower=True`` is the lease of a process following this clock (see
        :class:`RemoteClock`): it blocks only while that process reports work in flight.
        """
        ttl = float(ttl_seconds)
        if not 0 < ttl <= MAX_LEASE_SECONDS:
            raise ValueError(f"ttlSeconds must be > 0 and <= {MAX_LEASE_SECONDS:g}")
        lease_id = secrets.token_hex(8)
        with self._cond:
            self._leases[lease_id] = _Lease(lease_id, str(holder), ttl, time.monotonic() + ttl, follower=follower)
            self._generation += 1
            self._cond.notify_all()
        return lease_id

    def renew_lease(self, lease_id: str, ttl_seconds: float | None = None) -> bool:
        """Extend a lease by its TTL (or a new one) from now; False if it is unknown or expired."""
        with self._cond:
            self._expire_locked()
            lease = self._leases.get(lease_id)
            if lease is None:
                return False
            if ttl_seconds is not None:
                ttl = float(ttl_seconds)
                if not 0 < ttl <= MAX_LEASE_SECONDS:
                    raise ValueError(f"ttlSeconds must be > 0 and <= {MAX_LEASE_SECONDS:g}")
                lease.ttl = ttl
            lease.expires = time.monotonic() + lease.ttl
            return True

    def release_lease(self, lease_id: str) -> bool:
        """Release a lease; False if it was unknown (or had already expired)."""
        with self._cond:
            self._expire_locked()
            found = self._leases.pop(lease_id, None) is not None
            self._generation += 1
            self._cond.notify_all()
            return found

    def leases(self) -> list[dict[str, Any]]:
        """The unexpired leases, JSON-ready."""
        with self._cond:
            self._expire_locked()
            mono, wall = time.monotonic(), time.time()
            out = []
            for lease in self._leases.values():
                item: dict[str, Any] = {
                    "leaseId": lease.lease_id,
                    "holder": lease.holder,
                    "ttlSeconds": lease.ttl,
                    "expiresAt": _iso(datetime.fromtimestamp(wall + lease.expires - mono, UTC)),
                    "expiresInSeconds": round(lease.expires - mono, 3),
                    "suspended": lease.suspended > 0,
                    "blocking": lease.blocking(self._virtual),
                }
                if lease.follower:
                    item.update(follower=True, busy=lease.busy,
                                nextDue=_iso(lease.next_due) if lease.next_due else None,
                                seen=_iso(lease.seen) if lease.seen else None)
                out.append(item)
            return out

    def lease_expires_at(self, lease_id: str) -> datetime | None:
        """Wall-clock expiry of a lease (None if unknown)."""
        with self._cond:
            self._expire_locked()
            lease = self._leases.get(lease_id)
            if lease is None:
                return None
            return datetime.fromtimestamp(time.time() + lease.expires - time.monotonic(), UTC)

    def has_lease(self, lease_id: str) -> bool:
        with self._cond:
            self._expire_locked()
            return lease_id in self._leases

    @contextlib.asynccontextmanager
    async def lease_suspended(self, lease_id: str | None) -> AsyncIterator[None]:
        """While inside, ``lease_id`` does not stop jumps (a client waiting for a result).

        Unknown, empty or expired ids are accepted and change nothing.
        """
        suspended = bool(lease_id) and self.suspend_lease(str(lease_id))
        try:
            yield
        finally:
            if suspended:
                self.resume_lease(str(lease_id))

    def suspend_lease(self, lease_id: str) -> bool:
        """Stop ``lease_id`` from blocking jumps until :meth:`resume_lease` (nested; False if unknown)."""
        with self._cond:
            self._expire_locked()
            lease = self._leases.get(lease_id)
            if lease is None:
                return False
            lease.suspended += 1
            self._generation += 1
            self._cond.notify_all()
            return True

    def resume_lease(self, lease_id: str) -> bool:
        """Undo one :meth:`suspend_lease`; the lease is renewed (time may have moved meanwhile)."""
        with self._cond:
            lease = self._leases.get(lease_id)
            if lease is None:
                return False
            lease.suspended = max(lease.suspended - 1, 0)
            lease.expires = max(lease.expires, time.monotonic() + min(lease.ttl, 5.0))
            self._generation += 1
            self._cond.notify_all()
            return True

    def follower_report(
        self, lease_id: str, *, seq: int, busy: bool, next_due: datetime | None, seen: datetime | None,
    ) -> dict[str, Any] | None:
        """Apply a follower's report (and renew its lease); None if the lease is unknown/expired."""
        with self._cond:
            self._expire_locked()
            lease = self._leases.get(lease_id)
            if lease is None:
                return None
            lease.follower = True
            lease.expires = time.monotonic() + lease.ttl
            if seq > lease.seq:
                lease.seq = seq
                lease.busy = bool(busy)
                lease.next_due = next_due
                lease.seen = seen
                self._generation += 1
                self._cond.notify_all()
            return {"now": _iso(self._virtual), "seq": lease.seq}

    def _expire_locked(self) -> None:
        now = time.monotonic()
        expired = [lid for lid, lease in self._leases.items() if lease.expires <= now]
        for lid in expired:
            lease = self._leases.pop(lid)
            log.info("clock lease %s (%s) expired", lid, lease.holder or "anonymous")
        if expired:
            self._generation += 1
            self._cond.notify_all()

    def _leases_block_locked(self, *, plain: bool) -> bool:
        """Any unexpired lease stopping jumps (``plain``: count client leases, not only followers)."""
        self._expire_locked()
        return any(lease.blocking(self._virtual) for lease in self._leases.values() if plain or lease.follower)

    def _lease_wait_locked(self) -> float:
        """Real seconds until the next lease expiry (capped), for the driver's waits."""
        if not self._leases:
            return 0.5
        return max(0.005, min(0.5, min(lease.expires for lease in self._leases.values()) - time.monotonic()))

    def _idle_locked(self, *, plain: bool) -> bool:
        return self._busy == 0 and not self._leases_block_locked(plain=plain)

    def _settled(self, *, plain: bool = False) -> bool:
        """True when nothing has been busy for a whole settle period (lock held on entry)."""
        generation = self._generation
        if not self._idle_locked(plain=plain):
            return False
        self._cond.wait(self._settle)
        return self._idle_locked(plain=plain) and generation == self._generation

    def _jump_locked(self, target: datetime | None = None) -> bool:
        """Advance to the earliest sleeper (or ``target``) and wake everything due (lock held)."""
        due = self._next_due_locked()
        if target is None:
            if due is None:
                return False
            target = due
        elif due is not None and due < target:
            target = due  # never step over a sleeper: wake it first
        if target <= self._virtual and due is None:
            return False
        self._set_time_locked(target)
        self._jumps += 1
        return True

    def _set_time_locked(self, target: datetime) -> None:
        """Move to ``target`` (never back) and wake every sleeper due by then (lock held)."""
        self._virtual = max(self._virtual, target)
        while self._sleepers and self._sleepers[0][0] <= self._virtual:
            _, seq, wake = heapq.heappop(self._sleepers)
            if seq in self._live:
                self._live.discard(seq)
                wake()
        self._generation += 1
        self._cond.notify_all()
        watchers, self._watchers = self._watchers, []
        for loop, future in watchers:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    async def wait_changed(self, after: datetime, timeout: float) -> datetime:
        """Long-poll: return ``now()`` once it differs from ``after`` or ``timeout`` real seconds pass."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._virtual != after or self.mode != "skip":
                return self.now()
            self._watchers.append((loop, future))
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives once the future is already done (a stopping server's long-poll went on)
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        finally:  # also when cancelled: a closed loop's watcher must not stay registered
            with self._cond, contextlib.suppress(ValueError):
                self._watchers.remove((loop, future))
        return self.now()

    def _drive(self) -> None:
        with self._cond:
            while not self._closed:
                if self._holds or self._busy or self._next_due_locked() is None \
                        or self._leases_block_locked(plain=True):
                    self._cond.wait(self._lease_wait_locked())
                    continue
                if not self._settled(plain=True):
                    continue
                if self._holds or self._next_due_locked() is None:
                    continue
                self._jump_locked()

    def advance(self) -> bool:
        """Jump once to the earliest sleeper now, ignoring holds (skip mode only)."""
        if self.mode != "skip":
            raise RuntimeError("advance() needs a skip clock")
        with self._cond:
            return self._jump_locked()

    # ------------------------------------------------------------------ explicit moves (HTTP)
    def _require_skip(self) -> None:
        if self.mode != "skip":
            raise RuntimeError(f"a {self.spec} clock cannot be advanced: only a skip clock can")

    async def until_idle(self, *, timeout: float = 60.0) -> datetime:
        """Wait (without moving time) until no work is in flight for a settle period.

        Holds and plain leases do not count (they stop *automatic* jumps, not work); busy
        sections and busy followers do. Raises :class:`ClockBusyError` after ``timeout``.
        """
        self._require_skip()
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                generation, idle = self._generation, self._idle_locked(plain=False)
            if idle:
                await asyncio.sleep(self._settle)
                with self._cond:
                    if self._idle_locked(plain=False) and generation == self._generation:
                        return self._virtual
            else:
                await asyncio.sleep(0.005)
            if time.monotonic() > deadline:
                raise ClockBusyError(f"work still in flight after {timeout:g}s")

    async def advance_next(self, *, timeout: float = 60.0) -> datetime | None:
        """Wait until idle, then jump to the next due time; None if nothing is due."""
        self._require_skip()
        while True:
            await self.until_idle(timeout=timeout)
            with self._cond:
                if not self._idle_locked(plain=False):
                    continue
                if not self._jump_locked():
                    return None
                return self._virtual

    async def advance_to(self, target: datetime, *, timeout: float = 60.0) -> datetime:
        """Move time to ``target``, waking every sleeper on the way in order, each once idle."""
        self._require_skip()
        target = _utc(target)
        if target < self.now():
            raise ValueError(f"{_iso(target)} is before now ({_iso(self.now())})")
        while True:
            await self.until_idle(timeout=timeout)
            with self._cond:
                if not self._idle_locked(plain=False):
                    continue
                if self._virtual >= target:
                    return self._virtual
                due = self._next_due_locked()
                if due is not None and due <= target:
                    self._jump_locked()
                else:
                    self._set_time_locked(target)
                    self._jumps += 1

    def advance_until(
        self,
        predicate: Callable[[], Any],
        *,
        timeout: float = 60.0,
        poll: float = 0.02,
        pace: float = 0.0,
    ) -> Any:
        """Run until ``predicate()`` is truthy, jumping one due time at a time when idle.

        In ``real``/``scale`` mode this simply polls. ``pace`` (real seconds) is slept after
        each jump so a person can watch a skip-clock run (the demo uses it). Returns the
        predicate's value; raises ``TimeoutError`` after ``timeout`` real seconds.
        """
        deadline = time.monotonic() + timeout
        with self.hold() if self.mode == "skip" else contextlib.nullcontext():
            while True:
                value = predicate()
                if value:
                    return value
                if time.monotonic() > deadline:
                    raise TimeoutError(f"condition not reached by simulated {self.now().isoformat()}")
                if self.mode != "skip":
                    time.sleep(poll)
                    continue
                with self._cond:
                    settled = self._settled(plain=False)
                if not settled:
                    continue
                # The system went idle *after* the predicate was read: read it again before
                # moving time, or a state reached while settling (say, "waiting for approval")
                # would be jumped over (straight to its timeout).
                value = predicate()
                if value:
                    return value
                with self._cond:
                    # Only our own (read-only) predicate ran since settling: jump if still idle.
                    jumped = self._idle_locked(plain=False) and self._jump_locked()
                if jumped and pace:
                    time.sleep(pace)
                elif not jumped:
                    time.sleep(poll)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def make_clock(spec: str = "real", *, start: datetime | str | None = None, **kwargs: Any) -> Clock:
    """Build a clock from its ``--clock`` spelling: ``real``, ``skip``, ``scale=N`` or ``follow=URL``.

    ``follow=URL`` follows the time authority whose clock API is at ``URL`` (``.../admin/clock``):
    a :class:`RemoteClock` for a skip authority, an equivalent local clock for real/scale.
    """
    if isinstance(start, str):
        start = parse_instant(start)
    spec = spec.strip()
    if spec.lower().startswith("follow="):
        return follow_clock(spec.split("=", 1)[1], **kwargs)
    spec = spec.lower()
    if spec in ("real", "skip"):
        return Clock(spec, start=start, **kwargs)
    if spec.startswith("scale="):
        try:
            factor = float(spec.split("=", 1)[1])
        except ValueError:
            raise ValueError(f"bad clock spec {spec!r}: scale=N needs a number") from None
        return Clock("scale", start=start, scale=factor, **kwargs)
    raise ValueError(f"bad clock spec {spec!r}: use real, skip or scale=N")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


CLOCK_EXEMPT = "__clock_exempt__"


def clock_exempt(handler: Any) -> Any:
    """Mark an aiohttp handler as *not* in-flight work (long-polls and the clock API itself).

    Why: a handler that waits for time to move (``advance``, a long-poll on an instance) must
    not hold the clock busy while it waits, or it would wait for itself.
    """
    setattr(handler, CLOCK_EXEMPT, True)
    return handler


def busy_middleware(clock: Clock) -> Any:
    """aiohttp middleware that marks every request as in-flight work on ``clock``.

    Handlers marked with :func:`clock_exempt` (and everything under ``/admin/clock``) are not.
    Following another process's clock, a request is handled only once the authority knows this
    process is busy (so it cannot jump while the request's work is being queued).
    """
    from aiohttp import web

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[..., Any]) -> Any:
        route_handler = getattr(request.match_info, "handler", None)
        if getattr(handler, CLOCK_EXEMPT, False) or getattr(route_handler, CLOCK_EXEMPT, False) \
                or request.path.startswith("/admin/clock"):
            return await handler(request)
        with clock.busy():
            await clock.confirm_busy()
            return await handler(request)

    return middleware


# ====================================================================== following another process
def _http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw) if raw else None
        except ValueError:
            return err.code, None


def follow_clock(url: str, *, holder: str = "functions-host", ttl_seconds: float = 5.0, **kwargs: Any) -> Clock:
    """A clock following the authority at ``url``: real/scale are reproduced locally, skip is followed."""
    url = url.rstrip("/")
    status, state = _http_json("GET", url)
    if status != 200 or not isinstance(state, dict):
        raise ValueError(f"no clock API at {url} (HTTP {status})")
    mode = str(state.get("mode"))
    if mode == "real":
        return Clock("real", **kwargs)
    if mode == "scale":
        return Clock("scale", start=parse_instant(state["start"]), scale=float(state["scale"]),
                     anchor_unix=float(state["anchorUnix"]), **kwargs)
    return RemoteClock(url, holder=holder, ttl_seconds=ttl_seconds, now=parse_instant(state["now"]), **kwargs)


class RemoteClock(Clock):
    """A skip clock that follows a time authority in another process (see the module docstring).

    Local waits and busy sections work as on any clock; time itself comes from the authority:

    * a *watcher* thread long-polls ``GET URL?after=<now>`` and applies each new instant, waking
      the local sleepers due (each woken sleeper counts as busy until it runs, as locally);
    * a *reporter* thread sends ``{busy, nextDue, seen}`` on every change (busy at once, idle
      only after a settle period) and at least every ``ttl/3`` as a heartbeat;
    * :meth:`confirm_busy` (awaited by :func:`busy_middleware`) returns once the authority has
      acknowledged that this process is busy.
    """

    def __init__(self, url: str, *, holder: str = "functions-host", ttl_seconds: float = 5.0,
                 now: datetime | None = None, **kwargs: Any) -> None:
        self.url = url.rstrip("/")
        self.holder = holder
        self.ttl = ttl_seconds
        self._busy_epoch = 0
        self._acked_epoch = 0
        self._report_seq = 0
        self._lease_id: str | None = None
        super().__init__("skip", start=now, **kwargs)
        self._acquire()
        self._threads = [threading.Thread(target=self._watch, name="clock-follow-watch", daemon=True),
                         threading.Thread(target=self._report, name="clock-follow-report", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _drives(self) -> bool:
        return False

    @property
    def lease_id(self) -> str | None:
        return self._lease_id

    def _acquire(self) -> None:
        status, body = _http_json("POST", f"{self.url}/lease",
                                  {"ttlSeconds": self.ttl, "holder": self.holder, "follower": True})
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"time authority {self.url} refused a follower lease: HTTP {status} {body}")
        self._lease_id = str(body["leaseId"])

    def _busy_changed_locked(self) -> None:
        if self._busy == 1:
            self._busy_epoch += 1
        self._cond.notify_all()

    async def confirm_busy(self) -> None:
        with self._cond:
            epoch = self._busy_epoch
        while not self._closed:
            with self._cond:
                if self._acked_epoch >= epoch:
                    return
            await asyncio.sleep(0.002)

    def _apply(self, now_text: str | None) -> None:
        if not now_text:
            return
        instant = parse_instant(now_text)
        with self._cond:
            if instant > self._virtual:
                self._set_time_locked(instant)
                self._jumps += 1

    def _watch(self) -> None:
        while not self._closed:
            after = _iso(self.now())
            try:
                status, body = _http_json("GET", f"{self.url}?after={after}&timeout=5", timeout=15)
            except (OSError, ValueError):
                time.sleep(0.2)
                continue
            if status == 200 and isinstance(body, dict):
                self._apply(body.get("now"))
            else:
                time.sleep(0.2)

    def _state_locked(self) -> tuple[bool, datetime | None, datetime, int]:
        self._prune()
        due = self._sleepers[0][0] if self._sleepers else None
        return (self._busy > 0 or self._holds > 0), due, self._virtual, self._busy_epoch

    def _report(self) -> None:
        sent: tuple[bool, datetime | None, datetime] | None = None
        last = 0.0
        while not self._closed:
            with self._cond:
                busy, due, seen, epoch = self._state_locked()
                heartbeat = time.monotonic() - last >= self.ttl / 3
                if sent == (busy, due, seen) and not heartbeat and not (busy and epoch > self._acked_epoch):
                    self._cond.wait(min(self.ttl / 3, 0.5))
                    continue
                if not busy and sent is not None and sent[0] and not self._settled(plain=False):
                    continue  # report idle only after a settle period with nothing busy
                busy, due, seen, epoch = self._state_locked()
                self._report_seq += 1
                seq = self._report_seq
            body = {"seq": seq, "busy": busy, "nextDue": _iso(due) if due else None, "seen": _iso(seen),
                    "ttlSeconds": self.ttl}
            try:
                status, answer = _http_json("POST", f"{self.url}/lease/{self._lease_id}/report", body)
            except (OSError, ValueError):
                time.sleep(0.1)
                continue
            if status == 404:
                log.warning("follower lease %s expired at the authority: taking a new one", self._lease_id)
                with contextlib.suppress(Exception):
                    self._acquire()
                continue
            if status != 200:
                time.sleep(0.1)
                continue
            last = time.monotonic()
            sent = (busy, due, seen)
            with self._cond:
                if busy:
                    self._acked_epoch = max(self._acked_epoch, epoch)
                self._cond.notify_all()
            if isinstance(answer, dict):
                self._apply(answer.get("now"))

    # -- leases and explicit moves are the authority's: forwarded over its clock API ----------
    def _forward(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        return _http_json(method, f"{self.url}{path}", body, timeout=timeout)

    def acquire_lease(self, ttl_seconds: float, holder: str = "", *, follower: bool = False) -> str:
        status, body = self._forward("POST", "/lease", {"ttlSeconds": ttl_seconds, "holder": holder,
                                                        "follower": follower})
        if status == 400:
            raise ValueError(str(((body or {}).get("error") or {}).get("message", body)))
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"time authority {self.url}: HTTP {status} {body}")
        return str(body["leaseId"])

    def renew_lease(self, lease_id: str, ttl_seconds: float | None = None) -> bool:
        status, body = self._forward("POST", f"/lease/{lease_id}", {} if ttl_seconds is None
                                     else {"ttlSeconds": ttl_seconds})
        if status == 400:
            raise ValueError(str(((body or {}).get("error") or {}).get("message", body)))
        return status == 200

    def release_lease(self, lease_id: str) -> bool:
        return self._forward("DELETE", f"/lease/{lease_id}")[0] == 200

    def leases(self) -> list[dict[str, Any]]:
        status, body = self._forward("GET", "")
        return list(body.get("leases", [])) if status == 200 and isinstance(body, dict) else []

    def lease_expires_at(self, lease_id: str) -> datetime | None:
        for item in self.leases():
            if item.get("leaseId") == lease_id:
                return parse_instant(str(item["expiresAt"]))
        return None

    def has_lease(self, lease_id: str) -> bool:
        return any(item.get("leaseId") == lease_id for item in self.leases())

    def suspend_lease(self, lease_id: str) -> bool:
        return self._forward("POST", f"/lease/{lease_id}/suspend", {})[0] == 200

    def resume_lease(self, lease_id: str) -> bool:
        return self._forward("POST", f"/lease/{lease_id}/resume", {})[0] == 200

    def follower_report(self, lease_id: str, **_: Any) -> dict[str, Any] | None:
        return None  # a follower is not an authority

    async def _advance_remote(self, body: dict[str, Any], timeout: float) -> datetime | None:
        loop = asyncio.get_running_loop()
        status, answer = await loop.run_in_executor(
            None, lambda: self._forward("POST", "/advance", {**body, "timeoutSeconds": timeout}, timeout + 30))
        code = ((answer or {}).get("error") or {}).get("code") if isinstance(answer, dict) else None
        if status == 200 and isinstance(answer, dict):
            self._apply(answer.get("now"))
            return self.now()
        if code == "NothingDue":
            return None
        if code == "ClockBusy":
            raise ClockBusyError(str(answer))
        if code == "InstantInPast":
            raise ValueError(str(answer))
        raise RuntimeError(f"time authority {self.url}: HTTP {status} {answer}")

    async def until_idle(self, *, timeout: float = 60.0) -> datetime:
        moved = await self._advance_remote({"untilIdle": True}, timeout)
        return moved or self.now()

    async def advance_next(self, *, timeout: float = 60.0) -> datetime | None:
        return await self._advance_remote({"next": True}, timeout)

    async def advance_to(self, target: datetime, *, timeout: float = 60.0) -> datetime:
        moved = await self._advance_remote({"to": _iso(_utc(target))}, timeout)
        return moved or self.now()

    def advance(self) -> bool:
        raise RuntimeError("a following clock is moved by its time authority")

    def close(self) -> None:
        lease = self._lease_id
        super().close()
        if lease:
            with contextlib.suppress(Exception):
                _http_json("DELETE", f"{self.url}/lease/{lease}", timeout=2)
