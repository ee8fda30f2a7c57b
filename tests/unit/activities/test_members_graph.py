"""Ring members from Resource Graph (issue 11): the query may return a superset, never a subset;
every row is re-checked with the ring's rule; paging; the quota is waited for, not tripped."""

from __future__ import annotations

from typing import Any

import pytest

from activities.members import count_only, plan_ring_waves_core, resolve_ring_members_core
from patchrings.arm import resource_graph as rg
from patchrings.boundary.activities import PlanRingWavesInput
from patchrings.domain.plan import Plan
from tests.unit.activities.graph_fake import FakeGraph, arg_row
from tests.unit.orchestrators.test_ring_direct_ledger_members import Store

pytestmark = pytest.mark.unit

SUB = "11111111-2222-3333-4444-555555555555"
OTHER_SUB = "99999999-2222-3333-4444-555555555555"


def vm(name: str, tags: dict[str, str], *, rg_name: str = "rg-web", os: str = "Windows",
       location: str = "westeurope", sub: str = SUB, power: str = "running") -> dict[str, Any]:
    return {"id": f"/subscriptions/{sub}/resourceGroups/{rg_name}/providers/Microsoft.Compute/virtualMachines/{name}",
            "name": name, "location": location, "tags": tags, "zones": ["2"],
            "properties": {"storageProfile": {"osDisk": {"osType": os},
                                              "imageReference": {"publisher": "p", "offer": "o", "sku": "s"}},
                           "osProfile": {"windowsConfiguration": {"patchSettings": {
                               "patchMode": "AutomaticByPlatform",
                               "automaticByPlatformSettings": {"bypassPlatformSafetyChecksOnUserSchedule": True}}}},
                           "instanceView": {"statuses": [{"code": f"PowerState/{power}"}]}}}


def arc(name: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"id": f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.HybridCompute/machines/{name}",
            "name": name, "location": "westeurope", "tags": tags,
            "properties": {"status": "Connected", "lastStatusChange": "2026-11-16T05:00:00Z", "osType": "windows",
                           "osName": "Windows Server 2022", "osVersion": "10.0.20348", "osSku": "2022-datacenter"}}


def spec(members: dict[str, Any]) -> dict[str, Any]:
    plan = Plan.from_dict({"version": 1, "name": "t", "rings": [
        {"name": "ring0", "patching": "direct", "members": members}]})
    return {"ring": "ring0", "ringSpec": plan.ring("ring0").to_dict()}


RING0 = {"tag": {"name": "patchRing", "value": "ring0", "holdValue": "ring0-hold"}, "subscriptions": [SUB],
         "resourceGroups": ["RG-Web"], "locations": ["West Europe"], "osTypes": ["Windows"]}


def test_rows_are_a_superset_and_each_is_rechecked_with_the_rule() -> None:
    graph = FakeGraph([
        vm("member", {"patchRing": "ring0"}),
        vm("upper-key", {"PATCHRING": "ring0"}),  # tag names are case-insensitive: a member
        vm("held", {"patchring": "ring0-hold"}),  # the hold value is a member
        vm("prefix", {"patchRing": "ring0x"}),  # matches the query's substring, not the rule
        vm("value-case", {"patchRing": "Ring0"}),  # values are case-sensitive
        vm("other-key", {"owner": "ring0"}),  # the value under another tag
        vm("linux", {"patchRing": "ring0"}, os="Linux"),  # out of the plan's osTypes
        vm("north", {"patchRing": "ring0"}, location="northeurope"),  # out of its locations
        vm("spaced", {"patchRing": "ring0"}, location="West Europe"),  # the same location, spelt with a space
        vm("other-rg", {"patchRing": "ring0"}, rg_name="rg-app"),  # out of its resource groups
        vm("other-sub", {"patchRing": "ring0"}, sub=OTHER_SUB),  # out of its subscriptions
        vm("none", {"patchRing": "none"}),
        arc("arc-member", {"patchRing": "ring0"}),
    ])
    got = resolve_ring_members_core(None, spec(RING0), send=graph.send, gate=rg.QuotaGate())  # type: ignore[arg-type]
    assert sorted(v["name"] for v in got["vms"]) == ["arc-member", "held", "member", "spaced", "upper-key"]
    refs = {v["name"]: v for v in got["vms"]}
    assert refs["member"] == {
        "id": vm("member", {})["id"], "name": "member", "os": "Windows", "location": "westeurope", "zone": "2",
        "availabilitySet": None, "powerState": "running", "scheduleIssue": None, "image": "p:o:s", "kind": "vm"}
    assert refs["arc-member"]["kind"] == "arc" and refs["arc-member"]["agentStatus"] == "Connected"
    assert refs["arc-member"]["image"] == "arc:2022-datacenter"
    # one request; the server-side filter was coarse (a superset) but it did filter
    assert len(graph.queries) == 1
    assert "tostring(tags) contains 'ring0'" in graph.queries[0] and "resourceGroup in~ ('rg-web')" in graph.queries[0]


def test_a_value_that_is_not_plain_text_is_not_filtered_server_side_and_still_resolves() -> None:
    odd = {"tag": {"name": "patchRing", "value": 'ring "zero"\\'}, "subscriptions": [SUB]}
    graph = FakeGraph([vm("odd", {"patchRing": 'ring "zero"\\'}), vm("none", {"patchRing": "none"})])
    got = resolve_ring_members_core(None, spec(odd), send=graph.send, gate=rg.QuotaGate())  # type: ignore[arg-type]
    assert [v["name"] for v in got["vms"]] == ["odd"]
    assert "tostring(tags)" not in graph.queries[0]


def test_a_large_ring_pages_at_1000_rows_and_counts_each_machine_once() -> None:
    fleet = [vm(f"vm-{i:04d}", {"patchRing": "ring0" if i % 4 else "none"}) for i in range(3200)]
    graph = FakeGraph(fleet)
    answer = resolve_ring_members_core(None, spec(RING0), send=graph.send, gate=rg.QuotaGate())  # type: ignore[arg-type]
    assert len(graph.queries) == 3  # 2,400 rows: 1,000 + 1,000 + 400
    ids = [v["id"] for v in answer["vms"]]
    assert len(ids) == len(set(ids)) == 2400
    assert count_only(answer) == {"vms": [], "count": 2400}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_quota_is_waited_for_from_the_headers_and_never_tripped() -> None:
    clock = FakeClock()
    gate = rg.QuotaGate(clock=clock, sleep=clock.sleep)
    fleet = [vm(f"vm-{i:04d}", {"patchRing": "ring0"}) for i in range(4500)]
    graph = FakeGraph(fleet, quota=2, window=5.0, clock=clock)  # 2 queries per 5 s
    got = resolve_ring_members_core(None, spec(RING0), send=graph.send, gate=gate)  # type: ignore[arg-type]
    assert len(got["vms"]) == 4500 and len(graph.queries) == 5
    assert graph.throttled == 0  # the headers said 0 left: the gate waited for the reset instead
    assert len(clock.slept) == 2 and all(4.9 < s <= 5.5 for s in clock.slept)


def test_a_429_without_retry_after_is_waited_out_and_sent_again() -> None:
    clock = FakeClock()
    gate = rg.QuotaGate(clock=clock, sleep=clock.sleep)
    graph = FakeGraph([vm("member", {"patchRing": "ring0"})], quota=1, window=5.0, clock=clock)
    graph._used, graph._window_start = 1, 0.0  # another caller of the same principal spent the window
    got = resolve_ring_members_core(None, spec(RING0), send=graph.send, gate=gate)  # type: ignore[arg-type]
    assert [v["name"] for v in got["vms"]] == ["member"]
    assert graph.throttled == 1 and gate.throttled == 1 and clock.now >= 5.0


def test_plan_ring_waves_plans_the_members_found_in_resource_graph() -> None:
    graph = FakeGraph([vm(f"vm-{i}", {"patchRing": "ring0"}) for i in range(6)] + [vm("x", {"patchRing": "none"})])
    payload = PlanRingWavesInput(ring="ring0", run_id="r:ring0", ring_spec=spec(RING0)["ringSpec"], slice_size=4)
    answer = plan_ring_waves_core(None, Store(), payload, send=graph.send)  # type: ignore[arg-type]
    assert answer["count"] == 6 and sum(answer["waves"]) == 6 and len(graph.queries) == 1


def test_member_wire_gives_vm_ref_what_a_vm_get_gives_it() -> None:
    from activities.members import member_ref
    body = vm("same", {"patchRing": "ring0"})
    row = arg_row(body)
    projected = FakeGraph([body]).send(rg.members_query(tag_values=None), [SUB], None)[0]["data"][0]
    assert member_ref(rg.member_wire(projected)) == member_ref(body)
    assert row["properties"]["extended"]["instanceView"]["powerState"]["code"] == "PowerState/running"


def test_the_gate_starts_at_most_its_limit_per_window_before_any_answer_says_so() -> None:
    clock = FakeClock()
    gate = rg.QuotaGate(clock=clock, sleep=clock.sleep, limit=12, window=5.0)
    starts = []
    for _ in range(36):
        assert gate.acquire()
        starts.append(clock.now)
    assert all(sum(1 for t in starts if s <= t < s + 5.0) <= 12 for s in starts)
    assert gate.queries == 36 and gate.waited >= 10.0
    # a deadline before the next slot: refused at once, nothing slept
    slept = len(clock.slept)
    assert gate.acquire(deadline=clock.now + 1.0) is False and len(clock.slept) == slept


class Assignments:
    """The maintenance reads of a ring's configuration (assignment list, the ring's own assignment)."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.configuration_assignments_within_subscription = self
        self.configuration_assignments_for_subscriptions = self

    def maintenance(self, sub: str) -> Any:
        return self

    def list(self) -> list[dict[str, Any]]:
        return self.docs

    def get(self, name: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError
        error = ResourceNotFoundError(message="none")
        error.status_code = 404
        raise error


MC = f"/subscriptions/{SUB}/resourceGroups/rg-maint/providers/Microsoft.Maintenance/maintenanceConfigurations/mc1"
CONFIG_RING = {"tag": {"name": "patchRing", "value": "ring1", "holdValue": "ring1-hold"}, "subscriptions": [SUB],
               "maintenanceConfigurationId": MC}


def scope(tags: dict[str, list[str]] | None) -> dict[str, Any]:
    settings = {"tags": tags, "filterOperator": "Any"} if tags is not None else None
    return {"properties": {"maintenanceConfigurationId": MC, "filter": {
        "resourceTypes": ["Microsoft.Compute/virtualMachines"], **({"tagSettings": settings} if settings else {})}}}


def test_a_configuration_ring_reads_only_its_candidates_not_the_subscription() -> None:
    assigned = vm("assigned", {})  # a resource-level assignment: a member whatever its tags
    docs = [scope({"patchRing": ["ring1"]}),
            {"properties": {"maintenanceConfigurationId": MC, "resourceId": assigned["id"]}}]
    fleet = [vm("tagged", {"patchRing": "ring1"}), vm("held", {"patchRing": "ring1-hold"}), assigned,
             vm("scoped", {"owner": "x", "patchRing": "ring1"})] + [vm(f"x-{i:04d}", {"patchRing": "none"})
                                                                   for i in range(2500)]
    graph = FakeGraph(fleet)
    got = resolve_ring_members_core(Assignments(docs), {"ring": "ring1", "ringSpec": spec(CONFIG_RING)["ringSpec"]
                                                        | {"name": "ring1"}},  # type: ignore[arg-type]
                                    send=graph.send, gate=rg.QuotaGate())
    assert sorted(v["name"] for v in got["vms"]) == ["assigned", "held", "scoped", "tagged"]
    assert len(graph.queries) == 1  # 4 candidate rows: one page, not the subscription's 3 pages
    assert "id in~ (" in graph.queries[0] and "contains 'ring1'" in graph.queries[0]


def test_a_dynamic_scope_without_tags_makes_every_machine_in_scope_a_candidate() -> None:
    graph = FakeGraph([vm("untagged", {})] + [vm(f"x-{i:04d}", {"patchRing": "none"}) for i in range(1500)])
    got = resolve_ring_members_core(Assignments([scope(None)]),  # type: ignore[arg-type]
                                    {"ring": "ring1", "ringSpec": spec(CONFIG_RING)["ringSpec"] | {"name": "ring1"}},
                                    send=graph.send, gate=rg.QuotaGate())
    assert len(got["vms"]) == 1501 and len(graph.queries) == 2  # every VM in scope, paged
    assert "tostring(tags)" not in graph.queries[0]
