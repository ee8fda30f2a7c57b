"""Pure health rules for Arc-enabled servers (issue 12): the agent status replaces power state and
VM agent; anything but Connected is unknown (inconclusive), never healthy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from patchrings.domain.health import HealthPolicy, HealthSample, HealthTracker, evaluate_sample

pytestmark = pytest.mark.unit

POLICY = HealthPolicy()


def arc(status: str | None, **extra: object) -> HealthSample:
    machine = "/subscriptions/s/resourceGroups/r/providers/Microsoft.HybridCompute/machines/m"
    return HealthSample.from_dict({"vm": machine,
                                   "kind": "arc", "agentStatus": status, "lastStatusChange": "2026-11-16T05:00:00Z",
                                   "os": "Windows Server 2022", **extra})


def test_a_connected_arc_machine_is_healthy_without_power_state_or_vm_agent() -> None:
    assert evaluate_sample(POLICY, arc("Connected")) == ("healthy", [])


@pytest.mark.parametrize("status", ["Disconnected", "Expired", "Error", "AwaitingConnection", None, "SomethingNew"])
def test_any_other_agent_status_is_unknown_never_healthy(status: str | None) -> None:
    state, reasons = evaluate_sample(POLICY, arc(status))
    assert state == "unknown"
    assert reasons[0].startswith(f"Arc agent is {status or 'not reporting'} since 2026-11-16T05:00:00Z")


def test_a_failing_probe_makes_an_arc_machine_unhealthy_even_when_disconnected() -> None:
    probe = {"url": "https://m/health", "ok": False, "reason": "HTTP 503, expected 200"}
    state, reasons = evaluate_sample(POLICY, arc("Disconnected", probes=[probe]))
    assert state == "unhealthy" and "probe https://m/health failed" in reasons[0]


def test_required_application_health_cannot_be_proven_on_arc() -> None:
    policy = HealthPolicy.from_dict({"checks": {"applicationHealth": "required"}})
    assert evaluate_sample(policy, arc("Connected"))[0] == "unknown"


def test_the_sample_round_trips_with_its_arc_fields() -> None:
    doc = arc("Expired").to_dict()
    assert doc["kind"] == "arc" and doc["agentStatus"] == "Expired" and doc["os"] == "Windows Server 2022"
    assert HealthSample.from_dict(doc) == arc("Expired")


def test_a_disconnected_arc_machine_ends_verification_unknown() -> None:
    policy = HealthPolicy.from_dict({"phases": {"waitDuration": "PT0M", "elasticDuration": "PT10M",
                                                "healthyStateDuration": "PT5M", "pollInterval": "PT1M"}})
    start = datetime(2026, 11, 16, 7, 0, tzinfo=UTC)
    tracker = HealthTracker(policy, start)
    state = None
    at = start
    for _ in range(40):
        state = tracker.observe(at, arc("Disconnected"))
        if state.done:
            break
        at = state.next_check_at or at + timedelta(minutes=1)
    assert state is not None and state.done and state.outcome == "unknown"
