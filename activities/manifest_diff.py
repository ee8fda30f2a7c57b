"""``manifest_diff`` (issue 9): what each later ring's machines would install vs the manifest.

Contract (the rollout calls it once Ring 0's manifest is built, e.g. for the approval prompt):

input ``{"rolloutId", "plan": <resolved plan dict>, "manifest": <manifest dict>, "fromRing": <ring>,
"now"?: ISO UTC, "maxAgeHours"?: number}``;
output ``{"rings": [{"ring", "machines", "assessed", "notAssessed", "notAssessedMachines": [...],
"wouldInstall", "wouldInstallPatches", "notInManifest": [{"patch", "machines"}],
"notInManifestCount", "inManifestNotApplicable": [{"patch", "reason"}],
"inManifestNotApplicableCount", "queries", "pages"} | {"ring", "error"}], "maxAgeHours",
"recencyChecked"}`` (lists at most 20 entries), or ``{"error": {...}}`` when the input is unusable.

For each ring after ``fromRing``: its members, resolved exactly as the rollout resolves them
(:func:`activities.compute.resolve_ring_members_core`); their latest assessments from Resource
Graph ``patchassessmentresources`` in **one paged query per ring** (:mod:`patchrings.arm.assessments`),
never a call per machine; then the pure diff (:func:`patchrings.domain.manifest_diff.ring_diff`)
with the same selection rules as the dry run. A machine with no assessment row, an assessment
with errors, or one older than ``maxAgeHours`` (default 24) before ``now`` is *not assessed*.
``now`` is the orchestrator's time (activities never read the clock for decisions); without it
only the table's own 7-day retention bounds the age (``recencyChecked: false``).

Never raises for ARM errors (403, throttling after the SDK's retries, 5xx, refused queries): the
ring's entry carries ``{"error": {code, message, ...}}`` and the others are still answered, so a
rollout never fails on this read.

``read_assessments`` (same blueprint; the dry run calls it for machines whose assessPatches
answer has no patch list -- Arc-enabled servers: ``MachineAssessPatchesResult`` only counts by
classification, arc-and-resource-graph.md §2.6 / §7): input ``{"vms": [VmRef], "since"?: ISO}``,
output ``{"machines": {<lower-case id>: {"at", "os", "available": [patch]}}, "queries", "pages"}``
holding only machines whose assessment row exists, has no errors and is not older than ``since``
(one paged query for all of them), or ``{"error": {...}}``.

``ring_compliance`` (same blueprint, so function_app.py needs no new line): the dry run's
compliance section of one ring; contract and core in :mod:`activities.compliance`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import AzureError

from activities import Payload
from activities.members import resolve_ring_members_core
from activities.resource_graph import _sender
from patchrings import deps
from patchrings.arm import resource_graph as rg
from patchrings.arm.assessments import assessment_query, assessments_by_machine
from patchrings.arm.errors import error_info
from patchrings.arm.ids import parse_resource_id
from patchrings.boundary.activities import (
    ManifestDiffInput,
    ReadAssessmentsInput,
    ResolveMembersInput,
    RingComplianceInput,
)
from patchrings.boundary.codec import from_payload
from patchrings.domain.manifest import Manifest
from patchrings.domain.manifest_diff import ring_diff
from patchrings.domain.plan import Plan, Ring
from patchrings.domain.selection import normalize_patch
from patchrings.errors import PatchRingsError
from patchrings.ports import FleetGateway, ResourceGraphGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.manifest_diff")

__all__ = ["bp", "manifest_diff", "manifest_diff_core", "read_assessments", "read_assessments_core"]

DEFAULT_MAX_AGE_HOURS = 24.0


def _now(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _required(value: Any, key: str) -> Any:
    """A required input value; a missing one fails as the dict lookup it replaces did."""
    if value is None:
        raise KeyError(key)
    return value


def manifest_diff_core(clients: FleetGateway, payload: ManifestDiffInput | Mapping[str, Any]) -> dict[str, Any]:
    """The diff for every ring after ``fromRing`` (see the module docstring)."""
    spec = from_payload(ManifestDiffInput, payload)
    field = "plan"
    try:
        plan = Plan.from_dict(_required(spec.plan, "plan"))  # validated once; its rings go on typed
        names = plan.ring_names
        field = "fromRing"
        start = [n.lower() for n in names].index(str(_required(spec.from_ring, "fromRing")).lower()) + 1
        field = "manifest"
        manifest = Manifest.from_dict(_required(spec.manifest, "manifest")).to_dict()
        field = "maxAgeHours"
        max_age = timedelta(hours=float(spec.max_age_hours or DEFAULT_MAX_AGE_HOURS))
    except (KeyError, ValueError, TypeError, AttributeError, PatchRingsError) as exc:
        return {"error": {"code": "RequestInvalid", "field": field, "message": f"manifest_diff input {field}: {exc}"}}
    now = _now(spec.now)
    rings = []
    send = None
    for name in names[start:]:
        try:
            if send is None:
                send = _sender(clients)
            rings.append(_ring(clients, send, plan.ring(name), manifest=manifest, now=now, max_age=max_age))
        except (AzureError, PatchRingsError, RuntimeError, ValueError, OSError) as exc:
            log.warning("manifest_diff: ring %s unreadable: %s", name, exc,
                        extra={"rolloutId": spec.rollout_id})
            rings.append({"ring": name, "error": error_info(exc)})
    return {"rings": rings, "maxAgeHours": max_age.total_seconds() / 3600, "recencyChecked": now is not None}


def _ring(clients: FleetGateway, send: Any, ring: Ring, *, manifest: dict[str, Any],
          now: datetime | None, max_age: timedelta) -> dict[str, Any]:
    name = ring.name
    members = resolve_ring_members_core(clients, ResolveMembersInput(ring=name, ring_spec=ring.to_dict()))
    if members.get("error"):
        return {"ring": name, "error": members["error"]}
    vms = list(members.get("vms") or [])
    queries = pages = 0
    found = {}
    if vms:
        subscriptions = sorted({parse_resource_id(str(vm["id"])).subscription.lower() for vm in vms})
        groups = {parse_resource_id(str(vm["id"])).resource_group or "" for vm in vms}
        rows, pages = rg.query_all(send, assessment_query(groups), subscriptions)
        queries = 1
        found = assessments_by_machine(rows)
    assessments = {}
    for vm in vms:
        key = str(vm["id"]).lower()
        seen = found.get(key)
        if seen is None:
            continue
        assessments[key] = {"assessed": seen.recent(now, max_age), "os": seen.os,
                            "available": [normalize_patch(p) for p in seen.patches]}
    out = ring_diff(name, vms, assessments, manifest, ring.install)
    out.update(queries=queries, pages=pages)
    return out


def read_assessments_core(clients: ResourceGraphGateway,
                          payload: ReadAssessmentsInput | Mapping[str, Any]) -> dict[str, Any]:
    """Latest assessments of ``vms`` from Resource Graph (see the module docstring)."""
    spec = from_payload(ReadAssessmentsInput, payload)
    vms = [vm for vm in spec.vms or [] if isinstance(vm, Mapping) and vm.get("id")]
    if not vms:
        return {"machines": {}, "queries": 0, "pages": 0}
    since = _now(spec.since)
    try:
        subscriptions = sorted({parse_resource_id(str(vm["id"])).subscription.lower() for vm in vms})
        groups = {parse_resource_id(str(vm["id"])).resource_group or "" for vm in vms}
        rows, pages = rg.query_all(_sender(clients), assessment_query(groups), subscriptions)
    except (AzureError, PatchRingsError, RuntimeError, ValueError, OSError) as exc:
        log.warning("read_assessments: unreadable: %s", exc)
        return {"error": error_info(exc)}
    found = assessments_by_machine(rows)
    out: dict[str, Any] = {}
    for vm in vms:
        seen = found.get(str(vm["id"]).lower())
        if seen is None or not seen.has_summary or seen.error or (since and (seen.at is None or seen.at < since)):
            continue
        out[seen.machine] = {"at": seen.at.isoformat().replace("+00:00", "Z") if seen.at else None, "os": seen.os,
                             "available": [normalize_patch(p) for p in seen.patches]}
    return {"machines": out, "queries": 1, "pages": pages}


@bp.activity_trigger(input_name="payload")
def manifest_diff(payload: Payload) -> dict[str, Any]:
    return manifest_diff_core(deps.clients(), from_payload(ManifestDiffInput, payload))


@bp.activity_trigger(input_name="payload")
def read_assessments(payload: Payload) -> dict[str, Any]:
    return read_assessments_core(deps.clients(), from_payload(ReadAssessmentsInput, payload))


@bp.activity_trigger(input_name="payload")
def ring_compliance(payload: Payload) -> dict[str, Any]:
    """The dry run's compliance section of one ring (:mod:`activities.compliance`; registered here
    so function_app.py needs no new blueprint)."""
    from activities.compliance import ring_compliance_core

    return ring_compliance_core(deps.clients(), from_payload(RingComplianceInput, payload))
