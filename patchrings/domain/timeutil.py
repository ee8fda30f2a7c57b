"""ISO-8601 durations and UTC timestamps, the two time shapes that cross the durable boundary.

Why our own parser: plans, Azure payloads and orchestrator inputs all carry durations such as
``PT30M`` or ``P1D``; months and years have no fixed length, so a duration used for a timer or a
deadline must be exact. We accept ``PnW`` / ``PnDTnHnMnS`` (fractional seconds allowed) and refuse
``Y``/``M`` (calendar) units with a clear message instead of guessing.

Timestamps: every datetime in the domain is timezone-aware UTC. ``parse_instant`` accepts the
shapes seen in Event Grid payloads (``Z``, offsets, 7 fractional digits) and treats naive values
as UTC; ``format_instant`` writes ``2023-05-09T15:00:00Z``.
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


def format_instant(dt: datetime) -> str:
    """``2023-05-09T15:00:00Z`` (microseconds kept only when non-zero)."""
    dt = parse_instant(dt)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}"
    return text + "Z"
