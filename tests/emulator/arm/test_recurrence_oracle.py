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


# -- differential: the oracle and the app agree on generated windows (DST-heavy zones, edges) ----
_ZONES = [
    "UTC", "Pacific Standard Time", "W. Europe Standard Time", "AUS Eastern Standard Time",
    "Lord Howe Standard Time", "Chatham Islands Standard Time", "India Standard Time", "Iran Standard Time",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _recur_every():
    from hypothesis import strategies as st

    n = st.sampled_from(["", "2", "3"])
    days = st.lists(st.sampled_from(_DAYS), max_size=3, unique=True)
    month_days = st.lists(st.sampled_from([1, 15, 28, 29, 30, 31, -1, -2, -31]), max_size=2, unique=True)
    nth = st.sampled_from(["First", "Second", "Third", "Fourth", "Last"])
    offset = st.one_of(st.just(""), st.integers(-6, 6).map(lambda o: f" Offset{o}"))
    return st.one_of(
        n.map(lambda k: f"{k}Hours" if k else "Hour"),
        n.map(lambda k: f"{k}Days" if k else "Day"),
        st.tuples(n, days).map(lambda t: f"{t[0] + 'Weeks' if t[0] else 'Week'} {','.join(t[1])}".strip()),
        st.tuples(n, month_days).map(
            lambda t: f"{t[0] + 'Months' if t[0] else 'Month'} {','.join(f'day{d}' for d in t[1])}".strip()
        ),
        st.tuples(n, nth, st.sampled_from(_DAYS), offset).map(
            lambda t: f"{t[0] + 'Months' if t[0] else 'Month'} {t[1]} {t[2]}{t[3]}"
        ),
    )


def test_oracle_and_app_agree_on_generated_windows():
    from datetime import UTC, timedelta

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from patchrings.domain import recurrence as app

    # starts on DST-transition days at the transition hours hit gaps and overlaps often
    local_starts = st.one_of(
        st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31)).map(
            lambda d: d.replace(second=0, microsecond=0, minute=d.minute - d.minute % 15)
        ),
        st.sampled_from([datetime(2026, 3, 8), datetime(2026, 3, 29), datetime(2026, 4, 5), datetime(2026, 10, 4),
                         datetime(2026, 10, 25), datetime(2026, 11, 1)]).flatmap(
            lambda d: st.integers(0, 23 * 4).map(lambda q: d + timedelta(minutes=15 * q))
        ),
    )

    @settings(max_examples=400, deadline=None, database=None)
    @given(
        start=local_starts,
        zone=st.sampled_from(_ZONES),
        recur=_recur_every(),
        expire_days=st.one_of(st.none(), st.integers(0, 200)),
        after_days=st.integers(-30, 400),
        span_days=st.sampled_from([2, 40, 120]),
    )
    def check(start, zone, recur, expire_days, after_days, span_days):
        body = {"startDateTime": start.strftime("%Y-%m-%d %H:%M"), "duration": "02:00", "timeZone": zone,
                "recurEvery": recur}
        if expire_days is not None:
            body["expirationDateTime"] = (start + timedelta(days=expire_days, minutes=7)).strftime("%Y-%m-%d %H:%M")
        after = start.replace(tzinfo=UTC) + timedelta(days=after_days)
        until = after + timedelta(days=span_days)
        ours = [o.start for o in occurrences(parse_window(body), after, until)]
        theirs = [o.start for o in app.occurrences(app.parse_window(body), after, until)]
        assert ours == theirs, body
        first = next_occurrence(parse_window(body), after)
        other = app.next_occurrence(app.parse_window(body), after)
        assert (first and first.start) == (other and other.start), body

    check()
