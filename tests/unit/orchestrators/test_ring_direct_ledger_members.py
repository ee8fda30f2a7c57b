"""Issue 11, bounded replayed bytes: a direct ring keeps its members in the ledger.

``plan_ring_waves`` resolves the ring, plans its waves and writes them to the ledger, answering
counts; ``read_wave_members`` reads one slice back; the ring's carry holds counts and bounded
lists, never the VM list. The ring decides exactly as it does from a VM list it was given.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from activities import members as members_mod
from orchestrators import names
from orchestrators import ring_direct as ring_direct_mod
from orchestrators.ring_direct import health_sample
from tests.unit.orchestrators.test_orch_verdicts import RING0, Call, ScriptedContext, drive, named, ok_result, raw
from tests.unit.orchestrators.test_ring_direct_scale import wave_answer

pytestmark = pytest.mark.unit


def vmz(name: str, os_name: str, zone: str) -> dict[str, Any]:
    return {"id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}",
            "name": name, "os": os_name, "zone": zone}


class Store:
    """An in-memory ``Waves`` table (what patchrings.ledger.Ledger keeps in Table storage)."""

    def __init__(self) -> None:
        self.plans: dict[str, dict[str, Any]] = {}
        self.slices: dict[tuple[str, str, int, int], list[dict[str, Any]]] = {}

    def wave_plan(self, run_id: str) -> dict[str, Any] | None:
        return self.plans.get(run_id.lower())

    def record_wave_plan(self, run_id: str, plan: Mapping[str, Any],
                         slices: Iterable[tuple[int, int, list[dict[str, Any]]]]) -> dict[str, Any]:
        for wave, part, vms in slices:
            self.slices[(run_id.lower(), str(plan["hash"]), wave, part)] = copy.deepcopy(vms)
        return self.plans.setdefault(run_id.lower(), {**plan, "runId": run_id})

    def wave_slice(self, run_id: str, plan_hash: str, wave: int, part: int) -> list[dict[str, Any]] | None:
        return self.slices.get((run_id.lower(), plan_hash, wave, part))


def slice_of(store: Store, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """A wave's VMs: its own ``vms`` (a ring given its VMs), else its slice read from the ledger
    as the wave reads it (``members``: the ring never hands them over, issue 11 item 2)."""
    if payload.get("vms") is not None:
        return list(payload["vms"])
    ref = payload["members"]
    return list(members_mod.read_wave_members_core(store, {"runId": payload["runId"], "planHash": ref["planHash"],
                                                           "wave": payload["wave"], "slice": ref["slice"]})["vms"])


def resolving(monkeypatch: pytest.MonkeyPatch, fleet: list[dict[str, Any]]) -> list[Any]:
    calls: list[Any] = []

    def resolve(clients: Any, payload: Any, **_: Any) -> dict[str, Any]:
        calls.append(payload)
        return {"vms": copy.deepcopy(fleet)}

    monkeypatch.setattr(members_mod, "resolve_ring_members_core", resolve)
    return calls


def ring(concurrency: int = 50, max_errors: int = 0) -> dict[str, Any]:
    return {**copy.deepcopy(RING0), "rate": {"maxConcurrency": concurrency, "maxErrors": max_errors}}


def test_plan_ring_waves_answers_counts_writes_slices_and_answers_the_first_plan_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = [vmz(f"v{i:03d}", "Windows" if i % 3 else "Linux", str(i % 3 + 1)) for i in range(250)]
    calls = resolving(monkeypatch, fleet)
    store = Store()
    payload = {"ring": "ring0", "ringSpec": ring(120), "runId": "r:ring0", "sliceSize": 100, "rolloutId": "r"}
    answer = members_mod.plan_ring_waves_core(object(), store, payload)  # type: ignore[arg-type]
    assert answer["count"] == 250 and answer["waves"] == [120, 120, 10] and answer["sliceSize"] == 100
    assert answer["byOs"] == {"Linux": 84, "Windows": 166} and "vms" not in json.dumps(answer)
    # every VM once, in the domain's wave order, in slices of at most 100
    read = [members_mod.read_wave_members_core(store, {"runId": "r:ring0", "planHash": answer["hash"],
                                                       "wave": w, "slice": k})["vms"]
            for w, k in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]]
    assert [len(part) for part in read] == [100, 20, 100, 20, 10]
    from patchrings.domain.plan import Ring

    waves = Ring.from_dict(ring(120)).rate.waves(fleet)
    assert [v["id"] for part in read for v in part] == [i for wave in waves for i in wave]
    # check before act: a retry answers the plan written first, without resolving again
    fleet.append(vmz("late", "Windows", "1"))
    assert members_mod.plan_ring_waves_core(object(), store, payload) == answer  # type: ignore[arg-type]
    assert len(calls) == 1
    with pytest.raises(LookupError):
        members_mod.read_wave_members_core(store, {"runId": "r:ring0", "planHash": answer["hash"], "wave": 3})


def test_ring_coverage_counts_the_uncovered_and_names_the_first_hundred(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = [vmz(f"l{i:03d}", "Linux", "1") for i in range(150)] + [vmz("w1", "Windows", "1")]
    resolving(monkeypatch, fleet)
    manifest = {"coverage": ["Windows"]}
    answer = members_mod.ring_coverage_core(object(), {"ring": "ring1", "ringSpec": ring(), "manifest": manifest})  # type: ignore[arg-type]
    assert answer["members"] == 151 and answer["refusedCount"] == 150 and answer["families"] == ["Linux"]
    assert len(answer["refused"]) == 100 and answer["refused"][0]["vm"] == fleet[0]["id"]
    lenient = {**ring(), "gate": {**(ring().get("gate") or {}), "allowUncoveredOs": True}}
    answer = members_mod.ring_coverage_core(object(), {"ring": "ring1", "ringSpec": lenient, "manifest": manifest})  # type: ignore[arg-type]
    assert answer["refusedCount"] == 0 and answer["refused"] == []


class CanContext(ScriptedContext):
    def __init__(self, payload: Any) -> None:
        super().__init__(payload)
        self.continued: list[Any] = []

    def continue_as_new(self, payload: Any) -> None:
        self.continued.append(payload)


def _run(spec: dict[str, Any], answer: Any) -> tuple[dict[str, Any], list[CanContext]]:
    contexts: list[CanContext] = []
    payload: Any = spec
    while True:
        ctx = CanContext(payload)
        contexts.append(ctx)
        out = drive(raw(ring_direct_mod.ring_direct_orchestrator), ctx, answer)
        if not ctx.continued:
            return out, contexts
        payload = ctx.continued[0]


def test_a_1200_vm_ring_from_the_ledger_decides_as_from_its_vm_list_and_never_carries_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = [vmz(f"m{i:04d}", "Windows" if i % 2 else "Linux", str(i % 3 + 1)) for i in range(1200)]
    sick = {fleet[7]["id"], fleet[900]["id"]}  # inconclusive: kept whole, not passed
    resolving(monkeypatch, fleet)
    store = Store()

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == names.PLAN_RING_WAVES:
            return members_mod.plan_ring_waves_core(object(), store, call.payload)  # type: ignore[arg-type]
        if call.name == names.READ_WAVE_MEMBERS:
            return members_mod.read_wave_members_core(store, call.payload)
        if call.name == names.WAVE:
            part = slice_of(store, call.payload)
            verdicts = [{"vm": v["id"], "name": v["name"], "install": "ok", "health": "healthy", "outcome": "pass",
                         "reasons": []} if v["id"] not in sick else
                        {"vm": v["id"], "name": v["name"], "install": "inconclusive", "health": "skipped",
                         "outcome": "inconclusive", "reasons": ["install: unreadable"]} for v in part]
            return wave_answer(part, verdicts, call.payload, installSeconds={"windows": 600.0}, results=[
                {"vm": v["id"], "os": v["os"], "state": "done",
                 "result": {"patches": ok_result("5048667" if v["os"] == "Windows" else "")["patches"]
                            if v["os"] == "Windows" else
                            [{"name": "openssl", "version": "3", "installationState": "Installed"}]}}
                for v in part])
        return {}

    base = {"rolloutId": "r", "ringSpec": ring(50, 5), "ring": "ring0", "runId": "r:ring0",
            "startedAt": "2026-11-16T06:00:00Z", "buildManifest": True}
    out, contexts = _run(dict(base), answer)
    given, given_contexts = _run({**base, "vms": fleet}, answer)
    # 24 waves of 50: a fresh execution every 500 VMs (10 waves), never the VM list in the carry
    assert len(contexts) == len(given_contexts) == 3
    assert len(named(contexts[0], names.PLAN_RING_WAVES)) == 1
    assert all(not named(c, names.PLAN_RING_WAVES) for c in contexts[1:])
    for ctx in contexts[:-1]:
        carry = ctx.continued[0]["carry"]
        assert "vms" not in carry and "vms" not in ctx.continued[0]
        assert len(carry["sample"]) <= 50 and len(carry["sources"]) <= 100
        assert len(json.dumps(carry)) < 40_000
    # the same decision, counts, health sample and manifest as from the VM list
    assert out["gate"] == given["gate"] and out["gate"]["outcome"] == "inconclusive"
    assert out["counts"] == given["counts"] and out["counts"]["vms"] == 1200
    assert out["healthSample"] == given["healthSample"]
    passing = [v for v in fleet if v["id"] not in sick]
    assert out["healthSample"] == health_sample(passing)
    assert out["manifest"]["hash"] == given["manifest"]["hash"]
    assert out["manifest"]["coverage"] == given["manifest"]["coverage"] == ["Linux", "Windows"]
    assert out["manifest"]["sourceCount"] == 1198 and len(out["manifest"]["sources"]) == 100
    assert out["manifest"]["sources"] == sorted((v["id"] for v in passing), key=str.lower)[:100]
    assert out["budget"] == given["budget"]


def test_a_ring_past_its_budget_names_the_first_hundred_skipped_and_counts_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = [vmz(f"k{i:04d}", "Windows", str(i % 3 + 1)) for i in range(400)]
    resolving(monkeypatch, fleet)
    store = Store()

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == names.PLAN_RING_WAVES:
            return members_mod.plan_ring_waves_core(object(), store, call.payload)  # type: ignore[arg-type]
        if call.name == names.READ_WAVE_MEMBERS:
            return members_mod.read_wave_members_core(store, call.payload)
        if call.name == names.WAVE:  # the first wave fails: the budget (0) is exceeded
            return {"verdicts": [{"vm": v["id"], "install": "failed", "health": "skipped", "outcome": "fail",
                                  "reasons": ["install: boom"]} for v in slice_of(store, call.payload)]}
        return {}

    out, _ = _run({"rolloutId": "r", "ringSpec": ring(50), "ring": "ring0", "runId": "r:ring0"}, answer)
    assert out["skipped"] == 350 and out["counts"]["skipped"] == 350
    not_started = [r for r in out["gate"]["reasons"] if r["reason"].startswith("not started")]
    assert len(not_started) == 100
    assert any(r["vm"] == "" and r["reason"].startswith("250 more VM(s) not started") for r in out["gate"]["reasons"])
    assert out["gate"]["outcome"] == "fail"


def test_resolve_ring_members_count_only_answers_the_number_and_no_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rollout's planner asks Ring 0's size with ``countOnly``: no VM enters its history."""
    from patchrings import deps

    fleet = [vmz(f"c{i:03d}", "Windows", "1") for i in range(30)]
    resolving(monkeypatch, fleet)
    monkeypatch.setattr(deps, "clients", object)
    payload = {"ring": "ring0", "ringSpec": ring(), "countOnly": True}
    assert members_mod.resolve_ring_members(payload) == {"vms": [], "count": 30}
    assert len(members_mod.resolve_ring_members({**payload, "countOnly": None})["vms"]) == 30
