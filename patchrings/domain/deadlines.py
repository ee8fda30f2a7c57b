"""Schedule deadlines around an Azure Update Manager run (T0 = the run's start).

* **T-40** — scope and tag changes (retag, assignments) and, conservatively, manifest pins must
  land by then or they apply to the *next* run (update-manager-domain §2.2, §10).
* **Cancel deadline** — ``min(cancellationCutOffDateTime, T0 - 10 min)``. The documented rule is
  T-10, but the doc's own example has a cutoff at T-1; taking the minimum honours whichever is
  earlier (§2.1 caveat).
* **Decision deadline** — cancel deadline minus the plan's ``cancelMargin``: if the gate cannot be
  evaluated by then, the pre-event handler cancels the run (fail closed).

:func:`promotion_target` answers "which run of the next ring can this promotion still make?": the
next occurrence if its T-40 minus ``t40Margin`` is still ahead, otherwise the following one, and it
says so (``meetsT40`` false, ``skippedRun`` set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from patchrings.domain.events import MaintenanceEvent
from patchrings.domain.recurrence import MaintenanceWindow, next_occurrence, parse_window, run_name
from patchrings.domain.timeutil import format_instant, parse_instant

T40 = timedelta(minutes=40)
T10 = timedelta(minutes=10)


def t40(start: datetime) -> datetime:
    """The last moment a scope/tag change still applies to the run starting at ``start``."""
    return parse_instant(start) - T40


def cancel_deadline(event: MaintenanceEvent | Mapping[str, Any]) -> datetime:
    """``min(cancellationCutOffDateTime, startDateTime - 10 min)`` (cutoff optional)."""
    ev = event if isinstance(event, MaintenanceEvent) else MaintenanceEvent.from_dict(event)
    latest = ev.start - T10
    if ev.cancellation_cutoff is not None:
        return min(ev.cancellation_cutoff, latest)
    return latest


def decision_deadline(event: MaintenanceEvent | Mapping[str, Any], margin: timedelta) -> datetime:
    """When the pre-event handler must have decided: cancel deadline minus ``margin``."""
    return cancel_deadline(event) - margin


def can_still_cancel(event: MaintenanceEvent | Mapping[str, Any], now: datetime) -> bool:
    return parse_instant(now) <= cancel_deadline(event)


@dataclass(frozen=True)
class RunRef:
    start: datetime
    end: datetime

    @property
    def name(self) -> str:
        return run_name(self.start)

    @property
    def t40(self) -> datetime:
        return t40(self.start)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": format_instant(self.start),
            "end": format_instant(self.end),
            "name": self.name,
            "t40": format_instant(self.t40),
        }


@dataclass(frozen=True)
class PromotionTarget:
    """The run a promotion aims at, and whether the immediate next run is still reachable."""

    run: RunRef
    land_by: datetime
    meets_t40: bool
    next_run: RunRef
    skipped_run: RunRef | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "runStart": format_instant(self.run.start),
            "runEnd": format_instant(self.run.end),
            "runName": self.run.name,
            "t40": format_instant(self.run.t40),
            "landBy": format_instant(self.land_by),
            "meetsT40": self.meets_t40,
            "nextRun": self.next_run.to_dict(),
            "skippedRun": self.skipped_run.to_dict() if self.skipped_run else None,
            "reason": self.reason,
        }


def _window(window: MaintenanceWindow | Mapping[str, Any]) -> MaintenanceWindow:
    if isinstance(window, MaintenanceWindow):
        return window
    return parse_window(dict(window))


def promotion_target(
    window: MaintenanceWindow | Mapping[str, Any], now: datetime, margin: timedelta
) -> PromotionTarget | None:
    """Which run of a ring's schedule a promotion starting at ``now`` can still make.

    ``window`` is the ARM ``maintenanceWindow`` dict (or a parsed window). The promotion must land
    by ``T-40 - margin``. Returns ``None`` when the schedule has no future run (expired).
    """
    now = parse_instant(now)
    mw = _window(window)
    first = next_occurrence(mw, now)
    if first is None:
        return None
    nxt = RunRef(first.start, first.end)
    land_by = nxt.t40 - margin
    if now <= land_by:
        return PromotionTarget(
            nxt, land_by, True, nxt, None, f"lands before T-40 of the run at {format_instant(nxt.start)}"
        )
    following = next_occurrence(mw, first.start)
    if following is None:
        return None
    target = RunRef(following.start, following.end)
    reason = (
        f"too late for the run at {format_instant(nxt.start)} (its T-40 minus margin was "
        f"{format_instant(land_by)}); targeting the following run at {format_instant(target.start)}"
    )
    return PromotionTarget(target, target.t40 - margin, False, nxt, nxt, reason)


# ------------------------------------------------------------------------------ the guard's timing
# The fail-closed guard (orchestrators/guard.py) decides ``GUARD_LEAD`` before the cancel deadline
# at the latest: the gate read (its own ``GUARD_READ_BUDGET``), the configuration check (another)
# and then a cancel loop that keeps trying until the deadline. Pre-events arrive T-40..T-30 (at
# worst 20 minutes before T-10), so T-30 still leaves the rollout 12 minutes to authorise the run.
GUARD_LEAD = timedelta(minutes=8)
GUARD_READ_BUDGET = timedelta(minutes=1)
# One cancel attempt's budget at most, and the least worth starting one for.
CANCEL_ATTEMPT_CAP = timedelta(seconds=60)
CANCEL_ATTEMPT_MIN = timedelta(seconds=5)
# Waits between failed cancel attempts (the last one repeats); Retry-After lengthens a wait.
CANCEL_BACKOFF = (timedelta(seconds=5), timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=30))
# A wait never eats the end of the window: the last attempt starts this long before the deadline.
CANCEL_LAST_TRY = timedelta(seconds=20)


def guard_decide_at(cancel_by: datetime, margin: timedelta, lead: timedelta = GUARD_LEAD) -> datetime:
    """When the guard reads the gate: ``cancel_by - max(margin, lead)`` (never later than the
    plan's cancelMargin asks, never so late that a slow ledger and a flaky cancel miss T-10)."""
    return parse_instant(cancel_by) - max(margin, lead)


def cancel_attempt_budget(now: datetime, cancel_by: datetime) -> float | None:
    """Seconds one cancel attempt may take (capped), or None when no attempt fits any more."""
    remaining = parse_instant(cancel_by) - parse_instant(now)
    if remaining < CANCEL_ATTEMPT_MIN:
        return None
    return min(remaining, CANCEL_ATTEMPT_CAP).total_seconds()


def next_cancel_attempt(
    now: datetime, cancel_by: datetime, failures: int, retry_after: float | None = None
) -> datetime | None:
    """When to try the cancel again after ``failures`` failed attempts, or None if it is too late.

    The wait is the back-off step (or the server's Retry-After if longer), but never past
    ``cancel_by - CANCEL_LAST_TRY``: one more attempt before the deadline beats honouring a long
    Retry-After and letting the run patch. None when even that moment has passed.
    """
    now = parse_instant(now)
    step = CANCEL_BACKOFF[min(max(failures, 1), len(CANCEL_BACKOFF)) - 1]
    if retry_after is not None and retry_after > 0:
        step = max(step, timedelta(seconds=float(retry_after)))
    at = min(now + step, parse_instant(cancel_by) - CANCEL_LAST_TRY)
    if at <= now:
        return None
    return at
