"""The rollout tells people (contract NOTIFY, issue 9): approval waiting, gate failed /
inconclusive, halted, completed; each with a deterministic id, never failing the rollout.

The rollout orchestrator is stepped with a fake context on a virtual clock: activities and
sub-orchestrations answer from a handler, timers fire at their time, external events arrive when
the test scripts them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrators import names
from orchestrators.rollout import Rollout

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
NEVER = datetime.max.replace(tzinfo=UTC)
VM0 = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/r0-web-1"
MANIFEST = {"windows": {"kbNumbers": ["5044284"]}, "linux": {"packages": []}, "hash": "m-1"}


class Task:
    def __init__(self, kind: str, name: str = "", payload: Any = None, at: datetime | None = None) -> None:
        self.kind, self.name, self.payload, self.at = kind, name, payload, at
        self.result: Any = None
        self.is_completed = False
        self.done: tuple[datetime, Any, bool] | None = None

    def cancel(self) -> None:
        self.done = (NEVER, None, False)


class Group:
    def __init__(self, kind: str, tasks: list[Task]) -> None:
        self.kind, self.tasks = kind, tasks


Handler = Callable[[str, str, Any], Any]


class FakeContext:
    """Just enough of DurableOrchestrationContext for the rollout."""

    def __init__(self, spec: dict[str, Any], handler: Handler, events: dict[str, list[tuple[datetime, Any]]]) -> None:
        self.spec, self.handler, self.events = spec, handler, events
        self.current_utc_datetime = T0
        self.instance_id = "ro-test"
        self.is_replaying = False
        self.deferred_tasks: dict[str, Any] = {}
        self.calls: list[tuple[datetime, str, Any]] = []
        self.statuses: list[Any] = []
        self._uuids = 0

    def get_input(self) -> Any:
        return self.spec

    def new_uuid(self) -> uuid.UUID:
        self._uuids += 1
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{self.instance_id}:{self._uuids}")

    def set_custom_status(self, status: Any) -> None:
        self.statuses.append(status)

    def call_activity(self, name: str, payload: Any = None) -> Task:
        return Task("activity", name, payload)

    def call_activity_with_retry(self, name: str, options: Any, payload: Any = None) -> Task:
        return Task("activity", name, payload)

    def call_sub_orchestrator(self, name: str, payload: Any = None, instance_id: str | None = None) -> Task:
        return Task("sub", name, payload)

    def create_timer(self, at: datetime) -> Task:
        return Task("timer", at=at)

    def wait_for_external_event(self, name: str) -> Task:
        return Task("event", name)

    def task_any(self, tasks: list[Task]) -> Group:
        return Group("any", tasks)

    def task_all(self, tasks: list[Task]) -> Group:
        return Group("all", tasks)

    # -- the driver
    def finish(self, task: Task) -> tuple[datetime, Any, bool]:
        if task.done is not None:
            return task.done
        now = self.current_utc_datetime
        if task.kind == "timer":
            assert task.at is not None
            task.done = (max(task.at, now), None, False)
        elif task.kind == "event":
            queue = self.events.get(task.name) or []
            if queue:
                at, payload = queue.pop(0)
                task.done = (max(at, now), payload, False)
            else:
                task.done = (NEVER, None, False)
        else:
            self.calls.append((now, task.name, task.payload))
            try:
                task.done = (now, self.handler(task.kind, task.name, task.payload), False)
            except Exception as err:
                task.done = (now, err, True)
        return task.done

    def complete(self, task: Task) -> tuple[Any, bool]:
        at, result, failed = self.finish(task)
        assert at != NEVER, f"the rollout waits for ever on {task.kind} {task.name}"
        self.current_utc_datetime = max(self.current_utc_datetime, at)
        task.result, task.is_completed = result, True
        return result, failed

    def run(self) -> Any:
        gen = Rollout(self, self.spec).run()  # type: ignore[arg-type]
        value: Any = None
        error: BaseException | None = None
        for _ in range(5_000):
            try:
                yielded = gen.throw(error) if error is not None else gen.send(value)
            except StopIteration as stop:
                return stop.value
            error = None
            if isinstance(yielded, Group) and yielded.kind == "any":
                winner = min(yielded.tasks, key=lambda t: self.finish(t)[0])
                self.complete(winner)
                value = winner
            elif isinstance(yielded, Group):
                results = [self.complete(t) for t in yielded.tasks]
                failed = [r for r, f in results if f]
                value, error = [r for r, _ in results], (failed[0] if failed else None)
            else:
                value, failed = self.complete(yielded)
                if failed:
                    error, value = value, None
        raise AssertionError("the rollout did not finish")

    def notifications(self) -> list[dict[str, Any]]:
        return [p for _, n, p in self.calls if n == names.NOTIFY]


def plan(on_timeout: str = "reject") -> dict[str, Any]:
    return {"name": "test", "version": 1, "hash": "p-1",
            "rings": [{"name": "ring0", "patching": "direct"},
                      {"name": "ring1", "patching": "direct",
                       "approval": {"mode": "manual", "approvers": ["alice@contoso.com"], "timeout": "PT4H",
                                    "onTimeout": on_timeout}}]}


def handler(gates: dict[str, str], notify: Callable[[Any], Any] | None = None,
            diff: Callable[[Any], Any] | None = None) -> Handler:
    def answer(kind: str, name: str, payload: Any) -> Any:
        if name == names.MANIFEST_DIFF:
            return diff(payload) if diff else {"rings": []}
        if name == names.LOAD_PLAN:
            return plan()
        if name == names.RING_DIRECT:
            outcome = gates[payload["ring"]]
            reasons = [] if outcome == "pass" else [{"vm": VM0, "reason": "health: became unhealthy"}]
            return {"gate": {"outcome": outcome, "reasons": reasons, "counts": {"total": 1}},
                    "manifest": MANIFEST if payload.get("buildManifest") else None, "healthSample": [],
                    "counts": {"vms": 1}, "halted": False}
        if name == names.RESOLVE_MEMBERS:
            return {"vms": []}
        if name == names.NOTIFY:
            return notify(payload) if notify else {"logged": True, "posted": False}
        if name == names.LEDGER_CHECK_DECISION:
            return {"accepted": True, "reason": ""}
        return {"written": True}
    return answer


def test_an_approval_that_waits_notifies_with_deadline_hash_and_links_then_the_timeout_halts() -> None:
    ctx = FakeContext({"initiator": "dave@contoso.com"}, handler({"ring0": "pass", "ring1": "pass"}), {})
    out = ctx.run()
    assert out["state"] == "halted", out
    sent = ctx.notifications()
    assert [n["kind"] for n in sent] == ["approval-waiting", "rollout-halted"]
    waiting = sent[0]
    assert waiting["rolloutId"] == "ro-test" and waiting["ring"] == "ring1" and waiting["severity"] == "warning"
    assert waiting["data"] == {"deadline": "2026-11-16T10:00:00Z", "manifestHash": "m-1",
                               "approvers": ["alice@contoso.com"],
                               "approvePath": "/api/rollouts/ro-test/rings/ring1/approve",
                               "pagePath": "/api/ui/rollouts/ro-test",
                               # what the approver signs, not only its hash
                               "manifest": {"hash": "m-1", "windows": [{"kb": "KB5044284", "title": None,
                                                                        "classifications": []}], "linux": []}}
    assert sent[1]["data"]["reason"].startswith("ring ring1 not approved")
    # deterministic ids: the same run (a replay) sends the same ids, and every event has its own
    again = FakeContext({"initiator": "dave@contoso.com"}, handler({"ring0": "pass", "ring1": "pass"}), {})
    again.run()
    assert [n["id"] for n in again.notifications()] == [n["id"] for n in sent]
    assert len({n["id"] for n in sent}) == len(sent)
    assert all(n["time"] >= "2026-11-16T06:00:00Z" for n in sent)


def test_a_failed_gate_notifies_with_its_reasons_and_the_halt() -> None:
    ctx = FakeContext({}, handler({"ring0": "fail"}), {})
    out = ctx.run()
    assert out["state"] == "halted"
    sent = ctx.notifications()
    assert [n["kind"] for n in sent] == ["gate-failed", "rollout-halted"]
    assert sent[0]["severity"] == "error" and sent[0]["ring"] == "ring0"
    assert sent[0]["data"]["reasons"] == ["r0-web-1: health: became unhealthy"]


def test_an_inconclusive_gate_notifies_and_asks_the_next_rings_approvers() -> None:
    ctx = FakeContext({}, handler({"ring0": "inconclusive", "ring1": "pass"}), {})
    ctx.run()
    kinds = [n["kind"] for n in ctx.notifications()]
    assert kinds[:2] == ["gate-inconclusive", "approval-waiting"]
    assert ctx.notifications()[1]["data"]["reason"] == "ring ring0 gate inconclusive"


def test_a_completed_rollout_notifies_its_outcome_and_a_failing_notify_never_fails_it() -> None:
    def broken(payload: Any) -> Any:
        raise RuntimeError("Event Grid is down and the activity crashed")

    decision = {"decisionId": "d1", "approver": "alice@contoso.com", "ring": "ring1", "manifestHash": "m-1",
                "verdict": "approve", "comment": ""}
    events = {names.EV_APPROVAL: [(T0 + timedelta(hours=1), decision)]}
    ctx = FakeContext({"initiator": "dave@contoso.com"}, handler({"ring0": "pass", "ring1": "pass"}, broken), events)
    out = ctx.run()
    assert out["state"] == "completed" and out["outcome"] == "passed", out
    assert [n["kind"] for n in ctx.notifications()] == ["approval-waiting", "rollout-completed"]
    assert ctx.notifications()[-1]["data"]["outcome"] == "passed"
    notes = [n["text"] for n in ctx.statuses[-1]["notes"]]
    assert any("notification rollout-completed could not be sent" in t for t in notes)
    # the decision's time is the orchestration's (platform) time when it took it (issue 9 item 2)
    [approval] = ctx.statuses[-1]["approvals"]
    assert approval["decidedAt"] == "2026-11-16T07:00:00Z"


def test_a_halt_request_notifies_rollout_halted_once() -> None:
    halt = {"haltId": "h1", "by": "bob@contoso.com", "reason": "incident"}
    events = {names.EV_HALT: [(T0 + timedelta(minutes=30), halt)]}
    ctx = FakeContext({}, handler({"ring0": "pass", "ring1": "pass"}), events)
    out = ctx.run()
    assert out["state"] == "halted"
    kinds = [n["kind"] for n in ctx.notifications()]
    assert kinds.count("rollout-halted") == 1 and kinds[-1] == "rollout-completed"
    halted = next(n for n in ctx.notifications() if n["kind"] == "rollout-halted")
    assert halted["data"]["by"] == "bob@contoso.com" and halted["data"]["reason"] == "incident"


def test_the_manifest_diff_is_asked_once_for_the_later_rings_and_shown_in_the_status() -> None:
    asked: list[Any] = []

    def diff(payload: Any) -> Any:
        asked.append(payload)
        return {"rings": [{"ring": "ring1", "machines": 4, "assessed": 3, "notAssessed": 1, "wouldInstall": 2,
                           "notInManifest": [{"patch": "KB999", "machines": 1}], "notInManifestCount": 1,
                           "inManifestNotApplicable": [], "inManifestNotApplicableCount": 0}]}

    ctx = FakeContext({}, handler({"ring0": "pass", "ring1": "pass"}, diff=diff), {})
    ctx.run()
    [payload] = asked
    assert payload["fromRing"] == "ring0" and payload["manifest"]["hash"] == "m-1" and payload["now"]
    waiting = next(s for s in ctx.statuses if (s.get("waitingFor") or {}).get("what") == "approval")
    assert waiting["manifestDiff"] == {"rings": [{"ring": "ring1", "machines": 4, "assessed": 3, "notAssessed": 1,
                                                  "wouldInstall": 2, "notInManifestCount": 1,
                                                  "inManifestNotApplicableCount": 0}]}
    written = [p for _, n, p in ctx.calls if n == names.LEDGER_ROLLOUT and p.get("manifestDiff")]
    assert written and written[0]["manifestDiff"]["rings"][0]["notInManifest"] == [{"patch": "KB999", "machines": 1}]


def test_an_unavailable_diff_is_a_note_never_a_failure() -> None:
    def broken(payload: Any) -> Any:
        raise RuntimeError("Resource Graph throttled")

    ctx = FakeContext({}, handler({"ring0": "pass", "ring1": "pass"}, diff=broken), {})
    out = ctx.run()
    assert out["state"] == "halted" and "not approved" in out["outcome"]  # the approval timed out, as before
    doc = ctx.statuses[-1]
    assert doc["manifestDiff"]["unavailable"] is True
    assert any("diff unavailable: Resource Graph throttled" in n["text"] for n in doc["notes"])


def test_a_later_direct_ring_polls_with_the_install_durations_ring0_learned() -> None:
    """Issue 11 (calls per VM): Ring 0 reports the longest install it saw per OS; the next direct
    ring gets them as ``expectedInstallSeconds`` and polls each install once, from its first wave."""
    base = handler({"ring0": "pass", "ring1": "pass"})

    def answer(kind: str, name: str, payload: Any) -> Any:
        out = base(kind, name, payload)
        if name == names.RING_DIRECT and payload["ring"] == "ring0":
            out["installSeconds"] = {"windows": 2400, "linux": 600}
        return out

    decision = {"decisionId": "d1", "approver": "alice@contoso.com", "ring": "ring1", "manifestHash": "m-1",
                "verdict": "approve"}
    ctx = FakeContext({"initiator": "dave@contoso.com"}, answer,
                      {names.EV_APPROVAL: [(T0 + timedelta(minutes=30), decision)]})
    ctx.run()
    directs = [p for _, n, p in ctx.calls if n == names.RING_DIRECT]
    assert [p["ring"] for p in directs] == ["ring0", "ring1"]
    assert directs[0]["expectedInstallSeconds"] is None  # nothing learned yet
    assert directs[1]["expectedInstallSeconds"] == {"windows": 2400, "linux": 600}


def test_the_rollout_and_guard_inputs_read_what_their_senders_send() -> None:
    """patchrings.boundary.rollout: the JSON the HTTP API / Event Grid trigger start them with."""
    from patchrings.boundary.codec import from_payload, to_payload
    from patchrings.boundary.rollout import GuardInput, RolloutInput

    api = {"initiator": "dave@contoso.com", "dryRun": False, "plan": None, "reason": "monthly",
           "trigger": {"kind": "manual"}, "releaseQuarantine": ["ro-old:ring0"]}
    typed = from_payload(RolloutInput, api)
    assert (typed.initiator, typed.dry_run, typed.plan, typed.reason) == ("dave@contoso.com", False, None, "monthly")
    assert typed.trigger == {"kind": "manual"} and typed.release_quarantine == ["ro-old:ring0"]
    assert to_payload(typed) == {k: v for k, v in api.items() if v is not None}
    assert from_payload(RolloutInput, {}) == RolloutInput()
    guard = from_payload(GuardInput, {"event": {"kind": "pre"}, "ring": "ring1", "cancelMargin": "PT2M", "x": 1})
    assert guard == GuardInput(event={"kind": "pre"}, ring="ring1", cancel_margin="PT2M")
