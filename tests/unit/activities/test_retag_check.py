"""``retag_vms`` with the ring's rule (issue 11): one live read before each write; a VM that left
the ring is not written and answered as ``leftRing`` (not failed); a read that fails is that VM's
failure. Real SDK clients over a scripted transport (no mocks of the SDK)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from activities.tags import retag_vms_core
from patchrings.arm.fanout import Pacer
from tests.unit.app.test_arc import ARC_RG, SUB, clients_for, machine

pytestmark = pytest.mark.unit

VM_RG = f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines"
RULE = {"tag": {"name": "ring", "value": "ring1", "holdValue": "ring1-hold"}}


def vm(name: str, ring: str) -> dict[str, Any]:
    return {"id": f"{VM_RG}/{name}", "name": name, "location": "westeurope", "tags": {"ring": ring, "owner": "a"},
            "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}}


def tags_answer(value: str) -> tuple[int, dict[str, str], Any]:
    return (200, {}, {"id": "x", "name": "default", "properties": {"tags": {"ring": value}}})


def retag(clients: Any, ids: list[str], value: str, opening: bool) -> dict[str, Any]:
    free = Pacer(1e6, 10_000, reserve=0)
    return retag_vms_core(clients, {"vmIds": ids, "tag": "ring", "value": value, "memberRule": RULE,
                                    "opening": opening}, pacers=lambda _s: free, read_pacers=lambda _s: free)


def test_opening_reads_each_vm_and_skips_the_one_that_left(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [
        ("GET", "/virtualMachines/stay?", (200, {}, vm("stay", "ring1-hold"))),
        ("GET", "/virtualMachines/gone-out?", (200, {}, vm("gone-out", "excluded"))),
        ("GET", "/virtualMachines/deleted?", (404, {}, {"error": {"code": "ResourceNotFound", "message": "no"}})),
        ("GET", "/virtualMachines/broken?", (403, {}, {"error": {"code": "AuthorizationFailed", "message": "no"}})),
        ("GET", "/machines/arc-1?", (200, {}, machine("arc-1", "ring1-hold"))),
        ("PATCH", "/tags/default", tags_answer("ring1")),
    ])
    ids = [f"{VM_RG}/stay", f"{VM_RG}/gone-out", f"{VM_RG}/deleted", f"{VM_RG}/broken", f"{ARC_RG}/arc-1"]
    out = retag(clients, ids, "ring1", True)
    assert out["written"] == 2, out  # stay and the Arc machine
    assert [x["vm"] for x in out["leftRing"]] == [ids[1], ids[2]] and out["leftRingCount"] == 2
    assert out["leftRingIds"] == [ids[1], ids[2]]
    assert "'excluded' now" in out["leftRing"][0]["reason"] and "404" in out["leftRing"][1]["reason"]
    assert [(f["vm"], f["error"]["code"]) for f in out["failed"]] == [(ids[3], "AuthorizationFailed")]
    writes = [r.url for r in transport.requests if r.method == "PATCH"]
    assert len(writes) == 2 and not any("gone-out" in u or "deleted" in u or "broken" in u for u in writes)
    assert len([r for r in transport.requests if r.method == "GET"]) == 5  # one read per VM


def test_closing_keeps_a_tag_someone_else_wrote(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [
        ("GET", "/virtualMachines/open?", (200, {}, vm("open", "ring1"))),
        ("GET", "/virtualMachines/moved?", (200, {}, vm("moved", "quarantine"))),
        ("PATCH", "/tags/default", tags_answer("ring1-hold")),
    ])
    out = retag(clients, [f"{VM_RG}/open", f"{VM_RG}/moved"], "ring1-hold", False)
    assert out["written"] == 1 and out["failed"] == [] and out["leftRingCount"] == 1, out
    assert "'quarantine' now" in out["leftRing"][0]["reason"]
    assert [r.url.split("?")[0].rsplit("/providers/Microsoft.Resources", 1)[0].rsplit("/", 1)[1]
            for r in transport.requests if r.method == "PATCH"] == ["open"]


def test_without_a_rule_nothing_is_read(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [("PATCH", "/tags/default", tags_answer("ring1"))])
    out = retag_vms_core(clients, {"vmIds": [f"{VM_RG}/a"], "tag": "ring", "value": "ring1"},
                         pacers=lambda _s: Pacer(1e6, 10_000, reserve=0))
    assert out["written"] == 1 and "leftRing" not in out
    assert [r.method for r in transport.requests] == ["PATCH"]
