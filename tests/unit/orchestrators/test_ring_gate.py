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
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec, self.current_utc_datetime, self.calls = spec, T0, []

    def get_input(self) -> dict[str, Any]:
        return self.spec

    def call_activity_with_retry(self, name: str, _policy: Any, payload: Any) -> tuple[str, str, Any]:
        self.calls.append((name, payload))
        return ("activity", name, payload)

    def create_timer(self, at: datetime) -> tuple[str, str, Any]:
        self.calls.append(("timer", at))
        return ("timer", "", at)


def run(answers: list[dict[str, Any]], members: int = 5) -> tuple[Ctx, Any, BaseException | None]:
    ctx = Ctx({"ringSpec": PLAN["rings"][0], "ring": "ring1", "open": True, "rolloutId": "ro-1"})
    user = inspect.unwrap(ring_gate.ring_gate_orchestrator._function.get_user_function())
    gen = getattr(user, "orchestrator_function", user)(ctx)
    prefix = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines"
    vms = [{"id": f"{prefix}/v{i}"} for i in range(members)]
    answers = list(answers)
    value: Any = None
    try:
        while True:
            kind, name, payload = gen.send(value)
            if kind == "timer":
                ctx.current_utc_datetime = payload
                value = None
            elif name == names.RESOLVE_MEMBERS:
                value = {"vms": vms}
            else:
                value = answers.pop(0)
    except StopIteration as stop:
        return ctx, stop.value, None
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
    assert [c[0] for c in ctx.calls if c[0] != names.RESOLVE_MEMBERS] == [names.RETAG] * 3  # no timers
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
