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
"""

from __future__ import annotations

import json
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
    if tier == "unit":
        used = PLATFORM_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if used:
            pytest.fail(
                f"{item.nodeid}: a unit test starts no platform (fixture {', '.join(sorted(used))}); "
                "move it to tests/functional",
                pytrace=False,
            )


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
