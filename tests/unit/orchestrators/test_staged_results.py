"""A scheduled ring's Resource Graph rows staged once for the ring (issue 11): ``run_results``
calls ``stage_run_results`` before its chunks; each chunk reads its slice from the ledger
(``read_staged_results``) and queries Resource Graph only for its VMs whose rows were late,
keeping the 2/5/10/15-minute re-queries and the instance-view fallback (never a pass). If
staging fails, every chunk queries for itself, as before."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrators import names, retries
from orchestrators import run_results as run_results_mod
from tests.unit.orchestrators.chunked import ChunkContext, with_chunks
from tests.unit.orchestrators.test_orch_verdicts import (
    ActivityFailed,
    Call,
    ScriptedContext,
    drive,
    named,
    ok_result,
    raw,
    run_spec,
    vm,
)

pytestmark = pytest.mark.unit

HEALTHY: dict[str, Any] = {"powerState": "running", "vmAgent": "Ready", "appHealth": "Healthy", "probes": [],
                           "readError": None}


def fleet(n: int) -> list[dict[str, Any]]:
    return [vm(f"s{i:05d}") for i in range(n)]


def chunk_sizes(n: int) -> list[int]:
    size = run_results_mod.VERIFY_CHUNK
    return [min(size, n - first) for first in range(0, n, size)]


class Staging:
    """The staging activity and the ledger's staged slices, as the real ones answer: the run's
    rows of ``members`` minus those ``late`` at the first staging (they arrive on the first
    re-query, the ring's or a chunk's) and those that ``never`` arrive; ``incomplete``: calls that
    stop for their time budget first."""

    def __init__(self, members: list[dict[str, Any]], *, late: set[str] = frozenset(),  # type: ignore[assignment]
                 never: set[str] = frozenset(), incomplete: int = 0, fail: tuple[str, ...] = (),  # type: ignore[assignment]
                 unstaged: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.members = members
        self.late, self.never, self.incomplete, self.fail, self.unstaged = late, never, incomplete, fail, unstaged
        self.slices: dict[int, list[dict[str, Any]]] = {}
        self.stage_payloads: list[dict[str, Any]] = []

    def entry(self, v: dict[str, Any], *, staging: bool) -> dict[str, Any]:
        if v["name"] in self.never or (staging and v["name"] in self.late):
            return {"vm": v["id"], "state": "missing", "result": None, "error": {"code": "NoResourceGraphRow"}}
        return {"vm": v["id"], "state": "done", "result": ok_result(), "error": None}

    def __call__(self, call: Call, ctx: ScriptedContext) -> Any:
        if call.name in self.fail:
            raise ActivityFailed(f"{call.name} down")
        if call.name == names.STAGE_RUN_RESULTS:
            self.stage_payloads.append(call.payload)
            size = run_results_mod.VERIFY_CHUNK
            first = not call.payload.get("restage")
            for part in range(-(-len(self.members) // size)):
                if part not in self.unstaged:
                    self.slices[part] = [self.entry(v, staging=first)
                                         for v in self.members[part * size:(part + 1) * size]]
            pending = sum(1 for entries in self.slices.values() for e in entries if e["state"] != "done")
            if self.incomplete:
                self.incomplete -= 1
                return {"complete": False, "slices": len(self.slices), "staged": 0, "pending": pending}
            return {"complete": True, "slices": len(self.slices), "staged": len(self.slices), "pending": pending}
        if call.name == names.READ_STAGED_RESULTS:
            return {"results": self.slices.get(call.payload["slice"])}
        if call.name == names.COLLECT_RESULTS_ARG:
            return {"results": [self.entry(v, staging=False) for v in call.payload["vms"]]}
        if call.name == names.COLLECT_RESULTS:
            return {"results": [{"vm": v["id"], "state": "done",
                                 "result": {"status": "Succeeded", "source": "instanceView", "patches": []}}
                                for v in call.payload["vms"]]}
        if call.name == names.CHECK_HEALTH_BATCH:
            return {"samples": [{"vm": c["vm"]["id"], **HEALTHY} for c in call.payload["checks"]]}
        return {"written": True}


def run(staging: Staging) -> tuple[ChunkContext, dict[str, Any]]:
    ctx = ChunkContext(run_spec())
    out = drive(raw(run_results_mod.run_results_orchestrator), ctx, with_chunks(staging, staging.members))
    return ctx, out


def arg_vms(ctx: ChunkContext) -> list[list[str]]:
    return [[v["name"] for v in c.payload["vms"]] for c in named(ctx, names.COLLECT_RESULTS_ARG)]


def test_all_rows_staged_no_chunk_queries_resource_graph() -> None:
    staging = Staging(fleet(450))
    ctx, out = run(staging)
    assert len(named(ctx, names.STAGE_RUN_RESULTS)) == 1
    reads = named(ctx, names.READ_STAGED_RESULTS)
    assert [c.payload["slice"] for c in reads] == list(range(len(chunk_sizes(450))))  # one ledger read per chunk
    assert {c.retry for c in reads} == {retries.READ}
    assert arg_vms(ctx) == [] and named(ctx, names.COLLECT_RESULTS) == []
    assert out["gate"]["outcome"] == "pass", out["gate"]
    assert out["counts"]["vms"] == 450
    stage = named(ctx, names.STAGE_RUN_RESULTS)[0].payload
    plan = named(ctx, names.PLAN_RING_WAVES)[0].payload
    assert (stage["runId"], stage["planHash"]) == (plan["runId"], "h")


def test_late_rows_are_requeried_by_their_chunk_only_naming_them() -> None:
    vms = fleet(450)
    late = {vms[250]["name"], vms[260]["name"]}  # both in one chunk
    ctx, out = run(Staging(vms, late=late))
    assert arg_vms(ctx) == [sorted(late)]  # one re-query, by the one chunk, for its two late VMs
    assert out["gate"]["outcome"] == "pass", out["gate"]  # their rows came on the re-query


def test_rows_late_past_every_requery_fall_back_and_stay_inconclusive() -> None:
    vms = fleet(30)
    never = {vms[3]["name"]}
    ctx = ChunkContext(run_spec())
    start = ctx.current_utc_datetime
    out = drive(raw(run_results_mod.run_results_orchestrator), ctx, with_chunks(Staging(vms, never=never), vms))
    delays = run_results_mod.ARG_REQUERY_DELAYS
    assert arg_vms(ctx) == [sorted(never)] * len(delays)  # the staged read counts as the first query
    fallback = named(ctx, names.COLLECT_RESULTS)
    assert [[v["name"] for v in c.payload["vms"]] for c in fallback] == [sorted(never)]
    assert out["gate"]["outcome"] == "inconclusive"
    reasons = " ".join(r["reason"] for r in out["gate"]["reasons"])
    assert f"after {len(delays) + 1} queries" in reasons and "never a pass" in reasons
    assert ctx.current_utc_datetime >= start + sum(delays, timedelta())  # every re-query waited its timer


def test_a_staging_that_stops_for_its_budget_is_called_again() -> None:
    ctx, out = run(Staging(fleet(250), incomplete=2))
    assert len(named(ctx, names.STAGE_RUN_RESULTS)) == 3
    assert arg_vms(ctx) == [] and out["gate"]["outcome"] == "pass"


def test_staging_down_every_chunk_queries_for_itself_as_before() -> None:
    vms = fleet(450)
    ctx, out = run(Staging(vms, fail=(names.STAGE_RUN_RESULTS,)))
    assert named(ctx, names.READ_STAGED_RESULTS) == []
    assert [len(n) for n in arg_vms(ctx)] == chunk_sizes(450)
    assert out["gate"]["outcome"] == "pass"


def test_an_unstaged_or_unreadable_slice_queries_for_itself() -> None:
    vms = fleet(450)
    ctx, _ = run(Staging(vms, unstaged={1}))
    assert [len(n) for n in arg_vms(ctx)] == [chunk_sizes(450)[1]]  # only the second chunk, for all its VMs
    ctx, out = run(Staging(vms, fail=(names.READ_STAGED_RESULTS,)))
    assert [len(n) for n in arg_vms(ctx)] == chunk_sizes(450)
    assert out["gate"]["outcome"] == "pass"


def test_a_staged_row_never_passes_a_vm_of_another_chunk() -> None:
    """A staged slice holding a VM that is not the chunk's (never expected) does not count for it."""
    vms = fleet(20)
    staging = Staging(vms)
    original = staging.__call__

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        out = original(call, ctx)
        if call.name == names.READ_STAGED_RESULTS:
            stranger = vm("stranger")
            return {"results": [e for e in out["results"] if not e["vm"].endswith("s00001")]
                    + [{"vm": stranger["id"], "state": "done", "result": ok_result()}]}
        return out

    ctx = ChunkContext(run_spec())
    drive(raw(run_results_mod.run_results_orchestrator), ctx, with_chunks(answer, vms))
    assert arg_vms(ctx)[0] == ["s00001"]


def test_a_run_lagging_as_a_whole_is_restaged_for_the_ring_not_requeried_per_chunk() -> None:
    vms = fleet(450)
    late = {v["name"] for v in vms[:300]}  # more than one chunk's worth: Resource Graph lags for the run
    staging = Staging(vms, late=late)
    ctx = ChunkContext(run_spec())
    start = ctx.current_utc_datetime
    out = drive(raw(run_results_mod.run_results_orchestrator), ctx, with_chunks(staging, vms))
    assert [p.get("restage") for p in staging.stage_payloads] == [None, True]
    assert arg_vms(ctx) == [] and out["gate"]["outcome"] == "pass", out["gate"]
    assert ctx.current_utc_datetime >= start + run_results_mod.ARG_REQUERY_DELAYS[0]
    # the chunks were told how many ring-wide queries were made
    assert {c.payload["collect"]["staged"] for c in ctx.calls if c.name == names.VERIFY} == {2}


def test_rows_that_never_come_for_the_whole_ring_fall_back_after_the_rings_requeries() -> None:
    vms = fleet(450)
    delays = run_results_mod.ARG_REQUERY_DELAYS
    ctx, out = run(Staging(vms, never={v["name"] for v in vms}))
    assert len(named(ctx, names.STAGE_RUN_RESULTS)) == len(delays) + 1
    assert arg_vms(ctx) == []  # no chunk re-queried: the ring's re-queries were spent already
    assert sorted(len(c.payload["vms"]) for c in named(ctx, names.COLLECT_RESULTS)) == sorted(chunk_sizes(450))
    assert out["gate"]["outcome"] == "inconclusive"
    reasons = " ".join(r["reason"] for r in out["gate"]["reasons"])
    assert f"for 450 VM(s) after {len(delays) + 1} queries" in reasons


def test_the_ledger_write_takes_staged_patch_lists_from_the_staged_rows_not_the_history() -> None:
    vms = fleet(30)
    late = {vms[7]["name"]}
    ctx, out = run(Staging(vms, late=late))
    assert out["gate"]["outcome"] == "pass"
    write = named(ctx, names.LEDGER_VM_RESULTS)[0].payload
    by_name = {r["vm"].rsplit("/", 1)[-1]: r["result"] for r in write["results"]}
    staged = [name for name in by_name if name not in late]
    # staged entries: no patch list in the chunk's history, a marker the write resolves
    assert all("patches" not in by_name[n] and by_name[n]["patchesStaged"] for n in staged)
    # the late VM's entry came from the chunk's own query: its patches travel as before
    assert by_name[vms[7]["name"]]["patches"] and "patchesStaged" not in by_name[vms[7]["name"]]
    plan = named(ctx, names.PLAN_RING_WAVES)[0].payload
    assert (write["staged"]["runId"], write["staged"]["planHash"], write["staged"]["slice"]) == (
        plan["runId"], "h", 0)
    # the verdicts were judged on the whole entries (patches and all) before the write
    assert all(v["outcome"] == "pass" for v in write["verdicts"])
