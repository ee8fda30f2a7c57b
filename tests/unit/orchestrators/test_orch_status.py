"""The rollout state document (custom status)."""

from __future__ import annotations

import pytest

from orchestrators.status import MAX_REASONS, RolloutStatus, approve_url, count_verdicts, summarize_manifest

pytestmark = pytest.mark.unit

PLAN = {"name": "default", "version": 1, "hash": "abc",
        "rings": [{"name": "ring0", "patching": "direct"}, {"name": "ring1", "patching": "scheduled"}]}


def new() -> RolloutStatus:
    return RolloutStatus.new(rollout_id="ro-1", plan=PLAN, initiator="dave@contoso.com",
                             started_at="2026-11-16T06:00:00Z", dry_run=False, reason="Nov")


def test_new_document_lists_every_ring_pending() -> None:
    doc = new().doc
    assert [r["name"] for r in doc["rings"]] == ["ring0", "ring1"]
    assert {r["phase"] for r in doc["rings"]} == {"pending"}
    assert doc["plan"] == {"name": "default", "version": 1, "hash": "abc"}
    assert doc["state"] == "running" and doc["waitingFor"] is None and doc["initiator"] == "dave@contoso.com"


def test_waiting_for_an_approval_says_what_until_when_and_where() -> None:
    st = new()
    st.wait_for("approval", until="2026-11-17T07:00:00Z", ring="ring1", manifest_hash="m1",
                approvers=["alice@contoso.com"], approve_url=approve_url("ro-1", "ring1"))
    waiting = st.doc["waitingFor"]
    assert waiting == {"what": "approval", "until": "2026-11-17T07:00:00Z", "ring": "ring1", "manifestHash": "m1",
                       "approvers": ["alice@contoso.com"], "approveUrl": "/api/rollouts/ro-1/rings/ring1/approve"}
    assert st.doc["state"] == "waiting"
    st.stop_waiting()
    assert st.doc["waitingFor"] is None and st.doc["state"] == "running"


def test_gate_reasons_are_trimmed_to_keep_the_document_small() -> None:
    st = new()
    reasons = [{"vm": f"vm{i}", "reason": "failed"} for i in range(MAX_REASONS + 7)]
    st.set_gate("ring0", {"outcome": "fail", "reasons": reasons})
    gate = st.ring("ring0")["gate"]
    assert len(gate["reasons"]) == MAX_REASONS and gate["reasonsOmitted"] == 7
    assert len(reasons) == MAX_REASONS + 7  # the caller's list is untouched


def test_runs_are_updated_by_correlation_id_case_insensitively() -> None:
    st = new()
    st.add_run("ring1", {"correlationId": "/A/run1", "decision": None})
    st.update_run("ring1", "/a/RUN1", decision="authorised")
    st.update_run("ring1", "/a/run2", decision="cancelled")
    assert [(r["correlationId"], r["decision"]) for r in st.ring("ring1")["runs"]] == [
        ("/A/run1", "authorised"), ("/a/run2", "cancelled")]


def test_halt_resume_finish() -> None:
    st = new()
    st.halt("t1", "bob", "incident")
    assert st.doc["state"] == "halted" and st.doc["halted"] == {"at": "t1", "by": "bob", "reason": "incident"}
    st.resume("t2", "bob")
    assert st.doc["state"] == "running" and st.doc["halted"] is None
    assert st.doc["notes"][-1]["text"] == "resumed by bob"
    st.finish("completed", "t3", "passed")
    assert (st.doc["state"], st.doc["outcome"], st.doc["updatedAt"]) == ("completed", "passed", "t3")


def test_notes_are_bounded() -> None:
    st = new()
    for i in range(60):
        st.note(f"t{i}", f"n{i}")
    assert len(st.doc["notes"]) == 50 and st.doc["notes"][0]["text"] == "n10"


def test_manifest_summary_and_verdict_counts() -> None:
    summary = summarize_manifest({"hash": "h", "windows": {"kbNumbers": ["1", "2"]}, "linux": {"packages": []},
                                  "excluded": [{"patch": "x"}]}, limit=1)
    assert summary == {"hash": "h", "windowsCount": 2, "linuxCount": 0, "windowsKbs": ["1"], "linuxPackages": [],
                       "excludedCount": 1}
    counts = count_verdicts([{"install": "ok", "health": "healthy"}, {"install": "failed", "health": "skipped"}])
    assert counts == {"vms": 2, "install:ok": 1, "health:healthy": 1, "install:failed": 1, "health:skipped": 1}


def test_custom_status_stays_far_below_16_kb_at_the_caps() -> None:
    """Issue 14.2: 20 KBs/80 packages made 15.8 KB and the summary caps ~29 KB; now <= 10 KB always."""
    from orchestrators.status import STATUS_BUDGET, bounded, status_size

    rings = [{"name": f"ring{i}", "patching": "scheduled"} for i in range(12)]
    st = RolloutStatus.new(rollout_id="ro-1", plan={**PLAN, "rings": rings}, initiator="d" * 200,
                           started_at="2026-11-16T06:00:00Z", dry_run=False, reason="r" * 2000)
    kbs = [f"50{i:05d}" for i in range(500)]
    packages = [f"package-{i}-with-a-long-name=1.2.3-0ubuntu{i}.20.04.1+esm1" for i in range(500)]
    st.set_manifest({"hash": "h" * 16, "windows": {"kbNumbers": kbs}, "linux": {"packages": packages},
                     "excluded": [{"vm": "x"}] * 100, "cutoff": "2026-11-16T06:00:00Z"})
    vm = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute/" \
         "virtualMachines/"
    for ring in rings:
        name = ring["name"]
        st.set_gate(name, {"outcome": "fail", "reasons": [{"vm": f"{vm}vm-{i}", "reason": "health: " + "x" * 400}
                                                         for i in range(200)]})
        st.set_counts(name, {"vms": 5000, "install:ok": 4000, "install:failed": 1000})
        for run in range(40):
            st.add_run(name, {"correlationId": f"{vm}{name}/providers/Microsoft.Maintenance/applyUpdates/{run}",
                              "decision": "cancelled", "reasons": ["y" * 300] * 5, "cancel": {"message": "z" * 300}})
        st.ring(name)["scheduleIssues"] = [{"vm": f"{vm}vm-{i}", "issue": "q" * 200} for i in range(25)]
        st.ring(name)["target"] = {"runStart": "2026-11-17T12:00:00Z", "reason": "t" * 500}
    for i in range(300):
        st.add_approval({"approver": f"user{i}@contoso.com", "comment": "c" * 1000, "accepted": False,
                         "error": {"code": "DecisionNotSubmitted", "message": "m" * 500}})
        st.note("2026-11-16T06:00:00Z", "n" * 2000)
    st.wait_for("approval", until="2026-11-17T06:00:00Z", ring="ring1", manifest_hash="h" * 16,
                approvers=[f"approver{i}@contoso.com" for i in range(25)], approve_url=approve_url("ro-1", "ring1"),
                request={"approvers": [f"approver{i}@contoso.com" for i in range(25)]}, reason="w" * 3000)
    assert status_size(st.doc) > 16 * 1024  # the raw document is far over the limit
    out = bounded(st.doc)
    assert status_size(out) <= STATUS_BUDGET <= 10 * 1024
    # what an approver and the API need survives: the pending request, its approvers, the hash
    assert out["waitingFor"]["approvers"] == st.doc["waitingFor"]["approvers"]
    assert out["waitingFor"]["request"] == st.doc["waitingFor"]["request"]
    assert out["manifest"]["hash"] == "h" * 16 and out["manifest"]["windowsCount"] == 500
    assert out["state"] == st.doc["state"]
    # and the full document is untouched (it goes to the ledger)
    assert len(st.doc["approvals"]) == 300


def test_bounded_keeps_a_normal_document_whole() -> None:
    from orchestrators.status import bounded

    st = new()
    st.set_manifest({"hash": "h", "windows": {"kbNumbers": ["1", "2"]}, "linux": {"packages": ["a=1"]}})
    st.note("2026-11-16T06:00:00Z", "hello")
    assert bounded(st.doc) == st.doc


def test_realistic_manifest_status_is_small() -> None:
    from orchestrators.status import bounded, status_size

    st = new()
    st.set_manifest({"hash": "h" * 16, "windows": {"kbNumbers": [f"50{i:05d}" for i in range(20)]},
                     "linux": {"packages": [f"pkg{i}=1.0.{i}-0ubuntu1" for i in range(80)]}})
    assert status_size(bounded(st.doc)) < 4 * 1024


def test_the_rollout_changes_the_document_only_through_these_methods() -> None:
    """Issue 10: what the rollout used to write into ``doc`` directly, each a method now."""
    st = new()
    st.touch("2026-11-16T06:05:00Z")
    assert st.doc["updatedAt"] == "2026-11-16T06:05:00Z"
    st.count_event("duplicates")
    st.count_event("refused")
    st.count_event("refused")
    assert st.doc["events"] == {"duplicates": 1, "refused": 2}  # (the never-counted "ignored" is gone: issue 10)
    target = {"runStart": "2026-11-17T12:00:00Z", "runEnd": "2026-11-17T15:55:00Z"}
    st.set_target("ring1", target)
    st.set_opened("ring1", True)
    st.set_members("ring1", 12, [{"vm": "web-1", "issue": "patchMode"}])
    ring1 = st.ring("ring1")
    assert ring1["target"] == target and ring1["opened"] is True
    assert ring1["members"] == 12 and ring1["scheduleIssues"] == [{"vm": "web-1", "issue": "patchMode"}]
    st.set_phase("ring1", "promoted", "2026-11-16T06:06:00Z")
    assert st.current_ring == "ring1" and st.state == "running" and st.outcome is None
    st.halt("2026-11-16T06:07:00Z", "bob@contoso.com", "incident")
    st.wait_for_resume("2026-11-30T06:07:00Z", "ring1")
    assert st.state == "halted" and st.doc["waitingFor"]["what"] == "resume"
    assert st.doc["waitingFor"]["until"] == "2026-11-30T06:07:00Z" and st.doc["waitingFor"]["ring"] == "ring1"
    st.finish("halted", "2026-11-30T06:07:00Z", "incident")
    assert st.outcome == "incident"
