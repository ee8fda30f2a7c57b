"""Install polling (issue 11): first at the expected duration, then backing off -- pure domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from patchrings.domain.results import expected_install_duration, next_install_poll

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def schedule(expected: timedelta, until: timedelta, base: timedelta = 2 * MIN) -> list[int]:
    """The poll instants (minutes after the start) up to and including the first at/after ``until``."""
    out: list[int] = []
    now = T0
    while not out or out[-1] < until / MIN:
        now = next_install_poll(T0, now, expected, base)
        out.append(round((now - T0) / MIN))
    return out


def test_expected_duration_is_learned_or_a_quarter_of_the_maximum_capped_at_30_minutes():
    assert expected_install_duration(timedelta(hours=2)) == 30 * MIN
    assert expected_install_duration(timedelta(minutes=40)) == 10 * MIN
    assert expected_install_duration(None) == 30 * MIN
    assert expected_install_duration(timedelta(hours=2), 50 * MIN) == 50 * MIN
    assert expected_install_duration(timedelta(hours=1), 90 * MIN) == 60 * MIN  # never past the maximum


def test_a_60_minute_install_takes_6_status_checks_not_31_and_1_once_learned():
    polls = schedule(expected_install_duration(timedelta(hours=2)), 60 * MIN)
    assert polls == [30, 32, 36, 44, 52, 60]  # first at the expected duration: no early look
    assert schedule(expected_install_duration(timedelta(hours=2), 60 * MIN), 60 * MIN) == [60]
    assert len([m for m in range(2, 62, 2)]) + 1 == 31  # the old cadence: every 2 minutes (+ done)


def test_gaps_back_off_to_at_most_8_minutes():
    polls = schedule(30 * MIN, 180 * MIN)
    gaps = [b - a for a, b in pairwise(polls)]
    assert polls[0] == 30 and max(gaps) <= 8
    assert gaps[-3:] == [8, 8, 8]


def test_a_short_expected_duration_is_the_first_look():
    assert schedule(4 * MIN, 10 * MIN)[:3] == [4, 6, 10]


def test_the_schedule_is_a_function_of_the_time_only_so_replay_gives_the_same_instants():
    expected = 30 * MIN
    assert next_install_poll(T0, T0 + 31 * MIN, expected) == T0 + 32 * MIN
    assert next_install_poll(T0, T0 + 32 * MIN, expected) == T0 + 36 * MIN
    assert next_install_poll(T0, T0 + 33 * MIN, expected) == T0 + 36 * MIN
