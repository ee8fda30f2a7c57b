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

LIMITATIONS: ``skip`` works within one process only (run host and simulator together, as
``python -m emulator start --arm SCENARIO`` and the pytest fixtures do). Separate processes
can share ``real`` or ``scale=N`` time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["Clock", "busy_middleware", "make_clock", "parse_instant"]


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
        if mode == "skip":
            self._driver = threading.Thread(target=self._drive, name="clock-skip", daemon=True)
            self._driver.start()

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
            # Count the sleeper as busy from the jump until it has resumed: otherwise the gap
            # between "woken" and "running again" looks idle and the clock could jump twice.
            self.enter_busy()
            woken.append(True)

            def _set() -> None:
                if not future.done():
                    future.set_result(None)

            loop.call_soon_threadsafe(_set)

        seq = self._register(when, wake)
        try:
            await future
        finally:
            self._unregister(seq)
            if woken:
                # One more loop turn lets the resumed code enter its own busy() section first.
                loop.call_soon(self.exit_busy)

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
        with self._cond:
            self._busy += 1
            self._generation += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._generation += 1
                self._cond.notify_all()

    def enter_busy(self) -> None:
        """Non-context-manager form of :meth:`busy` for work that spans callbacks."""
        with self._cond:
            self._busy += 1
            self._generation += 1

    def exit_busy(self) -> None:
        with self._cond:
            self._busy -= 1
            self._generation += 1
            self._cond.notify_all()

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
        """The earliest registered sleeper, if any."""
        with self._cond:
            self._prune()
            return self._sleepers[0][0] if self._sleepers else None

    def _prune(self) -> None:
        while self._sleepers and self._sleepers[0][1] not in self._live:
            heapq.heappop(self._sleepers)

    def _settled(self) -> bool:
        """True when nothing has been busy for a whole settle period (lock held on entry)."""
        generation = self._generation
        if self._busy:
            return False
        self._cond.wait(self._settle)
        return self._busy == 0 and generation == self._generation

    def _jump_locked(self) -> bool:
        """Advance to the earliest sleeper and wake everything due (lock held)."""
        self._prune()
        if not self._sleepers:
            return False
        target = self._sleepers[0][0]
        self._virtual = max(self._virtual, target)
        self._jumps += 1
        while self._sleepers and self._sleepers[0][0] <= self._virtual:
            _, seq, wake = heapq.heappop(self._sleepers)
            if seq in self._live:
                self._live.discard(seq)
                wake()
        self._generation += 1
        return True

    def _drive(self) -> None:
        with self._cond:
            while not self._closed:
                self._prune()
                if self._holds or self._busy or not self._sleepers:
                    self._cond.wait(0.5)
                    continue
                if not self._settled():
                    continue
                if self._holds or not self._sleepers:
                    continue
                self._jump_locked()

    def advance(self) -> bool:
        """Jump once to the earliest sleeper now, ignoring holds (skip mode only)."""
        if self.mode != "skip":
            raise RuntimeError("advance() needs a skip clock")
        with self._cond:
            return self._jump_locked()

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
                    settled = self._settled()
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
                    jumped = self._busy == 0 and self._jump_locked()
                if jumped and pace:
                    time.sleep(pace)
                elif not jumped:
                    time.sleep(poll)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def make_clock(spec: str = "real", *, start: datetime | str | None = None, **kwargs: Any) -> Clock:
    """Build a clock from its ``--clock`` spelling: ``real``, ``skip`` or ``scale=N``."""
    if isinstance(start, str):
        start = parse_instant(start)
    spec = spec.strip().lower()
    if spec in ("real", "skip"):
        return Clock(spec, start=start, **kwargs)
    if spec.startswith("scale="):
        try:
            factor = float(spec.split("=", 1)[1])
        except ValueError:
            raise ValueError(f"bad clock spec {spec!r}: scale=N needs a number") from None
        return Clock("scale", start=start, scale=factor, **kwargs)
    raise ValueError(f"bad clock spec {spec!r}: use real, skip or scale=N")


def busy_middleware(clock: Clock) -> Any:
    """aiohttp middleware that marks every request as in-flight work on ``clock``."""
    from aiohttp import web

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[..., Any]) -> Any:
        with clock.busy():
            return await handler(request)

    return middleware
