"""The Ring 0 planner (issue 11): duration from waves and phases, T-40 fit, concurrency that fits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from patchrings.domain.health import HealthPolicy
from patchrings.domain.planner import estimate_ring
from patchrings.domain.rate import RateControl

pytestmark = pytest.mark.unit

START = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
HEALTH = HealthPolicy()  # wait 5m, elastic 30m, healthy 15m
INSTALL = timedelta(minutes=30)  # expected install: one wave = 30 + 5 + 15 = 50 min


def est(vms: int, concurrency: int | str, next_run: datetime | None, **kw: object) -> dict[str, Any]:
    rate = RateControl.from_dict({"maxConcurrency": concurrency, **kw})  # type: ignore[dict-item]
    return estimate_ring("ring0", vms, rate=rate, health=HEALTH, install_expected=INSTALL, start=START,
                         next_ring="ring1", next_run_start=next_run).to_dict()


def test_forty_vms_at_five_miss_the_next_rings_t40_and_say_what_fits() -> None:
    # Ring 1 at 12:00: T-40 11:20, less the 5-minute margin: land by 11:15 -> 315 min = 6 waves of 50 min
    out = est(40, 5, datetime(2026, 11, 16, 12, 0, tzinfo=UTC))
    assert out["waves"] == [5] * 8 and out["waveDuration"] == "PT50M"
    assert out["needs"] == "PT6H40M" and out["finishesAt"] == "2026-11-16T12:40:00Z"
    assert out["landBy"] == "2026-11-16T11:15:00Z" and out["fits"] is False and out["slack"] == "-PT1H25M"
    assert out["minConcurrencyToFit"] == 7  # ceil(40 / 6)
    [warning] = out["warnings"]
    assert "needs 6h40m (8 waves x 50m)" in warning and "at least 7" in warning


def test_fits_with_slack_and_warns_when_only_the_happy_path_fits() -> None:
    ok = est(10, 5, datetime(2026, 11, 17, 12, 0, tzinfo=UTC))
    assert ok["fits"] is True and ok["warnings"] == [] and ok["needsWorstCase"] == "PT2H40M"
    tight = est(10, 5, datetime(2026, 11, 16, 8, 30, tzinfo=UTC))  # land by 07:45: 100 min happy, 160 worst
    assert tight["fits"] is True and len(tight["warnings"]) == 1 and "worst case 2h40m" in tight["warnings"][0]


def test_geometric_waves_and_no_deadline() -> None:
    out = est(40, 8, datetime(2026, 11, 16, 12, 0, tzinfo=UTC), waveSchedule="geometric")
    assert out["waves"] == [1, 2, 4, 8, 8, 8, 8, 1] and out["fits"] is False
    assert out["minConcurrencyToFit"] == 13  # 1, 2, 4, 8, 13, 12: six waves
    none = est(40, 5, None)
    assert none["fits"] is None and none["landBy"] is None and none["warnings"] == []
    empty = est(0, 5, datetime(2026, 11, 16, 12, 0, tzinfo=UTC))
    assert empty["waves"] == [] and empty["needs"] == "PT0S" and empty["fits"] is True


def test_an_approval_after_ring0_is_given_its_window() -> None:
    rate = RateControl.from_dict({"maxConcurrency": 5})
    out = estimate_ring("ring0", 5, rate=rate, health=HEALTH, install_expected=INSTALL, start=START,
                        next_ring="ring1", next_run_start=datetime(2026, 11, 16, 12, 0, tzinfo=UTC),
                        approval_needed=True).to_dict()
    assert out["fits"] is True and any("ring1 needs an approval" in w and "by 2026-11-16T11:15:00Z" in w
                                       for w in out["warnings"])
    too_late = estimate_ring("ring0", 5, rate=rate, health=HEALTH, install_expected=INSTALL, start=START,
                             next_ring="ring1", next_run_start=datetime(2026, 11, 16, 6, 30, tzinfo=UTC))
    assert too_late.fits is False and too_late.min_concurrency_to_fit is None
    assert "no concurrency fits" in too_late.warnings[0]
