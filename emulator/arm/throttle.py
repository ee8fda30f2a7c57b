"""ARM request throttling: token buckets per subscription, principal and kind.

Why: the app fans out over many VMs; Azure Resource Manager answers bursts with 429 and the
``x-ms-ratelimit-remaining-subscription-*`` headers, and the SDK's retry policy waits for
``Retry-After``. The simulator applies ARM's documented buckets (contracts §7): reads 250
refilling 25/s, writes 200 refilling 10/s, deletes 200 refilling 10/s; sizes are configurable
per scenario so a test can provoke throttling with a handful of calls.

Refill uses the larger of simulated and real elapsed time: a skip clock does not move while an
SDK sleeps ``Retry-After`` real seconds, and a client must not stay throttled forever because
of that.

LIMITATIONS: tenant-level buckets and Compute's per-API HighCost buckets are not modelled (the
``x-ms-ratelimit-remaining-resource`` header is not sent).
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
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, subscription: str, principal: str, method: str, now: datetime) -> tuple[bool, dict[str, str], int]:
        """Consume one token. Returns (allowed, headers, retry_after_seconds)."""
        kind = kind_of(method)
        if not self.enabled:
            return True, {_HEADER[kind]: str(self._limits[kind][0] - 1)}, 0
        size, refill = self._limits[kind]
        key = (subscription.lower(), principal, kind)
        with self._lock:
            bucket = self._buckets.get(key)
            real = time.monotonic()
            if bucket is None:
                bucket = _Bucket(size, refill, float(size), now, real)
                self._buckets[key] = bucket
            elapsed = max((now - bucket.sim_at).total_seconds(), real - bucket.real_at, 0.0)
            bucket.tokens = min(float(size), bucket.tokens + elapsed * refill)
            bucket.sim_at, bucket.real_at = now, real
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return True, {_HEADER[kind]: str(int(bucket.tokens))}, 0
            wait = math.ceil((1 - bucket.tokens) / refill) if refill > 0 else 60
            return False, {_HEADER[kind]: "0"}, max(1, wait)
