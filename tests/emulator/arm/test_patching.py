"""installPatches / assessPatches LROs and the patch world, through ComputeManagementClient."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap

import pytest
from azure.core.exceptions import HttpResponseError

from tests.emulator.arm.conftest import SUB, base_scenario
from tests.emulator.arm.swagger import example, validate

pytestmark = pytest.mark.emulator

WIN_ALL = {"rebootSetting": "IfRequired", "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]}}
LIN_ALL = {"rebootSetting": "IfRequired", "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]}}


def install(arm, vm, params, **kwargs):
    poller = arm.compute().virtual_machines.begin_install_patches("rg-fleet", vm, params, **kwargs)
    return arm.lro(poller)


def raw_result(arm, vm):
    """The last install result body as the simulator sent it (for schema validation)."""
    op = next(o for o in reversed(list(arm.sim.operations.values())) if arm.sim.fleet.vm(o.vm_id).name == vm)
    return op.result


def states(result):
    return {(p.kb_id or p.name + "=" + p.version): p.installation_state for p in result.patches}


def test_install_lro_protocol_and_result_shape(arm):
    start = arm.now()
    result = install(arm, "win-01", WIN_ALL)
    assert result.status == "Succeeded"
    assert result.installed_patch_count == 2 and result.not_selected_patch_count == 1
    assert result.reboot_status == "Completed"  # the cumulative update always reboots
    assert result.maintenance_window_exceeded is False
    assert states(result) == {"5048667": "Installed", "5048654": "Installed", "2267602": "NotSelected"}
    assert result.start_date_time == start
    validate("compute", "VirtualMachineInstallPatchesResult", raw_result(arm, "win-01"))
    # 30 + 5 minutes of patches + 5 minutes of reboot, all in simulated time
    assert (arm.now() - start).total_seconds() == 40 * 60
    post = arm.sim.recorder.find(method="POST")[0]
    assert post.status == 202 and post.action == "Microsoft.Compute/virtualMachines/installPatches/action"
    validate("compute", "VirtualMachineInstallPatchesParameters", post.body)
    polls = arm.sim.recorder.find(path_contains="/locations/westeurope/")
    assert [p.operation for p in polls][-1] == "compute.operation_result"
    assert polls[-1].status == 200
    iv = arm.compute().virtual_machines.instance_view("rg-fleet", "win-01")
    summary = iv.patch_status.last_patch_installation_summary
    assert summary.status == "Succeeded" and summary.installed_patch_count == 2
    assert summary.installation_activity_id == result.installation_activity_id
    assert iv.patch_status.available_patch_summary.critical_and_security_patch_count == 0


def test_lro_headers_follow_the_checklist(arm):
    from azure.core.rest import HttpRequest

    client = arm.compute()
    path = f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines/lin-01"
    response = client.send_request(
        HttpRequest("POST", path + "/installPatches", params={"api-version": "2026-04-01"}, json=LIN_ALL)
    )
    assert response.status_code == 202
    assert int(response.headers["Retry-After"]) >= 1
    async_url, location = response.headers["Azure-AsyncOperation"], response.headers["Location"]
    assert async_url.startswith(arm.sim.endpoint) and location.startswith(arm.sim.endpoint)
    status = client.send_request(HttpRequest("GET", async_url))
    assert status.json()["status"] == "InProgress"
    assert client.send_request(HttpRequest("GET", location)).status_code == 202
    # a second install while one runs is refused like Azure does
    second = client.send_request(
        HttpRequest("POST", path + "/installPatches", params={"api-version": "2026-04-01"}, json=LIN_ALL)
    )
    assert second.status_code == 409 and second.json()["error"]["code"] == "Conflict"
    arm.advance_until(lambda: client.send_request(HttpRequest("GET", async_url)).json()["status"] == "Succeeded")
    final = client.send_request(HttpRequest("GET", location))
    assert final.status_code == 200 and final.json()["status"] == "Succeeded"
    validate("compute", "VirtualMachineInstallPatchesResult", final.json())


def test_second_install_conflict_through_sdk(arm):
    client = arm.compute()
    first = client.virtual_machines.begin_install_patches("rg-fleet", "win-02", WIN_ALL)
    with pytest.raises(HttpResponseError) as info:
        client.virtual_machines.begin_install_patches("rg-fleet", "win-02", WIN_ALL)
    assert info.value.status_code == 409 and info.value.error.code == "Conflict"
    assert arm.lro(first).status == "Succeeded"
    assert install(arm, "win-02", WIN_ALL).installed_patch_count == 0  # allowed again afterwards


def test_continuation_token_resumes_in_another_process(arm):
    poller = arm.compute().virtual_machines.begin_install_patches("rg-fleet", "lin-02", LIN_ALL)
    token = poller.continuation_token()
    document = json.loads(base64.b64decode(token))
    assert "Location" in json.dumps(document)
    arm.lro(poller)
    script = textwrap.dedent(
        f"""
        import sys
        from azure.core.credentials import AccessToken
        from azure.mgmt.compute import ComputeManagementClient

        class Cred:
            def get_token(self, *s, **k):
                return AccessToken({arm.sim.token!r}, 4102444800)

        client = ComputeManagementClient(Cred(), {SUB!r}, base_url={arm.sim.endpoint!r},
                                         connection_verify={str(arm.sim.ca_path)!r})
        poller = client.virtual_machines.begin_install_patches("rg-fleet", "lin-02", None,
                                                               continuation_token={token!r})
        result = poller.result()
        print(result.status == "Succeeded", result.installed_patch_count)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True", "2"]  # curl + the newest openssl
    assert len(arm.sim.recorder.find(method="POST")) == 1  # resumed without re-POSTing


def test_assess_patches(arm):
    poller = arm.compute().virtual_machines.begin_assess_patches("rg-fleet", "lin-01")
    result = arm.lro(poller)
    assert result.status == "Succeeded"
    assert result.critical_and_security_patch_count == 3 and result.other_patch_count == 1
    names = sorted((p.name, p.version) for p in result.available_patches)
    assert ("openssl", "3.0.2-0ubuntu1.19") in names
    op = next(iter(arm.sim.operations.values()))
    validate("compute", "VirtualMachineAssessPatchesResult", op.result)


def test_windows_selection_parameters(arm):
    params = {
        "rebootSetting": "Never",
        "windowsParameters": {
            "classificationsToInclude": ["Security", "Critical"],
            "kbNumbersToExclude": ["KB5048654"],
            "kbNumbersToInclude": ["2267602"],
            "maxPatchPublishDate": "2026-11-15T00:00:00.0000000+00:00",
        },
    }
    result = install(arm, "win-01", params)
    assert states(result) == {"5048667": "Installed", "5048654": "Excluded", "2267602": "Installed"}
    assert result.reboot_status == "Required"  # never reboot, but the CU needs one
    assert result.excluded_patch_count == 1


def test_windows_max_publish_date_and_name_masks(arm):
    params = {
        "rebootSetting": "IfRequired",
        "windowsParameters": {
            "classificationsToInclude": ["Critical", "Security", "Definition"],
            "maxPatchPublishDate": "2026-11-12T00:00:00Z",
            "patchNameMasksToExclude": ["*Servicing*"],
        },
    }
    result = install(arm, "win-02", params)
    assert states(result) == {"5048667": "Installed", "5048654": "Excluded", "2267602": "NotSelected"}


def test_linux_package_pinning(arm):
    params = {
        "rebootSetting": "IfRequired",
        "linuxParameters": {"packageNameMasksToInclude": ["openssl=3.0.2-0ubuntu1.18"]},
    }
    result = install(arm, "lin-01", params)
    assert states(result) == {
        "openssl=3.0.2-0ubuntu1.18": "Installed",
        "openssl=3.0.2-0ubuntu1.19": "NotSelected",
        "curl=7.81.0-1ubuntu1.19": "NotSelected",
        "tzdata=2026a": "NotSelected",
    }
    result = install(
        arm,
        "lin-02",
        {**LIN_ALL, "linuxParameters": {**LIN_ALL["linuxParameters"], "packageNameMasksToExclude": ["curl"]}},
    )
    assert states(result)["curl=7.81.0-1ubuntu1.19"] == "Excluded"
    assert states(result)["openssl=3.0.2-0ubuntu1.19"] == "Installed"
    assert states(result)["openssl=3.0.2-0ubuntu1.18"] == "NotSelected"  # the newest version wins


def test_linux_masks_follow_the_patch_extension(arm):
    """Azure/LinuxPatchExtension PackageFilter: an exclusion's version part is ignored (every
    version of the package is excluded), masks are case-sensitive, a mask with two '=' is
    ignored; inclusions pin versions."""
    result = install(arm, "lin-01", {**LIN_ALL, "linuxParameters": {
        **LIN_ALL["linuxParameters"], "packageNameMasksToExclude": ["openssl=3.0.2-0ubuntu1.18"]}})
    assert states(result)["openssl=3.0.2-0ubuntu1.19"] == "Excluded"
    assert states(result)["openssl=3.0.2-0ubuntu1.18"] == "Excluded"
    result = install(arm, "lin-02", {"rebootSetting": "IfRequired", "linuxParameters": {
        "packageNameMasksToInclude": ["OpenSSL", "curl=7.81.0-1ubuntu1.19=x"]}})
    assert {k: v for k, v in states(result).items() if v != "NotSelected"} == {}


def test_maximum_duration_leaves_patches_pending(arm):
    # PT40M minus the 10 min Windows reboot reserve leaves 30 min: the 30-min CU fits, nothing after it
    result = install(arm, "win-01", {**WIN_ALL, "maximumDuration": "PT40M"})
    assert result.maintenance_window_exceeded is True
    assert result.status == "CompletedWithWarnings"
    assert states(result) == {"5048667": "Installed", "5048654": "Pending", "2267602": "NotSelected"}
    assert result.pending_patch_count == 1


@pytest.mark.parametrize(
    ("params", "target"),
    [
        ({"windowsParameters": {}}, "rebootSetting"),
        ({"rebootSetting": "Sometimes", "windowsParameters": {}}, "rebootSetting"),
        ({"rebootSetting": "IfRequired", "maximumDuration": "4 hours", "windowsParameters": {}}, "maximumDuration"),
        ({"rebootSetting": "IfRequired", "linuxParameters": {}}, "windowsParameters"),
    ],
)
def test_invalid_parameters(arm, params, target):
    with pytest.raises(HttpResponseError) as info:
        arm.compute().virtual_machines.begin_install_patches("rg-fleet", "win-01", params)
    assert info.value.status_code == 400
    assert info.value.error.code == "InvalidParameter" and info.value.error.target == target


def test_official_install_example_replayed(arm_factory):
    ex = example("compute/examples/2025-11-01/VirtualMachine_InstallPatches.json")
    scenario = base_scenario()
    scenario["catalog"]["windows"] = [
        {
            "kb": "2267602",
            "name": "Definition Update for SQL Server",
            "classification": "Security",
            "published": "2020-11-01T00:00:00Z",
            "minutes": 1,
        },
        {
            "kb": "4052623",
            "name": "SQL Server 2019 CU8",
            "classification": "Critical",
            "published": "2020-11-10T00:00:00Z",
            "minutes": 10,
            "reboot": "CanRequestReboot",
        },
        {
            "kb": "5001000",
            "name": "Windows Cumulative Update",
            "classification": "Security",
            "published": "2020-11-10T00:00:00Z",
            "minutes": 10,
        },
        {
            "kb": "5002000",
            "name": "SQL Server 2022 CU",
            "classification": "Security",
            "published": "2020-12-10T00:00:00Z",
            "minutes": 10,
        },
    ]
    running = arm_factory(scenario)
    params = ex["parameters"]["installPatchesInput"]
    result = install(running, "win-01", params, api_version=ex["parameters"]["api-version"])
    body = raw_result(running, "win-01")
    validate("compute", "VirtualMachineInstallPatchesResult", body)
    assert set(body) == set(ex["responses"]["200"]["body"])
    assert states(result) == {
        "2267602": "Installed",
        "4052623": "Installed",
        "5001000": "Excluded",
        "5002000": "NotSelected",
    }
    assert running.sim.recorder.find(method="POST")[0].api_version == "2025-11-01"


def test_official_instance_view_and_get_examples_validate_our_bodies(arm):
    from emulator.arm.compute import instance_view, vm_body

    vm = arm.sim.vm("win-01")
    install(arm, "win-01", WIN_ALL)
    ours = arm.call(lambda: instance_view(arm.sim.backends.compute, vm))
    validate("compute", "VirtualMachineInstanceView", ours)
    theirs = example("compute/examples/2026-04-01/VirtualMachine_Get_InstanceView.json")["responses"]["200"]["body"]
    assert set(theirs["patchStatus"]) == set(ours["patchStatus"])
    assert set(theirs["patchStatus"]["lastPatchInstallationSummary"]) == set(
        ours["patchStatus"]["lastPatchInstallationSummary"]
    )
    body = arm.call(lambda: vm_body(arm.sim.backends.compute, vm, expand_instance_view=True))
    validate("compute", "VirtualMachine", body)
    get = example("compute/examples/2026-04-01/VirtualMachine_Get.json")["responses"]["200"]["body"]
    assert {"name", "id", "type", "location", "tags", "properties"} <= set(get) & set(body)


def test_deallocated_and_agent_not_ready_are_refused(arm_factory):
    scenario = base_scenario(
        faults=[{"type": "deallocated", "vms": ["win-02"]}, {"type": "vmAgentNotReady", "vms": ["lin-02"]}]
    )
    running = arm_factory(scenario)
    client = running.compute()
    with pytest.raises(HttpResponseError) as info:
        client.virtual_machines.begin_install_patches("rg-fleet", "win-02", WIN_ALL)
    assert info.value.status_code == 409 and info.value.error.code == "OperationNotAllowed"
    assert "deallocated" in info.value.error.message
    with pytest.raises(HttpResponseError) as info:
        client.virtual_machines.begin_install_patches("rg-fleet", "lin-02", LIN_ALL)
    assert info.value.error.code == "VMAgentStatusCommunicationError"
    iv = client.virtual_machines.instance_view("rg-fleet", "lin-02")
    assert iv.vm_agent.statuses[0].display_status == "Not Ready"
    assert iv.extensions[0].substatuses[0].code == "ComponentStatus/ApplicationHealthState/unknown"
    iv = client.virtual_machines.instance_view("rg-fleet", "win-02")
    assert iv.statuses[1].code == "PowerState/deallocated" and iv.vm_agent is None


def test_windows_results_name_update_categories_while_filters_use_the_enum(arm_factory):
    """Results carry Windows Update categories ("Security Updates", "Update Rollups", "Definition
    Updates") as in the official VirtualMachine_AssessPatches / _InstallPatches examples, while
    classificationsToInclude takes the swagger enum (Critical, Security, UpdateRollUp, Definition...)."""
    scenario = base_scenario()
    scenario["catalog"]["windows"].append(
        {"kb": "890830", "name": "Windows Malicious Software Removal Tool x64", "classification": "Update Rollups",
         "published": "2026-11-10T17:00:00Z", "reboot": "CanRequestReboot", "minutes": 3}
    )
    arm = arm_factory(scenario)
    assessed = arm.lro(arm.compute().virtual_machines.begin_assess_patches("rg-fleet", "win-01"))
    by_kb = {p.kb_id: p.classifications for p in assessed.available_patches}
    assert by_kb["5048667"] == ["Security Updates"]
    assert by_kb["5048654"] == ["Critical Updates"]
    assert by_kb["2267602"] == ["Definition Updates"]
    assert by_kb["890830"] == ["Update Rollups"]
    # the Maintenance spec spells the filter UpdateRollup, Compute UpdateRollUp: both select rollups
    for vm, spelling in (("win-01", "UpdateRollup"), ("win-02", "UpdateRollUp")):
        params = {"rebootSetting": "Never", "windowsParameters": {"classificationsToInclude": [spelling]}}
        result = install(arm, vm, params)
        states = {p.kb_id: p.installation_state for p in result.patches}
        assert states["890830"] == "Installed" and states["5048667"] == "NotSelected"
    installed = next(p for p in result.patches if p.kb_id == "890830")
    assert installed.classifications == ["Update Rollups"]
    assert all(
        c in {"Critical Updates", "Security Updates", "Update Rollups", "Definition Updates"}
        for p in result.patches for c in p.classifications
    )
    validate("compute", "VirtualMachineInstallPatchesResult", raw_result(arm, "win-02"))


def test_exclude_kbs_requiring_reboot_keeps_only_never_reboots():
    """Compute 2026-04-01 ``WindowsParameters.excludeKbsRequiringReboot``: "Filters out Kbs that
    don't have an InstallationRebootBehavior of 'NeverReboots'" -- CanRequestReboot and an unknown
    behaviour are filtered too, not only AlwaysRequiresReboot."""
    from datetime import UTC, datetime

    from emulator.arm.fleet import Patch, Vm
    from emulator.arm.patching import select_patches

    def kb(kb_id: str, reboot: str) -> Patch:
        return Patch(os="Windows", name=f"KB{kb_id}", classifications=["Security"],
                     published=datetime(2026, 11, 10, tzinfo=UTC), reboot_behavior=reboot, minutes=1, kb_id=kb_id)

    vm = Vm(subscription=SUB, resource_group="rg", name="w", os="Windows", location="westeurope")
    available = [kb("1", "AlwaysRequiresReboot"), kb("2", "CanRequestReboot"), kb("3", "NeverReboots"), kb("4", "")]
    params = {"windowsParameters": {"classificationsToInclude": ["Security"], "excludeKbsRequiringReboot": True}}
    picked = {p.kb_id: state for p, state in select_patches(vm, available, params)}
    assert picked == {"1": "Excluded", "2": "Excluded", "3": "Selected", "4": "Excluded"}
