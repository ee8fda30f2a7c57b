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

State and lifecycle live in :class:`emulator.arm.backends.compute.ComputeBackend` (methods named
after the SDK operations); this module is the thin HTTP layer: it parses the request, calls the
backend and shapes the answer (202 + headers, operation status bodies).

LIMITATIONS: no VM create/delete; ``PATCH`` honours ``tags`` only; the VM body carries the
fields the app reads (not every property of the Compute model).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from emulator.arm.backends.compute import ComputeBackend, Operation
from emulator.arm.backends.core import iso as _iso
from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError
from emulator.arm.fleet import Vm
from emulator.arm.listing import lro_result, page
from emulator.arm.patching import parse_iso_duration

__all__ = ["HANDLERS", "Operation", "instance_view", "vm_body"]


def instance_view(backend: ComputeBackend, vm: Vm) -> dict[str, Any]:
    """``VirtualMachineInstanceView`` reflecting the VM's simulated state."""
    return backend.instance_view(vm)


def vm_body(backend: ComputeBackend, vm: Vm, *, expand_instance_view: bool = False) -> dict[str, Any]:
    """``VirtualMachine`` as GET returns it."""
    return backend.vm_body(vm, expand_instance_view=expand_instance_view)


def _vm(backend: ComputeBackend, call: Call) -> Vm:
    p = call.params
    return backend.get(p["sub"], p["rg"], p["vm"])


def _expand(call: Call) -> bool:
    """``$expand=instanceView``, or ``statusOnly=true`` on list-all (which returns run-time status)."""
    return "instanceview" in call.query.get("$expand", "").lower() or call.query.get("statusOnly", "") == "true"


def get_vm(backend: ComputeBackend, call: Call) -> Reply:
    return Reply(200, backend.vm_body(_vm(backend, call), expand_instance_view=_expand(call)))


def list_vms(backend: ComputeBackend, call: Call) -> Reply:
    vms = backend.list(call.params["sub"], call.params["rg"])
    return page(backend.core, call, vms, lambda vm: backend.vm_body(vm, expand_instance_view=_expand(call)))


def list_all_vms(backend: ComputeBackend, call: Call) -> Reply:
    vms = backend.list_all(call.params["sub"])
    return page(backend.core, call, vms, lambda vm: backend.vm_body(vm, expand_instance_view=_expand(call)))


def get_instance_view(backend: ComputeBackend, call: Call) -> Reply:
    return Reply(200, backend.instance_view(_vm(backend, call)))


def update_vm(backend: ComputeBackend, call: Call) -> Reply:
    vm = _vm(backend, call)
    body = call.require_body()
    unsupported = sorted(set(body) - {"tags", "properties", "identity", "zones", "plan"})
    if unsupported:
        raise ArmError.bad_request(
            f"Could not find member '{unsupported[0]}' on object of type 'VirtualMachineUpdate'.",
            code="InvalidRequestContent",
        )
    tags: dict[str, str] | None = None
    if "tags" in body:
        tags = body["tags"] or {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise ArmError.bad_request(
                "tags must be an object of string values.", code="InvalidParameter", target="tags"
            )
        if len(tags) > 50:
            raise ArmError(400, "InvalidTag", f"The resource has {len(tags)} tags; at most 50 are allowed.")
    return Reply(200, backend.vm_body(backend.update(vm, tags=tags)))


# -- LROs ---------------------------------------------------------------------------------------
def _lro_reply(backend: ComputeBackend, call: Call, op: Operation) -> Reply:
    base = f"{call.base_url}/subscriptions/{op.subscription}/providers/Microsoft.Compute/locations/{op.location}"
    query = urlencode({"api-version": call.api_version})
    return Reply(
        202,
        None,
        {
            "Azure-AsyncOperation": f"{base}/operations/{op.id}?{query}",
            "Location": f"{base}/operationResults/{op.id}?{query}",
            "Retry-After": str(backend.core.retry_after),
        },
    )


def install_patches(backend: ComputeBackend, call: Call) -> Reply:
    vm = _vm(backend, call)
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
    return _lro_reply(backend, call, backend.begin_install_patches(vm, body, limit=limit))


def assess_patches(backend: ComputeBackend, call: Call) -> Reply:
    return _lro_reply(backend, call, backend.begin_assess_patches(_vm(backend, call)))


def _operation(backend: ComputeBackend, call: Call) -> Operation:
    return backend.get_operation(call.params["sub"], call.params["op"])


def operation_status(backend: ComputeBackend, call: Call) -> Reply:
    op = _operation(backend, call)
    body: dict[str, Any] = {"name": op.id, "status": op.status, "startTime": _iso(op.start)}
    if op.status != "InProgress":
        body["endTime"] = _iso(op.end)
    if op.status == "Failed" and op.failure is not None:
        body["error"] = dict(op.failure)
    headers = {"Retry-After": str(backend.core.retry_after)} if op.status == "InProgress" else {}
    return Reply(200, body, headers)


def operation_result(backend: ComputeBackend, call: Call) -> Reply:
    op = _operation(backend, call)
    return lro_result(backend.core, call, running=op.status == "InProgress", result=op.result)


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
