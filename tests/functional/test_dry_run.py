"""The dry run on the local platform lists what each ring WOULD install (issue 9), and the
``manifest_diff`` activity reads the same machines' assessments from Resource Graph.

One platform, one scenario: the functional fleet plus patches every filter removes -- a Windows
Definition update and a Linux "Other" package (classification), a KB published after the
rollout's start (Windows ``maxPatchPublishDate``), an older openssl version (newest wins).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import driver, installs

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"
KB_DEF = "2267602"
OLD_OPENSSL = "openssl=3.0.2-0ubuntu1.9"


def scenario() -> dict[str, Any]:
    doc = sc.scenario()
    doc["catalog"]["windows"].append(
        {"kb": KB_DEF, "name": "Security Intelligence Update", "classification": "Definition",
         "published": "2026-11-14T00:00:00Z", "reboot": "NeverReboots", "minutes": 1})
    doc["catalog"]["linux"] += [
        {"package": "openssl", "version": "3.0.2-0ubuntu1.9", "classification": "Security",
         "published": "2026-10-01T10:00:00Z", "reboot": "NeverReboots", "minutes": 2},
        {"package": "vim", "version": "2:8.2.3995-1ubuntu2.21", "classification": "Other",
         "published": "2026-11-01T10:00:00Z", "reboot": "NeverReboots", "minutes": 1},
    ]
    doc["resourceGraph"] = {"propagationMinutes": 0}  # the dry run's assessments are in ARG at once
    # an Arc-enabled server in Ring 0: its assessPatches answer only counts; its patch list comes from
    # Resource Graph, 5 simulated minutes late
    doc["subscriptions"][0]["resourceGroups"][0]["arcMachines"] = [
        {"name": "r0-arc-1", "os": "Linux", "status": "Connected", "tags": {"patchRing": "ring0"},
         "resourceGraphLagMinutes": 5},
        # in no ring at all: the compliance section lists it (issue 12)
        {"name": "lab-arc-1", "os": "Windows", "tags": {"role": "lab"}}]
    return doc


@pytest.fixture
def platform(platform_factory: Any) -> Any:
    from emulator.clock import make_clock

    clock = make_clock("skip", start=START)
    with clock.hold():
        yield platform_factory(scenario=scenario(), clock=clock)


def test_dry_run_lists_what_each_ring_would_install(platform: Any) -> None:
    p = platform
    d = driver(p)
    rid = d.start(who="dave@contoso.com", dryRun=True)
    out = d.until_done(rid).output
    assert out["state"] == "dry-run-completed", out
    assert installs(p) == []
    rings = {r["ring"]: r for r in out["rings"]}
    ring0 = rings["ring0"]
    assert ring0["basis"] == "ring rules" and ring0["cutoff"] == START
    vms = {v["name"]: v for v in ring0["vms"]}
    assert sorted(vms) == sorted([*sc.RING0, "r0-arc-1"])

    win = vms["r0-web-1"]
    assert win["assessed"] and win["error"] is None
    assert sorted(p["key"] for p in win["wouldInstall"]) == sorted([sc.KB_OLD, sc.KB_CRIT])
    assert (win["availablePatchCount"], win["wouldInstallCount"], win["filteredCount"]) == (4, 2, 2)
    assert win["filteredByReason"] == {"classification": 1, "publishedAfterCutoff": 1}
    assert {f["reason"] for f in win["filtered"] if sc.KB_LATE in f["patch"]} == {"publishedAfterCutoff"}
    assert any(p["patch"].startswith(f"KB{sc.KB_OLD} ") and p["classifications"] == ["Security Updates"]
               for p in win["wouldInstall"])

    lin = vms["r0-app-1"]
    assert [p["key"] for p in lin["wouldInstall"]] == [sc.OPENSSL]
    assert lin["filteredByReason"] == {"classification": 1, "olderVersion": 1}
    assert {f["patch"] for f in lin["filtered"]} == {OLD_OPENSSL, "vim=2:8.2.3995-1ubuntu2.21"}

    arc = vms["r0-arc-1"]
    assert (arc["kind"], arc["patchDetail"], arc["patchSource"]) == ("arc", True, "resourceGraph"), arc
    assert [p["key"] for p in arc["wouldInstall"]] == [sc.OPENSSL] and arc["filteredCount"] == 2
    assert lin["patchSource"] == "assessPatches"

    summary = ring0["summary"]
    assert (summary["vms"], summary["assessed"], summary["errors"], summary["withoutPatchDetail"]) == (4, 4, 0, 0)
    assert (summary["availablePatches"], summary["wouldInstall"], summary["filtered"]) == (14, 6, 8)
    assert {p["key"]: p["vms"] for p in summary["patches"]} == {sc.KB_OLD: 2, sc.KB_CRIT: 2, sc.OPENSSL: 2}
    # issue 11's planner: Ring 0's 4 machines in waves of 2 land well before ring1's 12:00 run's T-40
    planner = ring0["planner"]
    assert (planner["waves"], planner["nextRing"], planner["nextRunStart"]) == ([2, 2], "ring1", "2026-11-16T12:00:00Z")
    assert planner["fits"] is True and planner["landBy"] == "2026-11-16T11:15:00Z" and planner["needs"] == "PT1H40M"
    assert ring0["warnings"] == summary["warnings"] == planner["warnings"]
    assert any("ring1 needs an approval" in w for w in ring0["warnings"])
    assert rings["ring1"]["planner"] is None and rings["ring1"]["warnings"] == []
    # later rings: the same rules, marked as an upper bound of what the manifest will pin
    assert rings["ring1"]["basis"].startswith("ring rules (upper bound")
    assert rings["ring1"]["summary"]["wouldInstall"] == 3

    # the status shows the summaries too (what the rollout records per ring)
    status = d.api("GET", f"/api/rollouts/{rid}")
    assert status.status == 200 and status.json["state"] == "dry-run-completed"

    check_compliance(p, d, out)
    check_manifest_diff(p, out)


def check_compliance(p: Any, d: Any, dry_run: dict[str, Any]) -> None:
    """Issue 12: the dry run's compliance section per ring (missing Critical / Security patches
    from ``patchassessmentresources``, each machine's assessment age, machines in no ring), read
    through the ``ring_compliance`` activity; then ``GET /api/compliance`` without ``asOf`` ages
    against the platform's time (Resource Graph's ``Date``), not the worker's wall clock."""
    rings = {r["ring"]: r for r in dry_run["rings"]}
    section = rings["ring0"]["compliance"]
    assert section["error"] is None and section["asOfSource"] == "request", section
    assert START <= section["asOf"] < "2026-11-17T00:00:00Z"  # the orchestration's (simulated) time
    machines = {m["name"]: m for m in section["machines"]}
    assert sorted(machines) == sorted([*sc.RING0, "r0-arc-1"])
    win = machines["r0-web-1"]
    assert (win["kind"], win["status"], win["critical"], win["security"]) == ("vm", "missing-patches", 1, 2), win
    assert machines["r0-arc-1"]["kind"] == "arc" and machines["r0-arc-1"]["status"] == "missing-patches"
    assert all(m["assessmentAgeHours"] is not None and m["assessmentAgeHours"] < 2 for m in machines.values())
    assert section["missingCriticalOrSecurity"] == 4 and section["resourceGraph"]["queries"] == 1
    assert [m["name"] for m in section["unassigned"]["machines"]] == ["lab-arc-1"]
    assert rings["ring0"]["summary"]["compliance"] == {
        "members": 4, "missingCriticalOrSecurity": 4, "notAssessed": 0, "stale": 0, "asOf": section["asOf"],
        "unassigned": 1}
    later = rings["ring1"]["compliance"]
    assert later["members"] == 2 and "unassigned" not in later and later["missingCriticalOrSecurity"] == 2, later

    # GET /api/compliance with no asOf: "now" is the simulator's Date (2026-11-16), not December's wall clock
    view = d.api("GET", "/api/compliance").json
    assert view["asOfSource"] == "resourceGraph", view
    assert START <= view["asOf"] < "2026-11-17T00:00:00Z", view["asOf"]
    ages = [m["assessmentAgeHours"] for r in view["rings"] for m in r["machines"]]
    assert ages and all(a is not None and a < 24 for a in ages), ages  # minutes / hours, not weeks
    assert [m["name"] for m in view["unassigned"]["machines"]] == ["lab-arc-1"]


def check_manifest_diff(p: Any, dry_run: dict[str, Any]) -> None:
    """manifest_diff over the same fleet: the dry run's assessments, read back from Resource Graph
    (one query per later ring), against a manifest that pins KB_OLD and the OLD openssl only."""
    from activities.manifest_diff import manifest_diff_core
    from patchrings.clients import AzureClients
    from patchrings.domain.manifest import Manifest
    from patchrings.domain.plan import load_plan_file
    from patchrings.settings import Settings

    plan = load_plan_file(p.settings.get("PATCHRINGS_PLAN_PATH") or "plans/default.json").to_dict()
    manifest = Manifest(windows_kbs=(sc.KB_OLD,), linux_packages=(OLD_OPENSSL,), cutoff=START).to_dict()
    before = len(graph_queries(p))
    clients = AzureClients(Settings(arm_endpoint=p.arm.endpoint, arm_auth="static-token",
                                    arm_static_token=p.arm.token, arm_ca_bundle=str(p.arm.ca_path),
                                    ledger_account_url="https://unused"))
    try:
        now = p.clock.now().isoformat().replace("+00:00", "Z")
        out = manifest_diff_core(clients, {"rolloutId": "ro-diff", "plan": plan, "manifest": manifest,
                                           "fromRing": "ring0", "now": now})
    finally:
        clients.close()
    assert [r["ring"] for r in out["rings"]] == ["ring1", "ring2"], out
    for ring in out["rings"]:
        assert "error" not in ring, ring
        assert (ring["machines"], ring["assessed"], ring["notAssessed"]) == (2, 2, 0), ring
        # each Windows VM gets KB_OLD, each Linux VM the pinned old openssl (available, though not the newest)
        assert (ring["wouldInstall"], ring["wouldInstallPatches"]) == (2, 2), ring
        # what the ring's own rules would take but Ring 0 did not prove: KB_CRIT and the newest openssl
        # (KB_LATE is past the cutoff, the Definition update and vim are outside the classifications)
        assert {e["patch"].split(" ")[0]: e["machines"] for e in ring["notInManifest"]} == {
            f"KB{sc.KB_CRIT}": 1, sc.OPENSSL: 1}, ring
        assert ring["inManifestNotApplicable"] == [] and ring["queries"] == 1, ring
    # per later ring: one query (one page) for its members (the resources table, issue 11) and one for
    # its assessments, not one per VM
    assert len(graph_queries(p)) - before == 4
    # the dry run listed KB_CRIT for those rings too: the same rules
    ring1 = {r["ring"]: r for r in dry_run["rings"]}["ring1"]
    assert sc.KB_CRIT in {x["key"] for x in ring1["summary"]["patches"]}


def graph_queries(p: Any) -> list[Any]:
    return [r for r in p.arm.recorder.find(method="POST") if "/providers/microsoft.resourcegraph/" in r.path.lower()]
