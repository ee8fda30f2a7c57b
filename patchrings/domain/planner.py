"""Can Ring 0 (direct) finish before the next ring's T-40, and how long does it need? (issue 11)

Why: Ring 0's waves run one after the other, each an install followed by the health phases; its
manifest must then land in the next ring's maintenance configuration before that run's T-40
(less the plan's ``promotion.t40Margin``), or the next ring slips a whole cycle (a 40-VM Ring 0 at
maxConcurrency 5 took ~640 simulated minutes and missed Ring 1's cutoff, adding a day). The dry
run (and the status) say so up front, with the time needed and a concurrency that would fit.

Model (what ``ring_direct`` + ``wave`` + ``verify`` do on the happy path): waves from
:func:`patchrings.domain.rate.wave_sizes` (equal or geometric), serial; one wave takes the
expected install time (:func:`patchrings.domain.results.expected_install_duration` unless a
learned figure is given) + ``waitDuration`` + ``healthyStateDuration``. The worst case adds the
whole ``elasticDuration`` to every wave (VMs slow to become healthy). Gate, results collection and
a human approval come after and are not in ``needs``: ``slack`` is what is left for them.

Pure: no I/O, no clock (``start`` is given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from patchrings.domain.health import HealthPolicy
from patchrings.domain.plan import DEFAULT_T40_MARGIN
from patchrings.domain.rate import RateControl, wave_sizes
from patchrings.domain.timeutil import format_duration, format_instant

__all__ = ["RingPlanEstimate", "estimate_ring"]


@dataclass(frozen=True)
class RingPlanEstimate:
    ring: str
    vms: int
    waves: tuple[int, ...]
    wave_duration: timedelta
    needs: timedelta
    needs_worst_case: timedelta
    finishes_at: datetime
    next_ring: str | None = None
    next_run_start: datetime | None = None
    land_by: datetime | None = None
    min_concurrency_to_fit: int | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def fits(self) -> bool | None:
        return None if self.land_by is None else self.finishes_at <= self.land_by

    @property
    def slack(self) -> timedelta | None:
        return None if self.land_by is None else self.land_by - self.finishes_at

    def to_dict(self) -> dict[str, Any]:
        slack = self.slack
        return {
            "ring": self.ring,
            "vms": self.vms,
            "waves": list(self.waves),
            "waveDuration": format_duration(self.wave_duration),
            "needs": format_duration(self.needs),
            "needsWorstCase": format_duration(self.needs_worst_case),
            "finishesAt": format_instant(self.finishes_at),
            "nextRing": self.next_ring,
            "nextRunStart": format_instant(self.next_run_start) if self.next_run_start else None,
            "landBy": format_instant(self.land_by) if self.land_by else None,
            "fits": self.fits,
            "slack": None if slack is None else ("-" if slack < timedelta(0) else "") + format_duration(abs(slack)),
            "minConcurrencyToFit": self.min_concurrency_to_fit,
            "warnings": list(self.warnings),
        }


def _human(td: timedelta) -> str:
    minutes = int(td.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def estimate_ring(
    ring: str,
    vm_count: int,
    *,
    rate: RateControl,
    health: HealthPolicy,
    install_expected: timedelta,
    start: datetime,
    next_ring: str | None = None,
    next_run_start: datetime | None = None,
    t40_margin: timedelta = DEFAULT_T40_MARGIN,
    approval_needed: bool = False,
) -> RingPlanEstimate:
    """Ring 0's duration from ``start`` and whether it lands before ``next_run_start``'s T-40
    minus ``t40_margin`` (``next_run_start`` None: no deadline, e.g. the next ring is direct)."""
    sizes = tuple(wave_sizes(vm_count, rate.concurrency(vm_count), rate.wave_schedule)) if vm_count > 0 else ()
    per_wave = install_expected + health.wait + health.healthy_state
    needs = per_wave * len(sizes)
    worst = (per_wave + health.elastic) * len(sizes)
    finishes = start + needs
    land_by = next_run_start - timedelta(minutes=40) - t40_margin if next_run_start else None
    warnings: list[str] = []
    min_fit: int | None = None
    if land_by is not None and next_run_start is not None and sizes:
        room = land_by - start
        max_waves = int(room / per_wave) if per_wave > timedelta(0) else len(sizes)
        if max_waves >= 1:
            min_fit = math.ceil(vm_count / max_waves)
            if rate.wave_schedule == "geometric":  # 1, 2, 4, ...: find the smallest cap that fits
                min_fit = next((c for c in range(1, vm_count + 1)
                                if len(wave_sizes(vm_count, c, "geometric")) <= max_waves), None)
        when = f"{next_ring}'s run at {format_instant(next_run_start)}"
        if finishes > land_by:
            fix = (f"raise maxConcurrency to at least {min_fit}" if min_fit is not None
                   else "no concurrency fits: start earlier")
            warnings.append(
                f"{ring} cannot finish before {when} can take the manifest: it needs {_human(needs)} "
                f"({len(sizes)} waves x {_human(per_wave)}) and would finish at {format_instant(finishes)}, after "
                f"T-40 less the margin ({format_instant(land_by)}); the manifest would go to the following run. "
                f"To make it, {fix}.")
        elif start + worst > land_by:
            warnings.append(
                f"{ring} fits before {when} only if its VMs become healthy quickly: it needs {_human(needs)} "
                f"(worst case {_human(worst)} with every elastic phase), leaving {_human(land_by - finishes)} "
                f"before T-40 less the margin ({format_instant(land_by)}).")
        if approval_needed and finishes <= land_by:
            warnings.append(
                f"{next_ring} needs an approval: it must be given within {_human(land_by - finishes)} of {ring} "
                f"finishing (by {format_instant(land_by)}) to make the run at {format_instant(next_run_start)}.")
    return RingPlanEstimate(ring, vm_count, sizes, per_wave, needs, worst, finishes, next_ring, next_run_start,
                            land_by, min_fit, tuple(warnings))
