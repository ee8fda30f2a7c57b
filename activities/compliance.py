"""Compliance of a plan's rings (issue 12): the core shared by ``GET /api/compliance``
(``triggers/compliance.py``) and the dry run (``ring_compliance``, an activity registered on
``activities/manifest_diff.py``'s blueprint so ``function_app.py`` needs no new line).

Per ring: machines missing Critical / Security patches, the age of each machine's last
assessment, and machines in no ring at all.

Why these sources: Update Manager keeps each machine's latest assessment (VMs and Arc-enabled
servers alike) in Resource Graph's ``patchassessmentresources`` (one ``…/patchAssessmentResults/latest``
row per machine: ``availablePatchCountByClassification``, ``lastModifiedDateTime``, ``rebootPending``;
kept 7 days), so the view costs one paged query per 1,000 machines, not a read per machine
(arc-and-resource-graph.md §5.4, §7(c)). Ring tags are not on those rows: membership is resolved
in code exactly as a rollout resolves it (``resolve_ring_members_core``: tag selector incl. the hold
value, resource-level assignments, dynamic scopes), from one VM list and one Arc machine list per
subscription the plan covers, shared by all rings. "In no ring" = a VM or Arc machine in those
subscriptions that no ring selects.

"Now" (what ages are computed against), in this order: the caller's ``as_of`` (the API's
``asOf``; the dry run passes its orchestration time); else the ``Date`` header of Resource
Graph's own answer -- the server's clock, which in Azure is real time and on the local platform
the simulated time (RFC 9110 §6.6.1 makes ``Date`` the origin server's clock); else the worker's
wall clock. ``asOfSource`` says which (``request`` | ``resourceGraph`` | ``workerClock``).

``ring_compliance`` activity: input ``{"plan": <plan dict>, "ring": <name>, "asOf"?: ISO UTC,
"staleAfterHours"?: 1..168, "members"?: [member record] (the ring's members as the caller already
resolved them: no listing then), "unassigned"?: bool (also list machines in no ring; resolves every
ring)}``; output ``{"ring", "members", "missingCriticalOrSecurity", "notAssessed", "stale",
"error", "machines": [Machine], "asOf", "asOfSource", "staleAfterHours", "resourceGraph": {queries,
pages}, "unassigned"?: {count, machines}}`` or, when it cannot be read, ``{"ring", "error":
{code, message}}``. Never raises: a dry run reports, it does not fail on this read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.exceptions import AzureError

from activities import Payload
from activities.plan import ring_from_spec
from patchrings.arm import resource_graph as rg
from patchrings.arm.errors import error_info
from patchrings.arm.vms import parse_time
from patchrings.boundary.activities import (
    ResolveMembersInput,
    RingComplianceInput,
)
from patchrings.boundary.codec import from_payload
from patchrings.domain.arm_ids import subscription_of
from patchrings.domain.plan import Plan, Ring
from patchrings.errors import PatchRingsError
from patchrings.ports import FleetGateway, ResourceGraphGateway

log = logging.getLogger("patchrings.activities.compliance")

__all__ = ["DEFAULT_STALE_HOURS", "MAX_STALE_HOURS", "ResourceGraphUnavailable", "compliance_core",
           "ring_compliance_core", "server_time"]

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


def server_time(headers: Mapping[str, str] | None) -> datetime | None:
    """The instant in an HTTP answer's ``Date`` header (IMF-fixdate, RFC 9110 §5.6.7), or None."""
    for key, value in (headers or {}).items():
        if str(key).lower() == "date":
            try:
                at = parsedate_to_datetime(str(value))
            except (TypeError, ValueError, IndexError):
                return None
            return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return None


def machine_entry(ref: Mapping[str, Any], row: Mapping[str, Any] | None, as_of: datetime,
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


def _ring_entry(name: str, members: list[dict[str, Any]] | None, error: Any, rows: Mapping[str, Any], *,
                as_of: datetime, stale: timedelta) -> dict[str, Any]:
    machines = _sorted([machine_entry(m, rows.get(str(m["id"]).lower()), as_of, stale) for m in members or []])
    return {
        "ring": name,
        "members": len(machines),
        "missingCriticalOrSecurity": sum(m["status"] == "missing-patches" for m in machines),
        "notAssessed": sum(m["status"] == "not-assessed" for m in machines),
        "stale": sum(m["status"] == "stale" for m in machines),
        "error": error,
        "machines": machines,
    }


def _assessments(clients: ResourceGraphGateway, subscriptions: list[str]) -> tuple[dict[str, dict[str, Any]], int, int,
                                                                  datetime | None]:
    """Every machine's latest assessment row in ``subscriptions`` (paged; < 300 subscriptions per
    query, §4.5), the query and page counts, and the server time of the first answer."""
    from activities.resource_graph import _sender

    rows: dict[str, dict[str, Any]] = {}
    queries = pages = 0
    dates: list[datetime] = []
    if not subscriptions:
        return rows, 0, 0, None
    send = _sender(clients)

    def timed(query: str, subs: list[str], token: str | None) -> tuple[Mapping[str, Any], Mapping[str, str]]:
        page, headers = send(query, subs, token)
        at = server_time(headers)
        if at is not None:
            dates.append(at)
        return page, headers

    sender: Callable[..., Any] = timed
    for start in range(0, len(subscriptions), 100):
        try:
            found, n = rg.query_all(sender, rg.assessment_query(), subscriptions[start:start + 100])
        except (AzureError, RuntimeError, ValueError) as exc:
            info = error_info(exc)
            raise ResourceGraphUnavailable(
                f"Resource Graph (patchassessmentresources) could not be read: {info['code']}: {info['message']}"
            ) from None
        queries += 1
        pages += n
        for row in found:
            rows[str(row.get("machineId") or rg.machine_of(str(row.get("id", ""))))] = row
    return rows, queries, pages, (dates[0] if dates else None)


def _now(as_of: datetime | None, server: datetime | None) -> tuple[datetime, str]:
    if as_of is not None:
        return as_of, "request"
    if server is not None:
        return server, "resourceGraph"
    return datetime.now(UTC), "workerClock"


def compliance_core(clients: FleetGateway, plan: Mapping[str, Any], *, as_of: datetime | None = None,
                    stale_after: timedelta = timedelta(hours=DEFAULT_STALE_HOURS),
                    only_ring: str | None = None) -> dict[str, Any]:
    """The compliance view of ``plan`` (a plan dict): every ring (or ``only_ring``) and the
    machines in no ring. ``as_of`` None: Resource Graph's ``Date``, else the wall clock."""
    # validated once (raises PlanInvalid as before); each ring is resolved from its typed Ring
    return _compliance(clients, Plan.from_dict(plan).rings, as_of=as_of, stale_after=stale_after,
                       only_ring=only_ring)


def _compliance(clients: FleetGateway, rings: tuple[Ring, ...] | list[Ring], *, as_of: datetime | None,
                stale_after: timedelta, only_ring: str | None) -> dict[str, Any]:
    from activities.members import member_ref, resolve_ring_members_core

    listed: dict[str, list[dict[str, Any]]] = {}
    ring_members: list[tuple[str, list[dict[str, Any]] | None, dict[str, Any] | None]] = []
    for ring in rings:
        name = str(ring.name)
        try:
            resolved = resolve_ring_members_core(clients, ResolveMembersInput(ring=name, ring_spec=ring.to_dict()),
                                                 listed=listed)
        except (AzureError, PatchRingsError, RuntimeError, ValueError) as exc:  # incomplete answers, quota too
            ring_members.append((name, None, error_info(exc)))
            continue
        ring_members.append((name, list(resolved.get("vms") or []), resolved.get("error")))
    every = {str(w.get("id")).lower(): member_ref(w) for wires in listed.values() for w in wires}
    subscriptions = sorted(listed)
    rows, queries, pages, server = _assessments(clients, subscriptions)
    now, source = _now(as_of, server)

    in_a_ring: set[str] = set()
    rings_out = []
    for name, members, error in ring_members:
        if members is not None:
            in_a_ring |= {str(m["id"]).lower() for m in members}
        if only_ring is None or name == only_ring:
            rings_out.append(_ring_entry(name, members, error, rows, as_of=now, stale=stale_after))
    unassigned = _sorted([machine_entry(ref, rows.get(key), now, stale_after)
                          for key, ref in every.items() if key not in in_a_ring])
    return {
        "generatedAt": _format(server or datetime.now(UTC)),
        "asOf": _format(now),
        "asOfSource": source,
        "staleAfterHours": round(stale_after.total_seconds() / 3600, 2),
        "subscriptions": subscriptions,
        "rings": rings_out,
        "unassigned": {"count": len(unassigned), "machines": unassigned},
        "resourceGraph": {"queries": queries, "pages": pages},
    }


def ring_compliance_core(clients: FleetGateway, payload: RingComplianceInput | Mapping[str, Any]) -> dict[str, Any]:
    """The ``ring_compliance`` activity (see the module docstring).

    The ring is named by ``ringSpec`` (or ``plan`` + ``ring``); the whole ``plan`` is needed only
    for the first ring's ``unassigned`` section (the machines in no ring of the plan)."""
    spec = from_payload(RingComplianceInput, payload)
    ring = str(spec.ring or "")
    try:
        as_of = parse_time(spec.as_of) if spec.as_of else None
        hours = float(spec.stale_after_hours or DEFAULT_STALE_HOURS)
        if not 1 <= hours <= MAX_STALE_HOURS:
            raise ValueError(f"staleAfterHours must be from 1 to {MAX_STALE_HOURS}")
        stale = timedelta(hours=hours)
        if spec.unassigned or spec.members is None:
            if spec.plan is not None:
                view = compliance_core(clients, spec.plan, as_of=as_of, stale_after=stale, only_ring=ring)
            elif spec.ring_spec is not None and not spec.unassigned:
                view = _compliance(clients, [ring_from_spec(spec.ring_spec, ring)], as_of=as_of, stale_after=stale,
                                   only_ring=ring)
            else:
                raise KeyError("plan")
            if not view["rings"]:
                raise ValueError(f"the plan has no ring {ring!r}")
            out: dict[str, Any] = {**view["rings"][0], "asOf": view["asOf"], "asOfSource": view["asOfSource"],
                                   "staleAfterHours": view["staleAfterHours"], "resourceGraph": view["resourceGraph"]}
            if spec.unassigned:
                out["unassigned"] = view["unassigned"]
            return out
        members = [dict(m) for m in spec.members or []]
        subscriptions = sorted({subscription_of(str(m["id"])).lower() for m in members})
        rows, queries, pages, server = _assessments(clients, subscriptions)
        now, source = _now(as_of, server)
        entry = _ring_entry(ring, members, None, rows, as_of=now, stale=stale)
        return {**entry, "asOf": _format(now), "asOfSource": source,
                "staleAfterHours": round(stale.total_seconds() / 3600, 2),
                "resourceGraph": {"queries": queries, "pages": pages}}
    except (PatchRingsError, AzureError, KeyError, TypeError, ValueError) as exc:
        info = error_info(exc) if isinstance(exc, AzureError) else {
            "code": getattr(exc, "code", None) or type(exc).__name__, "message": str(exc)[:500]}
        log.warning("ring_compliance %s: %s", ring, info)
        return {"ring": ring, "error": info}


def ring_compliance(payload: Payload) -> dict[str, Any]:
    """Entry point body (registered on ``activities/manifest_diff.py``'s blueprint)."""
    from patchrings import deps

    return ring_compliance_core(deps.clients(), from_payload(RingComplianceInput, payload))
