"""Contract tests: the real azure-mgmt-hybridcompute 10.0.0 client against the simulator's Arc provider.

Shapes from /work/shared/reference/arc-and-resource-graph.md: machine §2.3 (checked against the
SDK's ``Machine`` model; the spec example ``Machines_Get.json`` itself is not in this repository,
so field names are checked through the SDK's deserialisation, not byte for byte), results §2.6
(the spec examples quoted there: key sets compared exactly), LRO §2.7 (202 with only ``Location``
+ ``Retry-After``; the real poll URL is undocumented, so only its being absolute and followed by
the SDK is checked), RBAC actions §2.9. Time moves only through the held skip clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from tests.emulator.arm.conftest import SUB, Running, base_scenario

pytestmark = pytest.mark.emulator

MC_ID = f"/subscriptions/{SUB}/resourcegroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations"
ARC_IDS = f"/subscriptions/{SUB}/resourceGroups/rg-arc/providers/Microsoft.HybridCompute/machines"

# The spec examples' keys (§2.6, Machine_InstallPatches.json / Machine_AssessPatches.json @a2fab2a)
INSTALL_KEYS = {"errorDetails", "excludedPatchCount", "failedPatchCount", "installationActivityId",
                "installedPatchCount", "lastModifiedDateTime", "maintenanceWindowExceeded", "notSelectedPatchCount",
                "osType", "pendingPatchCount", "rebootStatus", "startDateTime", "startedBy", "status"}
# the example omits patchServiceUsed, which the spec's MachineInstallPatchesResult defines
INSTALL_EXTRA = {"patchServiceUsed"}
ASSESS_KEYS = {"assessmentActivityId", "availablePatchCountByClassification", "errorDetails",
               "lastModifiedDateTime", "osType", "rebootPending", "startDateTime", "startedBy", "status"}


def arc_scenario(**extra: Any) -> dict[str, Any]:
    scenario = base_scenario(**extra)
    scenario["subscriptions"][0]["resourceGroups"].append({
        "name": "rg-arc",
        "location": "westeurope",
        "arcMachines": [
            {"name": "arc-win-01", "os": "Windows", "kind": "AWS", "tags": {"patchRing": "ring0"}},
            {"name": "arc-lin-01", "os": "Linux", "tags": {"patchRing": "ring1"}, "osSku": "Ubuntu 24.04 LTS"},
            {"name": "arc-off-01", "os": "Windows", "status": "Disconnected",
             "lastStatusChange": "2026-11-15T22:00:00Z", "tags": {"patchRing": "ring0"}},
        ],
    })
    return scenario


def hc(arm: Running) -> Any:
    from azure.mgmt.hybridcompute import HybridComputeManagementClient

    kw = arm.kwargs()
    return HybridComputeManagementClient(kw.pop("credential"), SUB, **kw)


def lro(arm: Running, poller: Any) -> Any:
    ops = arm.sim.arc_operations
    arm.advance_until(lambda: poller.done() or not any(o.status == "InProgress" for o in list(ops.values())))
    return poller.result()


class Responses:
    """``raw_response_hook``: every HTTP response the SDK saw, in order."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, pipeline_response: Any) -> None:
        self.seen.append(pipeline_response.http_response)


def test_get_and_list_machines_with_agent_status_os_and_tags(arm_factory):
    arm = arm_factory(arc_scenario(paging={"pageSize": 2}))
    client = hc(arm)
    machine = client.machines.get("rg-arc", "arc-win-01")
    assert machine.id == f"{ARC_IDS}/arc-win-01"
    assert machine.type == "Microsoft.HybridCompute/machines"
    assert machine.kind == "AWS"
    assert machine.tags == {"patchRing": "ring0"}
    assert machine.properties.status == "Connected"
    assert machine.properties.os_type == "windows"
    assert machine.properties.os_name == "windows"
    assert machine.properties.os_sku == "Windows Server 2022 Datacenter"
    assert machine.properties.agent_version
    assert machine.properties.last_status_change is not None
    assert machine.properties.os_profile.windows_configuration.patch_settings.assessment_mode == "AutomaticByPlatform"
    off = client.machines.get("rg-arc", "arc-off-01", expand="instanceView")
    assert off.properties.status == "Disconnected"
    assert off.properties.last_status_change.isoformat().startswith("2026-11-15T22:00:00")
    # paged lists follow nextLink (page size 2, three machines)
    assert sorted(m.name for m in client.machines.list_by_resource_group("rg-arc")) == [
        "arc-lin-01", "arc-off-01", "arc-win-01"]
    assert len(list(client.machines.list_by_subscription())) == 3
    # the Compute API does not see Arc machines, and the HybridCompute API does not see VMs
    assert sorted(vm.name for vm in arm.compute().virtual_machines.list_all()) == [
        "lin-01", "lin-02", "win-01", "win-02"]
    with pytest.raises(ResourceNotFoundError):
        client.machines.get("rg-fleet", "win-01")
    with pytest.raises(ResourceNotFoundError):
        arm.compute().virtual_machines.get("rg-arc", "arc-win-01")
    extensions = {e.name for e in client.machine_extensions.list("rg-arc", "arc-win-01")}
    assert extensions == {"WindowsPatchExtension", "WindowsOsUpdateExtension"}
    # the agent status moves at run time, with lastStatusChange
    arm.advance_to(arm.now() + timedelta(minutes=5))
    arm.sim.set_vm_state("arc-win-01", agent_status="Expired")
    again = client.machines.get("rg-arc", "arc-win-01")
    assert again.properties.status == "Expired"
    assert again.properties.last_status_change == arm.now()
    with pytest.raises(ValueError, match="agentStatus"):
        arm.sim.set_vm_state("win-01", agent_status="Disconnected")
    # PATCH tags (Microsoft.HybridCompute/machines/write) and tags at scope both work on machines
    client.machines.update("rg-arc", "arc-lin-01", {"tags": {"patchRing": "ring2"}})
    assert arm.sim.vm("arc-lin-01").tags == {"patchRing": "ring2"}
    from azure.mgmt.resource.resources.models import Tags, TagsPatchResource

    arm.resources().tags.begin_update_at_scope(
        f"{ARC_IDS}/arc-lin-01", TagsPatchResource(operation="Merge", properties=Tags(tags={"owner": "ops"}))
    ).result()
    assert client.machines.get("rg-arc", "arc-lin-01").tags == {"patchRing": "ring2", "owner": "ops"}
    actions = {r.action for r in arm.sim.recorder.records}
    assert {"Microsoft.HybridCompute/machines/read", "Microsoft.HybridCompute/machines/write",
            "Microsoft.HybridCompute/machines/extensions/read", "Microsoft.Resources/tags/write"} <= actions


def test_install_patches_lro_arc_shapes_once_only_and_actions(arm_factory):
    arm = arm_factory(arc_scenario())
    client = hc(arm)
    seen = Responses()
    poller = client.machines.begin_install_patches(
        "rg-arc", "arc-win-01",
        {"maximumDuration": "PT02H00M00S", "rebootSetting": "IfRequired",
         "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]}},
        raw_response_hook=seen,
    )
    first = seen.seen[0]
    assert first.status_code == 202
    assert first.headers["Location"].startswith(arm.sim.endpoint + f"/subscriptions/{SUB}/providers/"
                                                "Microsoft.HybridCompute/locations/westeurope/"
                                                "updateCenterOperationResults/")
    assert first.headers["Retry-After"] == "1"
    assert "Azure-AsyncOperation" not in first.headers
    # once-only: a second install while the first runs is refused (409 -> ResourceExistsError)
    with pytest.raises(ResourceExistsError):
        client.machines.begin_install_patches("rg-arc", "arc-win-01",
                                              {"maximumDuration": "PT2H", "rebootSetting": "IfRequired"})
    result = lro(arm, poller)
    assert result.status == "Succeeded"
    assert result.installed_patch_count == 2 and result.failed_patch_count == 0
    assert result.not_selected_patch_count == 1
    assert result.reboot_status == "Completed"
    assert result.started_by == "User" and result.os_type == "Windows" and result.patch_service_used == "WU"
    assert result.error_details is None
    raw = result.as_dict()
    assert set(raw) == INSTALL_KEYS | INSTALL_EXTRA  # exactly the spec's fields: no patches[], no error
    assert arm.sim.vm("arc-win-01").installed == {"KB5048667", "KB5048654"}
    assert arm.sim.vm("arc-win-01").install_count == 1
    # the poll answered 202 while running, then 200 with the body
    polls = [r for r in arm.sim.recorder.records if r.operation == "hc.operation_result"]
    assert [p.status for p in polls][-1] == 200 and all(p.status in (200, 202) for p in polls)
    actions = {r.action for r in arm.sim.recorder.records if r.status < 400}
    assert {"Microsoft.HybridCompute/machines/installPatches/action",
            "Microsoft.HybridCompute/locations/updateCenterOperationResults/read"} <= actions
    # a continuation token resumes against the finished record
    token = client.machines.begin_install_patches("rg-arc", "arc-win-01", {
        "maximumDuration": "PT1H", "rebootSetting": "Never",
        "windowsParameters": {"classificationsToInclude": ["Definition"]}}).continuation_token()
    resumed = client.machines.begin_install_patches("rg-arc", "arc-win-01", None, continuation_token=token)
    assert lro(arm, resumed).installed_patch_count == 1


def test_install_errors_failures_and_disconnected_agent(arm_factory):
    arm = arm_factory(arc_scenario(faults=[{"type": "patchFails", "patch": "KB5048667", "vms": ["arc-win-01"]}]))
    client = hc(arm)
    # validation: both parameters required, the spec's reboot values only
    with pytest.raises(HttpResponseError) as missing:
        client.machines.begin_install_patches("rg-arc", "arc-win-01", {"rebootSetting": "IfRequired"})
    assert missing.value.status_code == 400 and getattr(missing.value.error, "target", None) == "maximumDuration"
    with pytest.raises(HttpResponseError) as doc_spelling:
        client.machines.begin_install_patches("rg-arc", "arc-win-01",
                                              {"maximumDuration": "PT120M", "rebootSetting": "NeverReboot"})
    assert getattr(doc_spelling.value.error, "target", None) == "rebootSetting"
    with pytest.raises(ResourceNotFoundError):
        client.machines.begin_install_patches("rg-arc", "nope", {"maximumDuration": "PT2H", "rebootSetting": "Never"})
    # an injected patch failure: status Failed, errorDetails (not error), counts
    failed = lro(arm, client.machines.begin_install_patches(
        "rg-arc", "arc-win-01", {"maximumDuration": "PT2H", "rebootSetting": "IfRequired"}))
    assert failed.status == "Failed" and failed.failed_patch_count == 1 and failed.installed_patch_count == 2
    assert failed.error_details.code == "PatchInstallationFailed"
    assert failed.error_details.details[0].target == "KB5048667"
    assert "error" not in failed.as_dict()
    # a Disconnected agent: accepted, then a terminal Failed result after the queue timeout; nothing installs
    offline = lro(arm, client.machines.begin_install_patches(
        "rg-arc", "arc-off-01", {"maximumDuration": "PT2H", "rebootSetting": "IfRequired"}))
    assert offline.status == "Failed" and offline.installed_patch_count == 0
    assert offline.error_details.code == "MachineNotConnected"
    assert arm.sim.vm("arc-off-01").installed == set()
    assessed = lro(arm, client.machines.begin_assess_patches("rg-arc", "arc-off-01"))
    assert assessed.status == "Failed" and assessed.error_details.code == "MachineNotConnected"
    # an operationFails fault ends the operation with a terminal Failed result carrying its code
    arm.sim.add_fault({"type": "operationFails", "operation": "assessPatches", "code": "ExtensionFailed",
                       "vms": ["arc-lin-01"]})
    broken = lro(arm, client.machines.begin_assess_patches("rg-arc", "arc-lin-01"))
    assert broken.status == "Failed" and broken.error_details.code == "ExtensionFailed"
    # request faults and throttling go through the existing machinery, by RBAC action
    arm.sim.add_fault({"type": "httpError", "status": 429, "retryAfter": 0, "count": 1,
                       "action": "Microsoft.HybridCompute/machines/read"})
    assert client.machines.get("rg-arc", "arc-lin-01").name == "arc-lin-01"  # azure-core retried the 429
    throttled = [r for r in arm.sim.recorder.records if r.status == 429]
    assert throttled and throttled[-1].action == "Microsoft.HybridCompute/machines/read"


def test_assess_patches_lro_without_body(arm_factory):
    arm = arm_factory(arc_scenario())
    client = hc(arm)
    result = lro(arm, client.machines.begin_assess_patches("rg-arc", "arc-lin-01"))
    assert result.status == "Succeeded"
    raw = result.as_dict()
    assert set(raw) == ASSESS_KEYS | {"patchServiceUsed"}
    counts = raw["availablePatchCountByClassification"]
    # Linux catalog: openssl x2 + curl (Security), tzdata (Other)
    assert counts["security"] == 3 and counts["other"] == 1 and counts["critical"] == 0
    assert result.os_type == "Linux" and result.patch_service_used == "APT"
    post = next(r for r in arm.sim.recorder.records if r.operation == "hc.assess_patches")
    assert post.body is None  # the SDK sends no body (the docs send {}; both are accepted)
    assert post.action == "Microsoft.HybridCompute/machines/assessPatches/action"


def test_assignments_dynamic_scopes_and_scheduled_runs_patch_arc_machines(arm_factory):
    """Item 2: a configuration assignment on a machine and a dynamic scope over HybridCompute select
    Arc machines; a scheduled run patches them with the same pre/post events, skipping a
    disconnected one (MachineNotConnected) without any patch-mode prerequisite."""
    from azure.mgmt.maintenance import models as m

    scenario = arc_scenario()
    # the base scenario's ds-ring0 (patchRing=ring0, no resourceTypes) already spans both kinds;
    # narrow it to VMs so the assignments below are what brings the Arc machines in
    scenario["subscriptions"][0]["dynamicScopes"][0]["filter"]["resourceTypes"] = ["Microsoft.Compute/virtualMachines"]
    arm = arm_factory(scenario)
    client = arm.maintenance()
    ring0 = f"{MC_ID}/mc-ring0"
    assert [v.name for v in arm.sim.fleet.assigned_vms(ring0)] == ["lin-01", "win-01"]
    # a static assignment on an Arc machine: the SDK's provider/resource-type form
    created = client.configuration_assignments.create_or_update(
        "rg-arc", "Microsoft.HybridCompute", "machines", "arc-lin-01", "mc-ring0",
        m.ConfigurationAssignment(maintenance_configuration_id=ring0, location="westeurope"),
    )
    assert created.resource_id.lower() == f"{ARC_IDS}/arc-lin-01".lower()
    got = client.configuration_assignments.get("rg-arc", "Microsoft.HybridCompute", "machines", "arc-lin-01",
                                               "mc-ring0")
    assert got.maintenance_configuration_id.lower() == ring0.lower()
    # a dynamic scope whose resourceTypes name HybridCompute selects Arc machines only
    client.configuration_assignments_for_subscriptions.create_or_update(
        "ds-arc-ring0",
        m.ConfigurationAssignment(
            maintenance_configuration_id=ring0,
            filter=m.ConfigurationAssignmentFilterProperties.from_dict(
                {"resourceTypes": ["Microsoft.HybridCompute/machines"],
                 "tagSettings": {"tags": {"patchRing": ["ring0"]}, "filterOperator": "All"}}),
        ),
    )
    members = [v.name for v in arm.sim.fleet.assigned_vms(ring0)]
    assert sorted(members) == ["arc-lin-01", "arc-off-01", "arc-win-01", "lin-01", "win-01"]
    assigned_actions = {r.action for r in arm.sim.recorder.records if r.status < 400}
    assert "Microsoft.Maintenance/configurationAssignments/write" in assigned_actions
    # a scheduled run patches them, with the usual pre and post events
    correlation = arm.sim.fire_run("mc-ring0")
    arm.advance_until(lambda: getattr(arm.sim.run(correlation), "status", None) == "Completed")
    run = arm.sim.run(correlation)
    assert run is not None
    patched = {arm.sim.fleet.vm(vm_id).name: plan for vm_id, plan in run.plans.items()}
    assert {"arc-win-01", "arc-lin-01", "win-01", "lin-01"} == set(patched)
    assert patched["arc-win-01"].status == "Succeeded" and patched["arc-win-01"].maintenance_run_id == correlation
    assert arm.sim.vm("arc-win-01").installed == {"KB5048667", "KB5048654"}
    assert arm.sim.vm("arc-lin-01").installed == {"openssl=3.0.2-0ubuntu1.19", "curl=7.81.0-1ubuntu1.19"}
    off_id = next(v for v in run.vm_ids if v.endswith("arc-off-01"))
    assert run.skipped[off_id].startswith("MachineNotConnected")
    assert run.result_status == "Failed"  # a member that could not patch fails the run, as for VMs
    events = [e for e in arm.sim.events.published if e["data"]["correlationId"] == correlation]
    assert [e["eventType"] for e in events] == ["Microsoft.Maintenance.PreMaintenanceEvent",
                                                "Microsoft.Maintenance.PostMaintenanceEvent"]
    # per-machine applyUpdates records under the machine, as for VMs
    record = arm.sim.apply_updates[f"{ARC_IDS}/arc-win-01/providers/Microsoft.Maintenance/applyUpdates/"
                                   f"{run.name}".lower()]
    assert record["properties"]["status"] == "Completed"
    # the scheduled install made the machine busy only while it ran: a direct install works after it
    after = lro(arm, hc(arm).machines.begin_install_patches(
        "rg-arc", "arc-win-01", {"maximumDuration": "PT1H", "rebootSetting": "IfRequired"}))
    assert after.status == "Succeeded" and after.installed_patch_count == 1


def _arg(arm: Running, text: str) -> list[dict[str, Any]]:
    """Every row of a query (follows ``$skipToken``), through azure-mgmt-resourcegraph."""
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    kw = arm.kwargs()
    client = ResourceGraphClient(kw.pop("credential"), **kw)
    rows: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.resources(QueryRequest(query=text, subscriptions=[SUB],
                                             options=QueryRequestOptions(top=1000, skip_token=token)))
        data: Any = page.data
        rows.extend(data)
        token = page.skip_token
        if not token:
            return rows


SUMMARIES = ("patchinstallationresources | where type endswith '/patchinstallationresults' "
             "| extend machineId = tostring(split(tolower(id), '/patchinstallationresults/')[0]) "
             "| project id, machineId, type, run = name, status = tostring(properties.status), "
             "startedBy = tostring(properties.startedBy), runId = tostring(properties.maintenanceRunId), "
             "installed = toint(properties.installedPatchCount) | order by id asc")
PATCHES = ("patchinstallationresources | where type endswith '/patchinstallationresults/softwarepatches' "
           "| extend run = tostring(split(tolower(id), '/')[10]) "
           "| project id, type, run, kbId = tostring(properties.kbId), version = tostring(properties.version), "
           "patchName = tostring(properties.patchName), state = tostring(properties.installationState) "
           "| order by id asc")


def test_resource_graph_rows_for_arc_direct_and_scheduled_installs_with_lag_and_retention(arm_factory):
    """Item 3: Arc rows under microsoft.hybridcompute/machines/… (summary + per-patch, §5.1-§5.4), for
    DIRECT installs too (the LRO result has no per-patch list) and for direct VM installs
    (``startedBy: User``); a per-machine lag makes one machine's rows late; 30-day retention."""
    scenario = arc_scenario(resourceGraph={"propagationMinutes": 5})
    scenario["subscriptions"][0]["resourceGroups"][2]["arcMachines"][1]["resourceGraphLagMinutes"] = 20
    arm = arm_factory(scenario)
    client = hc(arm)
    win = lro(arm, client.machines.begin_install_patches(
        "rg-arc", "arc-win-01", {"maximumDuration": "PT2H", "rebootSetting": "IfRequired",
                                 "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]}}))
    lin = lro(arm, client.machines.begin_install_patches(
        "rg-arc", "arc-lin-01", {"maximumDuration": "PT2H", "rebootSetting": "IfRequired",
                                 "linuxParameters": {"classificationsToInclude": ["Security"]}}))
    vm_poller = arm.compute().virtual_machines.begin_install_patches(
        "rg-fleet", "win-02", {"maximumDuration": "PT2H", "rebootSetting": "IfRequired",
                               "windowsParameters": {"classificationsToInclude": ["Definition"]}})
    arm.lro(vm_poller)
    finished = arm.now()
    assert _arg(arm, SUMMARIES) == []  # nothing until the propagation delay has passed
    arm.advance_to(finished + timedelta(minutes=5))
    rows = {r["machineId"].rsplit("/", 1)[-1]: r for r in _arg(arm, SUMMARIES)}
    assert set(rows) == {"arc-win-01", "win-02"}  # arc-lin-01's rows are 20 minutes later still
    arc = rows["arc-win-01"]
    assert arc["type"] == "microsoft.hybridcompute/machines/patchinstallationresults"
    assert arc["id"] == f"{ARC_IDS}/arc-win-01/patchInstallationResults/{win.installation_activity_id}"
    assert arc["run"] == win.installation_activity_id
    assert (arc["status"], arc["startedBy"], arc["runId"], arc["installed"]) == ("Succeeded", "User", "", 2)
    assert rows["win-02"]["type"] == "microsoft.compute/virtualmachines/patchinstallationresults"
    patches = [p for p in _arg(arm, PATCHES) if p["run"] == win.installation_activity_id.lower()]
    assert {p["type"] for p in patches} == {"microsoft.hybridcompute/machines/patchinstallationresults/softwarepatches"}
    assert {(p["kbId"], p["state"]) for p in patches if p["state"] == "Installed"} == {
        ("5048667", "Installed"), ("5048654", "Installed")}
    assert any(p["state"] == "NotSelected" for p in patches)
    arm.advance_to(finished + timedelta(minutes=25))
    late = [p for p in _arg(arm, PATCHES) if p["run"] == lin.installation_activity_id.lower()]
    assert {(p["patchName"], p["version"]) for p in late if p["state"] == "Installed"} == {
        ("openssl", "3.0.2-0ubuntu1.19"), ("curl", "7.81.0-1ubuntu1.19")}
    # an assessment on an Arc machine replaces its …/patchAssessmentResults/latest rows
    lro(arm, client.machines.begin_assess_patches("rg-arc", "arc-win-01"))
    arm.advance_to(arm.now() + timedelta(minutes=5))
    assessed = _arg(arm, "patchassessmentresources | where type endswith '/patchassessmentresults' "
                         "| extend counts = properties.availablePatchCountByClassification "
                         "| project id, type, critical = toint(counts.critical), definition = toint(counts.definition) "
                         "| order by id asc")
    assert assessed == [{"id": f"{ARC_IDS}/arc-win-01/patchAssessmentResults/latest",
                         "type": "microsoft.hybridcompute/machines/patchassessmentresults",
                         "critical": 0, "definition": 1}]
    # a scheduled run's Arc rows carry the run's correlationId; VMs and Arc come back together
    correlation = arm.sim.fire_run("mc-ring0")
    arm.advance_until(lambda: getattr(arm.sim.run(correlation), "status", None) == "Completed")
    arm.advance_to(arm.now() + timedelta(minutes=5))
    in_run = [r for r in _arg(arm, SUMMARIES) if r["runId"] == correlation]
    assert {r["machineId"].rsplit("/", 1)[-1] for r in in_run} == {"win-01", "lin-01", "arc-win-01"}
    assert {r["startedBy"] for r in in_run} == {"Platform"}
    # installation rows are kept 30 days
    arm.advance_to(finished + timedelta(days=29, hours=23))
    assert any(r["run"] == win.installation_activity_id for r in _arg(arm, SUMMARIES))
    arm.advance_to(finished + timedelta(days=30, minutes=10))
    assert not any(r["run"] == win.installation_activity_id for r in _arg(arm, SUMMARIES))


def test_api_versions_the_sdk_default_passes_others_are_refused(arm_factory):
    from azure.core.rest import HttpRequest

    arm = arm_factory(arc_scenario())
    client = hc(arm)
    client.machines.get("rg-arc", "arc-win-01")
    assert {r.api_version for r in arm.sim.recorder.records} == {"2026-07-15"}  # azure-mgmt-hybridcompute 10.0.0
    refused = client.send_request(HttpRequest("GET", f"{ARC_IDS}/arc-win-01", params={"api-version": "2099-01-01"}))
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "NoRegisteredProviderFound"
    assert "for type 'machines'" in refused.json()["error"]["message"]
    for version in ("2020-08-15-preview", "2022-12-27", "2024-07-10", "2025-01-13", "2026-09-01"):
        ok = client.send_request(HttpRequest("GET", f"{ARC_IDS}/arc-win-01", params={"api-version": version}))
        assert ok.status_code == 200, version


def test_agent_status_from_faults_timeline_and_control_api_and_health_endpoint(arm_factory):
    """The ways a scenario or a test disconnects an Arc agent, and the machine's app health endpoint."""
    import json
    import ssl
    import urllib.error
    import urllib.request

    scenario = arc_scenario(
        faults=[{"type": "vmAgentNotReady", "vms": ["arc-lin-01"]}],
        timeline=[{"at": "2026-11-16T07:00:00Z", "vms": ["arc-win-*"], "agentStatus": "Disconnected",
                   "health": "Unhealthy"}],
    )
    arm = arm_factory(scenario)
    client = hc(arm)
    assert client.machines.get("rg-arc", "arc-lin-01").properties.status == "Disconnected"  # the fault, at start
    assert client.machines.get("rg-arc", "arc-win-01").properties.status == "Connected"
    url = arm.sim.health_url("arc-win-01")
    with urllib.request.urlopen(url) as resp:
        assert resp.status == 200
    arm.advance_to(arm.sim.clock.now().replace(hour=7))
    machine = client.machines.get("rg-arc", "arc-win-01")
    assert machine.properties.status == "Disconnected"
    assert machine.properties.last_status_change.isoformat().startswith("2026-11-16T07:00:00")
    with pytest.raises(urllib.error.HTTPError) as unhealthy:
        urllib.request.urlopen(url)
    assert unhealthy.value.code == 503
    # the control API reconnects it (and refuses a VM-only field for an Arc machine)
    context = ssl.create_default_context(cafile=str(arm.sim.ca_path))

    def post(name: str, body: dict[str, Any]) -> int:
        request = urllib.request.Request(f"{arm.sim.endpoint}/_sim/vms/{name}", data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=context) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert post("arc-win-01", {"agentStatus": "Connected", "health": "Healthy"}) == 200
    assert post("arc-win-01", {"powerState": "deallocated"}) == 400
    assert post("arc-win-01", {"agentStatus": "Sleeping"}) == 400
    assert client.machines.get("rg-arc", "arc-win-01").properties.status == "Connected"
    with urllib.request.urlopen(arm.sim.endpoint + "/_sim/fleet", context=context) as resp:
        fleet = json.loads(resp.read())
    arc = {m["name"]: m for m in fleet["arcMachines"]}
    assert arc["arc-win-01"]["status"] == "Connected" and arc["arc-lin-01"]["status"] == "Disconnected"
    assert arc["arc-win-01"]["kind"] == "arc" and "arc-win-01" not in {v["name"] for v in fleet["vms"]}
    # PATCH honours the patch mode under osProfile (Microsoft.HybridCompute/machines/write)
    client.machines.update("rg-arc", "arc-win-01", {"properties": {"osProfile": {"windowsConfiguration": {
        "patchSettings": {"patchMode": "AutomaticByOS"}}}}})
    updated = client.machines.get("rg-arc", "arc-win-01")
    assert updated.properties.os_profile.windows_configuration.patch_settings.patch_mode == "AutomaticByOS"


def test_scenario_validation_names_bad_arc_fields_and_duplicate_names():
    from datetime import UTC, datetime

    from emulator.arm.fleet import Fleet
    from emulator.arm.scenario import ScenarioError, load_scenario

    bad = arc_scenario()
    bad["subscriptions"][0]["resourceGroups"][2]["arcMachines"][0]["status"] = "Offline"
    with pytest.raises(ScenarioError, match=r"resourceGroups\[2\]\.arcMachines\[0\]\.status: 'Offline' is not one of"):
        load_scenario(bad)
    clash = arc_scenario()
    clash["subscriptions"][0]["resourceGroups"][2]["arcMachines"][0]["name"] = "win-01"
    with pytest.raises(ScenarioError, match="'win-01' is used twice"):
        Fleet.from_scenario(load_scenario(clash), now=datetime(2026, 11, 16, tzinfo=UTC))


ASSESSMENTS = ("patchassessmentresources | where type endswith '/patchassessmentresults' "
               "| extend machineId = tostring(split(tolower(id), '/patchassessmentresults/')[0]) "
               "| extend counts = properties.availablePatchCountByClassification "
               "| project id, machineId, at = todatetime(properties.lastModifiedDateTime), "
               "critical = toint(counts.critical), security = toint(counts.security) | order by id asc")


def test_initial_assessment_and_assessment_after_install(arm_factory):
    """``resourceGraph.initialAssessment`` gives compliance views data from the start (periodic
    assessment); ``assessAfterInstall`` replaces a machine's latest row when an install ends."""
    arm = arm_factory(arc_scenario(resourceGraph={"initialAssessment": True, "assessAfterInstall": True}))
    rows = {r["machineId"].rsplit("/", 1)[-1]: r for r in _arg(arm, ASSESSMENTS)}
    # every reachable machine, VMs and Arc; not the disconnected one
    assert set(rows) == {"win-01", "win-02", "lin-01", "lin-02", "arc-win-01", "arc-lin-01"}
    assert (rows["arc-win-01"]["critical"], rows["arc-win-01"]["security"]) == (1, 1)
    assert rows["arc-win-01"]["at"].startswith("2026-11-16T05:00:00")
    lro(arm, hc(arm).machines.begin_install_patches(
        "rg-arc", "arc-win-01", {"maximumDuration": "PT2H", "rebootSetting": "IfRequired",
                                 "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]}}))
    ended = arm.now()
    arm.advance_to(ended + timedelta(minutes=3))
    after = {r["machineId"].rsplit("/", 1)[-1]: r for r in _arg(arm, ASSESSMENTS)}
    assert (after["arc-win-01"]["critical"], after["arc-win-01"]["security"]) == (0, 0)
    assert after["arc-win-01"]["at"].startswith(ended.strftime("%Y-%m-%dT%H:%M"))
    assert after["arc-lin-01"] == rows["arc-lin-01"]  # untouched
