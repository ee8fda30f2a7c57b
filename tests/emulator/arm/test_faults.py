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


# -- faults for the safety work (issue 13): 403/404/409, slow answers, faults added at run time ----
MC_PATH = f"/subscriptions/{SUB}/resourcegroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations"
RUN = f"{MC_PATH}/mc-ring0/providers/microsoft.maintenance/applyupdates/20261117200000"


def _wait_for(predicate, timeout=60.0):
    """Wait on state (polling), never asserting on elapsed time."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("state not reached")
        time.sleep(0.05)


def _cancel(running, **kwargs):
    return running.maintenance()._send_request(
        HttpRequest("PUT", RUN, params={"api-version": "2023-09-01-preview"},
                    json={"properties": {"status": "Cancel"}}),
        **kwargs,
    )


def test_http_403_is_arms_authorization_failed_and_nothing_happens(arm_factory):
    fault = {"type": "httpError", "status": 403, "action": "Microsoft.Maintenance/applyUpdates/write"}
    running = arm_factory(base_scenario(faults=[fault]))
    response = _cancel(running)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert error["message"].startswith("The client 'patchrings-app' with object id '")
    assert "does not have authorization to perform action 'Microsoft.Maintenance/applyUpdates/write' over scope" in (
        error["message"]
    )
    assert RUN.lower() in error["message"].lower()
    running.advance_until(lambda: running.sim.run(RUN) is not None)
    assert running.sim.run(RUN).cancelled_at is None  # the refused cancel did nothing
    assert running.sim.recorder.find(method="PUT")[0].fault.startswith("httpError")


def test_http_404_and_409_as_each_provider_sends_them(arm_factory):
    from azure.core.exceptions import ResourceNotFoundError

    faults = [
        {"type": "httpError", "status": 404, "method": "GET", "pathContains": "/win-02", "count": 1},
        {"type": "httpError", "status": 409, "method": "POST", "action": "*/installPatches/action", "count": 1},
        {"type": "httpError", "status": 409, "method": "PUT", "pathContains": "maintenanceConfigurations/", "count": 1,
         "message": "Another write to this configuration is in progress."},
    ]
    running = arm_factory(base_scenario(faults=faults))
    with pytest.raises(ResourceNotFoundError) as missing:
        running.compute().virtual_machines.get("rg-fleet", "win-02")
    assert missing.value.error.code == "ResourceNotFound" and "virtualMachines/win-02" in missing.value.error.message
    with pytest.raises(HttpResponseError) as conflict:
        running.compute().virtual_machines.begin_install_patches("rg-fleet", "win-01", WIN_ALL, polling=False)
    assert conflict.value.status_code == 409 and conflict.value.error.code == "OperationNotAllowed"
    assert running.sim.vm("win-01").install_count == 0
    client = running.maintenance()
    cfg = client.maintenance_configurations.get("rg-patching", "mc-ring0")
    with pytest.raises(HttpResponseError) as busy:
        client.maintenance_configurations.create_or_update("rg-patching", "mc-ring0", cfg)
    assert busy.value.status_code == 409 and busy.value.error.code == "Conflict"
    assert busy.value.error.message == "Another write to this configuration is in progress."


def test_slow_answer_trips_a_real_client_timeout_but_the_write_landed(arm_factory):
    """processFirst (default): the cancel takes effect, only its answer is late (real seconds)."""
    from azure.core.exceptions import ServiceResponseError

    running = arm_factory(base_scenario(faults=[{"type": "slowAnswer", "seconds": 3, "method": "PUT", "count": 1}]))
    with pytest.raises(ServiceResponseError):
        _cancel(running, read_timeout=0.5, retry_total=0)
    _wait_for(lambda: running.sim.recorder.find(method="PUT"))
    (record,) = running.sim.recorder.find(method="PUT")
    assert record.status == 200 and record.fault.startswith("slowAnswer")
    assert _cancel(running).json()["properties"]["status"] == "Cancelled"  # the first one had landed


def test_slow_answer_before_processing_does_nothing_once_the_client_left(arm_factory):
    from azure.core.exceptions import ServiceResponseError

    fault = {"type": "slowAnswer", "seconds": 3, "method": "PUT", "processFirst": False, "count": 1}
    running = arm_factory(base_scenario(faults=[fault]))
    with pytest.raises(ServiceResponseError):
        _cancel(running, read_timeout=0.5, retry_total=0)
    _wait_for(lambda: running.sim.recorder.find(method="PUT"))
    (record,) = running.sim.recorder.find(method="PUT")
    assert record.status == 0 and record.error_code == "ClientClosedRequest"
    running.advance_until(lambda: running.sim.run(RUN) is not None)
    assert running.sim.run(RUN).cancelled_at is None


def test_slow_answer_in_simulated_time_moves_the_clock(arm_factory):
    import threading
    from datetime import timedelta

    fault = {"type": "slowAnswer", "simulatedSeconds": 600, "method": "GET", "pathContains": "/lin-02", "count": 1}
    running = arm_factory(base_scenario(faults=[fault]))
    start = running.now()
    answers = []
    client = running.compute()
    thread = threading.Thread(target=lambda: answers.append(client.virtual_machines.get("rg-fleet", "lin-02")))
    thread.start()
    # the held request waits on the clock: its answer is the next thing due, 10 simulated minutes on
    _wait_for(lambda: running.sim.clock.next_due() == start + timedelta(seconds=600))
    assert answers == []
    # the simulator records the request when it answers it: exactly 10 simulated minutes on
    running.advance_until(lambda: running.sim.recorder.find(path_contains="/lin-02"))
    assert running.now() == start + timedelta(seconds=600)
    thread.join()
    assert answers[0].name == "lin-02"


def test_faults_are_added_and_removed_at_run_time_through_the_control_api(arm):
    import ssl

    context = ssl.create_default_context(cafile=str(arm.sim.ca_path))

    def call(method, path, body=None):
        request = urllib.request.Request(
            arm.sim.endpoint + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def get_vm():
        return arm.compute().send_request(
            HttpRequest("GET", f"{VM_PATH}/win-01", params={"api-version": "2026-04-01"}), retry_total=0
        ).status_code

    assert get_vm() == 200
    status, added = call("POST", "/_sim/faults", {"type": "httpError", "status": 503, "pathContains": "/win-01"})
    assert status == 201
    assert get_vm() == 503
    status, listed = call("GET", "/_sim/faults")
    assert [(f["index"], f["triggered"]) for f in listed] == [(added["index"], 1)]
    assert call("DELETE", f"/_sim/faults/{added['index']}")[0] == 200
    assert get_vm() == 200
    assert call("DELETE", f"/_sim/faults/{added['index']}")[0] == 404
    status, bad = call("POST", "/_sim/faults", {"type": "httpError", "status": 418})
    assert status == 400 and "status" in bad["error"]["message"]
    status, bad = call("POST", "/_sim/faults", {"type": "deallocated"})
    assert status == 400 and "/_sim/vms/" in bad["error"]["message"]
    # the in-process API does the same
    index = arm.sim.add_fault({"type": "dropConnection", "pathContains": "/win-01", "count": 1})
    assert index > added["index"]  # indices are never reused
    with pytest.raises(ServiceResponseError):
        arm.compute().virtual_machines.get("rg-fleet", "win-01", retry_total=0)
    assert arm.sim.clear_faults() == 1 and arm.sim.fault_list() == []
