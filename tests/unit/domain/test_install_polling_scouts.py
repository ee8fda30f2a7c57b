"""First-wave scouts (issue 11, item 6): one VM per OS per slice on the fine schedule, the others
coarse until it is seen done, then at their own start + its duration -- pure domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from patchrings.domain.install_polling import (
    SCOUT_FIRST_LOOK,
    first_wave_with_scout,
    follower_poll_at,
    install_poll_at,
    learned_install_seconds,
    pick_scouts,
    polls_until_seen,
    scout_expected,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
FLOOR = 30 * MIN  # PT2H / 4


def test_the_scouts_are_the_first_vm_of_each_os_in_start_order() -> None:
    started = [("a", "Windows"), ("b", "Linux"), ("c", "windows"), ("d", "Linux"), ("e", "")]
    assert pick_scouts(started) == {"windows": "a", "linux": "b", "": "e"}
    assert pick_scouts([]) == {}


def test_a_scout_looks_at_5_minutes_then_the_old_gaps() -> None:
    assert scout_expected(FLOOR) == SCOUT_FIRST_LOOK == 5 * MIN
    assert scout_expected(3 * MIN) == 3 * MIN  # a floor sooner than 5 minutes is the first look
    assert scout_expected(timedelta(0)) == SCOUT_FIRST_LOOK
    looks, now = [], T0
    while now < T0 + 60 * MIN:
        now = install_poll_at(T0, now, scout_expected(FLOOR), learned=True)
        looks.append(round((now - T0) / MIN))
    assert looks == [5, 7, 11, 19, 27, 35, 43, 51, 59, 67]
    assert polls_until_seen(45 * MIN, scout_expected(FLOOR), learned=True) == 8
    assert polls_until_seen(45 * MIN, FLOOR, learned=False) == 2  # the coarse schedule's


def test_a_follower_is_looked_at_once_the_scout_is_seen_done_spaced_as_its_start() -> None:
    seen, took = T0 + 51 * MIN, 47 * MIN  # the scout started at T0, seen done at 51 min (learned 47)
    later = T0 + timedelta(seconds=10)  # started in the next burst: 10 s after the scout
    assert follower_poll_at(T0, seen, took, scout_started=T0) == seen  # started with the scout: at once
    assert follower_poll_at(later, seen, took, scout_started=T0) == seen + timedelta(seconds=10)  # spaced
    # never before its own start + the learned duration
    assert follower_poll_at(T0, seen, 55 * MIN, scout_started=T0) == T0 + 55 * MIN
    # looked at in the same round (and still running): the learned schedule's next instant
    assert follower_poll_at(T0, seen, took, scout_started=T0, looked_now=True) == T0 + 53 * MIN
    # started before the scout (a retried start): at once, not in the past
    assert follower_poll_at(T0 - MIN, seen, took, scout_started=T0) == seen


def test_a_scout_teaches_the_middle_of_its_bracket() -> None:
    assert learned_install_seconds(T0, T0 + 43 * MIN, T0 + 51 * MIN) == 51 * 60  # a narrow bracket: its end
    assert learned_install_seconds(T0, T0 + 43 * MIN, T0 + 51 * MIN, middle=True) == 47 * 60  # a scout's
    assert learned_install_seconds(T0, None, T0 + 5 * MIN, middle=True) == 5 * 60  # done at its first look


@pytest.mark.parametrize(("minutes", "scout", "others", "all_seen", "coarse_seen"), [
    (2, 1, 1, 5, 30), (10, 3, 1, 11, 30), (29, 6, 1, 35, 30), (45, 8, 2, 51, 60), (60, 10, 2, 67, 60),
    (75, 11, 3, 75, 90), (110, 16, 4, 115, 120)])
def test_a_slice_of_one_os_is_seen_done_sooner_for_a_few_more_looks(
        minutes: int, scout: int, others: int, all_seen: int, coarse_seen: int) -> None:
    """The table docs/architecture.md quotes: looks of the scout and of each other VM, when the
    last install of the slice is seen done, and when the coarse schedule alone saw it."""
    looks, last = first_wave_with_scout([minutes * MIN] * 10, FLOOR)
    assert looks == [scout] + [others] * 9 and last == all_seen * MIN
    assert polls_until_seen(minutes * MIN, FLOOR, learned=False) == others  # what every VM cost before
    # a slice is never seen later than one fine gap (8 min) after the coarse schedule would have seen it
    assert all_seen - coarse_seen <= 8


def test_followers_started_in_later_bursts_keep_their_spacing() -> None:
    starts = [timedelta(seconds=10 * (i // 20)) for i in range(100)]  # bursts of 20, 10 s apart
    looks, last = first_wave_with_scout([45 * MIN] * 100, FLOOR, starts=starts)
    assert looks == [8] + [2] * 99
    assert last == 51 * MIN + timedelta(seconds=40)  # the last burst, 40 s after the first
