"""``check_vm_health_batch`` (activities/health.py): paced ARM reads, a read budget, deferred samples.

Against the ARM simulator with small read buckets and a held skip clock (the buckets refill in
real time only), so a burst that would be throttled shows up in a few dozen requests. Counts only
(throttled requests, pacer slots, samples), never elapsed time.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.health import check_vm_health_batch_core
from patchrings.arm import resource_graph as rg
from patchrings.arm.fanout import Pacer
from patchrings.clients import AzureClients
from patchrings.settings import Settings
from tests.functional.activities.conftest import SCENARIO, SimHandle, vm_id

pytestmark = pytest.mark.functional


def scenario(vms: int, throttling: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(SCENARIO)
    group = doc["subscriptions"][0]["resourceGroups"][0]  # type: ignore[index]
    group["vms"] = [*group["vms"], *({"name": f"bulk-{i:03d}", "os": "Linux", "tags": {"ring": "ring1-hold"}}
                                     for i in range(vms))]
    if throttling:
        doc["throttling"] = throttling
    return doc


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Any]:
    running: list[tuple[SimHandle, AzureClients]] = []
    with contextlib.ExitStack() as stack:

        def start(doc: dict[str, Any]) -> tuple[SimHandle, AzureClients]:
            handle = SimHandle(tmp_path / f"arm{len(running)}", doc)
            stack.enter_context(handle.clock.hold())
            clients = AzureClients(Settings(arm_endpoint=handle.sim.endpoint, arm_auth="static-token",
                                            arm_static_token=handle.sim.token, arm_ca_bundle=str(handle.sim.ca_path),
                                            ledger_table_prefix="t" + uuid.uuid4().hex[:12]))
            running.append((handle, clients))
            return running[-1]

        yield start
    for handle, clients in running:
        clients.close()
        handle.stop()


def checks(n: int, *, full: bool) -> list[dict[str, Any]]:
    return [{"vm": {"id": vm_id(f"bulk-{i:03d}"), "name": f"bulk-{i:03d}", "os": "Linux"}, "full": full}
            for i in range(n)]


# Small enough that eight unpaced workers empty it at once, large enough for the pacer's burst
# plus eight requests bunched by a slow scheduler.
READS = {"reads": {"size": 10, "refillPerSecond": 5}}


def test_paced_full_samples_stay_under_the_read_bucket(sim_factory: Any) -> None:
    sim, clients = sim_factory(scenario(20, READS))
    pacer = Pacer(3.0, 2, reserve=0)
    out = check_vm_health_batch_core(clients, {"probes": [], "checks": checks(20, full=True)},
                                     pacers=lambda _s: pacer)
    assert [s["powerState"] for s in out["samples"]] == ["running"] * 20
    assert sim.sim.recorder.find(status=429) == []
    assert pacer.calls == 20 and len(sim.sim.recorder.find(operation="vm.instance_view")) == 20


def test_unpaced_the_same_batch_is_throttled(sim_factory: Any) -> None:
    # the control for the test above: eight workers without pacing empty the bucket at once
    sim, clients = sim_factory(scenario(20, READS))
    out = check_vm_health_batch_core(clients, {"probes": [], "checks": checks(20, full=True)},
                                     pacers=lambda _s: Pacer(1e6, 10_000, reserve=0))
    assert [s["powerState"] for s in out["samples"]] == ["running"] * 20  # the SDK retries ...
    assert len(sim.sim.recorder.find(status=429)) > 0  # ... after throttled requests


def test_arms_remaining_header_holds_the_reads(sim_factory: Any) -> None:
    # The read bucket is nearly empty before the batch (another reader of the same principal): no
    # local limit, but ARM's header (remaining < reserve) holds the rest until it has refilled.
    sim, clients = sim_factory(scenario(34, {"reads": {"size": 30, "refillPerSecond": 2}}))
    drain = check_vm_health_batch_core(clients, {"probes": [], "checks": checks(34, full=True)[12:]},
                                       pacers=lambda _s: Pacer(1e6, 10_000, reserve=0))
    assert len(drain["samples"]) == 22 and sim.sim.recorder.find(status=429) == []
    pacer = Pacer(1e6, 10_000, reserve=8, server_refill=2.0)
    out = check_vm_health_batch_core(clients, {"probes": [], "checks": checks(12, full=True)},
                                     pacers=lambda _s: pacer)
    assert [s["readError"] for s in out["samples"]] == [None] * 12
    assert sim.sim.recorder.find(status=429) == []
    assert pacer.holds > 0


def test_reads_not_started_within_the_budget_are_deferred_samples(sim_factory: Any) -> None:
    sim, clients = sim_factory(scenario(6))
    now = [0.0]
    pacer = Pacer(1.0, 2, reserve=0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    out = check_vm_health_batch_core(clients, {"probes": [], "checks": checks(6, full=True)},
                                     pacers=lambda _s: pacer, clock=lambda: now[0], budget_seconds=2.5)
    samples = out["samples"]
    # slots at 0, 0, 1, 2 fit the 2.5-second budget; two VMs are left for the next round
    assert sum(1 for s in samples if s.get("deferred")) == 2
    assert all(s["readError"].startswith("Deferred") and s["probes"] == [] for s in samples if s.get("deferred"))
    assert all(s["powerState"] == "running" for s in samples if not s.get("deferred"))
    assert len(sim.sim.recorder.find(operation="vm.instance_view")) == 4


def test_cheap_samples_are_one_graph_query_and_a_quota_out_of_budget_defers_them(sim_factory: Any) -> None:
    """Issue 11: cheap samples take no ARM read slot (Resource Graph by id, its own per-principal
    quota); a query the quota does not allow within the budget defers them, never unknown."""
    sim, clients = sim_factory(scenario(12))
    sim.sim.page_size = 5  # the subscription's VM list would take 3 pages: not read
    pacer = Pacer(1e6, 10_000, reserve=0)
    out = check_vm_health_batch_core(clients, {"probes": [], "checks": checks(12, full=False)},
                                     pacers=lambda _s: pacer, gate=rg.QuotaGate())
    assert [r.operation for r in sim.sim.recorder.records if r.operation != "arg.resources"] == []
    assert len(sim.sim.recorder.find(operation="arg.resources")) == 1 and pacer.calls == 0
    assert all(s["partial"] and s["powerState"] == "running" for s in out["samples"])

    now = [0.0]
    spent = rg.QuotaGate(clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    spent.observe({"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": "00:05:00"})
    sim.sim.recorder.clear()
    out = check_vm_health_batch_core(clients, {"probes": [], "checks": checks(12, full=False)},
                                     pacers=lambda _s: pacer, clock=lambda: now[0], budget_seconds=1.5, gate=spent)
    assert all(s.get("deferred") and s["partial"] for s in out["samples"])  # not read: deferred
    assert sim.sim.recorder.find(operation="arg.resources") == [] and now[0] == 0.0


def test_the_pacers_stall_counter_is_wall_time_with_someone_waiting() -> None:
    """``stalled`` counts overlapping waits once (``waited`` sums them per caller): the
    limiter's cost in real seconds that the bench reports."""
    import threading

    now = [0.0]
    gate = threading.Barrier(2)

    def fake_sleep(seconds: float) -> None:
        gate.wait(timeout=10)  # both callers are asleep at once
        now[0] = max(now[0], seconds)
        gate.wait(timeout=10)

    pacer = Pacer(1.0, 1, reserve=0, clock=lambda: now[0], sleep=fake_sleep)
    assert pacer.acquire()  # the burst: no wait
    threads = [threading.Thread(target=pacer.acquire) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert pacer.calls == 3
    assert pacer.stalled == pytest.approx(2.0)  # from 0 until the later slot at 2
    assert pacer.waited == pytest.approx(4.0)  # each caller slept until 2 (fake clock jumps)
