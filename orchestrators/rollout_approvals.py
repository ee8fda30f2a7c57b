"""The rollout's approvals: a manual approval bound to the manifest raced with its timeout (and a
Halt), checked against what the HTTP API recorded; the checks a Resume must pass; and the person's
decision a ``quarantine.onBadManifest: wait`` plan asks for before Ring 0 (issue 11)."""

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
    FAILED,
    HALTED,
    approve_url,
    manifest_view,
)
from patchrings.boundary.activities import (
    LedgerCheckDecisionInput,
    LedgerReadGateInput,
    LedgerReadQuarantineInput,
    LedgerRecordApprovalInput,
)
from patchrings.domain.approval import (
    RELEASE_QUARANTINE,
    ApprovalPolicy,
    ApprovalRequest,
    check_decision,
    timeout_decision,
)
from patchrings.domain.plan import Plan
from patchrings.domain.quarantine import decision_token, parse_release
from patchrings.domain.timeutil import format_duration, iso
from patchrings.errors import PatchRingsError


class ApprovalSteps(PlannerSteps):
    def next_decision(self, deadline: Any, timer: Any) -> Gen:
        """The next ``ApprovalDecision`` raised before ``deadline`` as ``(raw, timer)``, or
        ``(None, timer)`` once the deadline has passed. A long wait is slept in pieces (the SDK caps
        a timer; ``waits.timer``), so an elapsed piece before the deadline arms the next one.
        Shared by ring approvals and the quarantine decision (same race, same timer discipline)."""
        while True:
            event_task = self.waits.event(names.EV_APPROVAL)
            winner = event_task
            if not event_task.is_completed:
                winner = yield from self.waits.race(event_task, timer)
            if winner is timer and self.now < deadline:
                timer = self.waits.timer(deadline)  # one piece of a long wait elapsed
                continue
            if winner is timer:
                return None, timer
            return decode(self.waits.consume(names.EV_APPROVAL)), timer

    def _open_wait(self, ring: str, token: str, policy: ApprovalPolicy, why: str | None,
                   **extra: Any) -> ApprovalRequest:
        """Open a wait for a person on ``ring``, bound to ``token`` (a manifest hash or a quarantine
        decision token): the pending request, the ring's phase and the status's ``waitingFor``.

        One place for both kinds of wait (ring approval, quarantine decision), so what the status,
        the operator page and the API show of a wait cannot drift between them; ``extra`` carries
        what only one kind has (``inconclusive``; ``kind`` and ``quarantine``).
        """
        pending = ApprovalRequest.create(self.rollout_id, ring, token, policy, self.now)
        self.st.set_phase(ring, "awaiting-approval", iso(self.now), until=iso(pending.deadline))
        self.st.wait_for(
            "approval",
            until=iso(pending.deadline),
            ring=ring,
            manifest_hash=token,
            approvers=list(policy.approvers),
            approve_url=approve_url(self.rollout_id, ring),
            rejectUrl=approve_url(self.rollout_id, ring, "reject"),
            request=pending.to_dict(),
            reason=why,
            **extra,
        )
        return pending

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
        pending = self._open_wait(
            ring, manifest_hash, policy, why,
            **({"inconclusive": [{"id": vm["id"], "name": vm.get("name")} for vm in need_accept[:50]]}
               if need_accept else {}))
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
            raw, timer = yield from self.next_decision(pending.deadline, timer)
            if raw is None:
                decision = timeout_decision(pending)
                accepted = decision.to_dict()
                break
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

    def await_quarantine_decision(self) -> Gen:
        """``quarantine.onBadManifest: wait`` with active entries: Ring 0 does not start until a
        person decides (issue 11), with the ring approvals' machinery and rules.

        The request is an approval of Ring 0 bound to the quarantine's :func:`decision_token`
        (``waitingFor.manifestHash``; ``waitingFor.kind: "quarantine"``), decided by the approvers
        of the plan's first manual ring (:meth:`Plan.quarantine_approval`): the API's approve /
        reject, identity and self-approval rules and its recorded ``submitted`` row apply as for
        any ring. *approve* installs Ring 0 without the quarantined patches; *approve* with
        ``releaseQuarantine`` (entry ids of this request, as the API recorded them) releases
        those entries in the ledger, by that person, and Ring 0 installs as the plan says (less
        any entry not released); *reject*, or no decision before the deadline, ends the rollout
        halted with nothing installed. A Halt ends it too (before any ring: nothing to resume).
        """
        ring = self.resolved.ring_names[0]
        entries = list(self.quarantine.get("entries") or [])
        excluded = self.quarantine.get("exclusions") or {}
        policy = self.resolved.quarantine_approval()
        if policy is None:  # validation refuses such a plan; fail closed if one gets here anyway
            raise Stop(HALTED, f"quarantine.onBadManifest is wait but no ring takes manual approval: nobody "
                               f"can decide; ring {ring} not started, nothing installed")
        token = decision_token(entries)
        ids = [str(e.get("id")) for e in entries]
        patches = list(excluded.get("kbNumbersToExclude") or []) + list(excluded.get("packageNameMasksToExclude") or [])
        shown = ", ".join((f"KB{p}" if str(p).isdigit() else str(p)) for p in patches[:10])
        why = (f"{len(patches)} quarantined patch(es) ({shown}{', ...' if len(patches) > 10 else ''}) from "
               f"{len(ids)} failed gate(s): approve = install ring {ring} without them; approve with "
               f"releaseQuarantine = release those entries and install as the plan says; reject = end the "
               f"rollout, nothing installed")
        # what the status and the notification show (bounded: the status stays far below 16 KB;
        # every entry and patch is in the ledger's Quarantine table)
        shown_quarantine = {
            "entries": ids[:20], "entryCount": len(ids), "patchCount": len(patches),
            "exclusions": {k: list(excluded.get(k) or [])[:20]
                           for k in ("kbNumbersToExclude", "packageNameMasksToExclude")}}
        pending = self._open_wait(ring, token, policy, why, kind="quarantine", quarantine=shown_quarantine)
        self.publish()
        yield from self.ledger_ring(ring, "awaiting-approval", manifestHash=token, kind="quarantine",
                                    quarantineEntries=ids[:50])
        yield from self.notify(
            "approval-waiting", ring, "warning",
            f"rollout {self.rollout_id} waits before ring {ring} for a decision on the quarantine "
            f"{token} until {iso(pending.deadline)} ({why})",
            deadline=iso(pending.deadline), manifestHash=token, approvers=list(policy.approvers)[:25],
            approvePath=approve_url(self.rollout_id, ring), pagePath=f"/api/ui/rollouts/{self.rollout_id}",
            decisionKind="quarantine", quarantine=shown_quarantine, reason=why)
        timer = self.waits.timer(pending.deadline)
        release: list[str] = []
        while True:
            raw, timer = yield from self.next_decision(pending.deadline, timer)
            if raw is None:
                decision = timeout_decision(pending)
                accepted = decision.to_dict()
                break
            recorded = yield from self._recorded_quarantine_decision(raw)
            refused: dict[str, Any] | None = None
            if not recorded.get("accepted"):
                refused = {"code": "DecisionNotSubmitted", "message": recorded.get("reason")}
            else:
                try:
                    decision = check_decision(policy, pending, raw, self.initiator)
                except PatchRingsError as err:
                    refused = err.to_dict()["error"]
                else:
                    release, bad = parse_release(raw.get(RELEASE_QUARANTINE))
                    unknown = [r for r in release if r not in ids]
                    if bad or unknown:
                        refused = {"code": "ReleaseInvalid", "message": bad or (
                            f"releaseQuarantine names entries this decision was not asked about: "
                            f"{', '.join(unknown[:5])} (entries: {', '.join(ids[:10])})")}
                    elif release and not decision.approved:
                        refused = {"code": "ReleaseInvalid",
                                   "message": "releaseQuarantine goes with approve (a rejection installs nothing)"}
            if refused is not None:
                release = []
                self.st.add_approval({**decision_fields(raw), "accepted": False, "at": iso(self.now),
                                      "kind": "quarantine", "error": refused})
                self.st.note(iso(self.now), f"ring {ring}: refused a quarantine decision: {refused.get('message')}")
                self.publish()
                yield from self.activity(
                    names.LEDGER_APPROVAL,
                    LedgerRecordApprovalInput(
                        rollout_id=self.rollout_id, decision_id=f"{raw.get('decisionId') or 'unknown'}:refused",
                        columns={"ring": ring, "kind": "quarantine", "manifestHash": token,
                                 "decision": decision_fields(raw), "outcome": "refused",
                                 "reason": str(refused.get("message"))[:500], "at": iso(self.now)}),
                    retries.WRITE,
                )
                continue
            timer.cancel()
            accepted = decision.to_dict()
            accepted["decidedAt"] = iso(self.now)  # the platform's time, as for ring approvals
            break
        choice = "reject" if not decision.approved else ("release" if release else "exclude")
        self.st.stop_waiting()
        self.st.add_approval({**accepted, "accepted": True, "at": iso(self.now), "kind": "quarantine",
                              "choice": choice, **({RELEASE_QUARANTINE: release} if release else {})})
        self.publish()
        yield from self.activity(
            names.LEDGER_APPROVAL,
            LedgerRecordApprovalInput(rollout_id=self.rollout_id, columns={
                "ring": ring, "kind": "quarantine", "manifestHash": token, "decision": accepted,
                "outcome": "accepted", "choice": choice, "quarantineEntries": ids[:50], "at": iso(self.now),
                **({RELEASE_QUARANTINE: release} if release else {})}),
            retries.WRITE,
        )
        who = decision.approver
        if choice == "reject":
            self.st.set_phase(ring, "rejected", iso(self.now))
            raise Stop(HALTED, f"ring {ring} not started: {who} {decision.verdict}ed the quarantine decision "
                               f"{token}" + (f" ({decision.comment})" if decision.comment else "")
                       + "; nothing was installed")
        self.st.set_phase(ring, "pending", iso(self.now))
        if choice == "exclude":
            self.st.note(iso(self.now), f"ring {ring}: {who} decided to install without the {len(patches)} "
                                        f"quarantined patch(es) ({shown})")
            self.publish()
            return
        try:
            answer = yield from self.activity(
                names.LEDGER_READ_QUARANTINE,
                LedgerReadQuarantineInput(plan_name=self.plan_name(), release=release, by=who, at=iso(self.now),
                                          reason=f"released by {who}'s decision in rollout {self.rollout_id}",
                                          rollout_id=self.rollout_id),
                retries.WRITE,
            )
        except Exception as err:
            raise Stop(FAILED, f"the quarantine release {who} decided could not be recorded ({first_line(err)}); "
                               f"nothing was installed") from err
        answer = answer if isinstance(answer, dict) else {}
        left = [e for e in answer.get("entries") or [] if isinstance(e, dict)]
        now_excluded = answer.get("exclusions") if isinstance(answer.get("exclusions"), dict) else {}
        self.quarantine = {"entries": left, "exclusions": (now_excluded or {}) if left else {}}
        for entry_id in answer.get("released") or []:
            self.st.note(iso(self.now), f"quarantine {entry_id} released by {who}")
        left_patches = list((now_excluded or {}).get("kbNumbersToExclude") or []) + list(
            (now_excluded or {}).get("packageNameMasksToExclude") or [])
        self.st.note(iso(self.now), f"ring {ring}: {who} released {len(release)} quarantine entr(y/ies); ring {ring} "
                                    + (f"still excludes {len(left_patches)} patch(es) of entries not released"
                                       if left else "installs as the plan says"))
        self.publish()

    def _recorded_quarantine_decision(self, raw: dict[str, Any]) -> Gen:
        """:meth:`recorded` for a quarantine decision: the event's ``releaseQuarantine`` goes to
        the check too, so only a release the API recorded for this decision counts."""
        event = {**decision_fields(raw), **({RELEASE_QUARANTINE: raw[RELEASE_QUARANTINE]}
                                            if raw.get(RELEASE_QUARANTINE) is not None else {})}
        try:
            result = yield from self.activity(
                names.LEDGER_CHECK_DECISION,
                LedgerCheckDecisionInput(rollout_id=self.rollout_id, kind="approval", event=event, at=iso(self.now)),
                retries.WRITE,
            )
        except Exception as err:
            result = {"accepted": False, "reason": f"the ledger could not be read: {first_line(err)}"}
        return result or {"accepted": False, "reason": "no answer"}

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

