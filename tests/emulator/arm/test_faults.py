"""Each scenario fault, observed through the SDK the way Azure would show it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.core.rest import HttpRequest

from tests.emulator.arm.conftest import SUB, base_scenario

pytestmark = pytest.mark.emulator

WIN_ALL = {"rebootSetting": "IfRequired", "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]}}
VM_PATH = f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines"


def install(running, vm, params=WIN_ALL):
    return running.lro(running.compute().virtual_machines.begin_install_patches("rg-fleet", vm, params))


def test_patch_fails_on_selected_vms(arm_factory):
    running = arm_factory(
        base_scenario(faults=[{"type": "patchFails", "patch": "KB5048667", "vms": ["win-0*"], "times": 1}])
    )
    result = install(running, "win-01")
    assert result.status == "Failed"
    assert result.failed_patch_count == 1 and result.installed_patch_count == 1
    assert result.error.code == "PatchInstallationFailed"
    assert result.error.details[0].target == "KB5048667"
    failed = [p for p in result.patches if p.installation_state == "Failed"]
    assert [p.kb_id for p in failed] == ["5048667"]
    assert "KB5048667" not in running.sim.vm("win-01").installed
    summary = running.compute().virtual_machines.instance_view("rg-fleet", "win-01").patch_status
    assert summary.last_patch_installation_summary.status == "Failed"
    assert install(running, "win-02").status == "Succeeded"  # times: 1


def test_probability_is_seeded_and_deterministic(arm_factory):
    faults = [{"type": "patchFails", "patch": "curl", "probability": 0.5}]
    outcomes = []
    for _ in range(2):
        running = arm_factory(base_scenario(faults=faults))
        params = {"rebootSetting": "IfRequired", "linuxParameters": {"classificationsToInclude": ["Security"]}}
        outcomes.append([install(running, vm, params).status for vm in ("lin-01", "lin-02")])
    assert outcomes[0] == outcomes[1]


def test_unhealthy_after_patch(arm_factory):
    running = arm_factory(
        base_scenario(faults=[{"type": "unhealthyAfterPatch", "patch": "KB5048667", "tags": {"patchRing": "ring0"}}])
    )
    url = running.sim.health_url("win-01")
    with urllib.request.urlopen(url) as response:
        assert response.status == 200
    result = install(running, "win-01")
    assert result.status == "Succeeded"  # the install itself is clean
    iv = running.compute().virtual_machines.instance_view("rg-fleet", "win-01")
    assert iv.extensions[0].substatuses[0].code == "ComponentStatus/ApplicationHealthState/unhealthy"
    assert iv.vm_health.status.code == "HealthState/unhealthy"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url)
    assert info.value.code == 503 and json.loads(info.value.read())["status"] == "Unhealthy"
    install(running, "win-02")
    assert running.sim.vm("win-02").health == "Healthy"  # not tagged ring0


def test_reboot_fails(arm_factory):
    running = arm_factory(base_scenario(faults=[{"type": "rebootFails", "vms": ["win-01"]}]))
    result = install(running, "win-01")
    assert result.reboot_status == "Failed" and result.status == "Failed"
    assert result.error.code == "RebootFailed"


def test_http_429_with_retry_after_is_retried_by_the_sdk(arm_factory):
    running = arm_factory(
        base_scenario(
            faults=[
                {
                    "type": "httpError",
                    "status": 429,
                    "retryAfter": 1,
                    "count": 1,
                    "action": "Microsoft.Compute/virtualMachines/installPatches/action",
                }
            ]
        )
    )
    result = install(running, "win-01")
    assert result.status == "Succeeded"
    posts = running.sim.recorder.find(method="POST")
    assert [p.status for p in posts] == [429, 202]
    assert posts[0].fault.startswith("httpError") and posts[0].error_code == "OperationNotAllowed"


def test_http_429_body_and_headers_as_compute_sends_them(arm_factory):
    running = arm_factory(
        base_scenario(
            faults=[{"type": "httpError", "status": 429, "retryAfter": 7, "method": "GET", "pathContains": "/win-02"}]
        )
    )
    response = running.compute().send_request(
        HttpRequest("GET", f"{VM_PATH}/win-02", params={"api-version": "2026-04-01"}), retry_total=0
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    error = response.json()["error"]
    assert error["details"][0]["code"] == "TooManyRequests" and error["details"][0]["target"] == "HighCostGet30Min"


def test_http_500_is_retried_and_then_surfaces(arm_factory):
    running = arm_factory(
        base_scenario(faults=[{"type": "httpError", "status": 500, "pathContains": "/win-01", "count": 1}])
    )
    assert running.compute().virtual_machines.get("rg-fleet", "win-01").name == "win-01"
    assert [r.status for r in running.sim.recorder.find(path_contains="/win-01")] == [500, 200]
    running = arm_factory(base_scenario(faults=[{"type": "httpError", "status": 503, "pathContains": "/win-02"}]))
    with pytest.raises(HttpResponseError) as info:
        running.compute().virtual_machines.get("rg-fleet", "win-02", retry_total=1, retry_backoff_factor=0.01)
    assert info.value.status_code == 503 and info.value.error.code == "ServiceUnavailable"


def test_dropped_connection(arm_factory):
    running = arm_factory(base_scenario(faults=[{"type": "dropConnection", "pathContains": "/lin-01", "count": 1}]))
    with pytest.raises(ServiceResponseError):
        running.compute().virtual_machines.get("rg-fleet", "lin-01", retry_total=0)
    assert running.compute().virtual_machines.get("rg-fleet", "lin-01").name == "lin-01"
    records = running.sim.recorder.find(path_contains="/lin-01")
    assert [r.status for r in records] == [0, 200] and records[0].fault.startswith("dropConnection")


def test_after_lets_requests_through_first(arm_factory):
    running = arm_factory(
        base_scenario(faults=[{"type": "httpError", "status": 500, "method": "GET", "after": 2, "count": 1}])
    )
    client = running.compute()
    for _ in range(3):
        client.virtual_machines.get("rg-fleet", "win-01", retry_backoff_factor=0.01)
    assert [r.status for r in running.sim.recorder.records] == [200, 200, 500, 200]


def test_throttling_token_buckets(arm_factory):
    running = arm_factory(
        base_scenario(
            throttling={"reads": {"size": 3, "refillPerSecond": 2}, "writes": {"size": 2, "refillPerSecond": 1}}
        )
    )
    client = running.compute()
    remaining = []
    for _ in range(4):
        response = client.send_request(
            HttpRequest("GET", f"{VM_PATH}/win-01", params={"api-version": "2026-04-01"}), retry_total=0
        )
        remaining.append((response.status_code, response.headers.get("x-ms-ratelimit-remaining-subscription-reads")))
    assert remaining[:3] == [(200, "2"), (200, "1"), (200, "0")]
    assert remaining[3][0] == 429 and remaining[3][1] == "0"
    throttled = running.sim.recorder.find(status=429)[0]
    assert throttled.error_code == "TooManyRequests" and throttled.fault == "throttled"
    # the SDK waits for Retry-After and gets through
    assert client.virtual_machines.get("rg-fleet", "win-01").name == "win-01"
    response = client.send_request(
        HttpRequest("PATCH", f"{VM_PATH}/win-01", params={"api-version": "2026-04-01"}, json={"tags": {}})
    )
    assert response.headers["x-ms-ratelimit-remaining-subscription-writes"] == "1"


def test_default_buckets_are_armd_sizes(arm):
    response = arm.compute().send_request(HttpRequest("GET", f"{VM_PATH}/win-01", params={"api-version": "2026-04-01"}))
    assert response.headers["x-ms-ratelimit-remaining-subscription-reads"] == "249"


def test_unhealthy_then_recovers(arm_factory):
    from datetime import timedelta

    running = arm_factory(
        base_scenario(faults=[{"type": "unhealthyAfterPatch", "vms": ["lin-01"], "recoverAfterMinutes": 30}])
    )
    params = {"rebootSetting": "IfRequired", "linuxParameters": {"classificationsToInclude": ["Security"]}}
    result = install(running, "lin-01", params)
    vm = running.sim.vm("lin-01")
    assert (vm.health, result.installed_patch_count) == ("Unhealthy", 2)
    unhealthy_since = running.now()
    running.advance_until(lambda: vm.health == "Healthy")
    assert running.now() - unhealthy_since <= timedelta(minutes=30)
    with urllib.request.urlopen(running.sim.health_url("lin-01")) as response:
        assert response.status == 200


def test_faults_active_only_in_their_window(arm_factory):
    from datetime import UTC, datetime

    running = arm_factory(
        base_scenario(
            faults=[
                {"type": "httpError", "status": 503, "from": "2026-11-16T07:00:00Z", "until": "2026-11-16T08:00:00Z"},
                {"type": "patchFails", "patch": "curl", "from": "2026-11-16T07:00:00Z"},
            ]
        )
    )
    client = running.compute()
    assert client.virtual_machines.get("rg-fleet", "win-01").name == "win-01"  # 06:00: before the outage
    running.advance_to(datetime(2026, 11, 16, 7, 30, tzinfo=UTC))
    response = client.send_request(
        HttpRequest("GET", f"{VM_PATH}/win-01", params={"api-version": "2026-04-01"}), retry_total=0
    )
    assert response.status_code == 503
    running.advance_to(datetime(2026, 11, 16, 8, 0, tzinfo=UTC))
    params = {"rebootSetting": "IfRequired", "linuxParameters": {"classificationsToInclude": ["Security"]}}
    result = install(running, "lin-02", params)  # the outage is over; the patch fault has begun
    assert result.status == "Failed" and result.failed_patch_count == 1


def test_operation_fails_as_a_failed_lro(arm_factory):
    running = arm_factory(
        base_scenario(
            faults=[
                {
                    "type": "operationFails",
                    "operation": "installPatches",
                    "vms": ["win-01"],
                    "code": "InternalExecutionError",
                    "times": 1,
                }
            ]
        )
    )
    poller = running.compute().virtual_machines.begin_install_patches("rg-fleet", "win-01", WIN_ALL)
    with pytest.raises(HttpResponseError) as info:
        running.lro(poller)
    assert "InternalExecutionError" in str(info.value)
    summary = running.compute().virtual_machines.instance_view("rg-fleet", "win-01").patch_status
    assert summary.last_patch_installation_summary.status == "Failed"
    assert summary.last_patch_installation_summary.error.code == "InternalExecutionError"
    assert running.sim.vm("win-01").installed == set()
    assert install(running, "win-01").status == "Succeeded"  # times: 1, and the VM is free again
