"""Microsoft.HybridCompute/machines: Azure Arc-enabled servers on the ARM simulator (issue 12).

Why: Update Manager patches Arc-enabled servers through the same configurations, dynamic scopes
and events as Azure VMs, but the on-demand API differs in ways that break code written for
Compute (arc-and-resource-graph.md §2): the LRO answers 202 with only ``Location`` (+
``Retry-After``), the result has **no per-patch list** and carries ``errorDetails`` (a common-types
``ErrorDetail``) instead of ``error``, and machines have an agent ``status`` instead of a power
state. The app talks to this module through azure-mgmt-hybridcompute 10.0.0 (default api-version
``2026-07-15``). The state lives in :class:`emulator.arm.fleet.Fleet` (``fleet.machines``: a
:class:`~emulator.arm.fleet.Vm` with ``kind == "arc"``); the state and LRO lifecycle are
:class:`emulator.arm.backends.hybridcompute.HybridComputeBackend` (:class:`ArcOperation`); this
module is the thin REST layer above it.

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

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from emulator.arm import apiversions
from emulator.arm.backends.hybridcompute import ArcOperation, HybridComputeBackend, assessment_counts
from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError
from emulator.arm.fleet import Vm
from emulator.arm.listing import lro_result, page
from emulator.arm.patching import parse_iso_duration

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

_REBOOT = {"ifrequired": "IfRequired", "never": "Never", "always": "Always"}


def machine_body(backend: HybridComputeBackend, vm: Vm) -> dict[str, Any]:
    """``Machine`` as GET returns it."""
    return backend.machine_body(vm)


def finish_operation(backend: HybridComputeBackend, op: ArcOperation) -> None:
    """Complete an Arc LRO at its end time (see :meth:`HybridComputeBackend.finish_operation`)."""
    backend.finish_operation(op)


def _machine(backend: HybridComputeBackend, call: Call) -> Vm:
    p = call.params
    return backend.get(p["sub"], p["rg"], p["machine"])


# ----------------------------------------------------------------------------------- reads and tags
def get_machine(backend: HybridComputeBackend, call: Call) -> Reply:
    return Reply(200, backend.machine_body(_machine(backend, call)))


def list_machines(backend: HybridComputeBackend, call: Call) -> Reply:
    machines = backend.list_by_resource_group(call.params["sub"], call.params["rg"])
    return page(backend.core, call, machines, backend.machine_body)


def list_all_machines(backend: HybridComputeBackend, call: Call) -> Reply:
    return page(backend.core, call, backend.list_by_subscription(call.params["sub"]), backend.machine_body)


def update_machine(backend: HybridComputeBackend, call: Call) -> Reply:
    machine = _machine(backend, call)
    body = call.require_body()
    unsupported = sorted(set(body) - {"tags", "identity", "kind", "properties"})
    if unsupported:
        raise ArmError.bad_request(
            f"Could not find member '{unsupported[0]}' on object of type 'MachineUpdate'.",
            code="InvalidRequestContent",
        )
    tags: dict[str, str] | None = None
    if "tags" in body:
        tags = body["tags"] or {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise ArmError.bad_request("tags must be an object of string values.", code="InvalidParameter",
                                       target="tags")
        if len(tags) > 50:
            raise ArmError(400, "InvalidTag", f"The resource has {len(tags)} tags; at most 50 are allowed.")
    backend.update(machine, tags=tags)
    profile = ((body.get("properties") or {}).get("osProfile") or {}) if isinstance(body.get("properties"), dict) \
        else {}
    for key in ("windowsConfiguration", "linuxConfiguration"):
        settings = ((profile.get(key) or {}).get("patchSettings") or {}) if isinstance(profile, dict) else {}
        if isinstance(settings, dict) and settings.get("patchMode"):
            backend.update(machine, patch_mode=str(settings["patchMode"]))
    return Reply(200, backend.machine_body(machine))


def list_extensions(backend: HybridComputeBackend, call: Call) -> Reply:
    return Reply(200, {"value": backend.extensions_list(_machine(backend, call))})


# ----------------------------------------------------------------------------------- LROs
def _lro_reply(backend: HybridComputeBackend, call: Call, op: ArcOperation) -> Reply:
    """202 with only ``Location`` and ``Retry-After`` (the spec's headers for both POSTs)."""
    location = (
        f"{call.base_url}/subscriptions/{op.subscription}/providers/Microsoft.HybridCompute/locations/"
        f"{op.location}/updateCenterOperationResults/{op.id}?{urlencode({'api-version': call.api_version})}"
    )
    return Reply(202, None, {"Location": location, "Retry-After": str(backend.core.retry_after)})


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


def install_patches(backend: HybridComputeBackend, call: Call) -> Reply:
    machine = _machine(backend, call)
    body = call.require_body()
    if not isinstance(body, dict):
        raise ArmError.bad_request("The request body must be a MachineInstallPatchesParameters object.")
    limit = _maximum_duration(body)
    reboot = _reboot_setting(body)
    for key in ("windowsParameters", "linuxParameters"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise ArmError(400, "InvalidParameter", f"'{key}' must be an object.", target=key)
    op = backend.begin_install_patches(machine, {**body, "rebootSetting": reboot}, limit=limit)
    return _lro_reply(backend, call, op)


def assess_patches(backend: HybridComputeBackend, call: Call) -> Reply:
    machine = _machine(backend, call)
    if call.body is not None and not isinstance(call.body, dict):
        raise ArmError.bad_request("assessPatches takes no body (or an empty object).")
    return _lro_reply(backend, call, backend.begin_assess_patches(machine))


def operation_result(backend: HybridComputeBackend, call: Call) -> Reply:
    op = backend.get_operation(call.params["sub"], call.params["op"])
    return lro_result(backend.core, call, running=op.status == "InProgress", result=op.result)


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
