"""The rollout's races, stepped as a generator (issue 10, "generator-stepping unit tests").

In the style of durabletask-python's unit-testing support: the rollout orchestrator generator is
driven by a fake context on a virtual clock (``test_rollout_notify.FakeContext``), and the test
chooses in which order task results and external events arrive, then asserts what the rollout
decided. As in azure-functions-durable 1.7, only timers can be cancelled; an external-event waiter
stays open (``Waits`` reuses it at the next wait point).

Races pinned here: an approval arriving after its timeout wins nothing (either way round); a Halt
during an approval wait stops the rollout and the approval is never read; a Resume re-asks the
approval, which is then taken; an approval for another manifest hash is refused; a Resume by
someone who may not approve the ring is refused.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from orchestrators import names
from orchestrators.rollout import RESUME_WINDOW
from orchestrators.waits import MAX_TIMER
from tests.unit.orchestrators.test_rollout_notify import T0, FakeContext, Task, handler, plan

pytestmark = pytest.mark.unit

ALICE = "alice@contoso.com"


class EventTask:
    """An external-event waiter as the SDK has it: completes once, has no ``cancel``."""

    def __init__(self, name: str) -> None:
        self.kind, self.name, self.payload, self.at = "event", name, None, None
        self.result: Any = None
        self.is_completed = False
        self.done: tuple[datetime, Any, bool] | None = None


class RaceContext(FakeContext):
    """The notify tests' fake context, recording the timers and waiters the rollout creates."""

    def __init__(self, spec: dict[str, Any], answer: Any, events: dict[str, list[tuple[datetime, Any]]]) -> None:
        super().__init__(spec, answer, events)
        self.timers: list[Task] = []
        self.waiters: list[EventTask] = []

    def create_timer(self, at: datetime) -> Task:
        task = super().create_timer(at)
        self.timers.append(task)
        return task

    def wait_for_external_event(self, name: str) -> EventTask:  # type: ignore[override]
        task = EventTask(name)
        self.waiters.append(task)
        return task

    def called(self, name: str) -> list[dict[str, Any]]:
        return [p for _, n, p in self.calls if n == name]


def decision(at: timedelta, verdict: str = "approve", manifest: str = "m-1", who: str = ALICE,
             did: str = "d1") -> tuple[datetime, dict[str, Any]]:
    return (T0 + at, {"decisionId": did, "approver": who, "ring": "ring1", "manifestHash": manifest,
                      "verdict": verdict, "comment": ""})


def rollout(events: dict[str, list[tuple[datetime, Any]]], *, on_timeout: str = "reject",
            answer: Any = None) -> tuple[RaceContext, dict[str, Any]]:
    fleet = answer or handler({"ring0": "pass", "ring1": "pass"})

    def answers(kind: str, name: str, payload: Any) -> Any:
        return plan(on_timeout) if name == names.LOAD_PLAN else fleet(kind, name, payload)

    ctx = RaceContext({"initiator": "dave@contoso.com"}, answers, events)
    return ctx, ctx.run()


def approvals(ctx: RaceContext) -> list[dict[str, Any]]:
    return list(ctx.statuses[-1]["approvals"])


# ---------------------------------------------------------------------- approval vs timeout
def test_an_approval_after_the_timeout_wins_nothing() -> None:
    deadline = T0 + timedelta(hours=4)  # the plan's PT4H, asked at T0 (ring0 takes no time here)
    ctx, out = rollout({names.EV_APPROVAL: [decision(timedelta(hours=5))]})
    assert out["state"] == "halted" and out["outcome"].startswith("ring ring1 not approved: system:timeout"), out
    # the late event was never read: no ledger check of it, no ring1 install, one timeout decision
    assert ctx.called(names.LEDGER_CHECK_DECISION) == []
    assert [p["ring"] for p in ctx.called(names.RING_DIRECT)] == ["ring0"]
    [taken] = approvals(ctx)
    assert taken["approver"] == "system:timeout" and taken["verdict"] == "reject" and taken["accepted"] is True
    [row] = ctx.called(names.LEDGER_APPROVAL)
    assert row["decision"]["source"] == "timeout" and row["outcome"] == "accepted"
    assert row["at"] == "2026-11-16T10:00:00Z"  # decided when the timeout fired, before the event came
    assert any(t.at == deadline for t in ctx.timers)


def test_a_late_reject_does_not_undo_an_approving_timeout() -> None:
    ctx, out = rollout({names.EV_APPROVAL: [decision(timedelta(hours=5), verdict="reject")]}, on_timeout="approve")
    assert out["state"] == "completed", out
    assert ctx.called(names.LEDGER_CHECK_DECISION) == []
    assert [p["ring"] for p in ctx.called(names.RING_DIRECT)] == ["ring0", "ring1"]
    [taken] = approvals(ctx)
    assert taken["approver"] == "system:timeout" and taken["verdict"] == "approve"


def test_an_approval_in_time_wins_and_cancels_the_timeout() -> None:
    ctx, out = rollout({names.EV_APPROVAL: [decision(timedelta(hours=1))]})
    assert out["state"] == "completed", out
    [taken] = approvals(ctx)
    assert taken["approver"] == ALICE and taken["decidedAt"] == "2026-11-16T07:00:00Z"
    timeout = next(t for t in ctx.timers if t.at == T0 + timedelta(hours=4))
    assert timeout.done is not None and timeout.done[0] == datetime.max.replace(tzinfo=T0.tzinfo)  # cancelled


# ---------------------------------------------------------------------- wrong manifest
def test_an_approval_for_another_manifest_hash_is_refused_and_the_right_one_taken() -> None:
    ctx, out = rollout({names.EV_APPROVAL: [decision(timedelta(hours=1), manifest="m-0", did="old"),
                                            decision(timedelta(hours=2), did="new")]})
    assert out["state"] == "completed", out
    refused, taken = approvals(ctx)
    assert refused["accepted"] is False and refused["manifestHash"] == "m-0"
    assert "m-1" in refused["error"]["message"] and refused["error"]["code"] == "ApprovalConflict"
    assert taken["accepted"] is True and taken["manifestHash"] == "m-1" and taken["decidedAt"] == "2026-11-16T08:00:00Z"
    assert [p["ring"] for p in ctx.called(names.RING_DIRECT)] == ["ring0", "ring1"]


def test_only_a_wrong_manifest_approval_then_the_timeout_rejects() -> None:
    ctx, out = rollout({names.EV_APPROVAL: [decision(timedelta(hours=1), manifest="m-0")]})
    assert out["state"] == "halted" and "system:timeout" in out["outcome"], out
    assert [a["accepted"] for a in approvals(ctx)] == [False, True]
    assert [p["ring"] for p in ctx.called(names.RING_DIRECT)] == ["ring0"]


# ---------------------------------------------------------------------- halt
def test_a_halt_during_the_approval_wait_stops_and_the_approval_is_never_read() -> None:
    halt = (T0 + timedelta(hours=1), {"haltId": "h1", "by": "bob@contoso.com", "reason": "incident"})
    ctx, out = rollout({names.EV_HALT: [halt], names.EV_APPROVAL: [decision(timedelta(hours=2))]})
    assert out["state"] == "halted" and out["outcome"] == "incident", out
    assert ctx.called(names.LEDGER_CHECK_DECISION) == []  # the approval event was never taken
    assert [p["ring"] for p in ctx.called(names.RING_DIRECT)] == ["ring0"]
    assert approvals(ctx) == []
    # the approval timeout was cancelled when the Halt won; the resume window ran out in <= 5-day pieces
    timeout = next(t for t in ctx.timers if t.at == T0 + timedelta(hours=4))
    assert timeout.done is not None and timeout.done[0] == datetime.max.replace(tzinfo=T0.tzinfo)
    resume_by = T0 + timedelta(hours=1) + RESUME_WINDOW
    pieces = [t.at for t in ctx.timers if t.at is not None and t.at > T0 + timedelta(hours=4)]
    assert pieces[-1] == resume_by and all(b - a <= MAX_TIMER for a, b in itertools.pairwise(pieces))
    assert pieces[0] - (T0 + timedelta(hours=1)) == MAX_TIMER
    assert ctx.current_utc_datetime == resume_by
    halted = [n for n in ctx.notifications() if n["kind"] == "rollout-halted"]
    assert len(halted) == 1 and halted[0]["data"]["by"] == "bob@contoso.com"


def test_a_resume_re_asks_the_approval_which_is_then_taken() -> None:
    halt = (T0 + timedelta(hours=1), {"haltId": "h1", "by": "bob@contoso.com", "reason": "incident"})
    resume = (T0 + timedelta(hours=2), {"resumeId": "r1", "by": ALICE, "approver": ALICE})
    ctx, out = rollout({names.EV_HALT: [halt], names.EV_RESUME: [resume],
                        names.EV_APPROVAL: [decision(timedelta(hours=3))]})
    assert out["state"] == "completed", out
    checks = ctx.called(names.LEDGER_CHECK_DECISION)
    assert [c["kind"] for c in checks] == ["resume", "approval"]
    # the approval waiter made before the Halt is the one that delivers it (one waiter per name)
    assert [w.name for w in ctx.waiters].count(names.EV_APPROVAL) == 1
    [taken] = approvals(ctx)
    assert taken["approver"] == ALICE and taken["decidedAt"] == "2026-11-16T09:00:00Z"
    assert any(n["text"] == "resumed by alice@contoso.com" for n in ctx.statuses[-1]["notes"])


def test_a_resume_by_someone_who_may_not_approve_the_ring_is_refused() -> None:
    halt = (T0 + timedelta(hours=1), {"haltId": "h1", "by": "bob@contoso.com", "reason": "incident"})
    resume = (T0 + timedelta(hours=2), {"resumeId": "r1", "by": "mallory@contoso.com"})
    ctx, out = rollout({names.EV_HALT: [halt], names.EV_RESUME: [resume],
                        names.EV_APPROVAL: [decision(timedelta(hours=3))]})
    assert out["state"] == "halted" and out["outcome"] == "incident", out
    refused = [p for p in ctx.called(names.LEDGER_APPROVAL) if p.get("kind") == "resume"]
    assert refused and refused[0]["outcome"] == "refused" and "mallory" in refused[0]["reason"]
    assert [c["kind"] for c in ctx.called(names.LEDGER_CHECK_DECISION)] == ["resume"]


# ---------------------------------------------------------------------- quarantine decision (issue 11)
def quarantine_rollout(events: dict[str, list[tuple[datetime, Any]]]) -> tuple[RaceContext, dict[str, Any]]:
    from tests.unit.orchestrators.test_rollout_quarantine import active_read, waiting_plan

    ctx = RaceContext({"initiator": "system:maintenance-event"}, waiting_plan(active_read), events)
    return ctx, ctx.run()


def q_decision(at: timedelta, verdict: str = "approve", token: str | None = None,
               did: str = "q1") -> tuple[datetime, dict[str, Any]]:
    from tests.unit.orchestrators.test_rollout_quarantine import TOKEN

    return (T0 + at, {"decisionId": did, "approver": ALICE, "ring": "ring0", "manifestHash": token or TOKEN,
                      "verdict": verdict, "comment": ""})


def test_a_quarantine_decision_after_its_timeout_wins_nothing_and_nothing_is_installed() -> None:
    ctx, out = quarantine_rollout({names.EV_APPROVAL: [q_decision(timedelta(hours=5))]})
    assert out["state"] == "halted" and "system:timeout" in out["outcome"], out
    assert ctx.called(names.LEDGER_CHECK_DECISION) == [] and ctx.called(names.RING_DIRECT) == []
    assert any(t.at == T0 + timedelta(hours=4) for t in ctx.timers)


def test_a_decision_on_other_quarantine_entries_is_refused_and_ring1_needs_its_own_approval() -> None:
    # a decision bound to another set of entries (another token) is refused; the right one is
    # taken; the taken event is consumed, so Ring 1 waits for its own approval (then times out)
    ctx, out = quarantine_rollout({names.EV_APPROVAL: [q_decision(timedelta(minutes=30), token="q-000000000000",
                                                                  did="stale"),
                                                       q_decision(timedelta(hours=1))]})
    assert out["state"] == "halted" and out["outcome"].startswith("ring ring1 not approved: system:timeout"), out
    refused, taken, ring1 = approvals(ctx)
    assert refused["accepted"] is False and refused["error"]["code"] == "ApprovalConflict"
    assert taken["accepted"] is True and taken["kind"] == "quarantine" and taken["choice"] == "exclude"
    assert ring1["ring"] == "ring1" and ring1["approver"] == "system:timeout"
    assert [p["ring"] for p in ctx.called(names.RING_DIRECT)] == ["ring0"]
