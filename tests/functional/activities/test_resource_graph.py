"""``collect_run_results_arg`` against the ARM simulator's Resource Graph, and the run-results
orchestrator's use of it (late rows re-queried on durable timers, instance views only as a
stated fallback that never passes).

Sources: arc-and-resource-graph.md §5.2/§5.3/§5.6/§7(b) (tables, join on maintenanceRunId, two
queries, no join), §4.4 (pages of 1,000 with ``$skipToken``), §5.8 (lag: never gate on the first
empty answer). The simulator's run is a real scheduled run of the ``ring1`` configuration.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from activities.resource_graph import collect_run_results_arg_core
from activities.run_results_stage import read_staged_results_core, stage_run_results_core
from emulator.arm import resourcegraph
from orchestrators.verdicts import gate_for, verdicts_for
from patchrings.clients import AzureClients
from patchrings.domain.results import NO_PATCH_DETAIL, classify_install
from patchrings.errors import ArmTargetRefused
from patchrings.ledger import Ledger
from patchrings.settings import Settings
from tests.functional.activities.conftest import PLAN, SCENARIO, SUB, SimHandle, vm_id

pytestmark = pytest.mark.functional

RING0 = ["web-01", "web-02", "db-01"]  # db-01 is deallocated: the run skips it, it gets no row


def _scenario() -> dict[str, Any]:
    scenario = copy.deepcopy(SCENARIO)
    scenario["subscriptions"][0]["dynamicScopes"] = [{  # type: ignore[index]
        "name": "ds-ring1", "maintenanceConfiguration": "ring1",
        "filter": {"tagSettings": {"tags": {"ring": ["ring0"]}, "filterOperator": "All"}}}]
    return scenario


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimHandle]:
    handle = SimHandle(tmp_path / "arm", _scenario())
    with handle.clock.hold():
        yield handle
    handle.stop()


@pytest.fixture
def arg_clients(sim: SimHandle) -> Iterator[AzureClients]:
    settings = Settings(arm_endpoint=sim.sim.endpoint, arm_auth="static-token", arm_static_token=sim.sim.token,
                        arm_ca_bundle=str(sim.sim.ca_path), ledger_account_url="https://unused")
    built = AzureClients(settings)
    yield built
    built.close()


def refs() -> list[dict[str, Any]]:
    return [{"id": vm_id(n), "name": n, "os": "Windows" if n == "web-01" else "Linux"} for n in RING0]


def settle(sim: SimHandle) -> None:
    for _ in range(3):
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), sim.loop).result(timeout=30)


def advance_to(sim: SimHandle, when: datetime) -> None:
    asyncio.run_coroutine_threadsafe(sim.clock.sleep_until(when), sim.loop)
    settle(sim)
    sim.clock.advance_until(lambda: sim.clock.now() >= when, timeout=60)
    settle(sim)


def finished_run(sim: SimHandle) -> str:
    run = sim.sim.fire_run("ring1")

    def done() -> bool:
        settle(sim)
        return getattr(sim.sim.run(run), "status", None) == "Completed"

    sim.clock.advance_until(done, timeout=60)
    return run


def arg_posts(sim: SimHandle) -> list[Any]:
    return sim.sim.recorder.find(method="POST", path_contains="/providers/Microsoft.ResourceGraph/resources")


def test_results_with_patches_after_the_lag_in_two_queries(sim: SimHandle, arg_clients: AzureClients) -> None:
    run = finished_run(sim)
    early = collect_run_results_arg_core(arg_clients, {"correlationId": run, "vms": refs()})
    by_name = {r["name"]: r for r in early["results"]}
    assert by_name["web-01"]["state"] == "missing"  # finished last: its rows have not propagated yet
    assert by_name["web-01"]["error"]["code"] == "NoResourceGraphRow"
    found = sim.sim.run(run)
    assert found is not None
    # web-01's latest assessment (an hour before the run's end): it still misses one Security update
    end = max(p.end for p in found.plans.values())
    sim.sim.vm("web-01").last_assessment = {
        "startDateTime": (end - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "rebootPending": True,
        "availablePatches": [{"name": "KB1", "kbId": "1", "classifications": ["Security"]}]}
    advance_to(sim, end + resourcegraph.options_for(sim.sim).propagation)
    before = len(arg_posts(sim))
    out = collect_run_results_arg_core(arg_clients, {"correlationId": run, "vms": refs()})
    assert (out["queries"], out["pages"], out["source"]) == (3, 3, "resourceGraph")
    # one summary query, one per-patch query and one for the latest assessments, not one per VM
    assert len(arg_posts(sim)) - before == 3
    by_name = {r["name"]: r for r in out["results"]}
    assert [by_name[n]["state"] for n in RING0] == ["done", "done", "missing"]
    web1 = by_name["web-01"]["result"]
    assert web1["source"] == "resourceGraph" and web1["maintenanceRunId"] == run
    assert web1["status"] == "Succeeded" and web1["rebootStatus"] in ("Completed", "NotNeeded")
    assert [(p["kbId"], p["installationState"]) for p in web1["patches"]] == [("5034123", "Installed")]
    # the machine's latest assessment rides along (context for people, never a pass)
    assert by_name["web-01"]["lastAssessment"]["missingCriticalOrSecurity"] == 1
    assert by_name["web-01"]["lastAssessment"]["rebootPending"] is True
    assert by_name["web-02"]["lastAssessment"] is None  # never assessed
    web2 = by_name["web-02"]["result"]
    assert [(p["name"], p["version"], p["installationState"]) for p in web2["patches"]] == [
        ("openssl", "3.0.13", "Installed")]
    # the strict rule (issue 13 item 7) is satisfied: patch list and reboot state are there
    assert classify_install(web1).outcome == "ok" and classify_install(web2).outcome == "ok"
    verdicts = verdicts_for(PLAN, "ring1", refs(), out["results"], {})
    assert {v["vm"].rsplit("/", 1)[-1]: v["install"] for v in verdicts}["db-01"] == "inconclusive"


def test_pages_are_followed(sim: SimHandle, arg_clients: AzureClients, monkeypatch: pytest.MonkeyPatch) -> None:
    from patchrings.arm import resource_graph as rg

    run = finished_run(sim)
    advance_to(sim, sim.clock.now() + timedelta(hours=1))
    whole = collect_run_results_arg_core(arg_clients, {"correlationId": run, "vms": refs()})
    monkeypatch.setattr(rg, "MAX_PAGE", 1)
    paged = collect_run_results_arg_core(arg_clients, {"correlationId": run, "vms": refs()})
    assert paged["results"] == whole["results"]
    # 2 summary rows + 2 per-patch rows, one a page, and the (empty) latest-assessment answer
    assert paged["queries"] == 3 and paged["pages"] == 5


@pytest.mark.parametrize("target", [
    "https://evil.example/x/providers/Microsoft.Maintenance/applyUpdates/20261117020000",
    f"/subscriptions/{SUB}/resourceGroups/rg-maint/providers/Microsoft.Maintenance/maintenanceConfigurations/"
    "ring1/providers/Microsoft.Maintenance/applyUpdates/2026' or 1==1 or '",
])
def test_a_hostile_correlation_id_never_reaches_a_query(sim: SimHandle, arg_clients: AzureClients,
                                                         target: str) -> None:
    with pytest.raises(ArmTargetRefused):
        collect_run_results_arg_core(arg_clients, {"correlationId": target, "vms": refs()})
    assert arg_posts(sim) == []


# ------------------------------------------------------------------ staged once for the ring (issue 11)
def _plan(ledger: Ledger, run_id: str, size: int) -> str:
    """The members as ``plan_ring_waves`` keeps them: one wave in slices of ``size``."""
    vms = refs()
    slices = [(0, part, vms[first:first + size]) for part, first in enumerate(range(0, len(vms), size))]
    ledger.record_wave_plan(run_id, {"count": len(vms), "waves": [len(vms)], "sliceSize": size, "hash": "p1"},
                            slices)
    return "p1"


def test_staging_reads_the_run_once_and_each_chunk_reads_its_slice(
        sim: SimHandle, arg_clients: AzureClients, ledger: Ledger) -> None:
    run = finished_run(sim)
    advance_to(sim, sim.clock.now() + timedelta(hours=1))
    run_id = "ro:ring1:run:members@x"
    plan_hash = _plan(ledger, run_id, 2)  # two slices: web-01 + web-02, db-01
    per_vm = {r["vm"]: r for r in collect_run_results_arg_core(arg_clients, {"correlationId": run,
                                                                             "vms": refs()})["results"]}
    before = len(arg_posts(sim))
    out = stage_run_results_core(arg_clients, ledger, {"correlationId": run, "runId": run_id, "planHash": plan_hash})
    assert (out["complete"], out["slices"], out["staged"], out["done"]) == (True, 2, 2, 2)
    # the run's summary rows once, the latest assessments once, the per-patch rows of the one
    # slice with finished runs (db-01 has no row): 3 requests for the ring, not 3 per chunk
    assert out["queries"] == len(arg_posts(sim)) - before == 3
    staged = [read_staged_results_core(ledger, {"runId": run_id, "planHash": plan_hash, "wave": 0, "slice": part})
              for part in (0, 1)]
    # each chunk's slice holds the same entries as a query for its own VMs would have answered
    assert [[e["vm"] for e in s["results"]] for s in staged] == [[vm_id("web-01"), vm_id("web-02")],
                                                                [vm_id("db-01")]]
    assert [e for s in staged for e in s["results"]] == [per_vm[r["id"]] for r in refs()]
    # check before act: a staged plan answers without a query
    again = stage_run_results_core(arg_clients, ledger, {"correlationId": run, "runId": run_id,
                                                         "planHash": plan_hash})
    assert again["complete"] and again["queries"] == 0 and len(arg_posts(sim)) - before == 3
    assert read_staged_results_core(ledger, {"runId": run_id, "planHash": "other", "wave": 0})["results"] is None


def test_staging_stops_for_its_time_budget_and_goes_on_where_it_stopped(
        sim: SimHandle, arg_clients: AzureClients, ledger: Ledger) -> None:
    run = finished_run(sim)
    advance_to(sim, sim.clock.now() + timedelta(hours=1))
    run_id = "ro:ring1:run:members@y"
    plan_hash = _plan(ledger, run_id, 1)  # three slices of one VM
    payload = {"correlationId": run, "runId": run_id, "planHash": plan_hash}
    # out of time at once: it writes what it has read (db-01's slice: no finished run, no per-patch
    # query) and stops before the next query
    first = stage_run_results_core(arg_clients, ledger, payload, budget=-1)
    assert (first["complete"], first["staged"], first["done"]) == (False, 1, 0)
    # the next call goes on with the two slices left (their runs' per-patch rows: one query)
    second = stage_run_results_core(arg_clients, ledger, payload, budget=-1)
    assert (second["complete"], second["staged"], second["done"]) == (True, 3, 2)
    whole = {r["vm"]: r for r in collect_run_results_arg_core(arg_clients, {"correlationId": run,
                                                                            "vms": refs()})["results"]}
    for part, ref in enumerate(refs()):
        got = read_staged_results_core(ledger, {"runId": run_id, "planHash": plan_hash, "wave": 0, "slice": part})
        assert got["results"] == [whole[ref["id"]]]
    assert ledger.staging(run_id, plan_hash)["complete"] is True  # type: ignore[index]


def test_a_restage_queries_again_for_the_slices_with_rows_missing(
        sim: SimHandle, arg_clients: AzureClients, ledger: Ledger) -> None:
    run = finished_run(sim)  # web-01 finished last: its rows have not propagated yet
    run_id = "ro:ring1:run:members@z"
    plan_hash = _plan(ledger, run_id, 1)
    payload = {"correlationId": run, "runId": run_id, "planHash": plan_hash}
    early = stage_run_results_core(arg_clients, ledger, payload)
    assert early["complete"] and early["pending"] == 2  # web-01 late, db-01 never patched
    found = sim.sim.run(run)
    assert found is not None
    advance_to(sim, max(p.end for p in found.plans.values()) + resourcegraph.options_for(sim.sim).propagation)
    assert stage_run_results_core(arg_clients, ledger, payload)["queries"] == 0  # staged: no query without restage
    later = stage_run_results_core(arg_clients, ledger, {**payload, "restage": True})
    # done 1: only the slices with a row missing (web-01's, db-01's) were queried and written again
    assert (later["complete"], later["pending"], later["done"]) == (True, 1, 1)
    web1 = read_staged_results_core(ledger, {**payload, "wave": 0, "slice": 0})["results"]
    assert web1 is not None and web1[0]["state"] == "done" and web1[0]["result"]["patches"]
    assert ledger.staged_slices(run_id, plan_hash) == {(0, 0): 0, (0, 1): 0, (0, 2): 1}


def test_staging_refuses_a_hostile_run_id_and_an_unknown_plan(
        sim: SimHandle, arg_clients: AzureClients, ledger: Ledger) -> None:
    with pytest.raises(ArmTargetRefused):
        stage_run_results_core(arg_clients, ledger, {"correlationId": "https://evil.example/x", "runId": "r",
                                                     "planHash": "p"})
    run = finished_run(sim)
    with pytest.raises(LookupError):
        stage_run_results_core(arg_clients, ledger, {"correlationId": run, "runId": "nowhere", "planHash": "p"})
    assert arg_posts(sim) == []


def test_a_chunks_late_vms_are_named_in_the_query_not_paged_through_the_run(
        sim: SimHandle, arg_clients: AzureClients) -> None:
    run = finished_run(sim)
    advance_to(sim, sim.clock.now() + timedelta(hours=1))
    before = len(arg_posts(sim))
    out = collect_run_results_arg_core(arg_clients, {"correlationId": run, "vms": refs()[:1]})
    posts = arg_posts(sim)[before:]
    assert out["results"][0]["state"] == "done" and out["queries"] == len(posts) == 3
    summary = json.dumps(posts[0].body)
    assert "in~" in summary and vm_id("web-01").lower() in summary and "web-02" not in summary


# ------------------------------------------------------------------ the orchestrator's use of it
def _healthy(call: Any) -> dict[str, Any]:
    return {"samples": [{"vm": c["vm"]["id"], "powerState": "running", "vmAgent": "Ready", "appHealth": "Healthy",
                         "probes": [], "readError": None} for c in call.payload["checks"]]}


def _orchestrator_helpers() -> Any:
    from tests.unit.orchestrators import test_orch_verdicts as helpers

    return helpers


RUN = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc/providers/"
       "Microsoft.Maintenance/applyUpdates/20261116060000")


def _done(vm: dict[str, Any]) -> dict[str, Any]:
    return {"vm": vm["id"], "name": vm["name"], "os": vm["os"], "state": "done", "error": None,
            "result": {"status": "Succeeded", "rebootStatus": "NotNeeded", "installedPatchCount": 1,
                       "patches": [{"kbId": "5048667", "installationState": "Installed"}],
                       "source": "resourceGraph"}}


def test_late_rows_are_requeried_on_timers_then_fall_back_to_instance_views() -> None:
    h = _orchestrator_helpers()
    from orchestrators import run_results as run_results_mod
    from tests.unit.orchestrators.chunked import ChunkContext, with_chunks

    a, b = h.vm("a"), h.vm("b")
    arg_answers: list[list[str]] = []

    def answer(call: Any, ctx: Any) -> Any:
        if call.name == "check_vm_health_batch":
            return _healthy(call)
        if call.name == "collect_run_results_arg":
            arg_answers.append([v["name"] for v in call.payload["vms"]])
            # a's rows arrive on the second query; b never gets a row
            ready = [v for v in call.payload["vms"] if v["name"] == "a" and len(arg_answers) >= 2]
            return {"results": [_done(v) for v in ready] + [
                {"vm": v["id"], "state": "missing", "error": {"code": "NoResourceGraphRow"}}
                for v in call.payload["vms"] if v not in ready]}
        if call.name == "collect_run_results":
            summary = {"status": "Succeeded", "source": "instanceView", "patches": []}
            return {"results": [{"vm": v["id"], "state": "done", "result": summary} for v in call.payload["vms"]]}
        return {"written": True}

    ctx = ChunkContext({"rolloutId": "r", "ringSpec": h.RING1, "ring": "ring1", "since": "2026-11-16T06:00:00Z",
                        "correlationId": RUN})
    start = ctx.current_utc_datetime
    out = h.drive(h.raw(run_results_mod.run_results_orchestrator), ctx, with_chunks(answer, [a, b]))
    delays = run_results_mod.ARG_REQUERY_DELAYS
    assert arg_answers == [["a", "b"], ["a", "b"]] + [["b"]] * (len(delays) - 1)
    # the verify chunk waited on durable timers (then ran its health phases)
    assert ctx.current_utc_datetime >= start + sum(delays, timedelta())
    assert [c.retry for c in h.named(ctx, "collect_run_results_arg")] == [h.retries.READ] * (len(delays) + 1)
    fallback = h.named(ctx, "collect_run_results")
    assert len(fallback) == 1 and [v["name"] for v in fallback[0].payload["vms"]] == ["b"]
    installs = {i["vm"]: i for i in h.named(ctx, "ledger_record_vm_results")[0].payload["results"]}
    assert installs[a["id"]]["result"]["source"] == "resourceGraph"
    assert installs[b["id"]]["result"]["source"] == "instanceView"
    assert out["gate"]["outcome"] == "inconclusive"  # b's instance-view result never passes
    reasons = " ".join(r["reason"] for r in out["gate"]["reasons"])
    assert "fall back to instance views" in reasons and NO_PATCH_DETAIL[:40] in reasons


def test_all_rows_present_pass_without_timers_or_fallback() -> None:
    h = _orchestrator_helpers()
    from orchestrators import run_results as run_results_mod
    from tests.unit.orchestrators.chunked import ChunkContext, with_chunks

    a, b = h.vm("a"), h.vm("b")

    def answer(call: Any, ctx: Any) -> Any:
        if call.name == "check_vm_health_batch":
            return _healthy(call)
        if call.name == "collect_run_results_arg":
            return {"results": [_done(v) for v in call.payload["vms"]]}
        return {"written": True}

    ctx = ChunkContext({"rolloutId": "r", "ringSpec": h.RING1, "ring": "ring1", "correlationId": RUN})
    out = h.drive(h.raw(run_results_mod.run_results_orchestrator), ctx, with_chunks(answer, [a, b]))
    assert len(h.named(ctx, "collect_run_results_arg")) == 1 and h.named(ctx, "collect_run_results") == []
    assert out["gate"]["outcome"] == "pass", out["gate"]
    assert gate_for(h.PLAN, "ring1", [])["outcome"] != "pass"  # an empty ring is never a pass either


# ------------------------------------------------------------------ on the local platform
def test_rows_later_than_every_requery_leave_the_ring_inconclusive_on_the_platform(platform_factory: Any) -> None:
    """Resource Graph lags more than the re-queries cover: the fallback reads instance views, the
    gate says why and is inconclusive (the rollout asks a person), nothing passes on missing rows."""
    from emulator.clock import make_clock
    from orchestrators.run_results import ARG_REQUERY_DELAYS
    from tests.functional import platform_scenario as sc
    from tests.functional.platform_driver import driver

    clock = make_clock("skip", start="2026-11-16T06:00:00Z")
    with clock.hold():
        p = platform_factory(scenario=sc.scenario(), clock=clock)
        resourcegraph.configure(p.arm, propagation=timedelta(days=1))
        d = driver(p)
        rid = d.start(who="dave@contoso.com")
        doc = d.until_waiting(rid, "approval", "ring1")
        assert d.decide(rid, "ring1", "approve", doc["waitingFor"]["manifestHash"], "alice@contoso.com").status == 202
        waiting = d.until_waiting(rid, "approval", "ring2")
        gate = waiting["rings"][1]["gate"]
        assert gate["outcome"] == "inconclusive", gate
        reasons = " ".join(str(r.get("reason")) for r in gate["reasons"])
        # the ring-level note comes first (the status shortens long texts; the fallback is proven below)
        assert gate["reasons"][0]["reason"].startswith("Resource Graph has no finished result"), gate["reasons"]
        assert f"after {len(ARG_REQUERY_DELAYS) + 1} queries" in reasons
        ring1_queries = [r for r in p.arm.recorder.find(method="POST", path_contains="/Microsoft.ResourceGraph/")
                         if "mc-ring1" in json.dumps(r.body)]
        assert len(ring1_queries) == len(ARG_REQUERY_DELAYS) + 1  # per attempt one query, not one per VM
        views = p.arm.recorder.find(method="GET", path_contains="/instanceView")
        assert {vm_name_of(r.path) for r in views} >= set(sc.RING1)  # the stated fallback was read


def vm_name_of(path: str) -> str:
    return path.split("/virtualMachines/", 1)[-1].split("/", 1)[0] if "/virtualMachines/" in path else ""


def test_a_patch_failing_in_a_scheduled_ring_fails_its_gate_from_the_resource_graph_rows(
        platform_factory: Any) -> None:
    """Ring 1's scheduled run fails KB5048667 on r1-web-1: the per-patch row says so, the gate
    *fails* (not merely inconclusive) and the rollout halts before Ring 2."""
    from emulator.clock import make_clock
    from tests.functional import platform_scenario as sc
    from tests.functional.platform_driver import driver

    clock = make_clock("skip", start="2026-11-16T06:00:00Z")
    with clock.hold():
        p = platform_factory(scenario=sc.scenario(faults=[{"type": "patchFails", "patch": sc.KB_OLD,
                                                          "vms": ["r1-web-1"]}]), clock=clock)
        d = driver(p)
        rid = d.start(who="dave@contoso.com")
        doc = d.until_waiting(rid, "approval", "ring1")
        assert d.decide(rid, "ring1", "approve", doc["waitingFor"]["manifestHash"], "alice@contoso.com").status == 202
        final = d.until_done(rid)
    out = final.output
    assert out["state"] == "halted", out
    gate = out["rings"][1]["gate"]
    assert gate["outcome"] == "fail", gate
    failed = [r for r in gate["reasons"] if str(r.get("vm", "")).endswith("/r1-web-1")]
    assert failed and "failed to install" in " ".join(str(r.get("reason")) for r in failed)
    assert not any(str(r.get("vm", "")).endswith("/r1-app-1") for r in gate["reasons"])  # judged ok from ARG
    assert p.arm.vm("r2-web-1").installed == set()  # Ring 2 never patched
    # judged from Resource Graph: the instance-view fallback (which reads each VM's applyUpdates) never ran
    assert not p.arm.recorder.find(method="GET", path_contains="/providers/Microsoft.Maintenance/applyUpdates/")
