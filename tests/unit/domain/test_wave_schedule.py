"""Progressive waves (issue 11): ``rate.waveSchedule`` "equal" | "geometric", pure in rate.py,
validated by the plan schema, kept out of the hash of plans that do not set it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from patchrings.domain.plan import load_plan, plan_weakenings, validate_plan
from patchrings.domain.rate import RateControl, plan_waves, wave_sizes

pytestmark = pytest.mark.unit

DEFAULT = Path(__file__).resolve().parents[3] / "plans" / "default.json"


def vm(i: int, zone: str | None = None) -> dict[str, str | None]:
    return {"id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{i:02d}",
            "zone": zone, "availabilitySet": None}


@pytest.mark.parametrize(
    ("total", "size", "schedule", "expected"),
    [
        (40, 5, "geometric", [1, 2, 4, 5, 5, 5, 5, 5, 5, 3]),
        (40, 5, "equal", [5] * 8),
        (3, 5, "geometric", [1, 2]),
        (7, 1, "geometric", [1] * 7),
        (20, 8, "geometric", [1, 2, 4, 8, 5]),
        (100, 64, "geometric", [1, 2, 4, 8, 16, 32, 37]),
        (11, 4, "equal", [4, 4, 3]),
        (0, 5, "geometric", []),
        (1, 5, "geometric", [1]),
    ],
)
def test_wave_sizes(total: int, size: int, schedule: str, expected: list[int]) -> None:
    assert wave_sizes(total, size, schedule) == expected  # type: ignore[arg-type]
    assert sum(expected) == total


def test_wave_sizes_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        wave_sizes(10, 0, "geometric")
    with pytest.raises(ValueError, match="equal, geometric"):
        wave_sizes(10, 2, "linear")  # type: ignore[arg-type]


def test_geometric_waves_keep_the_zone_spread_and_cover_every_vm_once() -> None:
    vms = [vm(i, zone=str(1 + i % 3)) for i in range(30)]
    waves = plan_waves(vms, 6, "geometric")
    assert [len(w) for w in waves] == [1, 2, 4, 6, 6, 6, 5]
    flat = [v for w in waves for v in w]
    assert sorted(flat) == sorted(str(v["id"]) for v in vms) and len(set(flat)) == 30
    zone = {v["id"]: v["zone"] for v in vms}
    assert len({zone[v] for v in waves[1]}) == 2  # a 2-VM wave takes two zones
    for wave in waves[2:]:
        assert len({zone[v] for v in wave}) == 3  # every bigger wave touches all three zones
    # the same order as equal waves: only the cut points differ (deterministic for replay)
    assert flat == [v for w in plan_waves(vms, 6) for v in w]


def test_rate_control_carries_the_schedule_and_plans_waves() -> None:
    rc = RateControl.from_dict({"maxConcurrency": "10%", "maxErrors": 0, "waveSchedule": "geometric"})
    assert rc.wave_schedule == "geometric"
    assert rc.to_dict() == {"maxConcurrency": "10%", "maxErrors": 0, "waveSchedule": "geometric"}
    assert RateControl.from_dict(rc.to_dict()) == rc
    assert [len(w) for w in rc.waves([vm(i) for i in range(40)])] == [1, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 1]
    assert rc.waves([]) == []
    plain = RateControl.from_dict({"maxConcurrency": 5})
    assert plain.wave_schedule == "equal" and "waveSchedule" not in plain.to_dict()
    with pytest.raises(ValueError, match="waveSchedule"):
        RateControl.from_dict({"waveSchedule": "fast"})


def test_plan_accepts_the_schedule_and_keeps_other_hashes() -> None:
    raw = json.loads(DEFAULT.read_text())
    plain = load_plan(copy.deepcopy(raw))
    assert all("waveSchedule" not in r.to_dict()["rate"] for r in plain.rings)
    geo = copy.deepcopy(raw)
    geo["rings"][0]["rate"] = {**geo["rings"][0].get("rate", {}), "waveSchedule": "geometric"}
    plan = load_plan(geo)
    assert plan.rings[0].rate.wave_schedule == "geometric"
    assert load_plan(plan.to_dict()) == plan and plan.hash != plain.hash
    # from the defaults too
    dflt = copy.deepcopy(raw)
    dflt.setdefault("defaults", {}).setdefault("rate", {})["waveSchedule"] = "geometric"
    assert load_plan(dflt).rings[0].rate.wave_schedule == "geometric"


def test_plan_refuses_an_unknown_schedule_naming_the_field() -> None:
    raw = json.loads(DEFAULT.read_text())
    raw["rings"][0]["rate"] = {"waveSchedule": "exponential"}
    errors = {e["field"]: e["message"] for e in validate_plan(raw)}
    assert errors == {"rings[0].rate.waveSchedule": "must be 'equal' or 'geometric'"}, errors


def test_an_inline_plan_may_turn_geometric_on_but_not_off() -> None:
    raw = json.loads(DEFAULT.read_text())
    deployed = load_plan(copy.deepcopy(raw))
    geo = copy.deepcopy(raw)
    geo["rings"][0]["rate"] = {**geo["rings"][0].get("rate", {}), "waveSchedule": "geometric"}
    assert plan_weakenings(load_plan(geo), deployed) == []
    fields = [p["field"] for p in plan_weakenings(deployed, load_plan(geo))]
    assert fields == ["plan.rings[0].rate.waveSchedule"]
