"""cancel_run against the ARM simulator under injected faults (issue 13.1, 13.12, activity side).

* the PUT goes out at once (no GET before it);
* with ``report`` every fault comes back as a ``Failed`` answer the guard can act on (retryable,
  Retry-After, HTTP status) instead of an exception, and with ``budgetSeconds`` it is exactly one
  attempt (the guard retries with durable timers, not the SDK);
* a correlationId that is not ``<configuration id>/providers/Microsoft.Maintenance/applyUpdates/
  <14 digits>`` is refused and nothing at all is sent.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from activities.maintenance import cancel_run_core
from patchrings.clients import AzureClients
from patchrings.errors import ArmTargetRefused
from patchrings.settings import Settings
from tests.functional.activities.conftest import MC_RING1, SCENARIO, SimHandle

pytestmark = pytest.mark.functional

PUT_FAULT = {"method": "PUT", "pathContains": "/applyUpdates/"}


def simulator_offers(fault: dict[str, Any]) -> bool:
    """Whether this simulator's scenario schema accepts the fault (403 / slowAnswer are landing)."""
    from emulator.arm.scenario import ScenarioError, validate_scenario

    scenario = copy.deepcopy(SCENARIO)
    scenario["faults"] = [{**fault, **PUT_FAULT, "count": 1}]
    try:
        validate_scenario(scenario)
    except ScenarioError:
        return False
    return True


FORBIDDEN = {"type": "httpError", "status": 403, "code": "AuthorizationFailed"}


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    handles: list[tuple[SimHandle, AzureClients]] = []

    def build(faults: list[dict[str, Any]]) -> tuple[SimHandle, AzureClients, str]:
        scenario = copy.deepcopy(SCENARIO)
        scenario["faults"] = faults
        handle = SimHandle(tmp_path / f"arm{len(handles)}", scenario)
        settings = Settings(arm_endpoint=handle.sim.endpoint, arm_auth="static-token",
                            arm_static_token=handle.sim.token, arm_ca_bundle=str(handle.sim.ca_path),
                            ledger_connection="UseDevelopmentStorage=true",
                            ledger_table_prefix="c" + uuid.uuid4().hex[:12])
        clients = AzureClients(settings)
        handles.append((handle, clients))
        run = handle.sim.fire_run("ring1", handle.clock.now() + timedelta(minutes=45))
        handle.clock.advance_until(lambda: handle.sim.run(run) is not None)
        return handle, clients, run

    yield build
    for handle, clients in handles:
        clients.close()
        handle.stop()


def puts(arm: SimHandle) -> list[Any]:
    return arm.sim.recorder.find(method="PUT", path_contains="/applyUpdates/")


def test_the_cancel_put_goes_out_at_once(make: Any) -> None:
    arm, clients, run = make([])
    with arm.clock.hold():
        out = cancel_run_core(clients, {"correlationId": run, "report": True, "budgetSeconds": 30})
        again = cancel_run_core(clients, {"correlationId": run, "report": True, "budgetSeconds": 30})
    assert out["status"] == "Cancelled" and again["status"] == "Cancelled"  # idempotent, no GET needed
    assert arm.sim.recorder.find(method="GET", path_contains="/applyUpdates/") == []
    assert len(puts(arm)) == 2
    assert arm.sim.run(run).cancelled_at is not None


@pytest.mark.parametrize(("fault", "http", "retry_after"), [
    ({"type": "httpError", "status": 503}, 503, None),
    ({"type": "httpError", "status": 500}, 500, None),
    ({"type": "httpError", "status": 429, "retryAfter": 7}, 429, 7.0),
    pytest.param(FORBIDDEN, 403, None, marks=pytest.mark.skipif(
        not simulator_offers(FORBIDDEN), reason="the simulator does not offer httpError 403 yet")),
    ({"type": "dropConnection"}, None, None),
])
def test_a_fault_is_reported_not_raised_and_not_retried_inside(make: Any, fault: dict[str, Any], http: Any,
                                                              retry_after: Any) -> None:
    arm, clients, run = make([{**fault, **PUT_FAULT, "count": 1}])
    with arm.clock.hold():
        first = cancel_run_core(clients, {"correlationId": run, "report": True, "budgetSeconds": 20})
        assert first["status"] == "Failed", first
        assert first["retryable"] is True
        assert first["httpStatus"] == http
        assert first["retryAfter"] == retry_after
        assert len(puts(arm)) <= 1  # one attempt (a dropped connection may not even be recorded)
        assert arm.sim.run(run).cancelled_at is None
        second = cancel_run_core(clients, {"correlationId": run, "report": True, "budgetSeconds": 20})
    assert second["status"] == "Cancelled", second
    assert arm.sim.run(run).cancelled_at is not None


def test_without_report_an_unknown_outcome_still_raises(make: Any) -> None:
    arm, clients, run = make([{"type": "httpError", "status": 503, **PUT_FAULT}])
    with arm.clock.hold(), pytest.raises(RuntimeError, match="HTTP 503"):
        cancel_run_core(clients, {"correlationId": run, "budgetSeconds": 20})


def test_too_late_is_not_a_failure(make: Any) -> None:
    arm, clients, _ = make([])
    late = arm.sim.fire_run("ring1", arm.clock.now() + timedelta(minutes=5))
    arm.clock.advance_until(lambda: arm.sim.run(late) is not None)
    with arm.clock.hold():
        out = cancel_run_core(clients, {"correlationId": late, "report": True, "budgetSeconds": 20})
    assert out["status"] == "TooLate", out
    assert "CancellationCutoffPassed" in out["message"]


HOSTILE = [
    "https://attacker.example/subscriptions/x",
    "https://attacker.example" + MC_RING1 + "/providers/Microsoft.Maintenance/applyUpdates/20261117020000",
    "//attacker.example" + MC_RING1 + "/providers/Microsoft.Maintenance/applyUpdates/20261117020000",
    MC_RING1 + "/providers/Microsoft.Maintenance/applyUpdates/20261117020000?x=https://attacker.example",
    MC_RING1 + "/providers/Microsoft.Maintenance/applyUpdates/default",
    MC_RING1,
    "",
]


@pytest.mark.parametrize("target", HOSTILE)
def test_a_hostile_correlation_id_sends_nothing(make: Any, target: str) -> None:
    arm, clients, _ = make([])
    before = len(arm.sim.recorder)
    out = cancel_run_core(clients, {"correlationId": target, "report": True})
    assert out["status"] == "Refused" and out["retryable"] is False and out["code"] == "ArmTargetRefused"
    with pytest.raises(ArmTargetRefused):
        cancel_run_core(clients, {"correlationId": target})
    assert len(arm.sim.recorder) == before


@pytest.mark.parametrize("target", HOSTILE)
def test_collect_run_results_refuses_a_hostile_correlation_id(make: Any, target: str) -> None:
    from activities.maintenance import collect_run_results_core
    from tests.functional.activities.conftest import vm_id

    arm, clients, _ = make([])
    before = len(arm.sim.recorder)
    with pytest.raises(ArmTargetRefused):
        collect_run_results_core(clients, {"correlationId": target, "vms": [{"id": vm_id("web-01")}]})
    assert len(arm.sim.recorder) == before
