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

Reads (issue 11): :func:`read_pacer` is the per-subscription *read* pacer of this worker
process, shared by every activity that reads ARM in bulk (the health batch's instance views;
Resource Graph has its own per-principal quota gate, ``patchrings.arm.resource_graph.QUOTA``):
:data:`READ_BURST` at once, then :data:`READS_PER_SECOND` -- under ARM's read bucket (250
refilling 25/s per subscription and principal) -- and a hold whenever ARM's
``x-ms-ratelimit-remaining-subscription-reads`` falls below :data:`READ_RESERVE`.

Why per process plus ARM's header, not a shared budget (a durable entity or a storage-backed
bucket): ARM's header already *is* the shared budget -- every response says how many tokens the
subscription's bucket for this principal has left, whoever spent them -- so a pacer that stops
below a reserve adapts to other activities, other scaled-out app instances and other tools of
the same identity at no extra cost, while a durable entity would add a round trip and history
events per grant (or per batch of grants) on the hot path and still not see other tools. The
structural bounds cap what a burst can do before the first answers arrive: a process starts at
most ``READ_BURST`` reads at once, and the orchestrators cap how many VMs one activity takes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["ARM_READ_REFILL", "FANOUT_WORKERS", "READS_PER_SECOND", "READ_BURST", "READ_RESERVE",
           "REMAINING_READS_HEADER", "Pacer", "PacerRegistry", "map_bounded", "map_paced", "read_pacer", "read_pacers",
           "remaining_reads"]

T = TypeVar("T")
R = TypeVar("R")

FANOUT_WORKERS = 8

READS_PER_SECOND = 20.0  # ARM refills 25 reads/s per subscription and principal: 5/s left for others
READ_BURST = 125  # half of ARM's 250-token read bucket
READ_RESERVE = 50  # > the reads a process keeps in flight: below this many remaining, wait for ARM
ARM_READ_REFILL = 25.0
REMAINING_READS_HEADER = "x-ms-ratelimit-remaining-subscription-reads"


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
    ``calls``, ``waited`` (seconds callers slept, summed over the callers), ``stalled`` (wall
    seconds during which at least one caller was waiting for its slot) and ``holds`` (feedback
    pauses) are the limiter's cost, for logs and benchmarks. ``clock`` / ``sleep`` are injectable for tests.
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
        self.stalled = 0.0
        self.holds = 0
        self._sleepers = 0
        self._stall_began = 0.0

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
                self._enter_stall(now)
                try:
                    self._sleep(ready - now)
                finally:
                    self._leave_stall()
            with self._lock:
                if generation == self._generation:
                    self.calls += 1
                    self.waited += self._clock() - entered
                    return True
            # ARM asked for a pause while this caller slept: its slot is void, queue again

    def _enter_stall(self, now: float) -> None:
        with self._lock:
            if self._sleepers == 0:
                self._stall_began = now
            self._sleepers += 1

    def _leave_stall(self) -> None:
        with self._lock:
            self._sleepers -= 1
            if self._sleepers == 0:
                self.stalled += max(0.0, self._clock() - self._stall_began)

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


class PacerRegistry:
    """One :class:`Pacer` per subscription in this worker process, made on first use with the same
    settings (the read pacers here, the tag write pacers in ``activities.tags``)."""

    def __init__(self, make: Callable[[], Pacer]) -> None:
        self._make = make
        self._pacers: dict[str, Pacer] = {}
        self._lock = threading.Lock()

    def __call__(self, subscription: str) -> Pacer:
        key = subscription.lower()
        with self._lock:
            pacer = self._pacers.get(key)
            if pacer is None:
                pacer = self._pacers[key] = self._make()
            return pacer

    def all(self) -> dict[str, Pacer]:
        """The pacers by lower-case subscription id (their counters: the limiter's cost)."""
        with self._lock:
            return dict(self._pacers)


_READ_PACERS = PacerRegistry(lambda: Pacer(READS_PER_SECOND, READ_BURST, reserve=READ_RESERVE,
                                           server_refill=ARM_READ_REFILL))


def read_pacer(subscription: str) -> Pacer:
    """The read pacer of ``subscription`` in this process (created on first use; module doc)."""
    return _READ_PACERS(subscription)


def read_pacers() -> dict[str, Pacer]:
    """This process's read pacers by lower-case subscription id (their counters: the limiter's cost)."""
    return _READ_PACERS.all()


def remaining_reads(response: object) -> int | None:
    """ARM's remaining-reads header of a pipeline response (a ``raw_response_hook`` argument)."""
    headers = getattr(getattr(response, "http_response", None), "headers", None) or {}
    try:
        return int(str(headers.get(REMAINING_READS_HEADER)))
    except (TypeError, ValueError):
        return None
