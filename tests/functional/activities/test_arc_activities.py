"""Arc-enabled servers through the activity cores, against the ARM simulator's HybridCompute
provider and Resource Graph (issue 12), with the real SDK clients.

Scenarios: a mixed ring (VMs + Arc) patched directly, once-only, with Arc per-patch rows read
from Resource Graph and a machine whose rows are late ending inconclusive (never a pass); a
disconnected Arc machine that is never sent an install and makes the gate inconclusive through
health; a scheduled ring of Arc machines gated from Resource Graph rows; promotion of Arc
machines by retag (Tags API at the machine's scope) and by resource-level configuration
assignments under ``…/machines/{name}/providers/Microsoft.Maintenance/configurationAssignments``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.compute import poll_install_core, resolve_ring_members_core, start_install_core
from activities.health import check_vm_health_batch_core
from activities.maintenance import collect_run_results_core, set_ring_assignment_core
from activities.resource_graph import collect_run_results_arg_core
from activities.tags import retag_vms_core
from emulator.arm import resourcegraph
from orchestrators.verdicts import gate_for, verdicts_for
from patchrings.clients import AzureClients
from patchrings.domain.health import HealthPolicy, HealthSample, evaluate_sample
from patchrings.domain.plan import Plan
from patchrings.domain.results import classify_install
from patchrings.ledger import Ledger
from tests.functional.activities.conftest import MC_RING1, SCENARIO, START, SUB, SimHandle
from tests.ring_inputs import named_ring

pytestmark = pytest.mark.functional

ARC = f"/subscriptions/{SUB}/resourceGroups/rg-onprem/providers/Microsoft.HybridCompute/machines"
MC_RING2 = MC_RING1.rsplit("/", 1)[0] + "/ring2"
PARAMS = {"rebootSetting": "IfRequired", "maximumDuration": "PT2H",
          "windowsParameters": {"classificationsToInclude": ["Critical", "Security"], "maxPatchPublishDate": START},
          "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]}}
PLAN = Plan.from_dict({
    "version": 1, "name": "arc-activities",
    "rings": [
        {"name": "ring0", "patching": "direct",
         "members": {"tag": {"name": "ring", "value": "ring0"}, "subscriptions": [SUB]}},
        {"name": "ring1", "patching": "scheduled", "open": {"mode": "retag"},
         "members": {"tag": {"name": "ring", "value": "ring1", "holdValue": "ring1-hold"},
                     "maintenanceConfigurationId": MC_RING1}},
        {"name": "ring2", "patching": "scheduled", "open": {"mode": "enableConfiguration"},
         "members": {"maintenanceConfigurationId": MC_RING2, "subscriptions": [SUB]}},
    ],
}).to_dict()


def _scenario() -> dict[str, Any]:
    scenario = copy.deepcopy(SCENARIO)
    groups = scenario["subscriptions"][0]["resourceGroups"]  # type: ignore[index]
    web = next(g for g in groups if g["name"] == "rg-web")
    web["vms"] = [v for v in web["vms"] if v["name"] == "web-01"]
    maint = next(g for g in groups if g["name"] == "rg-maint")
    maint["maintenanceConfigurations"].append({**copy.deepcopy(maint["maintenanceConfigurations"][0]), "name": "ring2"})
    groups.append({"name": "rg-onprem", "location": "westeurope", "arcMachines": [
        {"name": "srv-01", "os": "Windows", "tags": {"ring": "ring0"}},
        {"name": "srv-02", "os": "Linux", "tags": {"ring": "ring0"}, "status": "Disconnected",
         "lastStatusChange": "2026-11-15T22:00:00Z"},
        {"name": "srv-03", "os": "Linux", "tags": {"ring": "ring0"}, "resourceGraphLagMinutes": 60},
        {"name": "srv-10", "os": "Windows", "tags": {"ring": "ring1"}},
        {"name": "srv-11", "os": "Linux", "tags": {"ring": "ring1"}},
        {"name": "srv-20", "os": "Linux", "tags": {"role": "db"}},
    ]})
    scenario["subscriptions"][0]["dynamicScopes"] = [{  # type: ignore[index]
        "name": "ds-ring1", "maintenanceConfiguration": "ring1",
        "filter": {"resourceTypes": ["Microsoft.HybridCompute/machines"],
                   "tagSettings": {"tags": {"ring": ["ring1"]}, "filterOperator": "All"}}}]
    return scenario


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimHandle]:
    handle = SimHandle(tmp_path / "arm", _scenario())
    with handle.clock.hold():  # time moves only when a test advances it (no daily run sneaks in)
        yield handle
    handle.stop()


@pytest.fixture
def arc_clients(sim: SimHandle, azurite: object) -> Iterator[AzureClients]:
    import uuid

    from patchrings.settings import Settings

    settings = Settings(arm_endpoint=sim.sim.endpoint, arm_auth="static-token", arm_static_token=sim.sim.token,
                        arm_ca_bundle=str(sim.sim.ca_path),
                        ledger_connection=azurite.connection_string,  # type: ignore[attr-defined]
                        ledger_table_prefix="t" + uuid.uuid4().hex[:12])
    built = AzureClients(settings)
    yield built
    built.close()


def settle(sim: SimHandle) -> None:
    for _ in range(3):
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), sim.loop).result(timeout=30)


def posts(sim: SimHandle, name: str) -> int:
    return len(sim.sim.recorder.find(method="POST", path_contains=f"/machines/{name}/installPatches"))


def by_name(records: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {str(r[key]).rsplit("/", 1)[-1]: r for r in records}


def test_a_mixed_ring_is_patched_directly_and_judged_from_resource_graph(
        sim: SimHandle, arc_clients: AzureClients) -> None:
    ledger = Ledger.from_clients(arc_clients)
    members = resolve_ring_members_core(arc_clients, {**named_ring(PLAN, "ring0")})["vms"]
    assert [(m["name"], m["kind"]) for m in members] == [
        ("srv-01", "arc"), ("srv-02", "arc"), ("srv-03", "arc"), ("web-01", "vm")]
    refs = by_name(members)
    assert refs["srv-02"]["agentStatus"] == "Disconnected" and refs["srv-03"]["os"] == "Linux"

    tokens: dict[str, str | None] = {}
    for member in members:
        payload = {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0", "vm": member, "parameters": PARAMS,
                   "runStartedAt": START, "now": sim.clock.now().isoformat(), "probes": []}
        started = start_install_core(arc_clients, ledger, payload)
        if member["name"] == "srv-02":
            assert started["state"] == "refused" and started["error"]["code"] == "ArcAgentNotConnected"
            continue
        assert started["state"] == "started", started
        tokens[member["id"]] = started["token"]
        assert start_install_core(arc_clients, ledger, payload)["state"] == "already-started"
    assert [posts(sim, n) for n in ("srv-01", "srv-02", "srv-03")] == [1, 0, 1]

    results: dict[str, dict[str, Any]] = {}
    seen_late: list[str] = []

    def poll_all() -> bool:
        settle(sim)
        for member in members:
            if member["id"] not in tokens or member["id"] in results:
                continue
            out = poll_install_core(arc_clients, ledger, {
                "runId": "r1:ring0", "runStartedAt": START, "vm": member, "token": tokens[member["id"]],
                "now": sim.clock.now().isoformat()})
            if out["done"]:
                results[member["id"]] = out
            elif (out.get("error") or {}).get("code") == "PatchRowsMissing":
                seen_late.append(member["name"])
        return len(results) == len(tokens)

    sim.clock.advance_until(poll_all, timeout=120)
    done = {k.rsplit("/", 1)[-1]: v["result"] for k, v in results.items()}
    srv01 = done["srv-01"]
    assert srv01["source"] == "hybridCompute+resourceGraph" and srv01["status"] == "Succeeded"
    assert [(p["kbId"], p["installationState"]) for p in srv01["patches"]] == [("5034123", "Installed")]
    assert classify_install(srv01).outcome == "ok"
    assert done["web-01"]["patches"] and classify_install(done["web-01"]).outcome == "ok"
    # srv-03's rows lag 60 minutes: it waited (PatchRowsMissing), then ended without patch detail
    assert "srv-03" in seen_late and "patches" not in done["srv-03"]
    assert classify_install(done["srv-03"]).outcome == "inconclusive"
    assert [posts(sim, n) for n in ("srv-01", "srv-02", "srv-03")] == [1, 0, 1]

    # health: Connected is healthy; an agent that drops after patching makes the gate inconclusive
    sim.sim.set_vm_state("srv-01", agent_status="Disconnected")
    healthy = [m for m in members if m["name"] in ("srv-01", "web-01")]
    samples = check_vm_health_batch_core(arc_clients, {"checks": [{"vm": m, "full": True} for m in healthy],
                                                       "probes": []})["samples"]
    states = {s["vm"]: evaluate_sample(HealthPolicy(), HealthSample.from_dict(s)) for s in samples}
    assert states[refs["srv-01"]["id"]][0] == "unknown" and "Disconnected" in states[refs["srv-01"]["id"]][1][0]
    installs = [{"vm": k, "state": "done", "result": v["result"]} for k, v in results.items()
                if k in (refs["srv-01"]["id"], refs["web-01"]["id"])]
    health: dict[str, Any] = {vm_id: "healthy" if state == "healthy" else "unknown"
                              for vm_id, (state, _) in states.items()}
    health[refs["web-01"]["id"]] = "healthy"
    verdicts = verdicts_for(PLAN, "ring0", healthy, installs, health)
    assert gate_for(PLAN, "ring0", verdicts)["outcome"] == "inconclusive"


def test_a_scheduled_ring_of_arc_machines_is_gated_from_resource_graph(
        sim: SimHandle, arc_clients: AzureClients) -> None:
    members = resolve_ring_members_core(arc_clients, {**named_ring(PLAN, "ring1")})["vms"]
    assert [(m["name"], m["kind"]) for m in members] == [("srv-10", "arc"), ("srv-11", "arc")]
    run = sim.sim.fire_run("ring1")

    def finished() -> bool:
        settle(sim)
        return getattr(sim.sim.run(run), "status", None) == "Completed"

    sim.clock.advance_until(finished, timeout=60)
    early = collect_run_results_arg_core(arc_clients, {"correlationId": run, "vms": members})
    # srv-10 finished last: its rows lag, so it is missing (never a pass on the first answer)
    assert by_name(early["results"], "vm")["srv-10"]["state"] == "missing"
    found = sim.sim.run(run)
    assert found is not None and found.plans
    ready = max(p.end for p in found.plans.values()) + resourcegraph.options_for(sim.sim).propagation
    asyncio.run_coroutine_threadsafe(sim.clock.sleep_until(ready), sim.loop)  # a timer the skip clock jumps to
    settle(sim)
    sim.clock.advance_until(lambda: sim.clock.now() >= ready, timeout=60)
    out = collect_run_results_arg_core(arc_clients, {"correlationId": run, "vms": members})
    results = by_name(out["results"], "vm")
    # one summary query, one per-patch query, one for the machines' latest assessments
    assert out["queries"] == 3 and [results[n]["state"] for n in ("srv-10", "srv-11")] == ["done", "done"]
    assert [p["kbId"] for p in results["srv-10"]["result"]["patches"]] == ["5034123"]
    assert [p["name"] for p in results["srv-11"]["result"]["patches"]] == ["openssl"]
    assert all(classify_install(r["result"]).outcome == "ok" for r in out["results"])
    healthy: dict[str, Any] = {m["id"]: "healthy" for m in members}
    verdicts = verdicts_for(PLAN, "ring1", members, out["results"], healthy)
    assert gate_for(PLAN, "ring1", verdicts)["outcome"] == "pass"
    # the instance-view fallback knows Arc machines have none (and still reads the run's record)
    fallback = collect_run_results_core(arc_clients, {"correlationId": run, "vms": members})["results"]
    assert {r["error"]["code"] for r in fallback} == {"NoInstanceView"}
    assert {r["state"] for r in fallback} == {"missing"}
    assert not sim.sim.recorder.find(method="GET", path_contains="/virtualMachines/srv-")


def graph_caught_up(sim: SimHandle) -> None:
    """Let simulated time pass Resource Graph's lag (the ``resources`` table shows each machine as it
    was that long ago), so a change made now is in its next answers."""
    from datetime import timedelta

    from emulator.arm.backends.resourcegraph import DEFAULT_RESOURCES_LAG_SECONDS

    ready = sim.clock.now() + timedelta(seconds=DEFAULT_RESOURCES_LAG_SECONDS + 1)
    sim.clock.advance_until(lambda: sim.clock.now() >= ready, timeout=60)


def test_arc_machines_are_promoted_by_retag_and_by_resource_level_assignments(
        sim: SimHandle, arc_clients: AzureClients) -> None:
    srv20 = f"{ARC}/srv-20"
    retag = retag_vms_core(arc_clients, {"vmIds": [srv20], "tag": "ring", "value": "ring1-hold"})
    assert retag["failed"] == [] and retag["written"] == 1
    assert sim.sim.recorder.find(method="PATCH", path_contains="/machines/srv-20/providers/Microsoft.Resources/tags/")
    # Members come from Resource Graph (issue 11), which shows the retag once its lag has passed
    ring1 = resolve_ring_members_core(arc_clients, {**named_ring(PLAN, "ring1")})["vms"]
    assert "srv-20" not in [m["name"] for m in ring1]  # not yet: Resource Graph lags
    graph_caught_up(sim)
    ring1 = resolve_ring_members_core(arc_clients, {**named_ring(PLAN, "ring1")})["vms"]
    assert "srv-20" in [m["name"] for m in ring1]  # the hold value is a ring1 member too

    opened = set_ring_assignment_core(arc_clients, {**named_ring(PLAN, "ring2"), "present": True,
                                                    "vmIds": [srv20]})
    assert opened["changed"] is True
    puts = sim.sim.recorder.find(method="PUT", path_contains="/machines/srv-20/providers/Microsoft.Maintenance/"
                                                             "configurationAssignments/")
    assert len(puts) == 1
    again = set_ring_assignment_core(arc_clients, {**named_ring(PLAN, "ring2"), "present": True, "vmIds": [srv20]})
    assert again["changed"] is False  # check-before-act
    ring2 = resolve_ring_members_core(arc_clients, {**named_ring(PLAN, "ring2")})["vms"]
    assert "srv-20" in [m["name"] for m in ring2]
    closed = set_ring_assignment_core(arc_clients, {**named_ring(PLAN, "ring2"), "present": False, "vmIds": [srv20]})
    assert closed["changed"] is True
    ring2 = resolve_ring_members_core(arc_clients, {**named_ring(PLAN, "ring2")})["vms"]
    assert "srv-20" not in [m["name"] for m in ring2]
