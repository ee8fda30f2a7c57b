"""The HTTP API: start, list and inspect rollouts; approve, reject, halt, resume; validate plans.

Why these rules: the API is how people steer a rollout, so every answer is JSON, every error is
a :class:`PatchRingsError` body ``{"error": {code, message, field?, details?}}`` with the status
its class names (400 bad field, 403 not allowed, 404 unknown, 409 wrong state), and every
approval decision, resume and halt (accepted or refused, including a request with no
authenticated caller) is appended to the ledger's Approvals table before anything is raised.
Identity (``triggers/identity.py``) comes from App Service authentication (``X-MS-CLIENT-PRINCIPAL``,
trusted only when ``WEBSITE_AUTH_ENABLED=True``), matched to plan approvers by UPN, object id or
``tid/oid``; the ``X-PatchRings-Approver`` header counts only locally
(``PATCHRINGS_APPROVER_HEADER_FALLBACK=true``, no Easy Auth, not hosted in Azure). The
orchestrator accepts a raised decision or resume only when it matches the ``submitted`` row this
API wrote (same id, approver, ring, manifest, verdict), so events raised around this API through
the Durable webhooks are refused. The API stamps no time of its own on decisions, halts or resumes:
it cannot read the orchestration's clock (the platform's time, simulated locally); the rollout
stamps ``decidedAt`` / ``at`` when it takes them.

Hostile input gets 4xx, never 500: route ids are checked (strict charset, at most 256
characters, no leading ``@``) before they reach the durable client's URLs; bodies are bounded in
size (1 MiB) and nesting depth (64); inline plans are refused unless enabled, and then may not
weaken the deployed plan (``triggers/inline_plans.py``).

Routes (all under ``/api``, FUNCTION auth level):

* ``POST rollouts`` — start (``{"dryRun"?, "plan"?, "reason"?, "releaseQuarantine"?}``), 202;
  ``releaseQuarantine`` (quarantine entry ids) only from an approver of the first manual ring;
* ``GET rollouts`` — list; ``GET rollouts/{id}`` — the rollout at a glance (issue 9): each ring's
  phase and what it does now until when, counts read from the running ring's child orchestrations
  (deterministic instance ids) that include VMs not started, per-VM rows (short ``name``, full
  ``id``), the manifest's contents and diff, approvals; times RFC 3339 ``Z``, links absolute
  (built from the request URL; the orchestrator keeps paths);
* ``POST rollouts/{id}/rings/{ring}/approve`` and ``.../reject`` — ``{"manifestHash", "comment"?}``;
* ``POST rollouts/{id}/halt`` (``{"reason"?}``, any authenticated caller) and
  ``POST rollouts/{id}/resume`` (``{"reason"?}``, an approver of the ring it resumes at);
* ``POST plans/validate`` — a plan document, or ``{"plan": {...}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func

from orchestrators import names
from orchestrators.ring_direct import WAVE_SLICE
from orchestrators.status import HALTED, diff_view, manifest_view, ring_view
from patchrings import deps
from patchrings.domain.approval import (
    ApprovalPolicy,
    ApprovalRequest,
    check_decision,
)
from patchrings.domain.plan import load_plan
from patchrings.domain.quarantine import parse_release
from patchrings.domain.timeutil import format_instant
from patchrings.errors import (
    ApprovalConflict,
    ApprovalForbidden,
    NotFound,
    PatchRingsError,
    RequestInvalid,
    RolloutConflict,
)
from patchrings.notifications import person_link
from triggers.identity import FALLBACK_HEADER, Caller, caller_from_headers
from triggers.inline_plans import check_inline_plan
from triggers.rollouts import (
    active_rollouts,
    custom_status,
    find_rollout,
    is_active,
    list_rollouts,
    runtime_status,
)

bp = df.Blueprint()
log = logging.getLogger("patchrings.triggers.http")

Handler = Callable[..., Awaitable[func.HttpResponse]]


# ---------------------------------------------------------------------- JSON plumbing
# Every API answer: data about rollouts, approvers and machines is never stored by a browser or
# a proxy, and never sniffed as anything but JSON.
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype="application/json",
        headers={**API_HEADERS, **(headers or {})},
    )


def error_response(err: PatchRingsError) -> func.HttpResponse:
    status = err.http_status if 400 <= err.http_status < 600 else 500
    return json_response(err.to_dict(), status)


async def guarded(handler: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run a handler; turn domain errors into their JSON error, anything else into a 500."""
    try:
        return await handler()
    except PatchRingsError as err:
        return error_response(err)
    except Exception:  # an unexpected failure still answers JSON
        return internal_error(log)


def internal_error(logger: logging.Logger) -> func.HttpResponse:
    """A 500 that says nothing about the failure (an SDK error can carry URLs, account names or
    response bodies): the detail goes to the log under a reference the answer names."""
    ref = uuid.uuid4().hex[:12]
    logger.exception("request failed (reference %s)", ref)
    return json_response({"error": {"code": "InternalError", "message": f"internal error (reference {ref}); "
                                    "the app's log has the detail", "details": {"reference": ref}}}, 500)


MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ID = 256
# Instance ids the API accepts in a route: what the app itself creates (``ro-<hex>``,
# ``mw-pre-...``) and a little more; never ``@`` (entity ids), ``/``, ``?``, ``#``, ``%`` or
# spaces, which would change the durable client's request URL.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$")
_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,599}$")
_RING = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when JSON ``value`` nests deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_body(req: func.HttpRequest, *, required: bool = False) -> dict[str, Any]:
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestInvalid(f"the body is larger than {MAX_BODY_BYTES} bytes", field="body")
    if not raw.strip():
        if required:
            raise RequestInvalid("a JSON object body is required", field="body")
        return {}
    try:
        body = json.loads(raw)
    except RecursionError as err:
        raise RequestInvalid(f"the body nests deeper than {MAX_DEPTH} levels", field="body") from err
    except ValueError as err:
        raise RequestInvalid(f"the body is not valid JSON: {err}", field="body") from err
    if not isinstance(body, dict):
        raise RequestInvalid("the body must be a JSON object", field="body")
    if depth_exceeds(body, MAX_DEPTH):
        raise RequestInvalid(f"the body nests deeper than {MAX_DEPTH} levels", field="body")
    return body


def route_id(req: func.HttpRequest, name: str = "id") -> str:
    """A route's instance id, checked before it reaches any durable URL (400 naming it)."""
    value = req.route_params.get(name, "")
    if not isinstance(value, str) or not _ID.match(value):
        raise RequestInvalid(
            f"{name} must be 1-{MAX_ID} letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
            field=name,
        )
    return value


def route_ring(req: func.HttpRequest) -> str:
    value = req.route_params.get("ring", "")
    if not isinstance(value, str) or not _RING.match(value):
        raise RequestInvalid("ring must be a ring name (1-63 letters, digits, '-' or '_')", field="ring")
    return value


def optional_text(body: dict[str, Any], name: str, limit: int = 4096) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestInvalid(f"{name} must be a string", field=name)
    if len(value) > limit:
        raise RequestInvalid(f"{name} is longer than {limit} characters", field=name)
    return value


def caller(req: func.HttpRequest, *, required: bool) -> Caller | None:
    """The authenticated caller (``triggers/identity.py``), or None when not required."""
    try:
        return caller_from_headers(dict(req.headers), deps.settings())
    except ApprovalForbidden:
        if required:
            raise
        return None


def claimed_name(req: func.HttpRequest) -> str | None:
    """What an unauthenticated request *claimed* to be (recorded on refusals, never trusted)."""
    for header in ("X-MS-CLIENT-PRINCIPAL-NAME", FALLBACK_HEADER):
        value = req.headers.get(header)
        if value:
            return str(value)[:256]
    return None


async def _ledger(call: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(call, *args)


# ---------------------------------------------------------------------- rollouts
@bp.function_name(name="rollouts")
@bp.route(route="rollouts", methods=["GET", "POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def rollouts(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """GET: list rollouts. POST: start one (``{"dryRun"?, "plan"?, "reason"?}``)."""
    if req.method.upper() == "GET":
        return await guarded(lambda: _list(req, client))
    return await guarded(lambda: _start(req, client))


def _instant(value: Any) -> str | None:
    """The durable client's times as RFC 3339 UTC (``...Z``), the API's one time format."""
    if value in (None, ""):
        return None
    try:
        return format_instant(value)
    except (TypeError, ValueError):
        return str(value)


async def _list(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    base = base_url(req)
    items = []
    for status in await list_rollouts(client):
        doc = custom_status(status)
        items.append(
            {
                "id": status.instance_id,
                "runtimeStatus": runtime_status(status),
                "createdTime": _instant(status.created_time),
                "lastUpdatedTime": _instant(status.last_updated_time),
                "state": doc.get("state"),
                "currentRing": doc.get("currentRing"),
                "dryRun": doc.get("dryRun"),
                "initiator": doc.get("initiator"),
                "waitingFor": absolute_links(doc.get("waitingFor"), base, sign_in=_sign_in()),
                "outcome": doc.get("outcome"),
                "url": f"{base}/api/rollouts/{status.instance_id}",
            }
        )
    items.sort(key=lambda i: str(i["createdTime"] or ""), reverse=True)
    return json_response({"rollouts": items})


async def _start(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    body = json_body(req)
    unknown = sorted(set(body) - {"dryRun", "plan", "reason", "releaseQuarantine"})
    if unknown:
        raise RequestInvalid(f"unknown field {unknown[0]!r}; allowed: dryRun, plan, reason, releaseQuarantine",
                             field=unknown[0])
    release, refused = parse_release(body.get("releaseQuarantine"))
    if refused:
        raise RequestInvalid(refused, field="releaseQuarantine")
    hostile = next((r for r in release if not _RELEASE_ID.match(r)), None)
    if hostile is not None:
        # Entry ids are "<rollout id>:<ring>": nothing else reaches the ledger's keys.
        raise RequestInvalid(f"releaseQuarantine: {hostile[:80]!r} is not a quarantine entry id "
                             "(<rollout id>:<ring>: letters, digits, '.', '_', ':' or '-')",
                             field="releaseQuarantine")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise RequestInvalid("dryRun must be true or false", field="dryRun")
    reason = optional_text(body, "reason")
    plan = None
    deployed = deps.plan()  # fail now, with the plan's errors, rather than inside the orchestration
    if "plan" in body:
        if not isinstance(body["plan"], dict):
            raise RequestInvalid("plan must be a rollout plan object", field="plan")
        inline = load_plan(body["plan"], source="request")
        check_inline_plan(inline, deployed, enabled=deps.settings().inline_plans)
        plan = inline.to_dict()
    if release and dry_run:
        raise RequestInvalid("a dry run releases nothing; start a rollout to release", field="releaseQuarantine")
    # Who first (and before any state is revealed): a key holder who may not release learns
    # nothing about active rollouts and starts nothing.
    who = caller(req, required=bool(release))
    initiator = who.name if who else None
    if release:
        # Releasing a quarantined patch lets Ring 0 install it again: a person's decision, taken
        # by someone who may approve a ring (the first manual ring's approvers), never by a key.
        approvers = _resume_approvers(None)
        if who is None or not approvers or who.matching_entry(approvers) is None:
            raise ApprovalForbidden(
                f"{initiator or 'an unauthenticated caller'} may not release quarantined patches; "
                "an approver of the first manual ring must", field="releaseQuarantine",
                details={"approvers": approvers})
    if not dry_run:
        active = await active_rollouts(client)
        if active:
            raise RolloutConflict(
                f"rollout {active[0]} is still active; halt it or wait for it to finish",
                field="dryRun",
                details={"active": active},
            )
    rollout_id = f"ro-{uuid.uuid4().hex[:12]}"
    start_input: dict[str, Any] = {"initiator": initiator, "dryRun": dry_run, "plan": plan, "reason": reason,
                                   "trigger": {"kind": "manual"}}
    if release:
        start_input["releaseQuarantine"] = release
    await client.start_new(names.ROLLOUT, rollout_id, start_input)
    location = f"{base_url(req)}/api/rollouts/{rollout_id}"
    return json_response(
        {"id": rollout_id, "dryRun": dry_run, "initiator": initiator, "statusUrl": location,
         "pageUrl": person_link(base_url(req), f"/api/ui/rollouts/{rollout_id}", sign_in=_sign_in())},
        202,
        headers={"Location": location},
    )


@bp.function_name(name="rollout_status")
@bp.route(route="rollouts/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def rollout_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Rings, per-VM results, gate decisions with reasons, manifest, approvals, what it waits for."""
    return await guarded(lambda: _status(req, route_id(req), client))


async def _status(req: func.HttpRequest, rollout_id: str, client: Any) -> func.HttpResponse:
    """The rollout at a glance (issue 9): each ring's phase with what it does now and until when,
    counts that move while a ring runs (read from the ring's child orchestrations by their
    deterministic ids) and include VMs not started, per-VM rows (short ``name``, full ``id``) with
    their gate reasons, the manifest's contents, approvals, and what the rollout waits for; all
    times RFC 3339 UTC ``Z``, all links absolute. The raw custom status (``status``) and ledger
    rows (``ledger``) stay for scripts; the ledger's copy of the state document is not shown
    (it is a snapshot of an earlier moment)."""
    status = await _require(client, rollout_id)
    doc = custom_status(status)
    base = base_url(req)
    sign_in = _sign_in()
    waiting = absolute_links(doc.get("waitingFor"), base, sign_in=sign_in)
    body: dict[str, Any] = {
        "id": rollout_id,
        "runtimeStatus": runtime_status(status),
        "createdTime": _instant(status.created_time),
        "lastUpdatedTime": _instant(status.last_updated_time),
        "state": doc.get("state"),
        "currentRing": doc.get("currentRing"),
        "outcome": doc.get("outcome"),
        "halted": doc.get("halted"),
        "waitingFor": waiting,
        # the page is for a person: through App Service's login endpoint when its authentication is on
        "links": {"self": f"{base}/api/rollouts/{rollout_id}",
                  "page": person_link(base, f"/api/ui/rollouts/{rollout_id}", sign_in=sign_in)},
        "status": {**doc, "waitingFor": waiting} if doc else doc,
        "output": status.output,
    }
    ring_names = [str(r.get("name")) for r in doc.get("rings") or [] if r.get("name")]
    rows: dict[str, list[dict[str, Any]]] = {}
    rollout_row: dict[str, Any] | None = None
    try:
        ledger = deps.ledger()
        rollout_row = await _ledger(ledger.rollout, rollout_id)
        if isinstance(rollout_row, dict):
            # no stale copy: the row's state document is a snapshot; the live one is ``status``
            rollout_row = {k: v for k, v in rollout_row.items() if k != "status"}
            if doc.get("state"):
                rollout_row["state"] = doc["state"]
        rows = {ring: await _ledger(ledger.vm_results, rollout_id, ring) for ring in ring_names}
        approvals = await _ledger(ledger.approvals, rollout_id)
        body["ledger"] = {
            "rollout": rollout_row,
            "ringRuns": await _ledger(ledger.ring_runs, rollout_id),
            "approvals": approvals,
            "vmResults": rows,
        }
        body["approvals"] = approvals_view(approvals)
    except Exception as err:  # the durable status alone is still useful
        body["ledger"] = {"error": f"{type(err).__name__}: {err}"}
        body["approvals"] = [a for a in doc.get("approvals") or [] if isinstance(a, dict)]
    active = is_active(status)
    halted = doc.get("state") == HALTED
    views = []
    for ring in doc.get("rings") or []:
        progress = await ring_progress(client, ring) if active else None
        views.append(ring_view(ring, rows.get(str(ring.get("name")), []), progress, halted=halted,
                               current=ring.get("name") == doc.get("currentRing")))
    body["rings"] = views
    body["manifest"] = manifest_view((rollout_row or {}).get("manifest"), doc.get("manifest"))
    if body["manifest"] is not None:
        body["manifest"]["diff"] = diff_view((rollout_row or {}).get("manifestDiff"), doc.get("manifestDiff"))
    return json_response(body)


def base_url(req: func.HttpRequest) -> str:
    """``scheme://host[:port]`` of the request, for absolute links (the orchestrator keeps paths).

    From the URL the Functions host hands over (the public host name on App Service); forwarded
    headers are not trusted, so a caller cannot make the API link elsewhere."""
    parts = urlsplit(str(req.url or ""))
    return f"{parts.scheme or 'https'}://{parts.netloc or 'localhost'}"


def _sign_in() -> bool:
    """Links for a person go through App Service's login endpoint (settings only: App Service
    authentication on, ``WEBSITE_AUTH_ENABLED=True``; it answers a browser not signed in 401)."""
    return bool(getattr(deps.settings(), "platform_auth_enabled", False))


def absolute_links(waiting: Any, base: str, *, sign_in: bool = False) -> Any:
    """``waitingFor`` with its ``...Url`` paths made absolute (``pagePath`` -> ``pageUrl``, a
    person's link: through App Service's login endpoint when ``sign_in``)."""
    if not isinstance(waiting, dict):
        return waiting
    out = dict(waiting)
    for key, value in waiting.items():
        if key.endswith(("Url", "Path")) and isinstance(value, str) and value.startswith("/"):
            url_key = key[:-4] + "Url" if key.endswith("Path") else key
            out[url_key] = (person_link(base, value, sign_in=sign_in) if url_key == "pageUrl"
                            else base + value)
    return out


def approvals_view(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every decision, resume and halt the ledger holds, oldest first, in one flat shape.

    A request the API recorded as ``submitted`` (no time: the HTTP side has no platform clock)
    is left out once the rollout has recorded what it did with the same request (same ring,
    verdict, approver and manifest hash): one line per decision, with the rollout's time. A
    submission the rollout has not acted on yet stays (``outcome: submitted``)."""
    out = []
    acted = [_decision_key(row) for row in rows if row.get("outcome") not in (None, "submitted")]
    for row in rows:
        if row.get("outcome") == "submitted" and _decision_key(row) in acted:
            acted.remove(_decision_key(row))
            continue
        decision: dict[str, Any] = row["decision"] if isinstance(row.get("decision"), dict) else {}
        out.append({
            "id": row.get("decisionId"),
            "ring": row.get("ring") or decision.get("ring"),
            "verdict": decision.get("verdict") or row.get("verdict") or row.get("kind"),
            "approver": decision.get("approver") or row.get("approver") or row.get("by"),
            "outcome": row.get("outcome"),
            "manifestHash": decision.get("manifestHash") or row.get("manifestHash"),
            "comment": decision.get("comment") or row.get("comment") or row.get("reason"),
            "decidedAt": decision.get("decidedAt") or row.get("decidedAt"),
            "at": row.get("at"),
        })
    return out


def _decision_key(row: dict[str, Any]) -> tuple[Any, ...]:
    decision: dict[str, Any] = row["decision"] if isinstance(row.get("decision"), dict) else {}
    return (row.get("ring") or decision.get("ring"), decision.get("verdict") or row.get("verdict"),
            str(decision.get("approver") or row.get("approver") or "").lower(),
            decision.get("manifestHash") or row.get("manifestHash"))


async def _child_status(client: Any, instance_id: Any) -> dict[str, Any]:
    if not isinstance(instance_id, str) or not instance_id:
        return {}
    try:
        return custom_status(await client.get_status(instance_id))
    except Exception:  # a child not started yet (or purged): no progress to show
        return {}


async def ring_progress(client: Any, ring: dict[str, Any]) -> dict[str, Any] | None:
    """What a running ring's child orchestrations say now (their deterministic instance ids are
    in the ring's status entry): wave n of m, VMs installing / verifying, the health phase and
    until when; None when the ring is not running a child."""
    phase = ring.get("phase")
    instance = ring.get("instance")
    if phase not in ("installing", "collecting-and-verifying") or not instance:
        return None
    top = await _child_status(client, instance)
    if not top:
        return None
    progress: dict[str, Any] = {k: top[k] for k in ("wave", "waves", "vms", "skipped", "step") if k in top}
    if phase == "installing":
        first = top.get("waveInstance")
        wave = await _child_status(client, first)
        if wave:
            # A wave larger than ring_direct.WAVE_SLICE runs as several instances side by side
            # (``…:w{n}``, ``…:w{n}.1``, …): every slice's counts are summed.
            slices = [wave]
            in_flight = int(top.get("inFlight") or 0)
            for k in range(1, -(-in_flight // WAVE_SLICE) if in_flight > WAVE_SLICE else 1):
                part = await _child_status(client, f"{first}.{k}")
                if part:
                    slices.append(part)
            progress["inFlight"] = max(in_flight, sum(int(w.get("vms") or 0) for w in slices))
            if all(w.get("step") == "verifying" for w in slices):
                health = await _child_status(client, f"{first}:verify")
                progress.update(step="verifying", verifying=progress["inFlight"],
                                healthPhase=health.get("healthPhase"), until=health.get("until"))
            else:
                progress.update(step=wave.get("step") or "installing",
                                installing=sum(int(w.get("installing") or 0) for w in slices),
                                nextPollAt=min((str(w["nextPollAt"]) for w in slices if w.get("nextPollAt")),
                                               default=None))
                progress["verifying"] = sum(int(v) for w in slices for k, v in (w.get("states") or {}).items()
                                            if k in ("done", "not-needed"))
    elif top.get("step") == "verifying":
        health = await _child_status(client, top.get("verifyInstance"))
        progress.update(verifying=int(top.get("vms") or 0), inFlight=int(top.get("vms") or 0),
                        healthPhase=health.get("healthPhase"), until=health.get("until"))
    return progress


async def _require(client: Any, rollout_id: str) -> Any:
    status = await find_rollout(client, rollout_id)
    if status is None:
        raise NotFound(f"no rollout {rollout_id!r}", field="id")
    return status


# ---------------------------------------------------------------------- approvals
@bp.function_name(name="decide_ring")
@bp.route(route="rollouts/{id}/rings/{ring}/{decision}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def decide_ring(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Approve or reject the pending promotion of a ring (``{"manifestHash", "comment"?}``)."""
    return await guarded(lambda: _decide(req, client))


async def _decide(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    rollout_id = route_id(req)
    ring = route_ring(req)
    verdict = str(req.route_params.get("decision", "")).lower()
    if verdict not in ("approve", "reject"):
        raise NotFound(f"unknown decision {verdict[:40]!r}; use approve or reject", field="decision")
    decision: dict[str, Any] = {
        "decisionId": uuid.uuid4().hex,
        "approver": None,
        "ring": ring,
        "manifestHash": None,
        "verdict": verdict,
        "comment": "",
    }
    try:
        body = json_body(req, required=True)
        manifest_hash = body.get("manifestHash")
        if not isinstance(manifest_hash, str) or not manifest_hash.strip() or len(manifest_hash) > 256:
            raise RequestInvalid("manifestHash is required (the hash shown in the rollout's status)",
                                 field="manifestHash")
        decision["manifestHash"] = manifest_hash.strip()
        decision["comment"] = optional_text(body, "comment") or ""
        accept = accept_inconclusive(body)
        if accept is not None:
            decision["acceptInconclusive"] = accept
        who = caller(req, required=True)
        assert who is not None
        decision["approver"] = who.name
        decision["principal"] = who.to_dict()
        status = await _require(client, rollout_id)
        doc = custom_status(status)
        waiting = doc.get("waitingFor") or {}
        if not is_active(status):
            raise ApprovalConflict(f"rollout {rollout_id} is {runtime_status(status)}; nothing is pending", field="id")
        pending = None
        policy = ApprovalPolicy(mode="manual", approvers=tuple(waiting.get("approvers") or ()))
        if waiting.get("what") == "approval" and waiting.get("request"):
            pending = ApprovalRequest.from_dict(waiting["request"])
        else:
            # Nothing pending: identity is still checked first against the ring's plan approvers.
            policy = _plan_policy(ring) or policy
        # The decision carries the plan's own approver entry (UPN, oid or tid/oid) the caller matched.
        decision["approver"] = who.matching_entry(policy.approvers) or who.name
        initiator = doc.get("initiator")
        check_decision(policy, pending, _decision_fields(decision), initiator)
        if verdict == "approve" and initiator and who.matches(str(initiator)):
            raise ApprovalForbidden(f"{who.name} started this rollout and may not approve it (another approver must)",
                                    field="approver")
    except PatchRingsError as err:
        await _record_refusal(req, rollout_id, decision, err)
        raise
    await _ledger(
        deps.ledger().record_approval,
        rollout_id,
        decision["decisionId"],
        {**decision, "outcome": "submitted"},
    )
    await client.raise_event(rollout_id, names.EV_APPROVAL, decision)
    return json_response({"accepted": True, "decision": decision}, 202)


# Most VMs an approver can accept as inconclusive in one decision (issue 13.5).
MAX_ACCEPT_INCONCLUSIVE = 1000


def accept_inconclusive(body: dict[str, Any]) -> list[str] | None:
    """The optional ``acceptInconclusive`` list of an approve body: VM ids or names (at most
    1000 strings of 1-1024 characters) the approver explicitly accepts as unobservable when the
    previous ring's health check cannot read them (issue 13.5); None when absent."""
    value = body.get("acceptInconclusive")
    if value is None:
        return None
    if not isinstance(value, list):
        raise RequestInvalid("acceptInconclusive must be a list of VM ids or names", field="acceptInconclusive")
    if len(value) > MAX_ACCEPT_INCONCLUSIVE:
        raise RequestInvalid(f"acceptInconclusive lists more than {MAX_ACCEPT_INCONCLUSIVE} VMs",
                             field="acceptInconclusive")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > 1024:
            raise RequestInvalid("acceptInconclusive items must be non-empty strings of at most 1024 characters",
                                 field="acceptInconclusive")
        if item.strip() not in out:
            out.append(item.strip())
    return out


def _decision_fields(decision: dict[str, Any]) -> dict[str, Any]:
    keys = ("approver", "ring", "manifestHash", "verdict", "comment", "decidedAt")
    return {k: decision[k] for k in keys if decision.get(k) is not None}


async def _record_refusal(req: func.HttpRequest, rollout_id: str, row: dict[str, Any], err: PatchRingsError) -> None:
    """Append a refused request to the Approvals table (best effort: the refusal still answers)."""
    fields = {**row, "outcome": "refused", "error": err.to_dict()["error"]}
    if not row.get("principal"):
        fields["authenticated"] = False
        fields["claimedBy"] = claimed_name(req)
    try:
        await _ledger(deps.ledger().record_approval, rollout_id, str(row["decisionId"]), fields)
    except Exception:
        log.exception("could not record the refused %s of %s in the ledger", row.get("verdict"), rollout_id)


def _plan_policy(ring: str) -> ApprovalPolicy | None:
    try:
        return deps.plan().ring(ring).approval
    except PatchRingsError:
        return None


# ---------------------------------------------------------------------- halt / resume
@bp.function_name(name="halt_rollout")
@bp.route(route="rollouts/{id}/halt", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def halt_rollout(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Halt: later rings stay closed and their runs are cancelled until resumed."""
    return await guarded(lambda: _halt_or_resume(req, client, halt=True))


@bp.function_name(name="resume_rollout")
@bp.route(route="rollouts/{id}/resume", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def resume_rollout(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Resume a halted rollout at the ring where it stopped."""
    return await guarded(lambda: _halt_or_resume(req, client, halt=False))


async def _halt_or_resume(req: func.HttpRequest, client: Any, *, halt: bool) -> func.HttpResponse:
    rollout_id = route_id(req)
    action_id = uuid.uuid4().hex
    row: dict[str, Any] = {"decisionId": action_id, "verdict": "halt" if halt else "resume",
                           "approver": None, "ring": None}
    try:
        body = json_body(req)
        reason = optional_text(body, "reason")
        row["reason"] = reason
        who = caller(req, required=True)
        assert who is not None
        row.update({"approver": who.name, "by": who.name, "principal": who.to_dict()})
        status = await _require(client, rollout_id)
        doc = custom_status(status)
        state = doc.get("state")
        if not is_active(status):
            # finished (completed, failed, halted for good...): nothing to halt or resume; the
            # error names the state so a repeated halt is told, not answered 202 again
            final = state or str(runtime_status(status) or "").lower()
            raise RolloutConflict(f"rollout {rollout_id} has ended ({final}); there is nothing to "
                                  f"{'halt' if halt else 'resume'}", field="id",
                                  details={"state": final, "runtimeStatus": runtime_status(status)})
        if halt:
            if state == HALTED:
                raise RolloutConflict(f"rollout {rollout_id} is already halted", field="id",
                                      details={"state": state, "runtimeStatus": runtime_status(status)})
            row["ring"] = doc.get("currentRing")
        else:
            if state != HALTED:
                raise RolloutConflict(f"rollout {rollout_id} is not halted (state {state})", field="id",
                                      details={"state": state, "runtimeStatus": runtime_status(status)})
            ring = (doc.get("waitingFor") or {}).get("ring") or doc.get("currentRing")
            row["ring"] = ring
            approvers = _resume_approvers(ring)
            if approvers:
                entry = who.matching_entry(approvers)
                if entry is None:
                    raise ApprovalForbidden(
                        f"{who.name} may not resume: only an approver of ring {ring!r} may",
                        field="approver", details={"approvers": approvers},
                    )
                row["approver"] = entry
    except PatchRingsError as err:
        await _record_refusal(req, rollout_id, row, err)
        raise
    # No time of its own: the HTTP trigger cannot read the orchestration's clock (the platform's
    # time); the rollout stamps when it takes the halt / resume (status ``halted.at``, notes, ledger).
    ledger = deps.ledger()
    # The request is recorded (with its id) before the event is raised: the rollout accepts a
    # Resume only when it matches this submitted row.
    await _ledger(ledger.record_approval, rollout_id, action_id, {**row, "outcome": "submitted"})
    if halt:
        payload: dict[str, Any] = {"haltId": action_id, "by": who.name,
                                   "reason": reason or f"halted by {who.name}"}
        await client.raise_event(rollout_id, names.EV_HALT, payload)
        # Flag it in the ledger too (after the event, which the rollout then always finds): a
        # direct ring stops starting waves, and guards cancel runs, before the rollout replays.
        await _ledger(ledger.record_rollout, rollout_id,
                      {"haltRequested": True, "state": HALTED, "haltReason": payload["reason"], "haltedBy": who.name})
    else:
        payload = {"resumeId": action_id, "decisionId": action_id, "by": who.name, "approver": row["approver"],
                   "ring": row["ring"], "reason": reason}
        await _ledger(ledger.record_rollout, rollout_id, {"haltRequested": False})
        await client.raise_event(rollout_id, names.EV_RESUME, payload)
    return json_response({"id": rollout_id, "requested": "halt" if halt else "resume", **payload}, 202)


def _resume_approvers(ring: Any) -> list[str]:
    """Who may resume at ``ring``: its approvers, else those of the first later manual ring
    (deployed plan); ``[]`` when no ring from there on takes manual approval."""
    plan = deps.plan()
    try:
        start = plan.ring(str(ring)).index if ring else 0
    except PatchRingsError:
        start = 0
    for candidate in plan.rings[start:]:
        if candidate.approval.required:
            return list(candidate.approval.approvers)
    return []


# ---------------------------------------------------------------------- plans
@bp.function_name(name="validate_plan")
@bp.route(route="plans/validate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def validate_plan(req: func.HttpRequest) -> func.HttpResponse:
    """Validate a plan document: 200 with its hash, or 400 with every error named by field."""

    async def run() -> func.HttpResponse:
        body = json_body(req, required=True)
        doc = body["plan"] if isinstance(body.get("plan"), dict) and "rings" not in body else body
        plan = load_plan(doc, source="request")
        return json_response({"valid": True, "hash": plan.hash, "name": plan.name, "rings": plan.ring_names})

    return await guarded(run)
