"""The rollout: Ring 0 patched and verified, then gated promotion ring by ring.

Why one long-lived orchestration per rollout: approvals, soak times and scheduled maintenance runs
span days; Durable Functions keeps that state durable and replay-safe without a database of our
own. The orchestrator only *decides*; every side effect is an activity called by string name, and
every wait is a durable timer or an external event:

* ``ApprovalDecision`` (raised by the approve/reject endpoints) raced against the approval timeout
  (the losing timer is cancelled, otherwise the instance would stay Running until it fires);
* ``MaintenanceEvent`` (raised by the Event Grid trigger) for scheduled rings' pre/post events,
  de-duplicated by (correlationId, kind) and tolerant of a post-event overtaking its pre-event;
* ``Halt`` / ``Resume`` from the HTTP API, raced at every wait point.

Fail closed: a scheduled ring's run is authorised in the ledger only when its gate is open
(approved, previous ring still healthy, not halted) before the decision deadline; otherwise the
rollout cancels it, and the separate guard orchestration (``guard.py``) cancels any run nobody
authorised, even if this rollout is dead or stuck.

Custom status is the rollout state document (``status.py``). History stays bounded: direct
rings, waves, scheduled-run verification and dry runs are sub-orchestrations that return small
summaries.

LIMITATIONS (and what covers them):

* azure-functions-durable 1.7.0 buffers only *one* event per name that arrives while nothing
  waits for it. The trigger raises each recorded (correlationId, kind) once and only for scheduled
  rings, and the rollout keeps one waiter per name, so this needs two distinct events for the
  same rollout inside one busy stretch. If it happens anyway: a lost post-event is replaced by
  collecting results at the window's end plus ``POST_EVENT_GRACE``; a lost pre-event means the
  guard cancels that run (fail closed) and the rollout targets the next one.
* A halt during a direct ring takes effect between waves (installs in flight finish).
* "Previous ring still healthy" re-checks a sample of up to 50 passing VMs spread across zones,
  in bulk (``check_vm_health_batch``, one activity per burst of ``PREVIOUS_RING_BURST`` VMs).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.inbox import EventInbox
from orchestrators.status import (
    COMPLETED,
    DRY_RUN_DONE,
    FAILED,
    HALTED,
    RolloutStatus,
    approve_url,
    bounded,
    manifest_view,
)
from orchestrators.verdicts import (
    build_manifest_dict,
    coverage_refusal,
    decision_deadline,
    gate_for,
    previous_ring_check,
    promotion_target,
)
from patchrings.domain.approval import ApprovalPolicy, ApprovalRequest, check_decision, timeout_decision
from patchrings.domain.events import MaintenanceEvent
from patchrings.domain.plan import Plan, Ring
from patchrings.domain.planner import estimate_ring
from patchrings.domain.quarantine import parse_release, with_exclusions
from patchrings.domain.recurrence import next_occurrence, parse_window
from patchrings.domain.results import expected_install_duration
from patchrings.domain.timeutil import duration_or, format_duration, format_instant, iso, parse_instant
from patchrings.errors import PatchRingsError

bp = df.Blueprint()
log = logging.getLogger("patchrings.orchestrators.rollout")

# How long after a run's window end the rollout collects results if no post-event came.
POST_EVENT_GRACE = timedelta(hours=1)
# How long after a targeted run's start the rollout waits for its pre-event before re-targeting.
PRE_EVENT_GRACE = timedelta(hours=1)
# How far a pre-event's start may be from the computed run start and still be that run.
RUN_TOLERANCE = timedelta(minutes=5)
# How long a halted rollout waits for Resume before it ends as halted.
RESUME_WINDOW = timedelta(days=14)
# cancel_run answers that mean the run will not patch.
CANCELLED = ("Cancelled", "AlreadyCancelled", "NotFound")
# How many scheduled runs a ring may miss (cancelled / no pre-event) before the rollout halts.
MAX_MISSED_RUNS = 3
# Longest single durable timer (below the SDK's 6-day maximum short timer; see Rollout.timer).
MAX_TIMER = timedelta(days=5)
# The previous ring's re-check reads at most this many VMs per check_vm_health_batch activity, one
# burst at a time, BURST_PAUSE apart (ARM's per-subscription read bucket: 250, refilling 25/s).
PREVIOUS_RING_BURST = 200
BURST_PAUSE = timedelta(seconds=10)
# Whole attempts at closing one ring's gate (each with CLOSE retries inside), and the pause between.
CLOSE_ATTEMPTS = 3
CLOSE_PAUSE = timedelta(minutes=5)

Gen = Generator[Any, Any, Any]


class Halted(Exception):
    """Raised inside the rollout's generators when a Halt event wins a race."""

    def __init__(self, by: str | None, reason: str) -> None:
        super().__init__(reason)
        self.by = by
        self.reason = reason


class Stop(Exception):
    """The rollout ends here (gate failed, approval rejected...) with a final state."""

    def __init__(self, state: str, outcome: str) -> None:
        super().__init__(outcome)
        self.state = state
        self.outcome = outcome


class Rollout:
    """The rollout's working state; rebuilt identically on every replay."""

    def __init__(self, context: df.DurableOrchestrationContext, spec: dict[str, Any]) -> None:
        self.ctx = context
        self.spec = spec
        self.rollout_id = context.instance_id
        self.started_at = context.current_utc_datetime
        self.initiator: str | None = spec.get("initiator")
        # the resolved plan: ``plan`` its JSON (``Plan.to_dict()`` as load_plan returned it, what
        # travels to sub-orchestrations and activities), ``resolved`` the same as a ``Plan``
        self._plan: dict[str, Any] = {}
        self.resolved = Plan.from_resolved({"name": "", "rings": []})
        self.status: RolloutStatus | None = None
        self.inbox = EventInbox()
        self.halt_task: Any = None
        self.event_tasks: dict[str, Any] = {}
        self.manifest: dict[str, Any] | None = None
        self.approved: dict[str, str] = {}
        self.opened: list[str] = []
        self.healthy_vms: dict[str, list[dict[str, Any]]] = {}
        # the longest install per OS a direct ring saw: a later direct ring polls once per install
        self.install_seconds: dict[str, Any] = {}
        self.attempts: dict[str, int] = {}
        self.windows: dict[str, dict[str, Any]] = {}
        self.refused_events: list[tuple[str, MaintenanceEvent, str]] = []
        # ring -> VM ids / names of the previous ring an approver of ``ring`` accepted as
        # inconclusive (issue 13.5; from the Approvals row the API recorded, never the raw event)
        self.accepted: dict[str, list[str]] = {}
        # ring -> the configuration's rebootSetting read right after the manifest pin (issue 13.16)
        self.pinned_reboot: dict[str, str] = {}
        # a rollout-halted notification went out for the current halt (cleared by a resume)
        self.halt_notified = False
        # the manifest_diff answer for the later rings (kept whole in the ledger's rollout row)
        self.manifest_diff: dict[str, Any] | None = None
        # the plan's quarantine as read at the start (issue 11): active entries and what Ring 0
        # excludes because of them (``patchrings.domain.quarantine``)
        self.quarantine: dict[str, Any] = {}
        # issue 11's planner estimate for Ring 0 against the next ring's T-40 (None: not estimated)
        self.planner: dict[str, Any] | None = None

    # ------------------------------------------------------------------ plumbing
    @property
    def plan(self) -> dict[str, Any]:
        return self._plan

    @plan.setter
    def plan(self, doc: dict[str, Any]) -> None:
        """Set the plan JSON and its typed form once (no re-validation: it was loaded already)."""
        self._plan = doc
        self.resolved = Plan.from_resolved(doc)

    def ring_of(self, name: str) -> Ring:
        return self.resolved.ring(name)

    @property
    def now(self) -> datetime:
        return self.ctx.current_utc_datetime  # type: ignore[no-any-return]

    @property
    def st(self) -> RolloutStatus:
        assert self.status is not None
        return self.status

    def publish(self) -> None:
        """Publish the status document, bounded far below the 16 KB custom status limit."""
        self.st.doc["updatedAt"] = iso(self.now)
        self.ctx.set_custom_status(bounded(self.st.doc))

    def info(self, text: str, *args: Any) -> None:
        if not self.ctx.is_replaying:
            log.info("rollout %s: " + text, self.rollout_id, *args)

    def _halt(self) -> Any:
        if self.halt_task is None:
            self.halt_task = self.ctx.wait_for_external_event(names.EV_HALT)
        return self.halt_task

    def timer(self, until: datetime) -> Any:
        """A durable timer for ``until``, or for ``MAX_TIMER`` from now if that is sooner.

        Why (issue 14.4): azure-functions-durable 1.7.0 splits a timer longer than its maximum
        short timer (6 days) into pieces and ``cancel()`` does not cancel the pending piece, so an
        instance that finishes while such a timer runs stays Running (and blocks the next rollout)
        until the piece fires. Every wait of the rollout (approval timeout, resume window, waits
        for a monthly run's events) is a loop of timers of at most 5 days that re-checks its
        deadline; a cancelled piece is an ordinary short timer.
        """
        return self.ctx.create_timer(min(until, self.now + MAX_TIMER))

    def event_task(self, name: str) -> Any:
        """The one outstanding wait for ``name`` (reused across waits, never left stale).

        The Python SDK hands an event to the *last* open waiter of that name and buffers only one
        event when nobody waits, so the rollout keeps exactly one waiter per name alive and
        consumes its result at the next wait point.
        """
        task = self.event_tasks.get(name)
        if task is None:
            task = self.ctx.wait_for_external_event(name)
            self.event_tasks[name] = task
        return task

    def consume(self, name: str) -> Any:
        """Take the payload of a completed waiter and forget it (a new one is made on demand)."""
        task = self.event_tasks.pop(name)
        forget_buffered_event(self.ctx, name)
        return task.result

    def check_halt(self) -> None:
        """Raise :class:`Halted` if a Halt event has already arrived."""
        task = self.halt_task
        if task is not None and task.is_completed:
            payload = _decode(task.result)
            self.halt_task = None
            forget_buffered_event(self.ctx, names.EV_HALT)
            raise Halted(payload.get("by"), payload.get("reason") or "halted by request")

    def race(self, *tasks: Any) -> Gen:
        """``task_any`` over ``tasks`` plus the Halt event; raises :class:`Halted` if it wins."""
        self.check_halt()
        halt = self._halt()
        winner = yield self.ctx.task_any([*tasks, halt])
        if winner is halt:
            for task in tasks:
                if hasattr(task, "cancel") and not task.is_completed:
                    task.cancel()
            self.check_halt()
        return winner

    def activity(self, name: str, payload: dict[str, Any], policy: Any = retries.READ) -> Gen:
        """One activity call with the host retrying it under ``policy`` (``orchestrators.retries``)."""
        # The rollout id rides along so every activity's log lines carry it (patchrings.telemetry).
        result = yield self.ctx.call_activity_with_retry(name, policy, {"rolloutId": self.rollout_id, **payload})
        return result

    def recorded(self, kind: str, raw: dict[str, Any]) -> Gen:
        """Does a raised ApprovalDecision / Resume match what the HTTP API recorded as submitted?

        Anyone with the system key can raise events through the Durable webhooks; only an
        event whose id and content match an Approvals row written by the API counts (the
        activity records a refusal row otherwise). An unreadable ledger refuses (fail closed).
        """
        try:
            result = yield from self.activity(
                names.LEDGER_CHECK_DECISION,
                {"rolloutId": self.rollout_id, "kind": kind, "event": _safe(raw), "at": iso(self.now)},
                retries.WRITE,
            )
        except Exception as err:
            result = {"accepted": False, "reason": f"the ledger could not be read: {_first_line(err)}"}
        return result or {"accepted": False, "reason": "no answer"}

    def cancel(self, correlation_id: str) -> Gen:
        """Cancel a scheduled run (``WRITE`` retries); a cancel that cannot land is an answer, not a
        crash: ``{"status": "Failed", "message"}``, which callers report loudly (the guard keeps trying)."""
        try:
            result = yield from self.activity(names.CANCEL_RUN, {"correlationId": correlation_id}, retries.WRITE)
        except Exception as err:
            result = {"status": "Failed", "message": _first_line(err)}
        return result

    def notify(self, kind: str, ring: str | None, severity: str, message: str, **data: Any) -> Gen:
        """Tell people (contract NOTIFY: a CloudEvent on the Event Grid topic, optionally a webhook).

        The id is deterministic (``context.new_uuid()``), so a replay or retry publishes the same
        event and receivers dedupe. No retry and never fatal: the activity does not raise, and if
        it fails anyway the rollout notes it and goes on (it never waits on anyone's inbox).
        """
        payload = {"kind": kind, "id": str(self.ctx.new_uuid()), "rolloutId": self.rollout_id, "ring": ring,
                   "severity": severity, "message": message[:1000], "data": data, "time": iso(self.now)}
        try:
            yield self.ctx.call_activity(names.NOTIFY, payload)
        except Exception as err:
            self.st.note(iso(self.now), f"notification {kind} could not be sent: {_first_line(err)}")
            self.publish()

    def diff_manifest(self, ring: str) -> Gen:
        """What each later ring's machines would install against the manifest (``manifest_diff``,
        once, READ retries): shown to approvers in the status / API; unavailable is a note, never
        a failure."""
        try:
            diff = yield from self.activity(
                names.MANIFEST_DIFF,
                {"rolloutId": self.rollout_id, "plan": self.plan, "manifest": self.manifest, "fromRing": ring,
                 "now": iso(self.now)},
            )
            diff = diff if isinstance(diff, dict) else {}
            if diff.get("error"):
                raise ValueError(str((diff["error"] or {}).get("message") or diff["error"]))
        except Exception as err:
            diff = {"unavailable": True, "reason": f"diff unavailable: {_first_line(err)}"[:300], "rings": []}
            self.st.note(iso(self.now), f"manifest {(self.manifest or {}).get('hash')}: {diff['reason']}")
        self.manifest_diff = diff
        self.st.set_manifest_diff(diff)
        self.publish()

    def ledger_ring(self, ring: str, state: str, **fields: Any) -> Gen:
        yield self.ctx.call_activity_with_retry(
            names.LEDGER_RING_RUN,
            retries.WRITE,
            {
                "rolloutId": self.rollout_id,
                "ring": ring,
                "runId": fields.pop("runId", f"{self.rollout_id}:{ring}"),
                "state": state,
                "at": iso(self.now),
                **fields,
            },
        )

    def ledger_rollout(self, state: str, outcome: str | None = None, policy: Any = retries.WRITE,
                       final: bool = False) -> Gen:
        """The rollout's ledger row. The state document goes in only with the final state (a copy
        written earlier would go stale while the rollout runs; the live one is the custom status)."""
        yield self.ctx.call_activity_with_retry(
            names.LEDGER_ROLLOUT,
            policy,
            {
                "rolloutId": self.rollout_id,
                "state": state,
                "outcome": outcome,
                "initiator": self.initiator,
                "planHash": self.plan.get("hash"),
                "planName": self.plan.get("name"),
                "startedAt": iso(self.started_at),
                "at": iso(self.now),
                "dryRun": bool(self.spec.get("dryRun")),
                "manifestHash": (self.manifest or {}).get("hash"),
                # the full pinned manifest: the guard compares configurations with it (issue 13.16)
                **({"manifest": self.manifest} if self.manifest else {}),
                **({"manifestDiff": self.manifest_diff} if self.manifest_diff else {}),
                **({"quarantine": self.quarantine_summary()} if self.quarantine.get("entries") else {}),
                **({"planner": self.planner} if self.planner else {}),
                **({"status": self.st.doc} if final else {}),
            },
        )

    # ------------------------------------------------------------------ the flow
    def run(self) -> Gen:
        carried = self.spec.get("plan")
        try:
            # The deployed plan file, or the plan carried in the input checked against it exactly as
            # the API checks it: a direct start through the Durable client (system / master key)
            # must not bypass the inline-plan rules (issue 13.9). Not an Azure call, and an invalid
            # or refused plan stays so: no retry.
            plan = yield self.ctx.call_activity(names.LOAD_PLAN, {"plan": carried} if carried else {})
        except Exception as err:  # an invalid or refused plan: end visibly, nothing was touched
            self.status = RolloutStatus.new(rollout_id=self.rollout_id, plan={}, initiator=self.initiator,
                                            started_at=iso(self.started_at), dry_run=False)
            outcome = f"the rollout plan could not be loaded: {_first_line(err)}"
            self.st.finish(FAILED, iso(self.now), outcome)
            self.publish()
            if not self.ctx.is_replaying:
                log.error("rollout %s: %s", self.rollout_id, outcome)
            return {"rolloutId": self.rollout_id, "state": FAILED, "outcome": outcome, "rings": []}
        self.plan = plan
        self.status = RolloutStatus.new(
            rollout_id=self.rollout_id,
            plan=plan,
            initiator=self.initiator,
            started_at=iso(self.started_at),
            dry_run=bool(self.spec.get("dryRun")),
            trigger=self.spec.get("trigger"),
            reason=self.spec.get("reason"),
        )
        self.publish()
        yield from self.ledger_rollout("running")

        if self.spec.get("dryRun"):
            return (yield from self.dry_run())

        current: Ring | None = self.resolved.rings[0] if self.resolved.rings else None
        state, outcome = COMPLETED, "passed"
        # The close-down below runs on every way out (the "finally" path). It is not a Python
        # ``finally``: the SDK closes a suspended generator with GeneratorExit, and a yield in a
        # ``finally`` block would swallow it; every *orchestration* failure arrives as an
        # Exception thrown into the generator, which the last clause catches.
        try:
            yield from self.read_quarantine()
            yield from self.plan_first_ring()
            while current is not None:
                ring = current
                try:
                    yield from self.do_ring(ring)
                    current = self.resolved.next_ring(ring.name)
                except Halted as halt:
                    yield from self.on_halt(ring.name, halt)
                    # Resumed: redo this ring from its gate (approvals already given stay valid).
        except Stop as stop:
            state, outcome = stop.state, stop.outcome
        except Halted as halt:  # halted while handling a halt (e.g. during close-down)
            state, outcome = HALTED, halt.reason
        except Exception as err:  # an activity or sub-orchestration failed after its retries
            state, outcome = FAILED, f"rollout failed: {_first_line(err)}"
            self.st.note(iso(self.now), outcome)
            if not self.ctx.is_replaying:
                log.error("rollout %s failed: %s", self.rollout_id, _first_line(err))

        yield from self.close_down(state, outcome)
        self.info("finished: %s (%s)", self.st.doc["state"], self.st.doc["outcome"])
        return {
            "rolloutId": self.rollout_id,
            "state": self.st.doc["state"],
            "outcome": self.st.doc["outcome"],
            "manifest": self.manifest,
            "rings": [{"name": r["name"], "phase": r["phase"], "gate": r["gate"]} for r in self.st.doc["rings"]],
        }

    def do_ring(self, spec: Ring) -> Gen:
        ring, index = spec.name, spec.index
        self.check_halt()
        if index > 0:
            yield from self.approve(ring)
            yield from self.promote(spec)
        if spec.scheduled:
            gate = yield from self.scheduled_ring(spec)
        else:
            gate = yield from self.direct_ring(index, ring)
        yield from self.after_gate(ring, gate)

    # ------------------------------------------------------------------ direct rings
    def direct_ring(self, index: int, ring: str) -> Gen:
        run_id = f"{self.rollout_id}:{ring}"
        attempt = self.attempts[ring] = self.attempts.get(ring, 0) + 1
        child = f"{self.rollout_id}:{ring}" + (f":{attempt}" if attempt > 1 else "")
        self.st.set_phase(ring, "installing", iso(self.now), runId=run_id, instance=child)
        self.publish()
        yield from self.ledger_ring(ring, "installing", runId=run_id)
        outcome = yield self.ctx.call_sub_orchestrator(
            names.RING_DIRECT,
            {
                "rolloutId": self.rollout_id,
                # Ring 0 never re-installs what a failed gate quarantined (issue 11)
                "plan": self.plan_excluding_quarantine(ring) if index == 0 else self.plan,
                "ring": ring,
                "runId": run_id,
                "startedAt": iso(self.started_at),
                "manifest": self.manifest if index > 0 else None,
                "buildManifest": index == 0,
                "expectedInstallSeconds": dict(self.install_seconds) or None,
            },
            child,
        )
        outcome = outcome or {}
        if outcome.get("halted"):
            # The API raised Halt before flagging it in the ledger, so the event is there: take it.
            yield self._halt()
            self.check_halt()
        self.healthy_vms[ring] = list(outcome.get("healthSample") or [])
        self.install_seconds.update(outcome.get("installSeconds") or {})
        if index == 0:
            self.manifest = outcome.get("manifest") or build_manifest_dict([], [])
            self.st.set_manifest(self.manifest)
            yield from self.diff_manifest(ring)
            # the full manifest (with titles) and its diff in the ledger now: the API shows them
            yield from self.ledger_rollout("running")
        self.st.set_counts(ring, outcome.get("counts") or {})
        return outcome.get("gate") or gate_for(self.plan, ring, [])

    # ------------------------------------------------------------------ scheduled rings
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
        config = yield from self.activity(names.GET_CONFIGURATION, {"configurationId": configuration_id})
        window = (config or {}).get("window") or {}
        self.windows[ring] = window
        target = next_run(window, after) if window else None
        if target is None:
            raise Stop(HALTED, f"ring {ring}: maintenance configuration {configuration_id} has no future run")
        if why:
            target["reason"] = f"{why}; targeting the next run at {target['runStart']}"
            self.st.note(iso(self.now), f"ring {ring}: {target['reason']}")
        self.st.ring(ring)["target"] = target
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
            self.st.doc["events"]["refused"] = self.st.doc["events"].get("refused", 0) + 1
            self.st.note(iso(self.now), f"ring {ring}: refused pre-event {event.run_name} "
                                        f"(start {format_instant(event.start)}): {reason}")
            self.publish()
            yield from self.activity(
                names.LEDGER_EVENT,
                {"configurationId": event.configuration_id, "eventType": "PreMaintenanceEventRefused",
                 "eventId": f"{event.correlation_id}@{format_instant(event.start)}", "rolloutId": self.rollout_id,
                 "ring": ring, "correlationId": event.correlation_id, "startDateTime": format_instant(event.start),
                 "outcome": "refused",
                 "reason": reason, "at": iso(self.now)},
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
            event_task = self.event_task(names.EV_MAINTENANCE)
            if not event_task.is_completed:
                if timer is None:
                    timer = self.timer(until)
                winner = yield from self.race(event_task, timer)
                if winner is timer:
                    if self.now >= until:
                        return None
                    timer = None  # one piece of a long wait elapsed: the next piece
                    continue
            if self.inbox.offer(self.consume(names.EV_MAINTENANCE)) is None:
                self.st.doc["events"]["duplicates"] += 1
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
        if self.halt_task is not None and self.halt_task.is_completed:
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
            self.check_halt()
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
                    {"checks": [{"vm": vm, "full": True} for vm in chunk], "probes": probes,
                     "rolloutId": self.rollout_id, "ring": ring})
                got = list((answer or {}).get("samples") or []) if isinstance(answer, dict) else []
                if len(got) != len(chunk):
                    raise ValueError(f"{len(got)} health samples for {len(chunk)} VMs")
                samples.extend(got)
        except Exception as err:  # unreadable after retries: unknown, so the run is not authorised
            return {"outcome": "error", "reasons": [f"previous ring {ring}: health could not be read: "
                                                    f"{_first_line(err)}"], "notes": [], "removed": [],
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
            {"rolloutId": self.rollout_id, "plan": self.plan, "ring": ring, "correlationId": pre.correlation_id,
             "since": format_instant(pre.start)},
            child,
        )
        summary = summary or {}
        self.healthy_vms[ring] = list(summary.get("healthSample") or [])
        self.st.set_counts(ring, summary.get("counts") or {})
        return summary.get("gate") or gate_for(self.plan, ring, [])

    # ------------------------------------------------------------------ gates and approvals
    def after_gate(self, ring: str, gate: dict[str, Any]) -> Gen:
        self.st.set_gate(ring, gate)
        outcome = gate.get("outcome")
        self.st.set_phase(ring, {"pass": "passed", "fail": "failed"}.get(str(outcome), "inconclusive"), iso(self.now))
        self.publish()
        yield from self.ledger_ring(ring, f"gate-{outcome}", gate=gate, manifestHash=(self.manifest or {}).get("hash"))
        self.info("ring %s gate: %s", ring, outcome)
        if outcome == "pass":
            return
        reasons = [_reason_text(r) for r in (gate.get("reasons") or [])[:10]]
        yield from self.notify(
            "gate-failed" if outcome == "fail" else "gate-inconclusive", ring,
            "error" if outcome == "fail" else "warning",
            f"ring {ring} of rollout {self.rollout_id}: gate {outcome}"
            + (f": {reasons[0]}" if reasons else ""),
            outcome=outcome, reasons=reasons, counts=gate.get("counts"),
            pagePath=f"/api/ui/rollouts/{self.rollout_id}")
        if outcome == "fail":
            yield from self.record_quarantine(ring, reasons)
            raise Stop(HALTED, f"ring {ring} failed its gate")
        # Inconclusive: never passes by itself; a person decides (the next ring's approvers).
        following = self.resolved.next_ring(ring)
        if following is None:
            raise Stop(HALTED, f"ring {ring} gate inconclusive (last ring): needs investigation")
        yield from self.approve(following.name, force=True, why=f"ring {ring} gate inconclusive")

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
        timer = self.timer(pending.deadline)
        while True:
            event_task = self.event_task(names.EV_APPROVAL)
            winner = event_task
            if not event_task.is_completed:
                winner = yield from self.race(event_task, timer)
            if winner is timer and self.now < pending.deadline:
                timer = self.timer(pending.deadline)  # one piece of a long wait elapsed
                continue
            if winner is timer:
                decision = timeout_decision(pending)
                accepted = decision.to_dict()
                break
            raw = _decode(self.consume(names.EV_APPROVAL))
            recorded = yield from self.recorded("approval", raw)
            if not recorded.get("accepted"):
                refused = {**_safe(raw), "accepted": False, "at": iso(self.now),
                           "error": {"code": "DecisionNotSubmitted", "message": recorded.get("reason")}}
                self.st.add_approval(refused)
                self.st.note(iso(self.now), f"ring {ring}: refused an ApprovalDecision event: {recorded.get('reason')}")
                self.publish()
                continue
            try:
                decision = check_decision(policy, pending, raw, self.initiator)
            except PatchRingsError as err:
                refused = {**_safe(raw), "accepted": False, "error": err.to_dict()["error"], "at": iso(self.now)}
                self.st.add_approval(refused)
                self.publish()
                continue
            accept_list = [str(a) for a in recorded.get("acceptInconclusive") or []]
            missing = _not_accepted(need_accept or [], accept_list)
            if decision.approved and missing:
                reason = (f"{len(missing)} VM(s) of the previous ring cannot be observed and were not accepted "
                          f"explicitly (acceptInconclusive): {', '.join(missing[:10])}")
                self.st.add_approval({**_safe(raw), "accepted": False, "at": iso(self.now),
                                      "error": {"code": "AcceptanceRequired", "message": reason}})
                self.st.note(iso(self.now), f"ring {ring}: refused an approval: {reason}")
                self.publish()
                yield from self.activity(
                    names.LEDGER_APPROVAL,
                    {"rolloutId": self.rollout_id, "ring": ring, "manifestHash": manifest_hash,
                     "decisionId": f"{raw.get('decisionId')}:refused", "decision": decision.to_dict(),
                     "outcome": "refused", "reason": reason, "at": iso(self.now)},
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
            {"rolloutId": self.rollout_id, "ring": ring, "manifestHash": manifest_hash,
             "decision": accepted, "outcome": "accepted", "at": iso(self.now),
             **({"acceptInconclusive": accept_list} if accept_list else {})},
            retries.WRITE,
        )
        if not decision.approved:
            self.st.set_phase(ring, "rejected", iso(self.now))
            raise Stop(HALTED, f"ring {ring} not approved: {decision.approver} {decision.verdict}ed"
                       + (f" ({decision.comment})" if decision.comment else ""))
        self.approved[ring] = manifest_hash

    # ------------------------------------------------------------------ promotion and gates
    def promote(self, spec: Ring) -> Gen:
        """Pin the manifest into the ring, open its gate, and say which run that targets."""
        ring = spec.name
        self.st.set_phase(ring, "promoting", iso(self.now))
        self.publish()
        yield from self.check_coverage(ring)
        configuration_id = spec.configuration_id
        scheduled = spec.scheduled
        pinned_at = None
        if scheduled and configuration_id and self.manifest is not None:
            pinned = yield from self.activity(
                names.PIN_MANIFEST, {"configurationId": configuration_id, "manifest": self.manifest}, retries.WRITE
            )
            if (pinned or {}).get("changed", True):
                pinned_at = self.now  # the configuration write has landed by now
        mode = spec.open_mode
        if mode != "none" and ring not in self.opened:
            # Counted as open *before* the write: an open that fails half-way (some VMs retagged)
            # must still be closed by the close-down path.
            self.opened.append(ring)
        if mode != "none" or scheduled:
            opened = yield from self.gate(ring, open_=True)
            self.note_gate(ring, opened)
        self.st.ring(ring)["opened"] = mode != "none"
        if scheduled and configuration_id:
            config = yield from self.activity(names.GET_CONFIGURATION, {"configurationId": configuration_id})
            self.windows[ring] = (config or {}).get("window") or {}
            reboot = _reboot_setting((config or {}).get("installPatches"))
            if reboot:
                self.pinned_reboot[ring] = reboot
            margin = self.resolved.promotion.t40_margin
            # Every write of the promotion (pin, retag / assignment) has landed by now, so the run
            # targeted is the first whose T-40 (minus the margin) is still ahead (issue 14.8).
            target = promotion_target((config or {}).get("window") or {}, self.now, margin)
            skipped = (target or {}).get("skippedRun") or {}
            if pinned_at is not None and skipped.get("t40") and pinned_at > parse_instant(skipped["t40"]):
                # AUM cancels a run whose configuration is edited less than 40 minutes before it.
                target["skippedRunCancelledByEdit"] = True
                target["reason"] = (f"{target.get('reason')}; the manifest pin at {iso(pinned_at)} landed after that "
                                    f"run's T-40 ({skipped['t40']}), so AUM cancels it")
            self.st.set_phase(ring, "promoted", iso(self.now), target=target)
            if target and not target.get("meetsT40", True):
                self.st.note(iso(self.now), f"ring {ring}: {target.get('reason')}")
        else:
            self.st.set_phase(ring, "promoted", iso(self.now))
        self.publish()
        yield from self.ledger_ring(ring, "promoted", manifestHash=(self.manifest or {}).get("hash"),
                                    target=self.st.ring(ring).get("target"))

    def check_coverage(self, ring: str) -> Gen:
        """Halt before opening ``ring`` if it holds an OS / image family Ring 0 did not cover
        (issue 13.7: the manifest was never validated there and would pin it to nothing), unless
        the plan's ``gate.allowUncoveredOs`` says otherwise (``verdicts.coverage_refusal``)."""
        members = yield from self.activity(names.RESOLVE_MEMBERS, {"plan": self.plan, "ring": ring})
        vms = list((members or {}).get("vms") or [])
        refused = coverage_refusal(self.plan, ring, self.manifest, vms)
        if not refused:
            return
        families = sorted({str(r.get("family")) for r in refused})
        covered = list((self.manifest or {}).get("coverage") or [])
        outcome = (f"ring {ring} not opened: {len(refused)} VM(s) of OS / image families Ring 0 did not cover "
                   f"({', '.join(families[:10])}; Ring 0 covered {', '.join(covered[:10]) or 'nothing'}), e.g. "
                   f"{refused[0].get('reason')}; set the ring's gate.allowUncoveredOs to promote anyway")
        self.st.set_phase(ring, "coverage-refused", iso(self.now), uncovered=len(refused))
        self.st.note(iso(self.now), outcome)
        self.publish()
        yield from self.ledger_ring(ring, "coverage-refused", reason=outcome, families=families, covered=covered,
                                    uncovered=refused[:100], manifestHash=(self.manifest or {}).get("hash"))
        raise Stop(HALTED, outcome)

    def gate(self, ring: str, *, open_: bool) -> Gen:
        """Open or close a ring's gate in its own sub-orchestration (``ring_gate``)."""
        count = self.attempts[f"gate:{ring}"] = self.attempts.get(f"gate:{ring}", 0) + 1
        result = yield self.ctx.call_sub_orchestrator(
            names.RING_GATE,
            {"plan": self.plan, "ring": ring, "open": open_, "rolloutId": self.rollout_id},
            f"{self.rollout_id}:{ring}:{'open' if open_ else 'close'}:{count}",
        )
        result = result or {}
        if result.get("failed"):
            self.st.note(iso(self.now), f"ring {ring}: retag to {result.get('value')} failed for "
                                        f"{len(result['failed'])} VM(s)")
        return result

    def note_gate(self, ring: str, opened: dict[str, Any]) -> None:
        """Record the ring's size and the VMs a scheduled run will not patch (patch settings)."""
        entry = self.st.ring(ring)
        entry["members"] = opened.get("members")
        issues = opened.get("scheduleIssues") or []
        entry["scheduleIssues"] = issues
        if issues:
            self.st.note(iso(self.now), f"ring {ring}: {opened.get('scheduleIssueCount')} VM(s) will not follow "
                                        f"the schedule (e.g. {issues[0]['vm']}: {issues[0]['issue']})")

    def close_gates(self) -> Gen:
        """End of cycle (or halt): later rings closed again so the next cycle starts at Ring 0.

        Never raises for a failed close: every ring is tried (``CLOSE`` retries inside the gate
        sub-orchestration, then ``CLOSE_ATTEMPTS`` whole attempts); a ring that stays open is
        named loudly in the status and the ledger, and the method returns the rings left open.
        """
        left_open: list[str] = []
        for ring in list(reversed(self.opened)):
            error = None
            for attempt in range(CLOSE_ATTEMPTS):
                try:
                    yield from self.gate(ring, open_=False)
                    error = None
                    break
                except Exception as err:  # the close failed after its retries
                    error = _first_line(err)
                    if attempt + 1 < CLOSE_ATTEMPTS:
                        yield self.ctx.create_timer(self.now + CLOSE_PAUSE)
            if error is None:
                self.st.ring(ring)["opened"] = False
                self.opened.remove(ring)
                continue
            left_open.append(ring)
            self.st.ring(ring)["opened"] = True
            self.st.note(iso(self.now), f"ring {ring}: GATE COULD NOT BE CLOSED: {error}")
            if not self.ctx.is_replaying:
                log.error("rollout %s: ring %s gate could not be closed: %s", self.rollout_id, ring, error)
            try:
                yield from self.ledger_ring(ring, "close-failed", error=error)
            except Exception:  # the ledger is down too: the status and the log say it
                pass
        self.publish()
        return left_open

    def close_down(self, state: str, outcome: str) -> Gen:
        """The rollout's last step on every path: close open gates, then write the final state."""
        left_open = yield from self.close_gates()
        if left_open:
            outcome = f"{outcome}; GATES LEFT OPEN: {', '.join(left_open)}"
            if state == COMPLETED:
                state = FAILED
        self.st.finish(state, iso(self.now), outcome)
        self.publish()
        if state == HALTED and not self.halt_notified:
            # ended halted without a Halt request (gate failed, approval rejected, runs missed...)
            yield from self.notify("rollout-halted", self.st.doc.get("currentRing"), "error",
                                   f"rollout {self.rollout_id} halted: {outcome}", reason=outcome, state=state,
                                   pagePath=f"/api/ui/rollouts/{self.rollout_id}")
        else:
            yield from self.notify("rollout-completed", None, "info" if state == COMPLETED else "error",
                                   f"rollout {self.rollout_id} ended {state}: {outcome}", outcome=outcome,
                                   state=state, pagePath=f"/api/ui/rollouts/{self.rollout_id}")
        try:
            yield from self.ledger_rollout(state, outcome, policy=retries.CLOSE, final=True)
        except Exception as err:  # the status still says it; nothing else can be done here
            self.st.note(iso(self.now), f"final state could not be written to the ledger: {_first_line(err)}")
            self.publish()
            if not self.ctx.is_replaying:
                log.error("rollout %s: final state %s not in the ledger: %s", self.rollout_id, state, err)

    def on_halt(self, ring: str, halt: Halted) -> Gen:
        """Close later rings, revoke authorisations, then wait for Resume (or end halted)."""
        self.st.halt(iso(self.now), halt.by, halt.reason)
        self.publish()
        yield from self.close_gates()
        yield from self.ledger_rollout("halted", halt.reason)
        yield from self.notify("rollout-halted", ring, "error",
                               f"rollout {self.rollout_id} halted at ring {ring} by {halt.by or 'unknown'}: "
                               f"{halt.reason}", by=halt.by, reason=halt.reason, resumeBy=iso(self.now + RESUME_WINDOW),
                               pagePath=f"/api/ui/rollouts/{self.rollout_id}")
        self.halt_notified = True
        resume = self.event_task(names.EV_RESUME)
        resume_by = self.now + RESUME_WINDOW
        timer = self.timer(resume_by)
        self.st.wait_for("resume", until=iso(resume_by), ring=ring)
        self.st.doc["state"] = HALTED
        self.publish()
        while True:
            resume = self.event_task(names.EV_RESUME)
            winner = resume if resume.is_completed else (yield self.ctx.task_any([resume, timer]))
            if winner is timer and self.now < resume_by:
                timer = self.timer(resume_by)  # one piece of the resume window elapsed
                continue
            if winner is timer:
                raise Stop(HALTED, halt.reason)
            payload = _decode(self.consume(names.EV_RESUME))
            refused = yield from self.check_resume(ring, payload)
            if refused is None:
                break
            self.st.note(iso(self.now), f"refused a Resume by {payload.get('by') or 'unknown'}: {refused}")
            self.publish()
        timer.cancel()
        self.st.resume(iso(self.now), payload.get("by"))
        self.halt_notified = False
        self.publish()
        yield from self.ledger_rollout("running")
        yield from self.revalidate(ring)

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
                {"rolloutId": self.rollout_id, "ring": ring, "kind": "resume", "by": who, "outcome": "refused",
                 "reason": reason, "resumeId": payload.get("resumeId") or payload.get("decisionId"),
                 "at": iso(self.now)},
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
                names.LEDGER_READ_GATE, {"rolloutId": self.rollout_id, "ring": ring, "manifestHash": manifest_hash}
            )
        except Exception as err:
            gate = {"decision": None, "error": _first_line(err)}
        if self.approved.get(ring) != manifest_hash or (gate or {}).get("decision") != "approved":
            self.approved.pop(ring, None)
            why = (gate or {}).get("error") or "no approval of this manifest in the ledger"
            self.st.note(iso(self.now), f"ring {ring}: its approval could not be re-validated after the resume "
                                        f"({why}); a new approval is needed")
            self.publish()

    # ------------------------------------------------------------------ quarantine (issue 11)
    def plan_name(self) -> str:
        return str(self.plan.get("name") or "default")

    def read_quarantine(self, *, release_allowed: bool = True) -> Gen:
        """Before Ring 0: release what the input asks to release, then read what to exclude.

        A dry run reads (``release_allowed=False``: it changes nothing) so that Ring 0's
        would-install lists leave the quarantined patches out, as the real run will.

        Fail closed: a quarantine that cannot be read (after READ retries) fails the rollout
        before anything is installed; Ring 0 must not re-install a patch it may not know is bad.
        The release (``releaseQuarantine``: entry ids) is a person's explicit request: only a
        rollout started by a person (not ``system:...``) may carry one; it is recorded in the
        ledger with who and the platform's time.
        """
        release, refused = parse_release(self.spec.get("releaseQuarantine"))
        by = str(self.initiator or "")
        if release and (not by or by.lower().startswith("system:")):
            refused, release = "releaseQuarantine needs a rollout started by a person", []
        if release and not release_allowed:
            refused, release = "a dry run releases nothing", []
        if refused:
            self.st.note(iso(self.now), f"quarantine release refused: {refused}")
        try:
            answer = yield from self.activity(
                names.LEDGER_READ_QUARANTINE,
                {"planName": self.plan_name(), "release": release, "by": by, "at": iso(self.now),
                 "reason": f"released by rollout {self.rollout_id}"} if release else {"planName": self.plan_name()},
                retries.WRITE if release else retries.READ,
            )
        except Exception as err:
            raise Stop(FAILED, f"the quarantine of plan {self.plan_name()} could not be read "
                               f"({_first_line(err)}); nothing was installed") from err
        answer = answer if isinstance(answer, dict) else {}
        for entry_id in answer.get("released") or []:
            self.st.note(iso(self.now), f"quarantine {entry_id} released by {by}")
        if answer.get("unknown"):
            self.st.note(iso(self.now), f"quarantine release: plan {self.plan_name()} has no entry "
                                        f"{', '.join(str(u) for u in answer['unknown'][:5])}")
        entries = [e for e in answer.get("entries") or [] if isinstance(e, dict)]
        excluded = answer.get("exclusions") if isinstance(answer.get("exclusions"), dict) else {}
        self.quarantine = {"entries": entries, "exclusions": excluded or {}}
        if entries:
            patches = list((excluded or {}).get("kbNumbersToExclude") or []) + list(
                (excluded or {}).get("packageNameMasksToExclude") or [])
            shown = ", ".join((f"KB{p}" if p.isdigit() else p) for p in patches[:10])
            gates = answer.get("activeCount") or len(entries)
            self.st.note(iso(self.now), f"ring {self.resolved.ring_names[0]}: {len(patches)} quarantined "
                                        f"patch(es) excluded ({shown}{', ...' if len(patches) > 10 else ''}) "
                                        f"from {gates} failed gate(s), e.g. {entries[0].get('id')} at "
                                        f"{entries[0].get('at')}; release: releaseQuarantine")
        self.publish()

    def quarantine_summary(self) -> dict[str, Any]:
        """What the ledger's rollout row keeps of the quarantine this rollout honoured."""
        return {"entries": [str(e.get("id")) for e in self.quarantine.get("entries") or []][:50],
                "exclusions": self.quarantine.get("exclusions") or {}}

    def plan_excluding_quarantine(self, ring: str) -> dict[str, Any]:
        """The plan with ``ring``'s install block excluding the quarantined patches (a copy: the
        plan's hash and the plan every other ring reads stay as loaded)."""
        excluded = self.quarantine.get("exclusions") or {}
        if not (excluded.get("kbNumbersToExclude") or excluded.get("packageNameMasksToExclude")):
            return self.plan
        install = with_exclusions(self.ring_of(ring).install, excluded)
        rings = [{**r, "install": install} if r.get("name") == ring else r for r in self.plan.get("rings") or []]
        return {**self.plan, "rings": rings}

    def record_quarantine(self, ring: str, reasons: list[str]) -> Gen:
        """A failed gate: record the patches it blames so the next cycle's Ring 0 excludes them.

        Never fatal (the halt goes on whatever happens here): a record that cannot be written is
        a loud note and an error log line; the people notified of the halt decide."""
        why = f"ring {ring} of rollout {self.rollout_id} failed its gate" + (f": {reasons[0]}" if reasons else "")
        try:
            answer = yield from self.activity(
                names.LEDGER_RECORD_QUARANTINE,
                {"rolloutId": self.rollout_id, "ring": ring, "runId": f"{self.rollout_id}:{ring}"
                 if not self.ring_of(ring).scheduled else None,
                 "planName": self.plan_name(), "planHash": self.plan.get("hash"),
                 "manifestHash": (self.manifest or {}).get("hash"), "manifest": self.manifest,
                 "reason": why, "at": iso(self.now)},
                retries.WRITE,
            )
        except Exception as err:
            self.st.note(iso(self.now), f"ring {ring}: THE BAD PATCHES COULD NOT BE QUARANTINED: {_first_line(err)}")
            self.publish()
            if not self.ctx.is_replaying:
                log.error("rollout %s: quarantine of ring %s not recorded: %s", self.rollout_id, ring, err)
            return
        entry = (answer or {}).get("entry") if isinstance(answer, dict) else None
        if isinstance(entry, dict):
            patches = [f"KB{k}" for k in entry.get("kbs") or []] + list(entry.get("packages") or [])
            self.st.note(iso(self.now), f"ring {ring}: quarantined {', '.join(patches[:10])}"
                                        f"{' ...' if len(patches) > 10 else ''} ({entry.get('source')}): the next "
                                        f"rollout's Ring 0 excludes them until released (entry {entry.get('id')})")
        else:
            self.st.note(iso(self.now), f"ring {ring}: nothing was installed to quarantine")
        self.publish()

    # ------------------------------------------------------------------ planner (issue 11)
    def plan_first_ring(self) -> Gen:
        """Can Ring 0 finish before the next ring's T-40 (less ``promotion.t40Margin``)? The
        domain planner's estimate (``patchrings.domain.planner.estimate_ring``, as the dry run
        computes it), its warnings as notes in the status, the estimate on the ledger row.

        Only when the next ring is scheduled (a direct next ring has no T-40). Advisory: a read
        that fails is a note, never a failure. Ring 0's size comes from ``resolve_ring_members``
        with ``countOnly`` (the VM list is not kept: the rollout's history stays small; Ring 0
        resolves its own members when it starts).
        """
        first = self.resolved.rings[0] if self.resolved.rings else None
        following = self.resolved.next_ring(first.name) if first else None
        if first is None or following is None:
            return
        ring, next_ring = first.name, following.name
        configuration = following.configuration_id
        if not first.direct or not following.scheduled or not configuration:
            return
        try:
            members = yield from self.activity(names.RESOLVE_MEMBERS,
                                               {"plan": self.plan, "ring": ring, "countOnly": True})
            members = members if isinstance(members, dict) else {}
            count = int(members["count"]) if isinstance(members.get("count"), int) else len(members.get("vms") or [])
            config = yield from self.activity(names.GET_CONFIGURATION, {"configurationId": configuration})
            window = (config or {}).get("window") or {}
        except Exception as err:
            self.st.note(iso(self.now), f"planner: whether {ring} finishes before {next_ring}'s T-40 is unknown "
                                        f"({_first_line(err)[:200]})")
            self.publish()
            return
        run = next_run(window, self.now) if window else None
        self.planner = ring_estimate(self.resolved, ring, next_ring, count=count, start=self.now,
                                     next_run_start=parse_instant(run["runStart"]) if run else None,
                                     margin=self.resolved.promotion.t40_margin)
        for warning in planner_notes(self.planner):
            self.st.note(iso(self.now), f"planner: {warning}")
        self.publish()

    # ------------------------------------------------------------------ dry run
    def dry_run(self) -> Gen:
        rings = self.resolved.ring_names
        plan = self.plan
        if rings:
            try:
                yield from self.read_quarantine(release_allowed=False)
                plan = self.plan_excluding_quarantine(rings[0])
            except Stop as stop:  # a dry run reports, it never fails on this read
                self.st.note(iso(self.now), f"{stop.outcome}: Ring 0 is listed without its exclusions")
                self.publish()
        outcomes = yield self.ctx.task_all(
            [
                self.ctx.call_sub_orchestrator(
                    names.DRY_RUN_RING,
                    {"rolloutId": self.rollout_id, "plan": plan, "ring": ring},
                    f"{self.rollout_id}:{ring}:dry-run",
                )
                for ring in rings
            ]
        )
        for ring, outcome in zip(rings, outcomes, strict=True):
            self.st.set_phase(ring, "assessed", iso(self.now), dryRun=(outcome or {}).get("summary"))
        self.st.finish(DRY_RUN_DONE, iso(self.now), "dry run: nothing installed")
        self.publish()
        yield from self.ledger_rollout(DRY_RUN_DONE, "dry run", final=True)
        return {"rolloutId": self.rollout_id, "state": DRY_RUN_DONE, "rings": outcomes}


@bp.orchestration_trigger(context_name="context", orchestration=names.ROLLOUT)
def rollout_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = context.get_input() or {}
    if isinstance(spec, str):
        spec = _decode(spec)
    result = yield from Rollout(context, spec).run()
    return result


# ---------------------------------------------------------------------- helpers
def next_run(window: dict[str, Any], after: datetime) -> dict[str, Any] | None:
    """The first run of a configuration's ``maintenanceWindow`` starting strictly after ``after``
    (every recurrence AUM supports, ``patchrings.domain.recurrence``); None if it expired or the
    window cannot be read."""
    try:
        occurrence = next_occurrence(parse_window(dict(window)), after)
    except (ValueError, KeyError, TypeError):
        return None
    if occurrence is None:
        return None
    return {"runStart": iso(occurrence.start), "runEnd": iso(occurrence.end), "runName": occurrence.name,
            "t40": iso(occurrence.start - timedelta(minutes=40)), "meetsT40": True}


def ring_estimate(plan: Plan, ring: str, next_ring: str, *, count: int, start: datetime,
                  next_run_start: datetime | None, margin: timedelta) -> dict[str, Any]:
    """The planner's estimate for a direct ``ring`` of ``count`` VMs from ``start`` against
    ``next_ring``'s run at ``next_run_start`` (the same inputs as the dry run's)."""
    spec = plan.ring(ring)
    return estimate_ring(
        ring, count,
        rate=spec.rate,
        health=spec.health,
        install_expected=expected_install_duration(duration_or(spec.install.get("maximumDuration"),
                                                                timedelta(hours=2))),
        start=start, next_ring=next_ring, next_run_start=next_run_start, t40_margin=margin,
        approval_needed=plan.ring(next_ring).approval.required,
    ).to_dict()


def planner_notes(estimate: dict[str, Any]) -> list[str]:
    """The estimate's warnings as short status notes (a note is cut at a few hundred characters,
    so a missed T-40 is restated with the fix first; the full text is on the ledger row)."""
    out = []
    for text in estimate.get("warnings") or []:
        warning = str(text)
        if estimate.get("fits") is False and " cannot finish before " in warning:
            fit = estimate.get("minConcurrencyToFit")
            fix = f"maxConcurrency >= {fit} would fit" if fit else "no concurrency fits: start earlier"
            warning = (f"{estimate.get('ring')} misses {estimate.get('nextRing')}'s run at "
                       f"{estimate.get('nextRunStart')}: {fix}; it needs {estimate.get('needs')} "
                       f"({len(estimate.get('waves') or [])} waves), finishing {estimate.get('finishesAt')}, "
                       f"after T-40 less the margin ({estimate.get('landBy')})")
        out.append(warning)
    return out


def _reason_text(reason: Any) -> str:
    """A gate reason (``{vm, reason}``) as one short line with the VM's short name."""
    if isinstance(reason, dict):
        vm = str(reason.get("vm") or "").rstrip("/").rsplit("/", 1)[-1]
        text = str(reason.get("reason") or "")
        return (f"{vm}: {text}" if vm else text)[:300]
    return str(reason)[:300]


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def forget_buffered_event(context: Any, name: str) -> None:
    """Drop the SDK's buffered copy of an external event once a waiter has consumed it.

    Why: azure-functions-durable 1.7.0 buffers an event that arrives while nobody waits for its
    name in ``context.deferred_tasks[name]`` and hands it to the next waiter, but never removes
    it, so *every* later waiter of that name would immediately receive the same stale event
    again (and a loop skipping duplicates would spin forever). The rollout consumes each waiter
    right after it completes, so at that point the buffered entry is always the event just
    consumed (or an older one); removing it is replay-safe because replay repeats it exactly.
    """
    deferred = getattr(context, "deferred_tasks", None)
    if isinstance(deferred, dict):
        deferred.pop(name, None)


def _decode(value: Any) -> dict[str, Any]:
    from orchestrators.inbox import decode_payload

    return decode_payload(value) or {}


def _safe(raw: dict[str, Any]) -> dict[str, Any]:
    keep = ("approver", "ring", "manifestHash", "verdict", "comment", "decisionId", "resumeId", "by", "decidedAt")
    return {k: raw.get(k) for k in keep if k in raw}


def _reboot_setting(install_patches: Any) -> str | None:
    """``installPatches.rebootSetting`` of a configuration (keys compared case-insensitively)."""
    if not isinstance(install_patches, dict):
        return None
    for key, value in install_patches.items():
        if str(key).lower() == "rebootsetting" and value:
            return str(value)
    return None


def _previous_note(previous: str | None, check: dict[str, Any]) -> dict[str, Any]:
    """The previous ring's health check, as recorded on the run's ledger row (issue 13.5)."""
    if not previous or not check or not (check.get("notes") or check.get("removed") or check.get("inconclusive")):
        return {}
    return {"previousRing": {"ring": previous, "outcome": check.get("outcome"),
                             "removed": list(check.get("removed") or [])[:50],
                             "inconclusive": list(check.get("inconclusive") or [])[:50],
                             "acceptedInconclusive": list(check.get("accepted") or [])[:50],
                             "notes": [str(n)[:300] for n in (check.get("notes") or [])[:20]]}}


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
