"""A scheduled ring's verification and the VMs its gate did not open (issue 11): Resource Graph,
stale, still lists a VM the gate found out of the ring; the run never held it (no result). It is
left-ring -- not collected, not judged, counted and named -- not a missing result (inconclusive)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators import names
from orchestrators import run_results as run_results_mod
from tests.unit.orchestrators.chunked import ChunkContext, with_chunks
from tests.unit.orchestrators.test_orch_verdicts import drive, named, raw, run_spec
from tests.unit.orchestrators.test_staged_results import Staging, fleet

pytestmark = pytest.mark.unit


def run(vms: list[dict[str, Any]], never: set[str], spec: dict[str, Any]) -> tuple[ChunkContext, dict[str, Any]]:
    ctx = ChunkContext(spec)
    out = drive(raw(run_results_mod.run_results_orchestrator), ctx, with_chunks(Staging(vms, never=never), vms))
    return ctx, out


def test_a_vm_the_gate_did_not_open_is_left_ring_not_a_missing_result() -> None:
    vms = fleet(30)
    leaver = vms[3]
    ctx, out = run(vms, {leaver["name"]}, {**run_spec(), "gateLeft": [leaver["id"]], "gateLeftCount": 1})
    gate = out["gate"]
    assert gate["outcome"] == "pass", gate  # 1 of 30 left: within 10%
    assert gate["counts"]["total"] == 29 and gate["counts"]["leftRing"] == 1
    assert gate["reasons"][0]["reason"].startswith(f"1 VM(s) left the ring before their install; not judged "
                                                   f"(e.g. {leaver['name']})")
    # never re-queried nor read from its instance view: the run never held it
    assert all(leaver["id"] not in [v["id"] for v in c.payload["vms"]]
               for c in named(ctx, names.COLLECT_RESULTS_ARG) + named(ctx, names.COLLECT_RESULTS))
    rows = [c.payload for c in named(ctx, names.LEDGER_VM_RESULTS)]
    [entry] = [r for p in rows for r in p["results"] if r["vm"] == leaver["id"]]
    assert entry["state"] == "left-ring"  # the ledger's per-VM row says why (once)


def test_without_the_gate_s_list_the_same_vm_is_inconclusive() -> None:
    vms = fleet(30)
    _ctx, out = run(vms, {vms[3]["name"]}, run_spec())
    assert out["gate"]["outcome"] == "inconclusive"  # the control: a missing result is never a pass


def test_many_left_at_the_gate_make_the_ring_inconclusive() -> None:
    vms = fleet(30)
    gone = vms[:5]
    _ctx, out = run(vms, {v["name"] for v in gone},
                   {**run_spec(), "gateLeft": [v["id"] for v in gone], "gateLeftCount": 5})
    gate = out["gate"]
    assert gate["outcome"] == "inconclusive" and gate["counts"]["leftRing"] == 5, gate  # 5 > ceil(3)
    assert gate["counts"]["total"] == 25


class PatchedLeaver(Staging):
    """The run holds one VM the gate refused (a configuration's own member with no ring tag, or a
    scope that still selects it): Update Manager patched it, and its install failed."""

    def __init__(self, members: list[dict[str, Any]], bad: str) -> None:
        super().__init__(members)
        self.bad = bad

    def entry(self, v: dict[str, Any], *, staging: bool) -> dict[str, Any]:
        if v["name"] == self.bad:
            return {"vm": v["id"], "state": "done", "error": None, "result": {
                "status": "Failed", "installedPatchCount": 0, "failedPatchCount": 1, "pendingPatchCount": 0,
                "rebootStatus": "Completed", "maintenanceWindowExceeded": False,
                "patches": [{"kbId": "5048667", "name": "CU", "installationState": "Failed"}]}}
        return super().entry(v, staging=staging)


def test_a_vm_the_gate_refused_but_the_run_patched_is_judged_on_its_result() -> None:
    # review finding (HIGH): the gate's tag check refuses a configuration-only member, the run
    # patches it anyway; its failed install must fail the ring, never vanish as "left the ring"
    vms = fleet(30)
    bad = vms[3]
    for spec in (run_spec(), {**run_spec(), "gateLeft": [bad["id"]], "gateLeftCount": 1}):
        ctx = ChunkContext(spec)
        out = drive(raw(run_results_mod.run_results_orchestrator), ctx,
                    with_chunks(PatchedLeaver(vms, bad["name"]), vms))
        gate = out["gate"]
        assert gate["outcome"] == "fail", gate
        assert gate["counts"]["total"] == 30 and not gate["counts"].get("leftRing"), gate
