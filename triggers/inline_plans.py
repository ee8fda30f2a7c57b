"""A plan sent with ``POST /api/rollouts`` may only restrict the deployed plan, never weaken it.

Why (issue 13 item 9): the function key is a shared secret for *calling* the API, not a grant to
decide how production is patched. Without this check a key holder could start a rollout whose
plan has ``approval.mode: none``, lists themselves as approver, approves on timeout, or patches
production VMs directly. So inline plans are refused unless ``PATCHRINGS_INLINE_PLANS=true``, and
even then, compared ring by ring with the deployed plan (``PATCHRINGS_PLAN_PATH``):

* rings: the inline rings are the deployed rings' names *in order*, possibly fewer at the end
  (dropping later rings only patches less; reordering or adding rings would skip a gate);
* ``members``, ``patching`` and ``open`` are the deployed ring's (same VMs, same mechanism);
* ``health`` is the deployed ring's; ``gate.tolerateErrors`` may not be turned on;
* ``rate.maxErrors`` is the deployed value or 0 (concurrency may change);
* ``approval``: a manual ring stays manual; approvers are a subset of the deployed approvers;
  ``onTimeout: approve`` only where the deployed ring has it, with no shorter timeout;
* ``promotion`` margins are the deployed ones.

Every violation is reported at once (403 ``PlanForbidden``, ``details: [{field, message}]``,
fields named as in the request: ``plan.rings[1].approval.approvers``).
"""

from __future__ import annotations

from patchrings.domain.plan import Plan, Ring
from patchrings.errors import PlanForbidden

__all__ = ["check_inline_plan", "plan_weakenings"]


def _approvers(ring: Ring) -> set[str]:
    return {a.strip().lower() for a in ring.approval.approvers}


def _ring_weakenings(i: int, mine: Ring, theirs: Ring) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    at = f"plan.rings[{i}]"

    def bad(field: str, message: str) -> None:
        out.append({"field": f"{at}.{field}", "message": message})

    if mine.members.to_dict() != theirs.members.to_dict():
        bad("members", f"must be the deployed plan's members of ring {theirs.name!r}")
    if mine.patching != theirs.patching:
        bad("patching", f"must be {theirs.patching!r} as in the deployed plan")
    if (mine.open_mode, mine.assignment_name) != (theirs.open_mode, theirs.assignment_name):
        bad("open", "must be the deployed plan's open mode")
    if mine.health.to_dict() != theirs.health.to_dict():
        bad("health", f"must be the deployed plan's health policy of ring {theirs.name!r}")
    if mine.tolerate_errors and not theirs.tolerate_errors:
        bad("gate.tolerateErrors", "may not be turned on: the deployed plan does not tolerate errors")
    max_errors = mine.rate.max_errors.to_json()
    if max_errors not in (theirs.rate.max_errors.to_json(), 0):
        bad("rate.maxErrors", f"must be {theirs.rate.max_errors.to_json()!r} (the deployed value) or 0")
    if theirs.approval.required:
        if not mine.approval.required:
            bad("approval.mode", f"must be 'manual': ring {theirs.name!r} needs a person's approval")
        else:
            extra = sorted(a for a in mine.approval.approvers if a.strip().lower() not in _approvers(theirs))
            if extra:
                bad("approval.approvers", f"{', '.join(extra)} may not approve ring {theirs.name!r} "
                                          "(not an approver in the deployed plan)")
            if mine.approval.on_timeout == "approve":
                if theirs.approval.on_timeout != "approve":
                    bad("approval.onTimeout", "must be 'reject' as in the deployed plan")
                elif mine.approval.timeout < theirs.approval.timeout:
                    bad("approval.timeout", "may not be shorter than the deployed timeout when onTimeout is 'approve'")
    return out


def plan_weakenings(inline: Plan, deployed: Plan) -> list[dict[str, str]]:
    """Every way ``inline`` is weaker than ``deployed`` (``[]`` = acceptable)."""
    problems: list[dict[str, str]] = []
    names = [r.name for r in inline.rings]
    expected = [r.name for r in deployed.rings][: len(names)]
    if [n.lower() for n in names] != [n.lower() for n in expected]:
        problems.append({
            "field": "plan.rings",
            "message": f"rings must be the deployed plan's rings in order (a prefix of "
                       f"{', '.join(r.name for r in deployed.rings)}); got {', '.join(names)}",
        })
        return problems
    for i, (mine, theirs) in enumerate(zip(inline.rings, deployed.rings, strict=False)):
        problems.extend(_ring_weakenings(i, mine, theirs))
    if inline.promotion.to_dict() != deployed.promotion.to_dict():
        problems.append({"field": "plan.promotion", "message": "must be the deployed plan's promotion margins"})
    return problems


def check_inline_plan(inline: Plan, deployed: Plan, *, enabled: bool) -> None:
    """Raise :class:`PlanForbidden` unless inline plans are enabled and ``inline`` weakens nothing."""
    if not enabled:
        raise PlanForbidden(
            "a plan in the start request is not accepted: the deployed plan is used "
            "(inline plans are off; PATCHRINGS_INLINE_PLANS enables restricting ones, locally)",
            field="plan",
        )
    problems = plan_weakenings(inline, deployed)
    if problems:
        first = problems[0]
        raise PlanForbidden(
            f"the plan in the request weakens the deployed plan: {len(problems)} problem(s); first: "
            f"{first['field']}: {first['message']}",
            field=first["field"],
            details=problems,
        )

