"""azure.yaml, infra/main.parameters.json and .funcignore fit the Bicep and the app.

Why: `azd up` is the one-command deployment. It fails late (after minutes of provisioning) on a
parameter the template does not declare, deploys nothing when the service name does not match
the app's azd-service-name tag, and ships a broken or bloated package when .funcignore drops app
code or keeps the local platform.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re

import pytest
import yaml

from tests.unit.infra.bicep_static import BicepFile
from tests.unit.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.unit

AZURE_YAML = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))
PARAMETERS = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
RING_KEYS = {"name", "existingMaintenanceConfigurationId", "createConfiguration", "maintenanceConfigurationName",
             "resourceGroupName",
             "location", "maintenanceWindow", "installPatches", "events", "dynamicScope"}


def test_azure_yaml_points_at_the_bicep_and_the_function_app() -> None:
    infra = AZURE_YAML["infra"]
    assert infra["provider"] == "bicep"
    assert (REPO / infra["path"] / f"{infra['module']}.bicep").is_file()
    services = AZURE_YAML["services"]
    assert len(services) == 1
    service = services["patchrings"]
    assert service == {"project": ".", "language": "python", "host": "function"}
    assert (REPO / "function_app.py").is_file() and (REPO / "requirements.txt").is_file()


def test_the_service_name_is_the_apps_azd_tag(bicep_files: dict[str, BicepFile]) -> None:
    main = bicep_files["main.bicep"].text
    tag = re.search(r"^var serviceName = '([^']+)'", main, re.MULTILINE)
    assert tag and tag.group(1) in AZURE_YAML["services"]
    assert "'azd-service-name': serviceName" in bicep_files["modules/function-app.bicep"].text


def test_hooks_exist_and_are_runnable() -> None:
    hook = AZURE_YAML["hooks"]["postdeploy"]
    posix = REPO / hook["posix"]["run"]
    assert posix.is_file() and os.access(posix, os.X_OK), posix
    assert (REPO / hook["windows"]["run"]).is_file()
    script = posix.read_text(encoding="utf-8")
    assert "PATCHRINGS_WIRE_EVENTS" in script and "azd provision" in script


def test_parameters_file_matches_the_template(bicep_files: dict[str, BicepFile]) -> None:
    main = bicep_files["main.bicep"]
    assert set(PARAMETERS) <= set(main.params), f"undeclared: {set(PARAMETERS) - set(main.params)}"
    assert main.required_params <= set(PARAMETERS), f"missing: {main.required_params - set(PARAMETERS)}"
    assert PARAMETERS["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert PARAMETERS["location"]["value"] == "${AZURE_LOCATION}"
    # The wiring flag the postdeploy hook flips must reach wireEventSubscriptions.
    assert "PATCHRINGS_WIRE_EVENTS" in PARAMETERS["wireEventSubscriptions"]["value"]


def test_rings_in_the_parameters_are_ring_specs() -> None:
    rings = PARAMETERS["rings"]["value"]
    assert rings, "no rings"
    for ring in rings:
        assert set(ring) <= RING_KEYS, set(ring) - RING_KEYS
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", ring["name"])
        scope = ring.get("dynamicScope")
        if scope:
            assert scope["tagName"] and scope["tagValue"]
    assert len({r["name"] for r in rings}) == len(rings)


def test_ring_spec_type_declares_exactly_the_documented_keys(bicep_files: dict[str, BicepFile]) -> None:
    main = bicep_files["main.bicep"].text
    block = re.search(r"^type ringSpec = \{(.*?)^\}", main, re.MULTILINE | re.DOTALL)
    assert block
    declared = set(re.findall(r"^  (\w+):", block.group(1), re.MULTILINE))
    assert declared == RING_KEYS


def test_the_parameter_rings_match_the_default_plan() -> None:
    """Scheduled rings of plans/default.json have a ring entry, and retag rings a dynamic scope
    selecting the plan's open tag value."""
    plan = json.loads((REPO / "plans" / "default.json").read_text(encoding="utf-8"))
    rings = {r["name"]: r for r in PARAMETERS["rings"]["value"]}
    for ring in plan["rings"]:
        if ring["patching"] != "scheduled":
            continue
        assert ring["name"] in rings, f"scheduled ring {ring['name']} has no maintenance configuration entry"
        entry = rings[ring["name"]]
        parts = ring["members"]["maintenanceConfigurationId"].split("/")
        assert entry.get("maintenanceConfigurationName") == parts[-1]
        assert entry.get("resourceGroupName", "").endswith(f"={parts[4]}}}"), "default resource group differs"
        if (ring.get("open") or {}).get("mode") == "retag":
            tag = ring["members"]["tag"]
            scope = entry["dynamicScope"]
            assert (scope["tagName"], scope["tagValue"]) == (tag["name"], tag["value"])
            # The schedule must not pull in VMs outside the plan's resource groups.
            groups = ring["members"].get("resourceGroups")
            if groups:
                assert [g.rsplit("=", 1)[-1].rstrip("}") for g in scope["resourceGroups"]] == groups


def _ignored(path: str, patterns: list[str]) -> bool:
    top = path.split("/", 1)[0]
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(top, p.rstrip("/")) for p in patterns)


def test_the_deployment_package_keeps_the_app_and_drops_the_local_platform() -> None:
    lines = (REPO / ".funcignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for needed in ("function_app.py", "host.json", "requirements.txt", "plans/default.json",
                   "patchrings/settings.py", "activities/compute.py", "orchestrators/rollout.py",
                   "triggers/http_api.py"):
        assert not _ignored(needed, patterns), f"{needed} would be left out of the package"
    for dropped in ("emulator/platform.py", "tests/conftest.py", "infra/main.bicep", ".venv/x", "node_modules/x"):
        assert _ignored(dropped, patterns), f"{dropped} would be deployed"
