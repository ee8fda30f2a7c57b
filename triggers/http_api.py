"""The HTTP API: start, list and inspect rollouts; approve, reject, halt, resume; validate plans.

Why these rules: the API is how people steer a rollout, so every answer is JSON, every error is
a :class:`PatchRingsError` body ``{"error": {code, message, field?, details?}}`` with the status
its class names (400 bad field, 403 not allowed, 404 unknown, 409 wrong state), and every
approval decision, resume and halt (accepted or refused, including a request with no
authenticated caller) is appended to the ledger's Approvals table before anything is raised.
This module holds the routes and the start of a rollout; what the operator page shares with it
lives beside it: the JSON answers and checked input (``triggers/http_io.py``), the list and
status documents (``triggers/rollout_views.py``) and the decision, halt and resume rules
(``triggers/decisions.py``).
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
* ``POST rollouts/{id}/halt`` (``{"reason"?}``, any authenticated caller; a repeated halt -- the
  rollout already halted, or a halt requested and not yet taken -- is a 409 naming it) and
  ``POST rollouts/{id}/resume`` (``{"reason"?}``, an approver of the ring it resumes at);
* ``POST plans/validate`` — a plan document, or ``{"plan": {...}}``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from patchrings import deps
from patchrings.boundary.rollout import RolloutInput
from patchrings.domain.plan import load_plan
from patchrings.domain.quarantine import parse_release
from patchrings.errors import ApprovalForbidden, RequestInvalid, RolloutConflict
from patchrings.notifications import person_link
from triggers.decisions import decide, halt_or_resume, resume_approvers
from triggers.http_io import caller, guarded, json_body, json_response, optional_text, route_id
from triggers.inline_plans import check_inline_plan
from triggers.rollout_views import base_url, links_sign_in, list_view, status_view
from triggers.rollouts import active_rollouts, start_rollout

bp = df.Blueprint()

# Quarantine entry ids a start may release: "<rollout id>:<ring>" (longer than an instance id).
_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,599}$")


# ---------------------------------------------------------------------- rollouts
@bp.function_name(name="rollouts")
@bp.route(route="rollouts", methods=["GET", "POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def rollouts(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """GET: list rollouts. POST: start one (``{"dryRun"?, "plan"?, "reason"?}``)."""
    if req.method.upper() == "GET":
        return await guarded(lambda: _list(req, client))
    return await guarded(lambda: _start(req, client))


async def _list(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    return json_response(await list_view(req, client))


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
        approvers = resume_approvers(None)
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
    await start_rollout(client, rollout_id, RolloutInput(
        initiator=initiator, dry_run=dry_run, plan=plan, reason=reason, trigger={"kind": "manual"},
        release_quarantine=release or None))
    location = f"{base_url(req)}/api/rollouts/{rollout_id}"
    return json_response(
        {"id": rollout_id, "dryRun": dry_run, "initiator": initiator, "statusUrl": location,
         "pageUrl": person_link(base_url(req), f"/api/ui/rollouts/{rollout_id}", sign_in=links_sign_in())},
        202,
        headers={"Location": location},
    )


@bp.function_name(name="rollout_status")
@bp.route(route="rollouts/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def rollout_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Rings, per-VM results, gate decisions with reasons, manifest, approvals, what it waits for."""
    return await guarded(lambda: _status(req, client))


async def _status(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    return json_response(await status_view(req, route_id(req), client))


# ---------------------------------------------------------------------- approvals
@bp.function_name(name="decide_ring")
@bp.route(route="rollouts/{id}/rings/{ring}/{decision}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def decide_ring(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Approve or reject the pending promotion of a ring (``{"manifestHash", "comment"?}``)."""
    return await guarded(lambda: _decide(req, client))


async def _decide(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    return json_response(await decide(req, client), 202)


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
    return json_response(await halt_or_resume(req, client, halt=halt), 202)


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
