"""The HTTP API: start, list and inspect rollouts; approve, reject, halt, resume; validate plans.

Why these rules: the API is how people steer a rollout, so every answer is JSON, every error is
a :class:`PatchRingsError` body ``{"error": {code, message, field?, details?}}`` with the status
its class names (400 bad field, 403 not allowed, 404 unknown, 409 wrong state), and every
approval decision (accepted or refused) is appended to the ledger before anything else happens.
Identity comes from App Service authentication (``X-MS-CLIENT-PRINCIPAL``); the
``X-PatchRings-Approver`` header counts only when ``PATCHRINGS_APPROVER_HEADER_FALLBACK=true``
(local use). The orchestrator re-validates every decision it receives, so a decision raised
around this API still cannot approve the wrong ring or manifest.

Routes (all under ``/api``, FUNCTION auth level):

* ``POST rollouts`` — start (``{"dryRun"?, "plan"?, "reason"?}``), 202;
* ``GET rollouts`` — list; ``GET rollouts/{id}`` — status from custom status + ledger;
* ``POST rollouts/{id}/rings/{ring}/approve`` and ``.../reject`` — ``{"manifestHash", "comment"?}``;
* ``POST rollouts/{id}/halt`` (``{"reason"?}``) and ``POST rollouts/{id}/resume``;
* ``POST plans/validate`` — a plan document, or ``{"plan": {...}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from orchestrators import names
from orchestrators.status import HALTED
from patchrings.domain.approval import (
    ApprovalPolicy,
    ApprovalRequest,
    check_decision,
    principal_from_headers,
)
from patchrings.domain.plan import load_plan
from patchrings.domain.timeutil import format_instant
from patchrings.errors import (
    ApprovalConflict,
    ApprovalForbidden,
    NotFound,
    PatchRingsError,
    RequestInvalid,
    RolloutConflict,
)
from triggers import deps
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
def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype="application/json", headers=headers
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
    except Exception as err:  # an unexpected failure still answers JSON
        log.exception("request failed")
        return json_response({"error": {"code": "InternalError", "message": f"{type(err).__name__}: {err}"}}, 500)


def json_body(req: func.HttpRequest, *, required: bool = False) -> dict[str, Any]:
    raw = req.get_body() or b""
    if not raw.strip():
        if required:
            raise RequestInvalid("a JSON object body is required", field="body")
        return {}
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise RequestInvalid(f"the body is not valid JSON: {err}", field="body") from err
    if not isinstance(body, dict):
        raise RequestInvalid("the body must be a JSON object", field="body")
    return body


def caller(req: func.HttpRequest, *, required: bool) -> str | None:
    """The calling person's name (App Service principal, or the local fallback header)."""
    allow = deps.settings().approver_header_fallback
    try:
        return principal_from_headers(dict(req.headers), allow).name
    except ApprovalForbidden:
        if required:
            raise
        return None


def now_iso() -> str:
    return format_instant(datetime.now(UTC))


async def _ledger(call: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(call, *args)


# ---------------------------------------------------------------------- rollouts
@bp.function_name(name="rollouts")
@bp.route(route="rollouts", methods=["GET", "POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def rollouts(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """GET: list rollouts. POST: start one (``{"dryRun"?, "plan"?, "reason"?}``)."""
    if req.method.upper() == "GET":
        return await guarded(lambda: _list(client))
    return await guarded(lambda: _start(req, client))


async def _list(client: Any) -> func.HttpResponse:
    items = []
    for status in await list_rollouts(client):
        doc = custom_status(status)
        items.append(
            {
                "id": status.instance_id,
                "runtimeStatus": runtime_status(status),
                "createdTime": status.created_time,
                "lastUpdatedTime": status.last_updated_time,
                "state": doc.get("state"),
                "currentRing": doc.get("currentRing"),
                "dryRun": doc.get("dryRun"),
                "initiator": doc.get("initiator"),
                "waitingFor": doc.get("waitingFor"),
                "outcome": doc.get("outcome"),
            }
        )
    items.sort(key=lambda i: str(i["createdTime"] or ""), reverse=True)
    return json_response({"rollouts": items})


async def _start(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    body = json_body(req)
    unknown = sorted(set(body) - {"dryRun", "plan", "reason"})
    if unknown:
        raise RequestInvalid(f"unknown field {unknown[0]!r}; allowed: dryRun, plan, reason", field=unknown[0])
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise RequestInvalid("dryRun must be true or false", field="dryRun")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise RequestInvalid("reason must be a string", field="reason")
    plan = None
    if "plan" in body:
        if not isinstance(body["plan"], dict):
            raise RequestInvalid("plan must be a rollout plan object", field="plan")
        plan = load_plan(body["plan"], source="request").to_dict()
    else:
        deps.plan()  # fail now, with the plan's errors, rather than inside the orchestration
    if not dry_run:
        active = await active_rollouts(client)
        if active:
            raise RolloutConflict(
                f"rollout {active[0]} is still active; halt it or wait for it to finish",
                field="dryRun",
                details={"active": active},
            )
    initiator = caller(req, required=False)
    rollout_id = f"ro-{uuid.uuid4().hex[:12]}"
    await client.start_new(
        names.ROLLOUT,
        rollout_id,
        {"initiator": initiator, "dryRun": dry_run, "plan": plan, "reason": reason,
         "trigger": {"kind": "manual", "requestedAt": now_iso()}},
    )
    location = f"/api/rollouts/{rollout_id}"
    return json_response(
        {"id": rollout_id, "dryRun": dry_run, "initiator": initiator, "statusUrl": location},
        202,
        headers={"Location": location},
    )


@bp.function_name(name="rollout_status")
@bp.route(route="rollouts/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def rollout_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Rings, per-VM results, gate decisions with reasons, manifest, approvals, what it waits for."""
    return await guarded(lambda: _status(req.route_params.get("id", ""), client))


async def _status(rollout_id: str, client: Any) -> func.HttpResponse:
    status = await _require(client, rollout_id)
    doc = custom_status(status)
    body: dict[str, Any] = {
        "id": rollout_id,
        "runtimeStatus": runtime_status(status),
        "createdTime": status.created_time,
        "lastUpdatedTime": status.last_updated_time,
        "state": doc.get("state"),
        "waitingFor": doc.get("waitingFor"),
        "status": doc,
        "output": status.output,
    }
    try:
        ledger = deps.ledger()
        ring_names = [r.get("name") for r in doc.get("rings") or []]
        body["ledger"] = {
            "rollout": await _ledger(ledger.rollout, rollout_id),
            "ringRuns": await _ledger(ledger.ring_runs, rollout_id),
            "approvals": await _ledger(ledger.approvals, rollout_id),
            "vmResults": {ring: await _ledger(ledger.vm_results, rollout_id, ring) for ring in ring_names if ring},
        }
    except Exception as err:  # the durable status alone is still useful
        body["ledger"] = {"error": f"{type(err).__name__}: {err}"}
    return json_response(body)


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
    rollout_id = req.route_params.get("id", "")
    ring = req.route_params.get("ring", "")
    verdict = str(req.route_params.get("decision", "")).lower()
    if verdict not in ("approve", "reject"):
        raise NotFound(f"unknown decision {verdict!r}; use approve or reject", field="decision")
    body = json_body(req, required=True)
    manifest_hash = body.get("manifestHash")
    if not isinstance(manifest_hash, str) or not manifest_hash.strip():
        raise RequestInvalid("manifestHash is required (the hash shown in the rollout's status)", field="manifestHash")
    comment = body.get("comment", "")
    if comment is not None and not isinstance(comment, str):
        raise RequestInvalid("comment must be a string", field="comment")
    approver = caller(req, required=True)
    status = await _require(client, rollout_id)
    doc = custom_status(status)
    waiting = doc.get("waitingFor") or {}
    decision = {
        "decisionId": uuid.uuid4().hex,
        "approver": approver,
        "ring": ring,
        "manifestHash": manifest_hash.strip(),
        "verdict": verdict,
        "comment": comment or "",
        "decidedAt": now_iso(),
    }
    ledger = deps.ledger()
    try:
        if not is_active(status):
            raise ApprovalConflict(f"rollout {rollout_id} is {runtime_status(status)}; nothing is pending", field="id")
        pending = None
        policy = ApprovalPolicy(mode="manual", approvers=tuple(waiting.get("approvers") or ()))
        if waiting.get("what") == "approval" and waiting.get("request"):
            pending = ApprovalRequest.from_dict(waiting["request"])
        else:
            # Nothing pending: identity is still checked first against the ring's plan approvers.
            policy = _plan_policy(ring) or policy
        check_decision(policy, pending, decision, doc.get("initiator"))
    except PatchRingsError as err:
        await _ledger(
            ledger.record_approval,
            rollout_id,
            decision["decisionId"],
            {**decision, "outcome": "refused", "error": err.to_dict()["error"], "at": decision["decidedAt"]},
        )
        raise
    await _ledger(
        ledger.record_approval,
        rollout_id,
        decision["decisionId"],
        {**decision, "outcome": "submitted", "at": decision["decidedAt"]},
    )
    await client.raise_event(rollout_id, names.EV_APPROVAL, decision)
    return json_response({"accepted": True, "decision": decision}, 202)


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
    rollout_id = req.route_params.get("id", "")
    body = json_body(req)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise RequestInvalid("reason must be a string", field="reason")
    status = await _require(client, rollout_id)
    if not is_active(status):
        raise RolloutConflict(f"rollout {rollout_id} is {runtime_status(status)}", field="id")
    state = custom_status(status).get("state")
    who = caller(req, required=False)
    if halt:
        if state == HALTED:
            raise RolloutConflict(f"rollout {rollout_id} is already halted", field="id")
        payload = {"by": who, "reason": reason or f"halted by {who or 'API caller'}", "at": now_iso()}
        await client.raise_event(rollout_id, names.EV_HALT, payload)
        # Flag it in the ledger too (after the event, which the rollout then always finds): a
        # direct ring stops starting waves, and guards cancel runs, before the rollout replays.
        await _ledger(deps.ledger().record_rollout, rollout_id,
                      {"haltRequested": True, "state": HALTED, "haltReason": payload["reason"], "haltedBy": who})
    else:
        if state != HALTED:
            raise RolloutConflict(f"rollout {rollout_id} is not halted (state {state})", field="id")
        payload = {"by": who, "reason": reason, "at": now_iso()}
        await _ledger(deps.ledger().record_rollout, rollout_id, {"haltRequested": False})
        await client.raise_event(rollout_id, names.EV_RESUME, payload)
    return json_response({"id": rollout_id, "requested": "halt" if halt else "resume", **payload}, 202)


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
