"""The ring, not the plan (issue 10): an activity is told which ring by its resolved document
(``ringSpec``) and never validates a plan to read it; a caller sending the whole plan instead is
refused, naming ``ringSpec``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from activities import plan as plan_activities
from activities.compliance import ring_compliance_core
from activities.maintenance import set_ring_assignment_core
from activities.members import resolve_ring_members_core
from patchrings.boundary.codec import BoundaryInvalid
from patchrings.domain.plan import Plan
from tests.unit.activities.graph_fake import FakeGraph
from tests.unit.app.test_arc import PLAN, SUB, clients_for, machine, vm
from tests.unit.app.test_compliance import ROWS, fleet_script

pytestmark = pytest.mark.unit


MEMBERS = {"ring0": ["srv-01", "web-01"], "ring1": ["app-01", "srv-02"]}
MC_RING1 = str(Plan.from_dict(PLAN).ring("ring1").configuration_id)


def spec_of(ring: str) -> dict[str, Any]:
    return Plan.from_dict(PLAN).ring(ring).to_dict()


def fleet() -> list[tuple[str, str, Any]]:
    graph = FakeGraph([vm("web-01", "ring0"), vm("app-01", "ring1-hold"), machine("srv-01", "ring0"),
                       machine("srv-02", "ring1")])
    return [
        ("POST", "/Microsoft.ResourceGraph/resources", graph.responder),
        ("GET", "/configurationAssignments?", (200, {}, {"value": []})),
        ("GET", "/configurationAssignments/", (404, {}, {"error": {"code": "NotFound", "message": "none"}})),
    ]


@pytest.mark.parametrize("ring", ["ring0", "ring1"])
def test_members_from_the_ring_spec_are_the_members_from_the_plan(tmp_path: Path, ring: str) -> None:
    by_spec, spec_transport = clients_for(tmp_path, fleet())
    ring_spec = spec_of(ring)
    with mock.patch.object(Plan, "from_dict", side_effect=AssertionError("the plan was validated again")):
        got = resolve_ring_members_core(by_spec, {"ringSpec": ring_spec, "ring": ring, "rolloutId": "r"})
    # the tag selector of the ring (its hold value included) across VMs and Arc machines
    assert sorted(v["name"] for v in got["vms"]) == MEMBERS[ring]
    # reads only: the Resource Graph query (a POST that changes nothing) and the maintenance GETs
    assert [r.method for r in spec_transport.requests]
    assert all(r.method == "GET" or r.url.lower().split("?")[0].endswith("/microsoft.resourcegraph/resources")
               for r in spec_transport.requests)


def test_the_ring_spec_round_trips_to_the_same_ring() -> None:
    for ring in Plan.from_dict(PLAN):
        rebuilt = plan_activities.ring_from_spec(ring.to_dict())
        assert rebuilt.to_dict() == ring.to_dict()
        assert (rebuilt.members, rebuilt.configuration_id, rebuilt.assignment_name) == (
            ring.members, ring.configuration_id, ring.assignment_name)


@pytest.mark.parametrize("core", [resolve_ring_members_core, set_ring_assignment_core])
def test_a_plan_instead_of_the_ring_spec_is_refused_naming_it(tmp_path: Path, core: Any) -> None:
    clients, transport = clients_for(tmp_path, fleet())
    with pytest.raises(BoundaryInvalid) as caught:
        core(clients, {"plan": PLAN, "ring": "ring1", "present": True})
    assert caught.value.field == "ringSpec"
    assert transport.requests == []  # nothing was read or written


def body(request: Any) -> Any:
    raw = request.body
    return raw.getvalue() if hasattr(raw, "getvalue") else raw


def test_set_ring_assignment_from_the_ring_spec_sends_what_the_plan_sent(tmp_path: Path) -> None:
    script = [("GET", "/configurationAssignments/", (404, {}, {"error": {"code": "NotFound", "message": "x"}})),
              ("PUT", "/configurationAssignments/", (200, {}, {"id": "x"}))]
    by_spec, spec_transport = clients_for(tmp_path, list(script))
    got = set_ring_assignment_core(by_spec, {"ringSpec": spec_of("ring1"), "ring": "ring1", "present": True,
                                             "rolloutId": "r"})
    assert got["changed"] is True
    assert [r.method for r in spec_transport.requests] == ["GET", "PUT"]
    put = spec_transport.requests[-1]
    assert "configurationAssignments/patchrings-ring1" in put.url
    assert MC_RING1.lower() in str(body(put)).lower()


def test_a_later_rings_compliance_needs_no_plan(tmp_path: Path) -> None:
    """The dry run sends later rings ``{ringSpec, ring, asOf, unassigned: false, members}``."""
    clients, _ = clients_for(tmp_path, fleet_script([ROWS]))
    members = [{"id": ROWS[0]["machineId"], "name": "web-01", "kind": "vm", "os": "Windows"}]
    out = ring_compliance_core(clients, {"ringSpec": spec_of("ring1"), "ring": "ring1",
                                         "asOf": "2026-11-16T12:00:00Z", "unassigned": False, "members": members})
    assert "error" not in out or out["error"] is None
    assert out["ring"] == "ring1" and out["members"] == 1


def test_the_first_rings_unassigned_section_still_needs_the_plan(tmp_path: Path) -> None:
    clients, _ = clients_for(tmp_path, fleet_script([ROWS]))
    out = ring_compliance_core(clients, {"ringSpec": spec_of("ring0"), "ring": "ring0",
                                         "asOf": "2026-11-16T12:00:00Z", "unassigned": True})
    assert out["error"]["code"] == "KeyError"
    assert SUB  # the scripted subscription (unused here: nothing was read)
