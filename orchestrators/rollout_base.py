"""The rollout's working state and the calls every step makes (activities, ledger rows, notes).

Part of the rollout orchestration (``orchestrators/rollout.py`` composes it): the steps live in
modules named for what they do, each a class built on the one below it --
``rollout_base`` (this: state, activity / ledger / notify calls) -> ``rollout_quarantine`` (what
Ring 0 must not install) -> ``rollout_planner`` (can Ring 0 finish before the next T-40) ->
``rollout_approvals`` (approvals bound to the manifest, resume checks) -> ``rollout_gates``
(promotion: pin, open, coverage; closing gates) -> ``rollout_scheduled`` (a scheduled ring's runs:
pre-event, gate, post-event, results) -> ``rollout.Rollout`` (the flow). Waits on external
events, the Halt race and timers go through ``orchestrators.waits``; the status document changes
only through ``RolloutStatus`` methods.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.inbox import EventInbox, decode_payload
from orchestrators.status import (
    RolloutStatus,
    bounded,
)
from orchestrators.waits import Waits
from patchrings.boundary.activities import (
    CancelRunInput,
    LedgerCheckDecisionInput,
    LedgerRecordRingRunInput,
    LedgerRecordRolloutInput,
    NotifyInput,
    ResolveMembersInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rollout import RolloutInput
from patchrings.domain.events import CANCELLED_RUN_STATUSES, MaintenanceEvent
from patchrings.domain.plan import Plan, Ring
from patchrings.domain.recurrence import next_occurrence, parse_window
from patchrings.domain.timeutil import iso

log = logging.getLogger("patchrings.orchestrators.rollout")

# How long after a run's window end the rollout collects results if no post-event came.
POST_EVENT_GRACE = timedelta(hours=1)
# How long after a targeted run's start the rollout waits for its pre-event before re-targeting.
PRE_EVENT_GRACE = timedelta(hours=1)
# How far a pre-event's start may be from the computed run start and still be that run.
RUN_TOLERANCE = timedelta(minutes=5)
# How long a halted rollout waits for Resume before it ends as halted.
RESUME_WINDOW = timedelta(days=14)
# cancel_run answers that mean the run will not patch (one definition: the domain's).
CANCELLED = CANCELLED_RUN_STATUSES
# How many scheduled runs a ring may miss (cancelled / no pre-event) before the rollout halts.
MAX_MISSED_RUNS = 3
# The previous ring's re-check reads at most this many VMs per check_vm_health_batch activity, one
# burst at a time, BURST_PAUSE apart (ARM's per-subscription read bucket: 250, refilling 25/s).
PREVIOUS_RING_BURST = 200
BURST_PAUSE = timedelta(seconds=10)
#: a previous-ring health read the paced batch deferred (issue 11) is asked again this many
#: times, this long apart, before it counts as unreadable (inconclusive)
DEFERRED_REREADS = 3
DEFERRED_PAUSE = timedelta(minutes=1)
# Whole attempts at closing one ring's gate (each with CLOSE retries inside), and the pause between.
CLOSE_ATTEMPTS = 3
CLOSE_PAUSE = timedelta(minutes=5)

Gen = Generator[Any, Any, Any]

class Stop(Exception):
    """The rollout ends here (gate failed, approval rejected...) with a final state."""

    def __init__(self, state: str, outcome: str) -> None:
        super().__init__(outcome)
        self.state = state
        self.outcome = outcome


class RolloutBase:
    """The rollout's working state; rebuilt identically on every replay."""

    def __init__(self, context: df.DurableOrchestrationContext, spec: dict[str, Any]) -> None:
        self.ctx = context
        # the input, read once through the boundary's codec (patchrings.boundary.rollout)
        self.input = from_payload(RolloutInput, spec)
        self.rollout_id = context.instance_id
        self.started_at = context.current_utc_datetime
        self.initiator: str | None = self.input.initiator
        # the resolved plan: ``plan`` its JSON (``Plan.to_dict()`` as load_plan returned it, what
        # travels to sub-orchestrations and activities), ``resolved`` the same as a ``Plan``
        self._plan: dict[str, Any] = {}
        self.resolved = Plan.from_resolved({"name": "", "rings": []})
        self.status: RolloutStatus | None = None
        self.inbox = EventInbox()
        # the event waiters, the Halt race and capped timers (SDK workarounds: ``waits``)
        self.waits = Waits(context)
        self.manifest: dict[str, Any] | None = None
        self.approved: dict[str, str] = {}
        self.opened: list[str] = []
        # ring -> the VMs its opening gate did not retag (left the ring, issue 11): ids (<= 25), count
        self.gate_left: dict[str, tuple[list[str], int]] = {}
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

    def resolve_members(self, ring: str, *, count_only: bool | None = None) -> ResolveMembersInput:
        """``resolve_ring_members`` of ``ring``: named by its ring document, never the plan."""
        return ResolveMembersInput(ring=ring, ring_spec=self.ring_spec(ring), rollout_id=self.rollout_id,
                                   count_only=count_only)

    def ring_spec(self, name: str) -> dict[str, Any]:
        """The resolved document of ring ``name`` (``Ring.to_dict()``): what a ring-level
        sub-orchestration or activity gets as ``ringSpec`` instead of the whole plan (issue 10)."""
        return self.ring_of(name).to_dict()

    @property
    def now(self) -> datetime:
        return self.ctx.current_utc_datetime  # type: ignore[no-any-return]

    @property
    def st(self) -> RolloutStatus:
        assert self.status is not None
        return self.status

    def publish(self) -> None:
        """Publish the status document, bounded far below the 16 KB custom status limit."""
        self.st.touch(iso(self.now))
        self.ctx.set_custom_status(bounded(self.st.doc))

    def info(self, text: str, *args: Any) -> None:
        if not self.ctx.is_replaying:
            log.info("rollout %s: " + text, self.rollout_id, *args)

    def activity(self, name: str, value: Any, policy: Any = retries.READ) -> Gen:
        """One activity call with the host retrying it under ``policy`` (``orchestrators.retries``).

        ``value``: the activity's input dataclass (``patchrings.boundary.activities``), turned into
        its JSON by ``to_payload``."""
        # The rollout id rides along so every activity's log lines carry it (patchrings.telemetry).
        result = yield self.ctx.call_activity_with_retry(name, policy,
                                                         {"rolloutId": self.rollout_id, **to_payload(value)})
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
                LedgerCheckDecisionInput(rollout_id=self.rollout_id, kind=kind, event=decision_fields(raw),
                                         at=iso(self.now)),
                retries.WRITE,
            )
        except Exception as err:
            result = {"accepted": False, "reason": f"the ledger could not be read: {first_line(err)}"}
        return result or {"accepted": False, "reason": "no answer"}

    def cancel(self, correlation_id: str) -> Gen:
        """Cancel a scheduled run (``WRITE`` retries); a cancel that cannot land is an answer, not a
        crash: ``{"status": "Failed", "message"}``, which callers report loudly (the guard keeps trying)."""
        try:
            result = yield from self.activity(
                names.CANCEL_RUN, CancelRunInput(correlation_id=correlation_id, rollout_id=self.rollout_id),
                retries.WRITE)
        except Exception as err:
            result = {"status": "Failed", "message": first_line(err)}
        return result

    def notify(self, kind: str, ring: str | None, severity: str, message: str, **data: Any) -> Gen:
        """Tell people (contract NOTIFY: a CloudEvent on the Event Grid topic, optionally a webhook).

        The id is deterministic (``context.new_uuid()``), so a replay or retry publishes the same
        event and receivers dedupe. No retry and never fatal: the activity does not raise, and if
        it fails anyway the rollout notes it and goes on (it never waits on anyone's inbox).
        """
        notice = NotifyInput(kind=kind, id=str(self.ctx.new_uuid()), rollout_id=self.rollout_id, ring=ring,
                             severity=severity, message=message[:1000], data=data, time=iso(self.now),
                             rest={"ring": None} if ring is None else {})  # a rollout-wide notice: "ring": null
        try:
            yield self.ctx.call_activity(names.NOTIFY, to_payload(notice))
        except Exception as err:
            self.st.note(iso(self.now), f"notification {kind} could not be sent: {first_line(err)}")
            self.publish()

    def ledger_ring(self, ring: str, state: str, **fields: Any) -> Gen:
        yield self.ctx.call_activity_with_retry(
            names.LEDGER_RING_RUN,
            retries.WRITE,
            to_payload(LedgerRecordRingRunInput(
                rollout_id=self.rollout_id,
                ring=ring,
                run_id=fields.pop("runId", f"{self.rollout_id}:{ring}"),
                columns={"state": state, "at": iso(self.now), **fields},
            )),
        )

    def ledger_rollout(self, state: str, outcome: str | None = None, policy: Any = retries.WRITE,
                       final: bool = False) -> Gen:
        """The rollout's ledger row. The state document goes in only with the final state (a copy
        written earlier would go stale while the rollout runs; the live one is the custom status)."""
        yield self.ctx.call_activity_with_retry(
            names.LEDGER_ROLLOUT,
            policy,
            to_payload(LedgerRecordRolloutInput(rollout_id=self.rollout_id, columns={
                "state": state,
                "outcome": outcome,
                "initiator": self.initiator,
                "planHash": self.plan.get("hash"),
                "planName": self.plan.get("name"),
                "startedAt": iso(self.started_at),
                "at": iso(self.now),
                "dryRun": bool(self.input.dry_run),
                "manifestHash": (self.manifest or {}).get("hash"),
                # the full pinned manifest: the guard compares configurations with it (issue 13.16)
                **({"manifest": self.manifest} if self.manifest else {}),
                **({"manifestDiff": self.manifest_diff} if self.manifest_diff else {}),
                **({"quarantine": self.quarantine_summary()} if self.quarantine.get("entries") else {}),
                **({"planner": self.planner} if self.planner else {}),
                **({"status": self.st.doc} if final else {}),
            })),
        )

    def plan_name(self) -> str:
        return str(self.plan.get("name") or "default")

    def quarantine_summary(self) -> dict[str, Any]:
        """What the ledger's rollout row keeps of the quarantine this rollout honoured."""
        return {"entries": [str(e.get("id")) for e in self.quarantine.get("entries") or []][:50],
                "exclusions": self.quarantine.get("exclusions") or {}}


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


def first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def decode(value: Any) -> dict[str, Any]:
    return decode_payload(value) or {}


def decision_fields(raw: dict[str, Any]) -> dict[str, Any]:
    keep = ("approver", "ring", "manifestHash", "verdict", "comment", "decisionId", "resumeId", "by", "decidedAt")
    return {k: raw.get(k) for k in keep if k in raw}

