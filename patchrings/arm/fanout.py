"""Bounded, order-preserving fan-out of per-VM ARM calls inside one activity, optionally paced.

Why: retagging or collecting results for a 1,000-VM ring one call at a time takes minutes;
unbounded parallelism would trip ARM's per-subscription token buckets (per principal: reads 250
refilling 25/s, writes 200 refilling 10/s; learn.microsoft.com "Request limits and throttling",
regional token-bucket algorithm). A small fixed pool keeps activities short and polite. The SDK
clients are safe to share between threads.

A pool bounds how many calls are *in flight*, not how many are sent per second: eight workers
answered in 20 ms each send 400 writes a second and empty a 200-token write bucket in half a
second (the 1,420-VM benchmark: 709 throttled tag writes). :class:`Pacer` is the per-second
bound: a client-side token bucket sized below ARM's (a burst, then a steady rate under ARM's
refill), which also listens to ARM's ``x-ms-ratelimit-remaining-subscription-*`` header, so
writers it cannot see (another activity, another app instance scaled out, another tool of the
same principal) slow it down as well: below ``reserve`` remaining tokens every caller waits until
ARM's bucket has refilled back to ``reserve``. :func:`map_paced` is :func:`map_bounded` with a
pacer per key (subscription) and a deadline: items not started by then come back as ``None``
(the caller reports them as deferred), so an activity stays well inside the functions timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["FANOUT_WORKERS", "Pacer", "map_bounded", "map_paced"]

T = TypeVar("T")
R = TypeVar("R")

FANOUT_WORKERS = 8


def map_bounded(fn: Callable[[T], R], items: Iterable[T], *, workers: int = FANOUT_WORKERS) -> list[R]:
    """``[fn(x) for x in items]`` on at most ``workers`` threads; results in input order.

    ``fn`` should not raise (callers turn failures into result values); if it does, the first
    exception propagates after the pool has finished.
    """
    values = list(items)
    if len(values) <= 1 or workers <= 1:
        return [fn(v) for v in values]
    with ThreadPoolExecutor(max_workers=min(workers, len(values)), thread_name_prefix="arm-fanout") as pool:
        return list(pool.map(fn, values))


class Pacer:
    """A client-side token bucket in front of one ARM bucket (e.g. one subscription's writes).

    ``burst`` calls may start at once, then ``rate`` per second; every caller reserves its own slot
    under a lock (tokens may go negative: later callers wait longer), so concurrent threads share it
    fairly. :meth:`observe` feeds back ARM's remaining-tokens header: when ARM says fewer than
    ``reserve`` remain, nothing starts until ARM's bucket (refilling ``server_refill`` per second)
    is back at ``reserve``; the local bucket is emptied and does not refill during that hold, and
    callers already asleep on a slot queue again behind it (no burst when it ends). Calls already
    in flight cannot be recalled, so ``reserve`` should exceed the calls a pool keeps in flight.
    ``calls``, ``waited`` (seconds callers slept) and ``holds`` (feedback pauses) are the limiter's
    cost, for logs and benchmarks. ``clock`` / ``sleep`` are injectable for tests.
    """

    def __init__(self, rate: float, burst: int, *, reserve: int = 40, server_refill: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0 or burst < 1 or server_refill <= 0:
            raise ValueError(f"a pacer needs rate > 0, burst >= 1 and server_refill > 0, got "
                             f"{rate}, {burst}, {server_refill}")
        self.rate = float(rate)
        self.burst = int(burst)
        self.reserve = int(reserve)
        self.server_refill = float(server_refill)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._at = clock()  # tokens are counted up to this instant (in the future during a hold)
        self._hold_until = 0.0
        self._generation = 0  # bumped by every new hold: slots reserved before it are void
        self.calls = 0
        self.waited = 0.0
        self.holds = 0

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for this caller's slot and take it; False if the slot would come after
        ``deadline`` (same time base as ``clock``)."""
        entered = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                self._refill(now)
                ready = max(now, self._hold_until)
                if self._tokens < 1:
                    ready = max(ready, self._at + (1 - self._tokens) / self.rate)
                if deadline is not None and ready > deadline:
                    self.waited += now - entered
                    return False
                self._tokens -= 1
                generation = self._generation
            if ready > now:
                self._sleep(ready - now)
            with self._lock:
                if generation == self._generation:
                    self.calls += 1
                    self.waited += self._clock() - entered
                    return True
            # ARM asked for a pause while this caller slept: its slot is void, queue again

    def observe(self, remaining: int | None) -> None:
        """ARM's ``x-ms-ratelimit-remaining-subscription-*`` value from a response (None: absent)."""
        if remaining is None or remaining >= self.reserve:
            return
        with self._lock:
            now = self._clock()
            until = now + (self.reserve - max(remaining, 0)) / self.server_refill
            if until > self._hold_until:
                self._refill(now)
                self._hold_until = until
                self._tokens = min(self._tokens, 0.0)
                self._at = until
                self._generation += 1
                self.holds += 1


def map_paced(fn: Callable[[T], R], items: Iterable[T], *, pacer_of: Callable[[T], Pacer],
              deadline: float | None = None, workers: int = FANOUT_WORKERS) -> list[R | None]:
    """Like :func:`map_bounded`, but each call first takes a slot from ``pacer_of(item)``.

    Items whose slot would come after ``deadline`` (the pacers' clock) are not called: their
    result is ``None``. Calls already started always finish.
    """

    def paced(item: T) -> R | None:
        if not pacer_of(item).acquire(deadline):
            return None
        return fn(item)

    return map_bounded(paced, items, workers=workers)
