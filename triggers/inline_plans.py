"""A plan sent with ``POST /api/rollouts`` may only restrict the deployed plan, never weaken it.

Why (issue 13 item 9): the function key is a shared secret for *calling* the API, not a grant to
decide how production is patched. Without this check a key holder could start a rollout whose
plan has ``approval.mode: none``, lists themselves as approver, approves on timeout, or patches
production VMs directly. So inline plans are refused unless ``PATCHRINGS_INLINE_PLANS=true``, and
even then, compared ring by ring with the deployed plan (``PATCHRINGS_PLAN_PATH``):

* rings: the inline rings are the deployed rings' names *in order*, possibly fewer at the end
  (dropping later rings only patches less; reordering or adding rings would skip a gate);
* ``members``, ``patching`` and ``open`` are the deployed ring's (same VMs, same mechanism);
* ``health`` is the deployed ring's; ``gate.tolerateErrors`` / ``gate.allowUncoveredOs`` may not
  be turned on;
* ``rate.maxErrors`` is the deployed value or 0 (concurrency may change);
* ``approval``: a manual ring stays manual; approvers are a subset of the deployed approvers;
  ``onTimeout: approve`` only where the deployed ring has it, with no shorter timeout;
* ``promotion`` margins are the deployed ones.

Every violation is reported at once (403 ``PlanForbidden``, ``details: [{field, message}]``,
fields named as in the request: ``plan.rings[1].approval.approvers``).

The rules are pure and live in :mod:`patchrings.domain.plan` (``plan_weakenings`` /
``check_inline_plan``): the ``load_plan`` activity runs the same check when a rollout is started
through the Durable client with a plan in its input (the 13.9 hole: the system or master key
bypasses this API), so this module only re-exports them for the HTTP API.
"""

from __future__ import annotations

from patchrings.domain.plan import check_inline_plan, plan_weakenings

__all__ = ["check_inline_plan", "plan_weakenings"]
