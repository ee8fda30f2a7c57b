"""function_app.py and host.json: every durable name the orchestrators use is registered.

Why: orchestrators call activities and sub-orchestrators by string name; a renamed activity
would only fail at run time, in the middle of a rollout. This indexes the real app the way the
Functions worker does (``app.get_functions()``) and checks the names, routes and host settings.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrators import names
from patchrings.errors import PlanInvalid, SettingsInvalid

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


# Valid settings that need no network (the app validates settings and plan at import).
ENV = {
    "PATCHRINGS_LEDGER_CONNECTION": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=a2V5;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
}


def _import_app(env: dict[str, str]) -> Any:
    """Import a fresh ``function_app`` with exactly ``env`` as its PATCHRINGS_* settings."""
    from patchrings import deps

    saved = {k: v for k, v in os.environ.items() if k.startswith("PATCHRINGS_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    sys.modules.pop("function_app", None)
    deps.reset()
    try:
        # By path, not by name: a host started earlier in the same pytest process leaves its
        # own app folder (e.g. tests/functional/fakeapp) on sys.path with a function_app.py.
        spec = importlib.util.spec_from_file_location("function_app", REPO / "function_app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["function_app"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        for key in [k for k in os.environ if k.startswith("PATCHRINGS_")]:
            del os.environ[key]
        os.environ.update(saved)
        sys.modules.pop("function_app", None)
        deps.reset()


@functools.cache
def _functions() -> tuple[Any, ...]:
    """Index once: ``get_functions()`` validates names cumulatively, so a second call would fail."""
    return tuple(_import_app(ENV).app.get_functions())


def test_bad_settings_or_plan_stop_the_app_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsInvalid) as bad_settings:
        _import_app({**ENV, "PATCHRINGS_LEDGER_PREFIX": "x", "PATCHRINGS_ARM_AUTH": "password"})
    message = str(bad_settings.value)
    assert "PATCHRINGS_LEDGER_PREFIX" in message and "PATCHRINGS_ARM_AUTH" in message
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "name": "broken", "rings": []}))
    with pytest.raises(PlanInvalid):
        _import_app({**ENV, "PATCHRINGS_PLAN_PATH": str(plan)})


def _durable_name(fn: Any) -> tuple[str, str]:
    trigger = fn.get_trigger()
    kind = trigger.get_binding_name()
    if kind == "orchestrationTrigger":
        return kind, getattr(trigger, "orchestration", None) or fn.get_function_name()
    if kind == "activityTrigger":
        return kind, getattr(trigger, "activity", None) or fn.get_function_name()
    return kind, fn.get_function_name()


def test_every_name_the_orchestrators_call_is_registered() -> None:
    registered = {_durable_name(fn) for fn in _functions()}
    orchestrations = {n for k, n in registered if k == "orchestrationTrigger"}
    activities = {n for k, n in registered if k == "activityTrigger"}
    wanted_orchestrations = {names.ROLLOUT, names.RING_DIRECT, names.WAVE, names.VERIFY, names.GUARD,
                             names.DRY_RUN_RING, names.RUN_RESULTS, names.RING_GATE}
    wanted_activities = {value for key, value in vars(names).items()
                         if key.isupper() and not key.startswith("EV_") and value not in wanted_orchestrations}
    assert wanted_orchestrations <= orchestrations
    assert wanted_activities - activities == set()


def test_http_routes_and_event_grid_trigger() -> None:
    routes = {}
    triggers = {}
    for fn in _functions():
        trigger = fn.get_trigger()
        triggers[fn.get_function_name()] = trigger.get_binding_name()
        if trigger.get_binding_name() == "httpTrigger":
            methods = sorted(str(getattr(m, "value", m)).upper() for m in trigger.methods or [])
            routes[trigger.route] = (methods, str(getattr(trigger.auth_level, "value", trigger.auth_level)).lower())
    assert routes == {
        "rollouts": (["GET", "POST"], "function"),
        "rollouts/{id}": (["GET"], "function"),
        "rollouts/{id}/rings/{ring}/{decision}": (["POST"], "function"),
        "rollouts/{id}/halt": (["POST"], "function"),
        "rollouts/{id}/resume": (["POST"], "function"),
        "plans/validate": (["POST"], "function"),
        "events": (["OPTIONS", "POST"], "function"),  # Event Grid WebHook delivery when App Service auth is on
        "openapi.json": (["GET"], "function"),  # the OpenAPI 3.1 document (triggers/openapi.py)
        "compliance": (["GET"], "function"),  # missing Critical/Security patches per ring (issue 12)
        # The operator page: anonymous at the Functions level (no key in a browser), gated by the
        # App Service principal inside every route (triggers/ui.py; fail closed otherwise).
        "ui": (["GET"], "anonymous"),
        "ui/rollouts/{id}": (["GET"], "anonymous"),
        "ui/assets/{name}": (["GET"], "anonymous"),
        "ui/me": (["GET"], "anonymous"),
        "ui/api/rollouts": (["GET"], "anonymous"),
        "ui/api/rollouts/{id}": (["GET"], "anonymous"),
        "ui/api/rollouts/{id}/rings/{ring}/{decision}": (["POST"], "anonymous"),
        "ui/api/rollouts/{id}/halt": (["POST"], "anonymous"),
        "ui/api/rollouts/{id}/resume": (["POST"], "anonymous"),
    }
    assert triggers["on_maintenance_event"] == "eventGridTrigger"


def test_host_json_meets_the_app_and_infra_requirements() -> None:
    host = json.loads((REPO / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["functionTimeout"] == "00:10:00"
    durable = host["extensions"]["durableTask"]
    assert durable["storageProvider"]["type"] == "AzureStorage"
    assert durable["hubName"].isalnum() and 3 <= len(durable["hubName"]) <= 45
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    assert host["extensions"]["http"]["routePrefix"] == "api"
