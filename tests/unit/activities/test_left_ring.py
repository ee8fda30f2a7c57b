"""Resource Graph is stale; safety does not rest on it (issue 11): the install's pre-check reads the
machine live (one GET with its instance view) and re-applies the ring's rule, so a VM retagged out
of Ring 0 a moment ago -- still listed by Resource Graph -- is not installed (``left-ring``), and a
left-ring VM is never judged: not passed, not failed, not counted against the error budget."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from activities.compute import start_install_core
from activities.members import resolve_ring_members_core
from orchestrators.verdicts import gate_for, verdicts_for
from patchrings.arm import resource_graph as rg
from patchrings.domain.plan import Plan
from tests.unit.activities.graph_fake import FakeGraph
from tests.unit.app.fakes import FakeLedger
from tests.unit.app.test_arc import ARC_RG, SUB, clients_for, machine

pytestmark = pytest.mark.unit

VM_ID = f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-01"
START = "2026-11-16T06:00:00Z"
OPS = f"https://127.0.0.1:8443/subscriptions/{SUB}/providers/Microsoft.Compute/locations/westeurope"
ACCEPTED = (202, {"Azure-AsyncOperation": f"{OPS}/operations/op1", "Location": f"{OPS}/operationResults/op1",
                  "Retry-After": "1"}, None)
RING = Plan.from_dict({"version": 1, "name": "t", "rings": [
    {"name": "ring0", "patching": "direct",
     "members": {"tag": {"name": "patchRing", "value": "ring0"}, "subscriptions": [SUB]}}]}).ring("ring0")


def vm_body(ring: str) -> dict[str, Any]:
    return {"id": VM_ID, "name": "web-01", "location": "westeurope", "tags": {"patchRing": ring},
            "properties": {"storageProfile": {"osDisk": {"osType": "Windows"}},
                           "instanceView": {"statuses": [{"code": "PowerState/running"}],
                                            "vmAgent": {"statuses": [{"displayStatus": "Ready"}]}}}}


def start(clients: Any, ledger: FakeLedger, vm: dict[str, Any]) -> dict[str, Any]:
    return start_install_core(clients, ledger, {
        "rolloutId": "r", "ring": "ring0", "runId": "r:ring0", "runStartedAt": START, "now": START, "vm": vm,
        "parameters": {"rebootSetting": "IfRequired", "windowsParameters": {}},
        "memberRule": RING.members.to_dict()})


def test_a_vm_retagged_out_while_resource_graph_still_lists_it_is_not_installed(tmp_path: Path) -> None:
    stale = FakeGraph([vm_body("ring0")])  # Resource Graph: as the VM was a moment ago
    listed = resolve_ring_members_core(None, {"ring": "ring0", "ringSpec": RING.to_dict()},  # type: ignore[arg-type]
                                       send=stale.send, gate=rg.QuotaGate())["vms"]
    assert [v["name"] for v in listed] == ["web-01"]
    clients, transport = clients_for(tmp_path, [
        ("GET", "/virtualMachines/web-01?", (200, {}, vm_body("none"))),  # live: retagged out
        ("POST", "/installPatches", ACCEPTED),
    ])
    ledger = FakeLedger()
    answer = start(clients, ledger, listed[0])
    assert answer["state"] == "left-ring" and answer["token"] is None
    assert answer["error"]["code"] == "LeftRing" and "'none' now" in answer["error"]["message"]
    assert [r.method for r in transport.requests] == ["GET"]  # one read, nothing sent
    assert "instanceview" in transport.requests[0].url.lower()  # the model and its instance view in one GET
    assert (ledger.install("r:ring0", VM_ID) or {})["state"] == "left-ring"  # the ledger says why
    again = start(clients, ledger, listed[0])  # a re-run answers the same, without a read
    assert again["state"] == "left-ring" and len(transport.requests) == 1


def test_a_vm_still_in_the_ring_is_installed_after_one_read(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [
        ("GET", "/virtualMachines/web-01?", (200, {}, vm_body("ring0"))),
        ("POST", "/installPatches", ACCEPTED),
    ])
    answer = start(clients, FakeLedger(), {"id": VM_ID, "name": "web-01", "os": "Windows"})
    assert answer["state"] == "started" and answer["token"]
    assert [r.method for r in transport.requests] == ["GET", "POST"]
    assert answer["baseline"]["powerState"] == "running" and answer["baseline"]["vmAgent"] == "Ready"


def test_an_arc_machine_retagged_out_is_not_installed(tmp_path: Path) -> None:
    moved = copy.deepcopy(machine("srv-01", "ring0"))
    moved["tags"] = {"patchRing": "ring9"}
    clients, transport = clients_for(tmp_path, [
        ("GET", "/machines/srv-01?", (200, {}, moved)),
        ("POST", "/providers/Microsoft.ResourceGraph/resources",
         (200, {}, {"totalRecords": 0, "count": 0, "resultTruncated": "false", "data": []})),
        ("POST", "/machines/srv-01/installPatches", (202, {"Location": f"{OPS}/x"}, None)),
    ])
    answer = start(clients, FakeLedger(), {"id": f"{ARC_RG}/srv-01", "name": "srv-01", "kind": "arc",
                                           "os": "Windows"})
    assert answer["state"] == "left-ring"
    assert not [r for r in transport.requests if "installPatches" in r.url]


def test_a_left_ring_vm_is_not_judged_nor_counted() -> None:
    spec = RING.to_dict()
    vms = [{"id": f"{VM_ID}{i}", "name": f"web-0{i}", "os": "Windows"} for i in range(3)]
    installs = [{"vm": vms[0]["id"], "state": "left-ring", "result": None, "error": {"code": "LeftRing"}},
                {"vm": vms[1]["id"], "state": "refused", "result": None, "error": {"code": "Conflict"}},
                {"vm": vms[2]["id"], "state": "left-ring", "result": None, "error": {"code": "LeftRing"}}]
    verdicts = verdicts_for(spec, "ring0", vms, installs, {})
    assert [v["vm"] for v in verdicts] == [vms[1]["id"]]
    gate = gate_for(spec, "ring0", verdicts)
    assert gate["counts"]["total"] == 1 and gate["outcome"] == "fail"
    # a ring whose every member left is not a pass: nothing was proven
    assert gate_for(spec, "ring0", verdicts_for(spec, "ring0", [vms[0]], installs[:1], {}))["outcome"] \
        == "inconclusive"
