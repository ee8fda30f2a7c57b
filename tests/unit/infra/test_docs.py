"""The deployment docs cover what the issue asks and stay in step with the template.

Why: docs drift silently. A parameter added to main.bicep but missing from infra/README.md's
table, or a deploy guide that stops explaining the approver identity, is only noticed by the
person who needs it during an outage.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.infra.bicep_static import BicepFile
from tests.unit.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.unit

DEPLOY = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
INFRA_README = (INFRA / "README.md").read_text(encoding="utf-8")


def test_every_main_parameter_is_documented(bicep_files: dict[str, BicepFile]) -> None:
    documented = set(re.findall(r"^\| `(\w+)`", INFRA_README, re.MULTILINE))
    documented |= {n for row in re.findall(r"^\| `(\w+)`, `(\w+)`", INFRA_README, re.MULTILINE) for n in row}
    undocumented = set(bicep_files["main.bicep"].params) - documented
    assert undocumented == set()


@pytest.mark.parametrize("topic", [
    "azd up",
    "az deployment group create",
    "existingMaintenanceConfigurationId",
    "holdValue",
    "bypassPlatformSafetyChecksOnUserSchedule",
    "X-MS-CLIENT-PRINCIPAL",
    "PATCHRINGS_APPROVER_HEADER_FALLBACK",
    "approvers",
    "Durable Task Scheduler",
    "dead-letter",
])
def test_the_deploy_guide_covers(topic: str) -> None:
    assert topic in DEPLOY


def test_the_deploy_guide_says_the_fallback_is_off_in_azure() -> None:
    sentence = next(s for s in re.split(r"(?<=\.)\s", DEPLOY) if "PATCHRINGS_APPROVER_HEADER_FALLBACK" in s)
    assert "`false`" in sentence


def test_the_infra_readme_lists_every_module(bicep_files: dict[str, BicepFile]) -> None:
    modules = {name for name in bicep_files if name.startswith("modules/")}
    missing = {m for m in modules if m not in INFRA_README}
    assert missing == set()


def test_the_infra_readme_names_the_host_json_requirements_per_provider() -> None:
    for needed in ("storageProvider", "hubName", "extensionBundle", "azureManaged",
                   "DURABLE_TASK_SCHEDULER_CONNECTION_STRING", "AzureFunctionsJobHost__extensions__durableTask"):
        assert needed in INFRA_README, needed


def test_the_deploy_guide_does_not_claim_approvals_fail_closed_without_authentication() -> None:
    """Without App Service authentication nothing strips X-MS-CLIENT-PRINCIPAL; the app refuses
    the header unless WEBSITE_AUTH_ENABLED is set, and the template requires authentication for
    manual approvals. The guide must say that, not that a missing principal fails closed."""
    assert not re.search(r"fail(s)? closed", DEPLOY)
    assert "WEBSITE_AUTH_ENABLED" in DEPLOY
    assert "App Service authentication is required" in DEPLOY
    identity = DEPLOY[DEPLOY.index("**How the identity reaches the app.**"):DEPLOY.index("**Who may call at all")]
    assert "never by `name`" in identity and "`preferred_username`" in identity
    assert "only while authentication is\nenabled" in identity or "only while authentication is enabled" in identity


@pytest.mark.parametrize("topic", [
    "PATCHRINGS_CREATE_CONFIGURATIONS",
    "PATCHRINGS_MAINTENANCE_START",
    "after-provision.sh",
    "defaultAuthorizationPolicy",
    "azureActiveDirectoryApplicationIdOrUri",
    "AzureEventGridSecureWebhookSubscriber",
    "remove-scope.sh",
    "PATCHRINGS_INLINE_PLANS",
])
def test_the_deploy_guide_covers_the_deployment_edges(topic: str) -> None:
    assert topic in DEPLOY


def test_the_scope_removal_order_is_documented() -> None:
    section = DEPLOY[DEPLOY.index("* **Removing a scope**"):]
    assert section.index("remove-scope.sh") < section.index("main.parameters.json") < section.index("azd provision")
