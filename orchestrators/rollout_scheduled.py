"""A scheduled ring's runs: wait for the targeted run's pre-event, gate it (authorise or cancel,
fail closed), wait for its post-event and collect and verify its results; re-target after a miss."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrators import names, retries
from orchestrators.rollout_base import (
    BURST_PAUSE,
    CANCELLED,
    DEFERRED_PAUSE,
    DEFERRED_REREADS,
    MAX_MISSED_RUNS,
    POST_EVENT_GRACE,
    PRE_EVENT_GRACE,
    PREVIOUS_RING_BURST,
    RUN_TOLERANCE,
    Gen,
    Stop,
    first_line,
    next_run,
)
from orchestrators.rollout_gates import GateSteps
from orchestrators.status import (
    HALTED,
)
from orchestrators.verdicts import (
    decision_deadline,
    gate_for,
    previous_ring_check,
)
from orchestrators.waits import Halted
from patchrings.boundary.activities import (
    CheckHealthBatchInput,
    GetConfigurationInput,
    HealthCheck,
    LedgerRecordEventInput,
)
from patchrings.boundary.codec import to_payload
from patchrings.boundary.rings import RunResultsInput
from patchrings.domain.events import MaintenanceEvent
from patchrings.domain.plan import Ring
from patchrings.domain.timeutil import format_instant, iso, parse_instant


class ScheduledSteps(GateSteps):
    def scheduled_ring(self, spec: Ring) -> Gen:
        """Wait for the ring's targeted run, gate it, collect it; after any miss, re-target.

        The target is always a run computed from the configuration's schedule (issue 13.6): after
        a run is missed (no pre-event), cancelled by its gate or cancelled by AUM, the rollout
        re-reads the configuration and targets its next occurrence (any recurrence AUM supports,
        ``patchrings.domain.recurrence``); it never waits blind. Only the pre-event of exactly
        that run is accepted (issue 13.14); others are refused and recorded.
        """
        ring = spec.name
        configuration_id = spec.configuration_id or ""
        target = dict(self.st.ring(ring).get("target") or {})
        missed = 0
        while True:
            if not target.get("runStart"):
                target = yield from self.retarget(ring, configuration_id, self.now, None)
            run_start = parse_instant(target["runStart"])
            window = self.windows.get(ring)
            following = next_run(window, run_start) if window else None
            keep = parse_instant(following["runStart"]) if following else None
            wait_until = max(run_start + PRE_EVENT_GRACE, self.now)
            self.st.set_phase(ring, "waiting-for-run", iso(self.now), until=iso(wait_until))
            self.st.wait_for(
                "pre-maintenance event",
                until=iso(wait_until),
                ring=ring,
                configurationId=configuration_id,
                runStart=target["runStart"],
            )
            self.publish()
            pre = yield from self.next_event(
                lambda start=run_start, keep=keep: self.take_pre(ring, configuration_id, start, keep), wait_until
            )
            self.st.stop_waiting()
            after = max(run_start, self.now - PRE_EVENT_GRACE)
            if pre is None:
                missed += 1
                why = f"no pre-maintenance event for the run at {target['runStart']} by {iso(wait_until)}"
                self.st.note(iso(self.now), f"ring {ring}: {why}")
                if missed >= MAX_MISSED_RUNS:
                    raise Stop(HALTED, f"ring {ring}: {missed} scheduled runs missed or cancelled (last: {why})")
                target = yield from self.retarget(ring, configuration_id, after, why)
                continue
            run_ok = yield from self.gate_run(ring, pre)
            if not run_ok:
                # gate_run may have waited for a person (issue 13.5): target a run still ahead
                after = max(after, self.now - PRE_EVENT_GRACE)
                missed += 1
                if missed >= MAX_MISSED_RUNS:
                    raise Stop(HALTED, f"ring {ring}: {missed} scheduled runs missed or cancelled")
                target = yield from self.retarget(ring, configuration_id, after,
                                                  f"the run at {target['runStart']} was not authorised")
                continue
            gate = yield from self.collect_run(ring, pre, target.get("runEnd"))
            if gate is not None:
                return gate
            target = yield from self.retarget(ring, configuration_id, after,
                                              f"the run at {target['runStart']} was cancelled")

    def retarget(self, ring: str, configuration_id: str, after: datetime, why: str | None) -> Gen:
        """The ring's next run after ``after``, computed from its configuration as it is now."""
        config = yield from self.activity(
            names.GET_CONFIGURATION,
            GetConfigurationInput(configuration_id=configuration_id, rollout_id=self.rollout_id))
        window = (config or {}).get("window") or {}
        self.windows[ring] = window
        target = next_run(window, after) if window else None
        if target is None:
            raise Stop(HALTED, f"ring {ring}: maintenance configuration {configuration_id} has no future run")
        if why:
            target["reason"] = f"{why}; targeting the next run at {target['runStart']}"
            self.st.note(iso(self.now), f"ring {ring}: {target['reason']}")
        self.st.set_target(ring, target)
        self.publish()
        yield from self.ledger_ring(ring, "retargeted", target=target)
        return target

    def take_pre(self, ring: str, configuration_id: str, start: datetime, keep: datetime | None) -> Any:
        """The targeted run's pre-event from the inbox; refused ones are queued for the ledger."""
        match, refused = self.inbox.take_pre_for(configuration_id, start, tolerance=RUN_TOLERANCE, keep_start=keep)
        for event, reason in refused:
            self.refused_events.append((ring, event, reason))
        return match

    def flush_refused(self) -> Gen:
        """Record refused pre-events: a note and a count in the status, a row in the ledger."""
        while self.refused_events:
            ring, event, reason = self.refused_events.pop(0)
            self.st.count_event("refused")
            self.st.note(iso(self.now), f"ring {ring}: refused pre-event {event.run_name} "
                                        f"(start {format_instant(event.start)}): {reason}")
            self.publish()
            yield from self.activity(
                names.LEDGER_EVENT,
                LedgerRecordEventInput(
                    configuration_id=event.configuration_id, event_type="PreMaintenanceEventRefused",
                    event_id=f"{event.correlation_id}@{format_instant(event.start)}",
                    columns={"rolloutId": self.rollout_id, "ring": ring, "correlationId": event.correlation_id,
                             "startDateTime": format_instant(event.start), "outcome": "refused", "reason": reason,
                             "at": iso(self.now)}),
                retries.WRITE,
            )

    def next_event(self, take: Any, until: datetime) -> Gen:
        """Wait for the first inbox event ``take()`` returns, until ``until`` (None on timeout)."""
        found = take()
        yield from self.flush_refused()
        if found is not None:
            return found
        timer = None
        while True:
            event_task = self.waits.event(names.EV_MAINTENANCE)
            if not event_task.is_completed:
                if timer is None:
                    timer = self.waits.timer(until)
                winner = yield from self.waits.race(event_task, timer)
                if winner is timer:
                    if self.now >= until:
                        return None
                    timer = None  # one piece of a long wait elapsed: the next piece
                    continue
            if self.inbox.offer(self.waits.consume(names.EV_MAINTENANCE)) is None:
                self.st.count_event("duplicates")
            found = take()
            yield from self.flush_refused()
            if found is not None:
                if timer is not None:
                    timer.cancel()
                return found

    def gate_run(self, ring: str, pre: MaintenanceEvent) -> Gen:
        """Decide a scheduled run at its pre-event: authorise it or cancel it (fail closed)."""
        margin = self.resolved.promotion.cancel_margin
        deadline = decision_deadline(pre, margin)
        run = {"correlationId": pre.correlation_id, "start": format_instant(pre.start),
               "decisionDeadline": iso(deadline)}
        self.st.add_run(ring, run)
        self.st.set_phase(ring, "gating-run", iso(self.now), until=iso(deadline))
        self.publish()
        reasons: list[str] = []
        if self.approved.get(ring) is None and self.ring_of(ring).approval.required:
            reasons.append("ring is not approved")
        if self.waits.halt_arrived():
            reasons.append("rollout is halted")
        before = self.resolved.previous_ring(ring)
        previous = before.name if before else None
        check: dict[str, Any] = {}
        if previous and not reasons:
            check = yield from self.previous_ring_health(previous, ring)
            reasons.extend(check.get("reasons") or [])
        sample_note = _previous_note(previous, check)
        if self.now >= deadline:
            reasons.append(f"decision deadline {iso(deadline)} passed before the gate was evaluated")

        if reasons:
            result = yield from self.cancel(pre.correlation_id)
            cancelled = str((result or {}).get("status")) in CANCELLED
            decision = "cancelled" if cancelled else "cancel-failed"
            self.st.update_run(ring, pre.correlation_id, decision=decision, reasons=reasons, cancel=result)
            if cancelled:
                self.st.note(iso(self.now), f"ring {ring}: run {pre.correlation_id} cancelled: {'; '.join(reasons)}")
            else:
                # AUM proceeds unless cancelled: say loudly that this run may patch ungated.
                self.st.note(iso(self.now), f"ring {ring}: COULD NOT CANCEL run {pre.correlation_id} "
                                            f"({(result or {}).get('status')}: {(result or {}).get('message')}); "
                                            f"it was not authorised: {'; '.join(reasons)}")
            self.publish()
            yield from self.ledger_ring(
                ring, decision, runId=pre.correlation_id, authorised=False, reasons=reasons, cancel=result,
                **sample_note,
            )
            self.waits.check_halt()
            if check.get("outcome") == "inconclusive" and previous:
                # Unobservable VMs in the previous ring: a person decides, and must name them.
                unsure = [vm for vm in self.healthy_vms.get(previous) or []
                          if vm["id"] in set(check.get("inconclusive") or [])]
                yield from self.approve(ring, force=True, need_accept=unsure,
                                        why=f"previous ring {previous}: {len(unsure)} VM(s) of its health sample "
                                            "cannot be observed; approve with acceptInconclusive naming them")
            return False
        yield from self.ledger_ring(
            ring,
            "authorised",
            runId=pre.correlation_id,
            authorised=True,
            configurationId=pre.configuration_id,
            manifestHash=(self.manifest or {}).get("hash"),
            decisionDeadline=iso(deadline),
            **({"rebootSetting": self.pinned_reboot[ring]} if self.pinned_reboot.get(ring) else {}),
            **sample_note,
        )
        self.st.update_run(ring, pre.correlation_id, decision="authorised")
        self.st.set_phase(ring, "run-authorised", iso(self.now))
        self.publish()
        return True

    def previous_ring_health(self, ring: str, gated: str) -> Gen:
        """One health sample of the previous ring's passing VMs (``verdicts.previous_ring_check``).

        Issue 13.5: a deleted VM (404) leaves the sample for good, with a note in the status (and,
        through the caller, the ledger row of the run); an unobservable one (unreadable,
        deallocated, agent not ready) makes the check inconclusive unless an approver of ``gated``
        accepted it explicitly (``acceptInconclusive``); a bad workload signal is unhealthy.
        Returns ``previous_ring_check``'s dict plus ``accepted`` (the accepted VMs it used).
        """
        vms = self.healthy_vms.get(ring) or []
        if not vms:
            return {"outcome": "healthy", "reasons": [], "notes": [], "removed": [], "inconclusive": []}
        policy = self.ring_of(ring).health.to_dict()
        probes = policy.get("probes") or []
        samples: list[Any] = []
        try:
            # Bulk reads (issue 11): one check_vm_health_batch per burst of at most
            # PREVIOUS_RING_BURST VMs (full samples: the agent and Application Health count here),
            # bursts one after the other, BURST_PAUSE apart, so ARM's read bucket never empties.
            for first in range(0, len(vms), PREVIOUS_RING_BURST):
                if first:
                    yield self.ctx.create_timer(self.now + BURST_PAUSE)
                chunk = vms[first:first + PREVIOUS_RING_BURST]
                answer = yield self.ctx.call_activity_with_retry(
                    names.CHECK_HEALTH_BATCH, retries.READ,
                    to_payload(CheckHealthBatchInput(
                        checks=[HealthCheck(vm=vm, full=True) for vm in chunk], probes=probes,
                        rollout_id=self.rollout_id, ring=ring)))
                got = list((answer or {}).get("samples") or []) if isinstance(answer, dict) else []
                if len(got) != len(chunk):
                    raise ValueError(f"{len(got)} health samples for {len(chunk)} VMs")
                # A deferred sample is a read the paced batch never made (issue 11): ask again for
                # those VMs after a pause, a few times; one still deferred stays unreadable, so the
                # check is inconclusive, never healthy.
                for _ in range(DEFERRED_REREADS):
                    again = [i for i, sample in enumerate(got) if isinstance(sample, dict) and sample.get("deferred")]
                    if not again:
                        break
                    yield self.ctx.create_timer(self.now + DEFERRED_PAUSE)
                    answer = yield self.ctx.call_activity_with_retry(
                        names.CHECK_HEALTH_BATCH, retries.READ,
                        to_payload(CheckHealthBatchInput(
                            checks=[HealthCheck(vm=chunk[i], full=True) for i in again], probes=probes,
                            rollout_id=self.rollout_id, ring=ring)))
                    more = list((answer or {}).get("samples") or []) if isinstance(answer, dict) else []
                    if len(more) != len(again):
                        raise ValueError(f"{len(more)} health samples for {len(again)} VMs")
                    for i, sample in zip(again, more, strict=True):
                        got[i] = sample
                samples.extend(got)
        except Exception as err:  # unreadable after retries: unknown, so the run is not authorised
            return {"outcome": "error", "reasons": [f"previous ring {ring}: health could not be read: "
                                                    f"{first_line(err)}"], "notes": [], "removed": [],
                    "inconclusive": []}
        wanted = {str(a).lower() for a in self.accepted.get(gated) or []}
        accepted = [vm["id"] for vm in vms if vm["id"].lower() in wanted or str(vm.get("name") or "").lower() in wanted]
        check = previous_ring_check(policy, ring, vms, list(samples), accepted=accepted)
        removed = {str(v).lower() for v in check.get("removed") or []}
        if removed and len(removed) < len(vms):
            self.healthy_vms[ring] = [vm for vm in vms if vm["id"].lower() not in removed]
        for text in check.get("notes") or []:
            self.st.note(iso(self.now), text)
        if check.get("notes"):
            self.publish()
        used = [a for a in accepted if a in set(check.get("inconclusive") or [])]
        return {**check, "accepted": used}

    def collect_run(self, ring: str, pre: MaintenanceEvent, run_end: str | None = None) -> Gen:
        """After an authorised run: wait for its post-event, collect per-VM results, verify.

        The window's end is the one computed from the configuration (``run_end``), not what the
        event claims.
        """
        end = parse_instant(run_end) if run_end else pre.end or self.now + timedelta(hours=4)
        until = end + POST_EVENT_GRACE
        self.st.set_phase(ring, "run-authorised", iso(self.now), until=iso(until))
        self.st.wait_for("post-maintenance event", until=iso(until), ring=ring, correlationId=pre.correlation_id)
        self.publish()
        try:
            post = yield from self.next_event(lambda: self.inbox.take_post(pre.correlation_id), until)
        except Halted:
            # Halt before the run finished: revoke and try to cancel (may be too late once started).
            result = yield from self.cancel(pre.correlation_id)
            self.st.update_run(ring, pre.correlation_id, decision="revoked", cancel=result)
            if str((result or {}).get("status")) not in CANCELLED:
                self.st.note(iso(self.now), f"ring {ring}: COULD NOT CANCEL revoked run {pre.correlation_id} "
                                            f"({(result or {}).get('status')}: {(result or {}).get('message')})")
            yield from self.ledger_ring(ring, "revoked", runId=pre.correlation_id, authorised=False, cancel=result)
            raise
        self.st.stop_waiting()
        status = (post.status if post else None) or "Unknown"
        self.st.update_run(ring, pre.correlation_id, postStatus=status, postEvent=post is not None)
        if status.lower() in ("cancelled", "canceled"):
            self.st.note(iso(self.now), f"ring {ring}: run {pre.correlation_id} was cancelled")
            self.publish()
            return None
        child = f"{self.rollout_id}:{ring}:run:{len(self.st.ring(ring)['runs'])}"
        self.st.set_phase(ring, "collecting-and-verifying", iso(self.now), instance=child)
        self.publish()
        summary = yield self.ctx.call_sub_orchestrator(
            names.RUN_RESULTS,
            to_payload(RunResultsInput(ring=ring, correlation_id=pre.correlation_id, rollout_id=self.rollout_id,
                                       ring_spec=self.ring_spec(ring), since=format_instant(pre.start),
                                       gate_left=self.gate_left.get(ring, ([], 0))[0] or None,
                                       gate_left_count=self.gate_left.get(ring, ([], 0))[1] or None)),
            child,
        )
        summary = summary or {}
        self.healthy_vms[ring] = list(summary.get("healthSample") or [])
        self.st.set_counts(ring, summary.get("counts") or {})
        return summary.get("gate") or gate_for(self.ring_spec(ring), ring, [])


def _previous_note(previous: str | None, check: dict[str, Any]) -> dict[str, Any]:
    """The previous ring's health check, as recorded on the run's ledger row (issue 13.5)."""
    if not previous or not check or not (check.get("notes") or check.get("removed") or check.get("inconclusive")):
        return {}
    return {"previousRing": {"ring": previous, "outcome": check.get("outcome"),
                             "removed": list(check.get("removed") or [])[:50],
                             "inconclusive": list(check.get("inconclusive") or [])[:50],
                             "acceptedInconclusive": list(check.get("accepted") or [])[:50],
                             "notes": [str(n)[:300] for n in (check.get("notes") or [])[:20]]}}

