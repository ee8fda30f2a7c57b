"""The rollout's planner step (issue 11): can Ring 0 finish before the next ring's T-40? Advisory:
the estimate's warnings become status notes, the estimate goes on the ledger row."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrators import names
from orchestrators.rollout_base import (
    Gen,
    first_line,
    next_run,
)
from orchestrators.rollout_quarantine import QuarantineSteps
from patchrings.boundary.activities import GetConfigurationInput
from patchrings.domain.plan import Plan
from patchrings.domain.planner import estimate_ring
from patchrings.domain.results import expected_install_duration
from patchrings.domain.timeutil import duration_or, iso, parse_instant


class PlannerSteps(QuarantineSteps):
    def plan_first_ring(self) -> Gen:
        """Can Ring 0 finish before the next ring's T-40 (less ``promotion.t40Margin``)? The
        domain planner's estimate (``patchrings.domain.planner.estimate_ring``, as the dry run
        computes it), its warnings as notes in the status, the estimate on the ledger row.

        Only when the next ring is scheduled (a direct next ring has no T-40). Advisory: a read
        that fails is a note, never a failure. Ring 0's size comes from ``resolve_ring_members``
        with ``countOnly`` (the VM list is not kept: the rollout's history stays small; Ring 0
        resolves its own members when it starts).
        """
        first = self.resolved.rings[0] if self.resolved.rings else None
        following = self.resolved.next_ring(first.name) if first else None
        if first is None or following is None:
            return
        ring, next_ring = first.name, following.name
        configuration = following.configuration_id
        if not first.direct or not following.scheduled or not configuration:
            return
        try:
            members = yield from self.activity(names.RESOLVE_MEMBERS, self.resolve_members(ring, count_only=True))
            members = members if isinstance(members, dict) else {}
            count = int(members["count"]) if isinstance(members.get("count"), int) else len(members.get("vms") or [])
            config = yield from self.activity(
                names.GET_CONFIGURATION,
                GetConfigurationInput(configuration_id=configuration, rollout_id=self.rollout_id))
            window = (config or {}).get("window") or {}
        except Exception as err:
            self.st.note(iso(self.now), f"planner: whether {ring} finishes before {next_ring}'s T-40 is unknown "
                                        f"({first_line(err)[:200]})")
            self.publish()
            return
        run = next_run(window, self.now) if window else None
        self.planner = ring_estimate(self.resolved, ring, next_ring, count=count, start=self.now,
                                     next_run_start=parse_instant(run["runStart"]) if run else None,
                                     margin=self.resolved.promotion.t40_margin)
        for warning in planner_notes(self.planner):
            self.st.note(iso(self.now), f"planner: {warning}")
        self.publish()


def ring_estimate(plan: Plan, ring: str, next_ring: str, *, count: int, start: datetime,
                  next_run_start: datetime | None, margin: timedelta) -> dict[str, Any]:
    """The planner's estimate for a direct ``ring`` of ``count`` VMs from ``start`` against
    ``next_ring``'s run at ``next_run_start`` (the same inputs as the dry run's)."""
    spec = plan.ring(ring)
    return estimate_ring(
        ring, count,
        rate=spec.rate,
        health=spec.health,
        install_expected=expected_install_duration(duration_or(spec.install.get("maximumDuration"),
                                                                timedelta(hours=2))),
        start=start, next_ring=next_ring, next_run_start=next_run_start, t40_margin=margin,
        approval_needed=plan.ring(next_ring).approval.required,
    ).to_dict()


def planner_notes(estimate: dict[str, Any]) -> list[str]:
    """The estimate's warnings as short status notes (a note is cut at a few hundred characters,
    so a missed T-40 is restated with the fix first; the full text is on the ledger row)."""
    out = []
    for text in estimate.get("warnings") or []:
        warning = str(text)
        if estimate.get("fits") is False and " cannot finish before " in warning:
            fit = estimate.get("minConcurrencyToFit")
            fix = f"maxConcurrency >= {fit} would fit" if fit else "no concurrency fits: start earlier"
            warning = (f"{estimate.get('ring')} misses {estimate.get('nextRing')}'s run at "
                       f"{estimate.get('nextRunStart')}: {fix}; it needs {estimate.get('needs')} "
                       f"({len(estimate.get('waves') or [])} waves), finishing {estimate.get('finishesAt')}, "
                       f"after T-40 less the margin ({estimate.get('landBy')})")
        out.append(warning)
    return out

