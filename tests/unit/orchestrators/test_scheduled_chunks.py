"""A scheduled ring's results in chunks (issue 11): run_results holds no VM, its gate is the gate
of every verdict (decided from counts and the first named verdicts), every safety rule holds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrators import names
from orchestrators import run_results as run_results_mod
from orchestrators import verify as verify_mod
from orchestrators.verdicts import gate_for
from tests.unit.orchestrators.chunked import ChunkContext, with_chunks
from tests.unit.orchestrators.test_orch_verdicts import (
    RING1,
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

HEALTHY = {"powerState": "running", "vmAgent": "Ready", "appHealth": "Healthy", "probes": [], "readError": None}
STOPPED = {**HEALTHY, "powerState": "deallocated"}


def fleet(n: int) -> list[dict[str, Any]]:
    return [vm(f"s{i:05d}") for i in range(n)]


def answers(sick: set[str] = frozenset(), late: set[str] = frozenset()) -> Any:  # type: ignore[assignment]
    """Resource Graph has every row but ``late``'s; VMs named in ``sick`` are stopped after patching."""

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == names.COLLECT_RESULTS_ARG:
            return {"results": [{"vm": v["id"], "state": "done", "result": ok_result()}
                                for v in call.payload["vms"] if v["name"] not in late]}
        if call.name == names.COLLECT_RESULTS:
            return {"results": [{"vm": v["id"], "state": "done",
                                 "result": {"status": "Succeeded", "source": "instanceView", "patches": []}}
                                for v in call.payload["vms"]]}
        if call.name == names.CHECK_HEALTH_BATCH:
            return {"samples": [{"vm": c["vm"]["id"], **(STOPPED if c["vm"]["name"] in sick else HEALTHY)}
                                for c in call.payload["checks"]]}
        return {"written": True}

    return answer


def run(vms: list[dict[str, Any]], answer: Any, **kw: Any) -> tuple[ChunkContext, dict[str, Any]]:
    ctx = ChunkContext(run_spec())
    out = drive(raw(run_results_mod.run_results_orchestrator), ctx, with_chunks(answer, vms, **kw))
    return ctx, out


def every_verdict(ctx: ChunkContext) -> list[dict[str, Any]]:
    """What the chunks wrote to the ledger: every VM's verdict."""
    return [v for c in named(ctx, names.LEDGER_VM_RESULTS) for v in c.payload["verdicts"]]


def parent_payloads(ctx: ChunkContext) -> str:
    """Everything run_results itself sent and received a call for (its own history's inputs)."""
    own = [c for c in ctx.calls if c.name in (names.PLAN_RING_WAVES, names.VERIFY)]
    return json.dumps([c.payload for c in own])


def test_many_failures_fail_the_gate_with_every_count_and_a_bounded_list() -> None:
    vms = fleet(450)
    sick = {v["name"] for v in vms[::3]}  # 150 failures across three chunks
    ctx, out = run(vms, answers(sick=sick))
    full = gate_for(RING1, "ring1", every_verdict(ctx))
    assert out["gate"]["outcome"] == full["outcome"] == "fail"
    assert out["gate"]["counts"] == full["counts"] and out["gate"]["counts"]["failed"] == 150
    assert out["gate"]["summary"] == full["summary"]
    named_vms = {r["vm"] for r in out["gate"]["reasons"] if r["vm"]}
    assert len(named_vms) == run_results_mod.MAX_GATE_NAMED
    assert out["gate"]["reasons"][-1] == {"vm": "", "reason": "50 more VM(s) failed or could not be verified "
                                                                "(not named here; the ledger has their rows)"}
    assert out["counts"]["vms"] == 450 and out["counts"]["health:unhealthy"] == 150
    assert not any(v["id"] in parent_payloads(ctx) for v in vms)  # no VM in run_results' own calls
    assert len(named(ctx, names.COLLECT_RESULTS_ARG)) == -(-450 // run_results_mod.VERIFY_CHUNK)


def test_a_small_ring_gets_the_same_gate_as_over_every_verdict() -> None:
    vms = fleet(7)
    ctx, out = run(vms, answers(sick={vms[2]["name"]}))
    assert out["gate"] == gate_for(RING1, "ring1", every_verdict(ctx))
    assert [v["id"] for v in out["healthSample"]] == sorted(v["id"] for i, v in enumerate(vms) if i != 2)


def test_late_rows_in_two_chunks_are_one_inconclusive_note_never_a_pass() -> None:
    vms = fleet(run_results_mod.VERIFY_CHUNK + 3)
    late = {vms[0]["name"], vms[-1]["name"]}  # one in each chunk
    ctx, out = run(vms, answers(late=late))
    assert out["gate"]["outcome"] == "inconclusive"
    queries = len(verify_mod.ARG_REQUERY_DELAYS) + 1
    assert out["gate"]["reasons"][0]["reason"].startswith(
        f"Resource Graph has no finished result of this run for 2 VM(s) after {queries} queries")
    assert out["gate"]["counts"]["inconclusive"] == 2 and out["gate"]["counts"]["passed"] == len(vms) - 2
    fallback = named(ctx, names.COLLECT_RESULTS)
    assert sorted(v["name"] for c in fallback for v in c.payload["vms"]) == sorted(late)


def test_unreadable_chunk_members_leave_the_ring_inconclusive() -> None:
    ctx, out = run(fleet(3), answers(), fail=(names.READ_WAVE_MEMBERS,))
    assert out["gate"]["outcome"] == "inconclusive"
    assert "3 member(s) of slice 0 could not be read from the ledger" in out["gate"]["reasons"][0]["reason"]
    assert named(ctx, names.COLLECT_RESULTS_ARG) == []  # nothing is collected for VMs nobody can name


def test_an_unresolvable_ring_is_inconclusive() -> None:
    _ctx, out = run(fleet(3), answers(), fail=(names.PLAN_RING_WAVES,))
    assert out["gate"]["outcome"] == "inconclusive" and out["counts"] == {"vms": 0}
    assert "members could not be resolved" in out["gate"]["reasons"][0]["reason"]


def test_resource_graph_unreadable_falls_back_and_says_so() -> None:
    ctx, out = run(fleet(2), answers(), fail=(names.COLLECT_RESULTS_ARG,))
    assert out["gate"]["outcome"] == "inconclusive"
    assert out["gate"]["reasons"][0]["reason"].startswith("Resource Graph could not be read")
    assert len(named(ctx, names.COLLECT_RESULTS)) == 1


def test_a_chunk_summary_names_at_most_max_named_verdicts() -> None:
    vms = fleet(150)
    verdicts = [{"vm": v["id"], "install": "ok", "health": "unhealthy", "outcome": "fail", "reasons": ["x"]}
                for v in vms]
    summary = verify_mod.summarize(vms, verdicts, verify_mod.ArgOutcome())
    assert len(summary.named) == verify_mod.MAX_NAMED
    assert summary.omitted == {"fail|ok|unhealthy": 150 - verify_mod.MAX_NAMED}
    assert summary.counts["vms"] == 150 and summary.health_sample == []


# ------------------------------------------------------------------ the status API's view of the chunks
from orchestrators.status import merged_health, verify_instances  # noqa: E402


def test_every_verify_instance_of_a_run_is_named_not_only_the_first() -> None:
    ctx, _ = run(fleet(run_results_mod.VERIFY_CHUNK * 2 + 1), answers())
    first = ctx.statuses[-1]
    assert verify_instances(first["verifyInstance"], first["verifyInstances"]) == ctx.sub_ids
    assert verify_instances("w:verify", 0) == ["w:verify"]


def test_merged_health_sums_phases_and_waits_for_the_last_chunk() -> None:
    chunks = [{"checked": 200, "healthPhases": {"stayHealthy": 150, "done": 50}, "healthPhase": "stayHealthy",
               "until": "2026-11-16T13:00:00Z"},
              {"checked": 200, "healthPhases": {"stayHealthy": 120, "elastic": 80}, "healthPhase": "stayHealthy",
               "until": "2026-11-16T13:10:00Z"},
              {"checked": 10, "healthPhases": {"elastic": 10}, "healthPhase": "elastic",
               "until": "2026-11-16T14:00:00Z"}]
    merged = merged_health(chunks)
    assert merged["healthPhases"] == {"stayHealthy": 270, "done": 50, "elastic": 90} and merged["checked"] == 410
    assert merged["healthPhase"] == "stayHealthy" and merged["until"] == "2026-11-16T13:10:00Z"
    assert merged_health([{"healthPhases": {"done": 3}, "healthPhase": "done"}])["healthPhase"] == "done"
    assert merged_health([])["healthPhase"] is None


def test_when_every_vm_fails_each_chunk_names_only_its_share_of_the_gates_list() -> None:
    """Review finding: a chunk named up to MAX_NAMED (= the chunk's size) verdicts, so a ring
    where everything fails brought every verdict back into run_results' history. Each chunk now
    names at most its share (twice over) of the gate's MAX_GATE_NAMED; counts stay exact."""
    vms = fleet(1000)
    ctx, out = run(vms, answers(sick={v["name"] for v in vms}))
    chunks = -(-1000 // run_results_mod.VERIFY_CHUNK)
    share = -(-2 * run_results_mod.MAX_GATE_NAMED // chunks)
    sizes = {c.payload.get("namedSize") for c in named(ctx, names.VERIFY)}
    assert sizes == {share} and share < run_results_mod.VERIFY_CHUNK
    assert out["gate"]["counts"]["failed"] == 1000 and out["gate"]["outcome"] == "fail"
    assert len({r["vm"] for r in out["gate"]["reasons"] if r["vm"]}) == run_results_mod.MAX_GATE_NAMED


def test_summarize_names_at_most_the_share_it_is_given_and_counts_the_rest() -> None:
    vms = fleet(30)
    verdicts = [{"vm": v["id"], "outcome": "fail", "install": "failed", "health": "healthy", "reasons": ["x"]}
                for v in vms]
    summary = verify_mod.summarize(vms, verdicts, verify_mod.ArgOutcome(), named_size=4)
    assert len(summary.named) == 4 and sum(summary.omitted.values()) == 26 and summary.vms == 30
    assert len(verify_mod.summarize(vms, verdicts, verify_mod.ArgOutcome()).named) == 30
