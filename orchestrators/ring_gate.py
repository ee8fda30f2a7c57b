"""Open or close one ring's gate: retag its VMs, or create / remove its configuration assignment.

Why a sub-orchestration: opening a ring touches every VM in it (membership look-up, one tag
write per VM); those lists must stay out of the long-lived rollout's history. The rollout gets a
summary: how many members, what changed, what failed, and which VMs will not follow the
maintenance schedule (their patch settings, ``scheduleIssue``).

Bounded history at any size (issue 11): this instance holds no VM either. ``plan_ring_waves``
resolves the members once into the ledger (``Waves`` table, under ``run_results.members_run_id``, as
one wave in slices of :data:`GATE_SLICE`) and answers counts; each slice is then retagged (or, for
``enableConfiguration``, read for its schedule issues) by a ``ring_gate`` instance of its own
(``<this>:s<i>``, input ``slice``), one after the other (the retag activity paces its writes per
subscription; slices side by side would burst), which reads its VMs (``read_wave_members``) and
answers counts, the first failures and the first schedule issues.

Check before act (issue 11): the members are Resource Graph's (about a minute stale), so each
slice sends ``retag_vms`` the ring's member rule: the activity reads every VM live first and does
not write one that left the ring meanwhile (opening: the rule no longer selects it; closing: it no
longer carries the open value -- someone retagged it). Those VMs come back as ``leftRing``: not a
failure, not retried, counted (``leftRingCount``) and named (the first :data:`MAX_ISSUES`) in the
gate's answer.

Every call retries (``orchestrators.retries``): reads ``READ``; writes ``WRITE`` when opening and
``CLOSE`` when closing (a failing rollout must never leave a gate open). ``retag_vms`` reports
per-VM failures instead of raising, so those VMs are retagged again in later rounds; VMs still
failed after the last round make this orchestration *fail* (the rollout's close-down path then
retries the close and names a gate left open) rather than report a half-open or half-closed gate.

Input :class:`~patchrings.boundary.rings.RingGateInput` ``{ringSpec (or, during the transition,
plan), ring, open: bool, rolloutId, slice?}``; output :class:`~patchrings.boundary.rings.RingGateOutput`
``{members, mode, value, changed, failed, scheduleIssues: [{vm, issue}] (at most 25),
scheduleIssueCount, leftRing: [{vm, reason}] (at most 25), leftRingCount}``.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.run_results import members_run_id, one_wave
from orchestrators.verdicts import ring_of
from patchrings.boundary.activities import (
    PlanRingWavesInput,
    ReadWaveMembersInput,
    RetagVmsInput,
    SetRingAssignmentInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import RingGateInput, RingGateOutput, RingGateSlice

bp = df.Blueprint()

MAX_ISSUES = 25
RETAG_ROUNDS = 4  # per-VM retag failures are retried this many rounds in all ...
RETAG_PAUSE = timedelta(seconds=30)  # ... 30 s, 60 s, 90 s apart
#: VMs per slice instance: its history holds the slice's members and tag writes (about 300 bytes
#: per VM), so 500 keep each instance small whatever the ring's size.
GATE_SLICE = 500


def _code(failure: dict[str, Any]) -> str | None:
    error = failure.get("error")
    return error.get("code") if isinstance(error, dict) else None


@bp.orchestration_trigger(context_name="context", orchestration=names.RING_GATE)  # type: ignore[untyped-decorator]
def ring_gate_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = from_payload(RingGateInput, context.get_input() or {})
    if spec.slice is not None:
        return (yield from gate_slice(context, spec, spec.slice))
    ring, opening = spec.ring, bool(spec.opening)
    # The ring's document (issue 10: not the plan): its open mode, tag and patching.
    ring_spec = dict(spec.ring_spec)
    ring_doc = ring_of(ring_spec, ring)
    mode = ring_doc.open_mode
    write = retries.WRITE if opening else retries.CLOSE
    tag = ring_doc.members.tag.to_dict() if ring_doc.members.tag else {}
    value = (tag.get("value") if opening else tag.get("holdValue")) if mode == "retag" else None
    issues_wanted = opening and ring_doc.patching == "scheduled"
    changed = 0
    if mode == "enableConfiguration":
        result = yield context.call_activity_with_retry(
            names.SET_ASSIGNMENT, write, to_payload(SetRingAssignmentInput(
                ring=ring, present=opening, rollout_id=spec.rollout_id, ring_spec=ring_spec)))
        changed = int(bool((result or {}).get("changed")))

    members: int | None = None
    failed: list[dict[str, Any]] = []
    failed_count = 0
    issues: list[dict[str, Any]] = []
    issue_count = 0
    left: list[dict[str, Any]] = []
    left_count = 0
    retag = mode == "retag" and bool(tag.get("name")) and value is not None
    if mode == "retag" or issues_wanted:
        run_id = members_run_id(context)
        plan = yield context.call_activity_with_retry(
            names.PLAN_RING_WAVES, retries.READ if opening else retries.CLOSE, to_payload(PlanRingWavesInput(
                ring=ring, run_id=run_id, ring_spec=one_wave(ring_spec), slice_size=GATE_SLICE,
                rollout_id=spec.rollout_id)))
        plan = plan or {}
        members = int(plan.get("count") or 0)
        size = max(1, int(plan.get("sliceSize") or GATE_SLICE))
        index = 0
        for wave, n in enumerate(int(n) for n in plan.get("waves") or []):
            for part in range(-(-n // size)):
                if not retag and not issues_wanted:
                    continue
                doc = RingGateInput(ring=ring, ring_spec=ring_spec, opening=opening, rollout_id=spec.rollout_id,
                                    slice=RingGateSlice(run_id=run_id, plan_hash=str(plan.get("hash") or ""),
                                                        wave=wave, slice=part, value=value if retag else None,
                                                        issues=issues_wanted or None))
                answer = yield context.call_sub_orchestrator(names.RING_GATE, to_payload(doc),
                                                             f"{context.instance_id}:s{index}")
                index += 1
                out = from_payload(RingGateOutput, answer or {"mode": mode})
                changed += out.changed
                failed.extend(out.failed[:MAX_ISSUES - len(failed)])
                failed_count += int(out.failed_count or len(out.failed))
                issues.extend((out.schedule_issues or [])[:MAX_ISSUES - len(issues)])
                issue_count += int(out.schedule_issue_count or 0)
                left.extend((out.left_ring or [])[:MAX_ISSUES - len(left)])
                left_count += int(out.left_ring_count or 0)
    if failed_count:
        # Never report a gate as opened or closed while VMs are on the wrong side of it: the
        # rollout's close-down path retries a failed close and names a gate left open.
        first = failed[0].get("error") or {}
        raise RuntimeError(
            f"ring {ring}: retag {tag['name']}={value} failed for {failed_count} VM(s) after "
            f"{RETAG_ROUNDS} rounds, e.g. {failed[0].get('vm')}: "
            f"{first.get('code') if isinstance(first, dict) else first}")
    return to_payload(RingGateOutput(mode=mode, members=members, value=value, changed=changed, failed=[],
                                     schedule_issues=issues if issues_wanted else None,
                                     schedule_issue_count=issue_count if issues_wanted else None,
                                     left_ring=left if retag else None, left_ring_count=left_count if retag else None))


def gate_slice(context: df.DurableOrchestrationContext, spec: RingGateInput,
               part: RingGateSlice) -> Generator[Any, Any, Any]:
    """One slice of the gate: read its VMs from the ledger, retag them in rounds (per-VM failures
    retried after a pause, deferred writes at once), list its schedule issues; answer counts, the
    first :data:`MAX_ISSUES` failures and issues."""
    opening = bool(spec.opening)
    ring_doc = ring_of(dict(spec.ring_spec), spec.ring)
    write = retries.WRITE if opening else retries.CLOSE
    read = yield context.call_activity_with_retry(
        names.READ_WAVE_MEMBERS, retries.READ if opening else retries.CLOSE, to_payload(ReadWaveMembersInput(
            run_id=part.run_id, plan_hash=part.plan_hash, wave=part.wave, slice=part.slice,
            rollout_id=spec.rollout_id, ring=spec.ring)))
    members = list((read or {}).get("vms") or [])
    changed = 0
    failed: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    left_count = 0
    tag = ring_doc.members.tag.name if ring_doc.members.tag else None
    member_rule = ring_doc.members.to_dict()
    if tag and part.value is not None and members:
        pending = [vm["id"] for vm in members]
        round_ = 0
        while round_ < RETAG_ROUNDS:
            result = yield context.call_activity_with_retry(
                names.RETAG, write, to_payload(RetagVmsInput(
                    vm_ids=pending, tag=tag, value=part.value, rollout_id=spec.rollout_id, ring=spec.ring,
                    member_rule=member_rule, opening=opening)))
            # retag_vms reads each VM live, then merge-writes: "written" (the merge is idempotent);
            # "changed" is what older activity versions reported. VMs that left the ring meanwhile
            # are not written and not failed: counted, the first few named, never retried.
            changed += int((result or {}).get("written") or 0) + len((result or {}).get("changed") or [])
            left.extend(list((result or {}).get("leftRing") or [])[:MAX_ISSUES - len(left)])
            left_count += int((result or {}).get("leftRingCount") or 0)
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
    issues = [{"vm": vm.get("name") or vm["id"], "issue": vm["scheduleIssue"]}
              for vm in members if vm.get("scheduleIssue")] if part.issues else []
    return to_payload(RingGateOutput(mode=ring_doc.open_mode, members=len(members), value=part.value,
                                     changed=changed, failed=failed[:MAX_ISSUES], failed_count=len(failed),
                                     schedule_issues=issues[:MAX_ISSUES] if part.issues else None,
                                     schedule_issue_count=len(issues) if part.issues else None,
                                     left_ring=left if part.value is not None else None,
                                     left_ring_count=left_count if part.value is not None else None))
