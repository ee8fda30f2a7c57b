"""infra/app-settings.json, local.settings.sample.json and the app's settings model agree.

Why: the app refuses to start on an unknown or malformed PATCHRINGS_* setting, and in Azure the
only source of settings is what the Bicep writes. A key added to the model but not to the infra
(or a local-only key leaking into Azure, like the approver header fallback) would only show up
as a failed start after a deployment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from patchrings.settings import PREFIX, SETTINGS_SPEC, Settings
from tests.unit.infra.bicep_static import BicepFile, load_json
from tests.unit.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.unit

SPEC = {spec.name: spec for spec in SETTINGS_SPEC}
DATA = load_json(INFRA / "app-settings.json")
STATIC: dict[str, str] = DATA["settings"]
COMPUTED: dict[str, str] = DATA["computedByBicep"]
LOCAL_ONLY: list[str] = DATA["localOnly"]
OPTIONAL: list[str] = DATA.get("optional", [])  # not set by infra; an operator may add them

# Settings the Flex Consumption plan rejects or ignores (the runtime comes from functionAppConfig).
FLEX_FORBIDDEN = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "AzureWebJobsStorage",  # a connection string: the app uses the identity-based form instead
)


def _placeholder(value: str | None) -> bool:
    return value is not None and "<" in value


def _bicep_object_keys(bicep: BicepFile, var: str) -> list[str]:
    block = re.search(rf"^var\s+{var}\s*=\s*\{{(.*?)^\}}", bicep.text, re.MULTILINE | re.DOTALL)
    assert block, f"var {var} not found in {bicep.path.name}"
    return re.findall(r"^\s*(\w+)\s*:", block.group(1), re.MULTILINE)


def test_every_model_setting_is_accounted_for_exactly_once() -> None:
    groups = [set(STATIC), set(COMPUTED), set(LOCAL_ONLY), set(OPTIONAL)]
    assert set().union(*groups) == set(SPEC), "infra/app-settings.json and SETTINGS_SPEC name different settings"
    assert sum(len(g) for g in groups) == len(set().union(*groups)), "a setting is in two groups"


def test_only_patchrings_settings_live_in_the_json() -> None:
    for key in [*STATIC, *COMPUTED, *LOCAL_ONLY, *OPTIONAL]:
        assert key.startswith(PREFIX), key


def test_azure_values_are_the_models_azure_values() -> None:
    for key, value in STATIC.items():
        assert not _placeholder(SPEC[key].azure_value), f"{key} is deploy-specific: it belongs in computedByBicep"
        documented = SPEC[key].azure_value
        assert value == documented, f"{key}: infra sets {value!r}, the model documents {documented!r}"
    for key, example in COMPUTED.items():
        assert SPEC[key].azure_value is not None, f"{key} is computed for Azure but the model says it is unset there"
        assert example == SPEC[key].azure_value
    for key in LOCAL_ONLY:
        assert SPEC[key].azure_value is None, f"{key} is local-only in infra but the model sets it in Azure"


def test_the_approver_header_fallback_is_off_in_azure() -> None:
    assert STATIC["PATCHRINGS_APPROVER_HEADER_FALLBACK"] == "false"
    assert STATIC["PATCHRINGS_ARM_AUTH"] == "managed-identity"
    assert "PATCHRINGS_ARM_STATIC_TOKEN" in LOCAL_ONLY


def test_the_azure_settings_pass_the_models_validation(tmp_path: Path) -> None:
    plan = STATIC["PATCHRINGS_PLAN_PATH"]
    (tmp_path / plan).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / plan).write_text("{}")
    env = dict(STATIC)
    env.update({key: example.replace("<storage account>", "stprabc123") for key, example in COMPUTED.items()})
    settings = Settings.from_env(env, app_dir=tmp_path)
    assert settings.arm_auth == "managed-identity"
    assert settings.is_public_azure
    assert settings.approver_header_fallback is False
    assert settings.ledger_connection is None
    assert settings.ledger_account_url == "https://stprabc123.table.core.windows.net"


def test_the_bicep_computes_exactly_the_computed_settings(bicep_files: dict[str, BicepFile]) -> None:
    main = bicep_files["main.bicep"]
    assert sorted(_bicep_object_keys(main, "computedPatchRingsSettings")) == sorted(COMPUTED)
    ledger_url = re.search(r"PATCHRINGS_LEDGER_ACCOUNT_URL:\s*'([^']+)'", main.text)
    assert ledger_url and ledger_url.group(1).startswith("https://") and ".table." in ledger_url.group(1)


def test_the_bicep_merges_the_json_settings_into_the_app(bicep_files: dict[str, BicepFile]) -> None:
    main = bicep_files["main.bicep"]
    merged = re.search(r"^var\s+appSettings\s*=\s*union\(([^)]*)\)", main.text, re.MULTILINE)
    assert merged, "main.bicep must build appSettings with union(...)"
    parts = [p.strip() for p in merged.group(1).split(",")]
    assert "appSettingsData.settings" in parts and "computedPatchRingsSettings" in parts
    assert re.search(r"appSettings:\s*appSettings\b", main.text), "the merged settings must reach the app module"


def test_no_bicep_sets_a_local_only_or_flex_forbidden_setting(bicep_files: dict[str, BicepFile]) -> None:
    for name, bicep in bicep_files.items():
        for key in [*LOCAL_ONLY, *FLEX_FORBIDDEN]:
            assert not re.search(rf"^\s*{key}\s*:", bicep.text, re.MULTILINE), f"{name} sets {key}"


def test_the_host_reaches_storage_by_identity(bicep_files: dict[str, BicepFile]) -> None:
    keys = _bicep_object_keys(bicep_files["main.bicep"], "hostSettings")
    assert "AzureWebJobsStorage__accountName" in keys
    assert "AzureWebJobsStorage__credential" in keys
    storage = bicep_files["modules/storage.bicep"].text
    assert re.search(r"allowSharedKeyAccess:\s*false", storage)


def test_local_sample_uses_only_known_settings_with_local_values() -> None:
    sample = json.loads((REPO / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    local = {k: v for k, v in sample.items() if k.startswith(PREFIX)}
    assert set(local) <= set(SPEC), f"unknown settings in local.settings.sample.json: {set(local) - set(SPEC)}"
    for key, value in local.items():
        documented = SPEC[key].local_value
        if documented is not None and not _placeholder(documented):
            assert value == documented, f"{key}: sample {value!r}, model {documented!r}"
    assert local.get("PATCHRINGS_APPROVER_HEADER_FALLBACK") == "true"
    # Every setting Azure leaves unset but the local platform needs is in the sample.
    for key in LOCAL_ONLY:
        if SPEC[key].local_value is not None and key != "PATCHRINGS_LEDGER_ACCOUNT_URL":
            assert key in local, f"{key} is local-only but missing from local.settings.sample.json"
