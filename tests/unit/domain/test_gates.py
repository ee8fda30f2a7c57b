"""Install-result classification and gate decisions, including inconclusive → person."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from patchrings.domain.gates import GateDecision, VmVerdict, decide_gate, vm_verdict
from patchrings.domain.health import HealthPolicy, HealthTracker, InstallRules
from patchrings.domain.plan import load_plan_file
from patchrings.domain.rate import RateControl
from patchrings.domain.results import classify_install
from tests.contracts import CONTRACTS as SHARED_CONTRACTS

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
CONTRACTS = SHARED_CONTRACTS / "compute" / "examples"


def result(**kw):
    base = {"status": "Succeeded", "rebootStatus": "Completed", "maintenanceWindowExceeded": False,
            "installedPatchCount": 3, "failedPatchCount": 0, "pendingPatchCount": 0, "error": None,
            "patches": [{"kbId": str(5034120 + i), "installationState": "Installed"} for i in range(3)]}
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("res", "rules", "outcome", "fragment"),
    [
        (result(), {}, "ok", None),
        (result(rebootStatus="NotNeeded"), {}, "ok", None),
        (result(status="Failed", error={"code": "PatchInstallFailed", "message": "boom"}), {}, "failed",
         "PatchInstallFailed: boom"),
        (result(failedPatchCount=1), {}, "failed", "1 patch(es) failed"),
        (result(rebootStatus="Failed"), {}, "failed", "reboot failed"),
        (result(maintenanceWindowExceeded=True), {}, "failed", "maintenance window exceeded"),
        (result(maintenanceWindowExceeded=True), {"allowMaintenanceWindowExceeded": True}, "ok", None),
        (result(rebootStatus="Required"), {}, "failed", "reboot required"),
        (result(rebootStatus="Required"), {"requireRebootCompleted": False}, "ok", None),
        (result(rebootStatus="Started"), {}, "inconclusive", "cannot confirm"),
        (result(status="InProgress"), {}, "inconclusive", "still InProgress"),
        (result(status="Unknown"), {}, "inconclusive", "cannot be judged"),
        (result(status="CompletedWithWarnings"), {}, "inconclusive", "warnings"),
        (result(status="CompletedWithWarnings"), {"allowWarnings": True}, "ok", None),
        (result(pendingPatchCount=2), {}, "inconclusive", "2 patch(es) still pending"),
        (result(pendingPatchCount=2), {"allowPending": True}, "ok", None),
        (result(error={"code": "X", "message": "odd"}), {}, "inconclusive", "an error was reported"),
        (None, {}, "inconclusive", "no installation result"),
        ({"Status": "succeeded", "RebootStatus": "completed", "Patches": []}, {}, "ok", None),  # casing tolerated
        # issue 13.7: an instance-view summary (no patches, no reboot state) never passes
        ({"status": "Succeeded", "maintenanceWindowExceeded": False}, {}, "inconclusive", "no per-patch detail"),
        ({"status": "Succeeded", "maintenanceWindowExceeded": False}, {}, "inconclusive", "reboot state not reported"),
        (result(source="instanceView", patches=[]), {}, "inconclusive", "Resource Graph"),
        (result(rebootStatus="Unknown"), {}, "inconclusive", "requireRebootCompleted cannot be confirmed"),
        (result(rebootStatus="Unknown"), {"requireRebootCompleted": False}, "ok", None),
        (result(patches=[], installedPatchCount=0), {}, "ok", None),  # nothing applicable: a real, empty list
    ],
)
def test_classify_install(res, rules, outcome, fragment):
    v = classify_install(res, InstallRules.from_dict(rules))
    assert v.outcome == outcome
    if fragment:
        assert any(fragment in r for r in v.reasons), v.reasons
    else:
        assert v.reasons == ()


def test_failure_wins_over_inconclusive_signals():
    v = classify_install(result(status="CompletedWithWarnings", failedPatchCount=2))
    assert v.outcome == "failed"
    assert any("warnings" in r for r in v.reasons)


def test_contract_example_result_is_judged_by_plan_rules():
    doc = json.loads((CONTRACTS / "2025-11-01" / "VirtualMachine_InstallPatches.json").read_text())
    body = doc["responses"]["200"]["body"]
    assert classify_install(body, InstallRules()).outcome == "inconclusive"  # 2 pending
    assert classify_install(body, InstallRules(allow_pending=True)).outcome == "ok"


def healthy_state():
    policy = HealthPolicy.from_dict({"phases": {"waitDuration": "PT0S", "healthyStateDuration": "PT0S"}})
    t = HealthTracker(policy, datetime(2026, 1, 1, tzinfo=UTC))
    return t.observe(datetime(2026, 1, 1, tzinfo=UTC), {"powerState": "running", "vmAgent": "ready"})


def test_vm_verdict_folds_install_and_health():
    ok = vm_verdict({"id": "vm1", "name": "one"}, result(), healthy_state())
    assert (ok.install, ok.health, ok.outcome, ok.name) == ("ok", "healthy", "pass", "one")
    bad = vm_verdict("vm2", result(failedPatchCount=1), None)
    assert (bad.install, bad.health, bad.outcome) == ("failed", "skipped", "fail")
    unverified = vm_verdict("vm3", result(), None)
    assert unverified.outcome == "inconclusive" and "health: not checked" in unverified.reasons
    running = HealthTracker(HealthPolicy(), datetime(2026, 1, 1, tzinfo=UTC)).state
    assert vm_verdict("vm4", result(), running).health == "unknown"
    assert vm_verdict("vm5", result(), "unhealthy").outcome == "fail"
    assert VmVerdict.from_dict(ok.to_dict()) == ok


def v(vm, install="ok", health="healthy"):
    return VmVerdict(vm, install, health, () if (install, health) == ("ok", "healthy") else (f"{install}/{health}",))


def test_gate_passes_only_when_every_vm_is_clean():
    d = decide_gate("ring0", [v("a"), v("b")])
    assert d.outcome == "pass" and d.passed and d.counts["passed"] == 2 and d.reasons == ()


def test_gate_fails_on_any_failure_without_tolerance():
    d = decide_gate("ring0", [v("a"), v("b", install="failed", health="skipped")])
    assert d.outcome == "fail"
    assert d.reasons == ({"vm": "b", "reason": "failed/skipped"},)
    assert "no failures tolerated" in d.summary


def test_gate_fails_on_unhealthy_even_if_install_ok():
    assert decide_gate("r", [v("a"), v("b", health="unhealthy")]).outcome == "fail"


def test_gate_inconclusive_when_signals_missing_never_passes():
    d = decide_gate("ring0", [v("a"), v("b", health="unknown")])
    assert d.outcome == "inconclusive" and not d.passed
    assert "a person must decide" in d.summary
    d2 = decide_gate("ring0", [v("a"), v("b", install="inconclusive")])
    assert d2.outcome == "inconclusive"


def test_failure_beats_inconclusive():
    assert decide_gate("r", [v("a", health="unknown"), v("b", install="failed")]).outcome == "fail"


def test_empty_ring_is_inconclusive():
    assert decide_gate("r", []).outcome == "inconclusive"


def test_tolerated_failures_within_max_errors_pass():
    rate = RateControl.from_dict({"maxConcurrency": 2, "maxErrors": "25%"})  # floor(25% of 8) = 2
    vs = [v(f"vm{i}") for i in range(6)] + [v("x", install="failed"), v("y", health="unhealthy")]
    d = decide_gate("ring0", vs, rate, tolerate_errors=True)
    assert d.outcome == "pass" and d.counts["errorBudget"] == 2 and len(d.reasons) == 2
    d3 = decide_gate("ring0", [*vs, v("z", install="failed")], rate, tolerate_errors=True)
    assert d3.outcome == "fail" and d3.counts["errorBudget"] == 2  # 3 > floor(25% of 9) = 2


def test_gate_uses_ring_settings_and_extra_reasons():
    plan = load_plan_file(REPO / "plans" / "default.json")
    ring = plan.ring("ring0")
    d = decide_gate(ring, [v("a")], extra_reasons=[{"vm": "*", "reason": "2 VMs never started"}])
    assert d.ring == "ring0" and d.outcome == "inconclusive"
    assert GateDecision.from_dict(d.to_dict()) == d


def test_health_phase_timing_example_feeds_gate():
    policy = HealthPolicy.from_dict({"phases": {"waitDuration": "PT1M", "elasticDuration": "PT2M",
                                                "healthyStateDuration": "PT1M", "pollInterval": "PT1M"}})
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t = HealthTracker(policy, t0)
    for m in (1, 2, 3):
        st = t.observe(t0 + timedelta(minutes=m), {"powerState": "stopped", "vmAgent": "ready"})
    assert st.outcome == "unhealthy"
    assert decide_gate("r", [vm_verdict("vm1", result(), st)]).outcome == "fail"
