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


# ------------------------------------------------------------------ first wave (issue 11, W2)
from patchrings.domain.install_polling import (  # noqa: E402
    FIRST_WAVE_GAP_CAP,
    first_wave_poll,
    install_poll_at,
    learned_install_seconds,
    polls_until_seen,
)

PT2H = timedelta(hours=2)
DEADLINE = PT2H + 30 * MIN  # ring_direct: maximumDuration + INSTALL_GRACE


@pytest.mark.parametrize(
    ("minutes", "first_wave", "learned_30", "before"),
    [
        # install  first wave  learned at 30 min  the old first wave (30 min, then 2, 4, 8, 8 ...)
        (2, 1, 1, 1),
        (10, 1, 1, 1),
        (30, 1, 1, 1),
        (31, 2, 2, 2),
        (45, 2, 5, 5),
        (60, 2, 6, 6),
        (61, 3, 7, 7),
        (90, 3, 10, 10),
        (120, 4, 14, 14),
        (150, 5, 18, 18),
        (400, 5, 18, 18),  # never done: the look at the deadline is the last
    ],
)
def test_looks_per_install_duration_table(minutes: int, first_wave: int, learned_30: int, before: int) -> None:
    floor = expected_install_duration(PT2H)
    duration = minutes * MIN
    assert polls_until_seen(duration, floor, learned=False, deadline=DEADLINE) == first_wave
    assert polls_until_seen(duration, 30 * MIN, learned=True, deadline=DEADLINE) == learned_30
    assert polls_until_seen(duration, floor, learned=True, deadline=DEADLINE) == before


def test_first_wave_offsets_double_from_the_floor_with_gaps_at_most_30_minutes() -> None:
    looks, now = [], T0
    for _ in range(6):
        now = first_wave_poll(T0, now, 30 * MIN)
        looks.append(round((now - T0) / MIN))
    assert looks == [30, 60, 90, 120, 150, 180]
    looks, now = [], T0
    for _ in range(5):
        now = first_wave_poll(T0, now, 10 * MIN)  # maximumDuration PT40M: floor 10 min
        looks.append(round((now - T0) / MIN))
    assert looks == [10, 20, 40, 70, 100] and FIRST_WAVE_GAP_CAP == 30 * MIN


def test_first_wave_schedule_is_a_function_of_the_time_only() -> None:
    assert first_wave_poll(T0, T0 + 31 * MIN, 30 * MIN) == T0 + 60 * MIN
    assert first_wave_poll(T0, T0 + 59 * MIN, 30 * MIN) == T0 + 60 * MIN
    assert first_wave_poll(T0, T0 + 60 * MIN, 30 * MIN) == T0 + 90 * MIN
    assert install_poll_at(T0, T0 + 31 * MIN, 30 * MIN, learned=True) == T0 + 32 * MIN
    assert install_poll_at(T0, T0 + 31 * MIN, 30 * MIN, learned=False) == T0 + 60 * MIN


def test_what_the_ring_learns_from_a_bracket() -> None:
    # wide first-wave bracket (30, 60]: its middle
    assert learned_install_seconds(T0, T0 + 30 * MIN, T0 + 60 * MIN) == 45 * 60
    # done at the first look: that look (a later wave looks there once)
    assert learned_install_seconds(T0, None, T0 + 30 * MIN) == 30 * 60
    # a learned schedule's narrow bracket (at most 8 min): its end, as before
    assert learned_install_seconds(T0, T0 + 52 * MIN, T0 + 60 * MIN) == 60 * 60
