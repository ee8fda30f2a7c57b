"""Exact ISO-8601 durations and UTC instants."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from patchrings.domain.timeutil import (
    DURATION_PATTERN,
    DurationError,
    format_duration,
    format_instant,
    parse_duration,
    parse_instant,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [("PT30M", timedelta(minutes=30)), ("P1D", timedelta(days=1)), ("P1DT12H", timedelta(days=1, hours=12)),
     ("PT1M30S", timedelta(seconds=90)), ("P2W", timedelta(days=14)), ("PT0.5S", timedelta(milliseconds=500)),
     ("pt4h", timedelta(hours=4)), ("PT0S", timedelta(0))],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P", "PT", "P1M", "P1Y", "30m", "PT-5M", "", "P1DT", 30])
def test_inexact_or_malformed_durations_are_refused(text):
    with pytest.raises(DurationError):
        parse_duration(text)


@pytest.mark.parametrize("td", [timedelta(0), timedelta(minutes=30), timedelta(days=1, hours=2, seconds=5),
                                timedelta(seconds=1.5)])
def test_format_duration_round_trips(td):
    text = format_duration(td)
    assert parse_duration(text) == td
    assert re.match(DURATION_PATTERN, text)


def test_format_duration_canonical_forms_and_negative():
    assert format_duration(timedelta(hours=4)) == "PT4H"
    assert format_duration(timedelta(days=7)) == "P7D"
    with pytest.raises(DurationError):
        format_duration(timedelta(seconds=-1))


def test_instants_are_utc_aware():
    assert parse_instant("2023-05-09T14:25:00.3717473Z") == datetime(2023, 5, 9, 14, 25, 0, 371747, tzinfo=UTC)
    assert parse_instant("2023-05-09T16:00:00+02:00") == datetime(2023, 5, 9, 14, 0, tzinfo=UTC)
    assert parse_instant("2023-05-09T14:00:00").tzinfo == UTC
    aware = datetime(2023, 5, 9, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_instant(aware) == "2023-05-09T14:00:00Z"
    assert format_instant(datetime(2023, 5, 9, 14, 0, 0, 5, tzinfo=UTC)) == "2023-05-09T14:00:00.000005Z"
    with pytest.raises(ValueError):
        parse_instant("")


# -- the one grammar (issue 10): what the old orchestrators/timeutil accepted and the domain did not


@pytest.mark.parametrize("text", ["PT1.5H", "P1.5D", "PT2.5M", "03:55", "1:00:00", "90", 90, 1.5])
def test_fractional_units_hh_mm_and_bare_seconds_are_not_durations(text):
    with pytest.raises(DurationError):
        parse_duration(text)


def test_weeks_are_durations():
    assert parse_duration("P1W") == timedelta(weeks=1)
    assert parse_duration("P1WT1H") == timedelta(days=7, hours=1)


def test_duration_or_default_only_when_absent():
    from patchrings.domain.timeutil import duration_or

    assert duration_or(None, timedelta(minutes=2)) == timedelta(minutes=2)
    assert duration_or("", timedelta(minutes=2)) == timedelta(minutes=2)
    assert duration_or("PT5M", timedelta(minutes=2)) == timedelta(minutes=5)
    with pytest.raises(DurationError):
        duration_or("PT1.5H", timedelta(minutes=2))


@pytest.mark.parametrize(("text", "expected"), [("03:55", timedelta(hours=3, minutes=55)),
                                                ("1:00:30", timedelta(hours=1, seconds=30)),
                                                (" 23:59 ", timedelta(hours=23, minutes=59))])
def test_maintenance_window_duration_is_hh_mm(text, expected):
    from patchrings.domain.timeutil import parse_maintenance_duration

    assert parse_maintenance_duration(text) == expected


@pytest.mark.parametrize("text", ["PT4H", "00:00", "1:60", "1:00:60", "", None, 3600])
def test_maintenance_window_duration_refuses_other_forms(text):
    from patchrings.domain.timeutil import parse_maintenance_duration

    with pytest.raises(ValueError):
        parse_maintenance_duration(text)


def test_one_instant_writer_whole_seconds_or_microseconds():
    from patchrings.domain.timeutil import iso

    precise = datetime(2023, 5, 9, 14, 0, 0, 371747, tzinfo=UTC)
    assert format_instant(precise) == "2023-05-09T14:00:00.371747Z"
    assert format_instant(precise, whole_seconds=True) == "2023-05-09T14:00:00Z"
    assert iso(precise) == "2023-05-09T14:00:00Z"
    assert iso(datetime(2023, 5, 9, 16, 0, tzinfo=timezone(timedelta(hours=2)))) == "2023-05-09T14:00:00Z"
    assert iso(datetime(2023, 5, 9, 14, 0)) == "2023-05-09T14:00:00Z"  # naive is UTC
    assert parse_instant(iso(precise)) == precise.replace(microsecond=0)
