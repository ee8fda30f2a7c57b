"""Cheap health samples validate ids one by one (issue 11): a resource group name Azure allows
(letters of any script) is read like any other, and an id no query may name is that VM's
unknown sample, never a read error for the 99 others of its query."""

from __future__ import annotations

import pytest

from activities.health import check_vm_health_batch_core
from patchrings.arm import resource_graph as rg
from tests.unit.activities.graph_fake import FakeGraph
from tests.unit.activities.test_health_graph import probe_ok
from tests.unit.activities.test_members_graph import vm

pytestmark = pytest.mark.unit


def test_a_unicode_resource_group_is_a_machine_id_azure_allows() -> None:
    base = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/{}/providers/" \
           "Microsoft.Compute/virtualMachines/vm-1"
    for group in ("rg-café", "Ресурсы", "rg_(1).a", "a" * 90):
        assert rg.is_machine_id(base.format(group)), group
    for group in ("rg.", "rg x", "rg'x", "a" * 91, ""):  # a period at the end, a space, a quote, too long
        assert not rg.is_machine_id(base.format(group)), group
    assert "rg-café" in rg.power_query([base.format("rg-café")])


def test_one_unusual_id_never_poisons_its_chunk() -> None:
    fleet = [vm(f"vm-{i:02d}", {}) for i in range(98)] + [vm("vm-x", {}, rg_name="rg-café", power="stopped")]
    ids = [str(v["id"]) for v in fleet]
    odd = ids[0].replace("/resourceGroups/rg-web/", "/resourceGroups/rg web/")  # no Azure group has a space
    graph = FakeGraph(fleet)
    checks = [{"vm": {"id": i, "name": i.rsplit("/", 1)[-1], "os": "Windows", "kind": "vm"}, "full": False}
              for i in [*ids, odd]]
    out = check_vm_health_batch_core(None, {"checks": checks, "probes": []},  # type: ignore[arg-type]
                                     send=graph.send, gate=rg.QuotaGate(), http_get=probe_ok)
    samples = {s["vm"]: s for s in out["samples"]}
    assert len(graph.queries) == 1  # the 99 valid ids in one query
    assert all(samples[i]["readError"] is None for i in ids)
    assert samples[ids[-1]]["powerState"] == "stopped" and samples[ids[0]]["powerState"] == "running"
    assert samples[odd]["powerState"] is None and "InvalidMachineId" in samples[odd]["readError"]
