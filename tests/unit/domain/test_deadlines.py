"""Schedule deadlines: cancel by min(cutoff, T-10), decide before it, promote before T-40."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from patchrings.domain.deadlines import (
    can_still_cancel,
    cancel_deadline,
    decision_deadline,
    promotion_target,
    t40,
)
from patchrings.domain.events import parse_maintenance_event
from tests.contracts import EVENTGRID_EXAMPLES

pytestmark = pytest.mark.unit

EXAMPLES = EVENTGRID_EXAMPLES


def pre_event(**data):
    raw = json.loads((EXAMPLES / "PreMaintenanceEvent.eventgrid-schema.json").read_text())[0]
    raw["data"].update(data)
    return parse_maintenance_event(raw)


def at(h, m=0, day=9):
    return datetime(2023, 5, day, h, m, tzinfo=UTC)


def test_doc_example_cutoff_after_t10_uses_t10():
    ev = pre_event()  # cutoff 14:59 for a 15:00 start (T-1)
    assert cancel_deadline(ev) == at(14, 50)
    assert decision_deadline(ev, timedelta(minutes=2)) == at(14, 48)


def test_cutoff_earlier_than_t10_wins():
    ev = pre_event(cancellationCutOffDateTime="2023-05-09T14:35:00Z")
    assert cancel_deadline(ev) == at(14, 35)


def test_missing_cutoff_falls_back_to_t10_and_dicts_are_accepted():
    ev = pre_event(cancellationCutOffDateTime=None)
    assert cancel_deadline(ev) == at(14, 50)
    assert cancel_deadline(ev.to_dict()) == at(14, 50)
    assert can_still_cancel(ev, at(14, 50)) and not can_still_cancel(ev, at(14, 51))


def test_t40():
    assert t40(at(15)) == at(14, 20)
    assert t40("2023-05-09T15:00:00Z") == at(14, 20)


DAILY = {"startDateTime": "2023-05-01 15:00", "duration": "03:55", "timeZone": "UTC", "recurEvery": "Day",
         "expirationDateTime": "9999-12-31 00:00"}


def test_promotion_meets_next_runs_t40():
    target = promotion_target(DAILY, at(14, 10), timedelta(minutes=5))
    assert target.meets_t40 and target.skipped_run is None
    assert target.run.start == at(15) and target.land_by == at(14, 15)
    assert target.to_dict()["runName"] == "20230509150000"


def test_promotion_too_late_targets_the_following_run_and_says_so():
    target = promotion_target(DAILY, at(14, 16), timedelta(minutes=5))
    assert not target.meets_t40
    assert target.skipped_run.start == at(15)
    assert target.run.start == at(15, day=10)
    assert target.land_by == at(14, 15, day=10)
    assert "too late for the run at 2023-05-09T15:00:00Z" in target.reason
    d = target.to_dict()
    assert d["meetsT40"] is False and d["skippedRun"]["name"] == "20230509150000"


def test_promotion_in_a_windows_time_zone():
    window = dict(DAILY, timeZone="Pacific Standard Time", startDateTime="2023-05-01 08:00")
    target = promotion_target(window, at(14, 0), timedelta(minutes=5))  # 07:00 PDT
    assert target.run.start == at(15) and target.meets_t40  # 08:00 PDT = 15:00Z


def test_expired_schedule_has_no_target():
    window = dict(DAILY, expirationDateTime="2023-05-09 16:00")
    assert promotion_target(window, at(14, 30), timedelta(minutes=5)) is None


# ---------------------------------------------------------------------- the guard's timing
def test_guard_decides_eight_minutes_before_the_cancel_deadline_at_the_latest() -> None:
    from patchrings.domain.deadlines import GUARD_LEAD, guard_decide_at

    by = datetime(2026, 11, 17, 11, 50, tzinfo=UTC)
    assert guard_decide_at(by, timedelta(minutes=2)) == by - GUARD_LEAD
    assert guard_decide_at(by, timedelta(minutes=12)) == by - timedelta(minutes=12)
    # the worst pre-event (T-30 = 20 min before T-10) leaves the rollout 12 minutes
    assert (guard_decide_at(by, timedelta(minutes=2)) - (by - timedelta(minutes=20))) == timedelta(minutes=12)


def test_cancel_attempt_budget_is_capped_and_stops_near_the_deadline() -> None:
    from patchrings.domain.deadlines import cancel_attempt_budget

    by = datetime(2026, 11, 17, 11, 50, tzinfo=UTC)
    assert cancel_attempt_budget(by - timedelta(minutes=5), by) == 60
    assert cancel_attempt_budget(by - timedelta(seconds=12), by) == 12
    assert cancel_attempt_budget(by - timedelta(seconds=4), by) is None
    assert cancel_attempt_budget(by + timedelta(seconds=1), by) is None


def test_next_cancel_attempt_backs_off_honours_retry_after_and_keeps_a_last_try() -> None:
    from patchrings.domain.deadlines import next_cancel_attempt

    by = datetime(2026, 11, 17, 11, 50, tzinfo=UTC)
    now = by - timedelta(minutes=6)
    assert [next_cancel_attempt(now, by, n) for n in (1, 2, 3, 4, 9)] == [
        now + timedelta(seconds=s) for s in (5, 10, 20, 30, 30)]
    assert next_cancel_attempt(now, by, 1, retry_after=90) == now + timedelta(seconds=90)
    assert next_cancel_attempt(now, by, 1, retry_after=3600) == by - timedelta(seconds=20)
    assert next_cancel_attempt(by - timedelta(seconds=20), by, 1) is None
