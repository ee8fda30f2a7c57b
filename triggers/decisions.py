"""Approval decisions, halts and resumes: the rules both the API and the operator page apply.

Why a module of its own: ``POST /api/rollouts/{id}/rings/{ring}/approve|reject``, ``.../halt`` and
``.../resume`` (``triggers/http_api.py``) and the page's ``POST /api/ui/api/rollouts/...`` routes
(``triggers/ui.py``, after its CSRF and sign-in checks) must decide exactly alike: identity,
approver, self-approval, stale manifest (409) and ledger rules are written here once. The handlers
return the answer's body (202) and raise :class:`PatchRingsError`; each route answers in its own
headers.

Every approval decision, resume and halt (accepted or refused, including a request with no
authenticated caller) is appended to the ledger's Approvals table before anything is raised. The
orchestrator accepts a raised decision or resume only when it matches the ``submitted`` row written
here (same id, approver, ring, manifest, verdict), so events raised around the API through the
Durable webhooks are refused. No time of its own is stamped on decisions, halts or resumes: the
HTTP side cannot read the orchestration's clock (the platform's time, simulated locally); the
rollout stamps ``decidedAt`` / ``at`` when it takes them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import azure.functions as func

from orchestrators import names
from orchestrators.status import HALTED
from patchrings import deps
from patchrings.domain.approval import RELEASE_QUARANTINE, ApprovalPolicy, ApprovalRequest, check_decision
from patchrings.domain.quarantine import parse_release
from patchrings.errors import (
    ApprovalConflict,
    ApprovalForbidden,
    NotFound,
    PatchRingsError,
    RequestInvalid,
    RolloutConflict,
)
from triggers.http_io import caller, claimed_name, json_body, optional_text, route_id, route_ring
from triggers.rollouts import custom_status, is_active, require_rollout, runtime_status

log = logging.getLogger("patchrings.triggers.http")


async def decide(req: func.HttpRequest, client: Any) -> dict[str, Any]:
    """Approve or reject the pending promotion of a ring (``{"manifestHash", "comment"?,
    "acceptInconclusive"?}``): who, whether they may, against what is pending; the request is
    recorded (``submitted``, or ``refused`` with the error) before the decision is raised. The
    answer's body (202)."""
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
        release = release_quarantine(body, verdict)
        if release is not None:
            decision[RELEASE_QUARANTINE] = release
        who = caller(req, required=True)
        assert who is not None
        decision["approver"] = who.name
        decision["principal"] = who.to_dict()
        status = await require_rollout(client, rollout_id)
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
        if release is not None and waiting.get("kind") != "quarantine":
            raise ApprovalConflict("releaseQuarantine applies only while the rollout waits for a quarantine "
                                   "decision (waitingFor.kind quarantine)", field=RELEASE_QUARANTINE)
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
    await asyncio.to_thread(
        deps.ledger().record_approval,
        rollout_id,
        decision["decisionId"],
        {**decision, "outcome": "submitted"},
    )
    await client.raise_event(rollout_id, names.EV_APPROVAL, decision)
    return {"accepted": True, "decision": decision}


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


def release_quarantine(body: dict[str, Any], verdict: str) -> list[str] | None:
    """The optional ``releaseQuarantine`` of an approve body (issue 11): the quarantine entry ids
    to release in a quarantine decision (at most 100 strings of 1-600 characters); None when absent."""
    value = body.get(RELEASE_QUARANTINE)
    if value is None:
        return None
    ids, refused = parse_release(value)
    if refused or not ids:
        raise RequestInvalid(refused or "releaseQuarantine must name at least one quarantine entry",
                             field=RELEASE_QUARANTINE)
    if verdict != "approve":
        raise RequestInvalid("releaseQuarantine goes with approve (a rejection installs nothing)",
                             field=RELEASE_QUARANTINE)
    return ids


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
        await asyncio.to_thread(deps.ledger().record_approval, rollout_id, str(row["decisionId"]), fields)
    except Exception:
        log.exception("could not record the refused %s of %s in the ledger", row.get("verdict"), rollout_id)


def _plan_policy(ring: str) -> ApprovalPolicy | None:
    try:
        return deps.plan().ring(ring).approval
    except PatchRingsError:
        return None


async def halt_or_resume(req: func.HttpRequest, client: Any, *, halt: bool) -> dict[str, Any]:
    """Halt (any authenticated caller) or resume (an approver of the ring it resumes at) a rollout;
    recorded before the event is raised. The answer's body (202). A halt of a rollout that has
    ended, is halted, or has a halt requested that it has not taken yet (the ledger's
    ``haltRequested``, cleared by a resume) is a 409 :class:`RolloutConflict` naming why."""
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
        status = await require_rollout(client, rollout_id)
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
            pending = await _requested_halt(rollout_id)
            if pending is not None:
                # requested, not taken yet (the rollout takes it when it next acts): told, not
                # answered 202 again with a second event and a second ledger row of a halt
                by = pending.get("haltedBy")
                why = pending.get("haltReason")
                raise RolloutConflict(
                    f"a halt of rollout {rollout_id} is already requested"
                    + (f" (by {by}" + (f": {why}" if why else "") + ")" if by else "")
                    + "; the rollout takes it when it next acts", field="id",
                    details={"state": state, "runtimeStatus": runtime_status(status), "haltRequested": True,
                             **({"haltedBy": by} if by else {}), **({"haltReason": why} if why else {})})
            row["ring"] = doc.get("currentRing")
        else:
            if state != HALTED:
                raise RolloutConflict(f"rollout {rollout_id} is not halted (state {state})", field="id",
                                      details={"state": state, "runtimeStatus": runtime_status(status)})
            ring = (doc.get("waitingFor") or {}).get("ring") or doc.get("currentRing")
            row["ring"] = ring
            approvers = resume_approvers(ring)
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
    await asyncio.to_thread(ledger.record_approval, rollout_id, action_id, {**row, "outcome": "submitted"})
    if halt:
        payload: dict[str, Any] = {"haltId": action_id, "by": who.name,
                                   "reason": reason or f"halted by {who.name}"}
        await client.raise_event(rollout_id, names.EV_HALT, payload)
        # Flag it in the ledger too (after the event, which the rollout then always finds): a
        # direct ring stops starting waves, and guards cancel runs, before the rollout replays.
        await asyncio.to_thread(ledger.record_rollout, rollout_id,
                      {"haltRequested": True, "state": HALTED, "haltReason": payload["reason"], "haltedBy": who.name})
    else:
        payload = {"resumeId": action_id, "decisionId": action_id, "by": who.name, "approver": row["approver"],
                   "ring": row["ring"], "reason": reason}
        await asyncio.to_thread(ledger.record_rollout, rollout_id, {"haltRequested": False})
        await client.raise_event(rollout_id, names.EV_RESUME, payload)
    return {"id": rollout_id, "requested": "halt" if halt else "resume", **payload}


async def _requested_halt(rollout_id: str) -> dict[str, Any] | None:
    """The ledger's rollout row when a halt was requested through this API and no resume since
    (``haltRequested``), else None. A ledger that cannot be read stops no halt (halting is the
    safe direction; the halt's own ledger write then decides)."""
    try:
        row = await asyncio.to_thread(deps.ledger().rollout, rollout_id)
    except Exception:
        log.warning("could not read the rollout row of %s to tell a repeated halt", rollout_id)
        return None
    return row if isinstance(row, dict) and row.get("haltRequested") is True else None


def resume_approvers(ring: Any) -> list[str]:
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

