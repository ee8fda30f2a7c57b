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
