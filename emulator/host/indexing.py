"""Index a Python v2-model function app the way the Python worker does (reference §7).

Why: the app must run unmodified, so the host imports ``function_app.py``, finds the one
``func.FunctionRegister`` (``df.DFApp``) in it and asks it for ``get_functions()``; blueprints
are already folded in by ``register_functions``. Durable names come from the trigger's
``orchestration=`` / ``activity=`` property, else the function name, compared
case-insensitively. Any binding this host cannot serve is refused at start, naming the
function and the binding, instead of failing later at invocation time.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

__all__ = ["AppIndex", "FunctionEntry", "IndexError_", "index_app"]

SUPPORTED_TRIGGERS = {"httpTrigger", "orchestrationTrigger", "activityTrigger", "eventGridTrigger", "timerTrigger"}
SUPPORTED_BINDINGS = SUPPORTED_TRIGGERS | {"http", "durableClient"}


class IndexError_(Exception):
    """The app cannot be served; the message names the function and binding (code HOST_INDEX)."""

    code = "HOST_INDEX"


@dataclass
class FunctionEntry:
    """One indexed function and what the host needs to invoke it."""

    name: str
    trigger_type: str
    trigger_name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    user_function: Any
    client_name: str | None = None
    durable_name: str | None = None
    wants_context: bool = False

    @property
    def is_coroutine(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)


@dataclass
class AppIndex:
    """Lower-case name maps for each kind of function."""

    app_dir: Path
    functions: dict[str, FunctionEntry] = field(default_factory=dict)  # by lower-case function name
    orchestrators: dict[str, FunctionEntry] = field(default_factory=dict)  # by lower-case durable name
    activities: dict[str, FunctionEntry] = field(default_factory=dict)

    def function(self, name: str) -> FunctionEntry | None:
        return self.functions.get(name.lower())

    def orchestrator(self, name: str) -> FunctionEntry | None:
        return self.orchestrators.get(name.lower())

    def activity(self, name: str) -> FunctionEntry | None:
        return self.activities.get(name.lower())

    @property
    def http_functions(self) -> list[FunctionEntry]:
        return [f for f in self.functions.values() if f.trigger_type == "httpTrigger"]

    @property
    def timer_functions(self) -> list[FunctionEntry]:
        return [f for f in self.functions.values() if f.trigger_type == "timerTrigger"]


def _plain(value: Any) -> Any:
    """Enum-valued binding properties as their JSON values."""
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "value", str(v))))


def load_module(app_dir: Path, module: str = "function_app") -> Any:
    """Import ``function_app.py`` from ``app_dir`` with the app folder on ``sys.path`` (as the worker does)."""
    path = app_dir / f"{module}.py"
    if not path.is_file():
        raise IndexError_(f"no {module}.py in {app_dir}")
    app_path = str(app_dir.resolve())
    if app_path not in sys.path:
        sys.path.insert(0, app_path)
    # a fresh import each time: tests start several hosts on different apps in one process
    sys.modules.pop(module, None)
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise IndexError_(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    return mod


def find_register(mod: Any) -> func.FunctionRegister:
    """The single FunctionRegister instance in the module; more than one is an error, as in the worker."""
    registers = [v for v in vars(mod).values() if isinstance(v, func.FunctionRegister)]
    if not registers:
        raise IndexError_("function_app.py defines no FunctionApp/DFApp instance")
    if len(registers) > 1:
        raise IndexError_("function_app.py defines more than one FunctionApp/DFApp instance")
    return registers[0]


def index_app(app_dir: Path, module: str = "function_app") -> AppIndex:
    """Import and index the app; raise :class:`IndexError_` for anything unsupported."""
    mod = load_module(app_dir, module)
    register = find_register(mod)
    try:
        functions = register.get_functions()
    except ValueError as exc:  # the library's own validation (duplicate names, no trigger, ...)
        raise IndexError_(f"function app failed validation: {exc}") from exc
    index = AppIndex(app_dir=app_dir)
    for fn in functions:
        name = str(fn.get_function_name())
        bindings = _plain(fn.get_bindings_dict()["bindings"])
        trigger = next((b for b in bindings if str(b.get("type", "")).endswith("Trigger")), None)
        if trigger is None:
            raise IndexError_(f"function '{name}': no trigger binding")
        for b in bindings:
            if b["type"] not in SUPPORTED_BINDINGS:
                raise IndexError_(
                    f"function '{name}': binding '{b.get('name')}' of type '{b['type']}' is not supported "
                    f"by the local host (supported: {', '.join(sorted(SUPPORTED_BINDINGS))})"
                )
        client = next((b["name"] for b in bindings if b["type"] == "durableClient"), None)
        user_function = fn.get_user_function()
        raw = getattr(user_function, "client_function", user_function)
        try:
            params = inspect.signature(raw).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        binding_names = {b["name"] for b in bindings}
        entry = FunctionEntry(
            name=name,
            trigger_type=trigger["type"],
            trigger_name=trigger["name"],
            trigger=trigger,
            bindings=bindings,
            user_function=user_function,
            client_name=client,
            wants_context="context" in params and "context" not in binding_names,
        )
        if entry.client_name and not inspect.iscoroutinefunction(raw):
            raise IndexError_(
                f"function '{name}': a function with a durable client binding must be 'async def' "
                "(the SDK's client wrapper awaits it)"
            )
        key = name.lower()
        if key in index.functions:
            raise IndexError_(f"function '{name}' is defined twice (names are case-insensitive)")
        index.functions[key] = entry
        if entry.trigger_type == "orchestrationTrigger":
            entry.durable_name = trigger.get("orchestration") or name
            _add_unique(index.orchestrators, entry, "orchestrator")
        elif entry.trigger_type == "activityTrigger":
            entry.durable_name = trigger.get("activity") or name
            _add_unique(index.activities, entry, "activity")
    return index


def _add_unique(table: dict[str, FunctionEntry], entry: FunctionEntry, kind: str) -> None:
    assert entry.durable_name is not None
    key = entry.durable_name.lower()
    if key in table:
        raise IndexError_(
            f"function '{entry.name}': {kind} name '{entry.durable_name}' is already used by "
            f"function '{table[key].name}'"
        )
    table[key] = entry
