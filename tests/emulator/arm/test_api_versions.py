"""ARM refuses api-versions a provider does not register; the pinned SDKs' own versions all pass.

Source: azure-arm-contracts.md §1 (corrected: "A faithful simulator keeps a list of the versions
each provider registers ... and refuses the rest the same way"); message shape as ARM sends it
(Azure/azure-cli#28496: "No registered resource provider found for location 'eastus' and API
version '2023-11-01' for type 'networkInterfaces'. The supported api-versions are '...'. The
supported locations are '...'.").
"""

from __future__ import annotations

import re

import pytest
from azure.core.rest import HttpRequest

from emulator.arm.apiversions import REGISTERED
from tests.emulator.arm.conftest import SUB, base_scenario

pytestmark = pytest.mark.emulator

VM = f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines/win-01"
MC = f"/subscriptions/{SUB}/resourcegroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations/mc-ring0"  # noqa: E501
_SHAPE = re.compile(
    r"^No registered resource provider found for location '(?P<loc>[^']+)' and API version '(?P<v>[^']+)' "
    r"for type '(?P<type>[^']+)'\. The supported api-versions are '(?P<versions>[^']+)'\. "
    r"The supported locations are '(?P<locs>[^']+)'\.$"
)


def test_every_sdk_in_requirements_speaks_a_registered_version(arm):
    """Each pinned SDK's default api-version, used through the SDK, is accepted and recorded."""
    arm.compute().virtual_machines.get("rg-fleet", "win-01")
    arm.compute().virtual_machines.instance_view("rg-fleet", "win-01")
    arm.maintenance().maintenance_configurations.get("rg-patching", "mc-ring0")
    list(arm.maintenance().configuration_assignments_within_subscription.list())
    arm.lro(arm.resources().tags.begin_update_at_scope(VM, {"operation": "Merge", "properties": {"tags": {"a": "b"}}}))
    arm.lro(arm.compute().virtual_machines.begin_assess_patches("rg-fleet", "win-01"))
    used = {(r.action.split("/")[0], r.api_version) for r in arm.sim.recorder.find() if r.action}
    assert {"2026-04-01", "2023-04-01", "2025-04-01"} <= {v for _, v in used}
    for provider, version in used:
        assert version in REGISTERED[provider], (provider, version)
    assert all(r.status < 400 for r in arm.sim.recorder.find())
    # the app's raw cancel PUT and the contract examples' versions
    assert "2023-09-01-preview" in REGISTERED["Microsoft.Maintenance"]
    assert {"2024-11-01", "2025-11-01", "2026-04-01"} <= set(REGISTERED["Microsoft.Compute"])
    assert "2025-11-01" in REGISTERED["Microsoft.Maintenance"]


@pytest.mark.parametrize(
    ("path", "version", "rtype"),
    [
        (VM, "2099-01-01", "virtualMachines"),
        (VM + "/instanceView", "2026-04-01-preview", "virtualMachines"),
        (MC, "2023-04-01-preview", "maintenanceConfigurations"),
        (MC + "/providers/Microsoft.Maintenance/applyUpdates/20261117200000", "2019-01-01", "applyUpdates"),
    ],
)
def test_an_unregistered_version_gets_no_registered_provider_found(arm, path, version, rtype):
    response = arm.compute().send_request(HttpRequest("GET", path, params={"api-version": version}))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "NoRegisteredProviderFound"
    match = _SHAPE.match(error["message"])
    assert match, error["message"]
    assert match["v"] == version and match["type"] == rtype and match["loc"] == "westeurope"
    assert version not in match["versions"].split(", ")
    assert arm.sim.recorder.find()[-1].error_code == "NoRegisteredProviderFound"


def test_tags_answer_invalid_api_version_parameter(arm):
    response = arm.compute().send_request(
        HttpRequest("GET", VM + "/providers/Microsoft.Resources/tags/default", params={"api-version": "2099-01-01"})
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidApiVersionParameter"
    assert error["message"].startswith("The api-version '2099-01-01' is invalid. The supported versions are '")


def test_enforcement_can_be_turned_off(arm_factory):
    arm = arm_factory(base_scenario(apiVersions={"enforce": False}))
    assert arm.compute().send_request(HttpRequest("GET", VM, params={"api-version": "2099-01-01"})).status_code == 200


def _builder_defaults(package: str, name_prefixes: tuple[str, ...]) -> dict[str, str]:
    """Request builders of the routed operation groups (``build_<group>_<op>_request``, or every
    builder of ``_<group>_operations.py``) → the api-version literal each sends, from the installed SDK."""
    import importlib
    from pathlib import Path

    root = Path(importlib.import_module(package).__file__).parent / "operations"
    found: dict[str, str] = {}
    for source in sorted(root.glob("*.py")):
        group_file = source.stem.lstrip("_").startswith(name_prefixes)  # one file per group (Maintenance)
        for chunk in source.read_text().split("\ndef ")[1:]:
            name = chunk.split("(", 1)[0]
            if not name.startswith("build_"):
                continue
            if not group_file and not name.startswith(tuple(f"build_{p}" for p in name_prefixes)):
                continue
            literal = re.search(r'_params\.pop\("api-version", "([0-9a-z-]+)"\)', chunk)
            if literal:
                found[name] = literal[1]
    return found


@pytest.mark.parametrize(
    ("package", "prefixes", "provider"),
    [
        ("azure.mgmt.compute", ("virtual_machines_",), "Microsoft.Compute"),
        (
            "azure.mgmt.maintenance",
            ("maintenance_configurations", "configuration_assignments", "apply_update"),
            "Microsoft.Maintenance",
        ),
        ("azure.mgmt.resource.resources", ("tags_",), "Microsoft.Resources"),
    ],
)
def test_every_routed_sdk_operation_defaults_to_a_registered_version(package, prefixes, provider):
    """Statically, from the SDK wheels pinned in requirements.txt: an SDK bump that moves to a
    version the registry lacks fails here, not in Azure."""
    defaults = _builder_defaults(package, prefixes)
    assert defaults, f"no request builders found in {package}"
    unregistered = {name: v for name, v in defaults.items() if v not in REGISTERED[provider]}
    assert unregistered == {}


def test_a_handler_module_registers_its_own_provider():
    from emulator.arm import apiversions
    from emulator.arm.errors import ArmError

    apiversions.check_api_version("zzunregistered.get", "2099-01-01", location="westeurope", locations=[])  # no 500
    apiversions.register_provider("zztest", "Microsoft.ZzTest", "things", ["2024-01-01"])
    try:
        apiversions.check_api_version("zztest.get", "2024-01-01", location="westeurope", locations=["westeurope"])
        with pytest.raises(ArmError) as refused:
            apiversions.check_api_version("zztest.get", "2025-01-01", location="westeurope", locations=["westeurope"])
        assert refused.value.code == "NoRegisteredProviderFound" and "for type 'things'" in refused.value.message
    finally:
        apiversions.REGISTERED.pop("Microsoft.ZzTest", None)
        apiversions._TYPES.pop("zztest", None)
