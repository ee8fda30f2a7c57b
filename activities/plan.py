"""``load_plan``: read and validate the rollout plan the app runs with.

Why an activity: orchestrators may not do I/O, and the plan must be validated by the same
domain loader everywhere (startup check, validate command, here). The result is
``Plan.to_dict()`` -- fully resolved, with its ``hash`` -- which the orchestration carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import azure.durable_functions as df

from activities.deps import deps
from patchrings.domain.plan import Plan, load_plan_file
from patchrings.settings import Settings

bp = df.Blueprint()

__all__ = ["assignment_name", "bp", "load_plan", "load_plan_core", "plan_ring"]


def load_plan_core(settings: Settings) -> dict[str, Any]:
    """The validated plan at ``PATCHRINGS_PLAN_PATH`` as a dict (raises ``PlanInvalid``)."""
    return load_plan_file(settings.plan_file).to_dict()


def plan_ring(plan: Mapping[str, Any], ring: str) -> Any:
    """The resolved ``Ring`` called ``ring`` from a plan dict (as carried by orchestrations)."""
    return Plan.from_dict(plan).ring(ring)


def assignment_name(ring: Any) -> str:
    """A ring's configuration-assignment name: ``open.assignmentName`` or ``patchrings-<ring>``."""
    return str(ring.assignment_name or f"patchrings-{ring.name}")


@bp.activity_trigger(input_name="payload")
def load_plan(payload: Any) -> dict[str, Any]:
    return load_plan_core(deps().settings)
