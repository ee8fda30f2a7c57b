"""Bounded, order-preserving fan-out of per-VM ARM calls inside one activity.

Why: retagging or collecting results for a 1,000-VM ring one call at a time takes minutes;
unbounded parallelism would trip ARM's per-principal token bucket (reads 250 / writes 200,
refilling 25/s and 10/s). A small fixed pool keeps activities short and polite. The SDK
clients are safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["FANOUT_WORKERS", "map_bounded"]

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
