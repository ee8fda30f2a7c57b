"""A missing read role must not give a smaller ring silently (issue 11): Resource Graph answers
only the rows the identity can read, so every resolution first asks ARM for the subscription's
VM list (authorized on the subscription); a 403 fails the resolution (the caller's inconclusive)
before any member is read, and an allowed probe costs one request per subscription."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import HttpResponseError

from activities import compliance
from activities.members import resolve_ring_members_core
from patchrings.errors import ResourceGraphIncomplete
from tests.ring_inputs import named_ring
from tests.unit.app.test_arc import PLAN, SUB, clients_for, graph_of, machine, vm
from tests.unit.app.test_compliance import PLAN as COMPLIANCE_PLAN
from tests.unit.app.test_compliance import fleet_script

pytestmark = pytest.mark.unit

REFUSED = ("GET", "/resourceGroups/patchrings-read-probe/", (403, {}, {"error": {
    "code": "AuthorizationFailed",
    "message": f"The client 'patchrings' with object id 'x' does not have authorization to perform action "
               f"'Microsoft.Compute/virtualMachines/read' over scope '/subscriptions/{SUB}' "
               "or the scope is invalid."}}))


def test_a_refused_vm_list_fails_the_resolution_before_any_member_is_read(tmp_path: Path) -> None:
    # Resource Graph would answer the Arc machine only (the VM is not readable): a smaller ring
    clients, transport = clients_for(tmp_path, [REFUSED, graph_of(machine("srv-01", "ring0"))])
    with pytest.raises(HttpResponseError) as caught:
        resolve_ring_members_core(clients, named_ring(PLAN, "ring0"))
    assert caught.value.status_code == 403
    assert [r.method for r in transport.requests] == ["GET"]  # no query: no partial member list


def test_an_allowed_probe_is_one_request_per_subscription_and_members_follow(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [graph_of(vm("web-01", "ring0"), machine("srv-01", "ring0"))])
    members = resolve_ring_members_core(clients, named_ring(PLAN, "ring0"))["vms"]
    assert sorted(m["name"] for m in members) == ["srv-01", "web-01"]
    gets = [urlsplit(r.url).path for r in transport.requests if r.method == "GET"]
    assert gets == [f"/subscriptions/{SUB}/resourceGroups/patchrings-read-probe/providers/Microsoft.Compute/"
                    "virtualMachines/patchrings-read-probe"]


def test_the_compliance_view_fails_when_the_probe_is_refused(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, [REFUSED, *fleet_script([[]])])
    view = compliance.compliance_core(clients, COMPLIANCE_PLAN.to_dict())
    # every ring says its members could not be read; none shows a smaller membership as fact
    assert view["rings"] and all(r["error"]["code"] == "AuthorizationFailed" and not r["machines"]
                                 for r in view["rings"])
    queries = [json.loads(r.body)["query"] for r in transport.requests if r.method == "POST"]
    assert not any(q.startswith("resources") for q in queries)  # no member list was read


def test_a_probe_answer_that_proves_nothing_fails_closed(tmp_path: Path) -> None:
    found = ("GET", "/resourceGroups/patchrings-read-probe/", (200, {}, {"id": "x", "name": "patchrings-read-probe"}))
    clients, transport = clients_for(tmp_path, [found, graph_of(vm("web-01", "ring0"))])
    with pytest.raises(ResourceGraphIncomplete):
        resolve_ring_members_core(clients, named_ring(PLAN, "ring0"))
    assert [r.method for r in transport.requests] == ["GET"]
