"""The HybridCompute backend: Azure Arc-enabled servers' reads and tags, their patch LROs.

State: the fleet's Arc machines (``fleet.machines``: a :class:`~emulator.arm.fleet.Vm` with
``kind == "arc"``) and the LRO records (:attr:`HybridComputeBackend.operations`, kept after
completion). Methods are named after ``HybridComputeManagementClient.machines`` operations;
:mod:`emulator.arm.hybridcompute` is the HTTP layer above it and documents the behaviour.

SUPPORTED: ``get`` / ``list_by_resource_group`` / ``list_by_subscription``, ``update`` (tags,
patch mode), ``extensions_list``, ``begin_install_patches`` / ``begin_assess_patches`` (a machine
that is not ``Connected`` ends its operation ``MachineNotConnected`` after
``arc.disconnectedOperationMinutes``), results without per-patch lists (``errorDetails``),
``vmAgentNotReady`` / ``deallocated`` faults making an agent ``Disconnected`` at start.

LIMITATIONS: see :mod:`emulator.arm.hybridcompute`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from emulator.arm.backends.core import Core
from emulator.arm.backends.core import iso as _iso
from emulator.arm.errors import ArmError
from emulator.arm.fleet import Vm, stable_uuid
from emulator.arm.listing import check_scope, in_scope
from emulator.arm.patching import InstallPlan, assessment_result, plan_install

__all__ = ["ArcOperation", "HybridComputeBackend", "assessment_counts"]

TYPE = "Microsoft.HybridCompute/machines"
_COUNT_KEYS = ("security", "critical", "definition", "updateRollup", "featurePack", "servicePack", "tools",
               "updates", "other")


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


def _patch_service(vm: Vm) -> str:
    return "WU" if vm.os == "Windows" else "APT"


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


def _not_connected(machine: Vm) -> dict[str, str]:
    return {
        "code": "MachineNotConnected",
        "message": f"The operation could not be completed: the Azure Connected Machine agent on '{machine.name}' "
        f"is {machine.agent_status}. Extension operations need a Connected agent.",
    }


class HybridComputeBackend:
    """See the module docstring."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.operations: dict[str, ArcOperation] = {}  # lower id -> Arc LRO
        self._apply_initial_faults()

    def _apply_initial_faults(self) -> None:
        """``vmAgentNotReady`` / ``deallocated`` on an Arc machine: its agent is Disconnected at start."""
        now = self.core.clock.now()
        faults = self.core.faults
        for machine in self.core.fleet.machines.values():
            hit = faults._take("vmAgentNotReady", machine) + faults._take("deallocated", machine)
            if hit:
                machine.set_agent_status("Disconnected", now)

    # -- bodies ---------------------------------------------------------------------------------
    def machine_body(self, vm: Vm) -> dict[str, Any]:
        """``Machine`` as GET returns it (the fields the app reads, realistic values instead of the examples' nulls)."""
        core = self.core
        windows = vm.os == "Windows"
        patch_settings = {"assessmentMode": "AutomaticByPlatform", "patchMode": vm.patch_mode}
        os_profile: dict[str, Any] = {"computerName": vm.name}
        os_profile["windowsConfiguration" if windows else "linuxConfiguration"] = {"patchSettings": patch_settings}
        changed = vm.last_status_change or core.clock.now()
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
            "type": TYPE,
            "location": vm.location,
            "tags": dict(vm.tags),
            "identity": {
                "type": "SystemAssigned",
                "principalId": stable_uuid("arc-principal", vm.id),
                "tenantId": str(core.scenario.get("tenantId") or stable_uuid("tenant", str(core.seed))),
            },
            "properties": properties,
        }
        if vm.arc_kind:
            body["kind"] = vm.arc_kind
        return body

    # -- reads and tags -------------------------------------------------------------------------
    def get(self, sub: str, rg: str, name: str) -> Vm:
        machine = self.core.fleet.find_machine(sub, rg, name)
        if machine is None:
            check_scope(self.core, sub, rg)
            raise ArmError.not_found(TYPE, name, rg)
        return machine

    def list_by_resource_group(self, sub: str, rg: str) -> list[Vm]:
        return in_scope(self.core, self.core.fleet.machines, sub, rg)

    def list_by_subscription(self, sub: str) -> list[Vm]:
        return in_scope(self.core, self.core.fleet.machines, sub)

    def update(self, machine: Vm, *, tags: dict[str, str] | None = None, patch_mode: str | None = None) -> Vm:
        if tags is not None:
            machine.tags = dict(tags)
        if patch_mode is not None:
            machine.patch_mode = patch_mode
        return machine

    def extensions_list(self, machine: Vm) -> list[dict[str, Any]]:
        """The two Update Manager extensions every machine has."""
        os_name = machine.os
        return [
            _extension(machine, "Microsoft.CPlat.Core", f"{os_name}PatchExtension"),
            _extension(machine, "Microsoft.SoftwareUpdateManagement", f"{os_name}OsUpdateExtension"),
        ]

    # -- LROs -----------------------------------------------------------------------------------
    def _disconnected_minutes(self) -> float:
        return float((self.core.scenario.get("arc") or {}).get("disconnectedOperationMinutes", 30))

    def _new_operation(self, machine: Vm, kind: str, op_id: str, end: datetime) -> ArcOperation:
        return ArcOperation(
            id=op_id,
            kind=kind,
            machine_id=machine.id,
            subscription=machine.subscription,
            location=machine.location.lower().replace(" ", ""),
            start=self.core.clock.now(),
            end=end,
        )

    def begin_install_patches(self, machine: Vm, parameters: dict[str, Any], *, limit: timedelta) -> ArcOperation:
        """Start an install (parameters validated by the handler, ``rebootSetting`` canonical)."""
        core = self.core
        if machine.busy_operation:
            raise ArmError(
                409,
                "Conflict",
                f"An installPatches operation is already in progress on machine '{machine.name}' "
                f"({machine.busy_operation}). Wait until it completes before starting another.",
            )
        now = core.clock.now()
        op_id = core.new_id()
        if not machine.patchable:
            op = self._new_operation(machine, "installPatches", op_id,
                                     now + timedelta(minutes=self._disconnected_minutes()))
            op.failure = _not_connected(machine)
        else:
            plan = plan_install(
                machine,
                core.fleet.available_patches(machine),
                parameters,
                start=now,
                activity_id=op_id,
                duration_limit=limit,
                reboot_minutes=core.reboot_minutes,
                **core.faults.for_install(machine),
            )
            op = self._new_operation(machine, "installPatches", op_id, plan.end)
            op.plan = plan
            op.failure = core.faults.operation_failure(machine, "installPatches")
            machine.last_installation = plan.summary(in_progress=True, now=now)
        machine.busy_operation = op_id
        self.start_operation(op)
        return op

    def begin_assess_patches(self, machine: Vm) -> ArcOperation:
        core = self.core
        now = core.clock.now()
        op_id = core.new_id()
        if not machine.patchable:
            op = self._new_operation(machine, "assessPatches", op_id,
                                     now + timedelta(minutes=self._disconnected_minutes()))
            op.failure = _not_connected(machine)
        else:
            op = self._new_operation(machine, "assessPatches", op_id, now + timedelta(minutes=core.assess_minutes))
            op.failure = core.faults.operation_failure(machine, "assessPatches")
        self.start_operation(op)
        return op

    def start_operation(self, op: ArcOperation) -> None:
        """Record an Arc LRO and finish it at its end time on the shared clock."""
        self.operations[op.id.lower()] = op
        self.core.at(op.end, lambda: self.finish_operation(op))

    def finish_operation(self, op: ArcOperation) -> None:
        """Complete an Arc LRO at its end time (called inside ``clock.busy()``)."""
        core = self.core
        machine = core.fleet.vm(op.machine_id)
        if machine is None:
            op.status, op.result = "Failed", None
            return
        if op.kind == "installPatches":
            if op.failure is None and op.plan is not None:
                core.apply_install(machine, op.plan)
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
                assessment = assessment_result(machine, core.fleet.available_patches(machine), start=op.start,
                                               activity_id=op.id)
                machine.last_assessment = assessment  # Resource Graph's …/patchAssessmentResults/latest rows
            op.result = _assess_result(machine, op, assessment)
        op.status = "Failed" if op.failure is not None else "Succeeded"

    def get_operation(self, sub: str, op_id: str) -> ArcOperation:
        op = self.operations.get(op_id.lower())
        if op is None or op.subscription.lower() != sub.lower():
            raise ArmError(404, "NotFound", f"The operation '{op_id}' was not found.")
        return op
