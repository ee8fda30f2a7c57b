"""ARM's token buckets in the simulator: per principal, and the subscription's global bucket
(15 x the per-principal one) shared by every principal of the subscription."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from emulator.arm.throttle import Throttle

pytestmark = pytest.mark.emulator

NOW = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-00000000aaaa"


def test_principals_have_their_own_buckets_but_share_the_global_one() -> None:
    # per principal 4 writes (no refill), global 2 x 4 = 8: the third principal finds it empty
    throttle = Throttle({"writes": {"size": 4, "refillPerSecond": 0.001}, "globalFactor": 2})
    for principal in ("app", "operator"):
        answers = [throttle.take(SUB, principal, "PATCH", NOW) for _ in range(4)]
        assert [a[0] for a in answers] == [True] * 4
        assert throttle.take(SUB, principal, "PATCH", NOW)[0] is False  # its own bucket is empty
    allowed, headers, wait = throttle.take(SUB, "third", "PUT", NOW)
    assert (allowed, headers["x-ms-ratelimit-remaining-subscription-writes"]) == (False, "0") and wait >= 1
    # reads are a different kind with their own buckets
    assert throttle.take(SUB, "third", "GET", NOW)[0] is True


def test_remaining_header_is_the_smaller_of_the_two_buckets() -> None:
    throttle = Throttle({"writes": {"size": 10, "refillPerSecond": 0.001}, "globalFactor": 1.5})  # global 15
    for _ in range(8):
        throttle.take(SUB, "app", "PATCH", NOW)
    # app: 2 left, global: 7 left
    assert throttle.take(SUB, "other", "PATCH", NOW)[1]["x-ms-ratelimit-remaining-subscription-writes"] == "6"
    assert throttle.take(SUB, "app", "PATCH", NOW)[1]["x-ms-ratelimit-remaining-subscription-writes"] == "1"


def test_global_bucket_can_be_turned_off() -> None:
    throttle = Throttle({"writes": {"size": 1, "refillPerSecond": 0.001}, "globalFactor": 0})
    assert all(throttle.take(SUB, f"p{i}", "PATCH", NOW)[0] for i in range(50))
