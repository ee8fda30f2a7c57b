"""Open or close one ring's gate: retag its VMs, or create / remove its configuration assignment.

Why a sub-orchestration: opening a ring touches every VM in it (membership look-up, one tag
write per VM); for thousands of VMs those lists belong in this instance's history, not in the
long-lived rollout's. The rollout gets a summary: how many members, what changed, what failed,
and which VMs will not follow the maintenance schedule (their patch settings, ``scheduleIssue``).

Every call retries (``orchestrators.retries``): reads ``READ``; writes ``WRITE`` when opening and
``CLOSE`` when closing (a failing rollout must never leave a gate open). ``retag_vms`` reports
per-VM failures instead of raising, so those VMs are retagged again in later rounds; VMs still
failed after the last round make this orchestration *fail* (the rollout's close-down path then
retries the close and names a gate left open) rather than report a half-open or half-closed gate.

Input :class:`~patchrings.boundary.rings.RingGateInput` ``{ringSpec (or, during the transition,
plan), ring, open: bool, rolloutId}``; output :class:`~patchrings.boundary.rings.RingGateOutput`
``{members, mode, value, changed, failed, scheduleIssues: [{vm, issue}] (at most 25),
scheduleIssueCount}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.verdicts import ring_of
from patchrings.boundary.activities import (
    ResolveMembersInput,
    RetagVmsInput,
    SetRingAssignmentInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import RingGateInput, RingGateOutput

bp = df.Blueprint()

MAX_ISSUES = 25
RETAG_ROUNDS = 4  # per-VM retag failures are retried this many rounds in all ...
RETAG_PAUSE = timedelta(seconds=30)  # ... 30 s, 60 s, 90 s apart


def _code(failure: dict[str, Any]) -> str | None:
    error = failure.get("error")
    return error.get("code") if isinstance(error, dict) else None


@bp.orchestration_trigger(context_name="context", orchestration=names.RING_GATE)  # type: ignore[untyped-decorator]
def ring_gate_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = from_payload(RingGateInput, context.get_input() or {})
    ring, opening = spec.ring, bool(spec.opening)
    # The ring's document (issue 10: not the plan): its open mode, tag and patching.
    ring_spec = dict(spec.ring_spec)
    ring_doc = ring_of(ring_spec, ring)
    mode = ring_doc.open_mode
    write = retries.WRITE if opening else retries.CLOSE
    out: dict[str, Any] = {"mode": mode, "members": None, "value": None, "changed": 0, "failed": []}

    members: list[dict[str, Any]] | None = None
    if mode == "retag":
        tag = ring_doc.members.tag.to_dict() if ring_doc.members.tag else {}
        resolved = yield context.call_activity_with_retry(
            names.RESOLVE_MEMBERS, retries.READ if opening else retries.CLOSE,
            to_payload(ResolveMembersInput(ring=ring, include_hold=True,
                                                 ring_spec=ring_spec)))
        members = list((resolved or {}).get("vms") or [])
        value = tag.get("value") if opening else tag.get("holdValue")
        out["value"] = value
        if tag.get("name") and value is not None and members:
            pending = [vm["id"] for vm in members]
            failed: list[dict[str, Any]] = []
            round_ = 0
            while round_ < RETAG_ROUNDS:
                result = yield context.call_activity_with_retry(
                    names.RETAG, write, to_payload(RetagVmsInput(
                        vm_ids=pending, tag=tag["name"], value=value, rollout_id=spec.rollout_id, ring=ring)))
                # retag_vms merge-writes without reading first: "written" (the merge is idempotent);
                # "changed" is what older activity versions reported.
                out["changed"] += int((result or {}).get("written") or 0) + len((result or {}).get("changed") or [])
                failed = list((result or {}).get("failed") or [])
                before, pending = len(pending), [str(f.get("vm")) for f in failed]
                if not pending:
                    break
                if len(pending) < before and all(_code(f) == "Deferred" for f in failed):
                    # The activity ran out of its time budget with writes still to start (paced per
                    # subscription): go on at once, without spending a round -- progress is bounded
                    # because every call writes some VMs or stops being deferred-only.
                    continue
                round_ += 1
                if round_ < RETAG_ROUNDS:  # a per-VM failure comes back in ``failed``: retry it here
                    yield context.create_timer(context.current_utc_datetime + RETAG_PAUSE * round_)
            out["failed"] = failed[:MAX_ISSUES]
            if failed:
                # Never report a gate as opened or closed while VMs are on the wrong side of it: the
                # rollout's close-down path retries a failed close and names a gate left open.
                first = failed[0].get("error") or {}
                raise RuntimeError(
                    f"ring {ring}: retag {tag['name']}={value} failed for {len(failed)} VM(s) after "
                    f"{RETAG_ROUNDS} rounds, e.g. {failed[0].get('vm')}: "
                    f"{first.get('code') if isinstance(first, dict) else first}")
    elif mode == "enableConfiguration":
        result = yield context.call_activity_with_retry(
            names.SET_ASSIGNMENT, write, to_payload(SetRingAssignmentInput(
                ring=ring, present=opening, rollout_id=spec.rollout_id, ring_spec=ring_spec)))
        out["changed"] = int(bool((result or {}).get("changed")))

    if opening and ring_doc.patching == "scheduled":
        if members is None:
            resolve = ResolveMembersInput(ring=ring, ring_spec=ring_spec)
            resolved = yield context.call_activity_with_retry(names.RESOLVE_MEMBERS, retries.READ,
                                                              to_payload(resolve))
            members = list((resolved or {}).get("vms") or [])
        issues = [{"vm": vm.get("name") or vm["id"], "issue": vm["scheduleIssue"]}
                  for vm in members if vm.get("scheduleIssue")]
        out["scheduleIssues"] = issues[:MAX_ISSUES]
        out["scheduleIssueCount"] = len(issues)
    out["members"] = len(members) if members is not None else None
    return to_payload(RingGateOutput(mode=out["mode"], members=out["members"], value=out["value"],
                                     changed=out["changed"], failed=out["failed"],
                                     schedule_issues=out.get("scheduleIssues"),
                                     schedule_issue_count=out.get("scheduleIssueCount")))
