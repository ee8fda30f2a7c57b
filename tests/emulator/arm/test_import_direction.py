"""The simulator's import direction, read from the source (``ast``), so it fails on the commit that
adds a wrong import -- under ``TYPE_CHECKING`` or inside a function included.

Layers of ``emulator.arm`` (``emulator/arm/backends/__init__.py``), each importing only downwards:

1. entry points -- ``server`` (HTTP app, wiring) and ``cli``;
2. handlers -- the thin HTTP layer per provider; each receives its backend, never the server;
3. backends -- ``emulator.arm.backends.*`` plus the maintenance backend's schedule engine
   (``schedule``) and the scope / paging helpers the backends share (``listing``);
4. state and models -- everything else (``fleet``, ``patching``, ``events``, ``faults``, ``kql``,
   ``recurrence``, ``scenario``, ``calls``, ``errors``, ...).

The local Event Grid topic has the same shape: ``emulator.eventgrid.server`` over
``emulator.eventgrid.backend``. And no emulator module imports the app (``patchrings``,
``activities``, ``orchestrators``, ``triggers``): the simulator has its own schedule code
(``emulator/arm/recurrence.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EMULATOR = ROOT / "emulator"
ARM = EMULATOR / "arm"

ENTRY_POINTS = {"emulator.arm.server", "emulator.arm.cli"}
HANDLERS = {
    "emulator.arm.compute",
    "emulator.arm.hybridcompute",
    "emulator.arm.maintenance",
    "emulator.arm.resourcegraph",
    "emulator.arm.tags",
    "emulator.arm.control",
}
BACKEND_EXTRAS = {"emulator.arm.schedule", "emulator.arm.listing"}
APP_PACKAGES = ("patchrings", "activities", "orchestrators", "triggers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, anywhere in the file (absolute names; ``from a import b``
    yields ``a`` and ``a.b``; constant ``importlib.import_module("x")`` / ``__import__("x")`` count)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def _under(name: str, prefixes: set[str] | tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return 1
    if module in HANDLERS:
        return 2
    if _under(module, ("emulator.arm.backends",)) or module in BACKEND_EXTRAS:
        return 3
    return 4


def _modules(folder: Path) -> dict[str, set[str]]:
    return {
        _module_name(path): imports_of(
            path.read_text(encoding="utf-8"), _module_name(path), is_package=path.name == "__init__.py"
        )
        for path in sorted(folder.rglob("*.py"))
    }


def _arm_imports(imported: set[str]) -> set[str]:
    """The ``emulator.arm`` modules among ``imported`` (``from emulator.arm import compute`` → compute)."""
    known = set(_modules(ARM))
    return {name for name in imported if name in known and name != "emulator.arm"}


def layer_violations(modules: dict[str, set[str]]) -> list[str]:
    known = set(modules)
    problems = []
    for module, imported in sorted(modules.items()):
        if not _under(module, ("emulator.arm",)):
            continue
        mine = _layer(module)
        for name in sorted(imported):
            if name not in known or name in (module, "emulator.arm"):
                continue
            theirs = _layer(name)
            if theirs < mine or (theirs == mine == 2) or (theirs == mine == 1 and name == "emulator.arm.cli"):
                problems.append(f"{module} (layer {mine}) imports {name} (layer {theirs})")
    return problems


def app_imports(modules: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} imports {name}"
        for module, imported in sorted(modules.items())
        for name in sorted(imported)
        if _under(name, APP_PACKAGES)
    ]


def test_the_arm_simulator_imports_only_downwards() -> None:
    modules = _modules(ARM)
    assert set(modules) >= ENTRY_POINTS | HANDLERS | BACKEND_EXTRAS, "a layer module was renamed: update this test"
    assert layer_violations(modules) == []


def test_nothing_below_the_server_imports_it() -> None:
    importers = sorted(m for m, imported in _modules(ARM).items() if "emulator.arm.server" in imported)
    assert importers == ["emulator.arm.cli"]


def test_handlers_are_called_with_their_backend_not_the_server() -> None:
    """No handler module names the server class, not even in an annotation."""
    for module in sorted(HANDLERS):
        source = (ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
        assert "ArmSimulator" not in source, module


def test_the_event_grid_topic_backend_is_below_its_server() -> None:
    modules = _modules(EMULATOR / "eventgrid")
    assert "emulator.eventgrid.server" not in modules["emulator.eventgrid.backend"]
    assert not any(_under(name, ("aiohttp",)) for name in modules["emulator.eventgrid.backend"])


def test_no_emulator_module_imports_the_app() -> None:
    assert app_imports(_modules(EMULATOR)) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "emulator.arm.compute",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from emulator.arm.server import ArmSimulator\n",
            "emulator.arm.compute (layer 2) imports emulator.arm.server (layer 1)",
        ),
        (
            "emulator.arm.backends.compute",
            "def f():\n    from emulator.arm import maintenance\n",
            "emulator.arm.backends.compute (layer 3) imports emulator.arm.maintenance (layer 2)",
        ),
        (
            "emulator.arm.fleet",
            "from .backends import core\n",
            "emulator.arm.fleet (layer 4) imports emulator.arm.backends.core (layer 3)",
        ),
        (
            "emulator.arm.tags",
            "import emulator.arm.resourcegraph\n",
            "emulator.arm.tags (layer 2) imports emulator.arm.resourcegraph (layer 2)",
        ),
    ],
)
def test_the_check_catches_an_upward_import(module: str, source: str, expected: str) -> None:
    modules = _modules(ARM)
    modules[module] = imports_of(source, module)
    assert expected in layer_violations(modules)


@pytest.mark.parametrize(
    "source",
    [
        "from patchrings.domain.recurrence import occurrences\n",
        "import activities.compute\n",
        "def f():\n    import importlib\n    return importlib.import_module('orchestrators.rollout')\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from triggers import deps\n",
    ],
)
def test_the_check_catches_an_app_import(source: str) -> None:
    assert app_imports({"emulator.arm.schedule": imports_of(source, "emulator.arm.schedule")})
