"""Manual approval: who may decide, what a decision is bound to, and who the caller is.

An approval is bound to ``(rolloutId, ring, manifestHash)`` (Flagger's checksum idea, made
strict): a person approves *this* patch set for *this* ring of *this* rollout, so a decision made
while looking at an older manifest can never promote a newer one. Rules enforced here:

* only the ring's listed approvers may decide (emails/UPNs compared case-insensitively);
* the rollout's initiator may not approve their own rollout (they may still reject it — stopping
  a rollout is always allowed for an approver);
* a decision for another ring or manifest, or when nothing is pending, is a conflict (409).

Identity comes from App Service authentication (``X-MS-CLIENT-PRINCIPAL``, base64 JSON with
claims, and ``X-MS-CLIENT-PRINCIPAL-NAME``). The ``X-PatchRings-Approver`` header is honoured only
when the ``PATCHRINGS_APPROVER_HEADER_FALLBACK`` setting allows it (local use, never in Azure).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from patchrings.domain.timeutil import format_duration, format_instant, parse_duration, parse_instant
from patchrings.errors import ApprovalConflict, ApprovalForbidden, RequestInvalid

ApprovalMode = Literal["none", "manual"]
OnTimeout = Literal["reject", "approve"]
Verdict = Literal["approve", "reject"]


@dataclass(frozen=True)
class ApprovalPolicy:
    """A ring's ``approval`` block."""

    mode: ApprovalMode = "none"
    approvers: tuple[str, ...] = ()
    timeout: timedelta = timedelta(days=1)
    on_timeout: OnTimeout = "reject"

    @property
    def required(self) -> bool:
        return self.mode == "manual"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ApprovalPolicy:
        mode = doc.get("mode", "none")
        if mode == "none":
            return cls()
        return cls(
            mode="manual",
            approvers=tuple(str(a) for a in doc.get("approvers", ())),
            timeout=parse_duration(doc.get("timeout", "P1D")),
            on_timeout=doc.get("onTimeout", "reject"),
        )

    def to_dict(self) -> dict[str, Any]:
        if self.mode == "none":
            return {"mode": "none"}
        return {
            "mode": "manual",
            "approvers": list(self.approvers),
            "timeout": format_duration(self.timeout),
            "onTimeout": self.on_timeout,
        }

    def is_approver(self, who: str) -> bool:
        key = who.strip().lower()
        return any(a.strip().lower() == key for a in self.approvers)


@dataclass(frozen=True)
class ApprovalRequest:
    """What is pending: an approval for one ring of one rollout, for one manifest."""

    rollout_id: str
    ring: str
    manifest_hash: str
    requested_at: datetime
    deadline: datetime
    approvers: tuple[str, ...] = ()
    on_timeout: OnTimeout = "reject"

    @classmethod
    def create(
        cls, rollout_id: str, ring: str, manifest_hash: str, policy: ApprovalPolicy, now: datetime
    ) -> ApprovalRequest:
        now = parse_instant(now)
        return cls(rollout_id, ring, manifest_hash, now, now + policy.timeout, policy.approvers, policy.on_timeout)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rolloutId": self.rollout_id,
            "ring": self.ring,
            "manifestHash": self.manifest_hash,
            "requestedAt": format_instant(self.requested_at),
            "deadline": format_instant(self.deadline),
            "approvers": list(self.approvers),
            "onTimeout": self.on_timeout,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ApprovalRequest:
        return cls(
            rollout_id=str(doc["rolloutId"]),
            ring=str(doc["ring"]),
            manifest_hash=str(doc["manifestHash"]),
            requested_at=parse_instant(doc["requestedAt"]),
            deadline=parse_instant(doc["deadline"]),
            approvers=tuple(doc.get("approvers", ())),
            on_timeout=doc.get("onTimeout", "reject"),
        )


@dataclass(frozen=True)
class ApprovalDecision:
    """One person's decision, as raised to the orchestration and written to the ledger."""

    approver: str
    ring: str
    manifest_hash: str
    verdict: Verdict
    comment: str = ""
    decided_at: datetime | None = None
    source: str | None = None

    @property
    def approved(self) -> bool:
        return self.verdict == "approve"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ApprovalDecision:
        """Validate a decision body; raises :class:`RequestInvalid` naming the bad field."""
        if not isinstance(doc, Mapping):
            raise RequestInvalid("decision must be a JSON object")
        for key in ("approver", "ring", "manifestHash"):
            if not isinstance(doc.get(key), str) or not doc[key].strip():
                raise RequestInvalid(f"{key} is required and must be a non-empty string", field=key)
        verdict = doc.get("verdict")
        if verdict not in ("approve", "reject"):
            raise RequestInvalid("verdict must be one of: approve, reject", field="verdict")
        comment = doc.get("comment", "")
        if comment is None:
            comment = ""
        if not isinstance(comment, str):
            raise RequestInvalid("comment must be a string", field="comment")
        decided = doc.get("decidedAt")
        return cls(
            approver=doc["approver"].strip(),
            ring=doc["ring"].strip(),
            manifest_hash=doc["manifestHash"].strip(),
            verdict=verdict,
            comment=comment,
            decided_at=parse_instant(decided) if decided else None,
            source=doc.get("source"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "approver": self.approver,
            "ring": self.ring,
            "manifestHash": self.manifest_hash,
            "verdict": self.verdict,
            "comment": self.comment,
        }
        if self.decided_at is not None:
            out["decidedAt"] = format_instant(self.decided_at)
        if self.source is not None:
            out["source"] = self.source
        return out


def check_decision(
    policy: ApprovalPolicy,
    pending: ApprovalRequest | None,
    decision: ApprovalDecision | Mapping[str, Any],
    initiator: str | None,
) -> ApprovalDecision:
    """Accept a decision or raise why not.

    Order matters and is part of the contract:

    1. a decision for a ring other than the pending one is a conflict (409) whoever sends it —
       "a decision for another ring gets 409" — since approvers differ per ring;
    2. then identity: only the ring's listed approvers (403), so a non-approver learns nothing
       about the pending manifest;
    3. then nothing pending / wrong manifest (409);
    4. last, the initiator may not approve their own rollout (403; rejecting is allowed).
    """
    if not isinstance(decision, ApprovalDecision):
        decision = ApprovalDecision.from_dict(decision)
    who = decision.approver
    if policy.mode != "manual":
        raise ApprovalConflict(f"ring {decision.ring!r} does not take manual approval", field="ring")
    if pending is not None and decision.ring.lower() != pending.ring.lower():
        raise ApprovalConflict(
            f"the pending approval is for ring {pending.ring!r}, not {decision.ring!r}",
            field="ring",
            details={"pendingRing": pending.ring},
        )
    if not policy.is_approver(who):
        raise ApprovalForbidden(
            f"{who} is not an approver for ring {decision.ring!r}",
            field="approver",
            details={"approvers": list(policy.approvers)},
        )
    if pending is None:
        raise ApprovalConflict(f"no approval is pending for ring {decision.ring!r}", field="ring")
    if decision.manifest_hash.lower() != pending.manifest_hash.lower():
        raise ApprovalConflict(
            f"the pending approval is for manifest {pending.manifest_hash}, not {decision.manifest_hash}",
            field="manifestHash",
            details={"pendingManifestHash": pending.manifest_hash},
        )
    if decision.approved and initiator and initiator.strip().lower() == who.strip().lower():
        raise ApprovalForbidden(
            f"{who} started this rollout and may not approve it (another approver must)",
            field="approver",
        )
    return decision


def timeout_decision(pending: ApprovalRequest) -> ApprovalDecision:
    """The decision the orchestration records when the approval timer wins the race."""
    return ApprovalDecision(
        approver="system:timeout",
        ring=pending.ring,
        manifest_hash=pending.manifest_hash,
        verdict="approve" if pending.on_timeout == "approve" else "reject",
        comment=f"no decision before {format_instant(pending.deadline)}; onTimeout={pending.on_timeout}",
        decided_at=pending.deadline,
        source="timeout",
    )


# --------------------------------------------------------------------------------------------
# identity


@dataclass(frozen=True)
class Principal:
    """The caller as App Service authentication (Easy Auth) or the local fallback names them."""

    name: str
    source: Literal["x-ms-client-principal", "x-ms-client-principal-name", "fallback-header"]
    user_id: str | None = None
    identity_provider: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "userId": self.user_id,
            "identityProvider": self.identity_provider,
        }


_NAME_CLAIMS = (
    "preferred_username",
    "upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "email",
    "emails",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
)

FALLBACK_HEADER = "X-PatchRings-Approver"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    key = name.lower()
    for k, v in headers.items():
        if k.lower() == key and v is not None and str(v).strip():
            return str(v).strip()
    return None


def decode_client_principal(encoded: str) -> dict[str, Any]:
    """Decode ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON); raises :class:`RequestInvalid` if garbled."""
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=False)
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestInvalid("X-MS-CLIENT-PRINCIPAL is not base64-encoded JSON", field="X-MS-CLIENT-PRINCIPAL") from exc
    if not isinstance(doc, dict):
        raise RequestInvalid("X-MS-CLIENT-PRINCIPAL must encode a JSON object", field="X-MS-CLIENT-PRINCIPAL")
    return doc


def principal_from_headers(headers: Mapping[str, str], allow_fallback: bool) -> Principal:
    """Who is calling. Order: ``X-MS-CLIENT-PRINCIPAL`` claims (preferred_username, upn, email,
    name), then ``X-MS-CLIENT-PRINCIPAL-NAME``, then — only if ``allow_fallback`` —
    ``X-PatchRings-Approver``. Raises :class:`ApprovalForbidden` when nobody is identified."""
    encoded = _header(headers, "X-MS-CLIENT-PRINCIPAL")
    user_id = _header(headers, "X-MS-CLIENT-PRINCIPAL-ID")
    idp = _header(headers, "X-MS-CLIENT-PRINCIPAL-IDP")
    if encoded:
        doc = decode_client_principal(encoded)
        claims: dict[str, str] = {}
        for claim in doc.get("claims") or []:
            if isinstance(claim, dict):
                typ = str(claim.get("typ", "")).lower()
                if typ and claim.get("val") and typ not in claims:
                    claims[typ] = str(claim["val"])
        idp = idp or doc.get("auth_typ") or doc.get("identityProvider")
        for typ in _NAME_CLAIMS:
            if claims.get(typ):
                return Principal(claims[typ], "x-ms-client-principal", user_id, idp)
        if doc.get("userDetails"):  # Static Web Apps shape
            return Principal(str(doc["userDetails"]), "x-ms-client-principal", doc.get("userId"), idp)
    name = _header(headers, "X-MS-CLIENT-PRINCIPAL-NAME")
    if name:
        return Principal(name, "x-ms-client-principal-name", user_id, idp)
    if allow_fallback:
        fallback = _header(headers, FALLBACK_HEADER)
        if fallback:
            return Principal(fallback, "fallback-header")
    hint = f" or {FALLBACK_HEADER} (local fallback enabled)" if allow_fallback else ""
    raise ApprovalForbidden(
        f"no authenticated caller: expected X-MS-CLIENT-PRINCIPAL from App Service authentication{hint}",
        field="X-MS-CLIENT-PRINCIPAL",
    )


# ---------------------------------------------------------------------- recorded decisions
RESUME = "resume"
SUBMITTED = "submitted"


def _same(a: Any, b: Any, *, fold: bool = False) -> bool:
    left, right = str(a or "").strip(), str(b or "").strip()
    return bool(left) and (left.lower() == right.lower() if fold else left == right)


def match_recorded(kind: str, event: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> tuple[
        Mapping[str, Any] | None, str]:
    """Find the ledger row the HTTP API wrote for a raised ``ApprovalDecision`` / ``Resume`` event.

    Why: the Durable webhooks let anyone holding the system key raise an event with any
    approver in it (issue 13.13). The API records every decision it lets through as an
    Approvals row with ``outcome: "submitted"`` *before* raising the event, keyed by the
    decision's id; an event counts only if such a row exists and says the same thing:

    * ``kind="approval"``: same ``decisionId``, ``approver`` (case-insensitive), ``ring``,
      ``manifestHash`` and ``verdict``;
    * ``kind="resume"``: a row with ``verdict: "resume"`` and the event's id (``resumeId`` or
      ``decisionId``), the same person (``by``/``approver``) and, when the event names one, ring.

    Returns ``(row, "")`` on a match, else ``(None, reason)``. Pure.
    """
    event_id = event.get("resumeId") or event.get("decisionId") if kind == RESUME else event.get("decisionId")
    if not isinstance(event_id, str) or not event_id.strip():
        return None, f"the {kind} event carries no decision id: it was not submitted through the API"
    candidates = [r for r in rows if _same(r.get("decisionId"), event_id) and r.get("outcome") == SUBMITTED]
    if not candidates:
        return None, f"no {kind} {event_id!r} was submitted through the API"
    row = candidates[0]
    if kind == RESUME:
        who = event.get("by") or event.get("approver")
        recorded = row.get("by") or row.get("approver")
        if str(row.get("verdict") or "").lower() != RESUME:
            return None, f"decision {event_id!r} is not a resume"
        if not _same(who, recorded, fold=True):
            return None, f"resume {event_id!r} was submitted by {recorded!r}, not {who!r}"
        if event.get("approver") and not _same(event.get("approver"), row.get("approver"), fold=True):
            return None, f"resume {event_id!r} was submitted as approver {row.get('approver')!r}, not " \
                         f"{event.get('approver')!r}"
        if event.get("ring") and row.get("ring") and not _same(event.get("ring"), row.get("ring")):
            return None, f"resume {event_id!r} was submitted for ring {row.get('ring')!r}, not {event.get('ring')!r}"
        return row, ""
    for key, fold in (("approver", True), ("ring", False), ("manifestHash", False), ("verdict", True)):
        if not _same(event.get(key), row.get(key), fold=fold):
            return None, (f"decision {event_id!r} does not match what was submitted: {key} is "
                          f"{event.get(key)!r}, the API recorded {row.get(key)!r}")
    # a quarantine decision's release (issue 11): exactly the entries the person submitted, so a
    # raised event can neither add a release to an approval nor drop one
    if _id_list(event.get(RELEASE_QUARANTINE)) != _id_list(row.get(RELEASE_QUARANTINE)):
        return None, (f"decision {event_id!r} does not match what was submitted: {RELEASE_QUARANTINE} is "
                      f"{_id_list(event.get(RELEASE_QUARANTINE))!r}, the API recorded "
                      f"{_id_list(row.get(RELEASE_QUARANTINE))!r}")
    return row, ""


#: the approve body's field that releases quarantine entries in a quarantine decision (issue 11)
RELEASE_QUARANTINE = "releaseQuarantine"


def _id_list(value: Any) -> list[str]:
    """A list of ids as stored in a row (a list, or its JSON text), sorted and de-duplicated."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip().startswith("[") else [value]
        except ValueError:
            return [value]
    if not isinstance(value, list | tuple):
        return []
    return sorted({str(v).strip() for v in value if str(v).strip()})
