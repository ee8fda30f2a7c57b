"""Activity cores with fakes: cancel mapping, ledger writes and the guard's gate, VM helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from activities.ledger import (
    decision_id,
    ledger_read_gate_core,
    ledger_record_approval_core,
    ledger_record_vm_results_core,
)
from activities.maintenance import cancel_run_core
from patchrings.arm.ids import parse_resource_id, same_arm_id
from patchrings.arm.vms import app_health, dynamic_scope_matches, parse_time, vm_ref
from patchrings.clients import AzureClients
from patchrings.settings import Settings
from tests.unit.app.fakes import FakeLedger, ScriptedTransport

pytestmark = pytest.mark.unit

SUB = "11111111-2222-3333-4444-555555555555"
RUN = (f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc"
       "/providers/microsoft.maintenance/applyupdates/20261116090000")
NOT_FOUND: tuple[int, dict[str, str], Any] = (404, {}, {"error": {"code": "NotFound", "message": "no such run"}})


def clients_for(tmp_path: Path, script: list[tuple[str, str, Any]]) -> tuple[AzureClients, ScriptedTransport]:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    settings = Settings(arm_endpoint="https://127.0.0.1:8443", arm_auth="static-token", arm_static_token="t",
                        arm_ca_bundle=str(ca), ledger_connection="AccountName=a;AccountKey=b")
    transport = ScriptedTransport(script)
    return AzureClients(settings, transport=transport), transport


# ----------------------------------------------------------------------------- cancel_run
@pytest.mark.parametrize(
    ("get", "put", "expected"),
    [
        (NOT_FOUND, (200, {}, {"properties": {"status": "Cancelled"}}), "Cancelled"),
        ((200, {}, {"properties": {"status": "Pending"}}), (201, {}, {"properties": {"status": "Cancelled"}}),
         "Cancelled"),
        # The cancel PUTs straight away (no read first: the guard's time is short); a run that was
        # cancelled before answers 409 "already cancelled".
        ((200, {}, {"properties": {"status": "Cancelled"}}),
         (409, {}, {"error": {"code": "Conflict", "message": "The run is already cancelled"}}), "AlreadyCancelled"),
        ((200, {}, {"properties": {"status": "InProgress"}}),
         (409, {}, {"error": {"code": "CancellationCutoffPassed", "message": "honoured until 08:50Z"}}), "TooLate"),
        (NOT_FOUND, NOT_FOUND, "NotFound"),
    ],
)
def test_cancel_run_outcomes(tmp_path: Path, get: Any, put: Any, expected: str) -> None:
    script = [("GET", "/applyupdates/", get)]
    if put is not None:
        script.append(("PUT", "/applyupdates/", put))
    clients, transport = clients_for(tmp_path, script)
    assert cancel_run_core(clients, {"correlationId": RUN})["status"] == expected
    puts = [r for r in transport.requests if r.method == "PUT"]
    assert len(puts) == (0 if put is None else 1)
    assert [r for r in transport.requests if r.method == "GET"] == []  # no needless read before the PUT
    for request in transport.requests:
        assert request.url.startswith(f"https://127.0.0.1:8443{RUN}?api-version=2023-09-01-preview")


def test_cancel_run_raises_when_the_outcome_is_unknown(tmp_path: Path) -> None:
    clients, _ = clients_for(tmp_path, [
        ("GET", "/applyupdates/", NOT_FOUND),
        ("PUT", "/applyupdates/", (500, {}, {"error": {"code": "InternalServerError", "message": "x"}})),
    ])
    with pytest.raises(RuntimeError, match="InternalServerError"):
        cancel_run_core(clients, {"correlationId": RUN})


# ----------------------------------------------------------------------------- ledger activities
def test_guard_gate_is_fail_closed() -> None:
    ledger = FakeLedger()
    assert ledger_read_gate_core(ledger, {"correlationId": RUN, "ring": "ring1"})["authorised"] is False

    ledger.record_rollout("r1", {"state": "running"})
    ledger.record_ring_run("r1", "ring1", RUN.lower(), {"state": "authorised", "authorised": True, "at": "t"})
    gate = ledger_read_gate_core(ledger, {"correlationId": RUN, "ring": "RING1"})
    assert gate["authorised"] is True and gate["rolloutId"] == "r1"
    assert ledger_read_gate_core(ledger, {"correlationId": RUN, "ring": "ring2"})["authorised"] is False

    ledger.record_rollout("r1", {"state": "halted"})
    halted = ledger_read_gate_core(ledger, {"correlationId": RUN})
    assert halted == {"authorised": False, "rolloutId": "r1", "reason": "rollout r1 is halted"}

    ledger.record_rollout("r1", {"state": "running"})
    ledger.record_ring_run("r1", "ring1", RUN.lower(), {"state": "revoked", "authorised": False})
    revoked = ledger_read_gate_core(ledger, {"correlationId": RUN})
    assert revoked["authorised"] is False and "revoked" in revoked["reason"]


def test_approval_records_collapse_and_gate_reads_accepted_only() -> None:
    ledger = FakeLedger()
    accepted = {"rolloutId": "r1", "ring": "ring1", "manifestHash": "h1", "outcome": "accepted",
                "decision": {"approver": "bob", "verdict": "approve", "ring": "ring1", "manifestHash": "h1"},
                "at": "2026-11-16T08:00:00Z"}
    assert ledger_record_approval_core(ledger, accepted) == {"written": True}
    assert ledger_record_approval_core(ledger, dict(accepted)) == {"written": False}
    assert decision_id(accepted) == decision_id(dict(accepted))
    refused = {"rolloutId": "r1", "decisionId": "d9", "ring": "ring1", "manifestHash": "h1",
               "verdict": "reject", "outcome": "refused", "at": "2026-11-16T09:00:00Z"}
    ledger_record_approval_core(ledger, refused)
    gate = ledger_read_gate_core(ledger, {"rolloutId": "r1", "ring": "ring1", "manifestHash": "h1"})
    assert gate["decision"] == "approved" and gate["approval"]["approver"] == "bob"
    other = ledger_read_gate_core(ledger, {"rolloutId": "r1", "ring": "ring1", "manifestHash": "h2"})
    assert other["decision"] is None


def test_vm_results_carry_their_verdicts() -> None:
    ledger = FakeLedger()
    vm = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    out = ledger_record_vm_results_core(ledger, {
        "rolloutId": "r1", "ring": "ring0", "runId": "run",
        "results": [{"vm": vm, "state": "done", "result": {"status": "Succeeded"}}],
        "verdicts": [{"vm": vm.upper(), "ok": True, "reasons": []}],
    })
    assert out == {"written": True, "count": 1}
    row = ledger.vm_rows[("r1", "ring0", vm.lower())]
    assert row["verdict"]["ok"] is True and row["result"]["status"] == "Succeeded"


# ----------------------------------------------------------------------------- VM helpers
def test_vm_ref_and_ids() -> None:
    vm = {"id": f"/subscriptions/{SUB}/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/web-01",
          "name": "web-01", "location": "westeurope", "zones": ["2"],
          "properties": {"storageProfile": {"osDisk": {"osType": "windows"}},
                         "availabilitySet": {"id": "/subscriptions/x/availabilitySets/as1"},
                         "instanceView": {"statuses": [{"code": "PowerState/deallocated"}]}}}
    assert vm_ref(vm) == {"id": vm["id"], "name": "web-01", "os": "Windows", "location": "westeurope",
                          "zone": "2", "availabilitySet": "/subscriptions/x/availabilitySets/as1",
                          "powerState": "deallocated", "scheduleIssue": None, "image": None, "kind": "vm"}
    vm_id = str(vm["id"])
    rid = parse_resource_id(vm_id)
    assert (rid.subscription, rid.resource_group, rid.full_type, rid.name) == (
        SUB, "RG", "Microsoft.Compute/virtualMachines", "web-01")
    assert same_arm_id(vm_id.upper(), vm_id + "/")
    with pytest.raises(ValueError):
        parse_resource_id("not-an-id")


@pytest.mark.parametrize(
    ("filt", "expected"),
    [
        ({}, True),
        ({"resourceTypes": ["microsoft.compute/VIRTUALMACHINES"]}, True),
        ({"resourceTypes": ["Microsoft.HybridCompute/machines"]}, False),
        ({"resourceGroups": ["rg-web"], "locations": ["West Europe"], "osTypes": ["linux"]}, True),
        ({"locations": ["North Europe"]}, False),
        ({"tagSettings": {"tags": {"Ring": ["ring1"], "env": ["prod"]}, "filterOperator": "All"}}, False),
        ({"tagSettings": {"tags": {"Ring": ["ring1"], "env": ["prod"]}, "filterOperator": "Any"}}, True),
        ({"tagSettings": {"tags": {"ring": ["ring1", "ring2"]}}}, True),
    ],
)
def test_dynamic_scope_filter(filt: dict[str, Any], expected: bool) -> None:
    vm = {"id": f"/subscriptions/{SUB}/resourceGroups/RG-Web/providers/Microsoft.Compute/virtualMachines/a",
          "os": "Linux", "location": "westeurope"}
    assert dynamic_scope_matches(filt, vm, tags={"ring": "ring1", "env": "test"}) is expected


def test_app_health_sources() -> None:
    assert app_health({"vmHealth": {"status": {"code": "HealthState/unhealthy"}}}) == "unhealthy"
    ext = {"extensions": [{"type": "Microsoft.ManagedServices.ApplicationHealthLinux", "substatuses": [
        {"code": "ComponentStatus/ApplicationHealthState/healthy", "displayStatus": "healthy"}]}]}
    assert app_health(ext) == "healthy"
    assert app_health({"extensions": [{"type": "Other"}]}) is None


def test_parse_time_handles_azure_precision() -> None:
    parsed = parse_time("2020-04-24T21:02:04.2556154Z")
    assert parsed is not None and parsed.microsecond == 255615 and parsed.utcoffset() is not None
    assert parse_time("garbage") is None and parse_time(None) is None


def test_map_bounded_keeps_order_and_bounds_threads() -> None:
    import threading
    import time

    from patchrings.arm.fanout import map_bounded

    active = {"now": 0, "max": 0}
    lock = threading.Lock()

    def work(x: int) -> int:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.001)
        with lock:
            active["now"] -= 1
        return x * 2

    assert map_bounded(work, range(40), workers=3) == [x * 2 for x in range(40)]
    assert 1 <= active["max"] <= 3


def test_schedule_issue() -> None:
    from patchrings.arm.vms import schedule_issue

    def vm(mode: str, bypass: bool) -> dict[str, Any]:
        automatic = {"bypassPlatformSafetyChecksOnUserSchedule": bypass}
        settings = {"patchMode": mode, "automaticByPlatformSettings": automatic}
        return {"properties": {"osProfile": {"linuxConfiguration": {"patchSettings": settings}}}}

    assert schedule_issue(vm("AutomaticByPlatform", True)) is None
    assert "bypassPlatformSafetyChecksOnUserSchedule" in (schedule_issue(vm("AutomaticByPlatform", False)) or "")
    assert "ImageDefault" in (schedule_issue(vm("ImageDefault", True)) or "")
    assert schedule_issue({"properties": {}}) is None


# ----------------------------------------------------------------------------- check_vm_health
VM_ID = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"


@pytest.mark.parametrize(
    ("answer", "deleted"),
    [
        ((404, {}, {"error": {"code": "ResourceNotFound", "message": "gone"}}), True),
        ((403, {}, {"error": {"code": "AuthorizationFailed", "message": "no"}}), False),
    ],
)
def test_health_marks_a_deleted_vm_and_keeps_other_read_errors_unreadable(
    tmp_path: Path, answer: Any, deleted: bool
) -> None:
    from activities.compute import check_vm_health_core

    clients, _ = clients_for(tmp_path, [("GET", "/instanceView", answer)])
    sample = check_vm_health_core(clients, {"vm": {"id": VM_ID, "name": "vm1"}, "probes": []})
    assert sample["readError"]
    assert bool(sample.get("deleted")) is deleted


def test_image_family_drops_the_version() -> None:
    from patchrings.arm.vms import image_family

    market = {"properties": {"storageProfile": {"imageReference": {
        "publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2",
        "version": "latest"}}}}
    assert image_family(market) == "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2"
    definition = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/web"
    gallery = {"properties": {"storageProfile": {"imageReference": {"id": f"{definition}/versions/1.2.3"}}}}
    assert image_family(gallery) == definition
    assert image_family({"properties": {}}) is None
