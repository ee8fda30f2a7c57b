"""Authentication is required whenever any ring's approval is manual (issue 13 items 10 and 17).

Why: the app trusts the caller's principal only when App Service authentication is on
(``WEBSITE_AUTH_ENABLED``); a deployment of a plan with manual approvals and no authentication
either leaves every approval impossible or, with a permissive setting, forgeable. main.bicep
reads the plan the app ships (``loadJsonContent('../plans/default.json')``, the file
``PATCHRINGS_PLAN_PATH`` names) and fails the deployment with a clear message. With
authentication on, an authorization policy keeps the rest of the tenant out.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from patchrings.domain.plan import load_plan
from tests.unit.infra.bicep_eval import BicepFail, Evaluator
from tests.unit.infra.bicep_static import BicepFile, load_json, strip_comments
from tests.unit.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.unit

MAIN = INFRA / "main.bicep"
PLAN_FILE = "../plans/default.json"
DEFAULT_PLAN = json.loads((REPO / "plans" / "default.json").read_text(encoding="utf-8"))
APP = {"app": {"outputs": {"defaultHostName": "func.azurewebsites.net", "functionAppId": "/x"}}}
AUTH = {"authClientId": "a0a0a0a0-0000-0000-0000-00000000000a",
        "authAllowedPrincipalIds": "b1b1b1b1-0000-0000-0000-00000000000b, c2c2c2c2-0000-0000-0000-00000000000c",
        "eventGridPrincipalId": "e9e9e9e9-0000-0000-0000-00000000000e"}


def main(plan: Any = None, **params: Any) -> Evaluator:
    files = {} if plan is None else {PLAN_FILE: plan}
    return Evaluator(MAIN, {"environmentName": "prod", **params}, modules=APP, files=files)


def test_the_template_reads_the_plan_the_app_loads(bicep_files: dict[str, BicepFile]) -> None:
    plan_path = load_json(INFRA / "app-settings.json")["settings"]["PATCHRINGS_PLAN_PATH"]
    assert f"loadJsonContent('../{plan_path}')" in bicep_files["main.bicep"].text
    assert main().var("deployedPlan") == DEFAULT_PLAN


def test_the_default_plan_cannot_be_deployed_without_authentication() -> None:
    with pytest.raises(BicepFail, match=r"App Service authentication is required: .* ring\(s\) ring1, ring2"):
        main().var("authEnabled")


def test_with_a_client_id_authentication_is_on() -> None:
    assert main(**AUTH).var("authEnabled") is True


def _variants() -> list[tuple[str, dict[str, Any]]]:
    none_everywhere = copy.deepcopy(DEFAULT_PLAN)
    for ring in none_everywhere["rings"]:
        ring["approval"] = {"mode": "none"}
    default_manual = copy.deepcopy(DEFAULT_PLAN)
    default_manual["defaults"]["approval"] = {"mode": "manual", "approvers": ["dave@contoso.com"]}
    for ring in default_manual["rings"]:
        ring.pop("approval", None)
    default_manual["rings"][0]["approval"] = {"mode": "none"}
    no_defaults = copy.deepcopy(none_everywhere)
    no_defaults.pop("defaults")
    for ring in no_defaults["rings"]:
        ring.pop("approval")
    return [("default", DEFAULT_PLAN), ("none everywhere", none_everywhere),
            ("manual by default, ring0 overrides", default_manual), ("no approval anywhere", no_defaults)]


@pytest.mark.parametrize(("label", "plan"), _variants(), ids=[v[0] for v in _variants()])
def test_manual_rings_are_the_ones_the_app_loader_sees(label: str, plan: dict[str, Any]) -> None:
    """The Bicep's reading of approvals is checked against the app's own plan loader."""
    loaded = load_plan(plan)
    expected = [ring.name for ring in loaded.rings if ring.approval.mode == "manual"]
    assert main(plan).var("manualApprovalRings") == expected
    if expected:
        with pytest.raises(BicepFail, match="authentication is required"):
            main(plan).var("authEnabled")
    else:
        assert main(plan).var("authEnabled") is False


def test_authentication_needs_an_authorization_policy_naming_callers() -> None:
    with pytest.raises(BicepFail, match="authAllowedPrincipalIds or authAllowedGroupIds must name who may call"):
        main(**{**AUTH, "authAllowedPrincipalIds": ""}).var("authPolicyHasCallers")
    groups_only = main(**{**AUTH, "authAllowedPrincipalIds": "", "authAllowedGroupIds": "g1"})
    assert groups_only.var("authPolicyHasCallers") is True
    assert groups_only.var("allowedGroupList") == ["g1"]


def test_the_policy_lists_exactly_the_named_callers_plus_event_grid() -> None:
    m = main(**AUTH)
    assert m.var("authPrincipalIds") == ["b1b1b1b1-0000-0000-0000-00000000000b", "c2c2c2c2-0000-0000-0000-00000000000c",
                                         "e9e9e9e9-0000-0000-0000-00000000000e"]
    assert m.var("authClientApplications") == ["04b07795-8ddb-461a-bbee-02f9e1bf7b46",
                                               "4962773b-9cdb-44cf-a8bf-237846a00ab7"]
    with pytest.raises(BicepFail, match="eventGridPrincipalId is required"):
        main(**{**AUTH, "eventGridPrincipalId": ""}).var("authPrincipalIds")
    # Rings without events need no Event Grid principal and do not admit Event Grid.
    quiet = main(**{**AUTH, "eventGridPrincipalId": "", "rings": [{"name": "ring1", "events": False}]})
    assert quiet.var("authPrincipalIds") == ["b1b1b1b1-0000-0000-0000-00000000000b",
                                             "c2c2c2c2-0000-0000-0000-00000000000c"]
    assert quiet.var("authClientApplications") == ["04b07795-8ddb-461a-bbee-02f9e1bf7b46"]


def test_the_auth_module_is_deployed_with_the_policy(bicep_files: dict[str, BicepFile]) -> None:
    text = bicep_files["main.bicep"].text
    assert re.search(r"^module appAuth 'modules/app-auth\.bicep' = if \(authEnabled && authPolicyHasCallers\) \{",
                     text, re.MULTILINE)
    for param in ("allowedPrincipalIds: authPrincipalIds", "allowedGroupIds: allowedGroupList",
                  "allowedApplications: authClientApplications"):
        assert param in text
    auth = bicep_files["modules/app-auth.bicep"].text
    assert re.search(r"defaultAuthorizationPolicy:\s*\{\s*allowedApplications: allowedApplications\s*"
                     r"allowedPrincipals:\s*\{\s*identities:", auth)


def test_infra_never_enables_the_header_fallback_or_inline_plans() -> None:
    """PATCHRINGS_APPROVER_HEADER_FALLBACK and PATCHRINGS_INLINE_PLANS: off in Azure, whatever the file."""
    settings = load_json(INFRA / "app-settings.json")
    assert settings["settings"]["PATCHRINGS_APPROVER_HEADER_FALLBACK"] == "false"
    assert "PATCHRINGS_INLINE_PLANS" not in settings["settings"]
    assert "PATCHRINGS_INLINE_PLANS" in settings["localOnly"]
    files = [p for p in INFRA.rglob("*") if p.is_file() and p.suffix in (".bicep", ".json", ".sh", ".ps1")]
    files.append(REPO / "azure.yaml")
    for path in files:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".bicep":
            text = strip_comments(text)
        if path.name == "app-settings.json":
            continue
        for name in ("PATCHRINGS_APPROVER_HEADER_FALLBACK", "PATCHRINGS_INLINE_PLANS", "INLINE_PLAN"):
            assert name not in text, f"{path.relative_to(REPO)} mentions {name}"
