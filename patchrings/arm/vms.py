"""Virtual machines as the activities see them: VmRefs, health signals, patch summaries, scopes.

Pure functions over REST-shaped dicts (the wire JSON of ``VirtualMachine`` and
``VirtualMachineInstanceView``), so they are tested without a network and behave the same for
SDK models (via :func:`patchrings.arm.lro.to_wire`) and raw responses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from patchrings.arm.ids import parse_resource_id
from patchrings.domain.membership import tag_value  # the one tag rule (ring membership, scopes)

__all__ = [
    "app_health",
    "dynamic_scope_matches",
    "image_family",
    "install_summary",
    "parse_time",
    "power_state",
    "schedule_issue",
    "summary_as_result",
    "tag_value",
    "vm_agent_status",
    "vm_ref",
]

FINISHED_PATCH_STATES = frozenset({"succeeded", "failed", "completedwithwarnings"})
VM_TYPE = "microsoft.compute/virtualmachines"
ARC_TYPE = "microsoft.hybridcompute/machines"


def _props(vm: Mapping[str, Any]) -> Mapping[str, Any]:
    props = vm.get("properties")
    return props if isinstance(props, Mapping) else vm


def power_state(instance_view: Mapping[str, Any] | None) -> str | None:
    """``running`` / ``deallocated`` / ... from the ``PowerState/*`` status, or None."""
    for status in (instance_view or {}).get("statuses") or []:
        code = str(status.get("code") or "")
        if code.lower().startswith("powerstate/"):
            return code.split("/", 1)[1]
    return None


def vm_agent_status(instance_view: Mapping[str, Any] | None) -> str | None:
    """The VM agent's display status (``Ready`` / ``Not Ready``), or None when not reported."""
    agent = (instance_view or {}).get("vmAgent") or {}
    for status in agent.get("statuses") or []:
        display = status.get("displayStatus")
        if display:
            return str(display)
    return None


def app_health(instance_view: Mapping[str, Any] | None) -> str | None:
    """Application Health extension state (``healthy``/``unhealthy``/``unknown``...), None if absent.

    Azure reports it as ``vmHealth.status.code = HealthState/<state>``; the extension's own
    substatus (``ApplicationHealthState``) is used when ``vmHealth`` is missing.
    """
    view = instance_view or {}
    code = str(((view.get("vmHealth") or {}).get("status") or {}).get("code") or "")
    if code.lower().startswith("healthstate/"):
        return code.split("/", 1)[1]
    for ext in view.get("extensions") or []:
        if "applicationhealth" not in str(ext.get("type") or "").lower():
            continue
        for status in (ext.get("substatuses") or []) + (ext.get("statuses") or []):
            sub_code = str(status.get("code") or "")
            if "applicationhealthstate" in sub_code.lower():
                return str(status.get("displayStatus") or sub_code.rsplit("/", 1)[-1])
        return "unknown"
    return None


def schedule_issue(vm: Mapping[str, Any]) -> str | None:
    """Why a VM would not follow a maintenance schedule, or None when it would.

    Scheduled patching needs ``patchMode = AutomaticByPlatform`` and
    ``bypassPlatformSafetyChecksOnUserSchedule = true`` (update-manager-domain.md §3); a VM with
    the flag false that leaves every dynamic scope falls back to *platform* autopatching, so
    retag promotions must know. None also when the body carries no patch settings.
    """
    os_profile = _props(vm).get("osProfile") or {}
    config = os_profile.get("windowsConfiguration") or os_profile.get("linuxConfiguration") or {}
    settings = config.get("patchSettings")
    if not isinstance(settings, Mapping):
        return None
    mode = settings.get("patchMode")
    bypass = (settings.get("automaticByPlatformSettings") or {}).get("bypassPlatformSafetyChecksOnUserSchedule")
    if mode != "AutomaticByPlatform":
        return f"patchMode is {mode or 'unset'}, schedules need AutomaticByPlatform"
    if bypass is not True:
        return "bypassPlatformSafetyChecksOnUserSchedule is not true: schedules will not run on this VM"
    return None


def image_family(vm: Mapping[str, Any]) -> str | None:
    """The VM's image family without its version: ``publisher:offer:sku`` for a marketplace
    image, the image definition id (``…/images/<name>``, no ``/versions/…``) for a gallery or
    managed image; None when the body does not say."""
    image = (_props(vm).get("storageProfile") or {}).get("imageReference") or {}
    if not isinstance(image, Mapping):
        return None
    parts = [str(image.get(k) or "") for k in ("publisher", "offer", "sku")]
    if all(parts):
        return ":".join(parts)
    ref = image.get("id") or image.get("sharedGalleryImageId") or image.get("communityGalleryImageId")
    if ref:
        text = str(ref)
        cut = text.lower().find("/versions/")
        return text[:cut] if cut >= 0 else text
    return None


def vm_ref(vm: Mapping[str, Any]) -> dict[str, Any]:
    """The contract's ``VmRef`` from a VM's REST JSON (with or without an instance view).

    Adds ``scheduleIssue`` (see :func:`schedule_issue`) and ``image`` (see :func:`image_family`:
    Ring 0's coverage of OS / image families is checked before a later ring is promoted) to the
    contract's fields.
    """
    props = _props(vm)
    os_type = str(((props.get("storageProfile") or {}).get("osDisk") or {}).get("osType") or "")
    zones = vm.get("zones") or []
    avset = (props.get("availabilitySet") or {}).get("id")
    return {
        "id": str(vm.get("id")),
        "name": str(vm.get("name") or parse_resource_id(str(vm.get("id"))).name),
        "os": "Windows" if os_type.lower() == "windows" else "Linux" if os_type.lower() == "linux" else os_type,
        "location": vm.get("location"),
        "zone": str(zones[0]) if zones else None,
        "availabilitySet": avset,
        "powerState": power_state(props.get("instanceView")),
        "scheduleIssue": schedule_issue(vm),
        "image": image_family(vm),
        "kind": "vm",
    }


def _norm_location(value: str) -> str:
    return value.replace(" ", "").lower()


def dynamic_scope_matches(
    filt: Mapping[str, Any] | None, vm: Mapping[str, Any], *, tags: Mapping[str, Any] | None = None
) -> bool:
    """Does a dynamic scope's ``filter`` (contracts §5.5) select this VM?

    ``vm`` is a member record (a VmRef, or an Arc machine's with ``kind: arc``); ``tags`` its tags.
    ``resourceTypes`` selects by the member's type (``Microsoft.Compute/virtualMachines`` /
    ``Microsoft.HybridCompute/machines``). Empty criteria match everything, as in Azure.
    """
    f = filt or {}
    types = [t.lower() for t in f.get("resourceTypes") or []]
    kind = str(vm.get("kind") or "").lower()
    member_type = ARC_TYPE if kind == "arc" or (not kind and ARC_TYPE in str(vm["id"]).lower()) else VM_TYPE
    if types and member_type not in types:
        return False
    groups = [g.lower() for g in f.get("resourceGroups") or []]
    rg = (parse_resource_id(str(vm["id"])).resource_group or "").lower()
    if groups and rg not in groups:
        return False
    os_types = [o.lower() for o in f.get("osTypes") or []]
    if os_types and str(vm.get("os") or "").lower() not in os_types:
        return False
    locations = [_norm_location(str(loc)) for loc in f.get("locations") or []]
    if locations and _norm_location(str(vm.get("location") or "")) not in locations:
        return False
    settings = f.get("tagSettings") or {}
    wanted: Mapping[str, Iterable[str]] = settings.get("tags") or {}
    if not wanted:
        return True
    hits = [tag_value(tags, name) in set(values or []) for name, values in wanted.items()]
    if str(settings.get("filterOperator") or "Any").lower() == "all":
        return all(hits)
    return any(hits)


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 instant (7-digit fractions, ``Z``) as aware UTC; None if absent/unparseable."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip().replace("Z", "+00:00")
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def install_summary(instance_view: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``patchStatus.lastPatchInstallationSummary`` of an instance view, if any."""
    summary = ((instance_view or {}).get("patchStatus") or {}).get("lastPatchInstallationSummary")
    return dict(summary) if isinstance(summary, Mapping) and summary.get("status") else None


def summary_as_result(summary: Mapping[str, Any]) -> dict[str, Any]:
    """An instance-view install summary in ``VirtualMachineInstallPatchesResult`` shape.

    Used when an install can only be observed through the instance view (its token was lost
    or it was not started by this app, or a scheduled run's result). The summary has no
    ``patches`` list and no ``rebootStatus``; ``source`` says where the data came from, and the
    domain judges such a result *inconclusive*, never a pass (issue 13 item 7): it cannot say what
    was installed. Per-patch results of scheduled runs are read from Resource Graph
    (``patchinstallationresources``, ``activities/resource_graph.py``); this summary is the fallback.
    """
    return {
        "status": summary.get("status"),
        "installationActivityId": summary.get("installationActivityId"),
        "maintenanceWindowExceeded": summary.get("maintenanceWindowExceeded"),
        "excludedPatchCount": summary.get("excludedPatchCount"),
        "notSelectedPatchCount": summary.get("notSelectedPatchCount"),
        "pendingPatchCount": summary.get("pendingPatchCount"),
        "installedPatchCount": summary.get("installedPatchCount"),
        "failedPatchCount": summary.get("failedPatchCount"),
        "rebootStatus": summary.get("rebootStatus") or "Unknown",
        "startDateTime": summary.get("startTime"),
        "lastModifiedDateTime": summary.get("lastModifiedTime"),
        "patches": [],
        "error": summary.get("error"),
        "source": "instanceView",
    }
