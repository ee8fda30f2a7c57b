"""The rollout's approvals: a manual approval bound to the manifest raced with its timeout (and a
Halt), checked against what the HTTP API recorded; the checks a Resume must pass."""

from __future__ import annotations

from typing import Any

from orchestrators import names, retries
from orchestrators.rollout_base import (
    Gen,
    Stop,
    decision_fields,
    decode,
    first_line,
)
from orchestrators.rollout_planner import PlannerSteps
from orchestrators.status import (
    HALTED,
    approve_url,
    manifest_view,
)
from patchrings.boundary.activities import LedgerReadGateInput, LedgerRecordApprovalInput
from patchrings.domain.approval import ApprovalPolicy, ApprovalRequest, check_decision, timeout_decision
from patchrings.domain.plan import Plan
from patchrings.domain.timeutil import format_duration, iso
from patchrings.errors import PatchRingsError


class ApprovalSteps(PlannerSteps):
    def approve(self, ring: str, *, force: bool = False, why: str | None = None,
                need_accept: list[dict[str, Any]] | None = None) -> Gen:
        """Wait for a manual approval of ``ring`` bound to the manifest, raced with its timeout.

        ``need_accept``: VMs of the previous ring that cannot be observed (issue 13.5); only an
        approval whose recorded ``acceptInconclusive`` names every one of them (id or name) is
        taken, and the VMs it accepted are kept for the next health check of the previous ring.
        """
        manifest_hash = str((self.manifest or {}).get("hash") or "none")
        if self.approved.get(ring) == manifest_hash and not need_accept:
            return
        policy = self.ring_of(ring).approval
        if not policy.required:
            if not force:
                return
            block = _fallback_approval(self.resolved)
            if not block.get("approvers"):
                raise Stop(HALTED, f"{why}; no approvers are configured to decide")
            policy = ApprovalPolicy.from_dict(block)
        pending = ApprovalRequest.create(self.rollout_id, ring, manifest_hash, policy, self.now)
        self.st.set_phase(ring, "awaiting-approval", iso(self.now), until=iso(pending.deadline))
        self.st.wait_for(
            "approval",
            until=iso(pending.deadline),
            ring=ring,
            manifest_hash=manifest_hash,
            approvers=list(policy.approvers),
            approve_url=approve_url(self.rollout_id, ring),
            rejectUrl=approve_url(self.rollout_id, ring, "reject"),
            request=pending.to_dict(),
            reason=why,
            **({"inconclusive": [{"id": vm["id"], "name": vm.get("name")} for vm in need_accept[:50]]}
               if need_accept else {}),
        )
        self.publish()
        yield from self.ledger_ring(ring, "awaiting-approval", manifestHash=manifest_hash)
        yield from self.notify(
            "approval-waiting", ring, "warning",
            f"ring {ring} of rollout {self.rollout_id} waits for approval of manifest {manifest_hash} "
            f"until {iso(pending.deadline)}" + (f" ({why})" if why else ""),
            deadline=iso(pending.deadline), manifestHash=manifest_hash, approvers=list(policy.approvers)[:25],
            approvePath=approve_url(self.rollout_id, ring), pagePath=f"/api/ui/rollouts/{self.rollout_id}",
            # What the approver signs, not just its hash: KBs with titles, name=version packages.
            manifest=_manifest_for_people(self.manifest),
            **({"reason": why} if why else {}))
        timer = self.waits.timer(pending.deadline)
        while True:
            event_task = self.waits.event(names.EV_APPROVAL)
            winner = event_task
            if not event_task.is_completed:
                winner = yield from self.waits.race(event_task, timer)
            if winner is timer and self.now < pending.deadline:
                timer = self.waits.timer(pending.deadline)  # one piece of a long wait elapsed
                continue
            if winner is timer:
                decision = timeout_decision(pending)
                accepted = decision.to_dict()
                break
            raw = decode(self.waits.consume(names.EV_APPROVAL))
            recorded = yield from self.recorded("approval", raw)
            if not recorded.get("accepted"):
                refused = {**decision_fields(raw), "accepted": False, "at": iso(self.now),
                           "error": {"code": "DecisionNotSubmitted", "message": recorded.get("reason")}}
                self.st.add_approval(refused)
                self.st.note(iso(self.now), f"ring {ring}: refused an ApprovalDecision event: {recorded.get('reason')}")
                self.publish()
                continue
            try:
                decision = check_decision(policy, pending, raw, self.initiator)
            except PatchRingsError as err:
                refused = {**decision_fields(raw), "accepted": False, "error": err.to_dict()["error"],
                           "at": iso(self.now)}
                self.st.add_approval(refused)
                self.publish()
                continue
            accept_list = [str(a) for a in recorded.get("acceptInconclusive") or []]
            missing = _not_accepted(need_accept or [], accept_list)
            if decision.approved and missing:
                reason = (f"{len(missing)} VM(s) of the previous ring cannot be observed and were not accepted "
                          f"explicitly (acceptInconclusive): {', '.join(missing[:10])}")
                self.st.add_approval({**decision_fields(raw), "accepted": False, "at": iso(self.now),
                                      "error": {"code": "AcceptanceRequired", "message": reason}})
                self.st.note(iso(self.now), f"ring {ring}: refused an approval: {reason}")
                self.publish()
                yield from self.activity(
                    names.LEDGER_APPROVAL,
                    LedgerRecordApprovalInput(
                        rollout_id=self.rollout_id, decision_id=f"{raw.get('decisionId')}:refused",
                        columns={"ring": ring, "manifestHash": manifest_hash, "decision": decision.to_dict(),
                                 "outcome": "refused", "reason": reason, "at": iso(self.now)}),
                    retries.WRITE,
                )
                continue
            timer.cancel()
            accepted = decision.to_dict()
            # The platform's time (issue 9): the decision counts when the rollout takes it; the
            # HTTP trigger cannot read the orchestration's clock, so it stamps no time of its own.
            accepted["decidedAt"] = iso(self.now)
            if accept_list and decision.approved:
                accepted["acceptInconclusive"] = accept_list
            break
        self.st.stop_waiting()
        self.st.add_approval({**accepted, "accepted": True, "at": iso(self.now)})
        accept_list = list(accepted.get("acceptInconclusive") or [])
        if accept_list:
            self.accepted[ring] = accept_list
            self.st.note(iso(self.now), f"ring {ring}: {accepted.get('approver')} accepted {len(accept_list)} "
                                        f"unobservable VM(s) of the previous ring as inconclusive: "
                                        f"{', '.join(accept_list[:10])}")
        self.publish()
        yield from self.activity(
            names.LEDGER_APPROVAL,
            LedgerRecordApprovalInput(rollout_id=self.rollout_id, columns={
                "ring": ring, "manifestHash": manifest_hash, "decision": accepted, "outcome": "accepted",
                "at": iso(self.now), **({"acceptInconclusive": accept_list} if accept_list else {})}),
            retries.WRITE,
        )
        if not decision.approved:
            self.st.set_phase(ring, "rejected", iso(self.now))
            raise Stop(HALTED, f"ring {ring} not approved: {decision.approver} {decision.verdict}ed"
                       + (f" ({decision.comment})" if decision.comment else ""))
        self.approved[ring] = manifest_hash

    def check_resume(self, ring: str, payload: dict[str, Any]) -> Gen:
        """None if a Resume may be accepted, else why not: it must match a resume the API recorded
        (by id, same person), and that person must be an approver of the ring that re-opens."""
        recorded = yield from self.recorded("resume", payload)
        if not recorded.get("accepted"):
            return str(recorded.get("reason"))
        policy = self.ring_of(ring).approval
        allowed = list(policy.approvers) if policy.required else []
        allowed = allowed or list(_fallback_approval(self.resolved).get("approvers") or [])
        # the plan entry (UPN or object id) the API matched, recorded in the same ledger row
        who = str(payload.get("approver") or payload.get("by") or "")
        if allowed and who.lower() not in {a.lower() for a in allowed}:
            reason = f"{who or 'an unknown caller'} is not an approver of ring {ring}"
            yield from self.activity(
                names.LEDGER_APPROVAL,
                LedgerRecordApprovalInput(rollout_id=self.rollout_id, columns={
                    "ring": ring, "kind": "resume", "by": who, "outcome": "refused", "reason": reason,
                    "resumeId": payload.get("resumeId") or payload.get("decisionId"), "at": iso(self.now)}),
                retries.WRITE,
            )
            return reason
        return None

    def revalidate(self, ring: str) -> Gen:
        """After a resume, the ring's approval must still be in the ledger for this manifest.

        The rollout re-does the ring from its gate; an approval given before the halt is reused only
        if the ledger still binds it to (rollout, ring, manifest hash); otherwise a new one is asked.
        """
        manifest_hash = str((self.manifest or {}).get("hash") or "none")
        if self.approved.get(ring) is None:
            return
        try:
            gate = yield from self.activity(
                names.LEDGER_READ_GATE,
                LedgerReadGateInput(rollout_id=self.rollout_id, ring=ring, manifest_hash=manifest_hash)
            )
        except Exception as err:
            gate = {"decision": None, "error": first_line(err)}
        if self.approved.get(ring) != manifest_hash or (gate or {}).get("decision") != "approved":
            self.approved.pop(ring, None)
            why = (gate or {}).get("error") or "no approval of this manifest in the ledger"
            self.st.note(iso(self.now), f"ring {ring}: its approval could not be re-validated after the resume "
                                        f"({why}); a new approval is needed")
            self.publish()


def _not_accepted(vms: list[dict[str, Any]], accepted: list[str]) -> list[str]:
    """Names (or ids) of ``vms`` that ``accepted`` names neither by id nor by name (case-insensitive)."""
    ok = {a.lower() for a in accepted}
    return [str(vm.get("name") or vm["id"]) for vm in vms
            if vm["id"].lower() not in ok and str(vm.get("name") or "").lower() not in ok]


def _fallback_approval(plan: Plan) -> dict[str, Any]:
    """Approvers for an inconclusive gate on a ring without manual approval: any listed approver."""
    approvers: list[str] = []
    timeout = "P1D"
    for spec in plan.rings:
        if spec.approval.required:
            approvers.extend(a for a in spec.approval.approvers if a not in approvers)
            timeout = format_duration(spec.approval.timeout)
    return {"mode": "manual", "approvers": approvers, "timeout": timeout, "onTimeout": "reject"}


def _manifest_for_people(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The first 20 KBs and packages of the manifest view (a notification stays small)."""
    view = manifest_view(manifest) or {}
    return {"hash": view.get("hash"), **{k: list(view.get(k) or [])[:20] for k in ("windows", "linux")}}

