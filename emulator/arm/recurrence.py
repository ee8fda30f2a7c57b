"""The simulator's own schedule oracle: when does a maintenance configuration run?

Why a second implementation: the app computes run times in ``patchrings/domain/recurrence.py``.
If the simulator used that module too, a recurrence, DST or time-zone bug would fire the
simulated runs at the same wrong instants the app expects, and no test could see it. So the
simulator never imports the app (``tests/emulator/arm/test_recurrence_oracle.py`` greps for it)
and computes occurrences another way: the ``recurEvery`` grammar is expanded into RFC 5545
rules (``dateutil.rrule``) over naive local wall-clock times, and each local time is then placed
on the UTC line against ``zoneinfo`` by checking both folds explicitly. Both implementations are
pinned by one table of documented instants (``tests/data/aum_schedules.json``).

Sources (Microsoft.Maintenance 2025-11-01 swagger, ``MaintenanceWindow``, in
``shared/contracts/maintenance/swagger``):

* ``recurEvery``: "Daily schedule are formatted as [Frequency as integer]['Day(s)']",
  "[Frequency as integer]['Week(s)'] [Optional comma separated list of weekdays Monday-Sunday]",
  "[Frequency as integer]['Month(s)'] [Comma separated list of month days] or [Frequency as
  integer]['Month(s)'] [Week of Month (First, Second, Third, Fourth, Last)] [Weekday
  Monday-Sunday] [Optional Offset(No. of days)]. Offset value must be between -6 to 6 inclusive."
  Hourly recurrence exists through the API only (update-manager-domain.md §5).
* ``startDateTime`` / ``expirationDateTime``: "YYYY-MM-DD hh:mm format ... The window will be
  created in the time zone provided and adjusted to daylight savings according to that time
  zone" -- runs keep their local wall-clock time across DST changes; expiration defaults to
  9999-12-31 23:59:59.
* ``timeZone``: Windows names ("Pacific Standard Time", "W. Europe Standard Time", "UTC", ...),
  mapped to IANA zones with the CLDR ``windowsZones`` table (tzlocal ships it; it is the table
  .NET uses on Linux through ICU). IANA names are accepted too.

Choices where the documentation is silent (the same choices the app made, pinned by the table):
``dayN`` a month lacks is skipped that month (RFC 5545 BYMONTHDAY); ``day-1`` is the last day;
``NWeeks`` counts weeks (Monday first) from the start's week (RFC 5545 WEEKLY/INTERVAL with
WKST=MO); a local start inside a spring-forward gap is placed with the offset in force before the
transition (02:30 in the gap runs at 03:30 new time); an ambiguous fall-back time is the first
of the two instants; expiration is inclusive and compared in local time; ``NHours`` counts
elapsed (UTC) hours from the start.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule as rr
from tzlocal.windows_tz import win_tz

__all__ = ["Occurrence", "Window", "next_occurrence", "occurrences", "parse_window", "run_name"]

_DAYS = {
    "monday": rr.MO,
    "tuesday": rr.TU,
    "wednesday": rr.WE,
    "thursday": rr.TH,
    "friday": rr.FR,
    "saturday": rr.SA,
    "sunday": rr.SU,
}
_NTH = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_FREQ = {"hour": rr.HOURLY, "day": rr.DAILY, "week": rr.WEEKLY, "month": rr.MONTHLY}
_WINDOWS_ZONES = {name.casefold(): iana for name, iana in win_tz.items()}
_WINDOWS_ZONES.update({"utc": "Etc/UTC", "coordinated universal time": "Etc/UTC", "gmt": "Etc/GMT"})
_NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59)  # noqa: DTZ001 - local wall-clock time


@dataclass(frozen=True)
class Occurrence:
    """One run: ``start`` / ``end`` are aware UTC datetimes."""

    start: datetime
    end: datetime

    @property
    def name(self) -> str:
        return run_name(self.start)


@dataclass(frozen=True)
class _Rule:
    freq: int
    interval: int
    weekdays: tuple[rr.weekday, ...] = ()
    month_days: tuple[int, ...] = ()
    nth: rr.weekday | None = None  # e.g. TU(+2)
    offset: int = 0


@dataclass(frozen=True)
class Window:
    """A parsed ``maintenanceWindow``: local times are naive wall-clock times in ``zone``."""

    start: datetime
    duration: timedelta
    zone: ZoneInfo
    time_zone: str
    recur_every: str
    expiration: datetime
    rule: _Rule


def run_name(start: datetime) -> str:
    """The ``applyUpdates/<name>`` of a run: its UTC start as ``yyyyMMddHHmmss``."""
    utc = start.astimezone(UTC)
    return f"{utc.year:04d}{utc.month:02d}{utc.day:02d}{utc.hour:02d}{utc.minute:02d}{utc.second:02d}"


def _zone(name: object) -> ZoneInfo:
    text = str(name or "").strip()
    if not text:
        raise ValueError("timeZone: a time zone name is required")
    try:
        return ZoneInfo(_WINDOWS_ZONES.get(text.casefold(), text))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timeZone: unknown time zone {text!r}") from None


def _local(field: str, value: object) -> datetime:
    match = re.fullmatch(r"\s*(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?\s*", str(value or ""))
    if not match:
        raise ValueError(f"{field}: expected 'YYYY-MM-DD hh:mm', got {value!r}")
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups(default="0"))
        return datetime(year, month, day, hour, minute, second)  # noqa: DTZ001 - local wall-clock time
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not a valid date and time") from None


def _duration(value: object) -> timedelta:
    match = re.fullmatch(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?", str(value or "").strip())
    if not match:
        raise ValueError(f"duration: expected 'HH:mm', got {value!r}")
    length = timedelta(hours=int(match[1]), minutes=int(match[2]), seconds=int(match[3] or 0))
    if not length:
        raise ValueError(f"duration: must be positive, got {value!r}")
    return length


def _weekday(word: str, text: str) -> rr.weekday:
    key = word.casefold()
    for name, day in _DAYS.items():
        if key in (name, name[:3]):
            return day
    raise ValueError(f"recurEvery: {word!r} is not a weekday (Monday-Sunday) in {text!r}")


def _rule(text: object) -> _Rule:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"recurEvery: a recurrence is required, got {text!r}")
    words = text.replace(",", " ").split()
    head = re.fullmatch(r"(\d*)(hour|day|week|month)s?", words[0], re.IGNORECASE)
    if head is None:
        raise ValueError(f"recurEvery: {text!r} must start with [N]Day(s), [N]Week(s), [N]Month(s) or [N]Hour(s)")
    interval = int(head[1] or 1)
    if interval < 1:
        raise ValueError(f"recurEvery: the frequency must be at least 1 in {text!r}")
    unit, rest = head[2].lower(), words[1:]
    if unit in ("hour", "day"):
        if rest:
            raise ValueError(f"recurEvery: a {unit} schedule takes no further terms, got {text!r}")
        return _Rule(_FREQ[unit], interval)
    if unit == "week":
        return _Rule(rr.WEEKLY, interval, weekdays=tuple(dict.fromkeys(_weekday(w, text) for w in rest)))
    if not rest:
        return _Rule(rr.MONTHLY, interval)
    if rest[0].lower().startswith("day"):
        days: list[int] = []
        for word in rest:
            match = re.fullmatch(r"day(-?\d{1,2})", word, re.IGNORECASE)
            if match is None or int(match[1]) == 0 or abs(int(match[1])) > 31:
                raise ValueError(f"recurEvery: {word!r} is not a month day (day1..day31, day-1..day-31) in {text!r}")
            days.append(int(match[1]))
        return _Rule(rr.MONTHLY, interval, month_days=tuple(dict.fromkeys(days)))
    if rest[0].lower() not in _NTH or len(rest) not in (2, 3):
        raise ValueError(
            f"recurEvery: a monthly schedule is 'Month dayN,...' or 'Month First|Second|Third|Fourth|Last "
            f"<Weekday> [OffsetN]', got {text!r}"
        )
    offset = 0
    if len(rest) == 3:
        match = re.fullmatch(r"offset([+-]?\d+)", rest[2], re.IGNORECASE)
        if match is None or not -6 <= int(match[1]) <= 6:
            raise ValueError(f"recurEvery: the offset must be between -6 and 6 inclusive, got {rest[2]!r} in {text!r}")
        offset = int(match[1])
    return _Rule(rr.MONTHLY, interval, nth=_weekday(rest[1], text)(_NTH[rest[0].lower()]), offset=offset)


def parse_window(window: object) -> Window:
    """Parse an ARM ``maintenanceWindow``; ``ValueError`` names the field at fault."""
    if not isinstance(window, dict):
        raise ValueError("maintenanceWindow: expected an object")
    start = _local("startDateTime", window.get("startDateTime"))
    duration = _duration(window.get("duration"))
    zone = _zone(window.get("timeZone"))
    rule = _rule(window.get("recurEvery"))
    raw_expiry = window.get("expirationDateTime")
    expiration = _local("expirationDateTime", raw_expiry) if raw_expiry else _NO_EXPIRY
    if expiration < start:
        raise ValueError("expirationDateTime: must not be before startDateTime")
    return Window(
        start=start,
        duration=duration,
        zone=zone,
        time_zone=str(window.get("timeZone")),
        recur_every=str(window.get("recurEvery")),
        expiration=expiration,
        rule=rule,
    )


def _place(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall-clock time → the UTC instant it names (gap/overlap rules in the docstring)."""
    valid = []
    for fold in (0, 1):
        instant = local.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == local:
            valid.append(instant)
    if valid:
        return min(valid)  # an overlap has two: the first one
    # a gap: the offset in force before the transition (a day earlier is before any transition)
    before = (local - timedelta(days=1)).replace(tzinfo=zone).utcoffset()
    assert before is not None
    return (local - before).replace(tzinfo=UTC)


def _local_starts(window: Window, near: datetime) -> Iterator[datetime]:
    """Local starts at or after ``window.start``, ascending, from a little before ``near``."""
    rule, start = window.rule, window.start
    if rule.freq == rr.DAILY:
        gen = rr.rrule(rr.DAILY, interval=rule.interval, dtstart=start)
    elif rule.freq == rr.WEEKLY:
        # anchor on the start week's Monday so INTERVAL counts weeks from the start's week
        monday = start - timedelta(days=start.weekday())
        days = rule.weekdays or (rr.weekday(start.weekday()),)
        gen = rr.rrule(rr.WEEKLY, interval=rule.interval, byweekday=days, wkst=rr.MO, dtstart=monday)
    else:
        first = start.replace(day=1)  # month counting from the start's month; offsets may reach back
        if rule.nth is not None:
            gen = rr.rrule(rr.MONTHLY, interval=rule.interval, byweekday=rule.nth, dtstart=first)
        else:
            days_of_month = rule.month_days or (start.day,)
            gen = rr.rrule(rr.MONTHLY, interval=rule.interval, bymonthday=days_of_month, dtstart=first)
    shift = timedelta(days=rule.offset)
    # bases before `begin` give local starts more than 8 days before `near`: never wanted
    begin = near - timedelta(days=8 + abs(rule.offset))
    bases = gen.xafter(begin, inc=True) if begin > start else iter(gen)
    for base in bases:
        local = base + shift
        if local >= start:
            yield local


def occurrences(window: Window, after: datetime, until: datetime) -> Iterator[Occurrence]:
    """Runs with ``after < start <= until`` (aware datetimes), ascending."""
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("occurrences: 'after' and 'until' must be timezone-aware")
    after, until = after.astimezone(UTC), until.astimezone(UTC)
    if window.rule.freq == rr.HOURLY:
        first = _place(window.start, window.zone)
        last = _place(window.expiration, window.zone) if window.expiration < _NO_EXPIRY else None
        step = timedelta(hours=window.rule.interval)
        skip = max(0, (after - first) // step)
        for instant in rr.rrule(rr.HOURLY, interval=window.rule.interval, dtstart=first + skip * step):
            if instant > until or (last is not None and instant > last):
                return
            if instant > after:
                yield Occurrence(instant, instant + window.duration)
        return
    seen: datetime | None = None
    near = after.astimezone(window.zone).replace(tzinfo=None)
    for local in _local_starts(window, near):
        if local > window.expiration:
            return
        instant = _place(local, window.zone)
        if instant > until:
            return
        if instant > after and instant != seen:
            seen = instant
            yield Occurrence(instant, instant + window.duration)


def next_occurrence(window: Window, after: datetime) -> Occurrence | None:
    """The first run strictly after ``after``, or None once the window has expired."""
    horizon = max(after.astimezone(UTC), _place(window.start, window.zone)) + timedelta(days=800)
    return next(occurrences(window, after, horizon), None)
