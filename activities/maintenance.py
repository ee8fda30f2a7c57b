"""Maintenance activities: read/pin configurations, open/close ring assignments, cancel runs,
collect a scheduled run's per-VM results.

Every write is check-before-act (read, compare, write only when different), so re-running an
activity after a crash is a no-op and ``changed`` tells the orchestrator what really happened.

Reads keep the raw REST JSON (``cls=`` hook) rather than the SDK model: azure-mgmt-maintenance
2.1.0 speaks api-version 2023-04-01 and its models would silently drop properties a newer
service returns; a read-modify-write through the model would then erase them.

``cancel_run`` has no SDK operation (contracts §5.2): it is a PUT of
``{"properties": {"status": "Cancel"}}`` on the run's correlationId with api-version
2023-09-01-preview, sent through the maintenance client's own pipeline
(:meth:`AzureClients.send_arm_request`). The correlationId is parsed strictly
(:func:`~patchrings.arm.ids.parse_apply_update_id`) and the request goes to the configured ARM
endpoint + the canonical run path, never to a URL taken from event data. The PUT is sent at once
(no GET first: the cancel is idempotent, a cancelled run answers 200 ``Cancelled`` again). With
``budgetSeconds`` it is one attempt bounded by that budget, and with ``report: true`` a transient
failure (429, 5xx, 403, dropped connection, timeout) is *returned* as ``{"status": "Failed",
"retryable", "retryAfter", "httpStatus", "code"}`` so the guard can retry with durable timers until
its deadline; without ``report`` it raises, as the rollout expects.

``collect_run_results`` is the *fallback* for a scheduled run's per-VM results: it reads each VM's
instance view (``patchStatus.lastPatchInstallationSummary``) and the VM's applyUpdates record. The
primary source is Resource Graph (``patchinstallationresources`` joined on ``maintenanceRunId`` =
correlationId; ``activities/resource_graph.py``), which has per-patch rows and the reboot state but
is eventually consistent; ``orchestrators/run_results`` falls back here only for machines whose rows
are still missing after its re-queries, and such results never pass (no patch detail).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError

from activities import Payload
from activities.plan import assignment_name, ring_from_spec
from patchrings import deps
from patchrings.arm.errors import error_info, retry_after_seconds
from patchrings.arm.fanout import map_bounded
from patchrings.arm.ids import parse_apply_update_id, parse_resource_id, same_arm_id
from patchrings.arm.lro import to_wire
from patchrings.arm.vms import FINISHED_PATCH_STATES, install_summary, parse_time, summary_as_result
from patchrings.boundary.activities import (
    CancelRunInput,
    CollectRunResultsInput,
    GetConfigurationInput,
    PinManifestInput,
    SetRingAssignmentInput,
)
from patchrings.boundary.codec import from_payload
from patchrings.clients import ForeignHostRefused
from patchrings.domain.manifest import Manifest
from patchrings.domain.plan import Ring
from patchrings.errors import ArmTargetRefused, PatchRingsError
from patchrings.ports import MaintenanceGateway, RunGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.maintenance")

__all__ = [
    "CANCEL_API_VERSION",
    "bp",
    "cancel_run_core",
    "collect_run_results_core",
    "get_configuration_core",
    "pin_manifest_core",
    "set_ring_assignment_core",
]

CANCEL_API_VERSION = "2023-09-01-preview"
VM_TYPE_FILTER = "Microsoft.Compute/virtualMachines"
ARC_TYPE_FILTER = "Microsoft.HybridCompute/machines"
_READ_ONLY = ("id", "name", "type", "systemData", "etag")
# How Azure (and the simulator) word "the cancel window has passed / the run already started".
_TOO_LATE = re.compile(r"cut-?off|too late|already (started|running|in ?progress|completed)|"
                       r"cannot be cancel|not allowed|past|deadline|window", re.IGNORECASE)
_ALREADY = re.compile(r"already cancel", re.IGNORECASE)


def _raw(pipeline_response: Any, deserialized: Any, headers: Any) -> Any:
    """``cls=`` hook: keep the REST JSON instead of the (older-api-version) SDK model."""
    return json.loads(pipeline_response.http_response.text() or "null")


def _body(doc: Mapping[str, Any]) -> io.BytesIO:
    return io.BytesIO(json.dumps(doc).encode("utf-8"))


def _configuration(clients: MaintenanceGateway, configuration_id: str) -> dict[str, Any]:
    rid = parse_resource_id(configuration_id)
    ops = clients.maintenance(rid.subscription).maintenance_configurations
    return dict(ops.get(rid.resource_group, rid.name, cls=_raw))


# ------------------------------------------------------------------------------ configurations
def get_configuration_core(clients: MaintenanceGateway,
                           payload: GetConfigurationInput | Mapping[str, Any]) -> dict[str, Any]:
    """The configuration's window and installPatches (for deadlines and pin checks)."""
    spec = from_payload(GetConfigurationInput, payload)
    doc = _configuration(clients, str(spec.configuration_id))
    props = doc.get("properties") or {}
    window = props.get("maintenanceWindow") or {}
    return {
        "id": doc.get("id") or spec.configuration_id,
        "name": doc.get("name"),
        "maintenanceScope": props.get("maintenanceScope"),
        "window": {key: window.get(key) for key in
                   ("startDateTime", "duration", "timeZone", "recurEvery", "expirationDateTime")},
        "installPatches": props.get("installPatches") or {},
    }


def pin_manifest_core(clients: MaintenanceGateway, payload: PinManifestInput | Mapping[str, Any]) -> dict[str, Any]:
    """Write the manifest into the configuration's include lists unless it is already there."""
    spec = from_payload(PinManifestInput, payload)
    configuration_id = str(spec.configuration_id)
    manifest = Manifest.from_dict(spec.manifest)
    doc = _configuration(clients, configuration_id)
    props = dict(doc.get("properties") or {})
    if manifest.is_pinned_in(props.get("installPatches")):
        return {"changed": False}
    props["installPatches"] = manifest.configuration_patch(props.get("installPatches"))
    body = {k: v for k, v in doc.items() if k not in _READ_ONLY}
    body["properties"] = props
    rid = parse_resource_id(configuration_id)
    clients.maintenance(rid.subscription).maintenance_configurations.create_or_update(
        rid.resource_group, rid.name, _body(body), content_type="application/json", cls=_raw
    )
    log.info("manifest %s pinned into %s", manifest.hash, configuration_id)
    return {"changed": True, "manifestHash": manifest.hash}


# ------------------------------------------------------------------------------ assignments
def dynamic_scope_filter(ring: Ring) -> dict[str, Any]:
    """The dynamic-scope ``filter`` selecting the ring's members (its tag at the open value): Azure
    VMs and Arc-enabled servers, both of which dynamic scopes take (arc-and-resource-graph.md §3.3)."""
    members = ring.members
    filt: dict[str, Any] = {"resourceTypes": [VM_TYPE_FILTER, ARC_TYPE_FILTER]}
    if members.resource_groups:
        filt["resourceGroups"] = list(members.resource_groups)
    if members.locations:
        filt["locations"] = list(members.locations)
    if members.os_types:
        filt["osTypes"] = list(members.os_types)
    if members.tag:
        filt["tagSettings"] = {"tags": {members.tag.name: [members.tag.value]}, "filterOperator": "All"}
    return filt


def _norm_filter(filt: Mapping[str, Any] | None) -> Any:
    """A filter in a comparable form (ARM may re-case or reorder lists)."""
    f = dict(filt or {})
    out: dict[str, Any] = {}
    for key in ("resourceTypes", "resourceGroups", "locations", "osTypes"):
        values = f.get(key) or []
        if values:
            out[key] = sorted(str(v).replace(" ", "").lower() for v in values)
    tags = (f.get("tagSettings") or {}).get("tags") or {}
    if tags:
        out["tags"] = sorted((k.lower(), sorted(map(str, v or []))) for k, v in tags.items())
        out["op"] = str((f.get("tagSettings") or {}).get("filterOperator") or "Any").lower()
    return out


def set_ring_assignment_core(clients: MaintenanceGateway,
                             payload: SetRingAssignmentInput | Mapping[str, Any]) -> dict[str, Any]:
    """Create (``present``) or delete the ring's configuration assignment(s), check-before-act.

    A ring with a tag selector gets a subscription-level dynamic scope per subscription; a ring
    without one gets resource-level assignments for the VMs in ``vmIds``.
    """
    spec = from_payload(SetRingAssignmentInput, payload)
    ring = ring_from_spec(spec.ring_spec, str(spec.ring))
    configuration_id = ring.configuration_id
    if not configuration_id:
        raise ValueError(f"ring {ring.name!r} has no maintenanceConfigurationId to assign")
    present = True if spec.present is None else bool(spec.present)
    name = assignment_name(ring)
    subscriptions = list(ring.members.subscriptions) or [parse_resource_id(configuration_id).subscription]
    changed: list[str] = []
    if ring.members.tag is None and not ring.members.resource_groups and not spec.vm_ids:
        # Without a tag, resource groups or explicit VMs the dynamic scope would select every VM
        # in the subscription: never open a gate that wide by accident.
        raise ValueError(f"ring {ring.name!r}: refusing a subscription-wide dynamic scope; give the ring a tag "
                         "selector or resourceGroups, or pass vmIds for resource-level assignments")
    if ring.members.tag is not None or not spec.vm_ids:
        wanted_filter = dynamic_scope_filter(ring)
        wanted = {"properties": {"maintenanceConfigurationId": configuration_id, "filter": wanted_filter},
                  "location": ""}
        for sub in subscriptions:
            ops = clients.maintenance(sub).configuration_assignments_for_subscriptions
            current = _get_or_none(lambda ops=ops: ops.get(name, cls=_raw))
            if present:
                props = (current or {}).get("properties") or {}
                if current and same_arm_id(props.get("maintenanceConfigurationId"), configuration_id) and \
                        _norm_filter(props.get("filter")) == _norm_filter(wanted_filter):
                    continue
                ops.create_or_update(name, _body(wanted), content_type="application/json", cls=_raw)
                changed.append(f"/subscriptions/{sub}/providers/Microsoft.Maintenance/configurationAssignments/{name}")
            elif current is not None:
                ops.delete(name, cls=_raw)
                changed.append(f"/subscriptions/{sub}/providers/Microsoft.Maintenance/configurationAssignments/{name}")
    else:
        for vm_id in spec.vm_ids:
            rid = parse_resource_id(str(vm_id))
            ops = clients.maintenance(rid.subscription).configuration_assignments
            args = (rid.resource_group, *_provider_of(rid), rid.name, name)
            current = _get_or_none(lambda ops=ops, args=args: ops.get(*args, cls=_raw))
            if present:
                props = (current or {}).get("properties") or {}
                if current and same_arm_id(props.get("maintenanceConfigurationId"), configuration_id):
                    continue
                body = {"properties": {"maintenanceConfigurationId": configuration_id, "resourceId": vm_id}}
                ops.create_or_update(*args, _body(body), content_type="application/json", cls=_raw)
                changed.append(str(vm_id))
            elif current is not None:
                ops.delete(*args, cls=_raw)
                changed.append(str(vm_id))
    if changed:
        log.info("ring %s assignment %s %s: %s", ring.name, name, "created" if present else "removed", changed)
    return {"changed": bool(changed), "assignments": changed}


def _provider_of(rid: Any) -> tuple[str, str]:
    """``(provider, resource type)`` for the Maintenance RP's resource-scoped paths: an Arc
    machine's assignments and runs live under ``Microsoft.HybridCompute/machines/{name}``."""
    if (rid.full_type or "").lower() == ARC_TYPE_FILTER.lower():
        return "Microsoft.HybridCompute", "machines"
    return "Microsoft.Compute", "virtualMachines"


def _get_or_none(get: Any) -> dict[str, Any] | None:
    try:
        doc = get()
    except ResourceNotFoundError:
        return None
    return dict(doc) if doc else None


# ------------------------------------------------------------------------------ runs
def cancel_run_core(clients: MaintenanceGateway, payload: CancelRunInput | Mapping[str, Any]) -> dict[str, Any]:
    """Cancel one scheduled run (fail-closed gate): one PUT, straight away.

    Statuses: ``Cancelled`` / ``AlreadyCancelled`` / ``NotFound`` (nothing will patch), ``TooLate``
    (the run is past its cutoff, running or completed), ``Refused`` (not a run id: nothing sent),
    and with ``report`` ``Failed`` (outcome unknown; ``retryable`` says whether trying again can
    help, ``retryAfter`` is the server's Retry-After in seconds when it sent one).
    """
    spec = from_payload(CancelRunInput, payload)
    raw_id = spec.correlation_id
    report = bool(spec.report)
    budget = spec.budget_seconds
    try:
        parse_apply_update_id(str(raw_id) if raw_id is not None else "")
    except ValueError as exc:
        refused = ArmTargetRefused(str(exc), field="correlationId")
        if report:
            return {"status": "Refused", "retryable": False, "code": refused.code, "message": refused.message}
        raise refused from None
    # The id matched the strict pattern in full, so it is exactly an ARM path: send it as is (as
    # Azure wrote it) to the configured endpoint.
    path = str(raw_id)
    try:
        response = clients.send_arm_request(
            "PUT", path, CANCEL_API_VERSION, json={"properties": {"status": "Cancel"}},
            **({"budget_seconds": float(budget)} if budget is not None else {}),
        )
    except PatchRingsError as exc:  # ArmTargetRefused: nothing was sent
        if report:
            return {"status": "Refused", "retryable": False, "code": exc.code, "message": exc.message}
        raise
    except AzureError as exc:  # dropped connection, timeout, token or host refused
        info = error_info(exc)
        log.warning("cancel %s: %s %s", path, info["code"], info["message"])
        if report:
            return {"status": "Failed", "retryable": bool(info["retryable"]) or _auth_error(exc),
                    "retryAfter": None, "httpStatus": info["status"], "code": info["code"],
                    "message": f"cancel of {path} failed: {info['code']}: {info['message']}"}
        raise
    body = _json(response)
    error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
    code, message = str(error.get("code") or ""), str(error.get("message") or "")
    status_code = int(response.status_code)
    log.info("cancel %s: HTTP %s %s", path, status_code, code)
    if status_code in (200, 201):
        status = str((body.get("properties") or {}).get("status") or "")
        if status.lower() in ("cancelled", "cancel", "canceled"):
            return {"status": "Cancelled", "message": f"run {path} cancelled"}
        return {"status": "TooLate", "message": f"cancel answered with run status {status or 'unknown'}"}
    if status_code == 404:
        return {"status": "NotFound", "message": message or f"no run {path}"}
    if _ALREADY.search(code) or _ALREADY.search(message):
        return {"status": "AlreadyCancelled", "message": message}
    if status_code in (400, 409, 412, 422) and (_TOO_LATE.search(code) or _TOO_LATE.search(message)):
        return {"status": "TooLate", "message": f"{code}: {message}"}
    text = f"cancel of {path} failed: HTTP {status_code} {code}: {message}"
    if report:
        retryable = status_code in (401, 403, 408, 429) or status_code >= 500
        return {"status": "Failed", "retryable": retryable, "retryAfter": retry_after_seconds(response.headers),
                "httpStatus": status_code, "code": code or f"HTTP{status_code}", "message": text}
    raise RuntimeError(text)


def _auth_error(exc: BaseException) -> bool:
    """A token that could not be obtained may come later (identity endpoint hiccup): retry."""
    return isinstance(exc, ClientAuthenticationError) and not isinstance(exc, ForeignHostRefused)


def _json(response: Any) -> dict[str, Any]:
    try:
        doc = response.json()
    except (ValueError, AttributeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def collect_run_results_core(clients: RunGateway,
                             payload: CollectRunResultsInput | Mapping[str, Any]) -> dict[str, Any]:
    """Per-VM results of a scheduled run, in the wave's ``VmInstall`` shape plus ``applyUpdate``.

    ``state`` is ``done`` (an install that started at/after ``since`` finished), ``running``,
    ``missing`` (no install of this run on the VM: not in the run, cancelled, or not reported)
    or ``unreadable``.
    """
    spec = from_payload(CollectRunResultsInput, payload)
    correlation_id = str(spec.correlation_id)
    try:
        _, run_name = parse_apply_update_id(correlation_id)
    except ValueError as exc:  # never build a request from an id that is not a schedule run's
        raise ArmTargetRefused(str(exc), field="correlationId") from None
    since = parse_time(spec.since)
    vms = list(spec.vms or [])
    return {"results": map_bounded(lambda vm: _collect_one(clients, vm, run_name, since), vms)}


def _collect_one(clients: RunGateway, vm: Mapping[str, Any], run_name: str, since: Any) -> dict[str, Any]:
    """One VM's result of the run (never raises: read failures are ``unreadable``)."""
    rid = parse_resource_id(str(vm["id"]))
    entry: dict[str, Any] = {"vm": vm["id"], "name": vm.get("name"), "os": vm.get("os"),
                             "state": "missing", "result": None, "error": None, "applyUpdate": None}
    if _provider_of(rid)[0] == "Microsoft.HybridCompute":
        # An Arc machine has no instance view: its results exist only in Resource Graph. Say so,
        # and still read its applyUpdates record of the run (no patch detail: never a pass).
        entry["error"] = {"code": "NoInstanceView",
                          "message": "Arc-enabled servers have no instance view; their results of this run are "
                                     "only in Resource Graph, whose rows had not appeared"}
        _apply_update(clients, rid, run_name, entry)
        return entry
    try:
        view = to_wire(clients.compute(rid.subscription).virtual_machines.instance_view(
            rid.resource_group, rid.name)) or {}
    except AzureError as exc:
        entry.update(state="unreadable", error=error_info(exc))
        return entry
    summary = install_summary(view)
    started = parse_time((summary or {}).get("startTime"))
    if summary and (since is None or (started is not None and started >= since)):
        finished = str(summary.get("status") or "").lower() in FINISHED_PATCH_STATES
        entry.update(state="done" if finished else "running", result=summary_as_result(summary))
    _apply_update(clients, rid, run_name, entry)
    return entry


def _apply_update(clients: MaintenanceGateway, rid: Any, run_name: str, entry: dict[str, Any]) -> None:
    """The machine's applyUpdates record of the run into ``entry`` (never raises)."""
    try:
        record = clients.maintenance(rid.subscription).apply_updates.get(
            rid.resource_group, *_provider_of(rid), rid.name, run_name, cls=_raw
        )
        props = (record or {}).get("properties") or {}
        entry["applyUpdate"] = {"status": props.get("status"), "lastUpdateTime": props.get("lastUpdateTime")}
    except ResourceNotFoundError:
        pass
    except AzureError as exc:
        entry["applyUpdateError"] = error_info(exc)


# ------------------------------------------------------------------------------ bindings
@bp.activity_trigger(input_name="payload")
def get_configuration(payload: Payload) -> dict[str, Any]:
    return get_configuration_core(deps.clients(), from_payload(GetConfigurationInput, payload))


@bp.activity_trigger(input_name="payload")
def pin_manifest(payload: Payload) -> dict[str, Any]:
    return pin_manifest_core(deps.clients(), from_payload(PinManifestInput, payload))


@bp.activity_trigger(input_name="payload")
def set_ring_assignment(payload: Payload) -> dict[str, Any]:
    return set_ring_assignment_core(deps.clients(), from_payload(SetRingAssignmentInput, payload))


@bp.activity_trigger(input_name="payload")
def cancel_run(payload: Payload) -> dict[str, Any]:
    return cancel_run_core(deps.clients(), from_payload(CancelRunInput, payload))


@bp.activity_trigger(input_name="payload")
def collect_run_results(payload: Payload) -> dict[str, Any]:
    return collect_run_results_core(deps.clients(), from_payload(CollectRunResultsInput, payload))
