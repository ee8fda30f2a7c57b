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

**Scouts** (issue 11, item 6: the first-wave schedule made a bad patch's detection 8 simulated
minutes later). In a first wave, one VM per OS per slice -- the first started of that OS
(:func:`pick_scouts`) -- is looked at on the fine schedule: first at :data:`SCOUT_FIRST_LOOK` (or
the floor, if shorter), then gaps of ``base`` doubling up to 8 minutes (the learned schedule with
that first look: :func:`scout_expected`). The others of its OS keep the coarse first-wave
schedule until the scout is seen done; then their installs should be done too and each of them
is looked at (:func:`follower_poll_at`): at once for those started with the scout, later by as
much as they started after it -- the looks follow the paced starts, so the slice's reads stay
spread as its starts were. The ring learns the middle of the scout's bracket (``middle`` in
:func:`learned_install_seconds`). Cost: a scout's extra looks (a 45-minute install: 8 instead of
2), one scout per OS per slice of up to 100 VMs (:func:`first_wave_with_scout` is the table).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from patchrings.domain.results import next_install_poll

#: First wave: the largest gap between two looks at an install (the offset doubles up to it).
FIRST_WAVE_GAP_CAP = timedelta(minutes=30)
#: A learned-schedule bracket at most this wide is learned by its end (the look that saw it done).
NARROW_BRACKET = timedelta(minutes=8)
#: A first-wave scout's first look (issue 11, item 6): then gaps of ``base`` doubling up to 8 minutes.
SCOUT_FIRST_LOOK = timedelta(minutes=5)


def pick_scouts(vms: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The scouts of a first-wave slice: OS (lower-cased) -> the id of its first VM in ``vms``
    (``(id, os)`` pairs in start order: the started VMs only)."""
    scouts: dict[str, str] = {}
    for vm_id, os_name in vms:
        scouts.setdefault(str(os_name or "").lower(), vm_id)
    return scouts


def scout_expected(floor: timedelta) -> timedelta:
    """A scout's first look, as the ``expected`` of the learned schedule: :data:`SCOUT_FIRST_LOOK`,
    or the first-wave floor when that is sooner."""
    return min(SCOUT_FIRST_LOOK, floor) if floor > timedelta(0) else SCOUT_FIRST_LOOK


def follower_poll_at(started: datetime, seen: datetime, learned: timedelta, *, scout_started: datetime,
                     looked_now: bool = False, base: timedelta = timedelta(minutes=2)) -> datetime:
    """A follower's next look once its OS's scout (started at ``scout_started``) was seen done at
    ``seen``, its install having taken about ``learned``: at once for a follower started with the
    scout, later by as much as it started after the scout (the looks keep the spacing of the paced
    starts), and never before its own start + ``learned``. A follower looked at in that same
    round (``looked_now``) and still running goes on with the learned schedule instead (start +
    ``learned``, then gaps of ``base`` doubling)."""
    at = max(started + learned, seen + max(started - scout_started, timedelta(0)))
    if at > seen or not looked_now:
        return at
    return next_install_poll(started, seen, learned, base)


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


def learned_install_seconds(started: datetime, running_at: datetime | None, done_at: datetime, *,
                            middle: bool = False) -> float:
    """What a done install teaches the ring (seconds after its start): the middle of the bracket
    (last look that found it running, look that found it done] when that is wider than
    :data:`NARROW_BRACKET` (or ``middle``: a scout's, issue 11 item 6 -- its fine bracket's end
    is up to 8 minutes late, which every later wave would wait), else its end; the end too when
    no look found it running (seen done at the first look: a later wave looks there again, one
    call)."""
    end = done_at - started
    if running_at is None or running_at <= started or (done_at - running_at <= NARROW_BRACKET and not middle):
        return end.total_seconds()
    return ((running_at - started) + (done_at - running_at) / 2).total_seconds()


def first_wave_with_scout(durations: list[timedelta], floor: timedelta, *, starts: list[timedelta] | None = None,
                          base: timedelta = timedelta(minutes=2)) -> tuple[list[int], timedelta]:
    """A first-wave slice of one OS with a scout (the first VM): the looks each install costs and
    when the last is seen done (offset from the first start); ``starts`` are the VMs' start
    offsets (default: all at 0). The table the unit tests and the docs quote."""
    t0 = datetime(2000, 1, 1, tzinfo=UTC)
    starts = starts or [timedelta(0)] * len(durations)
    started = [t0 + s for s in starts]
    looks = [0] * len(durations)
    expected = [scout_expected(floor) if i == 0 else floor for i in range(len(durations))]
    learned = [i == 0 for i in range(len(durations))]
    next_at = [install_poll_at(started[i], started[i], expected[i], learned=learned[i], base=base)
               for i in range(len(durations))]
    open_ = set(range(len(durations)))
    last = t0
    while open_:
        now = min(next_at[i] for i in open_)
        due = sorted(i for i in open_ if next_at[i] <= now)
        scout_done = False
        for i in due:
            looks[i] += 1
            if now - started[i] >= durations[i]:
                open_.discard(i)
                last = max(last, now)
                if i == 0:
                    scout_done = True
            else:
                next_at[i] = install_poll_at(started[i], now, expected[i], learned=learned[i], base=base)
        if scout_done:
            took = now - started[0]
            for i in sorted(open_):
                expected[i], learned[i] = took, True
                next_at[i] = follower_poll_at(started[i], now, took, scout_started=started[0], looked_now=i in due,
                                              base=base)
    return looks, last - t0


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
