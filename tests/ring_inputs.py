"""How tests name a ring to an activity: its resolved document (``ringSpec``), as orchestrators do.

Since issue 10 an activity that reads one ring (``resolve_ring_members``, ``set_ring_assignment``)
is told which by the ring's document, never by the whole plan; tests that start from a plan turn
it into that input here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from patchrings.domain.plan import Plan


def named_ring(plan: Plan | Mapping[str, Any], ring: str) -> dict[str, Any]:
    """``{"ringSpec": <ring's resolved document>, "ring": ring}`` for ``ring`` of ``plan``."""
    resolved = plan if isinstance(plan, Plan) else Plan.from_dict(plan)
    return {"ringSpec": resolved.ring(ring).to_dict(), "ring": ring}
