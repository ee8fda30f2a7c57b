"""Microsoft.Compute/virtualMachines: reads, tag updates and the patch LROs.

SUPPORTED
* ``GET …/virtualMachines/{vm}`` (``$expand=instanceView``), list by resource group, list all in
  a subscription (paged by ``nextLink``), ``GET …/instanceView`` (ProvisioningState and PowerState
  statuses, VM agent, the Application Health extension with its substatus, ``vmHealth``,
  ``patchStatus`` with ``availablePatchSummary`` / ``lastPatchInstallationSummary``);
* ``PATCH …/virtualMachines/{vm}`` with ``tags`` (200 + VM body);
* ``POST installPatches`` / ``assessPatches`` as LROs (contracts §3.5): 202 with
  ``Azure-AsyncOperation``, ``Location`` and ``Retry-After`` (≥ 1); the async-operation URL
  answers ``InProgress`` / ``Succeeded``; ``Location`` answers 202 while running and 200 + the
  result when done; records are kept after completion so continuation tokens resume anywhere.
  An ``operationFails`` fault ends the operation ``Failed`` with an ``error`` (the poller raises).
* Azure's refusals: 409 ``Conflict`` for a second install while one runs, 409
  ``OperationNotAllowed`` on a deallocated/stopped VM, 409 ``VMAgentStatusCommunicationError`` when
  the agent is not ready, 400 ``InvalidParameter`` for bad parameters, 404 ``ResourceNotFound``.

LIMITATIONS: no VM create/delete; ``PATCH`` honours ``tags`` only; the VM body carries the
fields the app reads (not every property of the Compute model).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError
from emulator.arm.fleet import Vm
from emulator.arm.listing import check_scope, in_scope, lro_result, page
from emulator.arm.patching import (
    InstallPlan,
    assessment_result,
    parse_iso_duration,
    plan_install,
)

if TYPE_CHECKING:
    from emulator.arm.server import ArmSimulator

__all__ = ["HANDLERS", "Operation", "instance_view", "vm_body"]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


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


def _vm_or_404(sim: ArmSimulator, call: Call) -> Vm:
    p = call.params
    vm = sim.fleet.find_vm(p["sub"], p["rg"], p["vm"])
    if vm is None:
        check_scope(sim, p["sub"], p["rg"])
        raise ArmError.not_found("Microsoft.Compute/virtualMachines", p["vm"], p["rg"])
    return vm


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


def instance_view(sim: ArmSimulator, vm: Vm) -> dict[str, Any]:
    """``VirtualMachineInstanceView`` reflecting the VM's simulated state."""
    now = sim.clock.now()
    windows = vm.os == "Windows"
    available = sim.fleet.available_patches(vm)
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


def vm_body(sim: ArmSimulator, vm: Vm, *, expand_instance_view: bool = False) -> dict[str, Any]:
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
        properties["instanceView"] = instance_view(sim, vm)
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


def _expand(call: Call) -> bool:
    """``$expand=instanceView``, or ``statusOnly=true`` on list-all (which returns run-time status)."""
    return "instanceview" in call.query.get("$expand", "").lower() or call.query.get("statusOnly", "") == "true"


def get_vm(sim: ArmSimulator, call: Call) -> Reply:
    return Reply(200, vm_body(sim, _vm_or_404(sim, call), expand_instance_view=_expand(call)))


def list_vms(sim: ArmSimulator, call: Call) -> Reply:
    vms = in_scope(sim, sim.fleet.vms, call, by_group=True)
    return page(sim, call, vms, lambda vm: vm_body(sim, vm, expand_instance_view=_expand(call)))


def list_all_vms(sim: ArmSimulator, call: Call) -> Reply:
    vms = in_scope(sim, sim.fleet.vms, call, by_group=False)
    return page(sim, call, vms, lambda vm: vm_body(sim, vm, expand_instance_view=_expand(call)))


def get_instance_view(sim: ArmSimulator, call: Call) -> Reply:
    return Reply(200, instance_view(sim, _vm_or_404(sim, call)))


def update_vm(sim: ArmSimulator, call: Call) -> Reply:
    vm = _vm_or_404(sim, call)
    body = call.require_body()
    unsupported = sorted(set(body) - {"tags", "properties", "identity", "zones", "plan"})
    if unsupported:
        raise ArmError.bad_request(
            f"Could not find member '{unsupported[0]}' on object of type 'VirtualMachineUpdate'.",
            code="InvalidRequestContent",
        )
    if "tags" in body:
        tags = body["tags"] or {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise ArmError.bad_request(
                "tags must be an object of string values.", code="InvalidParameter", target="tags"
            )
        if len(tags) > 50:
            raise ArmError(400, "InvalidTag", f"The resource has {len(tags)} tags; at most 50 are allowed.")
        vm.tags = dict(tags)
    return Reply(200, vm_body(sim, vm))


# -- LROs ---------------------------------------------------------------------------------------
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


def _lro_reply(sim: ArmSimulator, call: Call, op: Operation) -> Reply:
    base = f"{call.base_url}/subscriptions/{op.subscription}/providers/Microsoft.Compute/locations/{op.location}"
    query = urlencode({"api-version": call.api_version})
    return Reply(
        202,
        None,
        {
            "Azure-AsyncOperation": f"{base}/operations/{op.id}?{query}",
            "Location": f"{base}/operationResults/{op.id}?{query}",
            "Retry-After": str(sim.retry_after),
        },
    )


def install_patches(sim: ArmSimulator, call: Call) -> Reply:
    vm = _vm_or_404(sim, call)
    body = call.require_body()
    reboot = body.get("rebootSetting")
    if reboot is None:
        raise ArmError(
            400, "InvalidParameter", "Required parameter 'rebootSetting' is missing (null).", target="rebootSetting"
        )
    if str(reboot).lower() not in ("ifrequired", "never", "always", "rebootifrequired", "neverreboot", "alwaysreboot"):
        raise ArmError(
            400,
            "InvalidParameter",
            f"The value '{reboot}' of parameter 'rebootSetting' is not "
            "valid. Allowed values are IfRequired, Never, Always.",
            target="rebootSetting",
        )
    limit: timedelta | None = None
    if body.get("maximumDuration"):
        try:
            limit = parse_iso_duration(str(body["maximumDuration"]))
        except ValueError as exc:
            raise ArmError(400, "InvalidParameter", str(exc), target="maximumDuration") from None
        if not timedelta(minutes=20) <= limit <= timedelta(hours=4):
            raise ArmError(
                400, "InvalidParameter", "maximumDuration must be between PT20M and PT4H.", target="maximumDuration"
            )
    wanted = "windowsParameters" if vm.os == "Windows" else "linuxParameters"
    if not isinstance(body.get(wanted), dict):
        raise ArmError(
            400, "InvalidParameter", f"'{wanted}' is required to install patches on a {vm.os} VM.", target=wanted
        )
    _refuse_unless_ready(vm, "installPatches")
    if vm.busy_operation:
        raise ArmError(
            409,
            "Conflict",
            f"An installPatches operation is already in progress on VM '{vm.name}' "
            f"({vm.busy_operation}). Wait until it completes before starting another.",
        )
    now = sim.clock.now()
    op_id = sim.new_id()
    plan = plan_install(
        vm,
        sim.fleet.available_patches(vm),
        body,
        start=now,
        activity_id=op_id,
        duration_limit=limit or timedelta(hours=4),
        reboot_minutes=sim.reboot_minutes,
        maintenance_run_id=(body.get("linuxParameters") or {}).get("maintenanceRunId"),
        **sim.faults.for_install(vm),
    )
    op = Operation(
        failure=sim.faults.operation_failure(vm, "installPatches"),
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
    sim.start_operation(op)
    return _lro_reply(sim, call, op)


def assess_patches(sim: ArmSimulator, call: Call) -> Reply:
    vm = _vm_or_404(sim, call)
    _refuse_unless_ready(vm, "assessPatches")
    now = sim.clock.now()
    op_id = sim.new_id()
    op = Operation(
        failure=sim.faults.operation_failure(vm, "assessPatches"),
        id=op_id,
        kind="assessPatches",
        vm_id=vm.id,
        subscription=vm.subscription,
        location=vm.location.lower().replace(" ", ""),
        start=now,
        end=now + timedelta(minutes=sim.assess_minutes),
    )
    sim.start_operation(op)
    return _lro_reply(sim, call, op)


def finish_operation(sim: ArmSimulator, op: Operation) -> None:
    """Complete an LRO at its end time (called by the simulator inside ``clock.busy()``)."""
    vm = sim.fleet.vm(op.vm_id)
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
            sim.apply_install(vm, op.plan)
        op.result = op.plan.result()
    else:
        available = sim.fleet.available_patches(vm) if vm is not None else []
        op.result = assessment_result(vm, available, start=op.start, activity_id=op.id) if vm else None
        if vm is not None:
            vm.last_assessment = op.result
    op.status = "Succeeded"


def _operation(sim: ArmSimulator, call: Call) -> Operation:
    op = sim.operations.get(call.params["op"].lower())
    if op is None or op.subscription.lower() != call.params["sub"].lower():
        raise ArmError(404, "NotFound", f"The operation '{call.params['op']}' was not found.")
    return op


def operation_status(sim: ArmSimulator, call: Call) -> Reply:
    op = _operation(sim, call)
    body: dict[str, Any] = {"name": op.id, "status": op.status, "startTime": _iso(op.start)}
    if op.status != "InProgress":
        body["endTime"] = _iso(op.end)
    if op.status == "Failed" and op.failure is not None:
        body["error"] = dict(op.failure)
    headers = {"Retry-After": str(sim.retry_after)} if op.status == "InProgress" else {}
    return Reply(200, body, headers)


def operation_result(sim: ArmSimulator, call: Call) -> Reply:
    op = _operation(sim, call)
    return lro_result(sim, call, running=op.status == "InProgress", result=op.result)


HANDLERS = {
    "vm.get": get_vm,
    "vm.list": list_vms,
    "vm.list_all": list_all_vms,
    "vm.instance_view": get_instance_view,
    "vm.update": update_vm,
    "vm.install_patches": install_patches,
    "vm.assess_patches": assess_patches,
    "compute.operation_status": operation_status,
    "compute.operation_result": operation_result,
}
