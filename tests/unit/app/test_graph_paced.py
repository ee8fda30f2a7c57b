"""Every Resource Graph query of the app takes the quota gate (issue 11): the one sender every
caller uses (``activities.resource_graph._sender``) is paced on the process's gate, so a query
waits for ARG's per-principal quota, and a 429 without ``Retry-After`` (which azure-core does not
retry) is waited out and sent again instead of failing the read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from activities import arc, compliance, manifest_diff, run_results_stage
from activities.resource_graph import _sender, sender
from patchrings.arm import resource_graph as rg
from tests.unit.activities.graph_fake import FakeGraph
from tests.unit.activities.test_members_graph import FakeClock, vm
from tests.unit.app.test_arc import clients_for

pytestmark = pytest.mark.unit

QUERY = "resources | project id | order by id asc"
ROOT = Path(__file__).resolve().parents[3]


def graph_and_gate(monkeypatch: pytest.MonkeyPatch,
                   tmp_path: Path) -> tuple[FakeGraph, rg.QuotaGate, FakeClock, object]:
    clock = FakeClock()
    graph = FakeGraph([vm("vm-1", {})], quota=1, clock=clock)  # one query per 5 s for the principal
    gate = rg.QuotaGate(clock=clock, sleep=clock.sleep)
    monkeypatch.setattr(rg, "QUOTA", gate)  # the process's gate
    clients, _ = clients_for(tmp_path, [("POST", "/providers/Microsoft.ResourceGraph/resources", graph.responder)])
    return graph, gate, clock, clients


def test_the_apps_sender_waits_for_the_quota_and_never_trips_it(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    graph, gate, clock, clients = graph_and_gate(monkeypatch, tmp_path)
    for make in (_sender, sender, arc._arg_send):  # the Arc pre-check's sender too
        rows, _ = rg.query_all(make(clients), QUERY, [])  # type: ignore[arg-type]
        assert [r["id"] for r in rows] == [vm("vm-1", {})["id"]]
    assert graph.throttled == 0 and gate.queries == 3 and clock.slept  # the quota's resets were waited for


def test_a_429_without_retry_after_is_waited_out_and_sent_again(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    graph, gate, clock, clients = graph_and_gate(monkeypatch, tmp_path)
    graph.send(QUERY, [], None)  # the same principal elsewhere spent the window's quota
    rows, _ = rg.query_all(_sender(clients), QUERY, [])  # type: ignore[arg-type]
    assert len(rows) == 1 and graph.throttled == 1 and gate.throttled == 1 and clock.now >= 5


def test_only_callers_that_pace_with_their_own_deadline_use_the_raw_sender() -> None:
    users = set()
    for path in sorted((ROOT / "activities").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Name) and node.id == "_raw_sender":
                users.add(path.name)
    assert users == {"resource_graph.py", "members.py", "health.py"}
    for module in (compliance, manifest_diff, run_results_stage):  # they import the paced sender
        text = Path(str(module.__file__)).read_text(encoding="utf-8")
        assert "_raw_sender" not in text and "sender" in text
