"""``GET /api/compliance`` (issue 12): per ring, machines missing Critical / Security patches, the
age of each machine's last assessment, and machines in no ring at all.

Why these sources: Update Manager keeps each machine's latest assessment (VMs and Arc-enabled
servers alike) in Resource Graph's ``patchassessmentresources`` (one ``…/patchAssessmentResults/latest``
row per machine: ``availablePatchCountByClassification``, ``lastModifiedDateTime``, ``rebootPending``;
kept 7 days), so the view costs one paged query per 1,000 machines, not a read per machine
(arc-and-resource-graph.md §5.4, §7(c)). Ring tags are not on those rows: membership is resolved
in code exactly as a rollout resolves it (``resolve_ring_members``: tag selector incl. the hold
value, resource-level assignments, dynamic scopes), from one VM list and one Arc machine list per
subscription the plan covers, shared by all rings. "In no ring" = a VM or Arc machine in those
subscriptions that no ring selects.

Query parameters (all optional; a bad one is a 400 naming it):

* ``ring`` -- only this ring (404-style ``NotFound`` naming ``ring`` when the plan has none);
* ``staleAfterHours`` -- an assessment older than this (default 24, 1..168) is ``stale``;
* ``asOf`` -- RFC 3339 UTC instant the ages are computed against (default: now). Reproducible
  reports, and the local platform's simulated time.

Answer ``{generatedAt, asOf, staleAfterHours, subscriptions, rings: [{ring, members,
missingCriticalOrSecurity, notAssessed, stale, error, machines: [Machine]}], unassigned: {count,
machines: [Machine]}, resourceGraph: {queries, pages}}`` where ``Machine = {id, name, kind, os,
status, critical, security, rebootPending, lastAssessedAt, assessmentAgeHours}`` and ``status`` is
``missing-patches`` | ``compliant`` | ``stale`` | ``not-assessed``. Machines are listed
non-compliant first. A ring whose membership cannot be read has ``error`` (and no machines);
a failed Resource Graph query is a 502 ``ResourceGraphUnavailable``. FUNCTION auth, like the rest
of the API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import AzureError

from patchrings.arm import resource_graph as rg
from patchrings.arm.errors import error_info
from patchrings.arm.vms import parse_time
from patchrings.errors import PatchRingsError, RequestInvalid
from triggers import deps
from triggers.http_api import guarded, json_response

bp = df.Blueprint()
log = logging.getLogger("patchrings.triggers.compliance")

__all__ = ["bp", "compliance_core"]

DEFAULT_STALE_HOURS = 24
MAX_STALE_HOURS = 168  # assessments are kept 7 days (§5.8): older rows are gone anyway
_ORDER = {"missing-patches": 0, "not-assessed": 1, "stale": 2, "compliant": 3}


class ResourceGraphUnavailable(PatchRingsError):
    code = "ResourceGraphUnavailable"
    http_status = 502


def _format(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _machine(ref: Mapping[str, Any], row: Mapping[str, Any] | None, as_of: datetime,
             stale: timedelta) -> dict[str, Any]:
    """One machine's compliance entry from its member record and its assessment row (or None)."""
    out: dict[str, Any] = {"id": ref["id"], "name": ref.get("name"), "kind": ref.get("kind") or "vm",
                           "os": ref.get("os"), "status": "not-assessed", "critical": None, "security": None,
                           "rebootPending": None, "lastAssessedAt": None, "assessmentAgeHours": None}
    if row is None:
        return out
    props = row.get("properties") if isinstance(row.get("properties"), Mapping) else {}
    assert isinstance(props, Mapping)
    counts = props.get("availablePatchCountByClassification") or {}
    at = parse_time(props.get("lastModifiedDateTime")) or parse_time(props.get("startDateTime"))
    out.update(critical=_int(counts.get("critical")), security=_int(counts.get("security")),
               rebootPending=props.get("rebootPending"))
    if at is not None:
        out["lastAssessedAt"] = _format(at)
        out["assessmentAgeHours"] = round(max((as_of - at).total_seconds(), 0.0) / 3600, 1)
    if out["critical"] or out["security"]:
        out["status"] = "missing-patches"  # known missing, however old the assessment
    elif at is None or as_of - at > stale:
        out["status"] = "stale"
    else:
        out["status"] = "compliant"
    return out


def _sorted(machines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(machines, key=lambda m: (_ORDER.get(m["status"], 9), str(m["id"]).lower()))


def compliance_core(clients: Any, plan: Mapping[str, Any], *, as_of: datetime,
                    stale_after: timedelta = timedelta(hours=DEFAULT_STALE_HOURS),
                    only_ring: str | None = None) -> dict[str, Any]:
    """The compliance view of ``plan`` (a plan dict) as of ``as_of`` (see the module docstring)."""
    from activities.compute import member_ref, resolve_ring_members_core
    from activities.resource_graph import _respect_quota, _sender

    listed: dict[str, list[dict[str, Any]]] = {}
    ring_members: list[tuple[str, list[dict[str, Any]] | None, dict[str, Any] | None]] = []
    for ring in plan.get("rings") or []:
        name = str(ring["name"])
        try:
            resolved = resolve_ring_members_core(clients, {"plan": plan, "ring": name}, listed=listed)
        except (AzureError, ValueError) as exc:
            ring_members.append((name, None, error_info(exc)))
            continue
        ring_members.append((name, list(resolved.get("vms") or []), resolved.get("error")))
    every = {str(w.get("id")).lower(): member_ref(w) for wires in listed.values() for w in wires}
    subscriptions = sorted(listed)

    rows: dict[str, dict[str, Any]] = {}
    queries = pages = 0
    if subscriptions:
        send = _sender(clients)
        for start in range(0, len(subscriptions), 100):  # < 300 subscriptions per query (§4.5)
            try:
                found, n = rg.query_all(send, rg.assessment_query(), subscriptions[start:start + 100],
                                        on_quota=_respect_quota)
            except (AzureError, RuntimeError, ValueError) as exc:
                info = error_info(exc)
                raise ResourceGraphUnavailable(
                    f"Resource Graph (patchassessmentresources) could not be read: {info['code']}: {info['message']}"
                ) from None
            queries += 1
            pages += n
            for row in found:
                rows[str(row.get("machineId") or rg.machine_of(str(row.get("id", ""))))] = row

    in_a_ring: set[str] = set()
    rings_out = []
    for name, members, error in ring_members:
        if members is not None:
            in_a_ring |= {str(m["id"]).lower() for m in members}
        if only_ring is not None and name != only_ring:
            continue
        machines = _sorted([_machine(m, rows.get(str(m["id"]).lower()), as_of, stale_after) for m in members or []])
        rings_out.append({
            "ring": name,
            "members": len(machines),
            "missingCriticalOrSecurity": sum(m["status"] == "missing-patches" for m in machines),
            "notAssessed": sum(m["status"] == "not-assessed" for m in machines),
            "stale": sum(m["status"] == "stale" for m in machines),
            "error": error,
            "machines": machines,
        })
    unassigned = _sorted([_machine(ref, rows.get(key), as_of, stale_after)
                          for key, ref in every.items() if key not in in_a_ring])
    return {
        "generatedAt": _format(datetime.now(UTC)),
        "asOf": _format(as_of),
        "staleAfterHours": round(stale_after.total_seconds() / 3600, 2),
        "subscriptions": subscriptions,
        "rings": rings_out,
        "unassigned": {"count": len(unassigned), "machines": unassigned},
        "resourceGraph": {"queries": queries, "pages": pages},
    }


def _params(req: func.HttpRequest, ring_names: list[str]) -> tuple[datetime, timedelta, str | None]:
    params = req.params or {}
    unknown = sorted(set(params) - {"ring", "staleAfterHours", "asOf", "code"})
    if unknown:
        raise RequestInvalid(f"unknown query parameter {unknown[0]!r} (allowed: ring, staleAfterHours, asOf)",
                             field=unknown[0])
    ring = params.get("ring")
    if ring is not None and ring not in ring_names:
        from patchrings.errors import NotFound

        raise NotFound(f"the plan has no ring {ring[:80]!r} (rings: {', '.join(ring_names)})", field="ring")
    stale_text = params.get("staleAfterHours")
    stale_hours = DEFAULT_STALE_HOURS
    if stale_text is not None:
        try:
            stale_hours = int(stale_text)
        except ValueError:
            stale_hours = -1
        if not 1 <= stale_hours <= MAX_STALE_HOURS:
            raise RequestInvalid(f"staleAfterHours must be a whole number of hours from 1 to {MAX_STALE_HOURS}",
                                 field="staleAfterHours")
    as_of = datetime.now(UTC)
    text = params.get("asOf")
    if text is not None:
        parsed = parse_time(text) if text.endswith("Z") and "T" in text else None
        if parsed is None:
            raise RequestInvalid("asOf must be an RFC 3339 UTC instant such as 2026-11-16T06:00:00Z", field="asOf")
        as_of = parsed
    return as_of, timedelta(hours=stale_hours), ring


@bp.route(route="compliance", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def compliance(req: func.HttpRequest) -> func.HttpResponse:
    """Missing Critical / Security patches per ring, assessment ages, machines in no ring."""

    async def handle() -> func.HttpResponse:
        plan = deps.plan()
        as_of, stale, ring = _params(req, list(plan.ring_names))
        from activities.deps import deps as activity_deps

        clients = activity_deps().clients
        view = await asyncio.to_thread(compliance_core, clients, plan.to_dict(), as_of=as_of, stale_after=stale,
                                       only_ring=ring)
        return json_response(view)

    return await guarded(handle)
