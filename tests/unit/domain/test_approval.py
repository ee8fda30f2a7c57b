"""Approvals: bound to (rollout, ring, manifest), approver lists, initiator rule, identity headers."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from patchrings.domain.approval import (
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    check_decision,
    principal_from_headers,
    timeout_decision,
)
from patchrings.errors import ApprovalConflict, ApprovalForbidden, RequestInvalid

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
POLICY = ApprovalPolicy.from_dict({"mode": "manual", "approvers": ["Alice@Contoso.com", "bob@contoso.com"],
                                   "timeout": "PT4H"})
PENDING = ApprovalRequest.create("rollout-1", "ring1", "abc123", POLICY, NOW)


def decision(**kw):
    base = {"approver": "alice@contoso.com", "ring": "ring1", "manifestHash": "abc123", "verdict": "approve",
            "comment": "looks good"}
    base.update(kw)
    return base


def test_listed_approver_may_approve_case_insensitively():
    d = check_decision(POLICY, PENDING, decision(approver="ALICE@contoso.COM"), initiator="carol@contoso.com")
    assert d.approved and d.comment == "looks good"


def test_non_approver_is_forbidden():
    with pytest.raises(ApprovalForbidden) as exc:
        check_decision(POLICY, PENDING, decision(approver="mallory@contoso.com"), initiator=None)
    assert exc.value.http_status == 403 and exc.value.code == "ApprovalForbidden"


def test_initiator_may_not_approve_but_may_reject():
    with pytest.raises(ApprovalForbidden, match="started this rollout"):
        check_decision(POLICY, PENDING, decision(), initiator="Alice@Contoso.com")
    d = check_decision(POLICY, PENDING, decision(verdict="reject"), initiator="alice@contoso.com")
    assert not d.approved


@pytest.mark.parametrize(
    ("pending", "kw", "field"),
    [
        (PENDING, {"ring": "ring2"}, "ring"),
        (PENDING, {"manifestHash": "def456"}, "manifestHash"),
        (None, {}, "ring"),
    ],
)
def test_conflicts(pending, kw, field):
    with pytest.raises(ApprovalConflict) as exc:
        check_decision(POLICY, pending, decision(**kw), initiator=None)
    assert exc.value.http_status == 409 and exc.value.field == field


def test_wrong_ring_is_a_conflict_even_from_that_rings_approver():
    # carol approves ring2 in another policy, but ring1 is what is pending: 409, not 403
    with pytest.raises(ApprovalConflict) as exc:
        check_decision(POLICY, PENDING, decision(approver="carol@contoso.com", ring="ring2"), initiator=None)
    assert exc.value.field == "ring"


def test_non_approver_with_wrong_manifest_learns_nothing():
    with pytest.raises(ApprovalForbidden):
        check_decision(POLICY, PENDING, decision(approver="eve@contoso.com", manifestHash="zzz"), initiator=None)


def test_ring_without_manual_approval_conflicts():
    with pytest.raises(ApprovalConflict):
        check_decision(ApprovalPolicy(), PENDING, decision(), initiator=None)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"ring": "ring1", "manifestHash": "x", "verdict": "approve"}, "approver"),
     (decision(verdict="maybe"), "verdict"), (decision(comment=3), "comment"), (decision(ring=""), "ring")],
)
def test_malformed_decisions_are_request_invalid(body, field):
    with pytest.raises(RequestInvalid) as exc:
        ApprovalDecision.from_dict(body)
    assert exc.value.field == field


def test_request_and_decision_round_trip_and_timeout():
    assert PENDING.deadline == NOW + timedelta(hours=4)
    assert ApprovalRequest.from_dict(PENDING.to_dict()) == PENDING
    d = ApprovalDecision.from_dict(decision(decidedAt="2026-11-16T07:00:00Z"))
    assert ApprovalDecision.from_dict(d.to_dict()) == d
    t = timeout_decision(PENDING)
    assert t.verdict == "reject" and t.decided_at == PENDING.deadline and t.approver == "system:timeout"
    lenient = ApprovalRequest.create("r", "ring1", "h", ApprovalPolicy.from_dict(
        {"mode": "manual", "approvers": ["a"], "onTimeout": "approve"}), NOW)
    assert timeout_decision(lenient).approved
    assert ApprovalPolicy.from_dict(POLICY.to_dict()) == POLICY


def encode(doc):
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_principal_from_easy_auth_claims():
    principal = {"auth_typ": "aad", "claims": [
        {"typ": "name", "val": "Alice Example"},
        {"typ": "preferred_username", "val": "alice@contoso.com"}]}
    p = principal_from_headers({"x-ms-client-principal": encode(principal),
                                "X-MS-CLIENT-PRINCIPAL-ID": "oid-1"}, allow_fallback=False)
    assert (p.name, p.source, p.user_id, p.identity_provider) == (
        "alice@contoso.com", "x-ms-client-principal", "oid-1", "aad")


def test_principal_prefers_upn_over_name_and_falls_back_to_principal_name():
    upn = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
    p = principal_from_headers({"X-MS-CLIENT-PRINCIPAL": encode({"claims": [
        {"typ": "name", "val": "Bob"}, {"typ": upn, "val": "bob@contoso.com"}]})}, allow_fallback=False)
    assert p.name == "bob@contoso.com"
    p2 = principal_from_headers({"X-MS-CLIENT-PRINCIPAL-NAME": "carol@contoso.com"}, allow_fallback=False)
    assert (p2.name, p2.source) == ("carol@contoso.com", "x-ms-client-principal-name")


def test_fallback_header_only_when_allowed():
    headers = {"X-PatchRings-Approver": "dave@contoso.com"}
    assert principal_from_headers(headers, allow_fallback=True).source == "fallback-header"
    with pytest.raises(ApprovalForbidden, match="X-MS-CLIENT-PRINCIPAL"):
        principal_from_headers(headers, allow_fallback=False)
    # a real principal always wins over the fallback header
    both = {**headers, "X-MS-CLIENT-PRINCIPAL-NAME": "erin@contoso.com"}
    assert principal_from_headers(both, allow_fallback=True).name == "erin@contoso.com"


def test_garbled_principal_is_request_invalid():
    with pytest.raises(RequestInvalid):
        principal_from_headers({"X-MS-CLIENT-PRINCIPAL": "!!!notbase64"}, allow_fallback=True)


# ---------------------------------------------------------------------- recorded decisions (13.13, 13.11)
def test_match_recorded_approval_and_resume() -> None:
    from patchrings.domain.approval import match_recorded

    rows = [
        {"decisionId": "d1", "approver": "Alice@Contoso.com", "ring": "ring1", "manifestHash": "abc",
         "verdict": "approve", "outcome": "submitted"},
        {"decisionId": "d2", "approver": "bob@contoso.com", "ring": "ring1", "manifestHash": "abc",
         "verdict": "approve", "outcome": "refused"},
        {"decisionId": "r1", "verdict": "resume", "by": "bob@contoso.com", "ring": "ring1", "outcome": "submitted"},
    ]
    event = {"decisionId": "d1", "approver": "alice@contoso.com", "ring": "ring1", "manifestHash": "abc",
             "verdict": "approve"}
    assert match_recorded("approval", event, rows)[0] is rows[0]
    for change, word in (({"decisionId": None}, "no decision id"), ({"decisionId": "zz"}, "was submitted"),
                         ({"decisionId": "d2", "approver": "bob@contoso.com"}, "was submitted"),
                         ({"approver": "bob@contoso.com"}, "approver"), ({"ring": "ring2"}, "ring"),
                         ({"manifestHash": "def"}, "manifestHash"), ({"verdict": "reject"}, "verdict")):
        row, reason = match_recorded("approval", {**event, **change}, rows)
        assert row is None and word in reason, (change, reason)
    assert match_recorded("resume", {"resumeId": "r1", "by": "BOB@contoso.com"}, rows)[0] is rows[2]
    assert match_recorded("resume", {"decisionId": "r1", "by": "bob@contoso.com", "ring": "ring1"}, rows)[0]
    assert match_recorded("resume", {"resumeId": "r1", "by": "eve@contoso.com"}, rows)[0] is None
    assert match_recorded("resume", {"resumeId": "r1", "by": "bob@contoso.com", "ring": "ring2"}, rows)[0] is None
    assert match_recorded("resume", {"resumeId": "d1", "by": "alice@contoso.com"}, rows)[0] is None
    assert match_recorded("resume", {"by": "bob@contoso.com"}, rows)[0] is None
    with_entry = [*rows, {"decisionId": "r2", "verdict": "resume", "by": "Bob", "approver": "oid-1",
                          "outcome": "submitted"}]
    assert match_recorded("resume", {"resumeId": "r2", "by": "Bob", "approver": "oid-1"}, with_entry)[0]
    assert match_recorded("resume", {"resumeId": "r2", "by": "Bob", "approver": "oid-2"}, with_entry)[0] is None


def test_match_recorded_binds_a_quarantine_release_to_what_the_api_recorded() -> None:
    from patchrings.domain.approval import match_recorded

    row = {"decisionId": "q1", "approver": "alice@contoso.com", "ring": "ring0", "manifestHash": "q-abc",
           "verdict": "approve", "outcome": "submitted", "releaseQuarantine": '["ro-1:ring0", "ro-2:ring0"]'}
    plain = {**row, "decisionId": "q2", "releaseQuarantine": None}
    event = {k: row[k] for k in ("decisionId", "approver", "ring", "manifestHash", "verdict")}
    # the same entries (stored as JSON text, any order) match
    assert match_recorded("approval", {**event, "releaseQuarantine": ["ro-2:ring0", "ro-1:ring0"]}, [row])[0]
    # an event that drops, narrows or adds a release is refused
    for release in (None, ["ro-1:ring0"], ["ro-1:ring0", "ro-2:ring0", "ro-3:ring0"]):
        found, reason = match_recorded("approval", {**event, "releaseQuarantine": release}, [row])
        assert found is None and "releaseQuarantine" in reason, release
    found, reason = match_recorded("approval", {**event, "decisionId": "q2", "releaseQuarantine": ["ro-1:ring0"]},
                                   [plain])
    assert found is None and "releaseQuarantine" in reason
    assert match_recorded("approval", {**event, "decisionId": "q2"}, [plain])[0] is plain
