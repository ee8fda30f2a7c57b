"""ISO-8601 helpers for orchestrators (pure; ``current_utc_datetime`` is the only clock)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from patchrings.domain.timeutil import parse_instant

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_iso(text: str) -> datetime:
    """An ISO instant as an aware UTC datetime (naive values are taken as UTC): the domain's parser."""
    return parse_instant(text)


def iso(value: datetime) -> str:
    """A UTC instant as ``YYYY-MM-DDTHH:MM:SSZ`` (what the status document and activities use)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(value: str | int | float | None, default: timedelta) -> timedelta:
    """An ISO-8601 duration (``PT30M``, ``P1D``), ``HH:MM[:SS]``, or seconds; ``default`` if empty."""
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        return timedelta(seconds=float(value))
    text = str(value).strip().upper()
    match = _DURATION.match(text)
    if match and text != "P":
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        return timedelta(**parts)
    if re.match(r"^\d+:\d{2}(:\d{2})?$", text):
        pieces = [int(p) for p in text.split(":")]
        hours, minutes = pieces[0], pieces[1]
        seconds = pieces[2] if len(pieces) > 2 else 0
        return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(f"not a duration: {value!r}")
