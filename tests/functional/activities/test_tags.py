"""``retag_vms`` (activities/tags.py): Merge without a read first, paced bursts, a bounded duration.

The pacer's arithmetic runs on a fake clock; the activity runs against the ARM simulator with
small write buckets, so a burst that would be throttled shows up in a few dozen requests. Counts
only (throttled requests, calls, results), never elapsed time.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.tags import retag_vms_core
from patchrings.arm.fanout import Pacer
from patchrings.clients import AzureClients
from patchrings.settings import Settings
from tests.functional.activities.conftest import SCENARIO, SimHandle, vm_id

pytestmark = pytest.mark.functional

TAGS_PATH = "/providers/Microsoft.Resources/tags/default"


# ----------------------------------------------------------------------------- the pacer (fake clock)
class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.during_sleep: list[Any] = []  # callables run once, on the next sleep (another thread's answer)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        while self.during_sleep:
            self.during_sleep.pop(0)()
        self.now += seconds


def test_pacer_allows_a_burst_then_a_steady_rate() -> None:
    t = FakeTime()
    pacer = Pacer(2.0, 3, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(7):
        assert pacer.acquire()
        starts.append(round(t.now, 3))
    assert starts == [0, 0, 0, 0.5, 1.0, 1.5, 2.0]
    assert pacer.calls == 7 and pacer.waited == pytest.approx(4 * 0.5)  # one caller: 0.5 s before each of the last four


def test_pacer_refuses_a_slot_after_the_deadline_without_taking_it() -> None:
    t = FakeTime()
    pacer = Pacer(1.0, 1, clock=t.clock, sleep=t.sleep)
    assert pacer.acquire(deadline=0.5)
    assert not pacer.acquire(deadline=0.5)  # the next slot is at 1.0
    assert pacer.acquire(deadline=1.0) and t.now == 1.0
    assert pacer.calls == 2


def test_pacer_holds_when_arm_reports_few_remaining_tokens() -> None:
    t = FakeTime()
    pacer = Pacer(100.0, 50, reserve=10, server_refill=5.0, clock=t.clock, sleep=t.sleep)
    assert pacer.acquire()
    pacer.observe(None)
    pacer.observe(10)  # at the reserve: no pause
    assert pacer.acquire() and t.now == 0
    pacer.observe(4)  # (10 - 4) / 5 = 1.2 s for ARM's bucket to be back at the reserve
    assert pacer.acquire()
    assert t.now >= 1.2 and pacer.holds == 1
    # the local burst does not survive the hold: the next calls are spaced at the local rate
    first = t.now
    assert pacer.acquire()
    assert t.now > first


def test_a_caller_asleep_on_its_slot_queues_again_behind_a_new_hold() -> None:
    t = FakeTime()
    pacer = Pacer(1.0, 1, reserve=10, server_refill=1.0, clock=t.clock, sleep=t.sleep)
    assert pacer.acquire()
    # while this caller sleeps for its slot at 1.0, another call's answer says 0 remaining
    t.during_sleep.append(lambda: pacer.observe(0))
    assert pacer.acquire()
    assert t.now >= 10.0  # not at 1.0: it waited for ARM's bucket to be back at the reserve


# ----------------------------------------------------------------------------- the activity (simulator)
def scenario(vms: int, throttling: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(SCENARIO)
    group = doc["subscriptions"][0]["resourceGroups"][0]  # type: ignore[index]
    group["vms"] = [*group["vms"], *({"name": f"bulk-{i:03d}", "os": "Linux",
                                       "tags": {"ring": "ring1-hold", "owner": "team-a"}} for i in range(vms))]
    if throttling:
        doc["throttling"] = throttling
    return doc


def _clients(sim: SimHandle) -> AzureClients:
    return AzureClients(Settings(arm_endpoint=sim.sim.endpoint, arm_auth="static-token",
                                 arm_static_token=sim.sim.token, arm_ca_bundle=str(sim.sim.ca_path),
                                 ledger_table_prefix="t" + uuid.uuid4().hex[:12]))


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Any]:
    """Simulators whose skip clock is held: the buckets refill in real time only (an idle skip
    clock would jump to the next scheduled run and refill every bucket between two requests)."""
    running: list[tuple[SimHandle, AzureClients]] = []
    with contextlib.ExitStack() as stack:

        def start(doc: dict[str, Any]) -> tuple[SimHandle, AzureClients]:
            handle = SimHandle(tmp_path / f"arm{len(running)}", doc)
            stack.enter_context(handle.clock.hold())
            running.append((handle, _clients(handle)))
            return running[-1]

        yield start
    for handle, clients in running:
        clients.close()
        handle.stop()


def bulk(n: int) -> list[str]:
    return [vm_id(f"bulk-{i:03d}") for i in range(n)]


def test_retag_merges_without_reading_first(sim_factory: Any) -> None:
    sim, clients = sim_factory(scenario(2))
    ids = [*bulk(2), vm_id("ghost-01"), "not-an-arm-id"]
    out = retag_vms_core(clients, {"vmIds": ids, "tag": "ring", "value": "ring1"})
    assert out["written"] == 2 and out["deferred"] == 0, out
    assert [f["vm"] for f in out["failed"]] == ["not-an-arm-id", ids[2]]
    assert out["failed"][1]["error"]["status"] == 404
    assert sim.sim.vm("bulk-000").tags == {"ring": "ring1", "owner": "team-a"}  # other tags kept
    again = retag_vms_core(clients, {"vmIds": ids[:2], "tag": "ring", "value": "ring1"})
    assert (again["written"], again["failed"]) == (2, [])  # idempotent: the same value again
    assert sim.sim.vm("bulk-001").tags == {"ring": "ring1", "owner": "team-a"}
    tag_calls = sim.sim.recorder.find(path_contains=TAGS_PATH)
    assert {r.method for r in tag_calls} == {"PATCH"}, "no tag reads: one write per VM"
    assert len(tag_calls) == 5  # 3 + 2: the malformed id never reaches ARM
    assert tag_calls[0].body == {"operation": "Merge", "properties": {"tags": {"ring": "ring1"}}}


def test_a_merge_answered_without_the_value_is_a_failure(sim_factory: Any) -> None:
    # an Azure Policy "modify" effect (or anything else) leaves another value: reported, not hidden
    _sim, clients = sim_factory(scenario(1))
    ids = bulk(1)

    class Rewriting:
        """Clients whose Tags API answers with a policy-rewritten value."""

        def resources(self, subscription: str) -> Any:
            real = clients.resources(subscription)

            class Tags:
                def begin_update_at_scope(self, scope: str, body: dict[str, Any], **kwargs: Any) -> Any:
                    body = {**body, "properties": {"tags": {"ring": "quarantine"}}}
                    return real.tags.begin_update_at_scope(scope, body, **kwargs)

            return type("R", (), {"tags": Tags()})()

    out = retag_vms_core(Rewriting(), {"vmIds": ids, "tag": "ring", "value": "ring1"})
    assert out["written"] == 0 and out["failed"][0]["error"]["code"] == "TagNotApplied", out


# Small enough that eight unpaced workers empty it even on a loaded machine (20 writes need
# ~0.8 s each to stay under 10 tokens + 5/s), large enough that the pacer's burst plus eight
# requests bunched by a slow scheduler still fit.
WRITES = {"writes": {"size": 10, "refillPerSecond": 5}}


def test_paced_retag_stays_under_the_write_bucket(sim_factory: Any) -> None:
    sim, clients = sim_factory(scenario(20, WRITES))
    pacer = Pacer(3.0, 2, reserve=0)
    out = retag_vms_core(clients, {"vmIds": bulk(20), "tag": "ring", "value": "ring1"}, pacers=lambda _s: pacer)
    assert (out["written"], out["failed"]) == (20, []), out
    assert sim.sim.recorder.find(status=429) == []
    assert pacer.calls == 20


def test_unpaced_the_same_retag_is_throttled(sim_factory: Any) -> None:
    # the control for the test above: eight workers without pacing empty the bucket at once
    sim, clients = sim_factory(scenario(20, WRITES))
    pacer = Pacer(1e6, 10_000, reserve=0)
    out = retag_vms_core(clients, {"vmIds": bulk(20), "tag": "ring", "value": "ring1"}, pacers=lambda _s: pacer)
    assert out["written"] == 20, out  # the SDK waits for Retry-After and gets through ...
    assert len(sim.sim.recorder.find(status=429)) > 0  # ... after throttled requests


def test_pacer_follows_arms_remaining_header(sim_factory: Any) -> None:
    # The bucket is nearly empty before the retag starts (another writer of the same principal):
    # with no local limit at all, the eight workers would send 12 writes into ~8 tokens refilling
    # 2/s. ARM's header (remaining < reserve) holds the rest until the bucket has refilled; with
    # reserve >= the workers in flight no request can find the bucket empty.
    sim, clients = sim_factory(scenario(34, {"writes": {"size": 30, "refillPerSecond": 2}}))
    drain = retag_vms_core(clients, {"vmIds": bulk(34)[12:], "tag": "other", "value": "x"},
                           pacers=lambda _s: Pacer(1e6, 10_000, reserve=0))
    assert drain["written"] == 22 and sim.sim.recorder.find(status=429) == []
    pacer = Pacer(1e6, 10_000, reserve=8, server_refill=2.0)
    out = retag_vms_core(clients, {"vmIds": bulk(12), "tag": "ring", "value": "ring1"}, pacers=lambda _s: pacer)
    assert (out["written"], out["failed"]) == (12, []), out
    assert sim.sim.recorder.find(status=429) == []
    assert pacer.holds > 0 and out["pacing"]["holds"] == pacer.holds


def test_writes_not_started_within_the_budget_are_deferred(sim_factory: Any) -> None:
    sim, clients = sim_factory(scenario(6))
    now = [0.0]
    pacer = Pacer(1.0, 2, reserve=0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    payload = {"vmIds": bulk(6), "tag": "ring", "value": "ring1", "budgetSeconds": 2.5}
    out = retag_vms_core(clients, payload, pacers=lambda _s: pacer, clock=lambda: now[0])
    # slots at 0, 0, 1, 2 fit the 2.5-second budget; two VMs are left for the next round
    assert out["written"] == 4 and out["deferred"] == 2, out
    deferred = [f for f in out["failed"] if f["error"]["code"] == "Deferred"]
    assert len(deferred) == 2 and all(f["error"]["retryable"] for f in deferred)
    assert len(sim.sim.recorder.find(method="PATCH", path_contains=TAGS_PATH)) == 4
    rest = retag_vms_core(clients, {**payload, "vmIds": [f["vm"] for f in deferred]}, pacers=lambda _s: pacer,
                          clock=lambda: now[0])
    assert (rest["written"], rest["deferred"]) == (2, 0)
    assert all(sim.sim.vm(f"bulk-{i:03d}").tags["ring"] == "ring1" for i in range(6))
