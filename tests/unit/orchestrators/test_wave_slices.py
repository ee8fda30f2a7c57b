"""Issue 11, item 2: a wave reads its own slice; no VM passes through the direct ring's history.

``ring_direct`` hands each wave instance a reference (``members``: plan hash, slice, count) that
``plan_ring_waves`` wrote to the ledger; the wave calls ``read_wave_members`` first (READ
retries). A slice the wave cannot read installs nothing and makes the ring's gate inconclusive
(never passed), with a reason naming the slice and ``counts.unread``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from activities import members as members_mod
from orchestrators import names, retries
from orchestrators import ring_direct as ring_direct_mod
from orchestrators import wave as wave_mod
from tests.unit.orchestrators.test_orch_verdicts import (
    RING0,
    WAVE_SPEC,
    ActivityFailed,
    Call,
    ScriptedContext,
    drive,
    named,
    ok_result,
    raw,
)
from tests.unit.orchestrators.test_ring_direct_ledger_members import Store, resolving, slice_of, vmz
from tests.unit.orchestrators.test_ring_direct_scale import wave_answer

pytestmark = pytest.mark.unit


def fleet_of(n: int) -> list[dict[str, Any]]:
    return [vmz(f"m{i:05d}", "Windows" if i % 2 else "Linux", str(i % 3 + 1)) for i in range(n)]


def ring_run(fleet: list[dict[str, Any]], concurrency: int, *, given: bool = False,
             unreadable: set[tuple[int, int]] | None = None) -> tuple[dict[str, Any], ScriptedContext, int]:
    """One direct ring over ``fleet`` with fake waves answering in the real contract; the bytes
    of everything the ring scheduled and was answered (what its history replays)."""
    store = Store()
    replayed = 0

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        nonlocal replayed
        out: Any = {}
        if call.name == names.PLAN_RING_WAVES:
            out = members_mod.plan_ring_waves_core(object(), store, call.payload)  # type: ignore[arg-type]
        elif call.name == names.READ_WAVE_MEMBERS:
            out = members_mod.read_wave_members_core(store, call.payload)
        elif call.name == names.WAVE:
            ref = call.payload.get("members") or {}
            if (call.payload["wave"], ref.get("slice")) in (unreadable or set()):
                out = {"packed": True, "verdicts": [], "passed": {}, "count": ref["count"], "sample": [],
                       "unread": {"count": ref["count"], "error": {"code": "WaveMembersUnreadable",
                                                                   "message": "ledger unavailable"}}}
            else:
                part = slice_of(store, call.payload)
                verdicts = [{"vm": v["id"], "name": v["name"], "install": "ok", "health": "healthy",
                             "outcome": "pass", "reasons": []} for v in part]
                out = wave_answer(part, verdicts, call.payload, installSeconds={"windows": 600.0}, results=[
                    {"vm": v["id"], "os": v["os"], "state": "done",
                     "result": {"patches": ok_result("5048667")["patches"]}} for v in part])
        replayed += len(json.dumps(call.payload)) + len(json.dumps(out))
        return out

    ring = {**copy.deepcopy(RING0), "rate": {"maxConcurrency": concurrency, "maxErrors": 0}}
    spec: dict[str, Any] = {"rolloutId": "r", "ringSpec": ring, "ring": "ring0", "runId": "r:ring0",
                            "startedAt": "2026-11-16T06:00:00Z", "buildManifest": True}
    if given:
        spec["vms"] = fleet
    ctx = ScriptedContext(spec)
    out = drive(raw(ring_direct_mod.ring_direct_orchestrator), ctx, answer)
    return out, ctx, replayed


@pytest.mark.parametrize("size", [1000, 5000])
def test_a_large_wave_gets_references_and_no_vm_passes_through_the_ring(
        monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    fleet = fleet_of(size)
    resolving(monkeypatch, fleet)
    out, ctx, replayed = ring_run(fleet, size)
    waves = named(ctx, names.WAVE)
    assert len(waves) == size // 100
    assert all("vms" not in w.payload for w in waves)
    assert [w.payload["members"]["slice"] for w in waves] == list(range(size // 100))
    assert {w.payload["members"]["count"] for w in waves} == {100}
    assert not named(ctx, names.READ_WAVE_MEMBERS)  # the waves read their slices, not the ring
    text = json.dumps([c.payload for c in ctx.calls])
    assert not any(vm["id"] in text for vm in fleet)
    assert out["gate"]["outcome"] == "pass" and out["counts"]["vms"] == size
    assert len(out["healthSample"]) == 50 and out["manifest"]["sourceCount"] == size
    # the same ring handed its VMs (the older path: VMs in every wave input) replays far more
    _, _, given = ring_run(fleet, size, given=True)
    assert replayed * 3 < given, (replayed, given)
    assert replayed / size < 60  # bytes per VM: the packed pass indexes and a share of per-slice overhead


def test_the_wave_reads_its_slice_first_with_read_retries() -> None:
    part = [vmz("a", "Windows", "1"), vmz("b", "Linux", "2")]
    spec = {**{k: v for k, v in WAVE_SPEC.items() if k != "vms"}, "wave": 3,
            "parameters": {"Windows": {"rebootSetting": "IfRequired"}, "Linux": {"rebootSetting": "IfRequired"}},
            "members": {"planHash": "h1", "slice": 2, "count": 2}, "sampleSize": 50, "sourcesWanted": 100}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == names.READ_WAVE_MEMBERS:
            return {"vms": part}
        if call.name == names.START_INSTALL:
            return {"state": "started", "token": "tok", "error": None}
        if call.name == names.POLL_INSTALL:
            return {"done": True, "result": ok_result()}
        if call.name == names.VERIFY:
            return {"verdicts": [{"vm": v["id"], "name": v["name"], "install": "ok", "health": "healthy",
                                  "outcome": "pass", "reasons": []} for v in call.payload["vms"]]}
        return {}

    ctx = ScriptedContext(spec)
    out = drive(raw(wave_mod.wave_orchestrator), ctx, answer)
    first = ctx.calls[0]
    assert first.name == names.READ_WAVE_MEMBERS and first.retry is retries.READ
    assert first.payload == {"runId": "r:ring0", "planHash": "h1", "wave": 3, "slice": 2, "rolloutId": "r",
                             "ring": "ring0"}
    assert sorted(c.payload["vm"]["name"] for c in named(ctx, names.START_INSTALL)) == ["a", "b"]
    assert out["count"] == 2 and out["passed"] == {"ok|healthy": [0, 1]}
    assert [v["name"] for v in out["sample"]] == ["a", "b"] and out["sourceCount"] == 2
    assert out.get("unread") is None


def test_a_wave_that_cannot_read_its_slice_installs_nothing_and_says_so() -> None:
    spec = {**{k: v for k, v in WAVE_SPEC.items() if k != "vms"},
            "members": {"planHash": "h", "slice": 1, "count": 100}}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == names.READ_WAVE_MEMBERS:
            raise ActivityFailed("table storage unavailable")  # after READ's attempts
        raise AssertionError(f"nothing else may run: {call.name}")

    ctx = ScriptedContext(spec)
    out = drive(raw(wave_mod.wave_orchestrator), ctx, answer)
    assert [c.name for c in ctx.calls] == [names.READ_WAVE_MEMBERS]
    assert out["unread"]["count"] == 100 and out["unread"]["error"]["code"] == "WaveMembersUnreadable"
    assert out["passed"] == {} and out["verdicts"] == [] and out["count"] == 100
    assert ctx.statuses[-1]["step"] == "members-unreadable" and ctx.statuses[-1]["states"] == {"unread": 100}


def test_an_unread_slice_makes_the_ring_gate_inconclusive_never_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = fleet_of(300)
    resolving(monkeypatch, fleet)
    out, _, _ = ring_run(fleet, 300, unreadable={(0, 1)})
    assert out["gate"]["outcome"] == "inconclusive"
    assert out["counts"]["unread"] == 100 and out["counts"]["vms"] == 200  # the verdicts that exist
    [reason] = [r for r in out["gate"]["reasons"] if "could not read its members" in r["reason"]]
    assert reason["reason"].startswith("wave 1 slice 1: 100 VM(s) not installed")
    assert out["budget"]["errors"] == 0  # never installed: not failures either


def test_a_skipped_wave_reads_only_the_slices_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the budget, the ring names the first 100 VMs not started: one slice read, not 40."""
    fleet = fleet_of(4100)
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

    ring = {**copy.deepcopy(RING0), "rate": {"maxConcurrency": 4000, "maxErrors": 0}}
    ctx = ScriptedContext({"rolloutId": "r", "ringSpec": ring, "ring": "ring0", "runId": "r:ring0"})
    out = drive(raw(ring_direct_mod.ring_direct_orchestrator), ctx, answer)
    assert out["skipped"] == 100 and len(named(ctx, names.READ_WAVE_MEMBERS)) == 1
    assert out["gate"]["outcome"] == "fail"
