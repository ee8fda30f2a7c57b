"""Azure Arc-enabled servers (``Microsoft.HybridCompute/machines``) as the activities see them.

Pure functions over REST-shaped dicts (the wire JSON of ``Machine`` and of
``MachineInstallPatchesResult``), the Arc twin of :mod:`patchrings.arm.vms`. Sources:
``/work/shared/reference/arc-and-resource-graph.md`` §2 (spec ``2026-07-15``, SDK
azure-mgmt-hybridcompute 10.0.0), checked against the wheel's models.

What differs from an Azure VM, and why it matters here:

* **No instance view, no power state.** A machine reports its *agent* status
  (``properties.status``: ``Connected`` / ``Disconnected`` / ``Error`` / ``AwaitingConnection``, and
  ``Expired`` in the field; treated as an open string) and ``lastStatusChange``. Only a
  ``Connected`` machine can be patched or judged healthy (§2.3, §2.4, §7 pitfalls).
* **installPatches parameters**: spec spellings only (``IfRequired``/``Never``/``Always``,
  ``UpdateRollUp``, ``Updates``, ``Other``); Linux parameters have no ``maintenanceRunId`` (§2.5).
* **Results** carry no per-patch list and say ``errorDetails`` (a list of common ``ErrorDetail``)
  instead of ``error`` (§2.6). :func:`install_result` puts them in the
  ``VirtualMachineInstallPatchesResult`` shape the domain judges, with the patch list taken from
  Resource Graph rows when there are any, and *without* a ``patches`` key when there are none
  (so :func:`patchrings.domain.results.has_patch_detail` is false and the result never passes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from patchrings.arm.ids import parse_resource_id

__all__ = [
    "ARC_TYPE",
    "VM_TYPE",
    "agent_status",
    "arc_install_parameters",
    "arc_ref",
    "install_result",
    "is_arc",
    "member_kind",
    "member_type",
    "reported_patch_count",
]

ARC_TYPE = "microsoft.hybridcompute/machines"
VM_TYPE = "microsoft.compute/virtualmachines"
CONNECTED = "connected"

# installPatches parameter names the HybridCompute spec accepts (MachineInstallPatchesParameters).
_WINDOWS_KEYS = ("classificationsToInclude", "kbNumbersToInclude", "kbNumbersToExclude",
                 "excludeKbsRequiringReboot", "maxPatchPublishDate", "patchNameMasksToInclude",
                 "patchNameMasksToExclude")
_LINUX_KEYS = ("classificationsToInclude", "packageNameMasksToInclude", "packageNameMasksToExclude")
# Learn's how-to spellings (§2.5 "Doc vs spec") -> the spec's.
_CLASSIFICATION_SPELLING = {"updaterollup": "UpdateRollUp", "update": "Updates", "others": "Other"}


def member_type(resource_id: str) -> str | None:
    """The lower-case ``provider/type`` of a member id (``microsoft.compute/virtualmachines``...)."""
    try:
        rid = parse_resource_id(str(resource_id))
    except ValueError:
        return None
    if not rid.provider or not rid.type:
        return None
    return f"{rid.provider}/{rid.type}".lower()


def is_arc(member: Mapping[str, Any] | str) -> bool:
    """Is this member (record or id) an Arc-enabled server? ``kind`` wins over the id's type."""
    if isinstance(member, Mapping):
        kind = str(member.get("kind") or "").lower()
        if kind in ("arc", "vm"):
            return kind == "arc"
        return member_type(str(member.get("id") or "")) == ARC_TYPE
    return member_type(member) == ARC_TYPE


def member_kind(resource_id: str) -> str:
    """``arc`` for a HybridCompute machine id, ``vm`` otherwise (the member record's ``kind``)."""
    return "arc" if member_type(resource_id) == ARC_TYPE else "vm"


def _props(machine: Mapping[str, Any]) -> Mapping[str, Any]:
    props = machine.get("properties")
    return props if isinstance(props, Mapping) else machine


def agent_status(machine: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{agentStatus, lastStatusChange, osName, osVersion, osType, agentVersion}`` of a machine."""
    props = _props(machine or {})
    return {
        "agentStatus": None if props.get("status") is None else str(props.get("status")),
        "lastStatusChange": props.get("lastStatusChange"),
        "osName": props.get("osName"),
        "osVersion": props.get("osVersion"),
        "osType": props.get("osType"),
        "agentVersion": props.get("agentVersion"),
    }


def is_connected(machine: Mapping[str, Any] | None) -> bool:
    return str(_props(machine or {}).get("status") or "").lower() == CONNECTED


def _os(props: Mapping[str, Any]) -> str:
    """``Windows`` / ``Linux`` from ``osType`` (documented lower case, tolerated in any case)."""
    os_type = str(props.get("osType") or "").lower()
    if os_type == "windows":
        return "Windows"
    if os_type == "linux":
        return "Linux"
    name = str(props.get("osName") or "").lower()
    if "windows" in name:
        return "Windows"
    return "Linux" if name else str(props.get("osType") or "")


def arc_ref(machine: Mapping[str, Any]) -> dict[str, Any]:
    """The member record (the ``VmRef`` fields plus ``kind: arc`` and the agent status) of a
    machine's REST JSON. ``image`` is the reported OS (``osSku`` or ``osName`` + version): Arc
    machines have no image reference, and Ring 0's coverage check keys on the image family.
    ``scheduleIssue`` is None (Arc has no patch-orchestration prerequisite, §3.2) unless the agent
    is not Connected, which makes a machine miss scheduled runs silently (§7 pitfalls)."""
    props = _props(machine)
    status = agent_status(machine)
    connected = is_connected(machine)
    image = props.get("osSku") or " ".join(str(x) for x in (props.get("osName"), props.get("osVersion")) if x)
    return {
        "id": str(machine.get("id")),
        "name": str(machine.get("name") or parse_resource_id(str(machine.get("id"))).name),
        "kind": "arc",
        "os": _os(props),
        "location": machine.get("location"),
        "zone": None,
        "availabilitySet": None,
        "powerState": None,
        "scheduleIssue": None if connected else
        f"Arc agent is {status['agentStatus'] or 'not reporting'}: the machine misses scheduled runs",
        "image": f"arc:{image}" if image else None,
        "agentStatus": status["agentStatus"],
        "lastStatusChange": status["lastStatusChange"],
    }


def _classifications(values: Iterable[Any]) -> list[str]:
    return [_CLASSIFICATION_SPELLING.get(str(v).lower(), str(v)) for v in values]


def arc_install_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Compute-shaped installPatches parameters as HybridCompute's ``MachineInstallPatchesParameters``.

    Keeps ``maximumDuration`` and ``rebootSetting`` (normalised by the caller) and the OS
    parameters the HybridCompute spec knows; drops Compute-only ones (Linux ``maintenanceRunId``).
    Classification spellings from the Learn how-to are mapped to the spec's (§2.5).
    """
    out: dict[str, Any] = {k: parameters[k] for k in ("maximumDuration", "rebootSetting") if k in parameters}
    for key, allowed in (("windowsParameters", _WINDOWS_KEYS), ("linuxParameters", _LINUX_KEYS)):
        given = parameters.get(key)
        if isinstance(given, Mapping):
            kept = {k: given[k] for k in allowed if k in given and given[k] is not None}
            if "classificationsToInclude" in kept:
                kept["classificationsToInclude"] = _classifications(kept["classificationsToInclude"])
            out[key] = kept
    return out


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def reported_patch_count(result: Mapping[str, Any]) -> int:
    """Patches an Arc result says it touched (installed + failed + pending): rows to expect in ARG."""
    return sum(_int(result.get(k)) for k in ("installedPatchCount", "failedPatchCount", "pendingPatchCount"))


def _error(details: Any) -> dict[str, Any] | None:
    """``errorDetails`` (list of ErrorDetail, or one) as the ``error`` object Compute results carry."""
    if not details:
        return None
    items = details if isinstance(details, list) else [details]
    items = [d if isinstance(d, Mapping) else {"message": str(d)} for d in items]
    if not items:
        return None
    first = items[0]
    return {"code": first.get("code") or "PatchOperationError", "message": str(first.get("message") or ""),
            "details": [dict(d) for d in items]}


def install_result(result: Mapping[str, Any], patches: list[dict[str, Any]] | None, *,
                   missing_reason: str | None = None) -> dict[str, Any]:
    """An Arc ``MachineInstallPatchesResult`` in the ``VirtualMachineInstallPatchesResult`` shape.

    ``patches`` are the per-patch entries read from Resource Graph (``patchId, name, version,
    kbId, classifications, installationState``), or None when they could not be read: the result
    then has **no** ``patches`` key (never judged a pass) and ``patchDetail`` says why.
    """
    out: dict[str, Any] = {
        "status": result.get("status"),
        "installationActivityId": result.get("installationActivityId"),
        "rebootStatus": result.get("rebootStatus") or "Unknown",
        "maintenanceWindowExceeded": bool(result.get("maintenanceWindowExceeded")),
        "excludedPatchCount": _int(result.get("excludedPatchCount")),
        "notSelectedPatchCount": _int(result.get("notSelectedPatchCount")),
        "pendingPatchCount": _int(result.get("pendingPatchCount")),
        "installedPatchCount": _int(result.get("installedPatchCount")),
        "failedPatchCount": _int(result.get("failedPatchCount")),
        "startDateTime": result.get("startDateTime"),
        "lastModifiedDateTime": result.get("lastModifiedDateTime"),
        "error": _error(result.get("errorDetails") or result.get("error")),
        "source": "hybridCompute+resourceGraph" if patches is not None else "hybridCompute",
    }
    if patches is not None:
        out["patches"] = patches
    else:
        out["patchDetail"] = missing_reason or "no per-patch rows in Resource Graph"
    return out
