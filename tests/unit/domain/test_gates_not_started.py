"""Gate summaries count the ring members that never started (issue 9 follow-up, counts truth).

A ring halted by its error budget verifies only the VMs it started; its gate said "1 of 4 VM(s)
failed" for a 6-member ring, so the two members never started were invisible. The gate now
counts them (``counts.notStarted``) and says so in its summary. Pure domain logic
(``patchrings.domain.gates.decide_gate``), and through the orchestrators' own caller
(``orchestrators.verdicts.gate_for``), which names those members in its ring-level reasons.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrators.verdicts import gate_for
from patchrings.domain.gates import NOT_STARTED, VmVerdict, decide_gate
from patchrings.domain.plan import load_plan_file
from patchrings.domain.rate import RateControl

pytestmark = pytest.mark.unit

BUDGET = "not started: the ring's error budget (maxErrors) was exceeded"


def clean(vm: str) -> VmVerdict:
    return VmVerdict(vm, "ok", "healthy")


def broken(vm: str) -> VmVerdict:
    return VmVerdict(vm, "ok", "unhealthy", ("health: application health is unhealthy",))


def test_a_six_member_ring_halted_after_four_says_two_not_started() -> None:
    verdicts = [clean("r0-web-01"), clean("r0-app-01"), clean("r0-app-02"), broken("r0-web-03")]
    never = [{"vm": "r0-web-04", "reason": BUDGET}, {"vm": "r0-web-05", "reason": BUDGET}]
    gate = decide_gate("ring0", verdicts, extra_reasons=never)
    assert gate.outcome == "fail"
    assert gate.summary == "1 of 4 VM(s) failed (no failures tolerated); 2 not started"
    assert gate.counts == {"total": 4, "passed": 3, "failed": 1, "inconclusive": 0, "errorBudget": 0,
                           "notStarted": 2}
    # the reasons still name them, after the VMs' own
    assert [r["vm"] for r in gate.reasons] == ["r0-web-03", "r0-web-04", "r0-web-05"]
    assert gate.to_dict()["counts"]["notStarted"] == 2


def test_with_a_tolerated_budget_the_failure_summary_adds_them_too() -> None:
    rate = RateControl.from_dict({"maxConcurrency": 2, "maxErrors": "1"})
    verdicts = [clean("a"), broken("b"), broken("c")]
    gate = decide_gate("ring1", verdicts, rate, tolerate_errors=True,
                       extra_reasons=[{"vm": "d", "reason": BUDGET}])
    assert gate.summary == "2 of 3 VM(s) failed (error budget 1); 1 not started"
    assert gate.counts["notStarted"] == 1


def test_only_members_without_a_verdict_named_not_started_count() -> None:
    verdicts = [clean("a"), broken("B")]
    extra = [{"vm": "b", "reason": BUDGET},  # has a verdict (ids compare case-insensitively)
             {"vm": "c", "reason": BUDGET}, {"vm": "C", "reason": BUDGET},  # one member, named twice
             {"vm": "e", "reason": "results not recorded"},  # another ring-level finding
             {"reason": f"{NOT_STARTED}: membership unreadable"}]  # no VM: not a member count
    gate = decide_gate("ring0", verdicts, extra_reasons=extra)
    assert gate.counts["notStarted"] == 1 and gate.summary.endswith("; 1 not started")


def test_nothing_not_started_leaves_the_summaries_as_they_were() -> None:
    assert decide_gate("ring0", [clean("a"), broken("b")]).summary == "1 of 2 VM(s) failed (no failures tolerated)"
    passed = decide_gate("ring0", [clean("a")])
    assert passed.summary == "all 1 VM(s) installed cleanly and stayed healthy" and passed.counts["notStarted"] == 0
    unsure = decide_gate("ring0", [clean("a"), VmVerdict("b", "ok", "unknown")])
    assert unsure.summary == "1 of 2 VM(s) could not be verified; a person must decide"
    assert decide_gate("ring0", []).summary == "no VMs were verified in this ring"


def test_the_orchestrators_gate_counts_the_vms_it_skipped() -> None:
    """``gate_for`` (orchestrators/verdicts.py) names never-started VMs with the reason the gate
    counts: the wording is the contract between them."""
    plan = load_plan_file(Path(__file__).resolve().parents[3] / "plans" / "default.json").to_dict()
    verdicts = [clean("vm-a").to_dict(), broken("vm-b").to_dict()]
    gate = gate_for(plan, "ring0", verdicts, skipped=["vm-c", "vm-d"])
    assert gate["outcome"] == "fail" and gate["counts"]["notStarted"] == 2
    assert gate["summary"] == "1 of 2 VM(s) failed (no failures tolerated); 2 not started"
