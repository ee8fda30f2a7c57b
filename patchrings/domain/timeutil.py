"""ISO-8601 durations and UTC timestamps, the two time shapes that cross the durable boundary.

The one time module of the app (issue 10: the orchestrators' own copy and its grammar are gone); one grammar each.

Durations (:func:`parse_duration`): plans, Azure payloads and orchestrator inputs all carry
durations such as ``PT30M`` or ``P1D``; months and years have no fixed length, so a duration used
for a timer or a deadline must be exact. The grammar is ``PnW`` / ``PnDTnHnMnS`` with whole
numbers, fractions only on seconds (``PT0.5S``; ``PT1.5H`` is refused: write ``PT1H30M``), and
``Y``/``M`` (calendar) units are refused with a clear message instead of guessing. Neither bare
seconds (a number) nor ``HH:MM`` are durations here: a seconds count crosses the boundary as a
number in a field named ``...Seconds``, and the maintenance configuration's ``duration`` field
(``"03:55"``, the one ``HH:MM[:SS]`` value) is read only by :func:`parse_maintenance_duration`.
:func:`duration_or` is :func:`parse_duration` with a default for an absent value.

Instants: every datetime in the domain is timezone-aware UTC. :func:`parse_instant` accepts the
shapes seen in Event Grid payloads (``Z``, offsets, 7 fractional digits) and treats naive values
as UTC. :func:`format_instant` is the one writer: RFC 3339 UTC with ``Z``
(``2023-05-09T15:00:00Z``), microseconds only when non-zero, or never with ``whole_seconds``;
:func:`iso` is that whole-second form, the one the rollout state document, the ledger rows and
the activity payloads the orchestrators build carry (the orchestration clock truncated to the
second, as they always were).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from dateutil.parser import isoparse

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)

#: the regular expression the plan schema uses for durations (kept in sync with ``_DURATION``)
DURATION_PATTERN = _DURATION.pattern


class DurationError(ValueError):
    """A string is not an exact ISO-8601 duration."""


def parse_duration(text: str) -> timedelta:
    """``"PT30M"`` → ``timedelta(minutes=30)``; raises :class:`DurationError` otherwise."""
    if not isinstance(text, str):
        raise DurationError(f"expected an ISO-8601 duration string such as PT30M, got {text!r}")
    m = _DURATION.match(text.strip().upper())
    if not m or text.strip().upper() in ("P", "PT"):
        raise DurationError(f"{text!r} is not an ISO-8601 duration such as PT30M or P1D")
    parts = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
    return timedelta(
        weeks=parts["weeks"],
        days=parts["days"],
        hours=parts["hours"],
        minutes=parts["minutes"],
        seconds=parts["seconds"],
    )


def format_duration(td: timedelta) -> str:
    """Canonical ISO-8601 form (``P1DT2H``, ``PT30M``, ``PT0S``); inverse of :func:`parse_duration`."""
    total = td.total_seconds()
    if total < 0:
        raise DurationError("negative durations have no ISO-8601 form here")
    days, rem = divmod(total, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    out = "P"
    if days:
        out += f"{int(days)}D"
    time = ""
    if hours:
        time += f"{int(hours)}H"
    if minutes:
        time += f"{int(minutes)}M"
    if seconds:
        time += f"{int(seconds)}S" if seconds == int(seconds) else f"{seconds:g}S"
    if time:
        out += "T" + time
    return out if out != "P" else "PT0S"


def parse_instant(value: str | datetime) -> datetime:
    """Parse an ISO-8601 timestamp into an aware UTC datetime (naive input is taken as UTC)."""
    if isinstance(value, datetime):
        dt = value
    else:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected an ISO-8601 timestamp, got {value!r}")
        dt = isoparse(value.strip())
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_instant(dt: datetime, *, whole_seconds: bool = False) -> str:
    """``2023-05-09T15:00:00Z`` (microseconds kept only when non-zero, and never with
    ``whole_seconds``: then the instant is truncated to its second)."""
    dt = parse_instant(dt)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond and not whole_seconds:
        text += f".{dt.microsecond:06d}"
    return text + "Z"


def iso(dt: datetime) -> str:
    """``2023-05-09T15:00:00Z``: :func:`format_instant` to the whole second (what the rollout's
    status document, ledger rows and activity payloads carry)."""
    return format_instant(dt, whole_seconds=True)


def duration_or(value: str | None, default: timedelta) -> timedelta:
    """:func:`parse_duration` of ``value``, or ``default`` when it is absent (None or ``""``)."""
    if value is None or value == "":
        return default
    return parse_duration(value)


_MAINTENANCE_DURATION = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def parse_maintenance_duration(text: object) -> timedelta:
    """A maintenance configuration's window ``duration`` (``"03:55"``, ``HH:MM[:SS]``): the only
    place that form is read. Raises ValueError unless it is positive with minutes and seconds
    below 60."""
    match = _MAINTENANCE_DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"duration: expected 'HH:mm', got {text!r}")
    hours, minutes, seconds = int(match[1]), int(match[2]), int(match[3] or 0)
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"duration: minutes and seconds must be below 60, got {text!r}")
    value = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if value <= timedelta(0):
        raise ValueError(f"duration: must be positive, got {text!r}")
    return value
