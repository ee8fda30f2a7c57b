"""The simulator's schedule oracle against the documented AUM run instants (tests/data/aum_schedules.json).

The same table pins the app's ``patchrings/domain/recurrence.py`` (tests/unit/test_recurrence_table.py),
so the two independent implementations can only agree by both matching the documented instants.
"""

from __future__ import annotations

import ast
import json
from datetime import datetime
from pathlib import Path

import pytest

from emulator.arm.recurrence import next_occurrence, occurrences, parse_window

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[3]
TABLE = json.loads((REPO / "tests" / "data" / "aum_schedules.json").read_text())
CASES = TABLE["cases"]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _z(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_oracle_matches_documented_instants(case):
    window = parse_window(case["window"])
    got = [_z(o.start) for o in occurrences(window, _instant(case["after"]), _instant(case["until"]))]
    assert got == case["expected"], case.get("note", case["source"])
    # next_occurrence walks the same runs one by one
    after, walked = _instant(case["after"]), []
    while (occ := next_occurrence(window, after)) is not None and occ.start <= _instant(case["until"]):
        walked.append(_z(occ.start))
        assert occ.end - occ.start == window.duration
        after = occ.start
    assert walked == case["expected"]


def test_table_covers_the_brief():
    forms = {c["window"]["recurEvery"] for c in CASES}
    for needed in ("Day", "3Days", "Week Saturday,Sunday", "2Weeks Monday,Friday", "Month day23,day24",
                   "Month day31", "Month day-1", "Month Last Sunday", "Month Second Tuesday Offset2"):
        assert needed in forms
    assert any("expirationDateTime" in c["window"] for c in CASES)
    assert any("gap" in c["id"] for c in CASES) and any("overlap" in c["id"] for c in CASES)


def test_simulator_never_imports_the_app():
    """The oracle is independent only if no simulator module imports ``patchrings``."""
    offenders = []
    for path in sorted((REPO / "emulator" / "arm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "patchrings"]
    assert offenders == []


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("startDateTime", {"startDateTime": "30/04/2026"}),
        ("duration", {"duration": "3h"}),
        ("timeZone", {"timeZone": "Atlantis Standard Time"}),
        ("recurEvery", {"recurEvery": "Fortnight"}),
        ("recurEvery", {"recurEvery": "Month Second Tuesday Offset7"}),
        ("recurEvery", {"recurEvery": "Week Funday"}),
        ("recurEvery", {"recurEvery": "Month day32"}),
        ("recurEvery", {"recurEvery": "Day Monday"}),
        ("expirationDateTime", {"expirationDateTime": "2020-01-01 00:00"}),
    ],
)
def test_oracle_errors_name_the_field(field, overrides):
    body = {"startDateTime": "2026-01-01 08:00", "duration": "02:00", "timeZone": "UTC", "recurEvery": "Day"}
    body.update(overrides)
    with pytest.raises(ValueError, match=field):
        parse_window(body)
