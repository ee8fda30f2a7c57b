"""The app on the local platform: Functions host + ARM simulator + Azurite, on one skip clock.

Maintenance events come from the simulator's own schedules (pre-event at T-35, post-event when
the run finishes); the tests only approve (or not) through the HTTP API and assert on the
simulator's recorded ARM calls, the fleet's resulting state and the ledger.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.fakeapp.driver import Driver
from tests.functional.platform_driver import driver, installs, ledger, vm_name

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"
INITIATOR = "dave@contoso.com"




def approve(d: Driver, rid: str, ring: str, who: str) -> dict[str, Any]:
    doc = d.until_waiting(rid, "approval", ring)
    result = d.decide(rid, ring, "approve", doc["waitingFor"]["manifestHash"], who)
    assert result.status == 202, result
    return doc


def cancels(platform: Any) -> list[str]:
    return [r.path for r in platform.arm.recorder.find(method="PUT")
            if "/applyupdates/" in r.path.lower() and (r.body or {}).get("properties", {}).get("status") == "Cancel"]


def test_three_rings_retag_and_configuration_promotion(held: Any) -> None:
    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who=INITIATOR)
    doc = approve(d, rid, "ring1", "alice@contoso.com")
    waiting = approve(d, rid, "ring2", "carol@contoso.com")
    final = d.until_done(rid)
    status = d.api("GET", f"/api/rollouts/{rid}")
    out = final.output
    assert out["state"] == "completed" and out["outcome"] == "passed", out

    # While waiting, the status said what for, until when, for which manifest and who may decide.
    assert waiting["waitingFor"]["approvers"] == ["alice@contoso.com", "carol@contoso.com"]
    assert waiting["waitingFor"]["approveUrl"] == f"/api/rollouts/{rid}/rings/ring2/approve"
    assert waiting["rings"][1]["gate"]["outcome"] == "pass"
    # The status API joins custom status and ledger: per-VM results with verdicts, approvals, runs.
    assert status.status == 200 and status.json["state"] == "completed"
    vm_rows = status.json["ledger"]["vmResults"]
    assert sorted(r["vm"].rsplit("/", 1)[-1] for r in vm_rows["ring0"]) == sorted(sc.RING0)
    assert sorted(r["vm"].rsplit("/", 1)[-1] for r in vm_rows["ring1"]) == sorted(sc.RING1)
    assert all(r["verdict"]["outcome"] == "pass" for r in vm_rows["ring0"] + vm_rows["ring1"] + vm_rows["ring2"])
    assert status.json["status"]["approvals"][0]["approver"] == "alice@contoso.com"
    assert [r["gate"]["outcome"] for r in out["rings"]] == ["pass", "pass", "pass"]

    # Only Ring 0 was installed on demand: each VM once, Windows pinned to the rollout start.
    posts = installs(p)
    assert sorted(vm_name(r) for r in posts) == sorted(sc.RING0)
    for record in posts:
        wp = (record.body or {}).get("windowsParameters")
        if wp:
            assert wp["maxPatchPublishDate"] == START

    # The manifest is what Ring 0 installed before the cutoff.
    manifest = out["manifest"]
    assert manifest["hash"] == doc["waitingFor"]["manifestHash"]
    assert sorted(manifest["windows"]["kbNumbers"]) == sorted([sc.KB_OLD, sc.KB_CRIT])
    assert manifest["linux"]["packages"] == [sc.OPENSSL]

    # Later rings were patched by their scheduled runs with exactly the manifest (no late KB).
    for name in sc.RING1 + sc.RING2:
        vm = p.arm.vm(name)
        if vm.os == "Windows":
            assert {sc.KB_OLD, sc.KB_CRIT} <= {k.upper().removeprefix("KB") for k in vm.installed}
            assert not any(sc.KB_LATE in k for k in vm.installed)
        else:
            assert sc.OPENSSL in vm.installed

    # Ring 1 opened by retag and closed again; Ring 2 by its assignment, removed at the end.
    assert p.arm.vm("r1-web-1").tags["patchRing"] == "ring1-hold"
    tag_writes = [r for r in p.arm.recorder.find() if "/providers/Microsoft.Resources/tags/" in r.path
                  and r.method in ("PATCH", "PUT")]
    assert len(tag_writes) == 4  # two VMs opened, two closed
    assignment_writes = [(r.method, r.status) for r in p.arm.recorder.find()
                         if "/configurationassignments/" in r.path.lower() and r.method in ("PUT", "DELETE")]
    assert [m for m, _ in assignment_writes] == ["PUT", "DELETE"]

    # Ledger: the rollout, both approvals, both authorised runs.
    lg = ledger(p)
    assert (lg.rollout(rid) or {}).get("state") == "completed"
    approvers = {a.get("approver") for a in lg.approvals(rid)}
    assert {"alice@contoso.com", "carol@contoso.com"} <= approvers
    authorised = [r for r in lg.ring_runs(rid) if r.get("state") == "authorised"]
    assert sorted(r["ring"] for r in authorised) == ["ring1", "ring2"]
    # the guards let exactly the authorised runs through
    cancelled = {c.lower() for c in cancels(p)}
    assert all(r["runId"].lower() not in cancelled for r in authorised)
    for run in authorised:
        sim_run = p.arm.run(run["runId"])
        assert sim_run is not None and sim_run.status == "Completed" and sim_run.vm_ids


def test_dry_run_resolves_members_and_assesses_without_installing(held: Any) -> None:
    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who=INITIATOR, dryRun=True)
    final = d.until_done(rid)
    out = final.output
    assert out["state"] == "dry-run-completed", out
    by_ring = {r["ring"]: r for r in out["rings"]}
    assert sorted(v["name"] for v in by_ring["ring1"]["vms"]) == sorted(sc.RING1)
    assert by_ring["ring0"]["summary"]["vms"] == 3 and by_ring["ring0"]["summary"]["availablePatches"] > 0
    assert installs(p) == []
    assessed = [r for r in p.arm.recorder.find(method="POST") if r.path.lower().endswith("/assesspatches")]
    assert len(assessed) == len(sc.RING0 + sc.RING1 + sc.RING2)
    assert all(vm.installed == set() for vm in (p.arm.vm(n) for n in sc.RING0 + sc.RING1 + sc.RING2))


def ring_run_cancels(p: Any, configuration: str) -> list[str]:
    return [c for c in cancels(p) if f"/maintenanceconfigurations/{configuration}/" in c.lower()]


def test_bad_patch_in_ring0_halts_and_cancels_later_runs(held: Any) -> None:
    fault = {"type": "patchFails", "patch": sc.KB_OLD, "vms": ["r0-web-1"]}
    p = held(sc.scenario(faults=[fault]))
    d = driver(p)
    rid = d.start(who=INITIATOR)
    final = d.until_done(rid)
    # let both later rings' next scheduled runs come (and be cancelled by their guards)
    d.until(lambda: ring_run_cancels(p, "mc-ring1") and ring_run_cancels(p, "mc-ring2"))

    out = final.output
    assert out["state"] == "halted" and "ring0 failed its gate" in out["outcome"], out
    gate = out["rings"][0]["gate"]
    assert gate["outcome"] == "fail"
    assert any(r["vm"].endswith("/r0-web-1") for r in gate["reasons"])
    # maxErrors=0 reached in the first wave (r0-web-1 + r0-web-2): r0-app-1 never got installPatches
    assert sorted(vm_name(r) for r in installs(p)) == ["r0-web-1", "r0-web-2"]
    # Ring 1 and Ring 2 never got installPatches, nothing was pinned or retagged
    assert all(vm_name(r) in sc.RING0 for r in installs(p))
    assert not [r for r in p.arm.recorder.find() if "/providers/Microsoft.Resources/tags/" in r.path
                and r.method in ("PATCH", "PUT")]
    for name in sc.RING1 + sc.RING2:
        assert p.arm.vm(name).installed == set(), name
    # their scheduled runs were cancelled (fail closed), and the ledger says why
    lg = ledger(p)
    assert (lg.rollout(rid) or {}).get("state") == "halted"
    for run in p.arm.runs:
        if run.status.lower() in ("cancelled", "canceled"):
            assert "mc-ring" in run.correlation_id.lower()


def test_approval_rejected_keeps_ring1_closed(held: Any) -> None:
    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who=INITIATOR)
    doc = d.until_waiting(rid, "approval", "ring1")
    result = d.decide(rid, "ring1", "reject", doc["waitingFor"]["manifestHash"], "bob@contoso.com", "not today")
    assert result.status == 202, result
    final = d.until_done(rid)
    d.until(lambda: ring_run_cancels(p, "mc-ring1"))
    assert final.output["state"] == "halted"
    assert "bob@contoso.com rejected" in final.output["outcome"]
    assert p.arm.vm("r1-web-1").tags["patchRing"] == "ring1-hold"
    assert not [r for r in p.arm.recorder.find(method="PUT") if "maintenanceconfigurations/mc-ring1" in r.path.lower()
                and "applyupdates" not in r.path.lower()]
    verdicts = [(a.get("approver"), a.get("verdict")) for a in ledger(p).approvals(rid)]
    assert ("bob@contoso.com", "reject") in verdicts


def test_approval_timeout_rejects(held: Any) -> None:
    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who=INITIATOR)
    doc = d.until_waiting(rid, "approval", "ring1")
    final = d.until_done(rid)
    assert final.output["state"] == "halted"
    assert "system:timeout" in final.output["outcome"]
    assert final.output["rings"][1]["phase"] == "rejected"
    assert not [r for r in installs(p) if vm_name(r) not in sc.RING0]
    decisions = [a for a in ledger(p).approvals(rid) if a.get("approver") == "system:timeout"]
    assert decisions and decisions[0]["verdict"] == "reject"
    assert decisions[0]["decision"]["decidedAt"] == doc["waitingFor"]["until"]


def test_duplicate_and_reordered_deliveries(held: Any) -> None:
    p = held(sc.scenario(events={"duplicateProbability": 1.0, "reorderMaxDelaySeconds": 120}))
    d = driver(p)
    rid = d.start(who=INITIATOR)
    approve(d, rid, "ring1", "alice@contoso.com")
    approve(d, rid, "ring2", "carol@contoso.com")
    final = d.until_done(rid)
    assert final.output["outcome"] == "passed", final.output
    lg = ledger(p)
    authorised = [r for r in lg.ring_runs(rid) if r.get("state") == "authorised"]
    assert sorted(r["ring"] for r in authorised) == ["ring1", "ring2"]
    # the simulator really sent duplicates, and only one rollout exists
    assert any(x.get("duplicate") for x in p.arm.deliveries)
    listed = d.api("GET", "/api/rollouts").json["rollouts"]
    assert [r["id"] for r in listed] == [rid]


def test_host_crash_mid_ring_changes_nothing(held: Any, tmp_path: Any) -> None:
    p = held(sc.scenario(), storage=str(tmp_path / "durable.sqlite"))
    d = driver(p)
    rid = d.start(who=INITIATOR)
    d.until(lambda: len(installs(p)) >= 2)
    p.restart_host()
    d = driver(p)
    approve(d, rid, "ring1", "alice@contoso.com")
    approve(d, rid, "ring2", "carol@contoso.com")
    final = d.until_done(rid)
    assert final.output["outcome"] == "passed", final.output
    # installPatches reached each Ring 0 VM exactly once despite the restart
    assert sorted(vm_name(r) for r in installs(p) if r.status < 300) == sorted(sc.RING0)


def test_approval_rules_are_enforced_and_every_decision_is_in_the_ledger(held: Any) -> None:
    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who="alice@contoso.com")  # alice is a ring1 approver, but she started it
    doc = d.until_waiting(rid, "approval", "ring1")
    good = doc["waitingFor"]["manifestHash"]
    eve = d.decide(rid, "ring1", "approve", good, "eve@contoso.com")
    alice = d.decide(rid, "ring1", "approve", good, "alice@contoso.com")
    stale = d.decide(rid, "ring1", "approve", "feedfacecafe", "bob@contoso.com")
    bob = d.decide(rid, "ring1", "approve", good, "bob@contoso.com")
    d.until_waiting(rid, "approval", "ring2")
    assert (eve.status, alice.status, stale.status, bob.status) == (403, 403, 409, 202)
    assert stale.json["error"] == {"code": "ApprovalConflict", "field": "manifestHash",
                                   "message": stale.json["error"]["message"],
                                   "details": {"pendingManifestHash": good}}
    rows = ledger(p).approvals(rid)
    api_rows = [(r.get("approver"), r.get("outcome")) for r in rows if r.get("outcome") in ("refused", "submitted")]
    assert sorted(api_rows) == sorted([("eve@contoso.com", "refused"), ("alice@contoso.com", "refused"),
                                       ("bob@contoso.com", "refused"), ("bob@contoso.com", "submitted")])
    accepted = [r for r in rows if r.get("outcome") == "accepted"]
    assert [(r["approver"], r["ring"], r["manifestHash"]) for r in accepted] == [("bob@contoso.com", "ring1", good)]
    # Ring 1 went ahead: its VMs were retagged into the dynamic scope and patched by the run.
    assert sc.KB_OLD in {k.upper().removeprefix("KB") for k in p.arm.vm("r1-web-1").installed}


def test_unhealthy_after_patch_fails_the_gate_through_the_health_phases(held: Any) -> None:
    fault = {"type": "unhealthyAfterPatch", "vms": ["r0-web-2"]}
    p = held(sc.scenario(faults=[fault]))
    d = driver(p)
    rid = d.start(who=INITIATOR)
    final = d.until_done(rid)
    gate = final.output["rings"][0]["gate"]
    assert final.output["state"] == "halted" and gate["outcome"] == "fail", final.output
    reasons = [r["reason"] for r in gate["reasons"] if r["vm"].endswith("/r0-web-2")]
    assert reasons and all(r.startswith("health:") for r in reasons)
    # the install itself was clean; the VM was healthy before patching, so two unhealthy samples
    # after it fail it at once (issue 11 fail-fast): one read before the install, two after
    assert any("failed fast" in r for r in reasons), reasons
    # (the read before the install is the VM with its instance view, one GET: issue 11)
    health_reads = [r for r in p.arm.recorder.find(method="GET") if "/r0-web-2/instanceview" in r.path.lower()
                    or (r.path.lower().endswith("/r0-web-2") and r.operation == "vm.get")]
    assert len(health_reads) == 3, [r.path for r in health_reads]
    assert not [r for r in installs(p) if vm_name(r) not in sc.RING0]


def test_cloudevents_schema_with_pascal_case_data(held: Any) -> None:
    scenario = sc.scenario()
    scenario["eventSubscriptions"][0].update({"schema": "CloudEventSchemaV1_0", "dataKeyCase": "pascal"})
    p = held(scenario)
    d = driver(p)
    rid = d.start(who=INITIATOR)
    approve(d, rid, "ring1", "alice@contoso.com")
    doc = d.until_waiting(rid, "approval", "ring2")
    assert doc["rings"][1]["gate"]["outcome"] == "pass"
    assert [r["decision"] for r in doc["rings"][1]["runs"]] == ["authorised"]


def test_a_late_approval_targets_the_following_run_and_says_so(held: Any) -> None:
    from datetime import UTC, datetime

    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who=INITIATOR)
    doc = d.until_waiting(rid, "approval", "ring1")
    # nobody approves before the 12:00 run's T-40 (11:20) minus the plan's 5-minute margin
    d.until(lambda: p.clock.now() >= datetime(2026, 11, 16, 11, 21, tzinfo=UTC))
    assert d.decide(rid, "ring1", "approve", doc["waitingFor"]["manifestHash"], "alice@contoso.com").status == 202
    doc = d.until_waiting(rid, "pre-maintenance event", "ring1")
    target = doc["rings"][1]["target"]
    assert target["meetsT40"] is False
    assert target["skippedRun"]["start"] == "2026-11-16T12:00:00Z"
    assert target["runStart"] == "2026-11-17T12:00:00Z"
    assert any("too late for the run at 2026-11-16T12:00:00Z" in n["text"] for n in doc["notes"])
    # the pin landed after 11:20, the skipped run's T-40: AUM cancels that run (issue 14.8), and the
    # status and the ledger say so
    assert target["skippedRunCancelledByEdit"] is True
    assert any("so AUM cancels it" in n["text"] for n in doc["notes"])
    promoted = [r for r in ledger(p).ring_runs(rid) if r.get("ring") == "ring1" and r.get("state") == "promoted"]
    assert promoted and promoted[-1]["target"]["skippedRunCancelledByEdit"] is True
    skipped = p.arm.run(f"{sc.MC}/mc-ring1/providers/Microsoft.Maintenance/applyUpdates/20261116120000")
    doc = d.until_waiting(rid, "approval", "ring2")
    assert skipped is not None and skipped.status == "Cancelled"
    runs = doc["rings"][1]["runs"]
    assert [(r["correlationId"].rsplit("/", 1)[-1], r["decision"]) for r in runs] == [("20261117120000", "authorised")]
    # the skipped run was not authorised by anyone: its guard cancelled it
    assert ring_run_cancels(p, "mc-ring1") and all("20261116120000" in c for c in ring_run_cancels(p, "mc-ring1"))


def test_halt_after_a_run_was_authorised_revokes_and_cancels_it_then_resume(held: Any) -> None:
    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who=INITIATOR)
    approve(d, rid, "ring1", "alice@contoso.com")
    doc = d.until_waiting(rid, "post-maintenance event", "ring1")
    authorised = doc["waitingFor"]["correlationId"]
    halted = d.api("POST", f"/api/rollouts/{rid}/halt", {"reason": "incident 4711"}, who="bob@contoso.com")
    assert halted.status == 202, halted
    d.until(lambda: d.doc(rid).get("state") == "halted")
    halted_doc = d.doc(rid)
    assert d.api("POST", f"/api/rollouts/{rid}/resume", {}, who="bob@contoso.com").status == 202
    approve(d, rid, "ring2", "carol@contoso.com")
    final = d.until_done(rid)

    run = p.arm.run(authorised)
    assert run is not None and run.status == "Cancelled"  # revoked before its cutoff: nothing patched
    revoked = [r for r in halted_doc["rings"][1]["runs"] if r["correlationId"] == authorised]
    assert revoked and revoked[0]["decision"] == "revoked"
    assert p.arm.vm("r1-web-1").tags["patchRing"] == "ring1-hold"  # closed again at the end
    assert final.output["outcome"] == "passed", final.output
    ring1_runs = [r for r in ledger(p).ring_runs(rid) if r.get("ring") == "ring1" and r.get("state") == "authorised"]
    assert [r["runId"].rsplit("/", 1)[-1] for r in ring1_runs] == ["20261117120000"]
