"""Microsoft.HybridCompute/machines: Azure Arc-enabled servers on the ARM simulator (issue 12).

Why: Update Manager patches Arc-enabled servers through the same configurations, dynamic scopes
and events as Azure VMs, but the on-demand API differs in ways that break code written for
Compute (arc-and-resource-graph.md §2): the LRO answers 202 with only ``Location`` (+
``Retry-After``), the result has **no per-patch list** and carries ``errorDetails`` (a common-types
``ErrorDetail``) instead of ``error``, and machines have an agent ``status`` instead of a power
state. The app talks to this module through azure-mgmt-hybridcompute 10.0.0 (default api-version
``2026-07-15``). The state lives in :class:`emulator.arm.fleet.Fleet` (``fleet.machines``: a
:class:`~emulator.arm.fleet.Vm` with ``kind == "arc"``); this module is the thin REST layer plus
the LRO lifecycle (:class:`ArcOperation`).

SUPPORTED (paths under ``/subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.HybridCompute``)

* ``GET …/machines/{name}`` (``$expand`` accepted and ignored: Arc has no patch instance view),
  ``GET …/machines`` by resource group and by subscription (``{value, nextLink}``, paged like
  Compute), ``PATCH …/machines/{name}`` (``MachineUpdate``: ``tags`` replace the whole set, 200
  synchronous; ``properties.osProfile.*.patchSettings.assessmentMode`` / ``patchMode`` honoured;
  other properties ignored; unknown top-level members → 400), ``GET …/machines/{name}/extensions``
  (the two Update Manager extensions, §3.1).
* Machine body (§2.3, ``Machines_Get.json``): ``properties.status`` (``Connected`` /
  ``Disconnected`` / ``Expired`` / ``Error`` / ``AwaitingConnection``), ``lastStatusChange``,
  ``osName`` / ``osType`` (lower case, "windows"/"linux", as documented), ``osSku``,
  ``osVersion``, ``agentVersion``, ``vmId``, ``osProfile`` with ``patchSettings``, ``tags``,
  ``kind`` (AWS/GCP/... when the scenario sets one), ``identity`` (SystemAssigned).
* ``POST …/machines/{name}/installPatches`` (``MachineInstallPatchesParameters``:
  ``maximumDuration`` and ``rebootSetting`` required; ``IfRequired`` / ``Never`` / ``Always``
  only -- the spec's values, case-insensitive; durations in any ISO-8601 form, ``PT20M`` to ``PT4H``;
  ``windowsParameters`` / ``linuxParameters`` optional, honoured as for VMs by
  :mod:`emulator.arm.patching`) and ``POST …/assessPatches`` (no body, or ``{}``): **202 with only
  ``Location`` and ``Retry-After``** (§2.7); ``Location`` is
  ``…/providers/Microsoft.HybridCompute/locations/{region}/updateCenterOperationResults/{id}``
  (the path is inferred from the RBAC action, §2.7 [unverified]) and answers 202 until the
  operation is terminal, then 200 + ``MachineInstallPatchesResult`` /
  ``MachineAssessPatchesResult`` (§2.6: counts, ``rebootStatus``, ``maintenanceWindowExceeded``,
  ``startedBy: User``, ``patchServiceUsed``, ``osType``, ``errorDetails``; no ``patches[]``,
  no ``availablePatches[]``). Records are kept after completion (continuation tokens).
* Once-only: a second install on a machine while one runs (direct or scheduled) → 409
  ``Conflict`` (the SDK raises ``ResourceExistsError``), as for VMs; an install changes the machine
  exactly once, at its end.
* Side effects: each direct install's summary and per-patch rows, and each assessment's
  ``…/latest`` rows, appear in Resource Graph under ``microsoft.hybridcompute/machines/…``
  (:mod:`emulator.arm.resourcegraph`); faults and unhealthy-after-patch as for VMs.
* **A machine that is not ``Connected``** (deliberate choice; Azure's behaviour is undocumented,
  §2.4): the POST is accepted (202) -- extension operations are queued while the agent is away --
  and the operation ends after ``arc.disconnectedOperationMinutes`` (default 30 simulated
  minutes) with a 200 result ``status: Failed``, no counts, and ``errorDetails.code`` =
  ``MachineNotConnected``; nothing is installed. An ``operationFails`` fault likewise ends the
  operation with a terminal 200 ``Failed`` result whose ``errorDetails`` carries the fault's code
  (an ``final-state-via: location`` poller returns that body instead of raising).
* Faults through the existing machinery: ``patchFails`` / ``rebootFails`` / ``slowInstall`` /
  ``unhealthyAfterPatch`` / ``operationFails`` select Arc machines by name, tags or OS like VMs;
  ``vmAgentNotReady`` or ``deallocated`` on an Arc machine make its agent ``Disconnected`` at start;
  request faults (``httpError`` 429/5xx, ``dropConnection``, ``slowAnswer``) match the
  ``Microsoft.HybridCompute/...`` actions; ARM's per-subscription throttle applies unchanged.
* RBAC actions (routes.py): ``Microsoft.HybridCompute/machines/read``, ``…/machines/write``,
  ``…/machines/installPatches/action``, ``…/machines/assessPatches/action``,
  ``…/machines/extensions/read``, ``Microsoft.HybridCompute/locations/updateCenterOperationResults/read``.
* api-versions: the stable versions in the spec readme plus ``2020-08-15-preview`` (the Learn
  how-to's); others get ARM's 400 ``NoRegisteredProviderFound``.

LIMITATIONS: no machine create/delete (``PUT`` is agent onboarding), no license profiles,
run commands or extension writes; ``$expand=instanceView`` adds nothing; the 202 sends no
``Azure-AsyncOperation`` (the spec declares only ``Location``; real 202s may differ [unverified]);
an agent that reconnects does not resume a queued operation (it fails as above).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from emulator.arm import apiversions
from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError
from emulator.arm.fleet import Vm, stable_uuid
from emulator.arm.listing import check_scope, in_scope, lro_result, page
from emulator.arm.patching import InstallPlan, assessment_result, parse_iso_duration, plan_install

if TYPE_CHECKING:
    from emulator.arm.server import ArmSimulator

__all__ = [
    "API_VERSIONS",
    "HANDLERS",
    "ArcOperation",
    "assessment_counts",
    "finish_operation",
    "machine_body",
]

# Azure/azure-rest-api-specs hybridcompute readme stable tags (arc-and-resource-graph.md §2.1) and the
# preview the Learn how-to uses for assessPatches/installPatches.
API_VERSIONS = [
    "2019-12-12", "2020-08-02", "2020-08-15-preview", "2021-05-20", "2022-03-10", "2022-11-10", "2022-12-27",
    "2024-07-10", "2025-01-13", "2026-07-15", "2026-09-01",
]
apiversions.register_provider("hc", "Microsoft.HybridCompute", "machines", API_VERSIONS)

_TYPE = "Microsoft.HybridCompute/machines"
_REBOOT = {"ifrequired": "IfRequired", "never": "Never", "always": "Always"}
_COUNT_KEYS = ("security", "critical", "definition", "updateRollup", "featurePack", "servicePack", "tools",
               "updates", "other")


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass
class ArcOperation:
    """A HybridCompute LRO (installPatches / assessPatches) on one Arc machine."""

    id: str
    kind: str  # "installPatches" | "assessPatches"
    machine_id: str
    subscription: str
    location: str
    start: datetime
    end: datetime
    status: str = "InProgress"  # InProgress | Succeeded | Failed
    result: dict[str, Any] | None = None
    plan: InstallPlan | None = None
    failure: dict[str, str] | None = None  # the errorDetails it ends with (fault or not connected)


# ----------------------------------------------------------------------------------- bodies
def _patch_service(vm: Vm) -> str:
    return "WU" if vm.os == "Windows" else "APT"


def machine_body(sim: ArmSimulator, vm: Vm) -> dict[str, Any]:
    """``Machine`` as GET returns it (the fields the app reads, realistic values instead of the examples' nulls)."""
    windows = vm.os == "Windows"
    patch_settings = {"assessmentMode": "AutomaticByPlatform", "patchMode": vm.patch_mode}
    os_profile: dict[str, Any] = {"computerName": vm.name}
    os_profile["windowsConfiguration" if windows else "linuxConfiguration"] = {"patchSettings": patch_settings}
    changed = vm.last_status_change or sim.clock.now()
    properties: dict[str, Any] = {
        "provisioningState": "Succeeded",
        "status": vm.agent_status,
        "lastStatusChange": _iso(changed),
        "errorDetails": [],
        "agentVersion": vm.agent_version,
        "vmId": vm.vm_id,
        "displayName": vm.name,
        "machineFqdn": f"{vm.name}.corp.contoso.com",
        "osName": vm.os_name,
        "osVersion": vm.os_version,
        "osSku": vm.os_sku,
        "osType": vm.os.lower(),
        "osProfile": os_profile,
        "locationData": {"name": vm.location},
        "mssqlDiscovered": "false",
    }
    body: dict[str, Any] = {
        "id": vm.id,
        "name": vm.name,
        "type": _TYPE,
        "location": vm.location,
        "tags": dict(vm.tags),
        "identity": {
            "type": "SystemAssigned",
            "principalId": stable_uuid("arc-principal", vm.id),
            "tenantId": str(sim.scenario.get("tenantId") or stable_uuid("tenant", str(sim.seed))),
        },
        "properties": properties,
    }
    if vm.arc_kind:
        body["kind"] = vm.arc_kind
    return body


def _extension(vm: Vm, publisher: str, ext_type: str) -> dict[str, Any]:
    return {
        "id": f"{vm.id}/extensions/{ext_type}",
        "name": ext_type,
        "type": "Microsoft.HybridCompute/machines/extensions",
        "location": vm.location,
        "properties": {
            "publisher": publisher,
            "type": ext_type,
            "typeHandlerVersion": "1.0.55.0" if "OsUpdate" in ext_type else "1.5.77",
            "provisioningState": "Succeeded",
            "enableAutomaticUpgrade": True,
        },
    }


def assessment_counts(available_patches: list[dict[str, Any]]) -> dict[str, int]:
    """``availablePatchCountByClassification`` from the per-patch classifications of an assessment."""
    counts = {k: 0 for k in _COUNT_KEYS}
    for patch in available_patches:
        for name in patch.get("classifications") or ["Other"]:
            key = str(name).lower().replace(" updates", "").replace(" ", "")
            match = next((k for k in counts if k.lower() == key or k.lower() + "s" == key), "other")
            counts[match] += 1
    return counts


def _install_result(vm: Vm, op: ArcOperation) -> dict[str, Any]:
    """``MachineInstallPatchesResult`` (§2.6): counts and reboot state, no per-patch list, ``errorDetails``."""
    plan = op.plan
    counts = plan.counts if plan is not None else {}
    result: dict[str, Any] = {
        "status": "Failed" if op.failure is not None else (plan.status if plan else "Failed"),
        "installationActivityId": op.id,
        "rebootStatus": plan.reboot_status if plan is not None and op.failure is None else "NotNeeded",
        "maintenanceWindowExceeded": bool(plan and plan.window_exceeded and op.failure is None),
        "excludedPatchCount": 0,
        "notSelectedPatchCount": 0,
        "pendingPatchCount": 0,
        "installedPatchCount": 0,
        "failedPatchCount": 0,
        "startDateTime": _iso(op.start),
        "lastModifiedDateTime": _iso(op.end),
        "startedBy": "User",
        "patchServiceUsed": _patch_service(vm),
        "osType": vm.os,
        "errorDetails": None,
    }
    if op.failure is not None:
        result["errorDetails"] = dict(op.failure)
        return result
    result.update(
        excludedPatchCount=counts.get("Excluded", 0),
        notSelectedPatchCount=counts.get("NotSelected", 0),
        pendingPatchCount=counts.get("Pending", 0),
        installedPatchCount=counts.get("Installed", 0),
        failedPatchCount=counts.get("Failed", 0),
    )
    if plan is not None and plan.error:
        details = [
            {"code": d.get("code"), "message": d.get("message"), "target": d.get("target")}
            for d in plan.error.get("details") or []
        ]
        result["errorDetails"] = {
            "code": plan.error.get("code"),
            "message": str(plan.error.get("message", "")).replace(" on VM ", " on machine "),
            "details": details,
        }
    return result


def _assess_result(vm: Vm, op: ArcOperation, assessment: dict[str, Any] | None) -> dict[str, Any]:
    """``MachineAssessPatchesResult`` (§2.6): counts per classification, no ``availablePatches``."""
    result: dict[str, Any] = {
        "status": "Failed" if op.failure is not None else "Succeeded",
        "assessmentActivityId": op.id,
        "rebootPending": False,
        "availablePatchCountByClassification": assessment_counts(
            list((assessment or {}).get("availablePatches") or [])
        ),
        "startDateTime": _iso(op.start),
        "lastModifiedDateTime": _iso(op.end),
        "startedBy": "User",
        "patchServiceUsed": _patch_service(vm),
        "osType": vm.os,
        "errorDetails": dict(op.failure) if op.failure is not None else None,
    }
    return result


# ----------------------------------------------------------------------------------- lookups
def _machine_or_404(sim: ArmSimulator, call: Call) -> Vm:
    p = call.params
    machine = sim.fleet.find_machine(p["sub"], p["rg"], p["machine"])
    if machine is None:
        check_scope(sim, p["sub"], p["rg"])
        raise ArmError.not_found(_TYPE, p["machine"], p["rg"])
    return machine


# ----------------------------------------------------------------------------------- reads and tags
def get_machine(sim: ArmSimulator, call: Call) -> Reply:
    return Reply(200, machine_body(sim, _machine_or_404(sim, call)))


def list_machines(sim: ArmSimulator, call: Call) -> Reply:
    return page(sim, call, in_scope(sim, sim.fleet.machines, call, by_group=True), lambda m: machine_body(sim, m))


def list_all_machines(sim: ArmSimulator, call: Call) -> Reply:
    return page(sim, call, in_scope(sim, sim.fleet.machines, call, by_group=False), lambda m: machine_body(sim, m))


def update_machine(sim: ArmSimulator, call: Call) -> Reply:
    machine = _machine_or_404(sim, call)
    body = call.require_body()
    unsupported = sorted(set(body) - {"tags", "identity", "kind", "properties"})
    if unsupported:
        raise ArmError.bad_request(
            f"Could not find member '{unsupported[0]}' on object of type 'MachineUpdate'.",
            code="InvalidRequestContent",
        )
    if "tags" in body:
        tags = body["tags"] or {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise ArmError.bad_request("tags must be an object of string values.", code="InvalidParameter",
                                       target="tags")
        if len(tags) > 50:
            raise ArmError(400, "InvalidTag", f"The resource has {len(tags)} tags; at most 50 are allowed.")
        machine.tags = dict(tags)
    profile = ((body.get("properties") or {}).get("osProfile") or {}) if isinstance(body.get("properties"), dict) \
        else {}
    for key in ("windowsConfiguration", "linuxConfiguration"):
        settings = ((profile.get(key) or {}).get("patchSettings") or {}) if isinstance(profile, dict) else {}
        if isinstance(settings, dict) and settings.get("patchMode"):
            machine.patch_mode = str(settings["patchMode"])
    return Reply(200, machine_body(sim, machine))


def list_extensions(sim: ArmSimulator, call: Call) -> Reply:
    machine = _machine_or_404(sim, call)
    os_name = machine.os
    return Reply(200, {"value": [
        _extension(machine, "Microsoft.CPlat.Core", f"{os_name}PatchExtension"),
        _extension(machine, "Microsoft.SoftwareUpdateManagement", f"{os_name}OsUpdateExtension"),
    ]})


# ----------------------------------------------------------------------------------- LROs
def _disconnected_minutes(sim: ArmSimulator) -> float:
    return float((sim.scenario.get("arc") or {}).get("disconnectedOperationMinutes", 30))


def _not_connected(machine: Vm) -> dict[str, str]:
    return {
        "code": "MachineNotConnected",
        "message": f"The operation could not be completed: the Azure Connected Machine agent on '{machine.name}' "
        f"is {machine.agent_status}. Extension operations need a Connected agent.",
    }


def _lro_reply(sim: ArmSimulator, call: Call, op: ArcOperation) -> Reply:
    """202 with only ``Location`` and ``Retry-After`` (the spec's headers for both POSTs)."""
    location = (
        f"{call.base_url}/subscriptions/{op.subscription}/providers/Microsoft.HybridCompute/locations/"
        f"{op.location}/updateCenterOperationResults/{op.id}?{urlencode({'api-version': call.api_version})}"
    )
    return Reply(202, None, {"Location": location, "Retry-After": str(sim.retry_after)})


def _new_operation(sim: ArmSimulator, machine: Vm, kind: str, op_id: str, end: datetime) -> ArcOperation:
    return ArcOperation(
        id=op_id,
        kind=kind,
        machine_id=machine.id,
        subscription=machine.subscription,
        location=machine.location.lower().replace(" ", ""),
        start=sim.clock.now(),
        end=end,
    )


def _reboot_setting(body: dict[str, Any]) -> str:
    reboot = body.get("rebootSetting")
    if reboot is None:
        raise ArmError(400, "InvalidParameter", "Required parameter 'rebootSetting' is missing (null).",
                       target="rebootSetting")
    canonical = _REBOOT.get(str(reboot).lower())
    if canonical is None:
        raise ArmError(
            400,
            "InvalidParameter",
            f"The value '{reboot}' of parameter 'rebootSetting' is not valid. Allowed values are IfRequired, "
            "Never, Always.",
            target="rebootSetting",
        )
    return canonical


def _maximum_duration(body: dict[str, Any]) -> timedelta:
    text = body.get("maximumDuration")
    if not text:
        raise ArmError(400, "InvalidParameter", "Required parameter 'maximumDuration' is missing (null).",
                       target="maximumDuration")
    try:
        limit = parse_iso_duration(str(text))
    except ValueError as exc:
        raise ArmError(400, "InvalidParameter", str(exc), target="maximumDuration") from None
    if not timedelta(minutes=20) <= limit <= timedelta(hours=4):
        raise ArmError(400, "InvalidParameter", "maximumDuration must be between PT20M and PT4H.",
                       target="maximumDuration")
    return limit


def install_patches(sim: ArmSimulator, call: Call) -> Reply:
    machine = _machine_or_404(sim, call)
    body = call.require_body()
    if not isinstance(body, dict):
        raise ArmError.bad_request("The request body must be a MachineInstallPatchesParameters object.")
    limit = _maximum_duration(body)
    reboot = _reboot_setting(body)
    for key in ("windowsParameters", "linuxParameters"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise ArmError(400, "InvalidParameter", f"'{key}' must be an object.", target=key)
    if machine.busy_operation:
        raise ArmError(
            409,
            "Conflict",
            f"An installPatches operation is already in progress on machine '{machine.name}' "
            f"({machine.busy_operation}). Wait until it completes before starting another.",
        )
    now = sim.clock.now()
    op_id = sim.new_id()
    if not machine.patchable:
        op = _new_operation(sim, machine, "installPatches", op_id, now + timedelta(minutes=_disconnected_minutes(sim)))
        op.failure = _not_connected(machine)
    else:
        plan = plan_install(
            machine,
            sim.fleet.available_patches(machine),
            {**body, "rebootSetting": reboot},
            start=now,
            activity_id=op_id,
            duration_limit=limit,
            reboot_minutes=sim.reboot_minutes,
            **sim.faults.for_install(machine),
        )
        op = _new_operation(sim, machine, "installPatches", op_id, plan.end)
        op.plan = plan
        op.failure = sim.faults.operation_failure(machine, "installPatches")
        machine.last_installation = plan.summary(in_progress=True, now=now)
    machine.busy_operation = op_id
    sim.start_arc_operation(op)
    return _lro_reply(sim, call, op)


def assess_patches(sim: ArmSimulator, call: Call) -> Reply:
    machine = _machine_or_404(sim, call)
    if call.body is not None and not isinstance(call.body, dict):
        raise ArmError.bad_request("assessPatches takes no body (or an empty object).")
    now = sim.clock.now()
    op_id = sim.new_id()
    if not machine.patchable:
        op = _new_operation(sim, machine, "assessPatches", op_id, now + timedelta(minutes=_disconnected_minutes(sim)))
        op.failure = _not_connected(machine)
    else:
        op = _new_operation(sim, machine, "assessPatches", op_id, now + timedelta(minutes=sim.assess_minutes))
        op.failure = sim.faults.operation_failure(machine, "assessPatches")
    sim.start_arc_operation(op)
    return _lro_reply(sim, call, op)


def finish_operation(sim: ArmSimulator, op: ArcOperation) -> None:
    """Complete an Arc LRO at its end time (the simulator calls this inside ``clock.busy()``)."""
    machine = sim.fleet.vm(op.machine_id)
    if machine is None:
        op.status, op.result = "Failed", None
        return
    if op.kind == "installPatches":
        if op.failure is None and op.plan is not None:
            sim.apply_install(machine, op.plan)
        else:
            if op.plan is not None:
                machine.last_installation = {**op.plan.summary(), "status": "Failed", "installedPatchCount": 0,
                                             "failedPatchCount": 0, "error": dict(op.failure or {})}
            if machine.busy_operation == op.id:
                machine.busy_operation = None
        op.result = _install_result(machine, op)
    else:
        assessment = None
        if op.failure is None:
            assessment = assessment_result(machine, sim.fleet.available_patches(machine), start=op.start,
                                           activity_id=op.id)
            machine.last_assessment = assessment  # Resource Graph's …/patchAssessmentResults/latest rows
        op.result = _assess_result(machine, op, assessment)
    op.status = "Failed" if op.failure is not None else "Succeeded"


def operation_result(sim: ArmSimulator, call: Call) -> Reply:
    op = sim.arc_operations.get(call.params["op"].lower())
    if op is None or op.subscription.lower() != call.params["sub"].lower():
        raise ArmError(404, "NotFound", f"The operation '{call.params['op']}' was not found.")
    return lro_result(sim, call, running=op.status == "InProgress", result=op.result)


HANDLERS = {
    "hc.get": get_machine,
    "hc.list": list_machines,
    "hc.list_all": list_all_machines,
    "hc.update": update_machine,
    "hc.extensions": list_extensions,
    "hc.install_patches": install_patches,
    "hc.assess_patches": assess_patches,
    "hc.operation_result": operation_result,
}
