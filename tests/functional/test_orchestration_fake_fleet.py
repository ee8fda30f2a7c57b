"""The real orchestrators and triggers on the local host, against in-memory fake activities.

These pin down the orchestration logic (rings, waves, gates, approvals bound to the manifest,
events de-duplicated and reordered, fail-closed guard, halt/resume) independently of the ARM
simulator; ``test_platform_*.py`` run the same flows against the simulator and Azurite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import make_clock
from emulator.host.testing import HostThread
from patchrings import deps
from patchrings.domain.plan import load_plan_file
from patchrings.settings import Settings
from tests.functional.fakeapp import fleet
from tests.functional.fakeapp.driver import Driver, correlation_id, maintenance_event

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "fakeapp"
START = "2026-11-16T06:00:00Z"
INITIATOR = "dave@contoso.com"


def default_plan(**ring_changes: dict[str, Any]) -> dict[str, Any]:
    plan = load_plan_file(REPO / "plans" / "default.json").to_dict()
    plan.pop("hash", None)
    for ring in plan["rings"]:
        ring.update(ring_changes.get(ring["name"], {}))
    return plan


def make_fleet(plan: dict[str, Any]) -> fleet.Fleet:
    from patchrings.domain.plan import load_plan

    f = fleet.reset(load_plan(plan).to_dict())
    f.add("r0-win-1", "Windows", "1", "ring0")
    f.add("r0-win-2", "Windows", "2", "ring0")
    f.add("r0-lnx-1", "Linux", "3", "ring0")
    f.add("r1-win-1", "Windows", "1", "ring1-hold")
    f.add("r1-lnx-1", "Linux", "2", "ring1-hold")
    f.add("r2-win-1", "Windows", "1", "ring2")
    f.add("r2-lnx-1", "Linux", "3", "ring2")
    return f


@pytest.fixture
def run() -> Iterator[Any]:
    """Start the fake app with a given plan; yields ``start(plan) -> (driver, fleet)``."""
    hosts: list[HostThread] = []

    def start(plan: dict[str, Any] | None = None, storage: str = ":memory:") -> tuple[Driver, fleet.Fleet]:
        from patchrings.domain.plan import load_plan

        plan = plan or default_plan()
        f = make_fleet(plan)
        ht = HostThread(APP, make_clock("skip", start=START), storage=storage).start()
        hosts.append(ht)
        deps.override(settings=Settings(approver_header_fallback=True), plan=load_plan(plan), ledger=f)
        return Driver(ht), f

    yield start
    for ht in hosts:
        ht.stop()
        ht.clock.close()
    deps.reset()


def ring_ids(f: fleet.Fleet, prefix: str) -> set[str]:
    return {vm.id for vm in f.vms.values() if vm.name.startswith(prefix)}


def approve(d: Driver, rid: str, ring: str, who: str = "alice@contoso.com") -> dict[str, Any]:
    doc = d.until_waiting(rid, "approval", ring)
    result = d.decide(rid, ring, "approve", doc["waitingFor"]["manifestHash"], who)
    assert result.status == 202, result
    return doc


def scheduled_run(d: Driver, rid: str, ring: str, configuration: str, *, post_status: str = "Succeeded") -> str:
    doc = d.until_waiting(rid, "pre-maintenance event", ring)
    start = doc["rings"][[r["name"] for r in doc["rings"]].index(ring)]["target"]["runStart"]
    assert d.deliver(maintenance_event("pre", configuration, start)) == 202
    d.until_waiting(rid, "post-maintenance event", ring)
    assert d.deliver(maintenance_event("post", configuration, start, status=post_status)) == 202
    return correlation_id(configuration, start)


# ---------------------------------------------------------------------- happy path
def test_happy_path_three_rings(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start(who=INITIATOR, reason="November patches")
        doc = approve(d, rid, "ring1")
        manifest_hash = doc["manifest"]["hash"]
        assert doc["rings"][0]["gate"]["outcome"] == "pass"
        ring1_run = scheduled_run(d, rid, "ring1", "mc-ring1")
        approve(d, rid, "ring2", who="carol@contoso.com")
        ring2_run = scheduled_run(d, rid, "ring2", "mc-ring2")
        final = d.until_done(rid)

    assert final.runtime_status.value == "Completed"
    assert final.output["state"] == "completed", final.output
    assert final.output["outcome"] == "passed"
    assert [r["gate"]["outcome"] for r in final.output["rings"]] == ["pass", "pass", "pass"]

    # Ring 0 only was installed directly, once per VM, Windows pinned to the rollout's start.
    installs = f.called("start_install")
    assert {p["vm"]["id"] for p in installs} == ring_ids(f, "r0-")
    assert len(installs) == 3
    for p in installs:
        if p["vm"]["os"] == "Windows":
            assert p["parameters"]["windowsParameters"]["maxPatchPublishDate"] == START
    # waves of at most maxConcurrency=2
    assert len({p["runId"] for p in installs}) == 1

    # The manifest from Ring 0 was pinned into both later rings' configurations.
    pins = f.called("pin_manifest")
    assert [p["configurationId"].rsplit("/", 1)[-1] for p in pins] == ["mc-ring1", "mc-ring2"]
    assert {p["manifest"]["hash"] for p in pins} == {manifest_hash}
    assert pins[0]["manifest"]["windows"]["kbNumbers"] == ["5040001", "5040002"]
    assert pins[0]["manifest"]["linux"]["packages"] == ["openssl=3.0.2-1ubuntu1.20"]

    # Ring 1 opened by retag and closed again; ring 2 by its assignment, removed at the end.
    retags = [(p["value"], sorted(p["vmIds"])) for p in f.called("retag_vms")]
    assert retags == [("ring1", sorted(ring_ids(f, "r1-"))), ("ring1-hold", sorted(ring_ids(f, "r1-")))]
    assert [(p["ring"], p["present"]) for p in f.called("set_ring_assignment")] == [
        ("ring2", True),
        ("ring2", False),
    ]
    # Both scheduled runs were authorised (nothing cancelled), and the guard let them run.
    assert f.cancelled == []
    authorised = {r["runId"] for r in f.ring_runs_ if r.get("state") == "authorised"}
    assert authorised == {ring1_run, ring2_run}
    # The approvals are in the ledger, bound to the manifest.
    accepted = [a for a in f.called("ledger_record_approval")]
    assert [(a["ring"], a["decision"]["approver"], a["manifestHash"]) for a in accepted] == [
        ("ring1", "alice@contoso.com", manifest_hash),
        ("ring2", "carol@contoso.com", manifest_hash),
    ]


def guard_status(d: Driver, configuration: str, start: str) -> Any:
    from patchrings.domain.events import parse_maintenance_event
    from triggers.eventgrid import guard_id_for

    guard_id = guard_id_for(parse_maintenance_event(maintenance_event("pre", configuration, start)))
    d.until(lambda: d.runtime(guard_id) == "Completed")
    return d.status(guard_id).output


# ---------------------------------------------------------------------- failures in Ring 0
def test_bad_patch_in_ring0_halts_and_later_runs_are_cancelled(run: Any) -> None:
    d, f = run()
    f.vms[next(k for k in f.vms if k.endswith("r0-win-1"))].bad = True
    with d.clock.hold():
        rid = d.start()
        final = d.until_done(rid)
        # Ring 1's and Ring 2's scheduled runs come anyway; nobody authorised them.
        start = "2026-11-16T12:00:00Z"
        assert d.deliver(maintenance_event("pre", "mc-ring1", start),
                         maintenance_event("pre", "mc-ring2", start)) == 202
        guard1 = guard_status(d, "mc-ring1", start)
        guard2 = guard_status(d, "mc-ring2", start)

    assert final.output["state"] == "halted"
    assert "ring0 failed its gate" in final.output["outcome"]
    gate = final.output["rings"][0]["gate"]
    assert gate["outcome"] == "fail"
    assert any("r0-win-1" in r["vm"] for r in gate["reasons"])
    # maxErrors=0 reached in the first wave: the second wave never started.
    started = {p["vm"]["name"] for p in f.called("start_install")}
    assert started == {"r0-win-1", "r0-win-2"}
    assert any(r["vm"].endswith("r0-lnx-1") and "error budget" in r["reason"] for r in gate["reasons"])
    # Nothing was promoted: no approval asked, no pin, no retag, no assignment.
    assert f.called("pin_manifest") == []
    assert f.called("retag_vms") == []
    assert f.called("set_ring_assignment") == []
    # Fail closed: both later rings' runs were cancelled by their guards.
    assert guard1["decision"] == "cancelled" and guard2["decision"] == "cancelled"
    assert f.cancelled == [correlation_id("mc-ring1", start), correlation_id("mc-ring2", start)]


def test_guard_cancels_when_the_gate_cannot_be_read(run: Any) -> None:
    d, f = run()
    f.fail_gate_read = True
    start = "2026-11-16T12:00:00Z"
    with d.clock.hold():
        assert d.deliver(maintenance_event("pre", "mc-ring1", start)) == 202
        out = guard_status(d, "mc-ring1", start)
    assert out["decision"] == "cancelled"
    assert "could not be read" in out["gate"]["reason"]
    assert f.cancelled == [correlation_id("mc-ring1", start)]
    # The guard decided at min(cutoff, start - 10 min) - cancelMargin, never later.
    assert out["decidedAt"] <= "2026-11-16T11:48:00Z"


# ---------------------------------------------------------------------- approvals
def test_approval_rejected_halts_before_promotion(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
        result = d.decide(rid, "ring1", "reject", doc["waitingFor"]["manifestHash"], "bob@contoso.com",
                          comment="KB5040002 breaks our agent")
        assert result.status == 202, result
        final = d.until_done(rid)
    assert final.output["state"] == "halted"
    assert "ring ring1 not approved: bob@contoso.com rejected" in final.output["outcome"]
    assert f.called("pin_manifest") == [] and f.called("retag_vms") == []
    recorded = f.called("ledger_record_approval")
    assert recorded[0]["decision"]["verdict"] == "reject"
    assert recorded[0]["decision"]["comment"] == "KB5040002 breaks our agent"


def test_approval_timeout_rejects_by_default(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
        until = doc["waitingFor"]["until"]
        final = d.until_done(rid)
    assert final.output["state"] == "halted"
    decision = f.called("ledger_record_approval")[0]["decision"]
    assert decision["approver"] == "system:timeout" and decision["verdict"] == "reject"
    assert decision["decidedAt"] == until
    assert f.called("pin_manifest") == []


def test_approval_rules_non_approver_initiator_wrong_manifest_wrong_ring(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start(who="alice@contoso.com")
        doc = d.until_waiting(rid, "approval", "ring1")
        good = doc["waitingFor"]["manifestHash"]
        eve = d.decide(rid, "ring1", "approve", good, "eve@contoso.com")
        alice = d.decide(rid, "ring1", "approve", good, "alice@contoso.com")
        wrong_manifest = d.decide(rid, "ring1", "approve", "0000deadbeef", "bob@contoso.com")
        wrong_ring = d.decide(rid, "ring2", "approve", good, "carol@contoso.com")
        nobody = d.api("POST", f"/api/rollouts/{rid}/rings/ring1/approve", {"manifestHash": good})
        missing_hash = d.decide(rid, "ring1", "approve", "", "bob@contoso.com")
        # still waiting: none of those was accepted
        assert d.doc(rid)["waitingFor"]["what"] == "approval"
        ok = d.decide(rid, "ring1", "approve", good, "bob@contoso.com")
        d.until_waiting(rid, "pre-maintenance event", "ring1")

    assert (eve.status, eve.json["error"]["code"], eve.json["error"]["field"]) == (403, "ApprovalForbidden", "approver")
    assert (alice.status, alice.json["error"]["code"]) == (403, "ApprovalForbidden")
    assert "started this rollout" in alice.json["error"]["message"]
    assert (wrong_manifest.status, wrong_manifest.json["error"]["field"]) == (409, "manifestHash")
    assert (wrong_ring.status, wrong_ring.json["error"]["code"]) == (409, "ApprovalConflict")
    assert nobody.status == 403
    assert (missing_hash.status, missing_hash.json["error"]["field"]) == (400, "manifestHash")
    assert ok.status == 202
    outcomes = [(a.get("approver"), a["outcome"]) for a in f.approvals_]
    assert outcomes[:4] == [
        ("eve@contoso.com", "refused"),
        ("alice@contoso.com", "refused"),
        ("bob@contoso.com", "refused"),
        ("carol@contoso.com", "refused"),
    ]
    # (the API may also log the key-only and malformed requests as refused rows)
    assert [o for o in outcomes if o[1] != "refused"] == [("bob@contoso.com", "submitted")]
    accepted = f.called("ledger_record_approval")
    assert [a["decision"]["approver"] for a in accepted] == ["bob@contoso.com"]


# ---------------------------------------------------------------------- events
def test_duplicate_and_reordered_events_apply_once(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        doc = d.until_waiting(rid, "pre-maintenance event", "ring1")
        start = doc["rings"][1]["target"]["runStart"]
        # post overtakes pre; pre comes twice (once as CloudEvents with PascalCase data keys)
        assert d.deliver(maintenance_event("post", "mc-ring1", start)) == 202
        assert d.deliver(maintenance_event("pre", "mc-ring1", start, cloud=True, pascal=True)) == 202
        assert d.deliver(maintenance_event("pre", "mc-ring1", start)) == 202
        d.until_waiting(rid, "approval", "ring2")
        assert d.deliver(maintenance_event("post", "mc-ring1", start)) == 202
        approve(d, rid, "ring2", who="carol@contoso.com")
        scheduled_run(d, rid, "ring2", "mc-ring2")
        final = d.until_done(rid)
    assert final.output["outcome"] == "passed", final.output
    collected = f.called("stage_run_results") + f.called("collect_run_results_arg") + f.called("collect_run_results")
    assert len({p["correlationId"] for p in collected}) == 2  # each run's results collected, once per run
    # staged once per run for the ring, read by the chunks from the ledger: no chunk queried (issue 11)
    assert len(f.called("stage_run_results")) == 2 and f.called("read_staged_results")
    assert f.called("collect_run_results_arg") == []
    runs = [r for r in f.ring_runs_ if r.get("state") == "authorised"]
    assert len(runs) == 2
    # each distinct (kind, run) is in the ledger once; redeliveries were not raised again
    ring1_events = sorted((e["kind"], e["correlationId"]) for e in f.events_ if "mc-ring1" in e["configurationId"])
    assert ring1_events == [("post", correlation_id("mc-ring1", start)), ("pre", correlation_id("mc-ring1", start))]
    # and no guard cancelled the authorised run
    assert f.cancelled == []


def test_ring0_pre_event_starts_one_rollout_despite_duplicates(run: Any) -> None:
    mc0 = f"{fleet.MC}/mc-ring0"
    plan = default_plan(ring0={"members": {"tag": {"name": "patchRing", "value": "ring0"},
                                           "maintenanceConfigurationId": mc0}})
    d, f = run(plan)
    start = "2026-11-16T12:00:00Z"
    with d.clock.hold():
        assert d.deliver(maintenance_event("pre", "mc-ring0", start),
                         maintenance_event("pre", "mc-ring0", start, cloud=True)) == 202
        assert d.deliver(maintenance_event("pre", "mc-ring0", start, pascal=True)) == 202
        listed = d.api("GET", "/api/rollouts")
        d.until(lambda: d.api("GET", "/api/rollouts").json["rollouts"][0]["waitingFor"] is not None)
    assert listed.status == 200
    assert len(listed.json["rollouts"]) == 1
    assert listed.json["rollouts"][0]["id"].startswith("mw-pre-mc-ring0")
    installs = [p["vm"]["name"] for p in f.called("start_install")]
    assert sorted(installs) == ["r0-lnx-1", "r0-win-1", "r0-win-2"]  # one rollout: each VM once


def test_unknown_configuration_and_malformed_events_are_acknowledged(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        assert d.deliver(maintenance_event("pre", "mc-unknown", "2026-11-16T12:00:00Z")) == 202
        assert d.deliver({"id": "x", "eventType": "Microsoft.Maintenance.PreMaintenanceEvent", "data": {}}) == 202
        assert d.deliver({"id": "y", "eventType": "Something.Else", "data": "text"}) == 202
    assert f.events_ == []
    assert f.cancelled == []


# ---------------------------------------------------------------------- direct later ring
def test_later_direct_ring_installs_exactly_the_manifest(run: Any) -> None:
    plan = default_plan(ring1={"patching": "direct", "open": {"mode": "none"},
                               "members": {"tag": {"name": "patchRing", "value": "ring1-hold"}}})
    plan["rings"] = plan["rings"][:2]
    d, f = run(plan)
    with d.clock.hold():
        rid = d.start()
        doc = approve(d, rid, "ring1")
        final = d.until_done(rid)
    assert final.output["outcome"] == "passed", final.output
    manifest = final.output["manifest"]
    assert manifest["hash"] == doc["manifest"]["hash"]
    ring1 = [p for p in f.called("start_install") if p["vm"]["name"].startswith("r1-")]
    assert len(ring1) == 2
    for p in ring1:
        if p["vm"]["os"] == "Windows":
            assert p["parameters"]["windowsParameters"]["kbNumbersToInclude"] == manifest["windows"]["kbNumbers"]
            assert "maxPatchPublishDate" not in p["parameters"]["windowsParameters"]
        else:
            masks = p["parameters"]["linuxParameters"]["packageNameMasksToInclude"]
            assert masks == manifest["linux"]["packages"]


# ---------------------------------------------------------------------- halt / resume, crash
def test_halt_closes_later_rings_and_resume_continues(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        d.until_waiting(rid, "pre-maintenance event", "ring1")
        halted = d.api("POST", f"/api/rollouts/{rid}/halt", {"reason": "incident 4711"}, who="bob@contoso.com")
        assert halted.status == 202, halted
        d.until(lambda: d.doc(rid).get("state") == "halted")
        again = d.api("POST", f"/api/rollouts/{rid}/halt", {}, who="bob@contoso.com")
        # the closed ring's run arrives while halted: cancelled (not authorised)
        doc = d.doc(rid)
        start = "2026-11-17T12:00:00Z"
        assert d.deliver(maintenance_event("pre", "mc-ring1", start)) == 202
        guard = guard_status(d, "mc-ring1", start)
        resumed = d.api("POST", f"/api/rollouts/{rid}/resume", {}, who="bob@contoso.com")
        assert resumed.status == 202, resumed
        scheduled_run(d, rid, "ring1", "mc-ring1")
        approve(d, rid, "ring2", who="carol@contoso.com")
        scheduled_run(d, rid, "ring2", "mc-ring2")
        final = d.until_done(rid)
    assert again.status == 409
    assert doc["halted"]["reason"] == "incident 4711"
    assert guard["decision"] == "cancelled"
    assert final.output["outcome"] == "passed"
    values = [p["value"] for p in f.called("retag_vms")]
    assert values == ["ring1", "ring1-hold", "ring1", "ring1-hold"]


def test_host_crash_mid_ring_changes_nothing(run: Any, tmp_path: Path) -> None:
    storage = str(tmp_path / "durable.sqlite")
    d, f = run(storage=storage)
    clock = d.clock
    with clock.hold():
        rid = d.start()
        d.until(lambda: len(f.called("poll_install")) >= 1)
        d.ht.stop()
        ht = HostThread(APP, clock, storage=storage).start()
        d2 = Driver(ht)
        try:
            approve(d2, rid, "ring1")
            scheduled_run(d2, rid, "ring1", "mc-ring1")
            approve(d2, rid, "ring2", who="carol@contoso.com")
            scheduled_run(d2, rid, "ring2", "mc-ring2")
            final = d2.until_done(rid)
        finally:
            ht.stop()
    assert final.output["outcome"] == "passed"
    # installPatches went to each Ring 0 VM exactly once across the crash
    assert len(f.installs) == 3
    assert {key[1].rsplit("/", 1)[-1] for key in f.installs} == {"r0-win-1", "r0-win-2", "r0-lnx-1"}


def test_dry_run_assesses_without_installing(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start(dryRun=True)
        final = d.until_done(rid)
        status = d.api("GET", f"/api/rollouts/{rid}")
    assert final.output["state"] == "dry-run-completed"
    assert [r["ring"] for r in final.output["rings"]] == ["ring0", "ring1", "ring2"]
    assert final.output["rings"][0]["summary"]["vms"] == 3
    assert f.called("start_install") == [] and f.called("retag_vms") == []
    assert len(f.called("start_assess")) == 7
    assert status.status == 200 and status.json["state"] == "dry-run-completed"


def test_http_errors_are_json_and_name_the_field(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        unknown = d.api("GET", "/api/rollouts/ro-nope")
        bad_body = d.api("POST", "/api/rollouts", {"dryRun": "yes"})
        bad_plan = d.api("POST", "/api/plans/validate", {"version": 1, "name": "x", "rings": []})
        good_plan = d.api("POST", "/api/plans/validate", f.plan)
        no_key = http_call_no_key(d, "/api/rollouts")
        first = d.start()
        second = d.api("POST", "/api/rollouts", {}, who=INITIATOR)
        dry = d.api("POST", "/api/rollouts", {"dryRun": True}, who=INITIATOR)
        unknown_field = d.api("POST", "/api/rollouts", {"dryrun": True})
        listed = d.api("GET", "/api/rollouts").json["rollouts"]
    assert (unknown.status, unknown.json["error"]["code"]) == (404, "NotFound")
    assert (bad_body.status, bad_body.json["error"]["field"]) == (400, "dryRun")
    assert bad_plan.status == 400 and bad_plan.json["error"]["code"] == "PlanInvalid"
    assert good_plan.status == 200 and good_plan.json["valid"] is True
    assert no_key == 401
    assert (second.status, second.json["error"]["code"]) == (409, "RolloutConflict")
    assert second.json["error"]["details"]["active"] == [first]
    assert dry.status == 202
    assert (unknown_field.status, unknown_field.json["error"]["field"]) == (400, "dryrun")
    assert {r["id"] for r in listed} == {first, dry.json["id"]}


def http_call_no_key(d: Driver, path: str) -> int:
    from emulator.platform import http_call

    return http_call("GET", f"{d.ht.base_url}{path}").status


def test_halt_mid_direct_ring_stops_new_waves_and_resume_finishes_the_ring(run: Any) -> None:
    plan = default_plan(ring0={"rate": {"maxConcurrency": 1, "maxErrors": 0}})
    d, f = run(plan)
    with d.clock.hold():
        rid = d.start()
        d.until(lambda: len(f.called("poll_install")) >= 1)
        halt = d.api("POST", f"/api/rollouts/{rid}/halt", {"reason": "change freeze"}, who="bob@contoso.com")
        assert halt.status == 202
        d.until(lambda: d.doc(rid).get("state") == "halted")
        halted_installs = sorted(p["vm"]["name"] for p in f.called("start_install"))
        assert d.api("POST", f"/api/rollouts/{rid}/resume", {}, who="bob@contoso.com").status == 202
        approve(d, rid, "ring1")
    assert len(halted_installs) == 1  # waves 2 and 3 never started while halted
    # after resume Ring 0 finished: every VM installed exactly once
    assert len(f.installs) == 3
    assert f.rollouts_[rid]["haltRequested"] is False


def test_tolerated_errors_pass_the_gate_and_leave_the_failed_vm_out_of_the_manifest(run: Any) -> None:
    plan = default_plan(ring0={"rate": {"maxConcurrency": 3, "maxErrors": 1}, "gate": {"tolerateErrors": True}})
    d, f = run(plan)
    f.vms[next(k for k in f.vms if k.endswith("r0-win-1"))].bad = True
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
    gate = doc["rings"][0]["gate"]
    assert gate["outcome"] == "pass" and gate["counts"]["failed"] == 1
    assert any(r["vm"].endswith("r0-win-1") for r in gate["reasons"])
    # both KBs failed on r0-win-1 ("failed anywhere" = left out); Linux is unaffected
    assert doc["manifest"]["windowsCount"] == 0 and doc["manifest"]["linuxCount"] == 1


def rollout_history_length(d: Driver, rid: str) -> int:
    """History events of the instance, not counting episode markers (OrchestratorStarted 12 /
    OrchestratorCompleted 13), whose number depends on how the host batched completions."""
    def settled() -> list[dict[str, Any]] | None:
        events = [e for e in d.ht.history(rid) if e.get("EventType") not in (12, 13)]
        kinds = [e.get("EventType") for e in events]
        # every scheduled activity completed and the approval timer is set: the instance is idle
        return events if kinds.count(4) == kinds.count(5) and 10 in kinds else None

    return len(d.until(settled))


@pytest.mark.slow
def test_rollout_history_does_not_grow_with_the_ring_size(run: Any) -> None:
    """Waves are sub-orchestrations and rings report summaries: a 120-VM Ring 0 leaves the
    rollout's own history exactly as long as a 3-VM one."""
    lengths = {}
    for size in (3, 120):
        plan = default_plan(ring0={"rate": {"maxConcurrency": "25%", "maxErrors": 0}})
        d, f = run(plan)
        for name in [n for n in list(f.vms) if "/r0-" in n]:
            del f.vms[name]
        for i in range(size):
            f.add(f"r0-vm-{i:03d}", "Windows" if i % 2 else "Linux", str(i % 3 + 1), "ring0")
        with d.clock.hold():
            rid = d.start()
            doc = d.until_waiting(rid, "approval", "ring1")
        assert doc["rings"][0]["counts"]["vms"] == size
        assert doc["rings"][0]["counts"]["waves"] == {3: 3, 120: 4}[size]
        assert len(f.installs) == size
        lengths[size] = rollout_history_length(d, rid)
        d.ht.stop()
    assert lengths[3] == lengths[120], lengths


def test_a_transient_start_refusal_is_retried_not_counted_as_a_failure(run: Any) -> None:
    d, f = run()
    f.refuse_once.add("r0-win-2")
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
    assert doc["rings"][0]["gate"]["outcome"] == "pass"
    starts = [p["vm"]["name"] for p in f.called("start_install")]
    assert starts.count("r0-win-2") == 2 and len(f.installs) == 3


def test_inconclusive_gate_goes_to_a_person_even_without_manual_approval(run: Any) -> None:
    plan = default_plan(ring1={"approval": {"mode": "none"}})
    d, f = run(plan)
    # a Windows canary: r0-win-1 still covers Windows (an uncovered OS would halt, issue 13.7)
    f.vms[next(k for k in f.vms if k.endswith("r0-win-2"))].unreadable = True
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
        waiting = doc["waitingFor"]
        result = d.decide(rid, "ring1", "approve", waiting["manifestHash"], "carol@contoso.com")
        d.until_waiting(rid, "pre-maintenance event", "ring1")
    assert doc["rings"][0]["gate"]["outcome"] == "inconclusive"
    assert waiting["reason"] == "ring ring0 gate inconclusive"
    assert sorted(waiting["approvers"]) == ["alice@contoso.com", "carol@contoso.com"]  # every listed approver
    assert result.status == 202
    assert f.called("retag_vms")[0]["value"] == "ring1"  # promoted only after the person decided


def test_approval_timeout_can_approve_when_the_plan_says_so(run: Any) -> None:
    approval = {"mode": "manual", "approvers": ["alice@contoso.com"], "timeout": "PT4H", "onTimeout": "approve"}
    d, f = run(default_plan(ring1={"approval": approval}))
    with d.clock.hold():
        rid = d.start()
        d.until_waiting(rid, "pre-maintenance event", "ring1")
    decision = f.called("ledger_record_approval")[0]["decision"]
    assert (decision["approver"], decision["verdict"]) == ("system:timeout", "approve")
    assert f.called("pin_manifest")[0]["configurationId"].endswith("mc-ring1")


def principal_header(name: str) -> str:
    import base64
    import json as _json

    upn = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
    doc = {"auth_typ": "aad", "claims": [{"typ": upn, "val": name}, {"typ": "preferred_username", "val": name}]}
    return base64.b64encode(_json.dumps(doc).encode()).decode()


def test_approver_identity_comes_from_app_service_authentication(run: Any) -> None:
    from emulator.platform import http_call

    d, _ = run()
    # App Service authentication on (WEBSITE_AUTH_ENABLED): only then is the principal trusted
    deps.override(settings=Settings(approver_header_fallback=False, platform_auth_enabled=True))
    with d.clock.hold():
        rid = d.start(who="ignored@contoso.com")  # fallback header ignored: initiator unknown
        doc = d.until_waiting(rid, "approval", "ring1")
        url = f"{d.ht.base_url}/api/rollouts/{rid}/rings/ring1/approve"
        body = {"manifestHash": doc["waitingFor"]["manifestHash"]}
        key = {"x-functions-key": d.ht.function_key}
        spoofed = http_call("POST", url, body=body, headers={**key, "X-PatchRings-Approver": "alice@contoso.com"})
        principal = {"X-MS-CLIENT-PRINCIPAL": principal_header("Bob@Contoso.com")}
        real = http_call("POST", url, body=body, headers={**key, **principal})
        assert real.status == 202, real
        d.until_waiting(rid, "pre-maintenance event", "ring1")
    assert doc["initiator"] is None
    assert spoofed.status == 403 and spoofed.json["error"]["code"] == "ApprovalForbidden"
    # the decision names the plan's approver entry the principal matched; the principal is kept
    assert real.status == 202 and real.json["decision"]["approver"] == "bob@contoso.com"
    assert real.json["decision"]["principal"]["name"] == "Bob@Contoso.com"


def test_an_unloadable_plan_ends_the_rollout_visibly_without_touching_anything(run: Any) -> None:
    d, f = run()
    f.fail_load_plan = True
    with d.clock.hold():
        rid = d.start()
        final = d.until_done(rid)
    assert final.runtime_status.value == "Completed"
    assert final.output["state"] == "failed"
    assert "rings: must have at least 1 item" in final.output["outcome"]
    assert d.doc(rid)["state"] == "failed"
    assert [name for name, _ in f.calls] == ["load_plan"]


def test_a_plan_in_the_start_request_is_validated_and_used(run: Any) -> None:
    d, f = run()
    deps.override(settings=Settings(approver_header_fallback=True, inline_plans=True))  # off by default
    custom = default_plan(ring0={"rate": {"maxConcurrency": 1, "maxErrors": 0}})
    broken = default_plan(ring1={"approval": {"mode": "manual", "approvers": []}})
    with d.clock.hold():
        refused = d.api("POST", "/api/rollouts", {"plan": broken}, who=INITIATOR)
        rid = d.start(plan=custom)
        doc = d.until_waiting(rid, "approval", "ring1")
    assert refused.status == 400 and refused.json["error"]["code"] == "PlanInvalid"
    assert any("approvers" in e["field"] for e in refused.json["error"]["details"])
    assert doc["rings"][0]["counts"]["waves"] == 3
    # the request's plan travelled with the rollout, and load_plan checked it again (issue 13.9 hole)
    assert [p["plan"]["rings"][0]["rate"]["maxConcurrency"] for p in f.called("load_plan")] == [1]


# ---------------------------------------------------------------------- 13.13 / 13.11: only recorded decisions
def raise_event(d: Driver, rid: str, name: str, data: dict[str, Any]) -> None:
    """Raise an event the way the Durable webhook does (system key, no API in between)."""
    d.ht.call(d.ht.client().raise_event(rid, name, data))


def test_a_decision_raised_around_the_api_is_refused_and_recorded(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
        good = doc["waitingFor"]["manifestHash"]
        forged = {"decisionId": "forged-1", "approver": "bob@contoso.com", "ring": "ring1", "manifestHash": good,
                  "verdict": "approve", "comment": ""}
        raise_event(d, rid, "ApprovalDecision", forged)
        d.until(lambda: len(d.doc(rid)["approvals"]) >= 1)
        # the API recorded bob's *reject*; an event saying approve under that id is tampered
        f.record_approval(rid, "real-2", {**forged, "decisionId": "real-2", "verdict": "reject",
                                          "outcome": "submitted", "at": "2026-11-16T07:00:00Z"})
        raise_event(d, rid, "ApprovalDecision", {**forged, "decisionId": "real-2"})
        d.until(lambda: len(d.doc(rid)["approvals"]) >= 2)
        waiting = d.doc(rid)
        ok = d.decide(rid, "ring1", "approve", good, "bob@contoso.com")
        d.until_waiting(rid, "pre-maintenance event", "ring1")
    assert waiting["waitingFor"]["what"] == "approval"  # neither event approved anything
    assert [a["accepted"] for a in waiting["approvals"]] == [False, False]
    assert waiting["approvals"][0]["error"]["code"] == "DecisionNotSubmitted"
    refusals = [a for a in f.approvals_ if a.get("outcome") == "refused" and a.get("source") == "orchestrator"]
    assert len(refusals) == 2 and "no approval 'forged-1' was submitted" in refusals[0]["reason"]
    assert "verdict" in refusals[1]["reason"]
    assert ok.status == 202
    accepted = f.called("ledger_record_approval")
    assert [a["decision"]["approver"] for a in accepted] == ["bob@contoso.com"]


def test_resume_needs_a_recorded_resume_by_an_approver_and_keeps_a_valid_approval(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        d.until_waiting(rid, "pre-maintenance event", "ring1")
        assert d.api("POST", f"/api/rollouts/{rid}/halt", {"reason": "x"}, who="bob@contoso.com").status == 202
        d.until(lambda: d.doc(rid).get("state") == "halted")
        raise_event(d, rid, "Resume", {"by": "bob@contoso.com"})  # webhook, no recorded resume
        d.until(lambda: any("refused a Resume" in n["text"] for n in d.doc(rid)["notes"]))
        f.record_approval(rid, "res-eve", {"decisionId": "res-eve", "verdict": "resume", "by": "eve@contoso.com",
                                           "ring": "ring1", "outcome": "submitted", "at": "2026-11-16T08:00:00Z"})
        raise_event(d, rid, "Resume", {"resumeId": "res-eve", "by": "eve@contoso.com"})
        d.until(lambda: sum("refused a Resume" in n["text"] for n in d.doc(rid)["notes"]) >= 2)
        still = d.doc(rid)
        f.record_approval(rid, "res-bob", {"decisionId": "res-bob", "verdict": "resume", "by": "bob@contoso.com",
                                           "ring": "ring1", "outcome": "submitted", "at": "2026-11-16T08:01:00Z"})
        raise_event(d, rid, "Resume", {"resumeId": "res-bob", "by": "bob@contoso.com"})
        # the approval given before the halt is still bound to this manifest: no new approval
        resumed = d.until_waiting(rid, "pre-maintenance event", "ring1")
    assert still["state"] == "halted"
    notes = [n["text"] for n in still["notes"] if "refused a Resume" in n["text"]]
    assert "not submitted through the API" in notes[0] and "not an approver of ring ring1" in notes[1]
    assert resumed["state"] == "waiting" and resumed["halted"] is None
    assert [c["ring"] for c in f.called("ledger_read_gate") if not c.get("correlationId")][-1] == "ring1"
    refused = [a for a in f.approvals_ if a.get("outcome") == "refused"]
    assert len(refused) == 1  # the id-less webhook resume (eve's went through ledger_record_approval)
    assert next(a for a in f.called("ledger_record_approval") if a.get("kind") == "resume")["by"] == "eve@contoso.com"


# ---------------------------------------------------------------------- 13.14: only the computed run
def test_a_forged_pre_event_is_refused_recorded_and_the_real_run_is_taken(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        doc = d.until_waiting(rid, "pre-maintenance event", "ring1")
        start = doc["rings"][1]["target"]["runStart"]
        forged_2099 = maintenance_event("pre", "mc-ring1", "2099-01-06T12:00:00Z")
        assert d.deliver(forged_2099) == 202
        # the real run's correlationId with another start, raised straight into the instance
        reused_id = {"kind": "pre", **maintenance_event("pre", "mc-ring1", "2099-01-06T12:00:00Z")["data"],
                     "correlationId": correlation_id("mc-ring1", start)}
        raise_event(d, rid, "MaintenanceEvent", reused_id)
        d.until(lambda: d.doc(rid)["events"].get("refused", 0) >= 2)
        still = d.doc(rid)
        real = scheduled_run(d, rid, "ring1", "mc-ring1")
        d.until_waiting(rid, "approval", "ring2")
    assert still["waitingFor"]["what"] == "pre-maintenance event" and still["waitingFor"]["runStart"] == start
    refused = [e for e in f.called("ledger_record_event") if e.get("outcome") == "refused"]
    assert sorted(e["startDateTime"] for e in refused) == ["2099-01-06T12:00:00Z"] * 2
    assert any("not the run the rollout computed" in e["reason"] for e in refused)
    assert any("is not the start it claims" in e["reason"] for e in refused)
    authorised = [r["runId"] for r in f.ring_runs_ if r.get("state") == "authorised"]
    assert authorised == [real]


# ---------------------------------------------------------------------- 13.6: re-target after a miss
@pytest.mark.parametrize(
    ("recur", "first", "after_miss"),
    [
        ("Month Second Tuesday", "2026-12-08T12:00:00Z", "2027-01-12T12:00:00Z"),
        ("Month day31", "2026-12-31T12:00:00Z", "2027-01-31T12:00:00Z"),
        ("Week Saturday,Sunday", "2026-11-21T12:00:00Z", "2026-11-22T12:00:00Z"),
    ],
)
def test_after_a_missed_run_the_next_one_is_computed_from_the_schedule(
        run: Any, recur: str, first: str, after_miss: str) -> None:
    d, f = run()
    f.window = {"startDateTime": "2026-11-01 12:00", "duration": "03:55", "timeZone": "UTC", "recurEvery": recur}
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        before = d.until_waiting(rid, "pre-maintenance event", "ring1")
        # nobody delivers that run's pre-event (AUM skipped it): the rollout re-targets
        d.until(lambda: (d.doc(rid).get("waitingFor") or {}).get("runStart") == after_miss)
        missed = d.doc(rid)
        assert d.deliver(maintenance_event("pre", "mc-ring1", after_miss)) == 202
        d.until_waiting(rid, "post-maintenance event", "ring1")
    assert before["waitingFor"]["runStart"] == first
    assert missed["rings"][1]["target"]["runStart"] == after_miss
    assert any(f"no pre-maintenance event for the run at {first}" in n["text"] for n in missed["notes"])
    retargeted = [r for r in f.ring_runs_ if r.get("state") == "retargeted"]
    assert [r["target"]["runStart"] for r in retargeted] == [after_miss]
    assert [r["runId"].rsplit("/", 1)[-1] for r in f.ring_runs_ if r.get("state") == "authorised"] == [
        after_miss.replace("-", "").replace(":", "").replace("T", "")[:14]]


# ---------------------------------------------------------------------- 14.4: no long timer outlives the rollout
def _finished_at(d: Driver, rid: str) -> Any:
    from datetime import UTC, datetime

    d.until(lambda: d.runtime(rid) in ("Completed", "Failed", "Terminated"))
    return d.clock.now(), datetime(2026, 11, 16, 6, 0, tzinfo=UTC)


def test_a_long_approval_timeout_does_not_keep_a_finished_rollout_running(run: Any) -> None:
    from datetime import timedelta

    plan = default_plan(ring1={"approval": {"mode": "manual", "approvers": ["alice@contoso.com", "bob@contoso.com"],
                                            "timeout": "P8D", "onTimeout": "reject"}})
    d, _f = run(plan)
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
        assert d.decide(rid, "ring1", "reject", doc["waitingFor"]["manifestHash"], "bob@contoso.com").status == 202
        done, start = _finished_at(d, rid)
        again = d.api("POST", "/api/rollouts", {}, who="dave@contoso.com")
    assert d.status(rid).output["state"] == "halted"
    assert done - start < timedelta(days=1)  # not held Running until an 8-day timer's piece fires
    assert again.status == 202  # the finished rollout does not block the next one


def test_a_resume_inside_the_14_day_window_leaves_no_timer_behind(run: Any) -> None:
    from datetime import timedelta

    d, f = run()
    with d.clock.hold():
        rid = d.start()
        doc = d.until_waiting(rid, "approval", "ring1")
        assert d.api("POST", f"/api/rollouts/{rid}/halt", {"reason": "x"}, who="bob@contoso.com").status == 202
        d.until(lambda: d.doc(rid).get("state") == "halted")
        f.record_approval(rid, "res-1", {"decisionId": "res-1", "verdict": "resume", "by": "bob@contoso.com",
                                         "ring": "ring1", "outcome": "submitted", "at": "2026-11-16T08:00:00Z"})
        raise_event(d, rid, "Resume", {"resumeId": "res-1", "by": "bob@contoso.com"})
        doc = d.until_waiting(rid, "approval", "ring1")
        assert d.decide(rid, "ring1", "reject", doc["waitingFor"]["manifestHash"], "bob@contoso.com").status == 202
        done, start = _finished_at(d, rid)
    assert d.status(rid).output["state"] == "halted"
    assert done - start < timedelta(days=2)  # the resume window's 14-day wait left nothing pending


def test_every_long_wait_is_made_of_timers_of_at_most_five_days(run: Any) -> None:
    """The approval timeout (8 d), a monthly run's pre-event wait (22 d) and the resume window
    (14 d): the instance's history holds no durable timer longer than 5 days, and the rollout
    is Completed the moment its resume window ends."""
    from datetime import timedelta

    from emulator.host.history import parse_ts

    plan = default_plan(ring1={"approval": {"mode": "manual", "approvers": ["alice@contoso.com", "bob@contoso.com"],
                                            "timeout": "P8D", "onTimeout": "reject"}})
    d, f = run(plan)
    f.window = {"startDateTime": "2026-11-01 12:00", "duration": "03:55", "timeZone": "UTC",
                "recurEvery": "Month Second Tuesday"}
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        waiting = d.until_waiting(rid, "pre-maintenance event", "ring1")
        assert d.api("POST", f"/api/rollouts/{rid}/halt", {"reason": "x"}, who="bob@contoso.com").status == 202
        halted = d.until_waiting(rid, "resume")
        done, _ = _finished_at(d, rid)
    assert waiting["waitingFor"]["runStart"] == "2026-12-08T12:00:00Z"
    resume_by = parse_ts(halted["waitingFor"]["until"])
    assert resume_by <= done < resume_by + timedelta(hours=1)
    timers = [e for e in d.ht.history(rid) if e.get("EventType") == 10]
    assert timers
    longest = max(parse_ts(e["FireAt"]) - parse_ts(e["Timestamp"]) for e in timers)
    assert longest <= timedelta(days=5), longest


# ---------------------------------------------------------------------- previous ring (issue 13.5)
def _vm_key(f: fleet.Fleet, name: str) -> str:
    return next(k for k in f.vms if k.endswith(f"/{name}"))


def test_a_deleted_canary_leaves_the_sample_with_a_note_and_later_rings_proceed(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        f.vms[_vm_key(f, "r0-win-1")].deleted = True  # deleted after Ring 0 passed
        ring1_run = scheduled_run(d, rid, "ring1", "mc-ring1")
        approve(d, rid, "ring2", who="carol@contoso.com")
        scheduled_run(d, rid, "ring2", "mc-ring2")
        final = d.until_done(rid)
    assert final.output["state"] == "completed", final.output
    assert f.cancelled == []
    doc = d.doc(rid)
    assert any("r0-win-1 no longer exists" in n["text"] for n in doc["notes"]), doc["notes"]
    row = next(r for r in f.ring_runs_ if r.get("runId") == ring1_run and r.get("state") == "authorised")
    assert row["previousRing"]["removed"] == [f.vms[_vm_key(f, "r0-win-1")].id]
    assert "no longer exists" in row["previousRing"]["notes"][0]


def test_an_unreadable_canary_blocks_until_an_approver_accepts_it_explicitly(run: Any) -> None:
    d, f = run()
    unreadable = f.vms[_vm_key(f, "r0-win-1")]
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        unreadable.unreadable = True  # after Ring 0 passed: deallocated / its instance view unreadable
        doc = d.until_waiting(rid, "pre-maintenance event", "ring1")
        start = doc["rings"][1]["target"]["runStart"]
        assert d.deliver(maintenance_event("pre", "mc-ring1", start)) == 202
        doc = d.until_waiting(rid, "approval", "ring1")
        waiting = doc["waitingFor"]
        assert [vm["name"] for vm in waiting["inconclusive"]] == ["r0-win-1"]
        assert f.cancelled == [correlation_id("mc-ring1", start)]  # fail closed first
        # an approval that does not name the VM is refused by the rollout (the API took it)
        plain = d.decide(rid, "ring1", "approve", waiting["manifestHash"], "alice@contoso.com")
        assert plain.status == 202
        d.until(lambda: any((a.get("error") or {}).get("code") == "AcceptanceRequired"
                            for a in d.doc(rid).get("approvals") or []))
        assert d.doc(rid)["waitingFor"]["what"] == "approval"
        bad = d.api("POST", f"/api/rollouts/{rid}/rings/ring1/approve",
                    {"manifestHash": waiting["manifestHash"], "acceptInconclusive": "r0-win-1"},
                    who="alice@contoso.com")
        assert bad.status == 400 and bad.json["error"]["field"] == "acceptInconclusive"
        too_many = d.api("POST", f"/api/rollouts/{rid}/rings/ring1/approve",
                         {"manifestHash": waiting["manifestHash"], "acceptInconclusive": ["x"] * 1001},
                         who="alice@contoso.com")
        assert too_many.status == 400 and too_many.json["error"]["field"] == "acceptInconclusive"
        ok = d.api("POST", f"/api/rollouts/{rid}/rings/ring1/approve",
                   {"manifestHash": waiting["manifestHash"], "acceptInconclusive": ["r0-win-1"]},
                   who="alice@contoso.com")
        assert ok.status == 202, ok
        ring1_run = scheduled_run(d, rid, "ring1", "mc-ring1")
        approve(d, rid, "ring2", who="carol@contoso.com")
        scheduled_run(d, rid, "ring2", "mc-ring2")
        final = d.until_done(rid)
    assert final.output["state"] == "completed", final.output
    assert ring1_run != correlation_id("mc-ring1", start)
    # the API recorded the acceptance with the submitted decision; the rollout with the accepted one
    submitted = [a for a in f.approvals_ if a.get("outcome") == "submitted" and a.get("acceptInconclusive")]
    assert [a["acceptInconclusive"] for a in submitted] == [["r0-win-1"]]
    accepted = [a for a in f.called("ledger_record_approval") if a.get("acceptInconclusive")]
    assert accepted and accepted[-1]["acceptInconclusive"] == ["r0-win-1"] and accepted[-1]["outcome"] == "accepted"
    refused = [a for a in f.called("ledger_record_approval") if a.get("outcome") == "refused"]
    assert refused and "acceptInconclusive" in refused[0]["reason"]
    row = next(r for r in f.ring_runs_ if r.get("runId") == ring1_run and r.get("state") == "authorised")
    assert row["previousRing"]["acceptedInconclusive"] == [unreadable.id]


# ---------------------------------------------------------------------- OS coverage (issue 13.7)
def test_a_ring_with_an_os_ring0_did_not_cover_is_not_opened(run: Any) -> None:
    d, f = run()
    del f.vms[_vm_key(f, "r0-lnx-1")]  # Ring 0 is Windows only; Ring 1 holds a Linux VM
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        final = d.until_done(rid)
    assert final.output["state"] == "halted", final.output
    assert "Linux" in final.output["outcome"] and "allowUncoveredOs" in final.output["outcome"]
    assert f.called("pin_manifest") == [] and f.called("retag_vms") == []  # nothing opened
    row = next(r for r in f.ring_runs_ if r.get("state") == "coverage-refused")
    assert row["ring"] == "ring1" and row["families"] == ["Linux"]
    assert row["uncovered"][0]["vm"] == f.vms[_vm_key(f, "r1-lnx-1")].id
    assert d.doc(rid)["rings"][1]["phase"] == "coverage-refused"
    # each VM's ledger row keeps a short list of what it installed
    rows = {r["vm"].rsplit("/", 1)[-1]: r for r in f.vm_results_ if r["ring"] == "ring0"}
    assert rows["r0-win-1"]["result"]["installed"] == ["KB5040001", "KB5040002"]
    assert "patches" not in rows["r0-win-1"]["result"]


def test_allow_uncovered_os_lets_the_plan_promote_anyway(run: Any) -> None:
    d, f = run(default_plan(ring1={"gate": {"allowUncoveredOs": True}}))
    del f.vms[_vm_key(f, "r0-lnx-1")]
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        d.until_waiting(rid, "pre-maintenance event", "ring1")
    assert f.called("pin_manifest")[0]["configurationId"].endswith("mc-ring1")
    assert not [r for r in f.ring_runs_ if r.get("state") == "coverage-refused"]
    rows = {r["vm"].rsplit("/", 1)[-1]: r for r in f.vm_results_ if r["ring"] == "ring0"}
    assert rows["r0-win-2"]["result"]["installed"] == ["KB5040001", "KB5040002"]


# ---------------------------------------------------------------------- direct starts (issue 13.9 hole)
@pytest.mark.parametrize("inline_plans", [False, True])
def test_a_direct_start_with_a_weakened_plan_touches_nothing_and_fails_with_the_reason(
        run: Any, inline_plans: bool) -> None:
    d, f = run()
    deps.override(settings=Settings(approver_header_fallback=True, inline_plans=inline_plans))
    weak = default_plan(ring1={"approval": {"mode": "none"}},
                        ring0={"members": {"tag": {"name": "patchRing", "value": "ring2"}}})
    spec = {"initiator": "mallory@contoso.com", "dryRun": False, "plan": weak,
            "trigger": {"kind": "manual", "requestedAt": START}}
    with d.clock.hold():
        d.ht.call(d.ht.client().start_new("rollout_orchestrator", "ro-direct-start", spec))
        final = d.until_done("ro-direct-start")
    assert final.runtime_status.value == "Completed"
    assert final.output["state"] == "failed", final.output
    outcome = final.output["outcome"]
    assert "PlanForbidden" in outcome or "refused" in outcome, outcome
    if inline_plans:
        assert "weakens the deployed plan" in outcome and "members" in outcome, outcome
    else:
        assert "inline plans are off" in outcome, outcome
    assert d.doc("ro-direct-start")["outcome"] == outcome
    touched = [name for name, _ in f.calls if name != "load_plan"]
    assert touched == [], touched  # no ARM call, no ledger row, nothing installed


def test_a_direct_start_with_a_restricting_plan_runs_when_inline_plans_are_on(run: Any) -> None:
    d, f = run()
    assert f.called("load_plan") == []
    deps.override(settings=Settings(approver_header_fallback=True, inline_plans=True))
    narrower = default_plan()
    narrower["rings"] = narrower["rings"][:1]  # Ring 0 only: patches less, weakens nothing
    spec = {"initiator": INITIATOR, "dryRun": False, "plan": narrower}
    with d.clock.hold():
        d.ht.call(d.ht.client().start_new("rollout_orchestrator", "ro-narrow", spec))
        final = d.until_done("ro-narrow")
    assert final.output["state"] == "completed", final.output
    assert [r["name"] for r in final.output["rings"]] == ["ring0"]


# ---------------------------------------------------------------------- what the guard compares (issue 13.16)
def test_the_ledger_holds_the_pinned_manifest_and_reboot_setting_of_each_authorised_run(run: Any) -> None:
    from activities.ledger import ledger_read_gate_core
    from orchestrators.guard import install_drift
    from tests.unit.app.fakes import FakeLedger

    d, f = run()
    with d.clock.hold():
        rid = d.start()
        approve(d, rid, "ring1")
        ring1_run = scheduled_run(d, rid, "ring1", "mc-ring1")
        d.until_done(rid)  # ring2 is never approved: the rollout ends halted, its last row written
    manifest = f.rollouts_[rid]["manifest"]
    row = next(r for r in f.ring_runs_ if r.get("runId") == ring1_run and r.get("state") == "authorised")
    assert row["rebootSetting"] == "IfRequired" and row["manifestHash"] == manifest["hash"]
    # the real gate read over these rows hands the guard what install_drift needs
    ledger = FakeLedger()
    # the rollout row as it was while ring1's run was authorised (running, manifest pinned)
    ledger.record_rollout(rid, {**{k: v for k, v in f.rollouts_[rid].items() if k != "status"}, "state": "running"})
    ledger.record_ring_run(rid, "ring1", ring1_run, {k: v for k, v in row.items()
                                                      if k not in ("rolloutId", "ring", "runId")})
    gate = ledger_read_gate_core(ledger, {"correlationId": ring1_run, "ring": "ring1"})
    assert gate["manifest"]["hash"] == gate["manifestHash"] == manifest["hash"]
    configuration = next(iter(f.pinned.values()))
    from patchrings.domain.manifest import Manifest

    assert install_drift(Manifest.from_dict(configuration).configuration_patch({"rebootSetting": "IfRequired"}),
                         gate) == []
    assert install_drift({"rebootSetting": "IfRequired"}, gate)  # include lists gone: drift
