"""Issue 11, item 2 on the real host with the fake activities: a direct ring hands its waves a
reference to their slice in the ledger, never the VMs; a slice that cannot be read installs
nothing and the ring's gate is inconclusive (a person decides), with the slice named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.test_orchestration_fake_fleet import default_plan, run  # noqa: F401  (fixture)

pytestmark = pytest.mark.functional


def big_ring0(run: Any, size: int) -> tuple[Any, Any]:  # noqa: F811
    plan = default_plan(ring0={"rate": {"maxConcurrency": size, "maxErrors": 0}})
    d, f = run(plan)
    for name in [n for n in list(f.vms) if "/r0-" in n]:
        del f.vms[name]
    for i in range(size):
        f.add(f"r0-vm-{i:03d}", "Windows" if i % 2 else "Linux", str(i % 3 + 1), "ring0")
    return d, f


def wave_inputs(d: Any, rid: str, slices: int) -> list[dict[str, Any]]:
    out = []
    for k in range(slices):
        status = d.ht.status(f"{rid}:ring0:w0" + (f".{k}" if k else ""), show_input=True)
        doc = status.input_
        while isinstance(doc, str):  # the host keeps the input as JSON text
            doc = json.loads(doc)
        out.append(doc)
    return out


def test_a_250_vm_wave_reads_its_three_slices_itself_and_its_inputs_hold_no_vm(run: Any) -> None:  # noqa: F811
    d, f = big_ring0(run, 250)
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
    assert doc["rings"][0]["gate"]["outcome"] == "pass" and doc["rings"][0]["counts"]["vms"] == 250
    assert len(f.installs) == 250
    inputs = wave_inputs(d, rid, 3)
    assert all("vms" not in w for w in inputs)
    assert [(w["members"]["slice"], w["members"]["count"]) for w in inputs] == [(0, 100), (1, 100), (2, 50)]
    reads = f.called("read_wave_members")
    assert sorted((p["wave"], p["slice"]) for p in reads) == [(0, 0), (0, 1), (0, 2)]
    # the ring instance's history names only its health sample's share (17 a slice), the manifest's
    # first sources (34 a slice) and one install entry per OS a slice: never the members
    ring_history = json.dumps(d.ht.history(f"{rid}:ring0"))
    named = [vm.id for vm in f.vms.values() if vm.name.startswith("r0-") and vm.id in ring_history]
    assert 100 <= len(named) <= 50 + 100 + 2 * 3 + 3, len(named)


def test_an_unreadable_slice_installs_nothing_and_the_gate_goes_to_a_person(run: Any) -> None:  # noqa: F811
    d, f = big_ring0(run, 150)
    f.unreadable_slices.add((0, 1))
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
    ring0 = doc["rings"][0]
    assert ring0["gate"]["outcome"] == "inconclusive"
    assert any("slice 1: 50 VM(s) not installed" in r["reason"] for r in ring0["gate"]["reasons"]), ring0["gate"]
    assert ring0["counts"]["unread"] == 50
    assert len(f.installs) == 100  # slice 0 only: the unread slice's VMs were never started
    status = d.ht.status(f"{rid}:ring0:w0.1").custom_status
    status = json.loads(status) if isinstance(status, str) else status
    assert status["step"] == "members-unreadable"
