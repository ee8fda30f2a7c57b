"""Shared fixtures and the test taxonomy.

Tiers (markers are applied by folder, so every test is in exactly one):

* ``unit``       -- tests/unit: pure code, no processes, no network;
* ``emulator``   -- tests/emulator: the local platform itself (clock, host, ARM simulator);
* ``functional`` -- tests/functional: the unmodified app on the local host, against the ARM
  simulator and Azurite, asserting on recorded ARM calls and on the ledger;
* ``architecture`` -- tests/architecture: guards as code (layers, orchestrator determinism, these
  tiers); static checks of the source, no app, no platform.

Run one tier with ``pytest -m unit`` (or ``make unit`` / ``make functional``). A test file outside
the four folders fails, so does a test marked for another tier than its folder's, and so does a
unit test that asks for a running platform (the ``platform`` / ``platform_factory`` fixtures
below); tests/architecture/test_tiers.py refuses, statically, the imports that start servers or
emulator processes in tests/unit. ``bench/`` is not a tier: it is outside ``testpaths`` and runs
with ``make bench``.

Parallel runs: ``make test`` runs ``pytest -n 2 --dist loadgroup`` (pytest-xdist). Every platform a
test starts is its own (ports picked by the OS and held, :func:`emulator.azurite.reserve_port`;
state under the test's ``tmp_path``; ledgers in the test's own Azurite or table prefix), so tests
are handed to the workers one at a time -- except the tests that share something beyond
themselves, which run on one worker, in file order, as one *group* (:func:`parallel_groups`):
the tests of a file that use a class-, module- or package-scoped fixture, and the files of
:data:`SHARED_PLACES`. :class:`GroupScheduling` does the handing out.
"""

from __future__ import annotations

import ast
import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_SCENARIO = REPO / "emulator" / "arm" / "scenarios" / "sample.yaml"
DEFAULT_PLAN = REPO / "plans" / "default.json"
# A fixed simulated start keeps schedules (and therefore test outcomes) reproducible.
DEFAULT_START = "2026-11-16T06:00:00Z"

# folder under tests/ -> marker (declared in pyproject.toml [tool.pytest.ini_options])
TIERS = {"unit": "unit", "emulator": "emulator", "functional": "functional", "architecture": "architecture"}
# Fixtures that start the local platform (host, ARM simulator, Azurite): not for the unit tier.
PLATFORM_FIXTURES = frozenset({"platform", "platform_factory"})


def tier_of(path: Path) -> str | None:
    """The tier of a test file: the marker of its first folder under tests/, or None."""
    try:
        parts = path.resolve().relative_to(REPO / "tests").parts
    except ValueError:  # not under tests/ (e.g. a path given on the command line)
        return None
    return TIERS.get(parts[0]) if len(parts) > 1 else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(Path(str(item.fspath)))
        if tier and not item.get_closest_marker(tier):
            item.add_marker(getattr(pytest.mark, tier))


def pytest_runtest_setup(item: pytest.Item) -> None:
    path = Path(str(item.fspath))
    under_tests = path.resolve().is_relative_to(REPO / "tests")
    tier = tier_of(path)
    if under_tests and tier is None:
        pytest.fail(
            f"{path.relative_to(REPO)} is in no test tier: put it under tests/unit, tests/functional, "
            "tests/emulator or tests/architecture (tests/conftest.py)",
            pytrace=False,
        )
    foreign = [m for m in TIERS.values() if m != tier and item.get_closest_marker(m)]
    if tier and foreign:
        pytest.fail(
            f"{item.nodeid}: marked {', '.join(foreign)} but lives in tests/{tier}: the folder is the tier",
            pytrace=False,
        )
    shared = shared_fixtures_of(item)
    if shared and os.environ.get("PYTEST_XDIST_WORKER") and parallel_group(_relative(item.nodeid)) is None:
        pytest.fail(
            f"{item.nodeid}: uses {', '.join(shared)} (class/module/package scope) but its file is in no "
            "parallel group: tests/conftest.py's parallel_group did not see it; teach it how the fixture "
            "is asked for",
            pytrace=False,
        )
    if tier == "unit":
        used = PLATFORM_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if used:
            pytest.fail(
                f"{item.nodeid}: a unit test starts no platform (fixture {', '.join(sorted(used))}); "
                "move it to tests/functional",
                pytrace=False,
            )


# ---------------------------------------------------------------------------- parallel runs (xdist)
# Test files whose tests share a fixed place outside their tmp_path: one group each.
# test_demo.py: `python -m demo` owns REPO/.local/demo (it empties it first; a test reads its log).
SHARED_PLACES = {"tests/functional/test_demo.py": "REPO/.local/demo"}
# Fixtures of these scopes outlive a test, so the tests that use one share its state (and on two
# workers it would be started twice). Session-scoped fixtures need no group: each worker has its own.
SHARED_SCOPES = frozenset({"class", "module", "package"})
# Work handed out first (then collection order): groups, largest first, then single tests by tier,
# slowest tier first, so the last tests handed out are short ones and both workers finish together.
TIER_ORDER = ("functional", "emulator", "architecture", "unit")


def _fixture_definitions(path: Path) -> dict[str, tuple[str, bool, set[str]]]:
    """``name -> (scope, autouse, arguments)`` of every ``@pytest.fixture`` in a file (statically;
    a scope that is not a string literal counts as shared)."""
    found: dict[str, tuple[str, bool, set[str]]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if not (isinstance(target, ast.Attribute) and target.attr == "fixture") and not (
                    isinstance(target, ast.Name) and target.id == "fixture"):
                continue
            scope, autouse, name = "function", False, node.name
            for keyword in call.keywords if call else []:
                value = keyword.value.value if isinstance(keyword.value, ast.Constant) else None
                if keyword.arg == "scope":
                    scope = value if isinstance(value, str) else "dynamic"
                elif keyword.arg == "autouse":
                    autouse = value is True
                elif keyword.arg == "name" and isinstance(value, str):
                    name = value
            found[name] = (scope, autouse, {a.arg for a in node.args.args + node.args.kwonlyargs})
    return found


def _names_used(path: Path) -> set[str]:
    """Every parameter name of a file, and the strings given to ``usefixtures`` / ``getfixturevalue`` /
    ``parametrize`` (a fixture asked for by name, or ``indirect``); ``xdist_group`` if it is named."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.arg):
            used.add(node.arg)
        elif isinstance(node, ast.Attribute) and node.attr == "xdist_group":
            used.add("xdist_group")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "usefixtures", "getfixturevalue", "parametrize"):
            used.update(n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return used


@functools.cache
def parallel_group(relative: str) -> str | None:
    """The group a test file's tests run in on parallel workers (None: each test on any worker).

    Decided from the source, statically, because xdist's controller process does not collect tests:
    a file of :data:`SHARED_PLACES`; a file that asks for (directly, or through another fixture) a
    class-, module- or package-scoped fixture defined in it or in a conftest.py above it, or that
    sees an autouse one; a file that names ``xdist_group``. A superset of what
    :func:`shared_fixtures_of` finds at collection (checked at each test's set-up).
    """
    if relative in SHARED_PLACES:
        return SHARED_PLACES[relative]
    path = REPO / relative
    if not path.is_file() or not relative.startswith("tests/"):
        return None
    visible: dict[str, tuple[str, bool, set[str]]] = {}
    for folder in reversed(path.parents):
        if folder == REPO or not folder.is_relative_to(REPO / "tests"):
            continue
        if (folder / "conftest.py").is_file():
            visible.update(_fixture_definitions(folder / "conftest.py"))
    visible.update(_fixture_definitions(path))
    shared = {name for name, (scope, _, _) in visible.items() if scope in SHARED_SCOPES or scope == "dynamic"}
    grew = True
    while grew:  # a fixture that asks for a shared one shares its state too
        more = {name for name, (_, _, args) in visible.items() if name not in shared and args & shared}
        shared |= more
        grew = bool(more)
    used = _names_used(path)
    if "xdist_group" in used or shared & used or any(visible[name][1] for name in shared):
        return relative
    return None


def shared_fixtures_of(item: pytest.Item) -> list[str]:
    """The class-, module- or package-scoped fixtures a collected test uses (pytest's own view)."""
    info = getattr(item, "_fixtureinfo", None)
    return sorted(name for name, definitions in getattr(info, "name2fixturedefs", {}).items()
                  if any(getattr(d, "scope", "function") in SHARED_SCOPES for d in definitions))


def _relative(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def work_order(units: dict[str, list[int]], nodeids: list[str]) -> list[str]:
    """The order work units are handed out in: groups (largest first), then single tests by tier,
    slowest tier first, each in collection order (a unit is named by its group, or by its first test's
    node id when it is a single test)."""
    position = {scope: i for i, scope in enumerate(units)}

    def key(scope: str) -> tuple[int, int, int]:
        if parallel_group(_relative(nodeids[units[scope][0]])) is not None:
            return (0, -len(units[scope]), position[scope])
        tier = tier_of(REPO / _relative(nodeids[units[scope][0]]))
        rank = TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER)
        return (1 + rank, 0, position[scope])

    return sorted(units, key=key)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` uses :class:`GroupScheduling`. Why not xdist's own: its loadgroup marks
    a test by suffixing ``item._nodeid``, which pytest 9 no longer reads (its groups were ignored),
    and its scope schedulers track tests by node id, so tests that share one (schemathesis' generated
    operations) ran once instead of once each."""
    if config.getvalue("dist") != "loadgroup":
        return None
    return _group_scheduling()(config, log)


@functools.cache
def _group_scheduling() -> type:
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """xdist's LoadScopeScheduling with work units of test *indices* (node ids may repeat): one
        unit per group (:func:`parallel_group`) or per single test, handed out in :func:`work_order`;
        a worker is given another unit when at most 2 of its tests are left."""

        collection: list[str] | None

        def _unit_of(self, index: int) -> str:
            assert self.collection is not None
            nodeid = self.collection[index]
            return parallel_group(_relative(nodeid)) or f"{nodeid}#{index}"

        def schedule(self) -> None:
            assert self.collection_is_completed
            if self.collection is not None:  # started already: top up every worker
                for node in self.nodes:
                    self._reschedule(node)
                return
            if not self._check_nodes_have_same_collection():
                self.log("**Different tests collected, aborting run**")
                return
            self.collection = list(next(iter(self.registered_collections.values())))
            if not self.collection:
                return
            units: dict[str, list[int]] = {}
            for index in range(len(self.collection)):
                units.setdefault(self._unit_of(index), []).append(index)
            for scope in work_order(units, self.collection):
                self.workqueue[scope] = dict.fromkeys(units[scope], False)
            for _ in range(max(0, len(self.nodes) - len(self.workqueue))):
                unused, _assigned = self.assigned_work.popitem()
                unused.shutdown()
            for node in self.nodes:
                self._assign_work_unit(node)
            for node in self.nodes:
                self._reschedule(node)
            if not self.workqueue:
                for node in self.nodes:
                    node.shutdown()

        def _assign_work_unit(self, node: Any) -> None:
            scope, unit = self.workqueue.popitem(last=False)
            self.assigned_work.setdefault(node, {})[scope] = unit
            node.send_runtest_some([index for index, done in unit.items() if not done])

        def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
            self.assigned_work[node][self._unit_of(item_index)][item_index] = True
            self._reschedule(node)

        def remove_node(self, node: Any) -> str | None:
            workload = self.assigned_work.pop(node)
            pending = [index for unit in workload.values() for index, done in unit.items() if not done]
            if not pending:
                return None
            self.workqueue.update(workload)  # a crashed worker's unfinished units go back
            for other in self.assigned_work:
                self._reschedule(other)
            assert self.collection is not None
            return self.collection[pending[0]]

    return GroupScheduling


@pytest.fixture
def platform_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start a :class:`emulator.platform.LocalPlatform`; every one started is stopped at teardown.

    ``platform_factory(scenario=dict|Path, plan=dict|Path, settings={...}, clock="skip",
    start=ISO, storage=":memory:"|path)``. A plan given as a dict is written to a file and
    passed as ``PATCHRINGS_PLAN_PATH``.
    """
    from emulator.platform import LocalPlatform

    started: list[LocalPlatform] = []

    def factory(
        scenario: dict[str, Any] | Path = SAMPLE_SCENARIO,
        *,
        plan: dict[str, Any] | Path | None = None,
        settings: dict[str, str] | None = None,
        clock: str = "skip",
        start: str = DEFAULT_START,
        storage: str = ":memory:",
    ) -> LocalPlatform:
        all_settings = {"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true"}
        if plan is not None:
            plan_path = plan if isinstance(plan, Path) else tmp_path / f"plan-{len(started)}.json"
            if isinstance(plan, dict):
                plan_path.write_text(json.dumps(plan, indent=2))
            all_settings["PATCHRINGS_PLAN_PATH"] = str(plan_path)
        all_settings.update(settings or {})
        state_dir = tmp_path / f"platform-{len(started)}"
        platform = LocalPlatform(
            scenario,
            clock=clock,
            start=start,
            state_dir=state_dir,
            storage=storage,
            settings=all_settings,
        )
        started.append(platform)
        return platform.start()

    yield factory
    for platform in reversed(started):
        platform.stop()


@pytest.fixture
def platform(platform_factory: Callable[..., Any]) -> Any:
    """The sample fleet and the default plan on a skip clock."""
    return platform_factory()
