"""Fail-closed guard for one scheduled run of a gated ring.

Why a separate orchestration: AUM patches a run unless someone cancels it by T-10 (a failed or
silent pre-event handler does *not* stop it, update-manager-domain.md §2.3). The rollout decides
and authorises runs, but a rollout that is dead, stuck, halted or never started must not let an
unapproved ring patch. The Event Grid trigger therefore starts this guard for every pre-event of
a gated ring (instance id derived from the correlationId, so redeliveries never start two).

Timeline (``cancel_by`` = ``min(cancellationCutOff, start - 10 min)``; see
:mod:`patchrings.domain.deadlines`):

1. sleep until ``decide_at = cancel_by - max(cancelMargin, GUARD_LEAD)`` (8 min): a pre-event at
   the worst case T-30 still gives the rollout 12 minutes to authorise the run;
2. read the ledger's gate for this exact run (``ledger_read_gate``, READ retries) raced against
   its own short deadline (``GUARD_READ_BUDGET``): no answer in time, or an error = not
   authorised;
3. if authorised, re-read the ring's maintenance configuration (``get_configuration``, READ,
   same short deadline) and refuse the run if its install parameters no longer pin what the
   rollout validated (a redeploy that re-sent classifications, or include lists / reboot setting
   that differ from the pins the gate carries) -- fail closed, reason recorded (issue 13.16);
4. otherwise cancel: ``cancel_run`` with ``report: true`` and a per-attempt ``budgetSeconds``
   (one bounded HTTP attempt, no SDK retries), straight to the PUT, again after durable-timer
   waits (back-off, or the server's Retry-After if longer) until ``cancel_by``. ``Cancelled`` /
   ``AlreadyCancelled`` / ``NotFound`` end it (nothing will patch); ``TooLate`` / ``Refused`` /
   a non-retryable failure end it as ``cancel-failed``;
5. when the cancel could not land: custom status ``alert``, a ledger event row, an error log
   with the run id (not while replaying) and the ``notify`` activity (best effort).

Every decision is also written to the ledger as an event (``guard:<decision>``).

Input ``{event: MaintenanceEvent.to_dict(), ring, cancelMargin, decisionLead?}``; output ``{correlationId, ring,
decision, gate, cancel, attempts, configuration?, decidedAt, cancelBy, reason}`` with decision
``allowed`` | ``cancelled`` | ``cancel-failed`` | ``ignored``.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.inbox import event_document
from patchrings.boundary.activities import (
    CancelRunInput,
    GetConfigurationInput,
    LedgerReadGateInput,
    LedgerRecordEventInput,
    NotifyInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rollout import GuardInput
from patchrings.domain import deadlines
from patchrings.domain.events import CANCELLED_RUN_STATUSES, MaintenanceEvent
from patchrings.domain.manifest import Manifest
from patchrings.domain.plan import DEFAULT_CANCEL_MARGIN
from patchrings.domain.timeutil import duration_or, iso

bp = df.Blueprint()
log = logging.getLogger("patchrings.orchestrators.guard")

Gen = Generator[Any, Any, Any]

# The run will not patch after any of these (one definition: the domain's).
CANCELLED = CANCELLED_RUN_STATUSES
ALERT_EVENT = "guard:cancel-failed"
# How long past its own budget an attempt may take before the next one goes out.
ATTEMPT_GRACE = timedelta(seconds=5)


def _failed(task: Any) -> BaseException | None:
    result = getattr(task, "result", None)
    return result if isinstance(result, BaseException) else None


def _ci(doc: Mapping[str, Any] | None, key: str) -> Any:
    for k, v in (doc or {}).items():
        if str(k).lower() == key.lower():
            return v
    return None


def install_drift(install_patches: Mapping[str, Any] | None, gate: Mapping[str, Any]) -> list[str]:
    """Why a configuration's ``installPatches`` no longer pins what the rollout authorised (pure).

    Always checked: no classifications may be included (a pinned configuration has none; a
    redeploy that re-sends the Bicep's Critical/Security brings them back and would install every
    such patch). When the gate carries the pinned ``manifest`` (and its ``manifestHash``) the
    include lists must be exactly its pins; when it carries ``rebootSetting`` that must match.
    """
    reasons: list[str] = []
    patches = install_patches or {}
    for os_key in ("windowsParameters", "linuxParameters"):
        classes = _ci(_ci(patches, os_key) or {}, "classificationsToInclude") or []
        if classes:
            reasons.append(f"{os_key}.classificationsToInclude is {sorted(map(str, classes))}: the configuration "
                           "installs by classification, not the pinned manifest (redeployed or edited?)")
    manifest_doc = gate.get("manifest")
    if isinstance(manifest_doc, Mapping) and manifest_doc:
        try:
            manifest = Manifest.from_dict(manifest_doc)
        except (ValueError, TypeError, KeyError) as err:
            reasons.append(f"the gate's manifest is unusable: {err}")
        else:
            want = gate.get("manifestHash")
            if want and want != manifest.hash:
                reasons.append(f"the gate's manifest hash {manifest.hash} is not the authorised {want}")
            elif not manifest.is_pinned_in(patches):
                reasons.append(f"the configuration's include lists are not the pinned manifest {manifest.hash}")
    want_reboot = gate.get("rebootSetting")
    have_reboot = _ci(patches, "rebootSetting")
    if want_reboot and str(have_reboot or "").lower() != str(want_reboot).lower():
        reasons.append(f"rebootSetting is {have_reboot!r}, the pinned setting is {want_reboot!r}")
    return reasons


class Guard:
    """One guard run (a class so the steps read in order; all state is orchestration-local)."""

    def __init__(self, context: df.DurableOrchestrationContext, spec: GuardInput,
                 event: Mapping[str, Any]) -> None:
        self.ctx = context
        self.spec = spec
        # the run's ids are all the guard needs to cancel; its times only set the deadline, and
        # an event whose times are unusable is cancelled at once (fail closed)
        self.correlation_id = str(event["correlationId"])
        self.configuration_id = str(event["maintenanceConfigurationId"])
        self.event: MaintenanceEvent | None = None
        self.event_error: str | None = None
        try:
            self.event = MaintenanceEvent.from_dict(event)
        except Exception as err:
            self.event_error = str(err)
        self.ring = spec.ring
        self.status: dict[str, Any] = {"correlationId": self.correlation_id, "ring": self.ring, "decision": None}
        self.attempts: list[dict[str, Any]] = []

    @property
    def now(self) -> datetime:
        return self.ctx.current_utc_datetime  # type: ignore[no-any-return]

    def publish(self, **fields: Any) -> None:
        self.status.update(fields)
        self.ctx.set_custom_status(dict(self.status))

    # -------------------------------------------------------------- bounded reads
    def bounded(self, name: str, payload: dict[str, Any], until: datetime) -> Gen:
        """``(result, error)`` of an activity (READ retries) that must answer by ``until``."""
        task = self.ctx.call_activity_with_retry(name, retries.READ, payload)
        if until <= self.now:
            until = self.now + timedelta(seconds=1)
        timer = self.ctx.create_timer(until)
        winner = yield self.ctx.task_any([task, timer])
        if winner is timer:
            return None, f"no answer by {iso(until)}"
        timer.cancel()
        error = _failed(task)
        if error is not None:
            return None, str(error).splitlines()[0][:500] if str(error) else type(error).__name__
        return task.result, None

    # -------------------------------------------------------------- steps
    def read_gate(self, cancel_by: datetime) -> Gen:
        until = min(self.now + deadlines.GUARD_READ_BUDGET, cancel_by - deadlines.CANCEL_ATTEMPT_CAP)
        gate, error = yield from self.bounded(
            names.LEDGER_READ_GATE,
            to_payload(LedgerReadGateInput(correlation_id=self.correlation_id,
                                                 configuration_id=self.configuration_id, ring=self.ring)),
            until,
        )
        if error is not None:
            return {"authorised": False, "reason": f"gate could not be read: {error}"}
        return dict(gate or {})

    def check_configuration(self, gate: Mapping[str, Any], cancel_by: datetime) -> Gen:
        """Reasons to refuse an authorised run because its configuration drifted (empty = fine)."""
        until = min(self.now + deadlines.GUARD_READ_BUDGET, cancel_by - deadlines.CANCEL_ATTEMPT_CAP)
        config, error = yield from self.bounded(
            names.GET_CONFIGURATION, to_payload(GetConfigurationInput(configuration_id=self.configuration_id)),
            until
        )
        if error is not None:
            return [f"the ring's maintenance configuration could not be read to verify its pins: {error}"], None
        patches = (config or {}).get("installPatches") or {}
        return install_drift(patches, gate), patches

    def cancel(self, cancel_by: datetime) -> Gen:
        """Keep trying the cancel PUT until ``cancel_by``; the last answer (or a synthetic one).

        Each attempt is one bounded call (``budgetSeconds``). An attempt that has not answered
        within its budget (plus a little grace) is abandoned -- not cancelled: it may still land,
        and its answer still counts if it comes -- and the next one goes out at once. Between
        failed attempts the guard waits (back-off or Retry-After, :func:`next_cancel_attempt`).
        """
        last: dict[str, Any] = {"status": "Failed", "message": "no cancel attempt fitted before the deadline"}
        failures = 0
        pending: list[tuple[Any, datetime]] = []
        while True:
            budget = deadlines.cancel_attempt_budget(self.now, cancel_by)
            if budget is None:
                break
            started = self.now
            pending.append((self.ctx.call_activity(
                names.CANCEL_RUN,
                to_payload(CancelRunInput(correlation_id=self.correlation_id, report=True,
                                                budget_seconds=budget)),
            ), started))
            limit = min(cancel_by, started + timedelta(seconds=budget) + ATTEMPT_GRACE)
            done = yield from self.first_answer(pending, limit)
            if done is None:
                last = {"status": "Failed", "retryable": True,
                        "message": f"the cancel attempt started at {iso(started)} had not answered by {iso(self.now)}"}
                self.attempts.append({"at": iso(started), "status": "Timeout"})
                self.publish(phase="cancelling", attempts=len(self.attempts), lastCancel=last)
                failures += 1
                continue  # slow, not refusing: try again at once (the budget check ends it at the deadline)
            last, final = self.settle(*done)
            if final:
                break
            failures += 1
            retry_after = last.get("retryAfter")
            at = deadlines.next_cancel_attempt(
                self.now, cancel_by, failures, float(retry_after) if isinstance(retry_after, int | float) else None
            )
            if at is None:
                break
            # wait for the next attempt; an abandoned attempt answering meanwhile still counts
            final = False
            while not final and (done := (yield from self.first_answer(pending, at))) is not None:
                last, final = self.settle(*done)
            if final:
                break
        return last

    def first_answer(self, pending: list[tuple[Any, datetime]], until: datetime) -> Gen:
        """The first of the in-flight attempts to answer by ``until`` (removed from ``pending``), or None."""
        timer = self.ctx.create_timer(until)
        if not pending:
            yield timer
            return None
        winner = yield self.ctx.task_any([task for task, _ in pending] + [timer])
        if winner is timer:
            return None
        timer.cancel()
        for index, (task, started) in enumerate(pending):
            if task is winner:
                del pending[index]
                return task, started
        return None

    def settle(self, task: Any, started: datetime) -> tuple[dict[str, Any], bool]:
        """One attempt's answer, recorded; and whether it ends the loop."""
        error = _failed(task)
        if error is not None:  # the activity itself failed (worker crash, old activity raising)
            last = {"status": "Failed", "retryable": True, "message": str(error).splitlines()[0][:500]}
        else:
            last = dict(task.result or {})
        status = str(last.get("status"))
        self.attempts.append({"at": iso(started), "status": status, "httpStatus": last.get("httpStatus"),
                              "code": last.get("code"), "retryAfter": last.get("retryAfter")})
        self.publish(phase="cancelling", attempts=len(self.attempts), lastCancel=last)
        final = status in CANCELLED or status in ("TooLate", "Refused") or not last.get("retryable", False)
        return last, final

    def record(self, decision: str, reason: str, result: Mapping[str, Any]) -> Gen:
        """The decision as a ledger event row (append-only; a failure here is logged in the status)."""
        try:
            yield self.ctx.call_activity_with_retry(
                names.LEDGER_EVENT,
                retries.WRITE,
                to_payload(LedgerRecordEventInput(
                    configuration_id=self.configuration_id, event_type=f"guard:{decision}",
                    event_id=self.correlation_id,
                    columns={"correlationId": self.correlation_id, "ring": self.ring, "decision": decision,
                             "reason": reason, "guard": self.ctx.instance_id, "at": iso(self.now),
                             "cancel": result.get("cancel"), "attempts": self.attempts,
                             "rolloutId": (result.get("gate") or {}).get("rolloutId")})),
            )
        except Exception as err:
            self.publish(ledgerError=str(err).splitlines()[0][:300] if str(err) else type(err).__name__)

    def alarm(self, reason: str, result: Mapping[str, Any]) -> Gen:
        """The cancel could not land: the run may patch ungated. Say so everywhere."""
        message = (f"COULD NOT CANCEL run {self.correlation_id} of ring {self.ring}: it was not "
                   f"authorised ({reason}) and may patch ungated; last cancel answer: "
                   f"{(result.get('cancel') or {}).get('status')}: {(result.get('cancel') or {}).get('message')}")
        self.publish(alert=message)
        if not self.ctx.is_replaying:
            log.error("guard %s: %s", self.ctx.instance_id, message)
        try:
            # contract NOTIFY: a deterministic id (a retry or replay publishes the same event)
            yield self.ctx.call_activity(
                names.NOTIFY,
                to_payload(NotifyInput(
                    kind="cancel-failed", id=str(self.ctx.new_uuid()),
                    rollout_id=str((result.get("gate") or {}).get("rolloutId") or ""), ring=self.ring,
                    severity="error", message=message, time=iso(self.now),
                    data={"correlationId": self.correlation_id,
                          "configurationId": self.configuration_id, "guard": self.ctx.instance_id,
                          "attempts": self.attempts, "reason": reason[:500],
                          "cancel": {"status": (result.get("cancel") or {}).get("status"),
                                     "message": str((result.get("cancel") or {}).get("message") or "")[:300]}},
                    rest={"ring": None} if self.ring is None else {})),
            )
        except Exception as err:  # best effort: an unregistered or failing notify must not hide the rest
            self.publish(notifyError=str(err).splitlines()[0][:300] if str(err) else type(err).__name__)

    def run(self) -> Gen:
        margin = duration_or(self.spec.cancel_margin, DEFAULT_CANCEL_MARGIN)
        lead = duration_or(self.spec.decision_lead, deadlines.GUARD_LEAD)
        try:
            if self.event is None:
                raise ValueError(self.event_error or "no usable event")
            cancel_by = deadlines.cancel_deadline(self.event)
        except Exception as err:  # no usable start: nothing to wait for, cancel at once (fail closed)
            cancel_by = self.now + lead
            self.publish(deadlineError=str(err)[:300])
        decide_at = deadlines.guard_decide_at(cancel_by, margin, lead)
        self.publish(phase="waiting", decideAt=iso(decide_at), cancelBy=iso(cancel_by))
        if self.now < decide_at:
            yield self.ctx.create_timer(decide_at)

        self.publish(phase="reading-gate")
        gate = yield from self.read_gate(cancel_by)
        configuration: dict[str, Any] | None = None
        reasons: list[str] = []
        if gate.get("authorised"):
            self.publish(phase="checking-configuration")
            reasons, patches = yield from self.check_configuration(gate, cancel_by)
            configuration = {"installPatches": patches, "drift": reasons}
        else:
            reasons = [str(gate.get("reason") or "not authorised")]

        cancel: dict[str, Any] | None = None
        if not reasons:
            decision = "allowed"
        else:
            self.publish(phase="cancelling", reasons=reasons)
            cancel = yield from self.cancel(cancel_by)
            decision = "cancelled" if str(cancel.get("status")) in CANCELLED else "cancel-failed"
        reason = "; ".join(reasons) if reasons else str(gate.get("reason") or "authorised")
        result = {"correlationId": self.correlation_id, "ring": self.ring, "decision": decision,
                  "reason": reason, "gate": gate, "cancel": cancel, "attempts": self.attempts,
                  "configuration": configuration, "decidedAt": iso(self.now), "cancelBy": iso(cancel_by)}
        if not self.ctx.is_replaying:
            log.info("guard %s: run %s %s (%s)", self.ctx.instance_id, self.correlation_id, decision, reason)
        if decision == "cancel-failed":
            yield from self.alarm(reason, result)
        yield from self.record(decision, reason, result)
        self.status.pop("phase", None)
        self.publish(**result)
        return {**result, **({"alert": self.status["alert"]} if "alert" in self.status else {})}


def run_guard(context: df.DurableOrchestrationContext) -> Gen:
    """The guard's generator (undecorated, so tests can drive it with a fake context)."""
    spec = from_payload(GuardInput, context.get_input() or {})
    event = event_document(spec.event)
    if event is None:
        return {"decision": "ignored", "reason": "not a usable pre-maintenance event"}
    result = yield from Guard(context, spec, event).run()
    return result


@bp.orchestration_trigger(context_name="context", orchestration=names.GUARD)  # type: ignore[untyped-decorator]
def guard_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    result = yield from run_guard(context)
    return result
