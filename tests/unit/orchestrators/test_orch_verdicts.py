"""Glue between orchestrator JSON and the domain: verdicts, gates, install parameters, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrators import plan_view
from orchestrators.inbox import RunEvent
from orchestrators.verdicts import (
    build_manifest_dict,
    decision_deadline,
    gate_for,
    install_parameters,
    promotion_target,
    verdict_ok,
    verdicts_for,
)
from orchestrators.wave import install_parameters_for
from patchrings.domain.health import HealthState
from patchrings.domain.plan import load_plan_file

pytestmark = pytest.mark.unit

PLAN = load_plan_file(Path(__file__).resolve().parents[3] / "plans" / "default.json").to_dict()
T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)


def vm(name: str, os_name: str = "Windows") -> dict:
    return {"id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}",
            "name": name, "os": os_name}


def ok_result(kb: str = "5048667") -> dict:
    return {"status": "Succeeded", "installedPatchCount": 1, "failedPatchCount": 0, "pendingPatchCount": 0,
            "rebootStatus": "Completed", "maintenanceWindowExceeded": False,
            "patches": [{"kbId": kb, "name": "CU", "installationState": "Installed"}]}


def healthy() -> HealthState:
    return HealthState(phase="done", outcome="healthy", reasons=(), next_check_at=None, started_at=T0)


def test_verdicts_cover_every_install_state() -> None:
    vms = [vm("a"), vm("b"), vm("c"), vm("d"), vm("e")]
    installs = [
        {"vm": vms[0]["id"], "state": "done", "result": ok_result()},
        {"vm": vms[1]["id"], "state": "refused", "result": None, "error": {"code": "Conflict", "message": "busy"}},
        {"vm": vms[2]["id"], "state": "timeout", "result": None, "error": None},
        {"vm": vms[3]["id"], "state": "not-needed", "result": None},
    ]
    health = {vms[0]["id"]: healthy(), vms[3]["id"]: healthy()}
    verdicts = {v["name"]: v for v in verdicts_for(PLAN, "ring0", vms, installs, health)}
    assert verdicts["a"]["outcome"] == "pass"
    assert verdicts["b"]["outcome"] == "fail" and "busy" in verdicts["b"]["reasons"][0]
    assert verdicts["c"]["outcome"] == "inconclusive"
    assert verdicts["d"]["outcome"] == "pass"
    assert verdicts["e"]["outcome"] == "inconclusive"  # no install outcome at all
    assert [verdict_ok(verdicts[n]) for n in "abcde"] == [True, False, True, True, True]


def test_gate_fails_on_any_failure_and_names_skipped_vms() -> None:
    vms = [vm("a"), vm("b")]
    installs = [{"vm": vms[0]["id"], "state": "done", "result": ok_result()},
                {"vm": vms[1]["id"], "state": "refused", "result": None, "error": None}]
    verdicts = verdicts_for(PLAN, "ring0", vms, installs, {vms[0]["id"]: healthy()})
    gate = gate_for(PLAN, "ring0", verdicts, skipped=["vm-c"])
    assert gate["outcome"] == "fail"
    assert {"vm": "vm-c", "reason": "not started: the ring's error budget (maxErrors) was exceeded"} in gate["reasons"]
    clean = gate_for(PLAN, "ring0", verdicts[:1])
    assert clean["outcome"] == "pass"


def test_ring0_parameters_pin_windows_to_the_rollout_start() -> None:
    base = plan_view.effective(PLAN, "ring0", "install")
    params = install_parameters(base, "2026-11-16T06:00:00Z", None)
    assert params["Windows"]["windowsParameters"]["maxPatchPublishDate"] == "2026-11-16T06:00:00Z"
    assert "linuxParameters" not in params["Windows"] and "windowsParameters" not in params["Linux"]
    assert install_parameters_for({"os": "windows"}, params) is params["Windows"]
    assert install_parameters_for({"os": "Solaris"}, params) is None


def test_later_rings_install_exactly_the_manifest() -> None:
    results = [{"vm": vm("a")["id"], "os": "Windows", "result": ok_result("5048667")},
               {"vm": vm("l", "Linux")["id"], "os": "Linux",
                "result": {**ok_result(), "patches": [{"name": "openssl", "version": "3.0.2", "kbId": None,
                                                       "installationState": "Installed"}]}}]
    manifest = build_manifest_dict(results, [])
    params = install_parameters(plan_view.effective(PLAN, "ring1", "install"), "2026-11-16T06:00:00Z", manifest)
    assert params["Windows"]["windowsParameters"]["kbNumbersToInclude"] == ["5048667"]
    assert "maxPatchPublishDate" not in params["Windows"]["windowsParameters"]
    assert params["Linux"]["linuxParameters"]["packageNameMasksToInclude"] == ["openssl=3.0.2"]
    windows_only = build_manifest_dict(results[:1], [])
    assert install_parameters({}, None, windows_only)["Linux"] is None  # nothing pinned: install nothing


def test_decision_deadline_is_min_of_cutoff_and_t10_minus_margin() -> None:
    late_cutoff = RunEvent.from_payload({"kind": "pre", "correlationId": "c", "maintenanceConfigurationId": "m",
                                         "startDateTime": "2026-11-16T12:00:00Z",
                                         "cancellationCutOffDateTime": "2026-11-16T11:59:00Z"})
    early_cutoff = RunEvent.from_payload({"kind": "pre", "correlationId": "c", "maintenanceConfigurationId": "m",
                                          "startDateTime": "2026-11-16T12:00:00Z",
                                          "cancellationCutOffDateTime": "2026-11-16T11:30:00Z"})
    assert late_cutoff is not None and early_cutoff is not None
    margin = timedelta(minutes=2)
    assert decision_deadline(late_cutoff, margin) == datetime(2026, 11, 16, 11, 48, tzinfo=UTC)
    assert decision_deadline(early_cutoff, margin) == datetime(2026, 11, 16, 11, 28, tzinfo=UTC)


def test_promotion_targets_the_following_run_when_t40_is_missed() -> None:
    window = {"startDateTime": "2026-11-01 12:00", "duration": "03:55", "timeZone": "UTC", "recurEvery": "Day"}
    early = promotion_target(window, datetime(2026, 11, 16, 9, 0, tzinfo=UTC), timedelta(minutes=5))
    assert early["meetsT40"] is True and early["runStart"] == "2026-11-16T12:00:00Z"
    late = promotion_target(window, datetime(2026, 11, 16, 11, 30, tzinfo=UTC), timedelta(minutes=5))
    assert late["meetsT40"] is False and late["runStart"] == "2026-11-17T12:00:00Z"
    assert "too late" in late["reason"]
    assert promotion_target({}, T0, timedelta(0)) == {}
