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
