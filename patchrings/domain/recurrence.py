"""Maintenance-window recurrence: when does an Azure Update Manager schedule run?

Why this module exists: the app needs the next run of a maintenance configuration (to know the
T-40 deadline for retagging or pinning a manifest before the next ring runs), and the ARM fleet
simulator needs every occurrence to fire schedules. Both must agree to the minute, so the
computation lives here once, pure (stdlib + tzlocal's Windows zone table + zoneinfo, no I/O, no
clock reads: callers pass ``after``/``until``).

Input is the ARM ``maintenanceWindow`` object of a maintenance configuration::

    {"startDateTime": "2025-04-30 08:00", "duration": "03:55",
     "timeZone": "Pacific Standard Time", "recurEvery": "Week Saturday,Sunday",
     "expirationDateTime": "9999-12-31 00:00"}

``recurEvery`` grammar (the Maintenance RP's documented grammar, case-insensitive):

* ``[N]Hour(s)``               -- every N hours from the start (API-only form, see
  update-manager-domain.md §5); counted in elapsed (UTC) time, so DST does not shift it.
* ``[N]Day(s)``                -- every N days at the start's local wall-clock time.
* ``[N]Week(s) [Mon,...,Sun]`` -- every N weeks (weeks start Monday, counted from the start's
  week) on the listed weekdays, or the start's weekday when none is listed. Separators ``,`` or
  ``, `` are accepted.
* ``[N]Month(s) [dayD,...]``   -- every N months (counted from the start's month) on the listed
  days; ``day-1`` is the last day of the month, ``day-2`` the day before. A day the month lacks
  (``day31`` in April) is skipped that month. No days listed: the start's day of month.
* ``[N]Month(s) First|Second|Third|Fourth|Last <Weekday> [Offset±D]`` -- the nth weekday of the
  month shifted by D days (-6..6), e.g. ``Month Second Tuesday Offset4`` (Patch Tuesday + 4).

Semantics shared by every form: an occurrence starts at the window's local wall-clock time in
``timeZone`` (so 08:00 Pacific stays 08:00 across DST changes), never before ``startDateTime``
and never after ``expirationDateTime``; its end is start + duration in elapsed time. A local start
that falls in a spring-forward gap resolves like ``zoneinfo`` with ``fold=0`` (the pre-transition
offset, i.e. one hour later on the wall clock); an ambiguous fall-back time takes the first one.

LIMITATIONS: the service's own handling of nonexistent local times and of month days a month
lacks is not documented; the choices above are ours.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import win_tz

from patchrings.domain.timeutil import parse_maintenance_duration

__all__ = [
    "MaintenanceWindow",
    "Occurrence",
    "Recurrence",
    "next_occurrence",
    "occurrences",
    "parse_recur_every",
    "parse_window",
    "resolve_time_zone",
    "run_name",
]

_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_UNIT_RE = re.compile(r"^(\d*)\s*(hours?|days?|weeks?|months?)$", re.IGNORECASE)
_DAY_RE = re.compile(r"^day(-?\d+)$", re.IGNORECASE)
_OFFSET_RE = re.compile(r"^offset([+-]?\d+)$", re.IGNORECASE)
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
_LOWER_WIN_TZ = {name.lower(): iana for name, iana in win_tz.items()}
# Names the Maintenance RP accepts that tzlocal's CLDR-derived table lacks.
_EXTRA_ZONES = {"utc": "Etc/UTC", "coordinated universal time": "Etc/UTC", "gmt": "Etc/GMT"}


@dataclass(frozen=True)
class Recurrence:
    """A parsed ``recurEvery``: ``unit`` is hour/day/week/month, ``every`` the frequency."""

    unit: str
    every: int = 1
    weekdays: tuple[int, ...] = ()  # week: 0=Monday..6=Sunday
    month_days: tuple[int, ...] = ()  # month: 1..31 or -1..-31 (from the end)
    ordinal: int | None = None  # month: 1..4 or -1 (Last)
    ordinal_weekday: int | None = None
    offset_days: int = 0


@dataclass(frozen=True)
class MaintenanceWindow:
    """A maintenance window; local times are naive wall-clock times in ``time_zone``."""

    start_local: datetime
    duration: timedelta
    time_zone: str
    recur_every: str
    expiration_local: datetime | None = None

    @property
    def zone(self) -> ZoneInfo:
        return resolve_time_zone(self.time_zone)

    @property
    def recurrence(self) -> Recurrence:
        return parse_recur_every(self.recur_every)


@dataclass(frozen=True)
class Occurrence:
    """One run of a window: ``start``/``end`` are timezone-aware UTC."""

    start: datetime
    end: datetime

    @property
    def name(self) -> str:
        """The run name used in the correlationId (``yyyyMMddHHmmss`` of the UTC start)."""
        return run_name(self.start)


def run_name(start: datetime) -> str:
    """``applyupdates/<name>`` suffix of a run's correlationId: its UTC start as yyyyMMddHHmmss."""
    return start.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def resolve_time_zone(name: str) -> ZoneInfo:
    """A Windows time zone name (``Pacific Standard Time``) or an IANA name → ``ZoneInfo``."""
    text = (name or "").strip()
    if not text:
        raise ValueError("timeZone: a time zone name is required")
    iana = _LOWER_WIN_TZ.get(text.lower()) or _EXTRA_ZONES.get(text.lower()) or text
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timeZone: unknown time zone {name!r} (use a Windows or IANA name)") from None


def _parse_local(field: str, text: object) -> datetime:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{field}: expected 'yyyy-MM-dd HH:mm', got {text!r}")
    for fmt in _DATETIME_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt)  # noqa: DTZ007 - naive local wall-clock time
        except ValueError:
            continue
    raise ValueError(f"{field}: expected 'yyyy-MM-dd HH:mm', got {text!r}")


def _weekday(token: str) -> int:
    name = token.strip().lower()
    for index, day in enumerate(_WEEKDAYS):
        if name in (day, day[:3]):
            return index
    raise ValueError(f"recurEvery: unknown weekday {token!r}")


def parse_recur_every(text: str) -> Recurrence:
    """Parse a ``recurEvery`` string; raises ``ValueError`` naming the field and the problem."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"recurEvery: a recurrence is required, got {text!r}")
    head, _, rest = text.strip().partition(" ")
    match = _UNIT_RE.match(head)
    if not match:
        raise ValueError(f"recurEvery: {text!r} must start with [N]Hour(s), Day(s), Week(s) or Month(s)")
    every = int(match[1]) if match[1] else 1
    if every < 1:
        raise ValueError(f"recurEvery: frequency must be at least 1 in {text!r}")
    unit = match[2].lower().rstrip("s")
    tokens = [t for t in re.split(r"[\s,]+", rest.strip()) if t]
    if unit in ("hour", "day"):
        if tokens:
            raise ValueError(f"recurEvery: {unit} schedules take no further terms, got {text!r}")
        return Recurrence(unit=unit, every=every)
    if unit == "week":
        days = tuple(sorted({_weekday(t) for t in tokens}))
        return Recurrence(unit="week", every=every, weekdays=days)
    if not tokens:
        return Recurrence(unit="month", every=every)
    if _DAY_RE.match(tokens[0]):
        month_days = []
        for token in tokens:
            day_match = _DAY_RE.match(token)
            if not day_match:
                raise ValueError(f"recurEvery: expected dayN terms, got {token!r} in {text!r}")
            value = int(day_match[1])
            if value == 0 or not -31 <= value <= 31:
                raise ValueError(f"recurEvery: month day out of range in {token!r}")
            month_days.append(value)
        return Recurrence(unit="month", every=every, month_days=tuple(dict.fromkeys(month_days)))
    ordinal = _ORDINALS.get(tokens[0].lower())
    if ordinal is None or len(tokens) not in (2, 3):
        raise ValueError(
            f"recurEvery: monthly schedules are 'Month dayN,...' or 'Month <First..Fourth|Last> <Weekday>"
            f" [OffsetN]', got {text!r}"
        )
    weekday = _weekday(tokens[1])
    offset = 0
    if len(tokens) == 3:
        offset_match = _OFFSET_RE.match(tokens[2])
        if not offset_match:
            raise ValueError(f"recurEvery: expected OffsetN, got {tokens[2]!r} in {text!r}")
        offset = int(offset_match[1])
        if not -6 <= offset <= 6:
            raise ValueError(f"recurEvery: offset must be between -6 and 6, got {offset} in {text!r}")
    return Recurrence(unit="month", every=every, ordinal=ordinal, ordinal_weekday=weekday, offset_days=offset)


def parse_window(window: dict[str, Any]) -> MaintenanceWindow:
    """Parse an ARM ``maintenanceWindow`` dict; raises ``ValueError`` naming the bad field."""
    if not isinstance(window, dict):
        raise ValueError("maintenanceWindow: expected an object")
    start = _parse_local("startDateTime", window.get("startDateTime"))
    duration = parse_maintenance_duration(window.get("duration"))
    time_zone = str(window.get("timeZone") or "")
    resolve_time_zone(time_zone)
    recur = window.get("recurEvery")
    if not isinstance(recur, str):
        raise ValueError(f"recurEvery: a recurrence is required, got {recur!r}")
    parse_recur_every(recur)
    expiration_text = window.get("expirationDateTime")
    expiration = _parse_local("expirationDateTime", expiration_text) if expiration_text else None
    if expiration is not None and expiration < start:
        raise ValueError("expirationDateTime: must not be before startDateTime")
    return MaintenanceWindow(
        start_local=start,
        duration=duration,
        time_zone=time_zone,
        recur_every=recur,
        expiration_local=expiration,
    )


def _to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _add_months(year: int, month: int, count: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + count
    return index // 12, index % 12 + 1


def _month_dates(rec: Recurrence, year: int, month: int, default_day: int) -> list[date]:
    last = calendar.monthrange(year, month)[1]
    if rec.ordinal is not None and rec.ordinal_weekday is not None:
        if rec.ordinal > 0:
            first = date(year, month, 1)
            shift = (rec.ordinal_weekday - first.weekday()) % 7
            day = first + timedelta(days=shift + 7 * (rec.ordinal - 1))
        else:
            final = date(year, month, last)
            day = final - timedelta(days=(final.weekday() - rec.ordinal_weekday) % 7)
        return [day + timedelta(days=rec.offset_days)]
    wanted = rec.month_days or (default_day,)
    days = []
    for value in wanted:
        actual = value if value > 0 else last + 1 + value
        if 1 <= actual <= last:
            days.append(date(year, month, actual))
    return sorted(set(days))


def _local_starts(window: MaintenanceWindow, from_local: date) -> Iterator[datetime]:
    """Candidate local starts in ascending order, beginning near ``from_local`` (infinite)."""
    rec = window.recurrence
    start = window.start_local
    tod: time = start.time()
    if rec.unit == "day":
        skip = max(0, (from_local - start.date()).days // rec.every)
        day = start.date() + timedelta(days=skip * rec.every)
        while True:
            yield datetime.combine(day, tod)
            day += timedelta(days=rec.every)
    elif rec.unit == "week":
        weekdays = rec.weekdays or (start.weekday(),)
        week0 = start.date() - timedelta(days=start.weekday())
        skip = max(0, (from_local - week0).days // 7 // rec.every)
        monday = week0 + timedelta(weeks=skip * rec.every)
        while True:
            for weekday in weekdays:
                yield datetime.combine(monday + timedelta(days=weekday), tod)
            monday += timedelta(weeks=rec.every)
    else:
        months_between = (from_local.year - start.year) * 12 + from_local.month - start.month
        # step back one period so offsets that cross a month boundary are not missed
        skip = max(0, months_between // rec.every - 1)
        year, month = _add_months(start.year, start.month, skip * rec.every)
        while True:
            for day in _month_dates(rec, year, month, start.day):
                yield datetime.combine(day, tod)
            year, month = _add_months(year, month, rec.every)


def occurrences(window: MaintenanceWindow, after: datetime, until: datetime) -> Iterator[Occurrence]:
    """Occurrences with ``after < start <= until`` (aware datetimes), in ascending order."""
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("occurrences: 'after' and 'until' must be timezone-aware")
    after, until = after.astimezone(UTC), until.astimezone(UTC)
    zone = window.zone
    first_utc = _to_utc(window.start_local, zone)
    expiration_utc = _to_utc(window.expiration_local, zone) if window.expiration_local else None
    rec = window.recurrence
    if rec.unit == "hour":
        step = timedelta(hours=rec.every)
        count = max(0, int((after - first_utc) // step))
        start = first_utc + count * step
        while start <= until:
            if expiration_utc is not None and start > expiration_utc:
                return
            if start > after:
                yield Occurrence(start, start + window.duration)
            start += step
        return
    from_local = max(after.astimezone(zone).date() - timedelta(days=7), window.start_local.date())
    previous: datetime | None = None
    for local in _local_starts(window, from_local):
        if local < window.start_local:
            continue
        if window.expiration_local is not None and local > window.expiration_local:
            return
        start = _to_utc(local, zone)
        if start > until:
            return
        if start > after and start != previous:
            previous = start
            yield Occurrence(start, start + window.duration)


def next_occurrence(window: MaintenanceWindow, after: datetime) -> Occurrence | None:
    """The first occurrence starting strictly after ``after``, or None if the window expired."""
    first = _to_utc(window.start_local, window.zone)
    # 800 days past the later of `after` and the first start covers any sensible period (12Months+offset)
    horizon = max(after.astimezone(UTC), first) + timedelta(days=800)
    return next(occurrences(window, after, horizon), None)
