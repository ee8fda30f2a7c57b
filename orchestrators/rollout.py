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
  waits for it (the workarounds are in ``orchestrators/waits.py``). The trigger raises each
  recorded (correlationId, kind) once and only for scheduled rings, and the rollout keeps one
  waiter per name, so this needs two distinct events for the same rollout inside one busy
  stretch. If it happens anyway: a lost post-event is replaced by
  collecting results at the window's end plus ``POST_EVENT_GRACE``; a lost pre-event means the
  guard cancels that run (fail closed) and the rollout targets the next one.
* A halt during a direct ring takes effect between waves (installs in flight finish).
* "Previous ring still healthy" re-checks a sample of up to 50 passing VMs spread across zones,
  in bulk (``check_vm_health_batch``, one activity per burst of ``PREVIOUS_RING_BURST`` VMs).
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.rollout_base import (
    BURST_PAUSE,
    CANCELLED,
    POST_EVENT_GRACE,
    PREVIOUS_RING_BURST,
    RESUME_WINDOW,
    Gen,
    Stop,
    decode,
    first_line,
    log,
    next_run,
)
from orchestrators.rollout_planner import planner_notes, ring_estimate
from orchestrators.rollout_scheduled import ScheduledSteps
from orchestrators.status import (
    COMPLETED,
    DRY_RUN_DONE,
    FAILED,
    HALTED,
    RolloutStatus,
)
from orchestrators.verdicts import (
    build_manifest_dict,
    gate_for,
)
from orchestrators.waits import MAX_TIMER, Halted, forget_buffered_event
from patchrings.boundary.activities import LoadPlanInput, ManifestDiffInput
from patchrings.boundary.codec import to_payload
from patchrings.boundary.rings import DryRunRingInput, RingDirectInput
from patchrings.domain.arm_ids import last_segment
from patchrings.domain.plan import Ring
from patchrings.domain.timeutil import iso

__all__ = [
    "BURST_PAUSE",
    "CANCELLED",
    "MAX_TIMER",
    "POST_EVENT_GRACE",
    "PREVIOUS_RING_BURST",
    "Halted",
    "Rollout",
    "Stop",
    "bp",
    "forget_buffered_event",
    "next_run",
    "planner_notes",
    "ring_estimate",
    "rollout_orchestrator",
]

bp = df.Blueprint()


class Rollout(ScheduledSteps):
    """The rollout: the flow over its rings (the steps are in the ``rollout_*`` modules)."""

    def run(self) -> Gen:
        carried = self.input.plan
        try:
            # The deployed plan file, or the plan carried in the input checked against it exactly as
            # the API checks it: a direct start through the Durable client (system / master key)
            # must not bypass the inline-plan rules (issue 13.9). Not an Azure call, and an invalid
            # or refused plan stays so: no retry.
            plan = yield self.ctx.call_activity(names.LOAD_PLAN, to_payload(LoadPlanInput(plan=carried or None)))
        except Exception as err:  # an invalid or refused plan: end visibly, nothing was touched
            self.status = RolloutStatus.new(rollout_id=self.rollout_id, plan={}, initiator=self.initiator,
                                            started_at=iso(self.started_at), dry_run=False)
            outcome = f"the rollout plan could not be loaded: {first_line(err)}"
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
            dry_run=bool(self.input.dry_run),
            trigger=self.input.trigger,
            reason=self.input.reason,
        )
        self.publish()
        yield from self.ledger_rollout("running")

        if self.input.dry_run:
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
            state, outcome = FAILED, f"rollout failed: {first_line(err)}"
            self.st.note(iso(self.now), outcome)
            if not self.ctx.is_replaying:
                log.error("rollout %s failed: %s", self.rollout_id, first_line(err))

        yield from self.close_down(state, outcome)
        self.info("finished: %s (%s)", self.st.state, self.st.outcome)
        return {
            "rolloutId": self.rollout_id,
            "state": self.st.state,
            "outcome": self.st.outcome,
            "manifest": self.manifest,
            "rings": [{"name": r["name"], "phase": r["phase"], "gate": r["gate"]} for r in self.st.doc["rings"]],
        }

    def do_ring(self, spec: Ring) -> Gen:
        ring, index = spec.name, spec.index
        self.waits.check_halt()
        if index > 0:
            yield from self.approve(ring)
            yield from self.promote(spec)
        if spec.scheduled:
            gate = yield from self.scheduled_ring(spec)
        else:
            gate = yield from self.direct_ring(index, ring)
        yield from self.after_gate(ring, gate)

    def direct_ring(self, index: int, ring: str) -> Gen:
        run_id = f"{self.rollout_id}:{ring}"
        attempt = self.attempts[ring] = self.attempts.get(ring, 0) + 1
        child = f"{self.rollout_id}:{ring}" + (f":{attempt}" if attempt > 1 else "")
        self.st.set_phase(ring, "installing", iso(self.now), runId=run_id, instance=child)
        self.publish()
        yield from self.ledger_ring(ring, "installing", runId=run_id)
        outcome = yield self.ctx.call_sub_orchestrator(
            names.RING_DIRECT,
            to_payload(RingDirectInput(
                ring=ring,
                rollout_id=self.rollout_id,
                # Ring 0 never re-installs what a failed gate quarantined (issue 11): its ring
                # document (ringSpec, all ring_direct reads) carries the exclusions
                ring_spec=self.ring_spec_excluding_quarantine(ring) if index == 0 else self.ring_spec(ring),
                run_id=run_id,
                started_at=iso(self.started_at),
                manifest=self.manifest if index > 0 else None,
                build_manifest=index == 0,
                expected_install_seconds=dict(self.install_seconds) or None,
            )),
            child,
        )
        outcome = outcome or {}
        if outcome.get("halted"):
            # The API raised Halt before flagging it in the ledger, so the event is there: take it.
            yield self.waits.halt()
            self.waits.check_halt()
        self.healthy_vms[ring] = list(outcome.get("healthSample") or [])
        self.install_seconds.update(outcome.get("installSeconds") or {})
        if index == 0:
            self.manifest = outcome.get("manifest") or build_manifest_dict([], [])
            self.st.set_manifest(self.manifest)
            yield from self.diff_manifest(ring)
            # the full manifest (with titles) and its diff in the ledger now: the API shows them
            yield from self.ledger_rollout("running")
        self.st.set_counts(ring, outcome.get("counts") or {})
        return outcome.get("gate") or gate_for(self.ring_spec(ring), ring, [])

    def diff_manifest(self, ring: str) -> Gen:
        """What each later ring's machines would install against the manifest (``manifest_diff``,
        once, READ retries): shown to approvers in the status / API; unavailable is a note, never
        a failure."""
        try:
            diff = yield from self.activity(
                names.MANIFEST_DIFF,
                ManifestDiffInput(plan=self.plan, from_ring=ring, manifest=self.manifest, now=iso(self.now),
                                  rollout_id=self.rollout_id),
            )
            diff = diff if isinstance(diff, dict) else {}
            if diff.get("error"):
                raise ValueError(str((diff["error"] or {}).get("message") or diff["error"]))
        except Exception as err:
            diff = {"unavailable": True, "reason": f"diff unavailable: {first_line(err)}"[:300], "rings": []}
            self.st.note(iso(self.now), f"manifest {(self.manifest or {}).get('hash')}: {diff['reason']}")
        self.manifest_diff = diff
        self.st.set_manifest_diff(diff)
        self.publish()

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
            yield from self.notify("rollout-halted", self.st.current_ring, "error",
                                   f"rollout {self.rollout_id} halted: {outcome}", reason=outcome, state=state,
                                   pagePath=f"/api/ui/rollouts/{self.rollout_id}")
        else:
            yield from self.notify("rollout-completed", None, "info" if state == COMPLETED else "error",
                                   f"rollout {self.rollout_id} ended {state}: {outcome}", outcome=outcome,
                                   state=state, pagePath=f"/api/ui/rollouts/{self.rollout_id}")
        try:
            yield from self.ledger_rollout(state, outcome, policy=retries.CLOSE, final=True)
        except Exception as err:  # the status still says it; nothing else can be done here
            self.st.note(iso(self.now), f"final state could not be written to the ledger: {first_line(err)}")
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
        resume = self.waits.event(names.EV_RESUME)
        resume_by = self.now + RESUME_WINDOW
        timer = self.waits.timer(resume_by)
        self.st.wait_for_resume(iso(resume_by), ring)
        self.publish()
        while True:
            resume = self.waits.event(names.EV_RESUME)
            winner = resume if resume.is_completed else (yield self.ctx.task_any([resume, timer]))
            if winner is timer and self.now < resume_by:
                timer = self.waits.timer(resume_by)  # one piece of the resume window elapsed
                continue
            if winner is timer:
                raise Stop(HALTED, halt.reason)
            payload = decode(self.waits.consume(names.EV_RESUME))
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
                    to_payload(DryRunRingInput(
                        ring=ring,
                        rollout_id=self.rollout_id,
                        # the first ring's dry run also reads the plan (machines in no ring, the
                        # next ring's schedule); every ring gets its own document
                        plan=plan if index == 0 else None,
                        ring_spec=self.ring_spec_excluding_quarantine(ring) if index == 0 else self.ring_spec(ring),
                    )),
                    f"{self.rollout_id}:{ring}:dry-run",
                )
                for index, ring in enumerate(rings)
            ]
        )
        for ring, outcome in zip(rings, outcomes, strict=True):
            self.st.set_phase(ring, "assessed", iso(self.now), dryRun=(outcome or {}).get("summary"))
        self.st.finish(DRY_RUN_DONE, iso(self.now), "dry run: nothing installed")
        self.publish()
        yield from self.ledger_rollout(DRY_RUN_DONE, "dry run", final=True)
        return {"rolloutId": self.rollout_id, "state": DRY_RUN_DONE, "rings": outcomes}


@bp.orchestration_trigger(context_name="context", orchestration=names.ROLLOUT)  # type: ignore[untyped-decorator]
def rollout_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = context.get_input() or {}
    if isinstance(spec, str):
        spec = decode(spec)
    result = yield from Rollout(context, spec).run()
    return result


def _reason_text(reason: Any) -> str:
    """A gate reason (``{vm, reason}``) as one short line with the VM's short name."""
    if isinstance(reason, dict):
        vm = last_segment(str(reason.get("vm") or ""))
        text = str(reason.get("reason") or "")
        return (f"{vm}: {text}" if vm else text)[:300]
    return str(reason)[:300]

