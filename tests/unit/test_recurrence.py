"""Recurrence of maintenance windows: every recurEvery form over a simulated month or more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from patchrings.domain.recurrence import (
    Occurrence,
    next_occurrence,
    occurrences,
    parse_recur_every,
    parse_window,
    resolve_time_zone,
    run_name,
)

pytestmark = pytest.mark.unit


def window(recur: str, start: str = "2025-01-01 08:00", tz: str = "UTC", duration: str = "03:55", **extra):
    body = {"startDateTime": start, "duration": duration, "timeZone": tz, "recurEvery": recur}
    body.update(extra)
    return parse_window(body)


def starts(w, after: str, until: str) -> list[str]:
    a = datetime.fromisoformat(after).replace(tzinfo=UTC)
    u = datetime.fromisoformat(until).replace(tzinfo=UTC)
    return [o.start.strftime("%Y-%m-%d %H:%M") for o in occurrences(w, a, u)]


def test_parse_window_fields():
    w = window("Week Saturday, Sunday", tz="Pacific Standard Time", expirationDateTime="9999-12-31 00:00")
    assert w.start_local == datetime(2025, 1, 1, 8, 0)
    assert w.duration == timedelta(hours=3, minutes=55)
    assert w.time_zone == "Pacific Standard Time"
    assert w.expiration_local == datetime(9999, 12, 31, 0, 0)
    assert w.zone.key == "America/Los_Angeles"


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("startDateTime", {"startDateTime": "30/04/2025"}),
        ("duration", {"duration": "3h"}),
        ("duration", {"duration": "00:00"}),
        ("timeZone", {"timeZone": "Mars Standard Time"}),
        ("recurEvery", {"recurEvery": "Fortnight"}),
        ("recurEvery", {"recurEvery": "Month Second Tuesday Offset7"}),
        ("recurEvery", {"recurEvery": "Week Funday"}),
        ("recurEvery", {"recurEvery": "Month day32"}),
        ("recurEvery", {"recurEvery": "Day Monday"}),
        ("recurEvery", {"recurEvery": "0Days"}),
        ("expirationDateTime", {"expirationDateTime": "2024-01-01 00:00"}),
    ],
)
def test_parse_window_errors_name_the_field(field, body):
    base = {"startDateTime": "2025-01-01 08:00", "duration": "02:00", "timeZone": "UTC", "recurEvery": "Day"}
    base.update(body)
    with pytest.raises(ValueError, match=field):
        parse_window(base)


def test_time_zone_names():
    assert resolve_time_zone("W. Europe Standard Time").key == "Europe/Berlin"
    assert resolve_time_zone("pacific standard time").key == "America/Los_Angeles"
    assert resolve_time_zone("Europe/Paris").key == "Europe/Paris"
    assert resolve_time_zone("UTC").key in ("Etc/UTC", "UTC")


def test_parse_recur_every_forms():
    assert parse_recur_every("Day").every == 1
    assert parse_recur_every("3Days").every == 3
    assert parse_recur_every("6Hours").unit == "hour"
    assert parse_recur_every("Week Saturday,Sunday").weekdays == (5, 6)
    assert parse_recur_every("Week Saturday, Sunday").weekdays == (5, 6)
    assert parse_recur_every("Month day23,day24").month_days == (23, 24)
    assert parse_recur_every("Month day-1").month_days == (-1,)
    r = parse_recur_every("2Months Second Tuesday Offset4")
    assert (r.every, r.ordinal, r.ordinal_weekday, r.offset_days) == (2, 2, 1, 4)
    assert parse_recur_every("Month Last Sunday Offset-3").offset_days == -3


def test_daily():
    w = window("Day")
    got = starts(w, "2025-01-01 00:00", "2025-02-01 23:59")
    assert len(got) == 32
    assert got[0] == "2025-01-01 08:00" and got[-1] == "2025-02-01 08:00"


def test_every_three_days_anchored_at_start():
    w = window("3Days", start="2025-01-02 22:00")
    got = starts(w, "2025-01-10 00:00", "2025-01-20 00:00")
    assert got == ["2025-01-11 22:00", "2025-01-14 22:00", "2025-01-17 22:00"]


def test_hourly():
    w = window("6Hours", start="2025-01-01 01:00", duration="01:30")
    got = starts(w, "2025-01-01 01:00", "2025-01-02 01:00")
    assert got == ["2025-01-01 07:00", "2025-01-01 13:00", "2025-01-01 19:00", "2025-01-02 01:00"]


def test_weekly_default_day_is_start_weekday():
    w = window("Week", start="2025-01-01 08:00")  # a Wednesday
    got = starts(w, "2025-01-01 00:00", "2025-02-05 23:00")
    assert got == [f"2025-{d} 08:00" for d in ("01-01", "01-08", "01-15", "01-22", "01-29", "02-05")]


def test_weekly_weekend_over_a_month():
    for text in ("Week Saturday,Sunday", "Week Saturday, Sunday"):
        got = starts(window(text), "2025-02-01 00:00", "2025-03-01 00:00")
        assert got == [f"2025-02-{d:02d} 08:00" for d in (1, 2, 8, 9, 15, 16, 22, 23)]


def test_every_two_weeks_counts_from_start_week():
    w = window("2Weeks Monday,Friday", start="2025-01-01 08:00")  # week of Mon 2024-12-30
    got = starts(w, "2025-01-01 00:00", "2025-02-01 00:00")
    # Monday 2024-12-30 is before the start; Fri 01-03, then weeks of 01-13, 01-27
    assert got == [
        "2025-01-03 08:00",
        "2025-01-13 08:00",
        "2025-01-17 08:00",
        "2025-01-27 08:00",
        "2025-01-31 08:00",
    ]


def test_monthly_days():
    got = starts(window("Month day23,day24"), "2025-01-01 00:00", "2025-03-31 00:00")
    assert got == [
        "2025-01-23 08:00",
        "2025-01-24 08:00",
        "2025-02-23 08:00",
        "2025-02-24 08:00",
        "2025-03-23 08:00",
        "2025-03-24 08:00",
    ]


def test_monthly_last_day_and_missing_days():
    assert starts(window("Month day-1"), "2025-01-01 00:00", "2025-04-30 23:00") == [
        "2025-01-31 08:00",
        "2025-02-28 08:00",
        "2025-03-31 08:00",
        "2025-04-30 08:00",
    ]
    # day31 is skipped in months without one
    assert starts(window("Month day31"), "2025-01-01 00:00", "2025-05-31 23:00") == [
        "2025-01-31 08:00",
        "2025-03-31 08:00",
        "2025-05-31 08:00",
    ]


def test_monthly_default_day_and_two_months():
    assert starts(window("Month", start="2025-01-15 08:00"), "2025-01-01 00:00", "2025-03-31 00:00") == [
        "2025-01-15 08:00",
        "2025-02-15 08:00",
        "2025-03-15 08:00",
    ]
    assert starts(window("2Months day1", start="2025-01-01 08:00"), "2025-01-01 00:00", "2025-07-31 00:00") == [
        "2025-01-01 08:00",
        "2025-03-01 08:00",
        "2025-05-01 08:00",
        "2025-07-01 08:00",
    ]


def test_monthly_last_sunday():
    got = starts(window("Month Last Sunday"), "2025-01-01 00:00", "2025-04-30 00:00")
    assert got == ["2025-01-26 08:00", "2025-02-23 08:00", "2025-03-30 08:00", "2025-04-27 08:00"]


def test_patch_tuesday_plus_offset():
    # Second Tuesdays of 2025: Jan 14, Feb 11, Mar 11 -> +4 days (Saturday)
    got = starts(window("Month Second Tuesday Offset4"), "2025-01-01 00:00", "2025-03-31 00:00")
    assert got == ["2025-01-18 08:00", "2025-02-15 08:00", "2025-03-15 08:00"]


def test_negative_offset_crosses_month_boundary():
    # First Monday of Feb 2025 is Feb 3; Offset-4 -> Jan 30
    got = starts(window("Month First Monday Offset-4"), "2025-01-01 00:00", "2025-03-10 00:00")
    assert got == ["2025-01-02 08:00", "2025-01-30 08:00", "2025-02-27 08:00"]


def test_two_months_third_monday_offset():
    got = starts(window("2Months Third Monday Offset-4"), "2025-01-01 00:00", "2025-06-30 00:00")
    # third Mondays: Jan 20, Mar 17, May 19 -> minus 4 days
    assert got == ["2025-01-16 08:00", "2025-03-13 08:00", "2025-05-15 08:00"]


def test_dst_keeps_local_wall_clock():
    w = window("Week Sunday", start="2025-03-01 08:00", tz="Pacific Standard Time")
    got = [o.start for o in occurrences(w, datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 17, tzinfo=UTC))]
    # PST (UTC-8) on Mar 2, PDT (UTC-7) from Mar 9
    assert [t.strftime("%m-%d %H:%M") for t in got] == ["03-02 16:00", "03-09 15:00", "03-16 15:00"]
    assert all(t.tzinfo is UTC for t in got)


def test_dst_gap_start_resolves_forward():
    w = window("Day", start="2025-03-08 02:30", tz="Pacific Standard Time", duration="01:00")
    got = [o.start for o in occurrences(w, datetime(2025, 3, 8, tzinfo=UTC), datetime(2025, 3, 11, tzinfo=UTC))]
    assert [t.strftime("%m-%d %H:%M") for t in got] == ["03-08 10:30", "03-09 10:30", "03-10 09:30"]


def test_end_is_start_plus_duration():
    occ = next_occurrence(window("Day", duration="03:55"), datetime(2025, 1, 5, tzinfo=UTC))
    assert isinstance(occ, Occurrence)
    assert occ.end - occ.start == timedelta(hours=3, minutes=55)
    assert occ.name == "20250105080000" == run_name(occ.start)


def test_after_is_strict_and_until_inclusive():
    w = window("Day")
    at = datetime(2025, 1, 3, 8, 0, tzinfo=UTC)
    assert next_occurrence(w, at).start == datetime(2025, 1, 4, 8, 0, tzinfo=UTC)
    assert [o.start for o in occurrences(w, at - timedelta(seconds=1), at)] == [at]


def test_expiration_stops_recurrence():
    w = window("Day", expirationDateTime="2025-01-03 08:00")
    assert starts(w, "2024-12-01 00:00", "2025-02-01 00:00") == [
        "2025-01-01 08:00",
        "2025-01-02 08:00",
        "2025-01-03 08:00",
    ]
    assert next_occurrence(w, datetime(2025, 1, 3, 9, tzinfo=UTC)) is None


def test_nothing_before_start_and_far_future_start():
    w = window("Week Monday", start="2030-06-05 08:00")
    occ = next_occurrence(w, datetime(2025, 1, 1, tzinfo=UTC))
    assert occ is not None and occ.start == datetime(2030, 6, 10, 8, 0, tzinfo=UTC)


def test_late_query_skips_ahead_quickly():
    w = window("Day", start="2020-01-01 08:00")
    occ = next_occurrence(w, datetime(2026, 11, 22, 9, tzinfo=UTC))
    assert occ is not None and occ.start == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def test_naive_bounds_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        list(occurrences(window("Day"), datetime(2025, 1, 1), datetime(2025, 2, 1)))
