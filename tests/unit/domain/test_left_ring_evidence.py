"""Evidence that shrank (issue 11): VMs that left the ring are counted and named in the gate; when
more left than the larger of maxErrors and 10% of the planned members, the gate never passes."""

from __future__ import annotations

import math

import pytest

from patchrings.domain.gates import decide_gate, evidence_shrank, left_ring_allowance
from patchrings.domain.rate import RateControl

pytestmark = pytest.mark.unit


def rate(max_errors: object) -> RateControl:
    return RateControl.from_dict({"maxConcurrency": "100%", "maxErrors": max_errors})


@pytest.mark.parametrize(("left", "planned", "max_errors", "shrank"), [
    (0, 20, 0, False),
    (2, 20, 0, False),   # 10% of 20 = 2: not more
    (3, 20, 0, True),
    (19, 20, 0, True),   # the review's case: 1 VM judged of 20
    (3, 20, 3, False),   # maxErrors is larger than 10%
    (4, 20, 3, True),
    (1, 5, 0, False),    # 10% of 5 = 0.5, rounded up to one VM
    (2, 5, 0, True),
    (1, 3, 0, False),    # one VM moved out of a 3-VM Ring 0 (tests/functional/test_left_ring.py)
    (5, 100, "5%", False),
    (11, 100, "5%", True),
    (30, 100, "30%", False),
])
def test_evidence_shrank_table(left: int, planned: int, max_errors: object, shrank: bool) -> None:
    r = rate(max_errors)
    assert evidence_shrank(left, planned, r) is shrank
    assert left_ring_allowance(planned, r) == max(r.error_budget(planned), math.ceil(0.1 * planned - 1e-9))


def _passes(n: int) -> list[dict[str, object]]:
    return [{"vm": f"v{i}", "install": "ok", "health": "healthy"} for i in range(n)]


def test_a_ring_of_20_where_19_left_does_not_pass() -> None:
    gate = decide_gate("ring0", _passes(1), rate(0), left_ring=19, left_names=[f"l{i}" for i in range(19)],
                       planned=20)
    assert gate.outcome == "inconclusive", gate
    assert gate.counts["leftRing"] == 19 and gate.counts["total"] == 1
    assert gate.reasons[0]["reason"].startswith("19 VM(s) left the ring before their install; not judged (e.g. l0,")
    assert "l10" not in gate.reasons[0]["reason"]  # bounded: the first ten named
    assert "only 1 of 20" in gate.summary


def test_a_few_left_are_shown_and_the_gate_still_passes() -> None:
    gate = decide_gate("ring0", _passes(19), rate(0), left_ring=1, left_names=["l0"], planned=20)
    assert gate.outcome == "pass" and gate.counts["leftRing"] == 1
    assert gate.reasons[0] == {"vm": "", "reason": "1 VM(s) left the ring before their install; not judged (e.g. l0)"}
    assert "1 left the ring" in gate.summary


def test_a_failure_still_fails_when_evidence_shrank() -> None:
    verdicts = [*_passes(1), {"vm": "bad", "install": "failed", "health": "skipped"}]
    assert decide_gate("ring0", verdicts, rate(0), left_ring=18, planned=20).outcome == "fail"


def test_without_leavers_nothing_changes() -> None:
    gate = decide_gate("ring0", _passes(3), rate(0))
    assert gate.outcome == "pass" and "leftRing" not in gate.counts and gate.reasons == ()
    assert gate.summary == "all 3 VM(s) installed cleanly and stayed healthy"
