"""The app's recurrence (patchrings/domain/recurrence.py) against the documented AUM run instants.

The table (tests/data/aum_schedules.json) also pins the ARM simulator's independent oracle
(tests/emulator/arm/test_recurrence_oracle.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from patchrings.domain.recurrence import next_occurrence, occurrences, parse_window

pytestmark = pytest.mark.unit

TABLE = json.loads((Path(__file__).resolve().parents[1] / "data" / "aum_schedules.json").read_text())
CASES = TABLE["cases"]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_app_matches_documented_instants(case):
    window = parse_window(case["window"])
    after, until = _instant(case["after"]), _instant(case["until"])
    got = [o.start.strftime("%Y-%m-%dT%H:%M:%SZ") for o in occurrences(window, after, until)]
    assert got == case["expected"], case.get("note", case["source"])
    first = next_occurrence(window, after)
    if case["expected"]:
        assert first is not None and first.start == _instant(case["expected"][0])
