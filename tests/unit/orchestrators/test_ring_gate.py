"""The ring gate's retag rounds: per-VM failures are retried in rounds with a pause, VMs the paced
activity deferred (its time budget ran out with writes still to start) go on at once without
spending a round, and VMs still failed after the last round fail the gate (never half open)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrators import names, ring_gate

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
PLAN = {
    "name": "p", "rings": [{"name": "ring1", "patching": "scheduled",
                            "members": {"tag": {"name": "patchRing", "value": "ring1", "holdValue": "ring1-hold"}},
                            "open": {"mode": "retag"}}],
}


class Ctx:
    def __init__(self, spec: dict[str, Any], instance_id: str = "ro-1:ring1:open:1",
                 calls: list[Any] | None = None) -> None:
        self.spec, self.current_utc_datetime, self.instance_id = spec, T0, instance_id
        self.calls: list[Any] = [] if calls is None else calls
        self.is_replaying = False

    def get_input(self) -> dict[str, Any]:
        return self.spec

    def call_activity_with_retry(self, name: str, _policy: Any, payload: Any) -> tuple[str, str, Any]:
        self.calls.append((name, payload))
        return ("activity", name, payload)

    def call_sub_orchestrator(self, name: str, payload: Any, instance_id: str) -> tuple[str, str, Any]:
        self.calls.append((name, {**payload, "_instance": instance_id}))
        return ("sub", name, (payload, instance_id))

    def create_timer(self, at: datetime) -> tuple[str, str, Any]:
        self.calls.append(("timer", at))
        return ("timer", "", at)


PREFIX = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines"


def _user() -> Any:
    user = inspect.unwrap(ring_gate.ring_gate_orchestrator._function.get_user_function())
    return getattr(user, "orchestrator_function", user)


def drive(ctx: Ctx, vms: list[dict[str, Any]], answers: list[dict[str, Any]]) -> Any:
    """Run one ring_gate instance; its slice instances run inline (same call log and answers);
    ``plan_ring_waves`` / ``read_wave_members`` answer from ``vms`` as the ledger would."""
    gen = _user()(ctx)
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            kind, name, payload = gen.throw(error) if error is not None else gen.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        if kind == "timer":
            ctx.current_utc_datetime = payload
        elif kind == "sub":
            child = Ctx(payload[0], payload[1], ctx.calls)
            child.current_utc_datetime = ctx.current_utc_datetime
            try:
                value = drive(child, vms, answers)
            except RuntimeError as exc:
                error = exc
            ctx.current_utc_datetime = max(ctx.current_utc_datetime, child.current_utc_datetime)
        elif name == names.PLAN_RING_WAVES:
            value = {"count": len(vms), "waves": [len(vms)] if vms else [], "sliceSize": payload["sliceSize"],
                     "hash": "h1"}
        elif name == names.READ_WAVE_MEMBERS:
            assert payload["planHash"] == "h1" and payload["runId"] == "ro-1:ring1:open:1:members@2026-11-16T06:00:00Z"
            size = ring_gate.GATE_SLICE
            value = {"vms": vms[payload["slice"] * size:(payload["slice"] + 1) * size]}
        else:
            value = answers.pop(0)


def run(answers: list[dict[str, Any]], members: int = 5) -> tuple[Ctx, Any, BaseException | None]:
    ctx = Ctx({"ringSpec": PLAN["rings"][0], "ring": "ring1", "open": True, "rolloutId": "ro-1"})
    vms = [{"id": f"{PREFIX}/v{i}"} for i in range(members)]
    try:
        return ctx, drive(ctx, vms, list(answers)), None
    except RuntimeError as exc:
        return ctx, None, exc


def _failed(*codes: str) -> list[dict[str, Any]]:
    return [{"vm": f"v{i}", "error": {"code": code}} for i, code in enumerate(codes)]


def test_deferred_vms_go_on_at_once_without_spending_a_round() -> None:
    answers = [{"written": 2, "failed": _failed("Deferred", "Deferred", "Deferred")},
               {"written": 2, "failed": _failed("Deferred")},
               {"written": 1, "failed": []}]
    ctx, out, error = run(answers)
    assert error is None and out["changed"] == 5 and out["failed"] == []
    assert [c[0] for c in ctx.calls if c[0] in (names.RETAG, "timer")] == [names.RETAG] * 3  # no timers
    assert all(c[1]["rolloutId"] == "ro-1" for c in ctx.calls if c[0] == names.RETAG)


def test_other_failures_spend_rounds_and_fail_the_gate_after_the_last() -> None:
    answers = [{"written": 4, "failed": _failed("AuthorizationFailed")}] + \
              [{"written": 0, "failed": _failed("AuthorizationFailed")}] * (ring_gate.RETAG_ROUNDS - 1)
    ctx, out, error = run(answers)
    assert out is None and error is not None and "after 4 rounds" in str(error)
    retags = [c for c in ctx.calls if c[0] == names.RETAG]
    timers = [c for c in ctx.calls if c[0] == "timer"]
    assert len(retags) == ring_gate.RETAG_ROUNDS and len(timers) == ring_gate.RETAG_ROUNDS - 1
    assert timers[0][1] == T0 + ring_gate.RETAG_PAUSE


def test_deferred_without_progress_spends_a_round() -> None:
    """A deferred-only answer that wrote nothing is no progress: it counts as a round, so the gate
    can never loop for ever."""
    stuck = {"written": 0, "failed": _failed(*["Deferred"] * 5)}
    ctx, _out, error = run([stuck] * ring_gate.RETAG_ROUNDS)
    assert error is not None and len([c for c in ctx.calls if c[0] == names.RETAG]) == ring_gate.RETAG_ROUNDS


def test_a_large_ring_is_retagged_slice_by_slice_and_its_instance_holds_no_vm() -> None:
    """Issue 11: 1,200 members are planned into the ledger once; three slice instances (500, 500,
    200) read and retag their own VMs one after the other; the gate's own history holds counts."""
    vms = [{"id": f"{PREFIX}/v{i:04d}", "name": f"v{i:04d}"} for i in range(1200)]
    for vm in vms[:30]:
        vm["scheduleIssue"] = "patchMode is not AutomaticByPlatform"
    ctx = Ctx({"ringSpec": PLAN["rings"][0], "ring": "ring1", "open": True, "rolloutId": "ro-1"})
    answers = [{"written": n, "failed": []} for n in (500, 500, 200)]
    out = drive(ctx, vms, answers)
    [plan] = [p for n, p in ctx.calls if n == names.PLAN_RING_WAVES]
    assert plan["runId"] == "ro-1:ring1:open:1:members@2026-11-16T06:00:00Z"  # this execution's own plan
    assert plan["sliceSize"] == ring_gate.GATE_SLICE
    assert plan["ringSpec"]["rate"]["maxConcurrency"] == "100%"  # one wave: only sliced
    subs = [p for n, p in ctx.calls if n == names.RING_GATE]
    assert [p["_instance"] for p in subs] == [f"ro-1:ring1:open:1:s{i}" for i in range(3)]
    assert all("vms" not in p and "vmIds" not in p for p in subs)  # no VM crosses into the gate's history
    retags = [p for n, p in ctx.calls if n == names.RETAG]
    assert [len(p["vmIds"]) for p in retags] == [500, 500, 200]
    assert out["members"] == 1200 and out["changed"] == 1200 and out["failed"] == []
    assert out["scheduleIssueCount"] == 30 and len(out["scheduleIssues"]) == ring_gate.MAX_ISSUES


def test_a_failed_slice_fails_the_gate_after_every_slice_was_tried() -> None:
    vms = [{"id": f"{PREFIX}/v{i:04d}"} for i in range(600)]
    bad = {"written": 99, "failed": [{"vm": vms[0]["id"], "error": {"code": "AuthorizationFailed"}}]}
    answers = [bad] * ring_gate.RETAG_ROUNDS + [{"written": 100, "failed": []}]
    ctx = Ctx({"ringSpec": PLAN["rings"][0], "ring": "ring1", "open": False, "rolloutId": "ro-1"})
    with pytest.raises(RuntimeError, match="failed for 1 VM"):
        drive(ctx, vms, answers)
    assert len([p for n, p in ctx.calls if n == names.RETAG]) == ring_gate.RETAG_ROUNDS + 1  # the second slice too
    assert {p["value"] for n, p in ctx.calls if n == names.RETAG} == {"ring1-hold"}  # closing: the hold value


def test_enable_configuration_reads_slices_for_schedule_issues_only() -> None:
    ring = {**PLAN["rings"][0], "open": {"mode": "enableConfiguration"}}
    vms = [{"id": f"{PREFIX}/v{i}", "name": f"v{i}", **({"scheduleIssue": "x"} if i == 1 else {})} for i in range(3)]
    ctx = Ctx({"ringSpec": ring, "ring": "ring1", "open": True, "rolloutId": "ro-1"})
    out = drive(ctx, vms, [{"changed": True}])
    assert [n for n, _ in ctx.calls] == [names.SET_ASSIGNMENT, names.PLAN_RING_WAVES, names.RING_GATE,
                                         names.READ_WAVE_MEMBERS]
    assert out["changed"] == 1 and out["members"] == 3 and out["scheduleIssues"] == [{"vm": "v1", "issue": "x"}]
    closing = Ctx({"ringSpec": ring, "ring": "ring1", "open": False, "rolloutId": "ro-1"})
    out = drive(closing, vms, [{"changed": True}])
    assert [n for n, _ in closing.calls] == [names.SET_ASSIGNMENT] and out["members"] is None
