"""Arc-enabled servers in a whole rollout on the local platform (issue 12): host + ARM simulator
(its HybridCompute provider and Resource Graph) + Azurite, one skip clock, the unmodified app.

One platform, one story (kept lean): a dry run assesses VMs and Arc machines alike (assessPatches
on ``Microsoft.HybridCompute/machines``); ``GET /api/compliance`` then reports, per ring, the
machines with missing Critical/Security patches from ``patchassessmentresources`` and the Arc
machine in no ring; the real rollout finds a bad patch on an Arc canary of Ring 0 and halts, so
the later rings (VMs and an Arc machine held at ``ring1-hold``) are never patched or promoted.
With the bad patch withdrawn, a second rollout passes: Ring 0's manifest is built from the Arc
canaries' Resource Graph patch rows, Ring 1 (a VM and an Arc machine, promoted by retag into a
dynamic scope that selects both kinds) is patched by its scheduled run and gated from Resource
Graph rows, Ring 2 is opened by a dynamic scope the app creates for both kinds. Throughout, the
app runs as an identity holding only the least-privilege roles' actions.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import driver, installs, ledger, vm_name

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"
INITIATOR = "dave@contoso.com"
ARC = f"/subscriptions/{sc.SUB}/resourceGroups/{sc.RG}/providers/Microsoft.HybridCompute/machines"
ROLE = json.loads((Path(__file__).resolve().parents[2] / "infra" / "role-actions.json").read_text(encoding="utf-8"))
# The app runs as an identity holding only the least-privilege roles' actions (403 otherwise).
GRANTED = (set(ROLE["actions"]) | set(ROLE["subscriptionScope"]["actions"])
           | set(ROLE["subscriptionScope"]["dynamicScopeActions"]))
ARC_ACTIONS = {a for a in GRANTED if a.startswith("Microsoft.HybridCompute/")}


def _scenario() -> dict[str, Any]:
    doc = sc.scenario(faults=[{"type": "patchFails", "patch": sc.KB_OLD, "vms": ["r0-arc-1"]}])
    group = doc["subscriptions"][0]["resourceGroups"][0]
    group["vms"] = [v for v in group["vms"] if v["name"] in ("r0-web-1", "r1-web-1", "r2-web-1")]
    group["arcMachines"] = [
        {"name": "r0-arc-1", "os": "Windows", "tags": {"patchRing": "ring0"}},
        {"name": "r0-arc-2", "os": "Linux", "tags": {"patchRing": "ring0"}},
        {"name": "r1-arc-1", "os": "Linux", "tags": {"patchRing": "ring1-hold"}},
        {"name": "lab-arc-1", "os": "Linux", "tags": {"role": "lab"}},
    ]
    scope = doc["subscriptions"][0]["dynamicScopes"][0]["filter"]
    scope["resourceTypes"] = ["Microsoft.Compute/virtualMachines", "Microsoft.HybridCompute/machines"]
    doc["auth"] = {"identities": [{"name": "patchrings-app", "token": "arc-least-privilege-token-01",
                                   "default": True, "actions": sorted(GRANTED)}]}
    return copy.deepcopy(doc)


@pytest.fixture
def held(platform_factory: Any) -> Any:
    from emulator.clock import make_clock

    clock = make_clock("skip", start=START)
    with clock.hold():
        yield platform_factory(scenario=_scenario(), clock=clock)


def test_arc_machines_through_dry_run_compliance_and_a_halting_rollout(held: Any) -> None:
    p = held
    d = driver(p)

    # 1. dry run: members of every ring resolved across both kinds, Arc machines assessed via HybridCompute
    dry = d.until_done(d.start(who=INITIATOR, dryRun=True)).output
    assert dry["state"] == "dry-run-completed", dry
    by_ring = {r["ring"]: r for r in dry["rings"]}
    assert sorted(v["name"] for v in by_ring["ring0"]["vms"]) == ["r0-arc-1", "r0-arc-2", "r0-web-1"]
    assert sorted(v["name"] for v in by_ring["ring1"]["vms"]) == ["r1-arc-1", "r1-web-1"]
    assessed = {r.path.rstrip("/").split("/")[-2] for r in p.arm.recorder.find(method="POST")
                if r.path.lower().endswith("/assesspatches") and "/microsoft.hybridcompute/" in r.path.lower()}
    assert assessed == {"r0-arc-1", "r0-arc-2", "r1-arc-1"}
    assert installs(p) == []

    # 2. compliance: assessments from Resource Graph (paged queries, not a read per machine)
    now = p.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    before = len(p.arm.recorder.find(method="POST", path_contains="/providers/Microsoft.ResourceGraph/resources"))
    answer = d.api("GET", f"/api/compliance?asOf={now}")
    assert answer.status == 200, answer
    view = answer.json
    rings = {r["ring"]: r for r in view["rings"]}
    ring0 = {m["name"]: m for m in rings["ring0"]["machines"]}
    assert ring0["r0-arc-1"]["kind"] == "arc" and ring0["r0-arc-1"]["status"] == "missing-patches"
    assert ring0["r0-arc-1"]["security"] >= 1 and ring0["r0-arc-1"]["assessmentAgeHours"] is not None
    assert rings["ring1"]["members"] == 2
    assert [m["name"] for m in view["unassigned"]["machines"]] == ["lab-arc-1"]
    assert view["unassigned"]["machines"][0]["status"] == "not-assessed"
    arg = len(p.arm.recorder.find(method="POST", path_contains="/providers/Microsoft.ResourceGraph/resources"))
    # one resources query for the subscription's machines (every ring's members and the machines in no
    # ring, issue 11) and one page of assessments
    assert arg - before == view["resourceGraph"]["pages"] + 1 == 2
    assert d.api("GET", "/api/compliance?staleAfterHours=0").json["error"]["field"] == "staleAfterHours"

    # 3. the rollout: the Arc canary's bad patch fails Ring 0's gate; nothing later is touched
    final = d.until_done(d.start(who=INITIATOR)).output
    assert final["state"] == "halted" and "ring0 failed its gate" in final["outcome"], final
    gate = final["rings"][0]["gate"]
    assert gate["outcome"] == "fail"
    arc_reasons = [r["reason"] for r in gate["reasons"] if r["vm"].lower() == f"{ARC}/r0-arc-1".lower()]
    assert "install: 1 patch(es) failed to install" in arc_reasons, gate  # from errorDetails + counts
    arc_posts = [r for r in installs(p) if "/microsoft.hybridcompute/" in r.path.lower()]
    assert [vm_name(r) for r in arc_posts].count("r0-arc-1") == 1  # once, on HybridCompute
    assert {vm_name(r) for r in installs(p)} <= {"r0-arc-1", "r0-arc-2", "r0-web-1"}
    assert all("maintenanceRunId" not in (r.body or {}).get("linuxParameters", {}) for r in arc_posts)
    assert p.arm.vm("r1-arc-1").installed == set() and p.arm.vm("r1-web-1").installed == set()
    assert p.arm.vm("r1-arc-1").tags["patchRing"] == "ring1-hold"  # never promoted
    assert not [r for r in p.arm.recorder.find() if "/providers/Microsoft.Resources/tags/" in r.path
                and r.method in ("PATCH", "PUT")]

    # 4. the bad patch withdrawn, a second rollout passes all three rings with Arc members. The
    #    failed gate quarantined what it blamed; only an approver may release it, through the API.
    p.arm.faults.clear()
    quarantined = [e["id"] for e in ledger(p).quarantines("default") if not e.get("releasedBy")]
    assert quarantined, "the failed gate quarantined the patches it blamed"
    refused = d.api("POST", "/api/rollouts", {"releaseQuarantine": quarantined}, who=INITIATOR)
    assert refused.status == 403 and refused.json["error"]["field"] == "releaseQuarantine", refused
    rid = d.start(who="bob@contoso.com", releaseQuarantine=quarantined)
    for ring, who in (("ring1", "alice@contoso.com"), ("ring2", "carol@contoso.com")):
        waiting = d.until_waiting(rid, "approval", ring)
        assert d.decide(rid, ring, "approve", waiting["waitingFor"]["manifestHash"], who).status == 202
    out = d.until_done(rid).output
    assert out["state"] == "completed" and out["outcome"] == "passed", out
    manifest = out["manifest"]
    assert sc.KB_OLD in manifest["windows"]["kbNumbers"] and sc.OPENSSL in manifest["linux"]["packages"]
    assert {"openssl", "openssl=3.0.2-0ubuntu1.19"} & set(p.arm.vm("r1-arc-1").installed)
    assert p.arm.vm("r1-arc-1").tags["patchRing"] == "ring1-hold"  # promoted, then closed again
    rows = d.api("GET", f"/api/rollouts/{rid}").json["ledger"]["vmResults"]
    ring1 = {r["vm"].rsplit("/", 1)[-1]: r for r in rows["ring1"]}
    assert sorted(ring1) == ["r1-arc-1", "r1-web-1"]
    assert all(r["verdict"]["outcome"] == "pass" for r in ring1.values()), ring1
    # Ring 1's run was read from Resource Graph (its Arc machine has no instance view to fall back to)
    assert not p.arm.recorder.find(method="GET", path_contains="/virtualMachines/r1-arc-1")
    run_queries = [r for r in p.arm.recorder.find(method="POST", path_contains="/Microsoft.ResourceGraph/resources")
                   if "maintenanceRunId" in str((r.body or {}).get("query"))]
    assert run_queries
    scopes = [r.body for r in p.arm.recorder.find(method="PUT")
              if "/configurationassignments/" in r.path.lower() and "/resourcegroups/" not in r.path.lower()]
    assert scopes and all("Microsoft.HybridCompute/machines" in (b or {})["properties"]["filter"]["resourceTypes"]
                          for b in scopes)

    # 5. least privilege on Arc traffic: nothing was refused, and every HybridCompute action the
    #    roles grant was needed (infra/role-actions.json; the static twin is tests/unit/infra)
    records = p.arm.recorder.records
    refused = [f"{r.method} {r.path} -> {r.status}" for r in records
               if r.status in (401, 403) or r.error_code == "AuthorizationFailed"]
    assert refused == []
    used = {r.action for r in records}
    assert {a for a in used if str(a).startswith("Microsoft.HybridCompute/")} == ARC_ACTIONS, sorted(ARC_ACTIONS)
