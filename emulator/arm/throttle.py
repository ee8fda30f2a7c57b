"""ARM request throttling: token buckets per subscription, principal and kind.

Why: the app fans out over many VMs; Azure Resource Manager answers bursts with 429 and the
``x-ms-ratelimit-remaining-subscription-*`` headers, and the SDK's retry policy waits for
``Retry-After``. The simulator applies ARM's documented buckets (contracts §7): reads 250
refilling 25/s, writes 200 refilling 10/s, deletes 200 refilling 10/s; sizes are configurable
per scenario so a test can provoke throttling with a handful of calls.

Besides the per-principal buckets, each subscription has a *global* bucket per kind shared by
all principals, ``globalFactor`` (default 15) times the per-principal size and refill
(learn.microsoft.com, "Request limits and throttling", regional token-bucket algorithm: "a global
subscription limit that is equivalent to 15 times the individual service principal limit").
A request needs a token from both; the remaining-header reports the smaller count.
``globalFactor: 0`` turns the global bucket off.

Refill uses the larger of simulated and real elapsed time: a skip clock does not move while an
SDK sleeps ``Retry-After`` real seconds, and a client must not stay throttled forever because
of that.

LIMITATIONS: buckets are per subscription, not per region; tenant-level buckets and Compute's
per-API HighCost buckets are not modelled (the ``x-ms-ratelimit-remaining-resource`` header is
not sent).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["DEFAULT_BUCKETS", "Throttle", "kind_of"]

DEFAULT_BUCKETS = {"reads": (250, 25.0), "writes": (200, 10.0), "deletes": (200, 10.0)}
_HEADER = {
    "reads": "x-ms-ratelimit-remaining-subscription-reads",
    "writes": "x-ms-ratelimit-remaining-subscription-writes",
    "deletes": "x-ms-ratelimit-remaining-subscription-deletes",
}


def kind_of(method: str) -> str:
    method = method.upper()
    if method in ("GET", "HEAD"):
        return "reads"
    return "deletes" if method == "DELETE" else "writes"


@dataclass
class _Bucket:
    size: int
    refill: float
    tokens: float
    sim_at: datetime
    real_at: float


class Throttle:
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.enabled = bool(config.get("enabled", True))
        self._limits = {
            kind: (
                int((config.get(kind) or {}).get("size", size)),
                float((config.get(kind) or {}).get("refillPerSecond", refill)),
            )
            for kind, (size, refill) in DEFAULT_BUCKETS.items()
        }
        self.global_factor = float(config.get("globalFactor", 15))
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, subscription: str, principal: str, method: str, now: datetime) -> tuple[bool, dict[str, str], int]:
        """Consume one token. Returns (allowed, headers, retry_after_seconds)."""
        kind = kind_of(method)
        if not self.enabled:
            return True, {_HEADER[kind]: str(self._limits[kind][0] - 1)}, 0
        size, refill = self._limits[kind]
        keys = [((subscription.lower(), principal, kind), size, refill)]
        if self.global_factor > 0:
            keys.append(((subscription.lower(), "*", kind), int(size * self.global_factor),
                         refill * self.global_factor))
        with self._lock:
            real = time.monotonic()
            buckets = [self._refilled(key, bsize, brefill, now, real) for key, bsize, brefill in keys]
            if all(b.tokens >= 1 for b in buckets):
                for b in buckets:
                    b.tokens -= 1
                return True, {_HEADER[kind]: str(int(min(b.tokens for b in buckets)))}, 0
            waits = [math.ceil((1 - b.tokens) / b.refill) if b.refill > 0 else 60 for b in buckets if b.tokens < 1]
            return False, {_HEADER[kind]: "0"}, max(1, *waits)

    def _refilled(self, key: tuple[str, str, str], size: int, refill: float, now: datetime, real: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(size, refill, float(size), now, real)
        elapsed = max((now - bucket.sim_at).total_seconds(), real - bucket.real_at, 0.0)
        bucket.tokens = min(float(size), bucket.tokens + elapsed * refill)
        bucket.sim_at, bucket.real_at = now, real
        return bucket
