"""When a wave looks at an install (issue 11): few status checks in the first wave too.

Two schedules, both pure functions of instants (replay-safe), as offsets from the VM's own start:

* **Learned** -- a later wave of the ring knows how long its OS's installs took (the ring learns
  it from the waves before): first at that duration, then gaps of ``base`` doubling up to 8
  minutes (:func:`patchrings.domain.results.next_install_poll`). A done install is seen in 1 call.
* **First wave** -- nothing learned yet: first at the floor (a quarter of the OS's
  ``maximumDuration``, at most 30 minutes: :func:`~patchrings.domain.results.expected_install_duration`),
  then the offset doubles, each gap at most :data:`FIRST_WAVE_GAP_CAP`: 30, 60, 90, 120, 150 min
  for ``PT2H``. An install of up to 60 minutes is seen in at most 2 calls, one of up to 2 hours in
  at most 4 (the old cadence, gaps of 2 to 8 minutes after the floor: 5 for a 45-minute Windows
  install, 6 for 60). The price is lateness: an install is seen at most one gap (at most its own
  elapsed time, at most 30 minutes) after it ended, in the first wave only.

What the wave learns from a done install (:func:`learned_install_seconds`): it ended after the
last look that found it running and by the look that found it done. A first-wave bracket is wide
(30-60 minutes), so the ring learns its middle, not its end: the next wave's first look at the
upper end would make every later wave wait up to a whole gap; at the middle it costs a later
wave one or two more looks at most (gaps of 2, 4 minutes). A bracket of a learned schedule is
narrow (at most 8 minutes): its end is learned, as before.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from patchrings.domain.results import next_install_poll

#: First wave: the largest gap between two looks at an install (the offset doubles up to it).
FIRST_WAVE_GAP_CAP = timedelta(minutes=30)
#: A learned-schedule bracket at most this wide is learned by its end (the look that saw it done).
NARROW_BRACKET = timedelta(minutes=8)


def first_wave_poll(started: datetime, now: datetime, floor: timedelta) -> datetime:
    """The first instant of the first-wave schedule after ``now``: ``floor``, then the offset
    doubles (``floor``, ``2 floor``, ``4 floor`` ...), each gap at most :data:`FIRST_WAVE_GAP_CAP`."""
    at = started + max(floor, timedelta(seconds=1))
    while at <= now:
        offset = at - started
        at += min(offset, FIRST_WAVE_GAP_CAP)
    return at


def install_poll_at(started: datetime, now: datetime, expected: timedelta, *, learned: bool,
                    base: timedelta = timedelta(minutes=2)) -> datetime:
    """The next look at an install started at ``started``, after ``now``: the learned schedule
    when ``learned`` (``expected`` is the learned duration), else the first-wave schedule
    (``expected`` is the floor). The caller caps it at the wave's deadline."""
    if learned:
        return next_install_poll(started, now, expected, base)
    return first_wave_poll(started, now, expected)


def learned_install_seconds(started: datetime, running_at: datetime | None, done_at: datetime) -> float:
    """What a done install teaches the ring (seconds after its start): the middle of the bracket
    (last look that found it running, look that found it done] when that is wider than
    :data:`NARROW_BRACKET`, else its end; the end too when no look found it running (seen done at
    the first look: a later wave looks there again, one call)."""
    end = done_at - started
    if running_at is None or running_at <= started or done_at - running_at <= NARROW_BRACKET:
        return end.total_seconds()
    return ((running_at - started) + (done_at - running_at) / 2).total_seconds()


def polls_until_seen(duration: timedelta, expected: timedelta, *, learned: bool,
                     deadline: timedelta | None = None, base: timedelta = timedelta(minutes=2)) -> int:
    """How many looks an install of ``duration`` costs (the last one sees it done, or is at the
    ``deadline`` offset): the table the unit tests and the docs quote."""
    t0 = datetime(2000, 1, 1, tzinfo=UTC)
    now, looks = t0, 0
    while True:
        now = install_poll_at(t0, now, expected, learned=learned, base=base)
        if deadline is not None and now - t0 > deadline:
            now = t0 + deadline
        looks += 1
        if now - t0 >= duration or (deadline is not None and now - t0 >= deadline):
            return looks
