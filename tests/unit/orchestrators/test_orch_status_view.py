"""The API's view of a rollout (issue 9): phase texts, moving counts, short names, manifest contents."""

from __future__ import annotations

import pytest

from orchestrators.status import RolloutStatus, manifest_details, manifest_view, phase_text, ring_view, vm_row

pytestmark = pytest.mark.unit

VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web-1"
ARC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/onprem-1"


def test_vm_rows_have_a_short_name_the_full_id_and_gate_reasons() -> None:
    row = vm_row({"vm": VM, "state": "done", "result": {"status": "Succeeded", "installed": ["KB1"]},
                  "verdict": {"vm": VM, "install": "ok", "health": "unhealthy", "outcome": "fail",
                              "reasons": ["became unhealthy during healthyStateDuration"]}})
    assert (row["name"], row["id"], row["kind"]) == ("web-1", VM, "vm")
    assert row["outcome"] == "fail" and row["reasons"] == ["became unhealthy during healthyStateDuration"]
    assert vm_row({"vm": ARC})["kind"] == "arc" and vm_row({"vm": ARC})["outcome"] == "pending"


def test_counts_move_while_a_wave_runs_and_include_vms_not_started() -> None:
    ring = {"name": "ring0", "phase": "installing", "counts": {}, "gate": None}
    finished = [{"vm": f"{VM}{i}", "verdict": {"outcome": "pass"}} for i in range(3)]
    progress = {"wave": 2, "waves": 4, "vms": 10, "inFlight": 3, "installing": 2, "verifying": 1,
                "step": "polling", "skipped": 0}
    view = ring_view(ring, finished, progress, current=True)
    assert view["phaseText"] == "installing wave 2 of 4: polling"
    assert view["counts"] == {"vms": 10, "passed": 3, "failed": 0, "inconclusive": 0, "installing": 2,
                              "verifying": 1, "inFlight": 3, "skipped": 0, "finished": 3, "notStarted": 4}
    assert [v["name"] for v in view["vms"]] == ["web-10", "web-11", "web-12"]


def test_stay_healthy_and_approval_say_until_when() -> None:
    ring = {"name": "ring0", "phase": "installing"}
    progress = {"wave": 1, "waves": 1, "step": "verifying", "healthPhase": "stayHealthy",
                "until": "2026-11-16T07:15:00Z"}
    assert phase_text(ring, progress) == "installing wave 1 of 1: stay-healthy until 2026-11-16T07:15:00Z"
    st = RolloutStatus.new(rollout_id="ro-1", plan={"rings": [{"name": "ring1"}]}, initiator=None,
                           started_at="2026-11-16T06:00:00Z", dry_run=False)
    st.set_phase("ring1", "awaiting-approval", "2026-11-16T07:00:00Z", until="2026-11-17T07:00:00Z")
    assert phase_text(st.ring("ring1")) == "waiting for approval until 2026-11-17T07:00:00Z"
    st.set_phase("ring1", "promoting", "2026-11-16T08:00:00Z")
    assert "until" not in st.ring("ring1")  # a phase's deadline does not outlive it
    halted = ring_view({"name": "ring1", "phase": "awaiting-approval", "until": "2026-11-17T07:00:00Z"}, [],
                       halted=True, current=True)
    assert (halted["phase"], halted["phaseText"], halted["until"]) == ("halted", "halted", None)


def test_manifest_view_lists_kbs_with_titles_and_classifications() -> None:
    manifest = {"windows": {"kbNumbers": ["5044284"]}, "linux": {"packages": ["openssl=3.0.13-1"]}, "hash": "h1"}
    results = [{"vm": VM, "result": {"patches": [
        {"kbId": "5044284", "name": "2026-11 Cumulative Update", "classifications": ["Security"],
         "installationState": "Installed"},
        {"name": "openssl", "version": "3.0.13-1", "classifications": ["Security"], "installationState": "Installed"},
        {"kbId": "999", "name": "not in the manifest", "classifications": ["Updates"]}]}}]
    manifest["details"] = manifest_details(results, manifest)
    view = manifest_view(manifest)
    assert view is not None
    assert view["windows"] == [{"kb": "KB5044284", "title": "2026-11 Cumulative Update",
                                "classifications": ["Security"]}]
    assert view["linux"] == [{"package": "openssl=3.0.13-1", "classifications": ["Security"]}]
    assert manifest_view(None, {"hash": "h2", "windowsKbs": ["1"], "linuxPackages": []})["windows"] == [{"kb": "KB1"}]
