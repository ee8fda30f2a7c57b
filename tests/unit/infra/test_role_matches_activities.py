"""The custom roles hold exactly the ARM actions the activities' SDK calls need (static twin of
tests/functional/test_least_privilege.py).

Why: the functional test proves it on recorded traffic, but only for the flows it runs. This
test reads every Azure SDK call in the app's code (activities/, triggers/, orchestrators/,
patchrings/) and maps each to its RBAC action with the table below, so a new call without a
matching role action, or a role action no code needs any more, fails in the unit tier. A call
the table does not know fails too: extend the table (and the role) deliberately.

LIMITATIONS: calls are found by name through the AST (``<x>.<operation group>.<method>(...)``,
or a local variable bound to an operation group, or ``send_arm_request("METHOD", ...)``); calls
built dynamically (``getattr``) are not seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.infra.bicep_static import load_json
from tests.unit.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.unit

ROLE = load_json(INFRA / "role-actions.json")
FLEET = ROLE["subscriptionScope"]

_VM = "Microsoft.Compute/virtualMachines"
_OPS = "Microsoft.Compute/locations/operations/read"  # LRO status polling
_CA = "Microsoft.Maintenance/configurationAssignments"
_MC = "Microsoft.Maintenance/maintenanceConfigurations"
_AU = "Microsoft.Maintenance/applyUpdates"
_TAGS = "Microsoft.Resources/tags"
_ARC = "Microsoft.HybridCompute/machines"
_ARC_OPS = "Microsoft.HybridCompute/locations/updateCenterOperationResults/read"  # Arc LRO Location polling

# (operation group, method) -> RBAC actions the call needs.
CALL_ACTIONS: dict[tuple[str, str], set[str]] = {
    ("virtual_machines", "get"): {f"{_VM}/read"},
    ("virtual_machines", "list"): {f"{_VM}/read"},
    ("virtual_machines", "list_all"): {f"{_VM}/read"},
    ("virtual_machines", "instance_view"): {f"{_VM}/instanceView/read"},
    ("virtual_machines", "begin_install_patches"): {f"{_VM}/installPatches/action", _OPS},
    ("virtual_machines", "begin_assess_patches"): {f"{_VM}/assessPatches/action", _OPS},
    # Azure Arc-enabled servers (azure-mgmt-hybridcompute ``machines``), issue 12.
    ("machines", "get"): {f"{_ARC}/read"},
    ("machines", "list_by_subscription"): {f"{_ARC}/read"},
    ("machines", "list_by_resource_group"): {f"{_ARC}/read"},
    ("machines", "begin_install_patches"): {f"{_ARC}/installPatches/action", _ARC_OPS},
    ("machines", "begin_assess_patches"): {f"{_ARC}/assessPatches/action", _ARC_OPS},
    ("tags", "get_at_scope"): {f"{_TAGS}/read"},
    ("tags", "begin_update_at_scope"): {f"{_TAGS}/write"},
    ("tags", "begin_create_or_update_at_scope"): {f"{_TAGS}/write"},
    ("tags", "begin_delete_at_scope"): {f"{_TAGS}/delete"},
    ("maintenance_configurations", "get"): {f"{_MC}/read"},
    ("maintenance_configurations", "list"): {f"{_MC}/read"},
    ("maintenance_configurations", "create_or_update"): {f"{_MC}/write"},
    ("maintenance_configurations", "update"): {f"{_MC}/write"},
    ("apply_updates", "get"): {f"{_AU}/read"},
    ("apply_updates", "list"): {f"{_AU}/read"},
    ("apply_updates", "create_or_update"): {f"{_AU}/write"},
    # The raw requests are the cancel of a run, sent to its correlationId (no SDK operation).
    ("send_arm_request", "GET"): {f"{_AU}/read"},
    ("send_arm_request", "PUT"): {f"{_AU}/write"},
    # Resource Graph: scheduled runs' per-VM results (patchinstallationresources), ring members and
    # power states (resources), one POST per page. ARG returns only the rows of resources the caller
    # may read, so a query over a subscription's VMs and Arc machines needs their read actions there.
    ("resource_graph", "resources"): {"Microsoft.ResourceGraph/resources/read", f"{_VM}/read", f"{_ARC}/read"},
}
for _group in (
    "configuration_assignments",
    "configuration_assignments_for_subscriptions",
    "configuration_assignments_for_resource_group",
    "configuration_assignments_within_subscription",
):
    CALL_ACTIONS[(_group, "get")] = {f"{_CA}/read"}
    CALL_ACTIONS[(_group, "get_parent")] = {f"{_CA}/read"}
    CALL_ACTIONS[(_group, "list")] = {f"{_CA}/read"}
    CALL_ACTIONS[(_group, "create_or_update")] = {f"{_CA}/write"}
    CALL_ACTIONS[(_group, "create_or_update_parent")] = {f"{_CA}/write"}
    CALL_ACTIONS[(_group, "update")] = {f"{_CA}/write"}
    CALL_ACTIONS[(_group, "delete")] = {f"{_CA}/delete"}
    CALL_ACTIONS[(_group, "delete_parent")] = {f"{_CA}/delete"}

GROUPS = {group for group, _ in CALL_ACTIONS} - {"send_arm_request"}

# Calls ARM authorizes on the subscription (their paths have no resource group): their actions
# must be in the fleet-reader role, which is the one assigned on subscriptions.
SUBSCRIPTION_LEVEL = {
    ("virtual_machines", "list_all"),
    ("machines", "list_by_subscription"),
    ("configuration_assignments_within_subscription", "list"),
    ("configuration_assignments_for_subscriptions", "get"),
    ("configuration_assignments_for_subscriptions", "list"),
    ("configuration_assignments_for_subscriptions", "create_or_update"),
    ("configuration_assignments_for_subscriptions", "update"),
    ("configuration_assignments_for_subscriptions", "delete"),
    ("resource_graph", "resources"),  # POST /providers/Microsoft.ResourceGraph/resources: no resource group
}

SOURCE_DIRS = ("activities", "triggers", "orchestrators", "patchrings")


def _calls_in(tree: ast.AST) -> set[tuple[str, str]]:
    """(group, method) pairs of SDK calls, plus ("send_arm_request", METHOD) raw requests."""
    found: set[tuple[str, str]] = set()
    # Names bound to an operation group are resolved per function (the same name, e.g. ``ops``,
    # is bound to different groups in different functions); direct calls are found anywhere.
    for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]:
        bound: dict[str, set[str]] = {}  # a name may be bound to several groups in one function
        for node in ast.walk(scope):
            if scope is tree:
                break
            value = node.value if isinstance(node, ast.Assign) else None
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
                value = value.func  # a client built by a call, e.g. ``client = clients.resource_graph()``
            if isinstance(node, ast.Assign) and isinstance(value, ast.Attribute) and value.attr in GROUPS:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        bound.setdefault(target.id, set()).add(value.attr)
        for node in ast.walk(scope):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner, method = node.func.value, node.func.attr
            if method == "send_arm_request" and node.args and isinstance(node.args[0], ast.Constant):
                found.add(("send_arm_request", str(node.args[0].value).upper()))
            elif isinstance(owner, ast.Attribute) and owner.attr in GROUPS:
                found.add((owner.attr, method))
            elif isinstance(owner, ast.Name) and owner.id in bound:
                found |= {(group, method) for group in bound[owner.id]}
    return found


def _app_calls() -> dict[tuple[str, str], list[str]]:
    calls: dict[tuple[str, str], list[str]] = {}
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for call in _calls_in(tree):
                calls.setdefault(call, []).append(str(path.relative_to(REPO)))
    return calls


CALLS = _app_calls()


def test_the_scan_finds_the_app_s_azure_calls() -> None:
    assert ("virtual_machines", "begin_install_patches") in CALLS, "the scan found no installPatches call"
    assert ("machines", "begin_install_patches") in CALLS, "the scan found no Arc installPatches call"
    assert len(CALLS) >= 5, CALLS


def test_every_sdk_call_is_known_to_the_action_table() -> None:
    unknown = {f"{g}.{m} in {', '.join(CALLS[(g, m)])}" for g, m in CALLS if (g, m) not in CALL_ACTIONS}
    assert unknown == set(), "map these calls to their RBAC actions (and grant them in infra/role-actions.json)"


def test_every_action_a_call_needs_is_in_the_role() -> None:
    needed = {a for call in CALLS if call in CALL_ACTIONS for a in CALL_ACTIONS[call]}
    missing = needed - set(ROLE["actions"])
    assert missing == set(), f"calls need actions the rollout role lacks: {sorted(missing)}"


def test_the_role_holds_nothing_no_call_needs() -> None:
    needed = {a for call in CALLS if call in CALL_ACTIONS for a in CALL_ACTIONS[call]}
    unused = set(ROLE["actions"]) - needed
    assert unused == set(), f"role actions no code needs (remove them): {sorted(unused)}"


def test_subscription_level_calls_are_covered_by_the_fleet_reader_role() -> None:
    fleet = set(FLEET["actions"]) | set(FLEET["dynamicScopeActions"])
    problems = {
        f"{g}.{m} needs {sorted(CALL_ACTIONS[(g, m)] - fleet)}"
        for g, m in CALLS
        if (g, m) in SUBSCRIPTION_LEVEL and not CALL_ACTIONS[(g, m)] <= fleet
    }
    assert problems == set()
    needed = {a for call in CALLS if call in SUBSCRIPTION_LEVEL for a in CALL_ACTIONS[call]}
    needed |= {ops for ops in (_OPS, _ARC_OPS) if any(ops in CALL_ACTIONS.get(c, set()) for c in CALLS)}
    unused = fleet - needed
    assert unused == set(), f"fleet-reader actions no subscription-level call needs: {sorted(unused)}"


def test_the_scanner_sees_calls_through_bound_operation_groups(tmp_path: Path) -> None:
    tree = ast.parse(
        "def f(clients):\n"
        "    ops = clients.maintenance('s').configuration_assignments_for_subscriptions\n"
        "    current = (lambda ops=ops: ops.get('n'))()\n"
        "    ops.delete('n')\n"
        "    ops = clients.maintenance('s').configuration_assignments\n"
        "    ops.create_or_update('rg', 'p', 't', 'vm', 'n', {})\n"
        "    clients.send_arm_request('PUT', cid, '2023-09-01-preview')\n"
        "    clients.compute('s').virtual_machines.instance_view('rg', 'vm')\n"
    )
    assert _calls_in(tree) == {
        ("configuration_assignments_for_subscriptions", "get"),
        ("configuration_assignments_for_subscriptions", "delete"),
        ("configuration_assignments_for_subscriptions", "create_or_update"),
        ("configuration_assignments", "get"),
        ("configuration_assignments", "delete"),
        ("configuration_assignments", "create_or_update"),
        ("send_arm_request", "PUT"),
        ("virtual_machines", "instance_view"),
    }
