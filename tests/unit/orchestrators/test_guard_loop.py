"""The fail-closed guard's decisions, driven by a deterministic fake orchestration context.

The fake runs the guard generator on a virtual clock: each activity answers after a scripted
duration (or never), timers fire at their instant, ``task_any`` picks whichever is first. This
pins the guard's logic -- when it decides, how it retries the cancel, what it says when the cancel
cannot land -- without a host; the functional suite (tests/functional/test_guard_faults.py) proves
the same on the local platform against the ARM simulator.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.notify import notify_core
from orchestrators import names
from orchestrators.guard import install_drift, run_guard

pytestmark = pytest.mark.unit

MC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc-ring1"
START = datetime(2026, 11, 17, 12, 0, tzinfo=UTC)
RUN = f"{MC}/providers/Microsoft.Maintenance/applyUpdates/20261117120000"
NEVER = float("inf")


class Task:
    def __init__(self, kind: str, name: str = "", payload: Any = None, at: datetime | None = None) -> None:
        self.kind, self.name, self.payload, self.at = kind, name, payload, at
        self.result: Any = None
        self.is_completed = False
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Any_:
    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = tasks


Handler = Callable[[str, dict[str, Any], datetime], tuple[float, Any]]


class FakeContext:
    """Just enough of DurableOrchestrationContext for the guard, on a virtual clock."""

    def __init__(self, spec: dict[str, Any], now: datetime, handler: Handler) -> None:
        self.spec, self.current_utc_datetime, self.handler = spec, now, handler
        self.is_replaying = False
        self.instance_id = "guard-test"
        self.calls: list[tuple[datetime, str, dict[str, Any]]] = []
        self.statuses: list[dict[str, Any]] = []
        self.timers: list[datetime] = []

    def get_input(self) -> Any:
        return self.spec

    def new_uuid(self) -> str:
        self.uuids = getattr(self, "uuids", 0) + 1
        return f"00000000-0000-5000-8000-{self.uuids:012d}"

    def set_custom_status(self, status: Any) -> None:
        self.statuses.append(status)

    def call_activity(self, name: str, payload: Any) -> Task:
        return Task("activity", name, payload)

    def call_activity_with_retry(self, name: str, options: Any, payload: Any) -> Task:
        task = Task("activity", name, payload)
        task.retry = options  # type: ignore[attr-defined]
        return task

    def create_timer(self, at: datetime) -> Task:
        self.timers.append(at)
        return Task("timer", at=at)

    def task_any(self, tasks: list[Task]) -> Any_:
        return Any_(tasks)

    # -- the driver
    def finish(self, task: Task) -> tuple[datetime, Any, bool]:
        """When ``task`` completes, its result, and whether it failed."""
        if task.kind == "timer":
            assert task.at is not None
            return max(task.at, self.current_utc_datetime), None, False
        cached = getattr(task, "done", None)
        if cached is None:  # first seen = scheduled now: its answer time is fixed from here
            self.calls.append((self.current_utc_datetime, task.name, task.payload))
            seconds, result = self.handler(task.name, task.payload, self.current_utc_datetime)
            at = (datetime.max.replace(tzinfo=UTC) if seconds == NEVER
                  else self.current_utc_datetime + timedelta(seconds=seconds))
            cached = task.done = (at, result, isinstance(result, BaseException))  # type: ignore[attr-defined]
        return cached  # type: ignore[no-any-return]

    def run(self) -> Any:
        gen = run_guard(self)  # type: ignore[arg-type]
        value: Any = None
        while True:
            try:
                yielded = gen.send(value)
            except StopIteration as stop:
                return stop.value
            if isinstance(yielded, Any_):
                outcomes = [(self.finish(t), t) for t in yielded.tasks]
                (at, result, failed), winner = min(outcomes, key=lambda o: o[0][0])
                self.current_utc_datetime = at
                winner.result, winner.is_completed = result, True
                value = winner
            else:
                at, result, failed = self.finish(yielded)
                self.current_utc_datetime = at
                if failed:
                    value = None
                    try:
                        gen.throw(result)
                    except StopIteration as stop:
                        return stop.value
                    raise AssertionError("the guard must not throw into this driver's simple path")
                value = result

    def called(self, name: str) -> list[tuple[datetime, dict[str, Any]]]:
        return [(at, p) for at, n, p in self.calls if n == name]


def spec(pre_at: timedelta = timedelta(minutes=40), cutoff: datetime | None = None) -> dict[str, Any]:
    event = {"kind": "pre", "correlationId": RUN, "maintenanceConfigurationId": MC,
             "startDateTime": START.isoformat(), "endDateTime": (START + timedelta(hours=3)).isoformat()}
    if cutoff:
        event["cancellationCutOffDateTime"] = cutoff.isoformat()
    return {"event": event, "ring": "ring1", "cancelMargin": "PT2M"}


def fleet(gate: Any = None, cancel: list[Any] | None = None, config: Any = None,
          gate_seconds: float = 1, cancel_seconds: float = 2) -> Handler:
    """Scripted activities; ``cancel`` answers are consumed one per attempt (the last repeats)."""
    answers = list(cancel or [{"status": "Cancelled"}])

    def handle(name: str, payload: dict[str, Any], now: datetime) -> tuple[float, Any]:
        if name == names.LEDGER_READ_GATE:
            return gate_seconds, gate if gate is not None else {"authorised": False, "reason": "no rollout"}
        if name == names.CANCEL_RUN:
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            return cancel_seconds, answer
        if name == names.GET_CONFIGURATION:
            return 1, config if config is not None else {"installPatches": {}}
        if name in (names.LEDGER_EVENT, names.NOTIFY):
            return 1, {"written": True}
        raise AssertionError(f"unexpected activity {name}")

    return handle


def guard(handler: Handler, **kw: Any) -> tuple[FakeContext, dict[str, Any]]:
    s = spec(**{k: v for k, v in kw.items() if k in ("cutoff",)})
    pre_at = kw.get("pre_at", timedelta(minutes=40))
    ctx = FakeContext(s, START - pre_at, handler)
    return ctx, ctx.run()


CANCEL_BY = START - timedelta(minutes=10)
FAIL_503 = {"status": "Failed", "retryable": True, "httpStatus": 503, "retryAfter": None, "code": "HTTP503"}


# ---------------------------------------------------------------------- timing
@pytest.mark.parametrize("pre_at", [timedelta(minutes=40), timedelta(minutes=30)])
def test_an_unauthorised_run_is_cancelled_with_time_to_spare(pre_at: timedelta) -> None:
    ctx, out = guard(fleet(), pre_at=pre_at)
    assert out["decision"] == "cancelled"
    (gate_at, _gate_payload), = ctx.called(names.LEDGER_READ_GATE)
    assert gate_at == CANCEL_BY - timedelta(minutes=8)  # decided at T-18, even for a pre-event at T-30
    (cancel_at, payload), = ctx.called(names.CANCEL_RUN)
    assert payload["report"] is True and 0 < payload["budgetSeconds"] <= 60
    assert cancel_at < CANCEL_BY
    # no read before the PUT
    assert [n for _, n, _ in ctx.calls][:2] == [names.LEDGER_READ_GATE, names.CANCEL_RUN]


def test_a_cutoff_earlier_than_t10_moves_everything_earlier() -> None:
    cutoff = START - timedelta(minutes=25)
    ctx, out = guard(fleet(), cutoff=cutoff)
    assert out["cancelBy"] == "2026-11-17T11:35:00Z"
    assert ctx.called(names.LEDGER_READ_GATE)[0][0] == cutoff - timedelta(minutes=8)


def test_a_pre_event_after_the_decision_time_decides_at_once() -> None:
    ctx, out = guard(fleet(), pre_at=timedelta(minutes=13))
    assert ctx.called(names.LEDGER_READ_GATE)[0][0] == START - timedelta(minutes=13)
    assert out["decision"] == "cancelled"


# ---------------------------------------------------------------------- gate read
def test_a_slow_gate_read_counts_as_unauthorised_and_the_run_is_cancelled() -> None:
    ctx, out = guard(fleet(gate={"authorised": True}, gate_seconds=NEVER))
    assert out["decision"] == "cancelled"
    assert "gate could not be read" in out["gate"]["reason"]
    (cancel_at, _), = ctx.called(names.CANCEL_RUN)
    assert cancel_at <= CANCEL_BY - timedelta(minutes=7)  # the read had one minute


def test_the_gate_read_uses_the_read_retry_policy() -> None:
    seen: list[Any] = []

    def handler(name: str, payload: dict[str, Any], now: datetime) -> tuple[float, Any]:
        return fleet()(name, payload, now)

    ctx = FakeContext(spec(), START - timedelta(minutes=40), handler)
    original = ctx.call_activity_with_retry

    def spy(name: str, options: Any, payload: Any) -> Task:
        seen.append((name, options))
        return original(name, options, payload)

    ctx.call_activity_with_retry = spy  # type: ignore[method-assign]
    ctx.run()
    from orchestrators import retries
    assert (names.LEDGER_READ_GATE, retries.READ) in seen


# ---------------------------------------------------------------------- the cancel loop
def test_a_503_burst_is_outlasted() -> None:
    ctx, out = guard(fleet(cancel=[FAIL_503] * 6 + [{"status": "Cancelled"}]))
    assert out["decision"] == "cancelled"
    attempts = ctx.called(names.CANCEL_RUN)
    assert len(attempts) == 7 and all(at < CANCEL_BY for at, _ in attempts)
    gaps = [(b - a).total_seconds() for (a, _), (b, _) in itertools.pairwise(attempts)]
    assert gaps[:4] == [7, 12, 22, 32]  # 2 s attempt + back-off 5/10/20/30 s


def test_retry_after_is_honoured_but_never_past_the_last_try() -> None:
    throttled = {**FAIL_503, "httpStatus": 429, "retryAfter": 120}
    ctx, out = guard(fleet(cancel=[throttled, {"status": "Cancelled"}]))
    (a, _), (b, _) = ctx.called(names.CANCEL_RUN)
    assert (b - a).total_seconds() == 122
    long_wait = {**throttled, "retryAfter": 3600}
    ctx, out = guard(fleet(cancel=[long_wait, {"status": "Cancelled"}]))
    (a, _), (b, _) = ctx.called(names.CANCEL_RUN)
    assert b == CANCEL_BY - timedelta(seconds=20)  # one more try before the deadline
    assert out["decision"] == "cancelled"


@pytest.mark.parametrize("answer", [
    {"status": "AlreadyCancelled"}, {"status": "NotFound", "message": "no run"}])
def test_already_cancelled_and_not_found_are_final(answer: dict[str, Any]) -> None:
    ctx, out = guard(fleet(cancel=[answer]))
    assert out["decision"] == "cancelled" and len(ctx.called(names.CANCEL_RUN)) == 1


def test_a_cancel_that_never_lands_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="patchrings.orchestrators.guard")
    ctx, out = guard(fleet(cancel=[{**FAIL_503, "httpStatus": 403, "code": "AuthorizationFailed"}]))
    assert out["decision"] == "cancel-failed"
    attempts = ctx.called(names.CANCEL_RUN)
    assert len(attempts) > 10 and all(at < CANCEL_BY for at, _ in attempts)
    assert all(p["budgetSeconds"] <= (CANCEL_BY - at).total_seconds() for at, p in attempts)
    assert "COULD NOT CANCEL" in out["alert"] and RUN in out["alert"]
    assert "COULD NOT CANCEL" in ctx.statuses[-1]["alert"]
    (_, event), = ctx.called(names.LEDGER_EVENT)
    assert event["eventType"] == "guard:cancel-failed" and event["eventId"] == RUN
    (_, note), = ctx.called(names.NOTIFY)
    # contract NOTIFY: kind cancel-failed, a deterministic id, the rollout, the details in data
    assert note["kind"] == "cancel-failed" and note["severity"] == "error" and note["ring"]
    assert note["id"] == "00000000-0000-5000-8000-000000000001" and "rolloutId" in note
    assert note["data"]["correlationId"] == RUN and note["data"]["cancel"]["status"]
    assert any(RUN in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_too_late_is_reported_as_a_failed_cancel_at_once() -> None:
    ctx, out = guard(fleet(cancel=[{"status": "TooLate", "message": "CancellationCutoffPassed"}]))
    assert out["decision"] == "cancel-failed" and len(ctx.called(names.CANCEL_RUN)) == 1
    assert ctx.called(names.NOTIFY)


def test_hung_cancel_attempts_are_abandoned_and_retried_until_the_deadline() -> None:
    ctx, out = guard(fleet(cancel_seconds=NEVER))
    assert out["decision"] == "cancel-failed"
    attempts = ctx.called(names.CANCEL_RUN)
    assert len(attempts) >= 5 and all(at < CANCEL_BY for at, _ in attempts)
    assert {a["status"] for a in out["attempts"]} == {"Timeout"}


def test_a_slow_attempt_is_overtaken_by_the_next_one() -> None:
    durations = iter([180.0, 2.0])

    def handler(name: str, payload: dict[str, Any], now: datetime) -> tuple[float, Any]:
        if name == names.CANCEL_RUN:
            return next(durations), {"status": "Cancelled"}
        return fleet()(name, payload, now)

    ctx = FakeContext(spec(), START - timedelta(minutes=40), handler)
    out = ctx.run()
    assert out["decision"] == "cancelled"
    (first, p1), (second, _) = ctx.called(names.CANCEL_RUN)
    assert (second - first).total_seconds() == p1["budgetSeconds"] + 5
    assert [a["status"] for a in out["attempts"]] == ["Timeout", "Cancelled"]


def test_an_abandoned_attempt_that_lands_during_the_back_off_counts() -> None:
    answers = iter([(68.0, {"status": "Cancelled"}), (1.0, FAIL_503)])  # 60 s budget + 5 s grace

    def handler(name: str, payload: dict[str, Any], now: datetime) -> tuple[float, Any]:
        if name == names.CANCEL_RUN:
            return next(answers)
        return fleet()(name, payload, now)

    ctx = FakeContext(spec(), START - timedelta(minutes=40), handler)
    out = ctx.run()
    assert out["decision"] == "cancelled"
    assert len(ctx.called(names.CANCEL_RUN)) == 2  # no third attempt: the first one's late answer ended it


def test_a_crashing_cancel_activity_is_retried() -> None:
    ctx, out = guard(fleet(cancel=[RuntimeError("worker died"), {"status": "Cancelled"}]))
    assert out["decision"] == "cancelled" and len(ctx.called(names.CANCEL_RUN)) == 2


# ---------------------------------------------------------------------- authorised runs and drift
PINNED = {"rebootSetting": "IfRequired",
          "windowsParameters": {"kbNumbersToInclude": ["5034123"], "classificationsToInclude": []},
          "linuxParameters": {"packageNameMasksToInclude": ["openssl=3.0.13"]}}


def test_an_authorised_run_with_its_pins_in_place_is_allowed() -> None:
    ctx, out = guard(fleet(gate={"authorised": True, "reason": "ok"}, config={"installPatches": PINNED}))
    assert out["decision"] == "allowed"
    assert ctx.called(names.CANCEL_RUN) == []
    (_, event), = ctx.called(names.LEDGER_EVENT)
    assert event["eventType"] == "guard:allowed"


def test_a_redeployed_configuration_gets_the_authorised_run_cancelled() -> None:
    wiped = {"rebootSetting": "IfRequired",
             "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]},
             "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]}}
    ctx, out = guard(fleet(gate={"authorised": True}, config={"installPatches": wiped}))
    assert out["decision"] == "cancelled"
    assert "classificationsToInclude" in out["reason"]
    (_, event), = ctx.called(names.LEDGER_EVENT)
    assert event["eventType"] == "guard:cancelled" and "classificationsToInclude" in event["reason"]


def test_an_unreadable_configuration_gets_the_authorised_run_cancelled() -> None:
    def handler(name: str, payload: dict[str, Any], now: datetime) -> tuple[float, Any]:
        if name == names.GET_CONFIGURATION:
            return NEVER, None
        return fleet(gate={"authorised": True})(name, payload, now)

    ctx = FakeContext(spec(), START - timedelta(minutes=40), handler)
    out = ctx.run()
    assert out["decision"] == "cancelled" and "could not be read" in out["reason"]


def test_install_drift_against_the_gates_pins() -> None:
    manifest = {"windows": {"kbNumbers": ["5034123"]}, "linux": {"packages": ["openssl=3.0.13"]}}
    assert install_drift(PINNED, {"manifest": manifest}) == []
    assert install_drift(PINNED, {"manifest": manifest, "rebootSetting": "IfRequired"}) == []
    assert install_drift(PINNED, {"rebootSetting": "Never"})
    other = {**PINNED, "windowsParameters": {"kbNumbersToInclude": ["5099999"]}}
    assert install_drift(other, {"manifest": manifest})
    assert install_drift(PINNED, {"manifest": {**manifest, "hash": "nothash"}})
    assert install_drift({}, {}) == []  # nothing to compare: only the classification rule applies


# ---------------------------------------------------------------------- notify
def test_notify_logs_and_posts_best_effort(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="patchrings.activities.notify")
    sent: list[tuple[str, bytes]] = []
    def post(url: str, body: bytes, timeout: float) -> int:
        sent.append((url, body))
        return 202

    out = notify_core({"kind": "x", "correlationId": RUN}, webhook="https://hooks.example/x", post=post)
    assert out == {"logged": True, "posted": True, "status": 202}
    assert sent and RUN.encode() in sent[0][1]
    assert any("PATCHRINGS ALERT" in r.getMessage() and RUN in r.getMessage() for r in caplog.records)

    def boom(url: str, body: bytes, timeout: float) -> int:
        raise OSError("connection refused")

    assert notify_core({"kind": "x"}, webhook="https://hooks.example/x", post=boom)["posted"] is False
    assert notify_core({"kind": "x"}, webhook="file:///etc/passwd")["posted"] is False
    assert notify_core({"kind": "x"}, webhook="") == {"logged": True, "posted": False}


# ---------------------------------------------------------------------- unusable events (issue 10)
def test_an_event_without_a_usable_start_is_cancelled_at_once_not_ignored() -> None:
    """The guard holds the domain's MaintenanceEvent; one it cannot build (no valid start) still
    names a run, and that run is cancelled at once (fail closed), as before the refactor."""
    s = spec()
    del s["event"]["startDateTime"]
    now = START - timedelta(minutes=40)
    ctx = FakeContext(s, now, fleet())
    out = ctx.run()
    assert out["decision"] == "cancelled" and out["correlationId"] == RUN
    assert "startDateTime is required" in ctx.statuses[0]["deadlineError"]
    assert ctx.called(names.LEDGER_READ_GATE)[0][0] == now  # decided at once
    assert FakeContext({**s, "event": {"kind": "other", "correlationId": RUN}}, now, fleet()).run() == {
        "decision": "ignored", "reason": "not a usable pre-maintenance event"}
