"""Fault injection on the local platform: the rollout's safety promise holds when Azure misbehaves.

The promise (issue 13): a ring is patched only through an open gate, no gate is left open by a
failed rollout, and every refused or failed action is visible in the status and the ledger. Each
test injects faults through the ARM simulator's scenario (``faults:``, see emulator/arm/faults.py)
and checks the promise from the simulator's recorder, the fleet's final state and the ledger.

Faults that azure-core retries by itself (429/5xx) carry ``retryAfter: 1`` so the SDK's real-time
back-off stays short; 403 is not retried by the SDK.

Matrix: 10 ARM calls x 6 faults (dropped connection, 429 + Retry-After, 500, 503, slow answer,
403 x3), one rollout per call with its six faults at successive requests of that call (each test
asserts every fault really fired), plus a run with ~10% faults of every transient kind across all
calls. The guard's cancel PUT (``applyUpdates``), which a rollout with authorised runs never sends,
is faulted in test_guard_faults.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.fakeapp.driver import Driver
from tests.functional.fault_platform import held_platforms, shared_azurite
from tests.functional.platform_driver import driver, installs, ledger, vm_name

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"
INITIATOR = "dave@contoso.com"
MC1 = "/maintenanceConfigurations/mc-ring1"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Azurite for the module; each platform gets its own ledger tables (fault_platform)."""
    yield from shared_azurite(tmp_path_factory)


@pytest.fixture
def held(azurite: str, tmp_path: Path) -> Iterator[Any]:
    """``held(scenario, settings=...)`` -> a started platform whose skip clock is held from before it starts."""
    yield from held_platforms(azurite, tmp_path, START)


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
    # The configuration GET the promotion makes after retagging Ring 1 (the planner's read at the
    # start and the pin's GET pass first).
    fault = {"type": "httpError", "status": 503, "method": "GET", "pathContains": MC1, "after": 2, "count": 6,
             "retryAfter": 1}
    p = held(sc.scenario(faults=[fault]))
    d = driver(p)
    rid = d.start(who=INITIATOR)
    approve(d, rid, "ring1", "alice@contoso.com")
    doc = d.until_waiting(rid, "approval", "ring2")
    # Ring 1 was promoted, its run authorised and collected: the outage cost nothing
    assert [r["decision"] for r in doc["rings"][1]["runs"]] == ["authorised"], doc
    assert doc["rings"][1]["gate"]["outcome"] in ("pass", "inconclusive"), doc
    failed_gets = [r for r in p.arm.recorder.find(method="GET") if MC1.lower() in r.path.lower() and r.status == 503]
    assert len(failed_gets) == 6


def test_a_rollout_that_fails_closes_the_gate_and_records_failed(held: Any) -> None:
    # Every configuration GET after the planner's and the pin's fails: the promotion of Ring 1 cannot finish after
    # its VMs were retagged open.
    fault = {"type": "httpError", "status": 503, "method": "GET", "pathContains": MC1, "after": 2, "retryAfter": 1}
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


# ---------------------------------------------------------------------- the main matrix
FINAL = ("Completed", "Failed", "Terminated")
APPROVERS = {"ring1": "alice@contoso.com", "ring2": "carol@contoso.com"}

# Every ARM call the rollout (and the guard and triggers on its path) makes, by RBAC action. The
# guard's cancel (``Microsoft.Maintenance/applyUpdates/*``) is not here: a rollout whose runs are
# authorised never calls it (0 requests in a clean 3-ring run), so faulting it here tested nothing
# beyond a clean rollout; every fault at the cancel PUT is in test_guard_faults.py.
ACTIVITIES = {
    "resolve_ring_members": "Microsoft.Compute/virtualMachines/read",
    "start_install": "Microsoft.Compute/virtualMachines/installPatches/action",
    "poll_install": "Microsoft.Compute/locations/operations/read",
    "health_and_results": "Microsoft.Compute/virtualMachines/instanceView/read",
    "collect_run_results_arg": "Microsoft.ResourceGraph/resources/read",
    "retag_vms": "Microsoft.Resources/tags/*",
    # the tag writes alone: a per-VM failure comes back in retag_vms' ``failed`` (no exception), so
    # the gate must retry those VMs and fail loudly rather than report a half-open/half-closed gate
    "retag_writes": "Microsoft.Resources/tags/write",
    "pin_manifest": "Microsoft.Maintenance/maintenanceConfigurations/write",
    "get_configuration": "Microsoft.Maintenance/maintenanceConfigurations/read",
    # the gate of a dynamic-scope ring: the assignment's PUT (open) and DELETE (close) ...
    "set_ring_assignment": "Microsoft.Maintenance/configurationAssignments/[wd]*",
    # ... and the assignment reads (membership checks and set_ring_assignment's check-before-act)
    "assignment_reads": "Microsoft.Maintenance/configurationAssignments/read",
}
# Each fault the simulator offers, injected at successive requests of one call in one rollout
# (one rollout per call instead of one per call and fault): the transient ones first (a dropped
# connection, 429 with Retry-After, 500, 503: four failures in a row, which the SDK's and the
# host's retries must absorb, or the rollout must end visibly with every gate closed), then a slow
# answer, then a burst of 403s last (a refusal may halt the rollout, so nothing is injected after
# it). The drop comes first because azure-core's back-off after it is exponential in the number of
# errors so far (0 s as the first error, 6.4 s as the fourth); ``retryAfter: 1`` keeps the others'
# real-time waits short.
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("drop", {"type": "dropConnection", "count": 1}),
    ("429", {"type": "httpError", "status": 429, "retryAfter": 1, "count": 1}),
    ("500", {"type": "httpError", "status": 500, "retryAfter": 1, "count": 1}),
    ("503", {"type": "httpError", "status": 503, "retryAfter": 1, "count": 1}),
    ("slow", {"type": "slowAnswer", "seconds": 2, "count": 1}),
    ("403", {"type": "httpError", "status": 403, "count": 3}),
]


def successive(action: str) -> list[dict[str, Any]]:
    """The faults of :data:`FAULTS` at ``action``, each on the requests right after the previous one's.

    The simulator tries faults in list order and a fault only counts the requests that reach it
    (none of the earlier ones fired), so without ``after`` each fault starts where the one before
    it ran out of ``count``.
    """
    return [{**fault, "action": action} for _, fault in FAULTS]


def drive(d: Driver, rid: str) -> Any:
    """Approve whatever the rollout asks for (as a listed approver) until it ends."""
    decided: set[tuple[str, str]] = set()
    while True:
        def next_step() -> Any:
            if d.runtime(rid) in FINAL:
                return "done"
            doc = d.doc(rid)
            waiting = doc.get("waitingFor") or {}
            key = (str(waiting.get("ring")), str(waiting.get("manifestHash")))
            if waiting.get("what") == "approval" and key not in decided:
                return doc
            return None

        step = d.until(next_step, timeout=240)
        if step == "done":
            return d.status(rid)
        waiting = step["waitingFor"]
        ring = waiting["ring"]
        who = APPROVERS.get(ring) or next(a for a in waiting["approvers"] if a != INITIATOR)
        decided.add((str(ring), str(waiting["manifestHash"])))
        result = d.decide(rid, ring, "approve", waiting["manifestHash"], who)
        assert result.status in (202, 409), result


def assert_promise(p: Any, rid: str, final: Any) -> dict[str, Any]:
    """The safety promise, from the simulator's records, the fleet and the ledger."""
    out = final.output or {}
    lg = ledger(p)
    # 1. installPatches only reached Ring 0 (the direct ring); never a later ring's VM
    assert all(vm_name(r) in sc.RING0 for r in installs(p)), [vm_name(r) for r in installs(p)]
    # 2. every maintenance run that patched anything was authorised by the rollout (gate open)
    for run in p.arm.runs:
        if run.plans:
            gates = lg.run_gates(run.correlation_id)
            assert any(g.get("authorised") is True for g in gates), (run.correlation_id, gates)
    # 3. no gate left open, whatever the outcome: Ring 1 back on hold, Ring 2's assignment removed
    for name in sc.RING1:
        assert p.arm.vm(name).tags["patchRing"] == "ring1-hold", name
    writes = [r for r in p.arm.recorder.find() if "/configurationassignments/patchrings-ring2" in r.path.lower()
              and r.method in ("PUT", "DELETE") and r.status < 300]
    assert not writes or writes[-1].method == "DELETE", [(w.method, w.status) for w in writes]
    # 4. the outcome is visible in the status and the ledger alike (never "running")
    row = lg.rollout(rid) or {}
    status = final.custom_status if isinstance(final.custom_status, dict) else {}
    assert out.get("state") in ("completed", "halted", "failed"), out
    assert row.get("state") == out["state"] == status.get("state"), (row.get("state"), out.get("state"))
    if out["state"] != "completed":
        assert out.get("outcome") and row.get("outcome") and status.get("outcome"), (out, row)
    # 5. every Ring 0 VM that was attempted has its verdict in the ledger
    attempted = {vm_name(r) for r in installs(p)}
    recorded = {r["vm"].rsplit("/", 1)[-1] for r in lg.vm_results(rid, "ring0") if r.get("verdict")}
    assert attempted <= recorded, (attempted, recorded)
    return out


@pytest.mark.parametrize("activity", sorted(ACTIVITIES))
def test_each_fault_at_each_call_keeps_the_promise(held: Any, activity: str) -> None:
    p = held(sc.scenario(faults=successive(ACTIVITIES[activity])))
    d = driver(p)
    rid = d.start(who=INITIATOR)
    final = drive(d, rid)
    out = assert_promise(p, rid, final)
    triggered = {name: f["triggered"] for (name, _), f in zip(FAULTS, p.arm.fault_list(), strict=True)}
    print(f"MATRIX {activity}: {out['state']} ({str(out.get('outcome'))[:100]}) triggered={triggered}")
    # every fault really reached the call (the 403s at least once)
    assert all(triggered.values()), triggered
    # and every injected answer is in the simulator's record
    assert len(injected(p)) >= sum(triggered.values()), triggered


def test_ten_percent_faults_across_the_whole_run_keep_the_promise(held: Any) -> None:
    faults = [
        {"type": "httpError", "status": 503, "retryAfter": 1, "probability": 0.03},
        {"type": "httpError", "status": 500, "retryAfter": 1, "probability": 0.02},
        {"type": "httpError", "status": 429, "retryAfter": 1, "probability": 0.02},
        {"type": "dropConnection", "probability": 0.02},
        {"type": "slowAnswer", "seconds": 1, "probability": 0.01},
    ]
    p = held(sc.scenario(faults=faults))
    d = driver(p)
    rid = d.start(who=INITIATOR)
    final = drive(d, rid)
    out = assert_promise(p, rid, final)
    hit = [r for r in p.arm.recorder.find() if r.status in (429, 500, 503) or r.status == 0]
    print(f"MATRIX 10%: {out['state']} ({str(out.get('outcome'))[:100]}); {len(hit)} faulted of "
          f"{len(p.arm.recorder.find())} requests")
    assert hit  # faults really happened


# ---------------------------------------------------------------------- 13.14 on the platform
def test_a_forged_pre_event_does_not_hijack_the_ring_run(held: Any) -> None:
    from tests.functional.fakeapp.driver import maintenance_event

    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who=INITIATOR)
    approve(d, rid, "ring1", "alice@contoso.com")
    doc = d.until_waiting(rid, "pre-maintenance event", "ring1")
    real_start = doc["waitingFor"]["runStart"]
    # a plausible PreMaintenanceEvent for mc-ring1 (well-formed correlationId) with a start in 2099
    forged = maintenance_event("pre", "mc-ring1", "2099-01-06T12:00:00Z")
    assert d.deliver(forged) in (200, 202)
    doc = d.until_waiting(rid, "approval", "ring2")
    runs = doc["rings"][1]["runs"]
    assert [r["correlationId"].rsplit("/", 1)[-1] for r in runs] == [real_start.replace("-", "").replace(":", "")
                                                                       .replace("T", "").rstrip("Z")]
    assert runs[0]["decision"] == "authorised"
    real = p.arm.run(runs[0]["correlationId"])
    assert real is not None and real.status == "Completed"  # the guard let the real run through
    refused = [e for e in ledger(p).events(f"{sc.MC}/mc-ring1") if e.get("outcome") == "refused"]
    assert refused and "2099" in refused[0]["startDateTime"]
    assert doc["events"]["refused"] >= 1
