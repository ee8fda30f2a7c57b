"""Redeploying must not reopen what the app closed (issue 13 item 16).

Why: a deployment PUTs every resource it declares, whole. When every ``azd up`` (and the
postdeploy hook's own provision) declared the rings' maintenance configurations, it wiped the
``kbNumbersToInclude`` / ``packageNameMasksToInclude`` the app pinned on promotion (the next ring
then installs every Critical and Security patch instead of the validated manifest) and moved
``startDateTime`` (from ``utcNow()``) to tomorrow, which can skip today's run. These tests run
the real azd hook scripts against a fake ``azd`` and evaluate main.bicep's decision for the
parameters each provision would really get.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.unit.infra.azd_sim import FakeAzd, resolve_parameters
from tests.unit.infra.bicep_eval import BicepFail, Evaluator
from tests.unit.infra.bicep_static import BicepFile, code_only
from tests.unit.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.unit

MAIN = INFRA / "main.bicep"
START = "2026-12-10 22:00"
FIRST_ENV = {
    "AZURE_ENV_NAME": "prod",
    "AZURE_LOCATION": "westeurope",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "PATCHRINGS_MAINTENANCE_START": START,
}


def decide(params: dict[str, object]) -> Evaluator:
    return Evaluator(MAIN, params)


def test_no_bicep_reads_the_clock(bicep_files: dict[str, BicepFile]) -> None:
    """utcNow() (or a date computed from it) can never reach a configuration's window."""
    for name, bicep in bicep_files.items():
        code = code_only(bicep.text)
        assert not re.search(r"\butcNow\s*\(", code), name
        assert not re.search(r"\bdateTimeAdd\s*\(", code), name
        assert "deploymentTime" not in code, name


def test_only_the_create_decision_declares_a_configuration(bicep_files: dict[str, BicepFile]) -> None:
    callers = [(name, call.symbol) for name, b in bicep_files.items() for call in b.modules
               if call.path.name == "maintenance-configuration.bicep"]
    assert callers == [("main.bicep", "ringConfigurations")]
    main = bicep_files["main.bicep"].text
    assert re.search(r"^module ringConfigurations 'modules/maintenance-configuration\.bicep' = "
                     r"\[for \(ring, i\) in rings: if \(ringCreatesConfiguration\[i\]\) \{", main, re.MULTILINE)
    assert "maintenanceWindow: ringMaintenanceWindows[i]" in main
    # Nothing else in infra/ PUTs a maintenance configuration.
    declaring = [name for name, b in bicep_files.items()
                 if "'Microsoft.Maintenance/maintenanceConfigurations@" in b.text and
                 not re.search(r"'Microsoft\.Maintenance/maintenanceConfigurations@[^']+' existing", b.text)]
    assert declaring == ["modules/maintenance-configuration.bicep"]


def test_azd_up_creates_once_and_no_later_provision_resends(tmp_path: Path) -> None:
    azd = FakeAzd(tmp_path, FIRST_ENV)

    # 1. azd up's provision: the configurations do not exist yet, so they are created, with the
    #    fixed start date.
    first = decide(resolve_parameters(azd.env))
    assert first.var("ringCreatesConfiguration") == [True, True]
    assert {w["startDateTime"] for w in first.var("ringMaintenanceWindows")} == {START}

    # 2. azure.yaml's postprovision hook runs after that successful provision.
    hooks = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))["hooks"]
    azd.run_hook(hooks["postprovision"]["posix"]["run"])
    assert azd.env["PATCHRINGS_CREATE_CONFIGURATIONS"] == "false"

    # 3. the postdeploy hook provisions again to wire the events: nothing is re-sent.
    azd.run_hook(hooks["postdeploy"]["posix"]["run"])
    assert len(azd.provisions) == 1
    wiring = resolve_parameters(azd.provisions[0])
    assert wiring["wireEventSubscriptions"] is True
    assert decide(wiring).var("ringCreatesConfiguration") == [False, False]

    # 4. every later `azd up` / `azd provision` with the same environment: still nothing.
    later = decide(resolve_parameters(azd.env))
    assert later.var("ringCreatesConfiguration") == [False, False]
    assert later.var("ringMaintenanceWindows") == [{}, {}]
    # ... and the rings still name the same configurations (the events and roles keep working).
    assert later.var("ringConfigurationIds") == first.var("ringConfigurationIds")


def test_the_postdeploy_provision_never_resends_even_if_the_postprovision_hook_was_skipped(tmp_path: Path) -> None:
    azd = FakeAzd(tmp_path, FIRST_ENV)  # PATCHRINGS_CREATE_CONFIGURATIONS never set
    hooks = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))["hooks"]
    azd.run_hook(hooks["postdeploy"]["posix"]["run"])
    (env,) = azd.provisions
    assert decide(resolve_parameters(env)).var("ringCreatesConfiguration") == [False, False]


def test_windows_hooks_do_the_same() -> None:
    hooks = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))["hooks"]
    after = (REPO / hooks["postprovision"]["windows"]["run"]).read_text(encoding="utf-8")
    assert "azd env set PATCHRINGS_CREATE_CONFIGURATIONS false" in after
    wire = (REPO / hooks["postdeploy"]["windows"]["run"]).read_text(encoding="utf-8")
    assert wire.index("azd env set PATCHRINGS_CREATE_CONFIGURATIONS false") < wire.index("\nazd provision --no-prompt")


def test_creating_without_a_fixed_start_fails_with_a_clear_message() -> None:
    params = resolve_parameters({**FIRST_ENV, "PATCHRINGS_MAINTENANCE_START": ""})
    with pytest.raises(BicepFail, match="maintenanceStartDateTime is required to create ring ring1"):
        decide(params).var("ringMaintenanceWindows")


def test_referencing_needs_no_start_date() -> None:
    params = resolve_parameters({**FIRST_ENV, "PATCHRINGS_MAINTENANCE_START": "",
                                 "PATCHRINGS_CREATE_CONFIGURATIONS": "false"})
    assert decide(params).var("ringMaintenanceWindows") == [{}, {}]


def test_a_ring_window_start_wins_and_the_rest_comes_from_the_defaults() -> None:
    params = resolve_parameters(FIRST_ENV)
    params["rings"][1]["maintenanceWindow"] = {"recurEvery": "Week Monday", "startDateTime": "2027-01-04 20:00"}
    windows = decide(params).var("ringMaintenanceWindows")
    assert windows[1] == {"startDateTime": "2027-01-04 20:00", "recurEvery": "Week Monday", "duration": "03:55",
                          "timeZone": "UTC", "expirationDateTime": "9999-12-31 23:59"}
    assert windows[0]["startDateTime"] == START


def test_an_existing_id_is_never_created_and_a_new_ring_can_be_added_alone() -> None:
    params = resolve_parameters({**FIRST_ENV, "PATCHRINGS_CREATE_CONFIGURATIONS": "false"})
    params["rings"][0]["existingMaintenanceConfigurationId"] = (
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-patching/providers/"
        "Microsoft.Maintenance/maintenanceConfigurations/mc-ring1")
    params["rings"][0]["createConfiguration"] = True  # ignored: the ring points at an existing one
    params["rings"].append({"name": "ring3", "maintenanceConfigurationName": "mc-ring3", "createConfiguration": True})
    assert decide(params).var("ringCreatesConfiguration") == [False, False, True]


def test_the_parameters_file_and_the_template_agree_on_the_switch() -> None:
    main = Evaluator(MAIN)
    assert main.param("createMaintenanceConfigurations") is False, "a bare redeploy must not re-send configurations"
    assert main.param("maintenanceStartDateTime") == ""
    params = resolve_parameters({})
    assert params["createMaintenanceConfigurations"] is True  # a fresh azd environment creates them
