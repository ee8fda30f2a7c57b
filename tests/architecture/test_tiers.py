"""Test tiers are enforced by folder (issue 10, "Guards as code").

tests/unit, tests/functional, tests/emulator and tests/architecture; the marker of each test comes
from its folder (tests/conftest.py), and pyproject.toml declares the markers. ``bench/`` is not a
tier: pytest does not collect it (``testpaths``), ``make bench`` runs it.

The unit tier starts no platform: no ``platform`` / ``platform_factory`` fixture (the conftest
fails such a test at setup) and no import of a module that starts a server or an emulator process
(refused here, statically, over every file under tests/unit, helpers included). Pure emulator
modules (``emulator.arm.kql``, ``emulator.arm.routes``, ``emulator.host.indexing``) stay allowed.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import conftest

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"

# Modules whose import means a server or an emulator process in the test: not for tests/unit.
SERVER_MODULES = (
    "emulator.__main__",
    "emulator.platform",
    "emulator.azurite",
    "emulator.clock_http",
    "emulator.host.server",
    "emulator.host.testing",
    "emulator.host.cli",
    "emulator.arm.server",
    "emulator.arm.cli",
    "emulator.eventgrid.server",
    "emulator.eventgrid.__main__",
    "aiohttp.web",
    "aiohttp.test_utils",
    "tests.functional",
    "tests.emulator",
)


def _refused(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in SERVER_MODULES)


def server_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source`` that brings a server or an emulator process."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"importorskip", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        found.extend((node.lineno, name) for name in names if _refused(name))
    return sorted(set(found))


def test_every_test_file_is_in_a_tier_folder() -> None:
    stray = [
        str(path.relative_to(REPO))
        for pattern in ("test_*.py", "*_test.py")
        for path in TESTS.rglob(pattern)
        if conftest.tier_of(path) is None
    ]
    assert not stray, f"test files outside tests/{{{','.join(conftest.TIERS)}}}: {stray}"


def test_tiers_are_the_folders_and_the_declared_markers() -> None:
    assert set(conftest.TIERS) == {"unit", "functional", "emulator", "architecture"}
    for folder in conftest.TIERS:
        assert (TESTS / folder).is_dir(), folder
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    declared = {marker.split(":")[0].strip() for marker in options["markers"]}
    assert set(conftest.TIERS.values()) <= declared


def test_bench_is_not_collected() -> None:
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["testpaths"] == ["tests"]
    assert not (TESTS / "bench").exists()


@pytest.mark.parametrize(
    ("relative", "tier"),
    [
        ("tests/unit/domain/test_plan.py", "unit"),
        ("tests/unit/test_cli.py", "unit"),
        ("tests/functional/test_demo.py", "functional"),
        ("tests/emulator/arm/test_basics.py", "emulator"),
        ("tests/architecture/test_tiers.py", "architecture"),
        ("tests/test_stray.py", None),
        ("tests/data/test_x.py", None),
        ("bench/test_x.py", None),
    ],
)
def test_tier_of_a_path(relative: str, tier: str | None) -> None:
    assert conftest.tier_of(REPO / relative) == tier


def test_unit_tests_import_no_server_or_emulator_process() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in sorted((TESTS / "unit").rglob("*.py"))
        for line, module in server_imports(path.read_text())
    ]
    message = "tests/unit starts no server or emulator process; move these to tests/functional:\n"
    assert not offenders, message + "\n".join(offenders)


@pytest.mark.parametrize(
    "source",
    [
        "from emulator.platform import LocalPlatform\n",
        "from emulator import platform\n",
        "import emulator.host.server\n",
        "from emulator.host.testing import HostThread\n",
        "from emulator.arm.server import ArmSimulator\n",
        "from aiohttp import web\n",
        "from aiohttp.test_utils import TestServer\n",
        "from tests.functional.platform_driver import Driver\n",
        "import pytest\nroutes = pytest.importorskip('emulator.arm.server')\n",
    ],
)
def test_the_unit_import_rule_refuses_a_planted_server(source: str) -> None:
    assert server_imports(source)


def test_the_unit_import_rule_allows_pure_emulator_modules() -> None:
    source = (
        "from emulator.arm.kql import compile_query\n"
        "from emulator.host.indexing import worker_validate\n"
        "import pytest\nroutes = pytest.importorskip('emulator.arm.routes')\n"
        "from tests.unit.app.fakes import FakeLedger\n"
    )
    assert server_imports(source) == []


def _item(relative: str, fixtures: list[str], markers: tuple[str, ...] = ()) -> pytest.Item:
    return SimpleNamespace(  # type: ignore[return-value]
        fspath=REPO / relative,
        fixturenames=fixtures,
        nodeid=f"{relative}::t",
        get_closest_marker=lambda name: getattr(pytest.mark, name) if name in markers else None,
    )


def test_conftest_fails_a_unit_test_that_asks_for_a_platform() -> None:
    with pytest.raises(pytest.fail.Exception, match="starts no platform"):
        conftest.pytest_runtest_setup(_item("tests/unit/test_x.py", ["tmp_path", "platform"]))
    with pytest.raises(pytest.fail.Exception, match="platform_factory"):
        conftest.pytest_runtest_setup(_item("tests/unit/app/test_x.py", ["platform_factory"]))
    conftest.pytest_runtest_setup(_item("tests/functional/test_x.py", ["platform"]))
    conftest.pytest_runtest_setup(_item("tests/unit/test_x.py", ["tmp_path"]))


def test_conftest_fails_a_test_outside_the_tiers() -> None:
    with pytest.raises(pytest.fail.Exception, match="in no test tier"):
        conftest.pytest_runtest_setup(_item("tests/test_stray.py", []))


def test_conftest_fails_a_test_marked_for_another_tier() -> None:
    with pytest.raises(pytest.fail.Exception, match="the folder is the tier"):
        conftest.pytest_runtest_setup(_item("tests/unit/test_x.py", [], ("unit", "functional")))
    conftest.pytest_runtest_setup(_item("tests/unit/test_x.py", [], ("unit", "slow")))
