"""Microsoft.Maintenance through MaintenanceManagementClient: configurations, assignments, applyUpdates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.maintenance import models as m

from tests.emulator.arm.conftest import SUB, base_scenario
from tests.emulator.arm.swagger import example, validate

pytestmark = pytest.mark.emulator

MC_ID = f"/subscriptions/{SUB}/resourcegroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations"


def windows_config(**overrides):
    fields = dict(
        location="westeurope",
        maintenance_scope="InGuestPatch",
        extension_properties={"InGuestPatchMode": "User"},
        start_date_time="2026-11-01 21:00",
        expiration_date_time="9999-12-31 00:00",
        duration="03:55",
        time_zone="W. Europe Standard Time",
        recur_every="Month Second Tuesday Offset4",
        install_patches=m.InputPatchConfiguration(
            reboot_setting="IfRequired",
            windows_parameters=m.InputWindowsParameters(
                classifications_to_include=["Critical", "Security"], kb_numbers_to_include=["5048667"]
            ),
        ),
    )
    fields.update(overrides)
    return m.MaintenanceConfiguration(**fields)


def test_configuration_crud(arm):
    client = arm.maintenance()
    created = client.maintenance_configurations.create_or_update("rg-patching", "mc-ring1", windows_config())
    assert created.id == f"{MC_ID}/mc-ring1"
    assert created.recur_every == "Month Second Tuesday Offset4"
    assert created.install_patches.windows_parameters.kb_numbers_to_include == ["5048667"]
    put = arm.sim.recorder.find(method="PUT")[0]
    assert put.status == 201 and put.api_version == "2023-04-01"
    validate("maintenance", "MaintenanceConfiguration", put.body)
    updated = client.maintenance_configurations.create_or_update(
        "rg-patching", "mc-ring1", windows_config(recur_every="Week Saturday, Sunday", duration="02:00")
    )
    assert updated.recur_every == "Week Saturday, Sunday"
    assert arm.sim.recorder.find(method="PUT")[1].status == 200
    got = client.maintenance_configurations.get("rg-patching", "mc-ring1")
    assert got.duration == "02:00" and got.time_zone == "W. Europe Standard Time"
    names = sorted(c.name for c in client.maintenance_configurations.list())
    assert names == ["mc-ring0", "mc-ring1"]
    client.maintenance_configurations.delete("rg-patching", "mc-ring1")
    with pytest.raises(ResourceNotFoundError):
        client.maintenance_configurations.get("rg-patching", "mc-ring1")
    assert client.maintenance_configurations.delete("rg-patching", "mc-ring1") is None  # 204


def test_configuration_bodies_match_the_swagger_and_example(arm_factory):
    # the official example's 05:00 window exceeds the documented 3h55 Guest limit, so lift it here
    arm = arm_factory(base_scenario(maintenance={"enforceGuestWindowLimits": False}))
    ex = example("maintenance/examples/2025-11-01/MaintenanceConfigurations_GetForResource_GuestOSPatchWindows.json")
    body = ex["responses"]["200"]["body"]
    client = arm.maintenance()
    response = client._send_request(
        HttpRequest(
            "PUT",
            f"{MC_ID}/configuration1",
            params={"api-version": "2025-11-01"},
            json={"location": body["location"], "properties": body["properties"]},
        )
    )
    assert response.status_code == 201
    ours = response.json()
    validate("maintenance", "MaintenanceConfiguration", ours)
    assert ours["properties"]["maintenanceWindow"] == body["properties"]["maintenanceWindow"]
    assert ours["properties"]["installPatches"] == body["properties"]["installPatches"]
    got = client.maintenance_configurations.get("rg-patching", "configuration1")
    assert got.recur_every == "5Days" and got.time_zone == "Pacific Standard Time"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"recur_every": "Month Second Tuesday Offset9"}, "offset must be between -6 and 6"),
        ({"time_zone": "Atlantis Standard Time"}, "timeZone"),
        ({"duration": "05:00"}, "between 01:30 and 03:55"),
        ({"start_date_time": "tomorrow"}, "startDateTime"),
    ],
)
def test_invalid_windows_are_rejected(arm, overrides, fragment):
    with pytest.raises(HttpResponseError) as info:
        arm.maintenance().maintenance_configurations.create_or_update("rg-patching", "bad", windows_config(**overrides))
    assert info.value.status_code == 400
    assert info.value.error.code == "BadRequest"
    assert fragment in info.value.error.message


def test_reboot_setting_both_spellings_and_service_style(arm_factory):
    running = arm_factory(base_scenario(maintenance={"rebootSettingStyle": "service"}))
    client = running.maintenance()
    cfg = windows_config()
    cfg.install_patches.reboot_setting = "RebootIfRequired"
    created = client.maintenance_configurations.create_or_update("rg-patching", "mc-x", cfg)
    assert created.install_patches.reboot_setting == "RebootIfRequired"
    cfg.install_patches.reboot_setting = "Always"
    assert (
        client.maintenance_configurations.create_or_update("rg-patching", "mc-x", cfg).install_patches.reboot_setting
        == "AlwaysReboot"
    )


def test_max_patch_publish_date_is_not_a_configuration_field(arm):
    body = {
        "location": "westeurope",
        "properties": {
            "maintenanceScope": "InGuestPatch",
            "maintenanceWindow": {
                "startDateTime": "2026-11-01 21:00",
                "duration": "02:00",
                "timeZone": "UTC",
                "recurEvery": "Day",
            },
            "installPatches": {
                "rebootSetting": "IfRequired",
                "windowsParameters": {"maxPatchPublishDate": "2026-11-01T00:00:00Z"},
            },
        },
    }
    response = arm.maintenance()._send_request(
        HttpRequest("PUT", f"{MC_ID}/mc-date", params={"api-version": "2025-11-01"}, json=body)
    )
    assert response.status_code == 400 and "maxPatchPublishDate" in response.json()["error"]["message"]


def test_resource_level_assignment(arm):
    client = arm.maintenance()
    assignment = m.ConfigurationAssignment(maintenance_configuration_id=f"{MC_ID}/mc-ring0")
    created = client.configuration_assignments.create_or_update(
        "rg-fleet", "Microsoft.Compute", "virtualMachines", "win-02", "mc-ring0", assignment
    )
    vm_id = f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines/win-02"
    assert created.resource_id == vm_id
    assert created.type == "Microsoft.Maintenance/configurationAssignments"
    put = arm.sim.recorder.find(method="PUT")[0]
    assert put.status == 201
    listed = client.configuration_assignments.list("rg-fleet", "Microsoft.Compute", "virtualMachines", "win-02")
    assert [a.name for a in listed] == ["mc-ring0"]
    in_scope = sorted(vm.name for vm in arm.sim.fleet.assigned_vms(f"{MC_ID}/mc-ring0"))
    assert in_scope == ["lin-01", "win-01", "win-02"]  # ring0 dynamic scope + this assignment
    got = client.configuration_assignments.get("rg-fleet", "Microsoft.Compute", "virtualMachines", "win-02", "mc-ring0")
    assert got.maintenance_configuration_id == f"{MC_ID}/mc-ring0"
    client.configuration_assignments.delete("rg-fleet", "Microsoft.Compute", "virtualMachines", "win-02", "mc-ring0")
    assert sorted(vm.name for vm in arm.sim.fleet.assigned_vms(f"{MC_ID}/mc-ring0")) == ["lin-01", "win-01"]
    with pytest.raises(HttpResponseError) as info:
        client.configuration_assignments.create_or_update(
            "rg-fleet",
            "Microsoft.Compute",
            "virtualMachines",
            "win-02",
            "x",
            m.ConfigurationAssignment(maintenance_configuration_id=f"{MC_ID}/missing"),
        )
    assert info.value.status_code == 400


def test_dynamic_scope_assignment_example_replayed(arm):
    ex = example("maintenance/examples/2025-11-01/ConfigurationAssignmentsForSubscriptions_CreateOrUpdate.json")
    body = ex["parameters"]["configurationAssignment"]
    body["properties"]["maintenanceConfigurationId"] = f"{MC_ID}/mc-ring0"
    client = arm.maintenance()
    response = client._send_request(
        HttpRequest(
            "PUT",
            f"/subscriptions/{SUB}/providers/Microsoft.Maintenance/configurationAssignments/example",
            params={"api-version": "2025-11-01"},
            json=body,
        )
    )
    assert response.status_code == 201
    ours = response.json()
    validate("maintenance", "ConfigurationAssignment", ours)
    expected = ex["responses"]["201"]["body"]
    assert set(ours) >= {"id", "name", "type", "properties"} and ours["type"] == expected["type"]
    assert ours["properties"]["filter"] == expected["properties"]["filter"]
    assert ours["properties"]["resourceId"] == f"/subscriptions/{SUB}"
    # the example's filter matches none of our VMs (other groups and locations)
    assignment = client.configuration_assignments_for_subscriptions.get("example")
    assert assignment.filter.tag_settings.filter_operator == "Any"


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"tagSettings": {"tags": {"patchRing": ["ring1"]}, "filterOperator": "All"}}, ["lin-02", "win-02"]),
        ({"osTypes": ["Linux"], "tagSettings": {"tags": {"patchRing": ["ring1"]}}}, ["lin-02"]),
        ({"tagSettings": {"tags": {"patchRing": ["ring1"], "missing": ["x"]}, "filterOperator": "All"}}, []),
        (
            {"tagSettings": {"tags": {"patchRing": ["ring1"], "missing": ["x"]}, "filterOperator": "Any"}},
            ["lin-02", "win-02"],
        ),
        ({"locations": ["West Europe"], "resourceGroups": ["RG-FLEET"]}, ["lin-01", "lin-02", "win-01", "win-02"]),
        ({"resourceTypes": ["Microsoft.HybridCompute/machines"]}, []),
    ],
)
def test_dynamic_scope_filters(arm, flt, expected):
    client = arm.maintenance()
    client.configuration_assignments_for_subscriptions.create_or_update(
        "ds-test",
        m.ConfigurationAssignment(
            maintenance_configuration_id=f"{MC_ID}/mc-ring0",
            filter=m.ConfigurationAssignmentFilterProperties.from_dict(flt),
        ),
    )
    client.configuration_assignments_for_subscriptions.delete("ds-ring0")
    assert sorted(vm.name for vm in arm.sim.fleet.assigned_vms(f"{MC_ID}/mc-ring0")) == expected


def test_apply_updates_for_a_run_and_a_vm(arm):
    client = arm.maintenance()
    correlation = arm.sim.fire_run("mc-ring0", datetime(2026, 11, 16, 7, 0, tzinfo=UTC))
    assert correlation == f"{MC_ID}/mc-ring0/providers/microsoft.maintenance/applyupdates/20261116070000"
    arm.advance_to(datetime(2026, 11, 16, 6, 25, tzinfo=UTC))
    run = client.apply_updates.get(
        "rg-patching", "Microsoft.Maintenance", "maintenanceConfigurations", "mc-ring0", "20261116070000"
    )
    assert run.status == "Pending" and run.resource_id == f"{MC_ID}/mc-ring0"
    arm.advance_until(lambda: arm.sim.run(correlation).status == "Completed")
    run = client.apply_updates.get(
        "rg-patching", "Microsoft.Maintenance", "maintenanceConfigurations", "mc-ring0", "20261116070000"
    )
    assert run.status == "Completed"
    per_vm = client.apply_updates.get("rg-fleet", "Microsoft.Compute", "virtualMachines", "win-01", "20261116070000")
    assert per_vm.status == "Completed"
    response = client._send_request(
        HttpRequest(
            "GET",
            f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines/win-01"
            "/providers/Microsoft.Maintenance/applyUpdates/20261116070000",
            params={"api-version": "2025-11-01"},
        )
    )
    body = response.json()
    validate("maintenance", "ApplyUpdate", body)
    # only the swagger's ApplyUpdate fields (no correlationId, dates or error: AUM's record has none)
    assert set(body) == {"id", "name", "type", "properties"}
    assert set(body["properties"]) == {"status", "resourceId", "lastUpdateTime"}
    assert body["properties"]["resourceId"].lower().endswith("/virtualmachines/win-01")
    listed = [u.name for u in client.apply_updates.list()]
    assert listed.count("20261116070000") == 2  # win-01 and lin-01 (ring0)
    with pytest.raises(ResourceNotFoundError):
        client.apply_updates.get("rg-fleet", "Microsoft.Compute", "virtualMachines", "win-02", "20261116070000")


def test_resource_group_level_operations(arm):
    client = arm.maintenance()
    assignment = client.configuration_assignments_for_resource_group.create_or_update(
        "rg-fleet",
        "rg-wide",
        m.ConfigurationAssignment(
            maintenance_configuration_id=f"{MC_ID}/mc-ring0",
            filter=m.ConfigurationAssignmentFilterProperties(os_types=["Linux"]),
        ),
    )
    assert assignment.resource_id == f"/subscriptions/{SUB}/resourceGroups/rg-fleet"
    assert sorted(vm.name for vm in arm.sim.fleet.assigned_vms(f"{MC_ID}/mc-ring0")) == ["lin-01", "lin-02", "win-01"]
    got = client.configuration_assignments_for_resource_group.get("rg-fleet", "rg-wide")
    assert got.filter.os_types == ["Linux"]
    client.configuration_assignments_for_resource_group.delete("rg-fleet", "rg-wide")
    assert [c.name for c in client.maintenance_configurations_for_resource_group.list("rg-patching")] == ["mc-ring0"]
    assert list(client.maintenance_configurations_for_resource_group.list("rg-fleet")) == []
    assert list(client.apply_update_for_resource_group.list("rg-fleet")) == []
    within = [a.name for a in client.configuration_assignments_within_subscription.list()]
    assert within == ["ds-ring0"]
    client.configuration_assignments.create_or_update(
        "rg-fleet",
        "Microsoft.Compute",
        "virtualMachines",
        "lin-02",
        "vm-level",
        m.ConfigurationAssignment(maintenance_configuration_id=f"{MC_ID}/mc-ring0"),
    )
    within = {a.name: a.resource_id for a in client.configuration_assignments_within_subscription.list()}
    assert within == {
        "ds-ring0": f"/subscriptions/{SUB}",
        "vm-level": f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines/lin-02",
    }


def test_list_all_status_only(arm):
    vms = list(arm.compute().virtual_machines.list_all(status_only="true"))
    assert all(vm.instance_view.statuses[1].code == "PowerState/running" for vm in vms)
