"""Rate control: thresholds (count/percent, rounding), zone-spread waves, SSM error budget."""

from __future__ import annotations

import pytest

from patchrings.domain.rate import ErrorBudget, RateControl, Threshold, plan_waves, spread_order

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "total", "expected"),
    [(3, 10, 3), ("3", 10, 3), ("25%", 10, 3), ("25%", 8, 2), ("10%", 3, 1), ("100%", 7, 7), ("1%", 1000, 10),
     ("33%", 3, 1), (5, 0, 5), ("50%", 0, 1)],
)
def test_concurrency_rounds_up_and_is_at_least_one(raw, total, expected):
    assert Threshold.parse(raw, "concurrency").resolve(total) == expected


@pytest.mark.parametrize(
    ("raw", "total", "expected"),
    [(0, 10, 0), (3, 10, 3), ("10%", 50, 5), ("10%", 7, 0), ("25%", 10, 2), ("0%", 10, 0), ("100%", 4, 4)],
)
def test_max_errors_rounds_down_like_ssm(raw, total, expected):
    assert Threshold.parse(raw, "errors").resolve(total) == expected


@pytest.mark.parametrize("raw", [0, "0%", "101%", -1, "abc", True, 1.5, "%"])
def test_invalid_concurrency_is_refused_with_what_is_allowed(raw):
    with pytest.raises(ValueError, match="count >= 1 such as 3 or a percentage"):
        Threshold.parse(raw, "concurrency")


def test_threshold_json_form_round_trips():
    for raw in (3, "25%", "12.5%"):
        assert Threshold.parse(Threshold.parse(raw).to_json()).to_json() == raw
    rc = RateControl.from_dict({"maxConcurrency": "25%", "maxErrors": 1})
    assert RateControl.from_dict(rc.to_dict()) == rc


def vm(i, zone=None, avset=None):
    return {"id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{i:02d}",
            "name": f"vm{i:02d}", "zone": zone, "availabilitySet": avset}


def test_waves_spread_across_zones_round_robin():
    vms = [vm(i, zone=str(1 + i % 3)) for i in range(9)]  # 3 per zone
    waves = plan_waves(vms, 3)
    assert len(waves) == 3
    by_id = {v["id"]: v["zone"] for v in vms}
    for wave in waves:
        assert sorted(by_id[v] for v in wave) == ["1", "2", "3"]  # one per zone per wave


def test_waves_spread_across_availability_sets():
    vms = [vm(i, avset="AS-A" if i < 4 else "as-b") for i in range(6)]
    waves = plan_waves(vms, 2)
    sets = {v["id"]: v["availabilitySet"].lower() for v in vms}
    assert [sorted(sets[x] for x in w) for w in waves[:2]] == [["as-a", "as-b"], ["as-a", "as-b"]]
    assert sorted(sets[x] for x in waves[2]) == ["as-a", "as-a"]  # only set A has VMs left


def test_waves_are_deterministic_whatever_the_input_order():
    vms = [vm(i, zone=str(i % 2)) for i in range(7)]
    assert plan_waves(vms, 3) == plan_waves(list(reversed(vms)), 3)
    assert sum(len(w) for w in plan_waves(vms, 3)) == 7


def test_waves_accept_a_threshold_and_plain_ids_and_drop_duplicates():
    ids = ["b", "a", "C", "c"]
    assert plan_waves(ids, Threshold.parse("50%")) == [["a", "b"], ["C"]]
    assert spread_order([]) == []
    assert plan_waves([], 2) == []


def test_waves_refuse_zero_concurrency():
    with pytest.raises(ValueError):
        plan_waves([vm(1)], 0)


def test_error_budget_stops_after_more_than_max_errors():
    budget = ErrorBudget(max_errors=2)
    for i in range(2):
        budget.record(f"vm{i}", ok=False)
        assert budget.may_start_more()
    budget.record("vm1", ok=False)  # duplicate, counted once
    assert budget.errors == 2 and budget.may_start_more() and budget.remaining == 0
    budget.record("vm9", ok=False)
    assert budget.exceeded and not budget.may_start_more()


def test_error_budget_zero_stops_on_first_failure_and_round_trips():
    budget = ErrorBudget.for_ring(RateControl.from_dict({"maxConcurrency": 1, "maxErrors": "10%"}), 9)
    assert budget.max_errors == 0
    budget.record("ok1", ok=True)
    assert budget.may_start_more()
    budget.record("bad1", ok=False)
    assert not budget.may_start_more()
    again = ErrorBudget.from_dict(budget.to_dict())
    assert again == budget and again.to_dict()["exceeded"] is True


@pytest.mark.parametrize("seed", range(20))
def test_waves_properties_on_random_fleets(seed):
    import random

    rnd = random.Random(seed)
    vms = []
    for i in range(rnd.randint(1, 40)):
        kind = rnd.choice(["zone", "avset", "none"])
        vms.append(vm(i, zone=str(rnd.randint(1, 3)) if kind == "zone" else None,
                      avset=f"as-{rnd.randint(1, 2)}" if kind == "avset" else None))
    size = rnd.randint(1, 6)
    waves = plan_waves(vms, size)
    flat = [x for w in waves for x in w]
    assert sorted(flat) == sorted(v["id"] for v in vms)  # every VM exactly once
    assert all(1 <= len(w) <= size for w in waves)
    assert all(len(w) == size for w in waves[:-1])

    def domain(vid):
        v = next(v for v in vms if v["id"] == vid)
        return v["zone"] or v["availabilitySet"] or "-"

    # spread: a wave repeats a failure domain only when no other domain still had VMs left
    remaining = {d: sum(1 for v in vms if (v["zone"] or v["availabilitySet"] or "-") == d) for d in
                 {(v["zone"] or v["availabilitySet"] or "-") for v in vms}}
    for wave in waves:
        doms = [domain(x) for x in wave]
        available = sum(1 for n in remaining.values() if n > 0)
        assert len(set(doms)) >= min(len(wave), available), (wave, remaining)
        for d in doms:
            remaining[d] -= 1


# ------------------------------------------------------------------ paced install starts (issue 11, W2)
from patchrings.domain.rate import (  # noqa: E402
    ARM_READ_BUCKET,
    ARM_WRITE_BUCKET,
    StartPacing,
    start_bursts,
    start_pacing,
)


def test_start_pacing_divides_half_of_arms_buckets_among_the_slices() -> None:
    assert start_pacing(1) == StartPacing(100, 10)  # 100 writes of 200, refilled at 10/s in 10 s
    assert start_pacing(5) == StartPacing(20, 10)  # a 500-VM wave as five 100-VM slices
    assert start_pacing(10) == StartPacing(10, 10)
    assert start_pacing() == start_pacing(5)  # not said: a 500-VM wave is assumed
    assert start_pacing(500) == StartPacing(1, 50)  # never below one start per burst: longer pauses
    assert start_pacing(3, burst=7) == StartPacing(7, 3)  # 21 writes at 10/s
    assert start_pacing(3, burst=7, pause_seconds=60) == StartPacing(7, 60)
    assert start_pacing(0, burst=0, pause_seconds=-1) == StartPacing(20, 0)


@pytest.mark.parametrize("slices", [1, 2, 3, 5, 7, 10])
def test_paced_starts_of_all_slices_never_take_more_than_half_of_either_bucket(slices: int) -> None:
    """A token-bucket check of the plan: all slices burst together, every burst, for 1,000 starts."""
    pacing = start_pacing(slices)
    for size, refill in (ARM_READ_BUCKET, ARM_WRITE_BUCKET):
        tokens, lowest = float(size), float(size)
        for _ in range(1000 // (pacing.burst * slices) + 1):
            tokens -= pacing.burst * slices
            lowest = min(lowest, tokens)
            tokens = min(float(size), tokens + pacing.pause_seconds * refill)
        assert lowest >= size / 2


def test_start_bursts_take_the_next_vms_of_each_subscription() -> None:
    subs = ["a", "a", "b", "A", "b", "c", "a"]
    assert start_bursts(subs, 2) == [[0, 1, 2, 4, 5], [3, 6]]
    assert start_bursts(subs, 100) == [list(range(7))]
    assert start_bursts([], 5) == []
    got = start_bursts(["s"] * 45, 20)
    assert [len(b) for b in got] == [20, 20, 5] and sorted(i for b in got for i in b) == list(range(45))
