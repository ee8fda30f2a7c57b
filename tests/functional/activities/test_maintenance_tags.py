"""Maintenance activities against the ARM simulator: check-before-act writes, assignments,
manifest pinning, cancellation before/after the cutoff, run results (retag: test_tags.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from activities.maintenance import (
    cancel_run_core,
    collect_run_results_core,
    get_configuration_core,
    pin_manifest_core,
    set_ring_assignment_core,
)
from activities.plan import Plan
from activities.tags import retag_vms_core
from patchrings.clients import AzureClients
from tests.functional.activities.conftest import MC_RING1, PLAN, SUB, SimHandle, vm_id
from tests.ring_inputs import named_ring

pytestmark = pytest.mark.functional


def plan() -> dict[str, Any]:
    return Plan.from_dict(PLAN).to_dict()


def writes(arm: SimHandle, method: str, needle: str) -> int:
    return len(arm.sim.recorder.find(method=method, path_contains=needle))


def test_ring_assignment_create_and_delete(arm: SimHandle, clients: AzureClients) -> None:
    path = f"/subscriptions/{SUB}/providers/Microsoft.Maintenance/configurationAssignments/patchrings-ring1"
    payload = {**named_ring(plan(), "ring1"), "present": True}
    assert set_ring_assignment_core(clients, payload) == {"changed": True, "assignments": [path]}
    assert set_ring_assignment_core(clients, payload)["changed"] is False
    put = arm.sim.recorder.find(method="PUT", path_contains="configurationAssignments/patchrings-ring1")
    assert len(put) == 1
    body = put[0].body["properties"]
    assert body["maintenanceConfigurationId"] == MC_RING1
    assert body["filter"]["tagSettings"] == {"tags": {"ring": ["ring1"]}, "filterOperator": "All"}
    assert body["filter"]["resourceTypes"] == ["Microsoft.Compute/virtualMachines", "Microsoft.HybridCompute/machines"]

    # the dynamic scope now counts in membership: retag a VM to the open value and resolve
    from activities.compute import resolve_ring_members_core

    retag_vms_core(clients, {"vmIds": [vm_id("app-01")], "tag": "ring", "value": "ring1"})
    names = [v["name"] for v in resolve_ring_members_core(clients, {**named_ring(plan(), "ring1")})["vms"]]
    assert names == ["app-01", "app-02"]

    gone = {**named_ring(plan(), "ring1"), "present": False}
    assert set_ring_assignment_core(clients, gone)["changed"] is True
    assert set_ring_assignment_core(clients, gone)["changed"] is False
    assert writes(arm, "DELETE", "configurationAssignments/patchrings-ring1") == 1


def test_pin_manifest_and_get_configuration(arm: SimHandle, clients: AzureClients) -> None:
    manifest = {"windows": {"kbNumbers": ["5034123"]}, "linux": {"packages": ["openssl=3.0.13"]}}
    assert pin_manifest_core(clients, {"configurationId": MC_RING1, "manifest": manifest})["changed"] is True
    assert pin_manifest_core(clients, {"configurationId": MC_RING1.lower(), "manifest": manifest}) == {"changed": False}
    assert writes(arm, "PUT", "maintenanceConfigurations/ring1") == 1
    config = get_configuration_core(clients, {"configurationId": MC_RING1})
    assert config["window"]["recurEvery"] == "Day"
    assert config["window"]["duration"] == "03:00"
    patches = config["installPatches"]
    assert patches["windowsParameters"]["kbNumbersToInclude"] == ["5034123"]
    assert patches["linuxParameters"]["packageNameMasksToInclude"] == ["openssl=3.0.13"]
    assert patches["rebootSetting"] == "IfRequired"


def test_cancel_before_and_after_cutoff(arm: SimHandle, clients: AzureClients) -> None:
    early = arm.sim.fire_run("ring1", arm.clock.now() + timedelta(minutes=45))
    late = arm.sim.fire_run("ring1", arm.clock.now() + timedelta(minutes=5))
    # runs exist from their T-40 on (the late one at once): let the schedule engine create them
    arm.clock.advance_until(lambda: arm.sim.run(early) is not None and arm.sim.run(late) is not None)
    with arm.clock.hold():
        first = cancel_run_core(clients, {"correlationId": early})
        second = cancel_run_core(clients, {"correlationId": early})
        too_late = cancel_run_core(clients, {"correlationId": late})
        missing = cancel_run_core(clients, {"correlationId": MC_RING1 + "/providers/Microsoft.Maintenance/"
                                                                        "applyUpdates/20200101000000"})
    assert first["status"] == "Cancelled"
    # Idempotent either way; AlreadyCancelled needs the run's GET to report Cancelled right after
    # the cancel (the simulator reports it from the run's start on).
    assert second["status"] in ("AlreadyCancelled", "Cancelled")
    assert too_late["status"] == "TooLate", too_late
    assert "CancellationCutoffPassed" in too_late["message"]
    assert missing["status"] == "NotFound", missing
    puts = arm.sim.recorder.find(method="PUT", path_contains="/applyUpdates/")
    assert {p.api_version for p in puts} == {"2023-09-01-preview"}
    assert all(p.body == {"properties": {"status": "Cancel"}} for p in puts)


def test_collect_run_results_after_a_direct_install(arm: SimHandle, clients: AzureClients) -> None:
    from activities.compute import poll_install_core, start_install_core
    from patchrings.ledger import Ledger

    ledger = Ledger.from_clients(clients)
    vm = {"id": vm_id("web-02"), "name": "web-02", "os": "Linux"}
    since = arm.clock.now().isoformat()
    params = {"rebootSetting": "IfRequired", "linuxParameters": {"classificationsToInclude": ["Security"]}}
    started = start_install_core(clients, ledger, {"rolloutId": "r", "ring": "ring0", "runId": "run",
                                                   "vm": vm, "parameters": params})
    assert started["state"] == "started", started
    arm.clock.advance_until(lambda: poll_install_core(clients, ledger, {"runId": "run", "vm": vm,
                                                                         "token": started["token"]})["done"])
    correlation = MC_RING1 + "/providers/microsoft.maintenance/applyupdates/20261117020000"
    results = collect_run_results_core(clients, {"correlationId": correlation, "since": since,
                                                 "vms": [vm, {"id": vm_id("app-01"), "name": "app-01"}]})
    by_name = {r["name"]: r for r in results["results"]}
    assert by_name["web-02"]["state"] == "done"
    assert by_name["web-02"]["result"]["status"] == "Succeeded"
    assert by_name["app-01"]["state"] == "missing" and by_name["app-01"]["result"] is None


def untagged_plan() -> dict[str, Any]:
    return Plan.from_dict({"version": 1, "name": "cfg-only", "rings": [
        PLAN["rings"][0],  # type: ignore[index]
        {"name": "only", "patching": "scheduled", "open": {"mode": "enableConfiguration", "assignmentName": "pr-only"},
         "members": {"maintenanceConfigurationId": MC_RING1}}]}).to_dict()


def test_resource_level_assignments_for_a_ring_without_tag(arm: SimHandle, clients: AzureClients) -> None:
    untagged = untagged_plan()
    with pytest.raises(ValueError, match="subscription-wide"):
        set_ring_assignment_core(clients, {**named_ring(untagged, "only"), "present": True})
    vms = [vm_id("app-01"), vm_id("app-02")]
    payload = {**named_ring(untagged, "only"), "present": True, "vmIds": vms}
    assert set_ring_assignment_core(clients, payload) == {"changed": True, "assignments": vms}
    assert set_ring_assignment_core(clients, payload)["changed"] is False
    assert writes(arm, "PUT", "/providers/Microsoft.Maintenance/configurationAssignments/pr-only") == 2
    assert set_ring_assignment_core(clients, {**payload, "present": False})["changed"] is True
    assert set_ring_assignment_core(clients, {**payload, "present": False})["changed"] is False
    assert writes(arm, "DELETE", "/providers/Microsoft.Maintenance/configurationAssignments/pr-only") == 2


def test_resource_level_assignments_count_as_members(arm: SimHandle, clients: AzureClients) -> None:
    from activities.compute import resolve_ring_members_core

    untagged = untagged_plan()
    vms = [vm_id("app-01"), vm_id("app-02")]
    set_ring_assignment_core(clients, {**named_ring(untagged, "only"), "present": True, "vmIds": vms})
    members = resolve_ring_members_core(clients, {**named_ring(untagged, "only")})["vms"]
    assert [v["name"] for v in members] == ["app-01", "app-02"]
