"""``GET /api/compliance`` (issue 12): per ring, machines missing Critical / Security patches, the
age of each machine's last assessment, and machines in no ring at all.

The core (membership, the ``patchassessmentresources`` query, the statuses) lives in
:mod:`activities.compliance`, shared with the dry run's compliance section; this module is the
HTTP surface.

Query parameters (all optional; a bad one is a 400 naming it):

* ``ring`` -- only this ring (404-style ``NotFound`` naming ``ring`` when the plan has none);
* ``staleAfterHours`` -- an assessment older than this (default 24, 1..168) is ``stale``;
* ``asOf`` -- RFC 3339 UTC instant the ages are computed against. Default: the platform's "now",
  the ``Date`` header of Resource Graph's answer (in Azure real time, on the local platform the
  simulated time), else the worker's clock; ``asOfSource`` says which
  (``request`` | ``resourceGraph`` | ``workerClock``).

Answer ``{generatedAt, asOf, asOfSource, staleAfterHours, subscriptions, rings: [{ring, members,
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
from datetime import datetime, timedelta

import azure.durable_functions as df
import azure.functions as func

from activities.compliance import DEFAULT_STALE_HOURS, MAX_STALE_HOURS, ResourceGraphUnavailable, compliance_core
from patchrings import deps
from patchrings.domain.timeutil import parse_instant
from patchrings.errors import RequestInvalid
from triggers.http_io import guarded, json_response

bp = df.Blueprint()
log = logging.getLogger("patchrings.triggers.compliance")

__all__ = ["ResourceGraphUnavailable", "bp", "compliance_core"]


def _params(req: func.HttpRequest, ring_names: list[str]) -> tuple[datetime | None, timedelta, str | None]:
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
    as_of: datetime | None = None  # the server's time: Resource Graph's Date header (activities/compliance.py)
    text = params.get("asOf")
    if text is not None:
        try:
            if not (text.endswith("Z") and "T" in text):
                raise ValueError(text)
            as_of = parse_instant(text)
        except (ValueError, OverflowError) as err:
            raise RequestInvalid("asOf must be an RFC 3339 UTC instant such as 2026-11-16T06:00:00Z",
                                 field="asOf") from err
    return as_of, timedelta(hours=stale_hours), ring


@bp.route(route="compliance", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def compliance(req: func.HttpRequest) -> func.HttpResponse:
    """Missing Critical / Security patches per ring, assessment ages, machines in no ring."""

    async def handle() -> func.HttpResponse:
        plan = deps.plan()
        as_of, stale, ring = _params(req, list(plan.ring_names))
        clients = deps.clients()
        view = await asyncio.to_thread(compliance_core, clients, plan.to_dict(), as_of=as_of, stale_after=stale,
                                       only_ring=ring)
        return json_response(view)

    return await guarded(handle)
