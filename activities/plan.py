"""``load_plan``: read and validate the rollout plan the app runs with.

Why an activity: orchestrators may not do I/O, and the plan must be validated by the same
domain loader everywhere (startup check, validate command, here). The result is
``Plan.to_dict()`` -- fully resolved, with its ``hash`` -- which the orchestration carries.

Input ``{}`` (the deployed plan) or ``{"plan": {...}}``: a plan carried in the rollout's input.
Anyone holding the durabletask system key or the master key can start ``rollout_orchestrator``
directly, around ``POST /api/rollouts`` (issue 13.9), so such a plan gets the very check the API
makes (domain ``check_inline_plan``: refused unless ``PATCHRINGS_INLINE_PLANS`` is on, and then
only if it weakens nothing in the deployed plan); a refused plan raises ``PlanForbidden`` and the
rollout ends failed with the reason before touching anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import azure.durable_functions as df

from patchrings import deps
from patchrings.boundary.activities import (
    LoadPlanInput,
)
from patchrings.boundary.codec import from_payload
from patchrings.domain.plan import Plan, Ring, check_inline_plan, load_plan_file
from patchrings.domain.plan import load_plan as load_plan_doc
from patchrings.errors import PatchRingsError, PlanForbidden
from patchrings.settings import Settings

bp = df.Blueprint()

__all__ = ["assignment_name", "bp", "checked_input_plan", "load_plan", "load_plan_core",
           "ring_from_spec"]


def load_plan_core(settings: Settings, payload: LoadPlanInput | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The validated plan at ``PATCHRINGS_PLAN_PATH`` as a dict (raises ``PlanInvalid``), or the
    plan in ``payload["plan"]`` if it passes the inline-plan check against it (``PlanForbidden``)."""
    spec = from_payload(LoadPlanInput, payload or {})
    deployed = load_plan_file(settings.plan_file)
    doc = spec.plan
    if doc is None:
        return deployed.to_dict()
    return checked_input_plan(doc, deployed, enabled=settings.inline_plans)


def checked_input_plan(doc: Any, deployed: Plan, *, enabled: bool) -> dict[str, Any]:
    """A plan from an orchestration's input, validated and checked like an API start's plan."""
    try:
        if not isinstance(doc, Mapping):
            raise PlanForbidden("the plan must be a rollout plan object", field="plan")
        inline = load_plan_doc(doc, source="orchestration input")
        check_inline_plan(inline, deployed, enabled=enabled)
    except PatchRingsError as err:
        raise PlanForbidden(f"the plan in the rollout's input is refused: {err.message}", field=err.field or "plan",
                            details=err.details) from err
    return inline.to_dict()


def ring_from_spec(doc: Mapping[str, Any], ring: str = "") -> Ring:
    """The domain :class:`Ring` of a resolved ring document (``ringSpec``: ``Ring.to_dict()`` of
    the plan ``load_plan`` validated, defaults merged), without validating a plan again (issue 10):
    :meth:`Ring.from_dict`, named ``ring`` when the document carries no name."""
    return Ring.from_dict(doc if doc.get("name") else {**doc, "name": ring})


def assignment_name(ring: Ring) -> str:
    """A ring's configuration-assignment name: ``open.assignmentName`` or ``patchrings-<ring>``."""
    return str(ring.assignment_name or f"patchrings-{ring.name}")


@bp.activity_trigger(input_name="payload")
def load_plan(payload: Any) -> dict[str, Any]:
    return load_plan_core(deps.settings(), payload if isinstance(payload, Mapping) else None)
