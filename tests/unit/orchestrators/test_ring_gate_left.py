"""The ring gate with VMs that left the ring (issue 11): not failed, not retried, counted and named."""

from __future__ import annotations

import pytest

from orchestrators import names
from tests.unit.orchestrators.test_ring_gate import PREFIX, run

pytestmark = pytest.mark.unit


def test_left_ring_vms_are_reported_not_retried() -> None:
    left = [{"vm": f"{PREFIX}/v1", "reason": "tag 'patchRing' is 'excluded' now"}]
    answer = {"written": 3, "failed": [{"vm": f"{PREFIX}/v4", "error": {"code": "Conflict"}}],
              "leftRing": left, "leftRingCount": 1}
    ctx, out, error = run([answer, {"written": 1, "failed": []}])
    assert error is None
    retags = [p for n, p in ctx.calls if n == names.RETAG]
    assert len(retags) == 2 and retags[1]["vmIds"] == [f"{PREFIX}/v4"]  # only the failure again
    assert all(p["memberRule"]["tag"]["holdValue"] == "ring1-hold" and p["opening"] is True for p in retags)
    assert out["leftRingCount"] == 1 and out["leftRing"] == left and out["changed"] == 4
