"""The deployment's edges (issue 13 item 17): each checked against the app or Microsoft's docs.

* the event subscription waits for its dead-letter role assignment;
* a ring's dynamic scope carries the name the app looks up (activities/plan.py assignment_name)
  and is declared only for retag rings: on an enableConfiguration ring the assignment IS the
  gate the app opens and closes, so a standing one would leave the ring open for good;
* Flex Consumption's maximumInstanceCount bounds are validated (current docs: 1..1000);
* a scope leaves the custom roles only after its role assignments are deleted (script + order).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from activities.plan import assignment_name
from patchrings.domain.plan import load_plan
from tests.unit.infra.azd_sim import FakeAzd, resolve_parameters
from tests.unit.infra.bicep_eval import BicepFail, Evaluator
from tests.unit.infra.bicep_static import BicepFile, _block_after
from tests.unit.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.unit

MAIN = INFRA / "main.bicep"
PLAN = json.loads((REPO / "plans" / "default.json").read_text(encoding="utf-8"))
ENV = {"AZURE_ENV_NAME": "prod", "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001"}


def names(params: dict[str, Any], plan: dict[str, Any] | None = None) -> list[str]:
    files = {} if plan is None else {"../plans/default.json": plan}
    return Evaluator(MAIN, params, files=files).var("ringDynamicScopeNames")


# ------------------------------------------------------------------ dead letters before delivery
def test_the_subscription_depends_on_its_dead_letter_role_assignment(bicep_files: dict[str, BicepFile]) -> None:
    text = bicep_files["modules/ring-events.bicep"].text  # comments stripped
    start = text.index("resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@")
    block = _block_after(text, start)
    depends = re.search(r"dependsOn:\s*\[([^\]]*)\]", block)
    assert depends and depends.group(1).split() == ["deadLetterWriter"]
    writer = _block_after(text, text.index("module deadLetterWriter 'deadletter-role.bicep'"))
    assert "principalId: topic.identity.principalId" in writer
    assert "containerName: events.deadLetterContainerName" in writer


# ------------------------------------------------------------------ dynamic scopes
def test_the_declared_dynamic_scope_has_the_name_the_app_looks_up(bicep_files: dict[str, BicepFile]) -> None:
    declared = names(resolve_parameters(ENV))
    plan = load_plan(PLAN)
    expected = [assignment_name(plan.ring(r["name"])) if r.get("dynamicScope") else ""
                for r in resolve_parameters(ENV)["rings"]]
    assert declared == expected == ["patchrings-ring1", ""]
    assert "name: ringDynamicScopeNames[i]" in bicep_files["main.bicep"].text


def test_the_plans_assignment_name_wins() -> None:
    plan = copy.deepcopy(PLAN)
    plan["rings"][1]["open"]["assignmentName"] = "ring1-open"
    assert names(resolve_parameters(ENV), plan)[0] == "ring1-open" == assignment_name(load_plan(plan).ring("ring1"))


def test_an_enable_configuration_ring_may_not_have_a_standing_dynamic_scope() -> None:
    params = resolve_parameters(ENV)
    params["rings"][1]["dynamicScope"] = {"tagName": "patchRing", "tagValue": "ring2"}
    assert load_plan(PLAN).ring("ring2").open_mode == "enableConfiguration"
    with pytest.raises(BicepFail, match=r"ring2 declares a dynamicScope, but its open\.mode .* is not retag"):
        names(params)


def test_a_dynamic_scope_must_match_the_plan() -> None:
    params = resolve_parameters(ENV)
    params["rings"][0]["dynamicScope"]["tagValue"] = "ring1-hold"  # would patch the held VMs
    with pytest.raises(BicepFail, match=r"must select the plan ring's members\.tag"):
        names(params)
    params = resolve_parameters(ENV)
    params["rings"].append({"name": "ring9", "dynamicScope": {"tagName": "patchRing", "tagValue": "ring9"}})
    with pytest.raises(BicepFail, match=r"plans/default\.json has no ring ring9"):
        names(params)


def test_the_rollout_role_can_read_the_scope_the_app_looks_up() -> None:
    """The app GETs the ring's subscription-level assignment by that name (members.py)."""
    members = (REPO / "activities" / "members.py").read_text(encoding="utf-8")
    assert "configuration_assignments_for_subscriptions.get(assignment_name(ring))" in members


# ------------------------------------------------------------------ Flex Consumption scale bound
def _bounds(text: str, param: str) -> tuple[int, int, int]:
    m = re.search(rf"@minValue\((\d+)\)\s*@maxValue\((\d+)\)\s*param {param} int = (\d+)", text)
    assert m, f"{param} has no @minValue/@maxValue"
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def test_maximum_instance_count_is_bounded_as_the_docs_say(bicep_files: dict[str, BicepFile]) -> None:
    # learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out (ms.date
    # 08/03/2026): "Currently the lowest maximum instance count value is 1, and the highest
    # supported maximum instance count value is 1000." (The 2024 preview page said 40.)
    main = _bounds(bicep_files["main.bicep"].text, "maximumInstanceCount")
    module = _bounds(bicep_files["modules/function-app.bicep"].text, "maximumInstanceCount")
    assert main[:2] == module[:2] == (1, 1000)
    assert main[0] <= main[2] <= main[1] and main[2] == module[2]
    assert "maximumInstanceCount: maximumInstanceCount" in bicep_files["main.bicep"].text


# ------------------------------------------------------------------ taking a scope away
def test_removing_a_scope_deletes_its_assignments_first(tmp_path: Path) -> None:
    azd = FakeAzd(tmp_path, {
        "AZURE_FUNCTION_APP_PRINCIPAL_ID": "p1",
        "PATCHRINGS_ROLLOUT_ROLE_ID": "/subscriptions/s0/providers/Microsoft.Authorization/roleDefinitions/r-rollout",
        "PATCHRINGS_FLEET_ROLE_GUID": "r-fleet",
    })
    scope = "/subscriptions/s1/resourceGroups/rg-old"
    out = azd.run_hook("infra/scripts/remove-scope.sh", scope)
    deletes = [c[1] for c in azd.calls if c[0] == "az"]
    assert deletes == [
        ["role", "assignment", "delete", "--assignee-object-id", "p1", "--role",
         f"/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/{guid}", "--scope", scope]
        for guid in ("r-rollout", "r-fleet")
    ]
    assert azd.provisions == []  # the provision comes after the parameters file is edited
    assert "remove /subscriptions/s1/resourceGroups/rg-old from rolloutScopes / fleetSubscriptionIds" in out.stdout


def test_the_outputs_the_removal_script_reads_exist(bicep_files: dict[str, BicepFile]) -> None:
    outputs = set(bicep_files["main.bicep"].outputs)
    script = (INFRA / "scripts" / "remove-scope.sh").read_text(encoding="utf-8")
    for name in re.findall(r"azd env get-value (\w+)", script):
        assert name in outputs, name
    assert (INFRA / "scripts" / "remove-scope.ps1").is_file()
