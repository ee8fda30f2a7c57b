"""Cheap health samples from Resource Graph by id (issue 11): one query per 100 VMs whatever the
subscription's size; a VM missing from the answer is unknown, never healthy; a query the quota
does not allow within the activity's budget is *deferred*, never unknown or healthy."""

from __future__ import annotations

from typing import Any

import pytest

from activities.health import check_vm_health_batch_core
from patchrings.arm import resource_graph as rg
from tests.unit.activities.graph_fake import FakeGraph
from tests.unit.activities.test_members_graph import SUB, FakeClock, vm

pytestmark = pytest.mark.unit


def ref(name: str) -> dict[str, Any]:
    return {"id": vm(name, {})["id"], "name": name, "os": "Windows", "kind": "vm"}


def cheap(*names: str) -> dict[str, Any]:
    return {"checks": [{"vm": ref(n), "full": False} for n in names],
            "probes": [{"url": "https://{vmName}.contoso.com/health"}]}


def probe_ok(url: str, timeout: float) -> tuple[int, str]:
    return 200, "ok"


def test_cheap_samples_take_the_power_state_from_resource_graph_by_id() -> None:
    fleet = [vm(f"vm-{i:03d}", {}, power="stopped" if i == 7 else "running") for i in range(150)]
    fleet += [vm(f"other-{i:04d}", {"patchRing": "none"}) for i in range(2000)]  # the rest of the subscription
    graph = FakeGraph(fleet)
    names = [f"vm-{i:03d}" for i in range(150)] + ["gone"]
    out = check_vm_health_batch_core(None, cheap(*names), send=graph.send, gate=rg.QuotaGate(),  # type: ignore[arg-type]
                                     http_get=probe_ok)
    samples = {s["vm"].rsplit("/", 1)[-1]: s for s in out["samples"]}
    assert len(graph.queries) == 2  # 151 ids: 100 + 51, never the subscription's 2,150 rows
    assert all("id in~" in q for q in graph.queries)
    assert samples["vm-000"]["powerState"] == "running" and samples["vm-000"]["partial"] is True
    assert samples["vm-000"]["readError"] is None and samples["vm-000"]["probes"][0]["ok"] is True
    assert samples["vm-007"]["powerState"] == "stopped"
    # not in the answer (ARG lags, or the VM is gone): unknown, never healthy; not "deleted" on ARG's word
    assert samples["gone"]["powerState"] is None and "NotInResourceGraph" in samples["gone"]["readError"]
    assert "deleted" not in samples["gone"]
    assert [s["vm"] for s in out["samples"]] == [ref(n)["id"] for n in names]  # the order of the checks


def test_a_vm_without_a_power_state_in_resource_graph_is_unknown() -> None:
    body = vm("bare", {})
    del body["properties"]["instanceView"]
    out = check_vm_health_batch_core(None, cheap("bare"), send=FakeGraph([body]).send,  # type: ignore[arg-type]
                                     gate=rg.QuotaGate(), http_get=probe_ok)
    assert out["samples"][0]["powerState"] is None and "NoPowerState" in out["samples"][0]["readError"]


def test_samples_the_quota_does_not_allow_within_the_budget_are_deferred() -> None:
    clock = FakeClock()
    gate = rg.QuotaGate(clock=clock, sleep=clock.sleep)
    gate.observe({"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": "00:05:00"})  # spent for 5 min
    graph = FakeGraph([vm("vm-1", {})], clock=clock)
    probed: list[str] = []

    def probe(url: str, timeout: float) -> tuple[int, str]:
        probed.append(url)
        return 200, "ok"

    out = check_vm_health_batch_core(None, cheap("vm-1"), send=graph.send, gate=gate, clock=clock,  # type: ignore[arg-type]
                                     budget_seconds=60, http_get=probe)
    sample = out["samples"][0]
    assert sample["deferred"] is True and sample["partial"] is True and sample["powerState"] is None
    assert graph.queries == [] and probed == [] and clock.slept == []  # nothing sent, nothing waited


def test_the_quota_reset_within_the_budget_is_waited_for() -> None:
    clock = FakeClock()
    gate = rg.QuotaGate(clock=clock, sleep=clock.sleep)
    gate.observe({"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": "00:00:04"})
    graph = FakeGraph([vm("vm-1", {})], clock=clock)
    out = check_vm_health_batch_core(None, cheap("vm-1"), send=graph.send, gate=gate, clock=clock,  # type: ignore[arg-type]
                                     budget_seconds=60, http_get=probe_ok)
    assert out["samples"][0]["powerState"] == "running" and len(graph.queries) == 1
    assert gate.waited >= 4.0 and SUB in out["samples"][0]["vm"]
