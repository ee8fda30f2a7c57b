"""The PatchRings custom role (infra/role-actions.json) is well-formed and least-privilege.

Why: the role is the app's whole authority over the fleet. Each action must be a real ARM action
the app performs (spelled as the ARM simulator's route table spells it), carry the activity that
needs it, and nothing may widen it: no wildcards, no write/delete on VMs, no authorization
actions (which would let the app grant itself more).
"""

from __future__ import annotations

import re

import pytest

from tests.unit.infra.bicep_static import BicepFile, load_json
from tests.unit.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.unit

ROLE = load_json(INFRA / "role-actions.json")
ACTIONS: list[str] = ROLE["actions"]
ACTION_FORM = re.compile(r"Microsoft\.[A-Za-z]+(/[A-Za-z]+)+/(read|write|delete|action)")

# Wildcards the role may hold, each with the reason. Empty on purpose: every action is explicit.
JUSTIFIED_WILDCARDS: dict[str, str] = {}

NEVER = (
    "Microsoft.Authorization/",             # could grant itself more
    "Microsoft.Compute/virtualMachines/write",  # could change any VM (size, disks, extensions)
    "Microsoft.Compute/virtualMachines/delete",
    "Microsoft.Compute/virtualMachines/runCommand",
    "Microsoft.Compute/virtualMachines/extensions/",
    "Microsoft.Maintenance/maintenanceConfigurations/delete",
)


def _activity_names() -> set[str]:
    """Activity names from docs/architecture.md's activity contract table."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Activity contract", 1)[1]
    names = set(re.findall(r"^\| `(\w+)`", section, re.MULTILINE))
    names |= {n for pair in re.findall(r"^\| `(\w+)` / `(\w+)`", section, re.MULTILINE) for n in pair}
    return names


def test_actions_are_well_formed_and_unique() -> None:
    assert ACTIONS, "the role has no actions"
    assert len(ACTIONS) == len(set(a.lower() for a in ACTIONS)), "duplicate actions"
    for action in ACTIONS:
        if "*" in action:
            continue
        assert ACTION_FORM.fullmatch(action), f"not an ARM action: {action!r}"


def test_no_wildcard_beyond_the_justified_ones() -> None:
    wild = [a for a in ACTIONS if "*" in a]
    assert set(wild) <= set(JUSTIFIED_WILDCARDS), f"unjustified wildcards: {set(wild) - set(JUSTIFIED_WILDCARDS)}"


def test_nothing_dangerous() -> None:
    for action in ACTIONS + ROLE["subscriptionScope"]["actions"]:
        for prefix in NEVER:
            assert not action.lower().startswith(prefix.lower()), f"{action} is never needed and too powerful"


def test_every_action_is_justified_by_an_activity() -> None:
    justifications = ROLE["justifications"]
    assert set(justifications) == set(ACTIONS), "justifications and actions differ"
    activities = _activity_names()
    assert {"start_install", "retag_vms", "cancel_run"} <= activities, "activity table not found"
    for action, why in justifications.items():
        named = {a for a in activities if re.search(rf"\b{a}\b", why)}
        assert named, f"{action}: the justification names no activity from docs/architecture.md"


def test_every_action_is_one_the_arm_simulator_knows() -> None:
    """The simulator's route table is an independent spelling of ARM's action names."""
    routes = pytest.importorskip("emulator.arm.routes")
    known = {route.action.lower() for route in routes.ROUTES}
    unknown = [a for a in ACTIONS if a.lower() not in known]
    assert unknown == []


def test_the_issue_s_required_actions_are_present() -> None:
    lowered = {a.lower() for a in ACTIONS}
    for needed in (
        "Microsoft.Compute/virtualMachines/read",
        "Microsoft.Compute/virtualMachines/instanceView/read",
        "Microsoft.Compute/virtualMachines/installPatches/action",
        "Microsoft.Compute/virtualMachines/assessPatches/action",
        "Microsoft.Resources/tags/write",
        "Microsoft.Maintenance/maintenanceConfigurations/write",
        "Microsoft.Maintenance/configurationAssignments/write",
        "Microsoft.Maintenance/applyUpdates/write",
    ):
        assert needed.lower() in lowered, needed


def test_the_fleet_reader_role_is_a_narrow_subset() -> None:
    fleet = ROLE["subscriptionScope"]
    reads, writes = fleet["actions"], fleet["dynamicScopeActions"]
    assert reads and set(reads) <= set(ACTIONS)
    assert writes and set(writes) <= set(ACTIONS)
    # On a whole subscription the role may only read, and write nothing but dynamic scopes.
    assert all(a.endswith("/read") for a in reads)
    assert all(a.startswith("Microsoft.Maintenance/configurationAssignments/") for a in writes)
    assert set(fleet["justifications"]) == set(reads) | set(writes)


def test_role_bicep_uses_the_json_and_grants_no_data_actions(bicep_files: dict[str, BicepFile]) -> None:
    role = bicep_files["modules/rollout-role.bicep"]
    assert role.target_scope == "subscription"
    assert "actions: role.actions" in role.text
    assert ("actions: concat(role.subscriptionScope.actions, allowDynamicScopeWrites ? "
            "role.subscriptionScope.dynamicScopeActions : [])") in role.text
    assert re.search(r"type:\s*'CustomRole'", role.text)
    assert len(re.findall(r"dataActions:\s*\[\]", role.text)) == 2
    assert "assignableScopes: assignableScopes" in role.text


def test_the_role_is_assigned_at_every_rollout_scope(bicep_files: dict[str, BicepFile]) -> None:
    main = bicep_files["main.bicep"].text
    assert "length(split(scope, '/')) == 5" in main  # resource-group scopes
    assert "length(split(scope, '/')) == 3" in main  # subscription scopes
    assert re.search(r"\[for scope in rolloutResourceGroupScopes:", main)
    assert re.search(r"\[for scope in rolloutSubscriptionScopes:", main)
    assert re.search(r"\[for subscriptionId in fleetSubscriptionIds:", main)
    # Resource groups of configurations created by the template are added to the rollout scopes.
    assert ("var effectiveRolloutScopes = union(rolloutScopes, filter(createdConfigurationScopes, "
            "scope => !empty(scope)))") in main


def test_builtin_role_ids_are_guids_and_the_ledger_gets_table_data_contributor(
    bicep_files: dict[str, BicepFile],
) -> None:
    roles = load_json(INFRA / "builtin-roles.json")
    for key, entry in roles.items():
        if key.startswith("$"):
            continue
        assert re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", entry["id"]), key
        assert entry["why"]
    assert roles["storageTableDataContributor"]["id"] == "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
    app_roles = bicep_files["modules/app-roles.bicep"].text
    for key in ("storageBlobDataOwner", "storageQueueDataContributor", "storageTableDataContributor"):
        assert f"roles.{key}.id" in app_roles, key
