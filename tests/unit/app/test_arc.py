"""Arc-enabled servers in the activity cores (issue 12), driven through the real SDK clients
(azure-mgmt-compute / -hybridcompute / -maintenance / -resourcegraph) over a scripted transport.

What is proven here: a ring's members are VMs *and* Arc machines (tag selector, resource-level
assignments, dynamic scopes whose resourceTypes name HybridCompute) with ``kind``; installPatches
on an Arc machine goes to HybridCompute once, with the spec's parameters, after a Connected
check, and is never sent to a disconnected one; its result (no patch list, ``errorDetails``) is
completed from Resource Graph rows, waits while they are late and ends *without* patch detail
(never a pass) after the grace; Arc health samples come from one machine list per subscription.
Wire shapes follow arc-and-resource-graph.md §2.3 / §2.6 / §5.2 / §5.3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from activities.arc import ARG_ROWS_GRACE
from activities.compute import (
    check_vm_health_core,
    poll_assess_core,
    poll_install_core,
    resolve_ring_members_core,
    start_assess_core,
    start_install_core,
)
from activities.health import check_vm_health_batch_core
from patchrings.arm.machines import arc_install_parameters, arc_ref, install_result
from patchrings.arm.vms import dynamic_scope_matches, parse_time
from patchrings.clients import AzureClients
from patchrings.domain.plan import Plan
from patchrings.domain.results import classify_install
from patchrings.settings import Settings
from tests.ring_inputs import named_ring
from tests.unit.activities.graph_fake import FakeGraph
from tests.unit.app.fakes import FakeLedger, ScriptedTransport

pytestmark = pytest.mark.unit

SUB = "11111111-2222-3333-4444-555555555555"
ARC_RG = f"/subscriptions/{SUB}/resourceGroups/rg-onprem/providers/Microsoft.HybridCompute/machines"
VM_RG = f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines"
START = "2026-11-16T06:00:00Z"
ENDED = "2026-11-16T06:40:00Z"
PLAN = Plan.from_dict({
    "version": 1, "name": "arc-test",
    "rings": [
        {"name": "ring0", "patching": "direct",
         "members": {"tag": {"name": "ring", "value": "ring0"}, "subscriptions": [SUB]}},
        {"name": "ring1", "patching": "scheduled", "open": {"mode": "retag"},
         "members": {"tag": {"name": "ring", "value": "ring1", "holdValue": "ring1-hold"},
                     "maintenanceConfigurationId": f"/subscriptions/{SUB}/resourceGroups/rg-maint/providers/"
                                                   "Microsoft.Maintenance/maintenanceConfigurations/ring1"}},
    ],
}).to_dict()
PARAMS = {"rebootSetting": "IfRequired", "maximumDuration": "PT2H",
          "windowsParameters": {"classificationsToInclude": ["Critical", "Security", "UpdateRollup"],
                                "kbNumbersToInclude": ["5031364"], "maxPatchPublishDate": START},
          "linuxParameters": {"classificationsToInclude": ["Critical"], "maintenanceRunId": "x"}}


def clients_for(tmp_path: Path, script: list[tuple[str, str, Any]]) -> tuple[AzureClients, ScriptedTransport]:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    settings = Settings(arm_endpoint="https://127.0.0.1:8443", arm_auth="static-token", arm_static_token="t",
                        arm_ca_bundle=str(ca), ledger_connection="AccountName=a;AccountKey=b")
    transport = ScriptedTransport([*script, VM_LIST])
    return AzureClients(settings, transport=transport), transport


#: Member resolution's read-role probe (``activities.members.read_probe``): a VM in a resource
#: group that does not exist, 404 as ARM answers an identity that may read the subscription's
#: VMs; answered unless a test scripts it first (a 403, say).
VM_LIST = ("GET", "/resourceGroups/patchrings-read-probe/", (404, {}, {"error": {
    "code": "ResourceGroupNotFound", "message": "Resource group 'patchrings-read-probe' could not be found."}}))


def machine(name: str, ring: str | None, *, status: str = "Connected", os_type: str = "windows") -> dict[str, Any]:
    return {"id": f"{ARC_RG}/{name}", "name": name, "type": "Microsoft.HybridCompute/machines",
            "location": "westeurope", "tags": {"ring": ring} if ring else {},
            "properties": {"status": status, "lastStatusChange": "2026-11-16T05:00:00Z", "osType": os_type,
                           "osName": "Windows Server 2022 Datacenter" if os_type == "windows" else "ubuntu",
                           "osVersion": "10.0.20348", "agentVersion": "1.47", "provisioningState": "Succeeded"}}


def vm(name: str, ring: str | None) -> dict[str, Any]:
    return {"id": f"{VM_RG}/{name}", "name": name, "location": "westeurope", "tags": {"ring": ring} if ring else {},
            "properties": {"storageProfile": {"osDisk": {"osType": "Windows"}},
                           "instanceView": {"statuses": [{"code": "PowerState/running"}]}}}


def arc_member(name: str, os_name: str = "Windows") -> dict[str, Any]:
    return {"id": f"{ARC_RG}/{name}", "name": name, "kind": "arc", "os": os_name}


def listing(*machines: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    return 200, {}, {"value": list(machines)}


def body_of(request: Any) -> Any:
    raw = request.body if request.body is not None else b""
    return json.loads(raw) if raw else None


# ----------------------------------------------------------------------------- pure helpers
def test_arc_ref_and_parameters_follow_the_spec() -> None:
    ref = arc_ref(machine("srv-01", "ring0"))
    assert ref["kind"] == "arc" and ref["os"] == "Windows" and ref["powerState"] is None
    assert ref["agentStatus"] == "Connected" and ref["scheduleIssue"] is None
    assert ref["image"] == "arc:Windows Server 2022 Datacenter 10.0.20348"
    assert "Disconnected" in arc_ref(machine("srv-02", "ring0", status="Disconnected"))["scheduleIssue"]
    params = arc_install_parameters(PARAMS)
    # spec spellings (UpdateRollUp), no Compute-only Linux maintenanceRunId (§2.5)
    assert params["windowsParameters"]["classificationsToInclude"] == ["Critical", "Security", "UpdateRollUp"]
    assert params["linuxParameters"] == {"classificationsToInclude": ["Critical"]}
    assert params["maximumDuration"] == "PT2H" and params["rebootSetting"] == "IfRequired"


def test_dynamic_scope_selects_arc_only_when_its_resource_types_name_hybridcompute() -> None:
    ref = arc_ref(machine("srv-01", "ring1"))
    tags = {"ring": "ring1"}
    by_tag = {"tagSettings": {"tags": {"ring": ["ring1"]}, "filterOperator": "All"}}
    assert dynamic_scope_matches({**by_tag, "resourceTypes": ["Microsoft.HybridCompute/machines"]}, ref, tags=tags)
    assert not dynamic_scope_matches({**by_tag, "resourceTypes": ["Microsoft.Compute/virtualMachines"]}, ref,
                                     tags=tags)
    vm_ref_ = {"id": f"{VM_RG}/app-01", "kind": "vm", "os": "Windows"}
    assert not dynamic_scope_matches({**by_tag, "resourceTypes": ["Microsoft.HybridCompute/machines"]}, vm_ref_,
                                     tags=tags)


def test_an_arc_result_without_patch_rows_never_passes_and_errordetails_fail_it() -> None:
    lro = {"status": "Succeeded", "installedPatchCount": 2, "rebootStatus": "Completed", "errorDetails": None}
    without = install_result(lro, None, missing_reason="rows late")
    assert "patches" not in without and without["patchDetail"] == "rows late"
    assert classify_install(without).outcome == "inconclusive"
    rows = [{"name": "KB1", "kbId": "1", "classifications": ["Security"], "installationState": "Installed"}]
    assert classify_install(install_result(lro, rows)).outcome == "ok"
    failed = install_result({"status": "Failed", "errorDetails": [{"code": "PatchFailed", "message": "boom"}]}, [])
    assert failed["error"]["code"] == "PatchFailed" and classify_install(failed).outcome == "failed"


# ----------------------------------------------------------------------------- membership
def graph_of(*resources: dict[str, Any]) -> tuple[str, str, Any]:
    """Resource Graph's ``resources`` table over these VMs / machines (issue 11: members come from it)."""
    return ("POST", "/providers/Microsoft.ResourceGraph/resources", FakeGraph(resources).responder)


def test_a_tag_ring_holds_vms_and_arc_machines_with_their_kind(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [graph_of(
        vm("web-01", "ring0"), vm("web-02", None), machine("srv-01", "ring0"),
        machine("srv-02", "ring0", status="Disconnected", os_type="linux"), machine("srv-03", "ring1"))])
    members = resolve_ring_members_core(clients, named_ring(PLAN, "ring0"))["vms"]
    assert [(m["name"], m["kind"]) for m in members] == [("srv-01", "arc"), ("srv-02", "arc"), ("web-01", "vm")]
    assert members[1]["os"] == "Linux" and members[1]["agentStatus"] == "Disconnected"
    # one Resource Graph query for VMs and Arc machines together, no list of either
    assert [urlsplit(r.url).path for r in transport.requests] == [  # the read-role probe, then the one query
        f"/subscriptions/{SUB}/resourceGroups/patchrings-read-probe/providers/Microsoft.Compute/"
        "virtualMachines/patchrings-read-probe",
        "/providers/Microsoft.ResourceGraph/resources"]
    assert "microsoft.hybridcompute/machines" in body_of(transport.requests[1])["query"]


def test_a_subscription_without_arc_machines_has_vm_members_only(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [graph_of(vm("web-01", "ring0"))])
    assert [m["kind"] for m in resolve_ring_members_core(clients, named_ring(PLAN, "ring0"))["vms"]] == ["vm"]
    assert not [r for r in transport.requests if "HybridCompute" in r.url]


def test_a_resource_graph_query_that_fails_fails_the_resolution(tmp_path: Path) -> None:
    clients, _ = clients_for(tmp_path, [
        ("POST", "/providers/Microsoft.ResourceGraph/resources",
         (403, {}, {"error": {"code": "AuthorizationFailed", "message": "no"}})),
    ])
    with pytest.raises(Exception, match=r"AuthorizationFailed"):
        resolve_ring_members_core(clients, named_ring(PLAN, "ring0"))


def test_configuration_members_include_arc_machines_of_a_dynamic_scope(tmp_path: Path) -> None:
    config = PLAN["rings"][1]["members"]["maintenanceConfigurationId"]
    scope = {"id": f"/subscriptions/{SUB}/providers/Microsoft.Maintenance/configurationAssignments/ds",
             "properties": {"maintenanceConfigurationId": config, "filter": {
                 "resourceTypes": ["Microsoft.HybridCompute/machines"],
                 "tagSettings": {"tags": {"ring": ["ring1-open"]}, "filterOperator": "Any"}}}}
    clients, _ = clients_for(tmp_path, [
        graph_of(vm("app-01", "ring1-open"), machine("srv-09", "ring1-open")),
        ("GET", "/configurationAssignments?", (200, {}, {"value": [scope]})),
        ("GET", "/configurationAssignments/", (404, {}, {"error": {"code": "NotFound", "message": "none"}})),
    ])
    members = resolve_ring_members_core(clients, named_ring(PLAN, "ring1"))["vms"]
    assert [(m["name"], m["kind"]) for m in members] == [("srv-09", "arc")]


# ----------------------------------------------------------------------------- install
def _arg_rows(request: Any, rows: list[dict[str, Any]], patches: list[dict[str, Any]]) -> tuple[int, dict, Any]:
    query = body_of(request)["query"]
    data = patches if "softwarepatches" in query else rows
    return 200, {"x-ms-user-quota-remaining": "14", "x-ms-user-quota-resets-after": "00:00:05"}, {
        "totalRecords": len(data), "count": len(data), "resultTruncated": "false", "facets": [], "data": data}


SUMMARY_ID = f"{ARC_RG}/srv-01/patchInstallationResults/68f8b292-dfc2-4646-9781-33cc88631968"


def _summary_row() -> dict[str, Any]:
    return {"id": SUMMARY_ID, "machineId": f"{ARC_RG}/srv-01".lower(), "run": "68f8b292-dfc2-4646-9781-33cc88631968",
            "properties": {"status": "Succeeded", "installationActivityId": "68f8b292-dfc2-4646-9781-33cc88631968",
                           "installedPatchCount": 1, "failedPatchCount": 0, "pendingPatchCount": 0,
                           "rebootStatus": "Completed", "startDateTime": "2026-11-16T06:10:00Z",
                           "lastModifiedDateTime": ENDED}}


PATCH_ROW = {"id": f"{SUMMARY_ID}/softwarePatches/kb5031364", "run": "68f8b292-dfc2-4646-9781-33cc88631968",
             "properties": {"patchName": "2023-11 Cumulative Update", "kbId": "5031364",
                            "classifications": ["Security"], "installationState": "Installed"}}
LRO_RESULT = {"status": "Succeeded", "installationActivityId": "68f8b292-dfc2-4646-9781-33cc88631968",
              "installedPatchCount": 1, "failedPatchCount": 0, "pendingPatchCount": 0, "excludedPatchCount": 0,
              "notSelectedPatchCount": 0, "rebootStatus": "Completed", "maintenanceWindowExceeded": False,
              "startDateTime": "2026-11-16T06:10:00Z", "lastModifiedDateTime": ENDED, "startedBy": "User",
              "patchServiceUsed": "WU", "osType": "Windows", "errorDetails": None}
OP_URL = f"https://127.0.0.1:8443/subscriptions/{SUB}/providers/Microsoft.HybridCompute/locations/westeurope/" \
         "updateCenterOperationResults/op1?api-version=2026-07-15"


def test_arc_install_is_sent_once_through_hybridcompute_and_completed_from_resource_graph(tmp_path: Path) -> None:
    graph: dict[str, list[dict[str, Any]]] = {"rows": [], "patches": []}
    operation: list[tuple[int, dict[str, str], Any]] = [(202, {"Retry-After": "1"}, None)]
    clients, transport = clients_for(tmp_path, [
        ("GET", "/machines/srv-01?", (200, {}, machine("srv-01", "ring0"))),
        ("POST", "/machines/srv-01/installPatches", (202, {"Location": OP_URL, "Retry-After": "1"}, None)),
        ("GET", "/updateCenterOperationResults/op1", lambda r: operation[0]),
        ("POST", "/providers/Microsoft.ResourceGraph/resources",
         lambda r: _arg_rows(r, graph["rows"], graph["patches"])),
    ])
    ledger = FakeLedger()
    payload = {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0", "vm": arc_member("srv-01"),
               "parameters": PARAMS, "runStartedAt": START, "now": START, "probes": []}
    started = start_install_core(clients, ledger, payload)
    assert started["state"] == "started" and started["token"]
    assert started["baseline"]["kind"] == "arc" and started["baseline"]["agentStatus"] == "Connected"
    posts = [r for r in transport.requests if r.method == "POST" and "installPatches" in r.url]
    assert len(posts) == 1
    assert parse_qs(urlsplit(posts[0].url).query)["api-version"] == ["2026-07-15"]
    sent = body_of(posts[0])
    assert sent["windowsParameters"]["classificationsToInclude"] == ["Critical", "Security", "UpdateRollUp"]
    assert "maintenanceRunId" not in sent["linuxParameters"]
    # a re-run of the activity does not POST again
    assert start_install_core(clients, ledger, payload)["state"] == "already-started"
    assert len([r for r in transport.requests if r.method == "POST" and "installPatches" in r.url]) == 1

    poll = {"runId": "r1:ring0", "runStartedAt": START, "vm": arc_member("srv-01"), "token": started["token"]}
    assert poll_install_core(clients, ledger, {**poll, "now": "2026-11-16T06:20:00Z"})["done"] is False
    operation[0] = (200, {}, LRO_RESULT)
    late = poll_install_core(clients, ledger, {**poll, "now": "2026-11-16T06:41:00Z"})  # ARG has no rows yet
    assert late["done"] is False and late["error"]["code"] == "PatchRowsMissing"
    graph["rows"], graph["patches"] = [_summary_row()], [PATCH_ROW]
    before = len([r for r in transport.requests if "ResourceGraph" in r.url])
    done = poll_install_core(clients, ledger, {**poll, "now": "2026-11-16T06:45:00Z"})
    # the run GUID is the LRO's installationActivityId: one per-patch query, no summary query
    assert len([r for r in transport.requests if "ResourceGraph" in r.url]) - before == 1
    assert done["done"] is True and done["error"] is None
    result = done["result"]
    assert result["patches"] == [{"patchId": "kb5031364", "name": "2023-11 Cumulative Update", "version": None,
                                  "kbId": "5031364", "classifications": ["Security"], "installationState": "Installed"}]
    assert result["rebootStatus"] == "Completed" and classify_install(result).outcome == "ok"
    queries = [body_of(r)["query"] for r in transport.requests if "ResourceGraph" in r.url]
    assert all("'" + f"{ARC_RG}/srv-01".lower() + "'" in q for q in queries if "machineId in~" in q)


def test_arc_rows_that_never_arrive_end_inconclusive_after_the_grace(tmp_path: Path) -> None:
    clients, _ = clients_for(tmp_path, [
        ("GET", "/updateCenterOperationResults/op1", (200, {}, LRO_RESULT)),
        ("POST", "/providers/Microsoft.ResourceGraph/resources", lambda r: _arg_rows(r, [], [])),
    ])
    ledger = FakeLedger()
    token_clients, _ = clients_for(tmp_path, [
        ("GET", "/machines/srv-01?", (200, {}, machine("srv-01", "ring0"))),
        ("POST", "/machines/srv-01/installPatches", (202, {"Location": OP_URL}, None)),
        ("POST", "/providers/Microsoft.ResourceGraph/resources", lambda r: _arg_rows(r, [], [])),
    ])
    started = start_install_core(token_clients, ledger, {"runId": "r2", "vm": arc_member("srv-01"),
                                                         "parameters": PARAMS, "runStartedAt": START})
    ended = parse_time(ENDED)
    assert ended is not None
    after = ended + ARG_ROWS_GRACE
    done = poll_install_core(clients, ledger, {"runId": "r2", "runStartedAt": START, "vm": arc_member("srv-01"),
                                               "token": started["token"], "now": after.isoformat()})
    assert done["done"] is True and "patches" not in done["result"]
    verdict = classify_install(done["result"])
    assert verdict.outcome == "inconclusive", verdict


def test_a_disconnected_arc_machine_is_never_sent_an_install(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [
        ("GET", "/machines/srv-02?", (200, {}, machine("srv-02", "ring0", status="Expired"))),
    ])
    ledger = FakeLedger()
    out = start_install_core(clients, ledger, {"runId": "r3", "vm": arc_member("srv-02"), "parameters": PARAMS,
                                               "runStartedAt": START})
    assert out["state"] == "refused" and out["error"]["code"] == "ArcAgentNotConnected"
    assert out["error"]["unreachable"] is True and out["error"]["retryable"] is False
    assert not [r for r in transport.requests if r.method == "POST"] and ledger.installs == {}


def test_an_install_resource_graph_already_shows_is_not_sent_again(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [
        ("GET", "/machines/srv-01?", (200, {}, machine("srv-01", "ring0"))),
        ("POST", "/providers/Microsoft.ResourceGraph/resources",
         lambda r: _arg_rows(r, [_summary_row()], [PATCH_ROW])),
    ])
    out = start_install_core(clients, FakeLedger(), {"runId": "r4", "vm": arc_member("srv-01"),
                                                     "parameters": PARAMS, "runStartedAt": START})
    assert out["state"] == "already-done"
    assert not [r for r in transport.requests if "installPatches" in r.url]


def test_arc_assess_reports_compute_shaped_counts(tmp_path: Path) -> None:
    assess = {"status": "Succeeded", "assessmentActivityId": "a1", "rebootPending": True,
              "availablePatchCountByClassification": {"critical": 1, "security": 2, "updateRollup": 1, "updates": 3},
              "errorDetails": None}
    clients, _ = clients_for(tmp_path, [
        ("POST", "/machines/srv-01/assessPatches", (202, {"Location": OP_URL}, None)),
        ("GET", "/updateCenterOperationResults/op1", (200, {}, assess)),
    ])
    started = start_assess_core(clients, {"vm": arc_member("srv-01")})
    assert started["state"] == "started"
    polled = poll_assess_core(clients, {"vm": arc_member("srv-01"), "token": started["token"]})
    assert polled["done"] and polled["result"]["criticalAndSecurityPatchCount"] == 3
    assert polled["result"]["otherPatchCount"] == 4


# ----------------------------------------------------------------------------- health
def test_arc_health_samples_come_from_one_list_per_subscription(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [
        ("GET", "/Microsoft.HybridCompute/machines", listing(
            machine("srv-01", "ring0"), machine("srv-02", "ring0", status="Disconnected"))),
        ("GET", "/virtualMachines/web-01/instanceView",
         (200, {}, {"statuses": [{"code": "PowerState/running"}],
                    "vmAgent": {"statuses": [{"displayStatus": "Ready"}]}})),
    ])
    checks = [{"vm": arc_member("srv-01"), "full": True}, {"vm": arc_member("srv-02"), "full": False},
              {"vm": arc_member("srv-gone"), "full": True},
              {"vm": {"id": f"{VM_RG}/web-01", "name": "web-01", "os": "Windows"}, "full": True}]
    samples = check_vm_health_batch_core(clients, {"checks": checks, "probes": []},
                                         http_get=lambda u, t: (200, "ok"))["samples"]
    assert [s.get("agentStatus") for s in samples[:3]] == ["Connected", "Disconnected", None]
    assert samples[0]["kind"] == "arc" and samples[0]["os"] == "Windows Server 2022 Datacenter 10.0.20348"
    assert samples[2]["deleted"] is True and samples[3]["vmAgent"] == "Ready"
    assert len([r for r in transport.requests if "HybridCompute" in r.url]) == 1

    from patchrings.domain.health import HealthPolicy, HealthSample, evaluate_sample

    policy = HealthPolicy()
    assert evaluate_sample(policy, HealthSample.from_dict(samples[0]))[0] == "healthy"
    state, reasons = evaluate_sample(policy, HealthSample.from_dict(samples[1]))
    assert state == "unknown" and "Disconnected" in reasons[0]


def test_check_vm_health_reads_one_arc_machine_with_a_get(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [
        ("GET", "/machines/srv-01?", (200, {}, machine("srv-01", "ring0", status="Expired"))),
    ])
    sample = check_vm_health_core(clients, {"vm": arc_member("srv-01"), "probes": []})
    assert sample["agentStatus"] == "Expired" and sample["lastStatusChange"] == "2026-11-16T05:00:00Z"
    assert len(transport.requests) == 1


def test_a_few_arc_canaries_in_a_large_subscription_are_read_one_by_one(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from activities import arc

    monkeypatch.setitem(arc._ARC_PAGES, SUB.lower(), 5)  # the last list took 5 pages
    clients, transport = clients_for(tmp_path, [
        ("GET", "/machines/srv-01?", (200, {}, machine("srv-01", "ring0"))),
        ("GET", "/machines/srv-02?", (200, {}, machine("srv-02", "ring0"))),
    ])
    checks = [{"vm": arc_member("srv-01"), "full": True}, {"vm": arc_member("srv-02"), "full": False}]
    samples = check_vm_health_batch_core(clients, {"checks": checks, "probes": []})["samples"]
    assert [s["agentStatus"] for s in samples] == ["Connected", "Connected"]
    assert len(transport.requests) == 2  # two GETs, not five list pages
