"""Compute activities against the ARM simulator (skip clock) and Azurite."""

from __future__ import annotations

from typing import Any

import pytest

from activities.compute import (
    check_vm_health_core,
    poll_assess_core,
    poll_install_core,
    resolve_ring_members_core,
    start_assess_core,
    start_install_core,
)
from activities.health import check_vm_health_batch_core
from activities.plan import Plan
from patchrings.clients import AzureClients
from patchrings.ledger import Ledger
from tests.functional.activities.conftest import PLAN, START, SimHandle, vm_id
from tests.ring_inputs import named_ring

pytestmark = pytest.mark.functional

PARAMS = {"rebootSetting": "IfRequired", "maximumDuration": "PT2H",
          "windowsParameters": {"classificationsToInclude": ["Critical", "Security"],
                                "maxPatchPublishDate": START},
          "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]}}


def plan() -> dict[str, Any]:
    return Plan.from_dict(PLAN).to_dict()


def vmref(name: str, os_name: str = "Windows") -> dict[str, Any]:
    return {"id": vm_id(name), "name": name, "os": os_name}


def install_posts(arm: SimHandle, name: str) -> int:
    return len(arm.sim.recorder.find(method="POST", path_contains=f"/virtualMachines/{name}/installPatches"))


def test_resolve_ring_members_by_tag_and_hold_value(arm: SimHandle, clients: AzureClients) -> None:
    ring0 = resolve_ring_members_core(clients, {**named_ring(plan(), "ring0")})["vms"]
    assert [v["name"] for v in ring0] == ["db-01", "web-01", "web-02"]
    web1 = next(v for v in ring0 if v["name"] == "web-01")
    assert web1["os"] == "Windows" and web1["zone"] == "1" and web1["location"] == "westeurope"
    assert web1["powerState"] == "running"
    assert next(v for v in ring0 if v["name"] == "db-01")["powerState"] == "deallocated"
    ring1 = resolve_ring_members_core(clients, {**named_ring(plan(), "ring1")})["vms"]
    assert [v["name"] for v in ring1] == ["app-01", "app-02"]
    assert ring1[0]["scheduleIssue"] is None
    assert "bypassPlatformSafetyChecksOnUserSchedule" in ring1[1]["scheduleIssue"]


def test_install_start_poll_end_to_end_and_idempotent(
    arm: SimHandle, clients: AzureClients, arm_ledger: Ledger
) -> None:
    payload = {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0", "vm": vmref("web-01"),
               "parameters": PARAMS, "runStartedAt": START}
    with arm.clock.hold():
        started = start_install_core(clients, arm_ledger, payload)
        assert started["state"] == "started" and started["token"]
        first = poll_install_core(clients, arm_ledger, {"runId": "r1:ring0", "vm": payload["vm"],
                                                         "token": started["token"]})
        assert first == {"done": False, "result": None, "error": None}
        # a re-run of the same activity (crash, retry) does not POST again
        again = start_install_core(clients, arm_ledger, payload)
        assert again == {"state": "already-started", "token": started["token"], "error": None}
    assert install_posts(arm, "web-01") == 1

    def poll() -> dict[str, Any] | None:
        out = poll_install_core(clients, arm_ledger, {"runId": "r1:ring0", "vm": payload["vm"],
                                                       "token": started["token"]})
        return out if out["done"] else None

    done = arm.clock.advance_until(poll, timeout=60)
    assert done["error"] is None
    result = done["result"]
    assert result["status"] == "Succeeded"
    assert result["installedPatchCount"] == 1
    assert [p["kbId"] for p in result["patches"] if p["installationState"] == "Installed"] == ["5034123"]
    assert arm_ledger.install("r1:ring0", vm_id("web-01"))["state"] == "done"
    # after completion a re-run reports already-done, still one POST
    assert start_install_core(clients, arm_ledger, payload)["state"] == "already-done"
    assert install_posts(arm, "web-01") == 1


def test_lost_ledger_record_falls_back_to_instance_view(
    arm: SimHandle, clients: AzureClients, arm_ledger: Ledger
) -> None:
    payload = {"rolloutId": "r2", "ring": "ring0", "runId": "r2:ring0", "vm": vmref("web-02", "Linux"),
               "parameters": PARAMS, "runStartedAt": START}
    with arm.clock.hold():
        assert start_install_core(clients, arm_ledger, payload)["state"] == "started"
        # the crash window: installPatches was sent but its record is gone
        arm_ledger.delete_install("r2:ring0", vm_id("web-02"))
        rerun = start_install_core(clients, arm_ledger, payload)
    assert rerun == {"state": "already-started", "token": None, "error": None}
    assert install_posts(arm, "web-02") == 1

    def poll() -> dict[str, Any] | None:
        out = poll_install_core(clients, arm_ledger, {"runId": "r2:ring0", "vm": payload["vm"], "token": None})
        return out if out["done"] else None

    done = arm.clock.advance_until(poll, timeout=60)
    assert done["result"]["status"] == "Succeeded"
    assert done["result"]["source"] == "instanceView"
    assert done["result"]["installedPatchCount"] == 1
    assert install_posts(arm, "web-02") == 1


def test_refused_install_frees_the_claim(arm: SimHandle, clients: AzureClients, arm_ledger: Ledger) -> None:
    payload = {"rolloutId": "r3", "ring": "ring0", "runId": "r3:ring0", "vm": vmref("db-01", "Linux"),
               "parameters": PARAMS, "runStartedAt": START}
    out = start_install_core(clients, arm_ledger, payload)
    assert out["state"] == "refused"
    assert out["error"]["code"] == "OperationNotAllowed" and out["error"]["status"] == 409
    assert arm_ledger.install("r3:ring0", vm_id("db-01")) is None


def test_assess_start_and_poll(arm: SimHandle, clients: AzureClients) -> None:
    with arm.clock.hold():
        started = start_assess_core(clients, {"vm": vmref("app-02")})
    assert started["state"] == "started"

    def poll() -> dict[str, Any] | None:
        out = poll_assess_core(clients, {"vm": vmref("app-02"), "token": started["token"]})
        return out if out["done"] else None

    done = arm.clock.advance_until(poll, timeout=60)
    kbs = [p.get("kbId") for p in done["result"]["availablePatches"]]
    assert kbs == ["5034123"]
    assert arm.sim.recorder.find(method="POST", path_contains="/installPatches") == []


def test_health_healthy_unhealthy_and_unreadable(arm: SimHandle, clients: AzureClients) -> None:
    probes = [{"url": arm.sim.health_url_template, "expectStatus": 200, "timeoutSeconds": 5}]
    healthy = check_vm_health_core(clients, {"vm": vmref("web-01"), "probes": probes})
    assert healthy["readError"] is None
    assert (healthy["powerState"], healthy["vmAgent"], healthy["appHealth"]) == ("running", "Ready", "healthy")
    assert healthy["probes"][0]["ok"] is True and healthy["probes"][0]["status"] == 200

    arm.sim.set_vm_state("web-01", health="Unhealthy")
    sick = check_vm_health_core(clients, {"vm": vmref("web-01"), "probes": probes})
    assert sick["appHealth"] == "unhealthy"
    assert sick["probes"][0]["ok"] is False and sick["probes"][0]["status"] == 503

    stopped = check_vm_health_core(clients, {"vm": vmref("db-01", "Linux"), "probes": []})
    assert stopped["powerState"] == "deallocated"

    missing = check_vm_health_core(clients, {"vm": vmref("nope-01"), "probes": probes})
    assert missing["readError"] and "ResourceNotFound" in missing["readError"]
    assert missing["powerState"] is None


def test_health_batch_reads_cheap_samples_in_one_graph_query_and_full_ones_per_vm(arm: SimHandle,
                                                                                 clients: AzureClients) -> None:
    """Issue 11: cheap samples of a whole wave cost one Resource Graph query by id (not one instance
    view per VM, not a list of the subscription); full ones read each VM's instance view; probes
    stay per VM. A VM Resource Graph does not have is unknown, never healthy."""
    probes = [{"url": arm.sim.health_url_template, "expectStatus": 200, "timeoutSeconds": 5}]
    arm.sim.page_size = 1  # a subscription whose VM list would take a page per VM: not read at all
    arm.sim.recorder.clear()
    cheap = check_vm_health_batch_core(clients, {"probes": probes, "checks": [
        {"vm": vmref("web-01"), "full": False}, {"vm": vmref("db-01", "Linux"), "full": False},
        {"vm": vmref("nope-01"), "full": False}]})
    ops = [r.operation for r in arm.sim.recorder.records]
    assert ops == ["arg.resources"]
    web, db, ghost = cheap["samples"]
    assert web["partial"] and web["powerState"] == "running" and web["probes"][0]["ok"] is True
    assert web["vmAgent"] is None and web["readError"] is None
    assert db["powerState"] == "deallocated"
    assert ghost["powerState"] is None and ghost["readError"] and not ghost.get("deleted")

    arm.sim.recorder.clear()
    full = check_vm_health_batch_core(clients, {"probes": [], "checks": [
        {"vm": vmref("web-01"), "full": True}, {"vm": vmref("db-01", "Linux"), "full": True}]})
    assert [r.operation for r in arm.sim.recorder.records] == ["vm.instance_view"] * 2
    assert [s.get("partial") for s in full["samples"]] == [None, None]
    assert full["samples"][0]["vmAgent"] == "Ready"


def test_a_started_install_carries_the_health_before_it_from_the_same_instance_view(
    arm: SimHandle, clients: AzureClients, arm_ledger: Ledger
) -> None:
    """Issue 11 fail fast: the baseline costs no ARM call (the once-only check reads the view)."""
    probes = [{"url": arm.sim.health_url_template, "expectStatus": 200, "timeoutSeconds": 5}]
    payload = {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0", "vm": vmref("web-02"),
               "parameters": PARAMS, "runStartedAt": START, "probes": probes}
    arm.sim.recorder.clear()
    with arm.clock.hold():
        started = start_install_core(clients, arm_ledger, payload)
    assert started["state"] == "started"
    base = started["baseline"]
    assert (base["powerState"], base["vmAgent"], base["readError"]) == ("running", "Ready", None)
    assert base["probes"][0]["ok"] is True
    ops = [r.operation for r in arm.sim.recorder.records]
    # one read of the VM with its instance view (the once-only check, the ring's rule, the baseline)
    assert ops.count("vm.get") == 1 and "vm.instance_view" not in ops and ops.count("vm.install_patches") == 1


def test_membership_is_one_graph_query_whatever_the_subscription_list_would_cost(arm: SimHandle,
                                                                                 clients: AzureClients) -> None:
    """Issue 11: a ring's members come from one Resource Graph query (its rows only), not from
    the subscription's VM list (here a page per VM)."""
    arm.sim.page_size = 1
    arm.sim.recorder.clear()
    ring0 = resolve_ring_members_core(clients, {**named_ring(plan(), "ring0")})["vms"]
    assert [v["name"] for v in ring0] == ["db-01", "web-01", "web-02"]
    # the subscription-scope read-role probe (one GET of a VM that does not exist: 404), then the query
    records = arm.sim.recorder.records
    assert [r.operation for r in records] == ["vm.get", "arg.resources"]
    assert records[0].status == 404 and "/virtualMachines/patchrings-read-probe" in records[0].path
