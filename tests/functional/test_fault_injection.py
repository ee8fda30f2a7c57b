"""Fault injection on the local platform: the rollout's safety promise holds when Azure misbehaves.

The promise (issue 13): a ring is patched only through an open gate, no gate is left open by a
failed rollout, and every refused or failed action is visible in the status and the ledger. Each
test injects faults through the ARM simulator's scenario (``faults:``, see emulator/arm/faults.py)
and checks the promise from the simulator's recorder, the fleet's final state and the ledger.

Faults that azure-core retries by itself (429/5xx) carry ``retryAfter: 1`` so the SDK's real-time
back-off stays short; 403 and dropped connections are not retried by the SDK.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.fakeapp.driver import Driver
from tests.functional.platform_driver import driver, installs, ledger, vm_name

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"
INITIATOR = "dave@contoso.com"
MC1 = "/maintenanceConfigurations/mc-ring1"


@pytest.fixture
def held(platform_factory: Any) -> Any:
    """``held(scenario)`` -> a started platform whose skip clock is held from before it starts."""
    from emulator.clock import make_clock

    holds: list[Any] = []

    def start(scenario: dict[str, Any], **kwargs: Any) -> Any:
        clock = make_clock("skip", start=START)
        hold = clock.hold()
        hold.__enter__()
        holds.append(hold)
        return platform_factory(scenario=scenario, clock=clock, **kwargs)

    yield start
    for hold in holds:
        hold.__exit__(None, None, None)


def approve(d: Driver, rid: str, ring: str, who: str) -> dict[str, Any]:
    doc = d.until_waiting(rid, "approval", ring)
    result = d.decide(rid, ring, "approve", doc["waitingFor"]["manifestHash"], who)
    assert result.status == 202, result
    return doc


def injected(p: Any, status: int | None = None) -> list[Any]:
    """Requests the simulator answered with an injected fault (or the given status)."""
    return [r for r in p.arm.recorder.find() if getattr(r, "fault", None) or (status and r.status == status)]


# ---------------------------------------------------------------------- 13.2: retries, close-down
def test_six_503s_on_a_get_right_after_a_retag_do_not_fail_the_rollout(held: Any) -> None:
    # The configuration GET the promotion makes after retagging Ring 1 (the pin's GET passes first).
    fault = {"type": "httpError", "status": 503, "method": "GET", "pathContains": MC1, "after": 1, "count": 6,
             "retryAfter": 1}
    p = held(sc.scenario(faults=[fault]))
    d = driver(p)
    rid = d.start(who=INITIATOR)
    approve(d, rid, "ring1", "alice@contoso.com")
    doc = d.until_waiting(rid, "approval", "ring2")
    assert doc["rings"][1]["gate"]["outcome"] == "pass", doc
    failed_gets = [r for r in p.arm.recorder.find(method="GET") if MC1.lower() in r.path.lower() and r.status == 503]
    assert len(failed_gets) == 6


def test_a_rollout_that_fails_closes_the_gate_and_records_failed(held: Any) -> None:
    # Every configuration GET after the pin fails: the promotion of Ring 1 cannot finish after
    # its VMs were retagged open.
    fault = {"type": "httpError", "status": 503, "method": "GET", "pathContains": MC1, "after": 1, "retryAfter": 1}
    p = held(sc.scenario(faults=[fault]))
    d = driver(p)
    rid = d.start(who=INITIATOR)
    approve(d, rid, "ring1", "alice@contoso.com")
    final = d.until_done(rid)
    out = final.output
    assert final.runtime_status.value == "Completed"
    assert out["state"] == "failed" and "rollout failed" in out["outcome"], out
    # the gate was opened (retag to ring1) and closed again (back to ring1-hold)
    values = [(r.body or {}).get("properties", {}).get("tags", {}).get("patchRing")
              for r in p.arm.recorder.find() if "/providers/Microsoft.Resources/tags/" in r.path
              and r.method in ("PATCH", "PUT")]
    assert "ring1" in values and values[-1] == "ring1-hold", values
    for name in sc.RING1:
        assert p.arm.vm(name).tags["patchRing"] == "ring1-hold"
    # the ledger does not say running: it says failed, with the reason
    row = ledger(p).rollout(rid) or {}
    assert row.get("state") == "failed" and "rollout failed" in str(row.get("outcome")), row
    assert out["rings"][1]["gate"] is None
    # nothing outside Ring 0 was installed on demand
    assert all(vm_name(r) in sc.RING0 for r in installs(p))
