"""The Table-storage ledger against Azurite: natural keys, idempotent upserts, append-only logs."""

from __future__ import annotations

import pytest

from patchrings.ledger import Ledger, decode_entity, encode_fields, escape_key

pytestmark = pytest.mark.functional

SUB = "/subscriptions/11111111-2222-3333-4444-555555555555"
VM = f"{SUB}/resourceGroups/RG-Web/providers/Microsoft.Compute/virtualMachines/Web-01"
MC = f"{SUB}/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/ring1"


def test_escape_key_removes_forbidden_characters() -> None:
    escaped = escape_key("a/b\\c#d?e%f|g\x01")
    for bad in "/\\#?|\x01":
        assert bad not in escaped
    assert escaped == "a%2Fb%5Cc%23d%3Fe%25f%7Cg%01"


def test_encode_round_trip_with_large_json() -> None:
    fields = {"n": 3, "big": 2**40, "ok": True, "s": "x", "nested": {"patches": ["p" * 100] * 2000}}
    encoded = encode_fields(fields)
    assert "nested__j0" in encoded and encoded["nested__jn"] > 1
    assert all(len(v) <= 30_000 for k, v in encoded.items() if "__j" in k and isinstance(v, str))
    assert decode_entity(encoded) == fields
    with pytest.raises(ValueError):
        encode_fields({"bad-name": 1})


def test_rollout_upsert_is_idempotent_and_merges(ledger: Ledger) -> None:
    assert ledger.rollout("r1") is None
    ledger.record_rollout("r1", {"state": "running", "plan": {"hash": "abc"}})
    ledger.record_rollout("r1", {"state": "running", "plan": {"hash": "abc"}})
    ledger.record_rollout("r1", {"state": "halted", "haltedBy": "ops"})
    row = ledger.rollout("r1")
    assert row == {"rolloutId": "r1", "state": "halted", "plan": {"hash": "abc"}, "haltedBy": "ops"}
    assert [r["rolloutId"] for r in ledger.rollouts()] == ["r1"]


def test_ring_runs_and_vm_results(ledger: Ledger) -> None:
    ledger.record_ring_run("r1", 0, "run/0#1", {"gate": {"decision": "pass"}})
    ledger.record_ring_run("r1", 0, "run/0#1", {"gate": {"decision": "pass"}})
    ledger.record_ring_run("r1", 1, "run-1", {"state": "waiting"})
    runs = ledger.ring_runs("r1")
    assert sorted((r["ring"], r["runId"]) for r in runs) == [("0", "run/0#1"), ("1", "run-1")]
    assert ledger.ring_run("r1", 0, "run/0#1")["gate"] == {"decision": "pass"}

    results = [{"vm": f"{VM}{i}", "status": "Succeeded", "installedPatchCount": i} for i in range(150)]
    assert ledger.record_vm_results("r1", 0, "run/0#1", results) == 150
    # same write again (an activity retry) -> same rows; a VM id in other casing is the same VM
    ledger.record_vm_results("r1", 0, "run/0#1", results)
    ledger.record_vm_results("r1", 0, "run/0#1", [{"vm": f"{VM}7".upper(), "status": "Failed"}])
    rows = ledger.vm_results("r1", 0)
    assert len(rows) == 150
    seven = next(r for r in rows if r["vm"].lower() == f"{VM}7".lower())
    assert seven["status"] == "Failed" and seven["installedPatchCount"] == 7
    assert ledger.vm_results("r1", 1) == []


def test_approvals_and_events_are_append_only(ledger: Ledger) -> None:
    decision = {
        "ring": "1", "manifestHash": "h1", "decision": "approve", "approver": "alice",
        "at": "2026-11-16T08:00:00Z",
    }
    assert ledger.record_approval("r1", "d-2", decision) is True
    assert ledger.record_approval("r1", "d-2", {**decision, "decision": "reject"}) is False
    assert ledger.record_approval("r1", "d-1", {**decision, "at": "2026-11-16T07:00:00Z"}) is True
    approvals = ledger.approvals("r1")
    # in the order recorded (storage timestamps), whatever their ``at`` says: the HTTP API's rows
    # carry no time of their own (it cannot read the platform's clock, issue 9)
    assert [a["decisionId"] for a in approvals] == ["d-2", "d-1"]
    assert approvals[0]["decision"] == "approve"

    run = f"{MC}/providers/microsoft.maintenance/applyupdates/20261116090000"
    pre = "Microsoft.Maintenance.PreMaintenanceEvent"
    post = "Microsoft.Maintenance.PostMaintenanceEvent"
    assert ledger.record_event(MC, pre, run, {"receivedAt": "2026-11-16T08:25:00Z", "data": {"a": 1}})
    assert not ledger.record_event(MC.upper(), pre, run, {"receivedAt": "2026-11-16T08:26:00Z"})
    assert ledger.record_event(MC, post, run, {"receivedAt": "2026-11-16T09:30:00Z"})
    assert ledger.event(MC.upper(), pre, run.upper())["receivedAt"] == "2026-11-16T08:25:00Z"
    assert ledger.event(MC, "Microsoft.Maintenance.Other", run) is None
    events = ledger.events(MC.lower())
    assert [e["eventType"] for e in events] == [pre, post]
    assert events[0]["data"] == {"a": 1}


def test_install_records_are_create_only(ledger: Ledger) -> None:
    assert ledger.install("run-0", VM) is None
    assert ledger.record_install("run-0", VM, {"token": "t1", "state": "started"}) is True
    assert ledger.record_install("run-0", VM.lower(), {"token": "t2"}) is False
    ledger.update_install("run-0", VM, {"state": "done"})
    row = ledger.install("run-0", VM.upper())
    assert row is not None and row["token"] == "t1" and row["state"] == "done"


def test_guard_gate_and_activity_writes_on_azurite(ledger: Ledger) -> None:
    from activities.ledger import (
        ledger_read_gate_core,
        ledger_record_event_core,
        ledger_record_ring_run_core,
        ledger_record_rollout_core,
    )

    run = f"{MC}/providers/microsoft.maintenance/applyupdates/20261117020000"
    assert ledger_read_gate_core(ledger, {"correlationId": run, "ring": "ring1"})["authorised"] is False
    ledger_record_rollout_core(ledger, {"rolloutId": "r9", "state": "running", "status": {"rings": []}})
    ledger_record_ring_run_core(ledger, {"rolloutId": "r9", "ring": "ring1", "runId": run, "state": "authorised",
                                         "authorised": True, "configurationId": MC, "at": "2026-11-17T01:25:00Z"})
    gate = ledger_read_gate_core(ledger, {"correlationId": run.upper(), "ring": "ring1"})
    assert gate["authorised"] is True and gate["rolloutId"] == "r9"
    # revocation is a MERGE on the same natural keys: the gate closes
    ledger_record_ring_run_core(ledger, {"rolloutId": "r9", "ring": "ring1", "runId": run, "state": "revoked",
                                         "authorised": False})
    assert ledger_read_gate_core(ledger, {"correlationId": run})["authorised"] is False
    assert len(ledger.ring_runs("r9")) == 1
    # a run without any authorised flag never opens the gate
    ledger_record_ring_run_core(ledger, {"rolloutId": "r9", "ring": "ring2", "runId": "r9:ring2", "state": "x"})
    assert ledger.run_gates("r9:ring2") == []

    event = {"configurationId": MC, "eventType": "pre", "eventId": run, "receivedAt": "2026-11-17T01:25:00Z"}
    assert ledger_record_event_core(ledger, event) == {"written": True}
    assert ledger_record_event_core(ledger, dict(event)) == {"written": False}


def test_a_field_may_change_between_json_and_scalar(ledger: Ledger) -> None:
    ledger.record_rollout("r5", {"outcome": {"detail": [1, 2]}})
    assert ledger.rollout("r5")["outcome"] == {"detail": [1, 2]}
    ledger.record_rollout("r5", {"outcome": "passed"})
    assert ledger.rollout("r5")["outcome"] == "passed"
    ledger.record_rollout("r5", {"outcome": ["again"]})
    assert ledger.rollout("r5")["outcome"] == ["again"]


def test_check_decision_accepts_only_what_the_api_recorded_and_logs_refusals(ledger: Ledger) -> None:
    from activities.ledger import ledger_check_decision_core

    submitted = {"decisionId": "d1", "approver": "Bob@Contoso.com", "ring": "ring1", "manifestHash": "h1",
                 "verdict": "approve", "comment": "", "outcome": "submitted", "at": "2026-11-16T07:00:00Z"}
    ledger.record_approval("r9", "d1", submitted)
    ledger.record_approval("r9", "res1", {"decisionId": "res1", "verdict": "resume", "by": "bob@contoso.com",
                                          "ring": "ring1", "outcome": "submitted", "at": "2026-11-16T08:00:00Z"})
    event = {"decisionId": "d1", "approver": "bob@contoso.com", "ring": "ring1", "manifestHash": "h1",
             "verdict": "approve"}
    ok = ledger_check_decision_core(ledger, {"rolloutId": "r9", "kind": "approval", "event": event, "at": "t1"})
    assert ok == {"accepted": True, "reason": "", "decisionId": "d1"}
    forged = {**event, "decisionId": "nope"}
    tampered = {**event, "manifestHash": "h2"}
    payloads = [{"rolloutId": "r9", "kind": "approval", "event": forged, "at": "t2"},
                {"rolloutId": "r9", "kind": "approval", "event": tampered, "at": "t3"}]
    answers = [ledger_check_decision_core(ledger, p) for p in payloads + payloads]  # retried activities
    assert [a["accepted"] for a in answers] == [False] * 4
    assert "manifestHash" in answers[1]["reason"]
    resume = {"rolloutId": "r9", "kind": "resume", "event": {"resumeId": "res1", "by": "bob@contoso.com"}}
    assert ledger_check_decision_core(ledger, resume)["accepted"] is True
    as_eve = {"rolloutId": "r9", "kind": "resume", "event": {"resumeId": "res1", "by": "eve@contoso.com"}}
    assert ledger_check_decision_core(ledger, as_eve)["accepted"] is False
    refused = [r for r in ledger.approvals("r9") if r.get("outcome") == "refused"]
    assert len(refused) == 3  # one row per distinct refused event, however often it was retried
    assert {r["kind"] for r in refused} == {"approval", "resume"}
    assert all(r["reason"] and r["decisionId"].startswith("refused-") for r in refused)


def test_an_authorised_gate_carries_the_pinned_manifest_and_reboot_setting(ledger: Ledger) -> None:
    """Issue 13.16: the guard compares the configuration's install parameters with what was pinned."""
    from activities.ledger import ledger_read_gate_core, ledger_record_ring_run_core, ledger_record_rollout_core
    from orchestrators.guard import install_drift
    from patchrings.domain.manifest import Manifest

    manifest = Manifest(windows_kbs=("5040001", "5040002"), linux_packages=("openssl=3.0.2-1ubuntu1.20",),
                        coverage=("Linux", "Windows")).to_dict()
    run = f"{MC}/providers/microsoft.maintenance/applyupdates/20261118020000"
    ledger_record_rollout_core(ledger, {"rolloutId": "r7", "state": "running", "manifestHash": manifest["hash"],
                                        "manifest": manifest})
    ledger_record_ring_run_core(ledger, {"rolloutId": "r7", "ring": "ring1", "runId": run, "state": "authorised",
                                         "authorised": True, "manifestHash": manifest["hash"],
                                         "rebootSetting": "IfRequired", "at": "2026-11-18T01:25:00Z"})
    gate = ledger_read_gate_core(ledger, {"correlationId": run, "ring": "ring1"})
    assert gate["authorised"] is True
    assert gate["manifestHash"] == manifest["hash"] and gate["manifest"] == manifest
    assert gate["rebootSetting"] == "IfRequired"

    pinned = Manifest.from_dict(manifest).configuration_patch({"rebootSetting": "IfRequired"})
    assert install_drift(pinned, gate) == []
    other_kbs = {**pinned, "windowsParameters": {**pinned["windowsParameters"], "kbNumbersToInclude": ["5049999"]}}
    assert any("not the pinned manifest" in r for r in install_drift(other_kbs, gate))
    assert any("rebootSetting" in r for r in install_drift({**pinned, "rebootSetting": "Always"}, gate))
    redeployed = {"rebootSetting": "IfRequired",
                  "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]}}
    assert len(install_drift(redeployed, gate)) >= 2  # classifications and not the pinned include lists

    # a rollout whose manifest is another one: the gate names the run's hash but carries no manifest
    ledger_record_rollout_core(ledger, {"rolloutId": "r7", "manifest": {**manifest, "hash": "0000000000000000"}})
    gate = ledger_read_gate_core(ledger, {"correlationId": run})
    assert gate["authorised"] is True and gate["manifestHash"] == manifest["hash"] and "manifest" not in gate


def test_quarantine_record_read_and_release(ledger: Ledger) -> None:
    """A failed gate's quarantine (issue 11): blamed from the ring's VM rows, created once (a retry
    neither duplicates nor undoes a release), per plan, released by a person with who and when."""
    from activities.ledger import ledger_read_quarantine_core, ledger_record_quarantine_core

    run = "rq:ring0"
    ledger.record_vm_results("rq", "ring0", run, [
        {"vm": f"{VM}a", "name": "web-01a", "result": {"installed": ["KB5048685"], "failed": ["KB5048667"]},
         "verdict": {"outcome": "fail"}},
        {"vm": f"{VM}b", "name": "web-01b", "result": {"installed": ["KB5048667", "KB5048685"]},
         "verdict": {"outcome": "pass"}},
    ])
    ledger.record_vm_results("rq", "ring0", "other-run", [
        {"vm": f"{VM}c", "result": {"failed": ["KB1111111"]}, "verdict": {"outcome": "fail"}}])
    payload = {"rolloutId": "rq", "ring": "ring0", "runId": run, "planName": "Plan-Q", "planHash": "h1",
               "reason": "ring ring0 failed its gate", "at": "2026-11-16T07:00:00Z"}
    first = ledger_record_quarantine_core(ledger, payload)
    assert first["written"] is True
    assert first["entry"]["kbs"] == ["5048667"] and first["entry"]["source"] == "failed-patches"
    assert first["entry"]["failedVms"] == ["web-01a"]
    assert ledger_record_quarantine_core(ledger, payload)["written"] is False  # an activity retry

    # plan names compare case-insensitively; another plan has its own quarantine
    read = ledger_read_quarantine_core(ledger, {"planName": "plan-q"})
    assert [e["id"] for e in read["entries"]] == ["rq:ring0"]
    assert read["exclusions"] == {"kbNumbersToExclude": ["5048667"], "packageNameMasksToExclude": []}
    assert ledger_read_quarantine_core(ledger, {"planName": "other"})["entries"] == []

    released = ledger_read_quarantine_core(ledger, {"planName": "Plan-Q", "release": ["rq:ring0", "nope"],
                                                    "by": "dave@contoso.com", "at": "2026-11-17T08:00:00Z"})
    assert released["released"] == ["rq:ring0"] and released["unknown"] == ["nope"]
    assert released["entries"] == [] and released["exclusions"]["kbNumbersToExclude"] == []
    row = ledger.quarantine("Plan-Q", "rq:ring0") or {}
    assert row["releasedBy"] == "dave@contoso.com" and row["releasedAt"] == "2026-11-17T08:00:00Z"
    # a retried record after the release keeps it released
    assert ledger_record_quarantine_core(ledger, payload)["entry"]["released"] is True
    # a failure before anything was installed blames nothing: no entry
    nothing = ledger_record_quarantine_core(ledger, {**payload, "rolloutId": "rq2"})
    assert nothing["entry"] is None and ledger.quarantine("Plan-Q", "rq2:ring0") is None


def test_staged_results_split_into_parts_read_back_whole_and_only_once_indexed(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice's staged Resource Graph entries (issue 11): parts under the row budget, the index
    row last; a slice without its index row (or missing a part) is not staged."""
    from patchrings import ledger as ledger_mod

    run_id = "ro:ring1:run:members@2026-11-16T06:00:00Z"
    patches = [{"name": f"pkg-{i}", "version": "1.0." + str(i), "installationState": "Installed"} for i in range(40)]
    entries = [{"vm": f"{VM}-{n}", "state": "done", "result": {"status": "Succeeded", "patches": patches}}
               for n in range(200)]
    monkeypatch.setattr(ledger_mod, "_STAGE_PART", 100_000)  # ~600 KB of entries: several parts
    assert ledger.staged_results(run_id, "h1", 0, 0) is None
    parts = ledger.record_staged_results(run_id, "h1", 0, 0, entries)
    assert parts >= 5
    assert ledger.staged_results(run_id, "h1", 0, 0) == entries
    ledger.record_staged_results(run_id, "h1", 0, 1, entries[:3])
    assert ledger.staged_slices(run_id, "h1") == {(0, 0): 0, (0, 1): 0}  # slice -> entries without a row
    assert ledger.staged_slices(run_id, "h2") == {}
    ledger.record_staged_results(run_id, "h1", 0, 1, [*entries[:2], {"vm": f"{VM}-x", "state": "missing"}])
    assert ledger.staged_slices(run_id, "h1")[(0, 1)] == 1
    # a part gone (a write that died half-way is re-run, never read as a short slice)
    ledger.table("Waves").delete_entity(ledger_mod.bound_key(escape_key(run_id.lower())),
                                        ledger_mod.staged_key("h1", 0, 0) + "|p003")
    assert ledger.staged_results(run_id, "h1", 0, 0) is None
    assert ledger.staging(run_id, "h1") is None
    ledger.record_staging(run_id, "h1", {"complete": True, "queries": 3})
    assert ledger.staging(run_id, "h1") == {"complete": True, "queries": 3}


def test_vm_results_marked_patches_staged_take_their_patch_lists_from_the_staged_rows(ledger: Ledger) -> None:
    """A verify chunk's ledger write leaves staged patch lists out of its history (issue 11); the
    activity writes each row with the patch list from the staged slice, and refuses a row whose
    staged list it cannot find (the caller retries, then states the write failed)."""
    from activities.ledger import ledger_record_vm_results_core

    run_id = "ro:ring1:run:members@2026-11-16T06:00:00Z"
    patches = [{"kbId": "5048667", "installationState": "Installed"}]
    ledger.record_staged_results(run_id, "h1", 0, 0, [
        {"vm": VM, "state": "done", "result": {"status": "Succeeded", "patches": patches}}])
    staged = {"runId": run_id, "planHash": "h1", "wave": 0, "slice": 0}
    row = {"vm": VM, "state": "done", "result": {"status": "Succeeded", "patchesStaged": True}}
    verdict = {"vm": VM, "outcome": "pass", "reasons": []}
    assert ledger_record_vm_results_core(ledger, {"rolloutId": "ro-s", "ring": "ring1", "runId": "run-1",
                                                  "results": [row], "verdicts": [verdict], "staged": staged})["written"]
    [written] = ledger.vm_results("ro-s", "ring1")
    assert written["result"] == {"status": "Succeeded", "patches": patches}
    assert written["verdict"]["outcome"] == "pass"
    with pytest.raises(LookupError):
        ledger_record_vm_results_core(ledger, {"rolloutId": "ro-s", "ring": "ring1", "runId": "run-1",
                                               "results": [row], "staged": {**staged, "slice": 1}})
