"""Who is calling the API, and whether they are one of a ring's approvers.

Why this is strict (issue 13 item 10): ``X-MS-CLIENT-PRINCIPAL*`` headers are written by App
Service authentication (Easy Auth) *only when it is enabled*; then the platform drops whatever a
client sent under those names. With authentication off nothing strips them, so any function-key
holder could claim to be anyone. So:

* the principal headers are trusted only when App Service says authentication is on
  (``WEBSITE_AUTH_ENABLED=True``, compared case-insensitively, the check Microsoft.Identity.Web's
  ``AppServicesAuthenticationInformation.IsAppServicesAadAuthenticationEnabled`` makes);
* a person is identified by immutable ids: the object id (``oid``, claim
  ``http://schemas.microsoft.com/identity/claims/objectidentifier``) with its tenant (``tid``,
  ``http://schemas.microsoft.com/identity/claims/tenantid``), and the UPN (``upn`` claim) — never
  by ``name``, ``preferred_username``, ``email`` or ``X-MS-CLIENT-PRINCIPAL-NAME``, which a user
  or a guest tenant can set to look like someone else;
* the local ``X-PatchRings-Approver`` header counts only when ``PATCHRINGS_APPROVER_HEADER_FALLBACK``
  is on, authentication is off and the app is not hosted in Azure (``Settings.header_fallback_allowed``).

Plan approver entries may be a UPN (``alice@contoso.com``), an object id (a GUID) or
``<tenant id>/<object id>``; :meth:`Caller.matching_entry` returns the entry a caller matches.
The API then records and raises that entry as the decision's ``approver``, so the orchestrator's
own check (entry in the ring's approvers) sees exactly what the plan lists.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from patchrings.errors import ApprovalForbidden
from patchrings.settings import Settings

__all__ = ["FALLBACK_HEADER", "PRINCIPAL_HEADER", "Caller", "caller_from_headers"]

PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
FALLBACK_HEADER = "X-PatchRings-Approver"

OID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
TID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/tenantid", "tid")
UPN_CLAIMS = ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn")

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_MAX_PRINCIPAL = 16 * 1024


def is_guid(value: str) -> bool:
    return bool(_GUID.match(value.strip()))


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: UPN and/or object id (+ tenant), and where they came from."""

    source: str  # "app-service-authentication" | "fallback-header"
    upn: str | None = None
    oid: str | None = None
    tid: str | None = None

    @property
    def name(self) -> str:
        """How the caller is shown and recorded: the UPN, else ``tid/oid``, else the oid."""
        if self.upn:
            return self.upn
        if self.oid and self.tid:
            return f"{self.tid}/{self.oid}"
        return self.oid or "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "upn": self.upn, "oid": self.oid, "tid": self.tid, "source": self.source}

    def matches(self, entry: str | None) -> bool:
        """True when a plan approver entry (UPN, oid or ``tid/oid``) names this caller."""
        if not entry or not isinstance(entry, str):
            return False
        text = entry.strip().lower()
        if not text:
            return False
        if "/" in text:
            tid, _, oid = text.partition("/")
            return bool(self.oid and self.tid and is_guid(tid) and is_guid(oid)
                        and self.oid.lower() == oid and self.tid.lower() == tid)
        if is_guid(text):
            return bool(self.oid and self.oid.lower() == text)
        return bool(self.upn and self.upn.strip().lower() == text)

    def matching_entry(self, approvers: Iterable[str]) -> str | None:
        """The first plan approver entry that names this caller, or None."""
        for entry in approvers:
            if self.matches(entry):
                return str(entry)
        return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    key = name.lower()
    for k, v in headers.items():
        if str(k).lower() == key and v is not None and str(v).strip():
            return str(v).strip()
    return None


def _forbidden(message: str) -> ApprovalForbidden:
    return ApprovalForbidden(message, field=PRINCIPAL_HEADER)


def decode_principal(encoded: str) -> dict[str, Any]:
    """Decode ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON with ``claims: [{typ, val}]``)."""
    if len(encoded) > _MAX_PRINCIPAL:
        raise _forbidden(f"{PRINCIPAL_HEADER} is larger than {_MAX_PRINCIPAL} characters")
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=False)
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _forbidden(f"{PRINCIPAL_HEADER} is not base64-encoded JSON") from exc
    if not isinstance(doc, dict):
        raise _forbidden(f"{PRINCIPAL_HEADER} must encode a JSON object")
    return doc


def _claims(doc: Mapping[str, Any]) -> dict[str, str]:
    claims: dict[str, str] = {}
    for claim in doc.get("claims") or []:
        if isinstance(claim, dict):
            typ = str(claim.get("typ", "")).strip().lower()
            val = claim.get("val")
            if typ and isinstance(val, str) and val.strip() and typ not in claims:
                claims[typ] = val.strip()
    return claims


def _first(claims: Mapping[str, str], types: Iterable[str]) -> str | None:
    for typ in types:
        if claims.get(typ):
            return claims[typ]
    return None


def caller_from_headers(headers: Mapping[str, str], settings: Settings) -> Caller:
    """Who is calling; :class:`ApprovalForbidden` (403, field ``X-MS-CLIENT-PRINCIPAL``) if nobody
    trustworthy is identified."""
    if settings.platform_auth_enabled:
        encoded = _header(headers, PRINCIPAL_HEADER)
        if not encoded:
            raise _forbidden("no authenticated caller: App Service authentication sent no X-MS-CLIENT-PRINCIPAL")
        claims = _claims(decode_principal(encoded))
        oid = _first(claims, OID_CLAIMS)
        tid = _first(claims, TID_CLAIMS)
        upn = _first(claims, UPN_CLAIMS)
        if oid and not is_guid(oid):
            raise _forbidden("the principal's object id (oid) is not a GUID")
        if tid and not is_guid(tid):
            tid = None
        if not oid and not upn:
            raise _forbidden("the authenticated principal has neither an object id (oid) nor a UPN; "
                             "name, preferred_username and email are not accepted as identity")
        return Caller("app-service-authentication", upn=upn, oid=oid, tid=tid)
    if settings.header_fallback_allowed:
        fallback = _header(headers, FALLBACK_HEADER)
        if fallback:
            if len(fallback) > 256 or any(ord(c) < 32 for c in fallback):
                raise ApprovalForbidden(f"{FALLBACK_HEADER} is not a usable name", field=FALLBACK_HEADER)
            if is_guid(fallback):
                return Caller("fallback-header", oid=fallback)
            return Caller("fallback-header", upn=fallback)
        hint = f"; or {FALLBACK_HEADER} (local fallback)"
    else:
        hint = ""
    raise _forbidden(
        "no authenticated caller: X-MS-CLIENT-PRINCIPAL is trusted only when App Service authentication "
        f"is enabled on the app (WEBSITE_AUTH_ENABLED=True){hint}"
    )
