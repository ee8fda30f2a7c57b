"""Index a Python v2-model function app the way the Python worker does (reference §7).

Why: the app must run unmodified, so the host imports ``function_app.py``, finds the one
``func.FunctionRegister`` (``df.DFApp``) in it and asks it for ``get_functions()``; blueprints
are already folded in by ``register_functions``. Durable names come from the trigger's
``orchestration=`` / ``activity=`` property, else the function name, compared
case-insensitively. Any binding this host cannot serve is refused at start, naming the
function and the binding, instead of failing later at invocation time.

Every function also goes through the Python worker's own loader,
``azure_functions_runtime.functions.Registry.add_indexed_function`` (the ``azure-functions-runtime``
wheel ships the worker's function-loading code), so the host refuses exactly what the worker
refuses: a PEP 585 annotation such as ``payload: dict[str, Any]`` fails with the worker's
``FunctionLoadError`` (``... has invalid non-type annotation ...``), and, as in Azure, one refused
function aborts indexing of the whole app ("Worker failed to index functions"; reference §7.1).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

__all__ = ["AppIndex", "FunctionEntry", "IndexError_", "index_app", "worker_validate"]

WORKER_PACKAGE = "azure-functions-runtime==1.3.0"

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
    worker_validate(functions)
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


# The worker's gRPC enums the loader compares binding directions and data types with
# (FunctionRpc.proto: BindingInfo.Direction in=0/out=1/inout=2, DataType undefined=0/string=1/...);
# ``azure.functions`` bindings report the same integer values.
_PROTOS = types.SimpleNamespace(BindingInfo=types.SimpleNamespace(
    out=1, inout=2, undefined=0, string=1, binary=2, stream=3, **{"in": 0}))


def worker_validate(functions: list[Any]) -> None:
    """Run every function through the worker's ``Registry.add_indexed_function``; the first refusal aborts.

    Raises :class:`IndexError_` naming the function and carrying the worker's message, or naming
    the missing package when the worker code is not installed (``make bootstrap`` installs it).
    """
    try:
        from azure_functions_runtime.bindings import meta as worker_meta
        from azure_functions_runtime.functions import Registry
    except ImportError as exc:
        raise IndexError_(
            f"the Python worker's function loader is not installed ({exc}); the host validates every "
            f"function with it, as Azure does. Install it with: pip install --no-deps "
            f"--ignore-requires-python {WORKER_PACKAGE} (make bootstrap does)"
        ) from exc
    worker_meta.load_binding_registry()
    registry = Registry()
    for fn in functions:
        try:
            registry.add_indexed_function(fn, _PROTOS)
        except Exception as exc:  # FunctionLoadError and whatever else the worker lets escape
            raise IndexError_(
                f"function '{fn.get_function_name()}': the Python worker refuses it: "
                f"{type(exc).__name__}: {exc}. Worker failed to index functions: one refused function "
                "aborts indexing of the whole app, as in Azure"
            ) from exc


def _add_unique(table: dict[str, FunctionEntry], entry: FunctionEntry, kind: str) -> None:
    assert entry.durable_name is not None
    key = entry.durable_name.lower()
    if key in table:
        raise IndexError_(
            f"function '{entry.name}': {kind} name '{entry.durable_name}' is already used by "
            f"function '{table[key].name}'"
        )
    table[key] = entry
