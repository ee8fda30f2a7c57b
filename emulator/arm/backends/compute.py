"""The Compute backend: virtual machines' reads and tags, their patch LROs and the instance view.

State: the fleet's VMs (:class:`~emulator.arm.fleet.Fleet`, shared through the core) and the LRO
records (:attr:`ComputeBackend.operations`, kept after completion so continuation tokens resume
anywhere). Methods are named after ``ComputeManagementClient.virtual_machines`` operations;
:mod:`emulator.arm.compute` turns HTTP calls into these calls and their results into ARM answers.

SUPPORTED: ``get`` / ``list`` / ``list_all`` (ARM's 404s for a missing subscription, group or VM),
``update`` (tags), ``instance_view`` and the ``VirtualMachine`` body, ``begin_install_patches`` /
``begin_assess_patches`` with Azure's refusals (409 ``OperationNotAllowed`` on a stopped VM,
``VMAgentStatusCommunicationError``, ``Conflict`` while an install runs), operation records that
finish at their end time on the shared clock, ``operationFails`` faults.

LIMITATIONS: see :mod:`emulator.arm.compute`.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from emulator.arm.backends.core import Core
from emulator.arm.backends.core import iso as _iso
from emulator.arm.errors import ArmError
from emulator.arm.fleet import Vm
from emulator.arm.listing import check_scope, in_scope
from emulator.arm.patching import InstallPlan, assessment_result, plan_install

__all__ = ["ComputeBackend", "Operation"]


@dataclass
class Operation:
    """A compute LRO (installPatches / assessPatches)."""

    id: str
    kind: str  # "installPatches" | "assessPatches"
    vm_id: str
    subscription: str
    location: str
    start: datetime
    end: datetime
    status: str = "InProgress"
    result: dict[str, Any] | None = None
    plan: InstallPlan | None = None
    failure: dict[str, str] | None = None  # an operationFails fault: the ApiError it ends with


def _status(
    code: str, display: str, *, level: str = "Info", message: str | None = None, time: datetime | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {"code": code, "level": level, "displayStatus": display}
    if message:
        status["message"] = message
    if time is not None:
        status["time"] = _iso(time)
    return status


_POWER_DISPLAY = {"running": "VM running", "deallocated": "VM deallocated", "stopped": "VM stopped"}


class ComputeBackend:
    """See the module docstring."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.operations: dict[str, Operation] = {}  # lower id -> LRO

    # -- reads and tags -------------------------------------------------------------------------
    def get(self, sub: str, rg: str, name: str) -> Vm:
        vm = self.core.fleet.find_vm(sub, rg, name)
        if vm is None:
            check_scope(self.core, sub, rg)
            raise ArmError.not_found("Microsoft.Compute/virtualMachines", name, rg)
        return vm

    def list(self, sub: str, rg: str) -> builtins.list[Vm]:
        return in_scope(self.core, self.core.fleet.vms, sub, rg)

    def list_all(self, sub: str) -> builtins.list[Vm]:
        return in_scope(self.core, self.core.fleet.vms, sub)

    def update(self, vm: Vm, *, tags: dict[str, str] | None = None) -> Vm:
        """``begin_update`` with ``tags`` (the only member the simulator honours)."""
        if tags is not None:
            vm.tags = dict(tags)
        return vm

    def instance_view(self, vm: Vm) -> dict[str, Any]:
        """``VirtualMachineInstanceView`` reflecting the VM's simulated state."""
        now = self.core.clock.now()
        windows = vm.os == "Windows"
        available = self.core.fleet.available_patches(vm)
        critical = sum(1 for p in available if p.critical_or_security)
        view: dict[str, Any] = {
            "platformUpdateDomain": vm.update_domain,
            "platformFaultDomain": vm.fault_domain,
            "computerName": vm.name,
            "osName": "Windows Server 2022 Datacenter" if windows else "ubuntu",
            "osVersion": "Microsoft Windows NT 10.0.20348.0" if windows else "22.04",
            "hyperVGeneration": "V2",
            "statuses": [
                _status("ProvisioningState/succeeded", "Provisioning succeeded", time=now),
                _status(f"PowerState/{vm.power_state}", _POWER_DISPLAY.get(vm.power_state, vm.power_state)),
            ],
            "patchStatus": {
                "availablePatchSummary": {
                    "status": "Succeeded",
                    "assessmentActivityId": str(uuid.uuid5(uuid.NAMESPACE_URL, vm.id + "/assessment")),
                    "rebootPending": False,
                    "criticalAndSecurityPatchCount": critical,
                    "otherPatchCount": len(available) - critical,
                    "startTime": _iso(now),
                    "lastModifiedTime": _iso(now),
                    "error": None,
                },
                "configurationStatuses": [
                    _status("PatchModeConfigurationState/Ready", "Status_PatchModeConfigurationState_Ready", time=now),
                ],
            },
        }
        if vm.last_installation is not None:
            view["patchStatus"]["lastPatchInstallationSummary"] = dict(vm.last_installation)
        if vm.power_state == "running":
            agent_status = (
                _status(
                    "ProvisioningState/succeeded",
                    "Ready",
                    message="GuestAgent is running and processing the extensions.",
                    time=now,
                )
                if vm.vm_agent_ready
                else _status(
                    "ProvisioningState/Unavailable",
                    "Not Ready",
                    level="Warning",
                    message="VM Agent is unresponsive.",
                    time=now,
                )
            )
            view["vmAgent"] = {"vmAgentVersion": "2.7.41491.1102" if windows else "2.9.1.1", "statuses": [agent_status]}
        if vm.app_health_extension:
            health = vm.health if vm.power_state == "running" and vm.vm_agent_ready else "Unknown"
            ext = "ApplicationHealthWindows" if windows else "ApplicationHealthLinux"
            view["extensions"] = [
                {
                    "name": ext,
                    "type": f"Microsoft.ManagedServices.{ext}",
                    "typeHandlerVersion": "2.0",
                    "statuses": [
                        _status(
                            "ProvisioningState/succeeded",
                            "Provisioning succeeded",
                            message="Application Health extension is running",
                            time=now,
                        )
                    ],
                    "substatuses": [
                        _status(
                            f"ComponentStatus/ApplicationHealthState/{health.lower()}",
                            health,
                            level="Info" if health == "Healthy" else "Warning",
                            message=f"Application health state: {health}",
                            time=now,
                        )
                    ],
                }
            ]
            view["vmHealth"] = {
                "status": _status(
                    f"HealthState/{health.lower()}",
                    f"The VM is {health.lower()}",
                    level="Info" if health == "Healthy" else "Warning",
                    time=now,
                )
            }
        return view


    def vm_body(self, vm: Vm, *, expand_instance_view: bool = False) -> dict[str, Any]:
        """``VirtualMachine`` as GET returns it."""
        windows = vm.os == "Windows"
        patch_settings = {
            "patchMode": vm.patch_mode,
            "assessmentMode": "AutomaticByPlatform",
            "automaticByPlatformSettings": {
                "rebootSetting": "IfRequired",
                "bypassPlatformSafetyChecksOnUserSchedule": vm.bypass_platform_safety_checks,
            },
        }
        os_profile: dict[str, Any] = {"computerName": vm.name, "adminUsername": "azureuser", "secrets": []}
        if windows:
            os_profile["windowsConfiguration"] = {
                "provisionVMAgent": True,
                "enableAutomaticUpdates": True,
                "patchSettings": patch_settings,
            }
        else:
            os_profile["linuxConfiguration"] = {
                "disablePasswordAuthentication": True,
                "provisionVMAgent": True,
                "patchSettings": patch_settings,
            }
        image = (
            {
                "publisher": "MicrosoftWindowsServer",
                "offer": "WindowsServer",
                "sku": "2022-datacenter-azure-edition",
                "version": "latest",
            }
            if windows
            else {
                "publisher": "Canonical",
                "offer": "0001-com-ubuntu-server-jammy",
                "sku": "22_04-lts-gen2",
                "version": "latest",
            }
        )
        properties: dict[str, Any] = {
            "vmId": vm.vm_id,
            "hardwareProfile": {"vmSize": vm.size},
            "storageProfile": {
                "imageReference": image,
                "osDisk": {
                    "osType": vm.os,
                    "name": f"{vm.name}_OsDisk",
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "diskSizeGB": 128 if windows else 30,
                },
                "dataDisks": [],
            },
            "osProfile": os_profile,
            "networkProfile": {
                "networkInterfaces": [
                    {
                        "id": (
                            f"/subscriptions/{vm.subscription}/resourceGroups/{vm.resource_group}"
                            f"/providers/Microsoft.Network/networkInterfaces/{vm.name}-nic"
                        )
                    }
                ]
            },
            "provisioningState": "Succeeded",
            "timeCreated": "2026-01-05T10:00:00Z",
        }
        if vm.availability_set_id:
            properties["availabilitySet"] = {"id": vm.availability_set_id}
        if expand_instance_view:
            properties["instanceView"] = self.instance_view(vm)
        body: dict[str, Any] = {
            "name": vm.name,
            "id": vm.id,
            "type": "Microsoft.Compute/virtualMachines",
            "location": vm.location,
            "tags": dict(vm.tags),
            "properties": properties,
        }
        if vm.zone:
            body["zones"] = [vm.zone]
        return body

    # -- LROs -----------------------------------------------------------------------------------
    @staticmethod
    def _refuse_unless_ready(vm: Vm, operation: str) -> None:
        if vm.power_state != "running":
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Operation '{operation}' is not allowed on VM '{vm.name}' since the VM is {vm.power_state}.",
            )
        if not vm.vm_agent_ready:
            raise ArmError(
                409,
                "VMAgentStatusCommunicationError",
                f"VM '{vm.name}' has not reported status for VM agent or extensions. Verify that the OS is "
                "up and healthy, the VM has a running VM agent, and that it can establish outbound "
                "connections to Azure storage.",
            )

    def begin_install_patches(self, vm: Vm, parameters: dict[str, Any], *, limit: timedelta | None) -> Operation:
        """Start an install (parameters already validated by the handler); 409s as Azure refuses."""
        core = self.core
        self._refuse_unless_ready(vm, "installPatches")
        if vm.busy_operation:
            raise ArmError(
                409,
                "Conflict",
                f"An installPatches operation is already in progress on VM '{vm.name}' "
                f"({vm.busy_operation}). Wait until it completes before starting another.",
            )
        now = core.clock.now()
        op_id = core.new_id()
        plan = plan_install(
            vm,
            core.fleet.available_patches(vm),
            parameters,
            start=now,
            activity_id=op_id,
            duration_limit=limit or timedelta(hours=4),
            reboot_minutes=core.reboot_minutes,
            maintenance_run_id=(parameters.get("linuxParameters") or {}).get("maintenanceRunId"),
            **core.faults.for_install(vm),
        )
        op = Operation(
            failure=core.faults.operation_failure(vm, "installPatches"),
            id=op_id,
            kind="installPatches",
            vm_id=vm.id,
            subscription=vm.subscription,
            location=vm.location.lower().replace(" ", ""),
            start=now,
            end=plan.end,
            plan=plan,
        )
        vm.busy_operation = op_id
        vm.last_installation = plan.summary(in_progress=True, now=now)
        self.start_operation(op)
        return op

    def begin_assess_patches(self, vm: Vm) -> Operation:
        core = self.core
        self._refuse_unless_ready(vm, "assessPatches")
        now = core.clock.now()
        op_id = core.new_id()
        op = Operation(
            failure=core.faults.operation_failure(vm, "assessPatches"),
            id=op_id,
            kind="assessPatches",
            vm_id=vm.id,
            subscription=vm.subscription,
            location=vm.location.lower().replace(" ", ""),
            start=now,
            end=now + timedelta(minutes=core.assess_minutes),
        )
        self.start_operation(op)
        return op

    def start_operation(self, op: Operation) -> None:
        """Record an LRO and finish it at its end time on the shared clock."""
        self.operations[op.id.lower()] = op
        self.core.at(op.end, lambda: self.finish_operation(op))

    def finish_operation(self, op: Operation) -> None:
        """Complete an LRO at its end time (called inside ``clock.busy()``)."""
        core = self.core
        vm = core.fleet.vm(op.vm_id)
        if op.failure is not None:
            op.status = "Failed"
            if op.kind == "installPatches" and op.plan is not None:
                op.result = {
                    **op.plan.result(),
                    "status": "Failed",
                    "error": dict(op.failure),
                    "installedPatchCount": 0,
                    "failedPatchCount": 0,
                    "patches": [],
                }
                if vm is not None:
                    vm.last_installation = {
                        **op.plan.summary(),
                        "status": "Failed",
                        "error": dict(op.failure),
                        "installedPatchCount": 0,
                        "failedPatchCount": 0,
                    }
                    if vm.busy_operation == op.id:
                        vm.busy_operation = None
            else:
                op.result = {
                    "status": "Failed",
                    "assessmentActivityId": op.id,
                    "startDateTime": _iso(op.start),
                    "error": dict(op.failure),
                }
            return
        if op.kind == "installPatches" and op.plan is not None:
            if vm is not None:
                core.apply_install(vm, op.plan)
            op.result = op.plan.result()
        else:
            available = core.fleet.available_patches(vm) if vm is not None else []
            op.result = assessment_result(vm, available, start=op.start, activity_id=op.id) if vm else None
            if vm is not None:
                vm.last_assessment = op.result
        op.status = "Succeeded"

    def get_operation(self, sub: str, op_id: str) -> Operation:
        """An LRO record of subscription ``sub`` (404 ``NotFound`` otherwise)."""
        op = self.operations.get(op_id.lower())
        if op is None or op.subscription.lower() != sub.lower():
            raise ArmError(404, "NotFound", f"The operation '{op_id}' was not found.")
        return op
