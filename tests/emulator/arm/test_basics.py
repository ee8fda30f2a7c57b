"""Transport, auth, errors, recorder, VM reads and tags -- all through the real SDK clients."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from emulator.arm.routes import operation_action
from tests.emulator.arm.conftest import SUB, base_scenario

pytestmark = pytest.mark.emulator

VM_PATH = f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines/win-01"


def test_client_config_has_exactly_the_four_settings(arm):
    config = json.loads(arm.sim.client_config_path.read_text())
    assert config == arm.sim.client_settings
    assert set(config) == {
        "PATCHRINGS_ARM_ENDPOINT",
        "PATCHRINGS_ARM_AUTH",
        "PATCHRINGS_ARM_STATIC_TOKEN",
        "PATCHRINGS_ARM_CA_BUNDLE",
    }
    assert config["PATCHRINGS_ARM_ENDPOINT"].startswith("https://127.0.0.1:")
    assert config["PATCHRINGS_ARM_AUTH"] == "static-token"
    assert "BEGIN CERTIFICATE" in Path(config["PATCHRINGS_ARM_CA_BUNDLE"]).read_text()


def test_tls_is_verified_against_the_generated_ca(arm):
    from azure.core.exceptions import ServiceRequestError
    from azure.mgmt.compute import ComputeManagementClient

    from tests.emulator.arm.conftest import StaticToken

    client = ComputeManagementClient(StaticToken(arm.sim.token), SUB, base_url=arm.sim.endpoint)
    with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
        client.virtual_machines.get("rg-fleet", "win-01", retry_total=0)


def test_get_vm_with_instance_view(arm):
    vm = arm.compute().virtual_machines.get("rg-fleet", "win-01", expand="instanceView")
    assert vm.id == VM_PATH
    assert vm.location == "westeurope" and vm.zones == ["1"]
    assert vm.tags == {"patchRing": "ring0"}
    assert vm.storage_profile.os_disk.os_type == "Windows"
    assert vm.os_profile.windows_configuration.patch_settings.patch_mode == "AutomaticByPlatform"
    codes = [s.code for s in vm.instance_view.statuses]
    assert codes == ["ProvisioningState/succeeded", "PowerState/running"]
    assert vm.instance_view.vm_agent.statuses[0].display_status == "Ready"
    ext = vm.instance_view.extensions[0]
    assert ext.type == "Microsoft.ManagedServices.ApplicationHealthWindows"
    assert ext.substatuses[0].code == "ComponentStatus/ApplicationHealthState/healthy"
    assert vm.instance_view.vm_health.status.code == "HealthState/healthy"
    summary = vm.instance_view.patch_status.available_patch_summary
    assert (summary.critical_and_security_patch_count, summary.other_patch_count) == (2, 1)


def test_paths_and_ids_are_case_insensitive(arm):
    client = arm.compute()
    request = HttpRequest("GET", VM_PATH.upper().replace("WIN-01", "win-01") + "?api-version=2026-04-01")
    response = client.send_request(request)
    assert response.status_code == 200
    assert response.json()["name"] == "win-01"
    request = HttpRequest(
        "GET",
        f"/subscriptions/{SUB}/resourcegroups/RG-FLEET/providers/microsoft.compute/virtualmachines/WIN-01/instanceview",
        params={"api-version": "2026-04-01"},
    )
    assert client.send_request(request).status_code == 200


def test_list_pages_by_next_link(arm_factory):
    scenario = base_scenario(paging={"pageSize": 3})
    running = arm_factory(scenario)
    names = [vm.name for vm in running.compute().virtual_machines.list_all()]
    assert names == ["lin-01", "lin-02", "win-01", "win-02"]
    assert [vm.name for vm in running.compute().virtual_machines.list("rg-fleet")] == names
    gets = running.sim.recorder.find(method="GET", path_contains="/providers/Microsoft.Compute/virtualMachines")
    assert any(r.query.get("$skiptoken") == "3" for r in gets)


def test_not_found_errors_have_arm_codes(arm):
    client = arm.compute()
    with pytest.raises(ResourceNotFoundError) as info:
        client.virtual_machines.get("rg-fleet", "nope")
    assert info.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as info:
        client.virtual_machines.get("rg-missing", "win-01")
    assert info.value.error.code == "ResourceGroupNotFound"


def test_api_version_is_required_and_must_be_registered(arm):
    client = arm.compute()
    missing = client.send_request(HttpRequest("GET", VM_PATH))
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "MissingApiVersionParameter"
    unknown = client.send_request(HttpRequest("GET", VM_PATH + "?api-version=2099-01-01"))
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "NoRegisteredProviderFound"
    assert client.send_request(HttpRequest("GET", VM_PATH + "?api-version=2026-04-01")).status_code == 200


def test_bearer_token_required(arm):
    with pytest.raises(ClientAuthenticationError) as info:
        arm.compute(token="not-a-valid-token").virtual_machines.get("rg-fleet", "win-01")
    assert info.value.error.code == "InvalidAuthenticationToken"
    import ssl

    context = ssl.create_default_context(cafile=str(arm.sim.ca_path))
    url = arm.sim.endpoint + VM_PATH + "?api-version=2026-04-01"
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(url, context=context)
    assert http.value.code == 401
    assert json.loads(http.value.read())["error"]["code"] == "AuthenticationFailed"


def test_role_map_answers_403_authorization_failed(arm_factory):
    scenario = base_scenario(
        auth={
            "identities": [
                {"name": "app", "token": "token-app-123", "default": True},
                {"name": "reader", "token": "token-reader-1", "actions": ["Microsoft.Compute/virtualMachines/read"]},
            ]
        }
    )
    running = arm_factory(scenario)
    reader = running.compute(token="token-reader-1")
    assert reader.virtual_machines.get("rg-fleet", "win-01").name == "win-01"
    with pytest.raises(HttpResponseError) as info:
        reader.virtual_machines.instance_view("rg-fleet", "win-01")
    assert info.value.status_code == 403
    assert info.value.error.code == "AuthorizationFailed"
    assert "Microsoft.Compute/virtualMachines/instanceView/read" in info.value.error.message
    assert "'reader'" in info.value.error.message
    record = running.sim.recorder.find(identity="reader", status=403)[0]
    assert record.action == "Microsoft.Compute/virtualMachines/instanceView/read"


def test_recorder_keeps_time_identity_action_and_body(arm):
    arm.compute().virtual_machines.begin_update("rg-fleet", "win-01", {"tags": {"patchRing": "ring1"}}).result()
    (record,) = arm.sim.recorder.find(method="PATCH")
    assert record.identity == "patchrings-app"
    assert record.action == "Microsoft.Compute/virtualMachines/write"
    assert record.api_version == "2026-04-01"
    assert record.body == {"tags": {"patchRing": "ring1"}}
    assert record.status == 200
    assert record.time == arm.now()
    assert arm.sim.recorder.find(action="microsoft.compute/virtualmachines/write") == [record]
    # the same over HTTP
    with urllib.request.urlopen(arm.sim.endpoint + "/_sim/requests?method=PATCH", context=_ctx(arm)) as resp:
        listed = json.loads(resp.read())
    assert [r["path"] for r in listed] == [VM_PATH]


def _ctx(arm):
    import ssl

    return ssl.create_default_context(cafile=str(arm.sim.ca_path))


def test_vm_patch_replaces_tags(arm):
    client = arm.compute()
    vm = client.virtual_machines.begin_update("rg-fleet", "win-01", {"tags": {"patchRing": "ring2", "x": "y"}}).result()
    assert vm.tags == {"patchRing": "ring2", "x": "y"}
    assert arm.sim.vm("win-01").tags == {"patchRing": "ring2", "x": "y"}


def test_tags_api_merge_replace_delete(arm):
    tags = arm.resources().tags
    scope = VM_PATH
    assert tags.get_at_scope(scope).properties.tags == {"patchRing": "ring0"}
    merged = tags.begin_update_at_scope(
        scope, {"operation": "Merge", "properties": {"tags": {"patchRing": "ring1", "owner": "ops"}}}
    ).result()
    assert merged.properties.tags == {"patchRing": "ring1", "owner": "ops"}
    deleted = tags.begin_update_at_scope(
        scope, {"operation": "Delete", "properties": {"tags": {"owner": "someone-else"}}}
    ).result()
    assert deleted.properties.tags == {"patchRing": "ring1", "owner": "ops"}  # value did not match
    deleted = tags.begin_update_at_scope(scope, {"operation": "Delete", "properties": {"tags": {"owner": ""}}}).result()
    assert deleted.properties.tags == {"patchRing": "ring1"}
    replaced = tags.begin_update_at_scope(scope, {"operation": "Replace", "properties": {"tags": {"a": "b"}}}).result()
    assert replaced.properties.tags == {"a": "b"}
    put = tags.begin_create_or_update_at_scope(scope, {"properties": {"tags": {"patchRing": "hold"}}}).result()
    assert put.properties.tags == {"patchRing": "hold"}
    assert arm.sim.vm("win-01").tags == {"patchRing": "hold"}
    tags.begin_delete_at_scope(scope).result()
    assert arm.sim.vm("win-01").tags == {}
    actions = {r.action for r in arm.sim.recorder.records}
    assert actions == {
        "Microsoft.Resources/tags/read",
        "Microsoft.Resources/tags/write",
        "Microsoft.Resources/tags/delete",
    }


def test_tags_limit_and_bad_operation(arm):
    tags = arm.resources().tags
    with pytest.raises(HttpResponseError) as info:
        tags.begin_update_at_scope(
            VM_PATH, {"operation": "Merge", "properties": {"tags": {f"t{i}": "v" for i in range(60)}}}
        ).result()
    assert info.value.error.code == "InvalidTag"
    response = arm.resources().send_request(
        HttpRequest(
            "PATCH",
            VM_PATH + "/providers/Microsoft.Resources/tags/default",
            params={"api-version": "2025-04-01"},
            json={"operation": "Upsert", "properties": {"tags": {}}},
        )
    )
    assert response.status_code == 400 and "Merge, Replace or Delete" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", VM_PATH, "Microsoft.Compute/virtualMachines/read"),
        ("GET", VM_PATH + "/instanceView", "Microsoft.Compute/virtualMachines/instanceView/read"),
        ("PATCH", VM_PATH, "Microsoft.Compute/virtualMachines/write"),
        ("POST", VM_PATH + "/installPatches?api-version=1", "Microsoft.Compute/virtualMachines/installPatches/action"),
        ("POST", VM_PATH + "/assessPatches", "Microsoft.Compute/virtualMachines/assessPatches/action"),
        ("PATCH", VM_PATH + "/providers/Microsoft.Resources/tags/default", "Microsoft.Resources/tags/write"),
        (
            "GET",
            f"/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines",
            "Microsoft.Compute/virtualMachines/read",
        ),
        (
            "PUT",
            f"/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.maintenance/maintenanceconfigurations/mc"
            "/providers/microsoft.maintenance/applyupdates/20261117200000",
            "Microsoft.Maintenance/applyUpdates/write",
        ),
        (
            "PUT",
            f"/subscriptions/{SUB}/providers/Microsoft.Maintenance/configurationAssignments/ds",
            "Microsoft.Maintenance/configurationAssignments/write",
        ),
        (
            "GET",
            f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc",
            "Microsoft.Maintenance/maintenanceConfigurations/read",
        ),
    ],
)
def test_operation_action(method, path, action):
    assert operation_action(method, path) == action


def test_operation_action_rejects_unknown():
    with pytest.raises(ValueError, match="no ARM operation"):
        operation_action("DELETE", VM_PATH)


def test_unsupported_route_is_a_clear_error(arm):
    response = arm.compute().send_request(HttpRequest("DELETE", VM_PATH, params={"api-version": "2026-04-01"}))
    assert response.status_code == 404
    assert "does not support DELETE" in response.json()["error"]["message"]


def test_health_endpoint_follows_vm_health(arm):
    url = arm.sim.health_url("win-01")
    assert arm.sim.health_url_template.replace("{vmName}", "win-01") == url
    with urllib.request.urlopen(url) as resp:
        assert resp.status == 200 and json.loads(resp.read())["status"] == "Healthy"
    arm.sim.set_vm_health("win-01", "Unhealthy")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url)
    assert info.value.code == 503
    iv = arm.compute().virtual_machines.instance_view("rg-fleet", "win-01")
    assert iv.extensions[0].substatuses[0].code == "ComponentStatus/ApplicationHealthState/unhealthy"


def test_control_api_sets_state_and_lists_fleet(arm):
    request = urllib.request.Request(
        arm.sim.endpoint + "/_sim/vms/lin-02",
        data=json.dumps({"powerState": "deallocated", "vmAgent": "NotReady"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=_ctx(arm)) as resp:
        assert json.loads(resp.read()) == {"ok": True}
    with urllib.request.urlopen(arm.sim.endpoint + "/_sim/fleet", context=_ctx(arm)) as resp:
        fleet = json.loads(resp.read())
    lin = next(v for v in fleet["vms"] if v["name"] == "lin-02")
    assert lin["powerState"] == "deallocated" and lin["vmAgentReady"] is False
    iv = arm.compute().virtual_machines.instance_view("rg-fleet", "lin-02")
    assert iv.statuses[1].code == "PowerState/deallocated"


def test_tags_on_other_scopes(arm):
    tags = arm.resources().tags
    mc = f"/subscriptions/{SUB}/resourcegroups/rg-patching/providers/Microsoft.Maintenance"
    mc += "/maintenanceConfigurations/mc-ring0"
    tags.begin_create_or_update_at_scope(mc, {"properties": {"tags": {"ring": "0"}}}).result()
    assert arm.maintenance().maintenance_configurations.get("rg-patching", "mc-ring0").tags == {"ring": "0"}
    rg = f"/subscriptions/{SUB}/resourceGroups/rg-fleet"
    tags.begin_update_at_scope(rg, {"operation": "Merge", "properties": {"tags": {"owner": "ops"}}}).result()
    assert tags.get_at_scope(rg).properties.tags == {"owner": "ops"}
    with pytest.raises(ResourceNotFoundError):
        tags.get_at_scope(f"/subscriptions/{SUB}/resourceGroups/rg-nope")


def test_the_shared_clock_is_mounted_at_admin_clock(arm):
    """issue 14.11: the simulator serves the clock's HTTP interface (emulator.clock_http)."""
    import json
    import ssl
    import urllib.request

    from emulator.clock import parse_instant

    context = ssl.create_default_context(cafile=str(arm.sim.ca_path))

    def call(method, path, body=None):
        request = urllib.request.Request(
            arm.sim.endpoint + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, json.loads(response.read() or b"null")

    status, state = call("GET", "/admin/clock")
    assert status == 200 and parse_instant(state["now"]) == arm.now()
    status, lease = call("POST", "/admin/clock/lease", {"ttlSeconds": 30, "holder": "test"})
    assert status in (200, 201) and lease["leaseId"]
    assert call("GET", "/admin/clock")[1]["leases"]
    assert call("DELETE", f"/admin/clock/lease/{lease['leaseId']}")[0] in (200, 204)
    assert arm.sim.recorder.find(path_contains="/admin/clock") == []  # not ARM: never recorded


def test_tag_writes_at_a_resource_scope_draw_from_their_subscriptions_write_bucket(arm):
    """ARM's write bucket is per subscription whatever the provider: a Tags API write at a VM's
    scope and a VM PATCH in the same subscription share one bucket (the tags route has no ``sub``
    parameter; it used to fall into a bucket of its own)."""
    arm.resources().tags.begin_update_at_scope(
        VM_PATH, {"operation": "Merge", "properties": {"tags": {"owner": "ops"}}}).result()
    buckets = {key for key in arm.sim.throttle._buckets if key[2] == "writes"}
    assert buckets and all(sub == SUB.lower() for sub, _principal, _kind in buckets)
