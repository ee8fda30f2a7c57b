"""Caller identity (triggers/identity.py) and inline-plan restrictions (triggers/inline_plans.py).

Identity: the principal headers count only when App Service authentication is on
(``WEBSITE_AUTH_ENABLED=True``); approvers match by UPN, oid or tid/oid, never by display name,
preferred_username or email; the fallback header is local only.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from patchrings.domain.plan import load_plan, load_plan_file
from patchrings.errors import ApprovalForbidden, PlanForbidden
from patchrings.settings import Settings
from triggers.identity import Caller, caller_from_headers
from triggers.inline_plans import check_inline_plan, plan_weakenings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "0b7d6c4e-1111-4222-8333-944455556666"
EASY_AUTH = Settings(platform_auth_enabled=True)
LOCAL = Settings(approver_header_fallback=True)


def principal(**claims: str) -> str:
    types = {
        "oid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
        "tid": "http://schemas.microsoft.com/identity/claims/tenantid",
        "upn": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    }
    doc = {"auth_typ": "aad", "claims": [{"typ": types.get(k, k), "val": v} for k, v in claims.items()]}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_principal_headers_are_ignored_when_app_service_authentication_is_off() -> None:
    forged = {"X-MS-CLIENT-PRINCIPAL": principal(upn="alice@contoso.com", oid=OID),
              "X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com"}
    for settings in (Settings(), LOCAL):
        with pytest.raises(ApprovalForbidden, match="WEBSITE_AUTH_ENABLED") as info:
            caller_from_headers(forged, settings)
        assert info.value.field == "X-MS-CLIENT-PRINCIPAL"


def test_website_auth_enabled_is_read_case_insensitively_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "default.json").write_text("{}")
    env = {"PATCHRINGS_LEDGER_ACCOUNT_URL": "https://a.table.core.windows.net"}
    assert Settings.from_env({**env, "WEBSITE_AUTH_ENABLED": "True"}, app_dir=tmp_path).platform_auth_enabled
    assert Settings.from_env({**env, "WEBSITE_AUTH_ENABLED": "true"}, app_dir=tmp_path).platform_auth_enabled
    assert not Settings.from_env({**env, "WEBSITE_AUTH_ENABLED": "False"}, app_dir=tmp_path).platform_auth_enabled
    assert not Settings.from_env(env, app_dir=tmp_path).platform_auth_enabled
    hosted = Settings.from_env({**env, "WEBSITE_SITE_NAME": "func-pr", "PATCHRINGS_APPROVER_HEADER_FALLBACK": "true"},
                               app_dir=tmp_path)
    assert hosted.hosted_in_azure and hosted.approver_header_fallback and not hosted.header_fallback_allowed


def test_easy_auth_principal_gives_upn_oid_and_tenant() -> None:
    who = caller_from_headers({"x-ms-client-principal": principal(upn="Alice@Contoso.com", oid=OID, tid=TID)},
                              EASY_AUTH)
    assert (who.upn, who.oid, who.tid, who.name) == ("Alice@Contoso.com", OID, TID, "Alice@Contoso.com")
    assert who.matches("alice@contoso.com") and who.matches(OID.upper()) and who.matches(f"{TID}/{OID}")
    assert not who.matches(f"{OID}/{TID}") and not who.matches("bob@contoso.com")
    assert who.matching_entry(["bob@contoso.com", f"{TID}/{OID}"]) == f"{TID}/{OID}"


def test_display_name_preferred_username_and_email_are_never_identity() -> None:
    headers = {"X-MS-CLIENT-PRINCIPAL": principal(name="alice@contoso.com", preferred_username="alice@contoso.com",
                                                  email="alice@contoso.com"),
               "X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com"}
    with pytest.raises(ApprovalForbidden, match="neither an object id"):
        caller_from_headers(headers, EASY_AUTH)
    # An app-only or guest token: the oid is the identity; a name claim does not become a UPN.
    who = caller_from_headers({"X-MS-CLIENT-PRINCIPAL": principal(oid=OID, tid=TID, name="alice@contoso.com")},
                              EASY_AUTH)
    assert who.upn is None and who.name == f"{TID}/{OID}"
    assert not who.matches("alice@contoso.com")


def test_oid_without_tenant_does_not_match_a_tenant_qualified_entry() -> None:
    who = Caller("app-service-authentication", oid=OID)
    assert who.matches(OID) and not who.matches(f"{TID}/{OID}")


def test_garbled_or_missing_principal_is_403_naming_the_header() -> None:
    for headers in ({}, {"X-MS-CLIENT-PRINCIPAL": "!!!"}, {"X-MS-CLIENT-PRINCIPAL": "W10="},  # "[]"
                    {"X-MS-CLIENT-PRINCIPAL": principal(oid="not-a-guid")}):
        with pytest.raises(ApprovalForbidden) as info:
            caller_from_headers(headers, EASY_AUTH)
        assert info.value.http_status == 403 and info.value.field == "X-MS-CLIENT-PRINCIPAL"


def test_fallback_header_is_local_only() -> None:
    assert caller_from_headers({"X-PatchRings-Approver": "dave@contoso.com"}, LOCAL).upn == "dave@contoso.com"
    for settings in (Settings(), Settings(approver_header_fallback=True, hosted_in_azure=True),
                     Settings(approver_header_fallback=True, platform_auth_enabled=True)):
        with pytest.raises(ApprovalForbidden):
            caller_from_headers({"X-PatchRings-Approver": "dave@contoso.com"}, settings)


# ---------------------------------------------------------------------- inline plans
def deployed() -> Any:
    return load_plan_file(REPO / "plans" / "default.json")


def variant(**ring_changes: dict[str, Any]) -> Any:
    doc = deployed().to_dict()
    doc.pop("hash")
    for ring in doc["rings"]:
        ring.update(ring_changes.get(ring["name"], {}))
    return load_plan(doc)


def fields(plan: Any) -> set[str]:
    return {p["field"] for p in plan_weakenings(plan, deployed())}


def test_inline_plans_are_refused_unless_enabled() -> None:
    with pytest.raises(PlanForbidden) as info:
        check_inline_plan(deployed(), deployed(), enabled=False)
    assert info.value.http_status == 403 and info.value.field == "plan"
    check_inline_plan(deployed(), deployed(), enabled=True)


def test_a_restricting_plan_is_accepted() -> None:
    stricter = variant(ring0={"rate": {"maxConcurrency": 1, "maxErrors": 0}},
                       ring1={"approval": {"mode": "manual", "approvers": ["bob@contoso.com"], "timeout": "PT4H"}})
    assert fields(stricter) == set()
    two_rings = deployed().to_dict()
    two_rings.pop("hash")
    two_rings["rings"] = two_rings["rings"][:2]
    assert fields(load_plan(two_rings)) == set()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ring1": {"approval": {"mode": "none"}}}, "plan.rings[1].approval.mode"),
        ({"ring1": {"approval": {"mode": "manual", "approvers": ["mallory@contoso.com"]}}},
         "plan.rings[1].approval.approvers"),
        ({"ring2": {"approval": {"mode": "manual", "approvers": ["alice@contoso.com"], "onTimeout": "approve"}}},
         "plan.rings[2].approval.onTimeout"),
        ({"ring1": {"health": {"installation": {"allowWarnings": True}}}}, "plan.rings[1].health"),
        ({"ring0": {"members": {"tag": {"name": "patchRing", "value": "ring2"},
                                "subscriptions": ["00000000-0000-0000-0000-000000000001"]}}},
         "plan.rings[0].members"),
        ({"ring0": {"rate": {"maxConcurrency": 2, "maxErrors": 5}}}, "plan.rings[0].rate.maxErrors"),
        ({"ring0": {"gate": {"tolerateErrors": True}}}, "plan.rings[0].gate.tolerateErrors"),
    ],
)
def test_each_weakening_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    doc = deployed().to_dict()
    doc.pop("hash")
    for ring in doc["rings"]:
        for key, value in change.get(ring["name"], {}).items():
            ring[key] = {**ring[key], **value} if key == "health" else value
    if "health" in change.get("ring1", {}):
        doc["rings"][1]["health"]["installation"] = {**doc["rings"][1]["health"]["installation"], "allowWarnings": True}
    plan = load_plan(doc)
    assert field in fields(plan)
    with pytest.raises(PlanForbidden) as info:
        check_inline_plan(plan, deployed(), enabled=True)
    assert info.value.http_status == 403
    assert field in {d["field"] for d in info.value.details}


def test_a_direct_ring_over_production_or_reordered_rings_is_refused() -> None:
    direct = deployed().to_dict()
    direct.pop("hash")
    direct["rings"] = [direct["rings"][2] | {"patching": "direct", "open": {"mode": "none"}}]
    direct["rings"][0]["members"] = {k: v for k, v in direct["rings"][0]["members"].items()
                                     if k != "maintenanceConfigurationId"}
    assert fields(load_plan(direct)) == {"plan.rings"}
    own = deployed().to_dict()
    own.pop("hash")
    own["rings"][0] = own["rings"][0] | {"members": own["rings"][2]["members"], "patching": "direct"}
    own["rings"] = own["rings"][:1]
    assert "plan.rings[0].members" in fields(load_plan(own))
