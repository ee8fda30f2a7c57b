"""The previous ring's re-check reads in bulk (issue 11): one ``check_vm_health_batch`` per burst
of VMs instead of one ``check_vm_health`` per VM, same judgement (deleted leaves the sample,
unreadable is unknown and never authorises).

Stepped with the fake context of ``test_rollout_notify``."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators import names
from orchestrators.rollout import BURST_PAUSE, PREVIOUS_RING_BURST, Rollout
from orchestrators.status import RolloutStatus
from tests.unit.orchestrators.test_rollout_notify import T0, FakeContext, Group, plan

pytestmark = pytest.mark.unit

VMS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/"
HEALTHY: dict[str, Any] = {"powerState": "PowerState/running", "vmAgent": "Ready", "appHealth": None, "probes": [],
           "readError": None}


def vm(i: int) -> dict[str, Any]:
    return {"id": f"{VMS}r0-{i}", "name": f"r0-{i}", "os": "Windows"}


def drive(ctx: FakeContext, gen: Any) -> Any:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            yielded = gen.throw(error) if error is not None else gen.send(value)
        except StopIteration as stop:
            return stop.value
        error = None
        assert not isinstance(yielded, Group), "one activity at a time"
        value, failed = ctx.complete(yielded)
        if failed:
            error, value = value, None


def check(count: int, answer: Any) -> tuple[FakeContext, dict[str, Any]]:
    ctx = FakeContext({}, lambda kind, name, payload: answer(name, payload), {})
    rollout = Rollout(ctx, {})  # type: ignore[arg-type]
    rollout.plan = plan()
    rollout.status = RolloutStatus.new(rollout_id="ro-test", plan=rollout.plan, initiator=None,
                                       started_at="2026-11-16T06:00:00Z", dry_run=False)
    rollout.healthy_vms["ring0"] = [vm(i) for i in range(count)]
    return ctx, drive(ctx, rollout.previous_ring_health("ring0", "ring1"))


def samples(name: str, payload: Any, special: dict[str, dict[str, Any]] | None = None) -> Any:
    assert name == names.CHECK_HEALTH_BATCH, name
    return {"samples": [{**HEALTHY, "vm": c["vm"]["id"], **(special or {}).get(c["vm"]["name"], {})}
                        for c in payload["checks"]]}


def test_a_large_previous_ring_is_read_in_a_few_bursts() -> None:
    count = 2 * PREVIOUS_RING_BURST + 50
    ctx, result = check(count, samples)
    assert result["outcome"] == "healthy", result
    batches = [(at, p) for at, n, p in ctx.calls if n == names.CHECK_HEALTH_BATCH]
    assert not [n for _, n, _ in ctx.calls if n == names.CHECK_HEALTH]
    assert [len(p["checks"]) for _, p in batches] == [PREVIOUS_RING_BURST, PREVIOUS_RING_BURST, 50]
    assert all(c["full"] for _, p in batches for c in p["checks"])  # agent + app health count here
    assert [c["vm"]["name"] for _, p in batches for c in p["checks"]] == [f"r0-{i}" for i in range(count)]
    assert [at for at, _ in batches] == [T0, T0 + BURST_PAUSE, T0 + 2 * BURST_PAUSE]
    assert batches[0][1]["rolloutId"] == "ro-test" and batches[0][1]["ring"] == "ring0"


def test_same_judgement_deleted_leaves_unreadable_is_inconclusive_unhealthy_blocks() -> None:
    special: dict[str, dict[str, Any]] = {"r0-1": {"deleted": True, "readError": "NotFound"},
               "r0-2": {"readError": "AuthorizationFailed", "powerState": None, "vmAgent": None},
               "r0-3": {"appHealth": "Unhealthy"}}
    _, result = check(5, lambda name, payload: samples(name, payload, special))
    assert result["outcome"] == "unhealthy"
    assert result["removed"] == [f"{VMS}r0-1"] and result["inconclusive"] == [f"{VMS}r0-2"]
    assert any("r0-3 is unhealthy" in r for r in result["reasons"])


def test_an_unreadable_burst_or_a_short_answer_never_authorises() -> None:
    def down(name: str, payload: Any) -> Any:
        raise RuntimeError("ARM unavailable")

    _, result = check(3, down)
    assert result["outcome"] == "error" and "health could not be read: ARM unavailable" in result["reasons"][0]
    _, short = check(3, lambda name, payload: {"samples": samples(name, payload)["samples"][:2]})
    assert short["outcome"] == "error" and "2 health samples for 3 VMs" in short["reasons"][0]


def deferred_for(times: int) -> Any:
    """r0-1's read is deferred by the paced batch ``times`` times, then made."""
    seen = {"r0-1": 0}

    def answer(name: str, payload: Any) -> Any:
        special: dict[str, dict[str, Any]] = {}
        if any(c["vm"]["name"] == "r0-1" for c in payload["checks"]) and seen["r0-1"] < times:
            seen["r0-1"] += 1
            special["r0-1"] = {"deferred": True, "readError": "deferred: no read slot", "powerState": None,
                               "vmAgent": None}
        return samples(name, payload, special)
    return answer


def test_a_deferred_read_is_asked_again_for_that_vm_only() -> None:
    from orchestrators.rollout_base import DEFERRED_PAUSE
    ctx, result = check(4, deferred_for(2))
    assert result["outcome"] == "healthy", result
    batches = [(at, p) for at, n, p in ctx.calls if n == names.CHECK_HEALTH_BATCH]
    assert [[c["vm"]["name"] for c in p["checks"]] for _, p in batches] == [
        ["r0-0", "r0-1", "r0-2", "r0-3"], ["r0-1"], ["r0-1"]]
    assert [at for at, _ in batches] == [T0, T0 + DEFERRED_PAUSE, T0 + 2 * DEFERRED_PAUSE]


def test_a_read_deferred_every_time_is_inconclusive_never_healthy() -> None:
    from orchestrators.rollout_base import DEFERRED_REREADS
    ctx, result = check(3, deferred_for(DEFERRED_REREADS + 1))
    assert result["outcome"] != "healthy", result
    assert result["inconclusive"] == [f"{VMS}r0-1"], result
    assert len([n for _, n, _ in ctx.calls if n == names.CHECK_HEALTH_BATCH]) == 1 + DEFERRED_REREADS
