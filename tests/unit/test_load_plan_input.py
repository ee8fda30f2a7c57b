"""load_plan with a plan in the rollout's input runs the API's inline-plan check (issue 13.9 hole)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from activities.plan import load_plan_core
from patchrings.domain.plan import load_plan_file, plan_weakenings
from patchrings.errors import PlanForbidden, PlanInvalid
from patchrings.settings import Settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def deployed() -> dict[str, Any]:
    return json.loads((REPO / "plans" / "default.json").read_text())


def test_without_a_plan_in_the_input_the_deployed_plan_is_loaded() -> None:
    settings = Settings(app_dir=REPO)
    assert load_plan_core(settings, {}) == load_plan_file(settings.plan_file).to_dict()
    assert load_plan_core(settings) == load_plan_file(settings.plan_file).to_dict()


def test_a_plan_in_the_input_is_refused_while_inline_plans_are_off() -> None:
    with pytest.raises(PlanForbidden, match="inline plans are off") as err:
        load_plan_core(Settings(app_dir=REPO), {"plan": deployed()})
    assert err.value.field == "plan"


def test_a_weakening_plan_is_refused_with_every_problem_even_when_inline_plans_are_on() -> None:
    weak = deployed()
    weak["rings"][1]["approval"] = {"mode": "none"}
    weak["rings"][1].setdefault("gate", {})["allowUncoveredOs"] = True
    with pytest.raises(PlanForbidden, match="weakens the deployed plan") as err:
        load_plan_core(Settings(app_dir=REPO, inline_plans=True), {"plan": weak})
    fields = {d["field"] for d in err.value.details}
    assert {"plan.rings[1].approval.mode", "plan.rings[1].gate.allowUncoveredOs"} <= fields


def test_a_restricting_plan_is_loaded_when_inline_plans_are_on_and_an_invalid_one_is_refused() -> None:
    narrower = deployed()
    narrower["rings"] = narrower["rings"][:2]
    plan = load_plan_core(Settings(app_dir=REPO, inline_plans=True), {"plan": narrower})
    assert [r["name"] for r in plan["rings"]] == [r["name"] for r in deployed()["rings"][:2]]
    with pytest.raises(PlanForbidden):
        load_plan_core(Settings(app_dir=REPO, inline_plans=True), {"plan": {"rings": []}})
    with pytest.raises(PlanForbidden):
        load_plan_core(Settings(app_dir=REPO, inline_plans=True), {"plan": "not a plan"})


def test_the_api_module_uses_the_domain_rules() -> None:
    from triggers import inline_plans

    assert inline_plans.plan_weakenings is plan_weakenings
    assert issubclass(PlanForbidden, Exception) and not issubclass(PlanForbidden, PlanInvalid)
