"""``GET /api/compliance`` (issue 12) over the real SDK clients and a scripted transport.

Proves: rings hold VMs and Arc machines resolved as a rollout resolves them (one VM list and one
Arc list per subscription, shared by all rings); missing Critical / Security counts and
assessment ages come from ``patchassessmentresources`` in paged queries (not a read per
machine); machines no ring selects are listed; bad parameters are 400s naming the field.
Row shape: arc-and-resource-graph.md §5.4 (``…/patchAssessmentResults/latest``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from patchrings import deps
from patchrings.domain.plan import Plan
from patchrings.settings import Settings
from tests.unit.activities.graph_fake import FakeGraph
from tests.unit.app.test_arc import ARC_RG, SUB, VM_RG, clients_for, machine, vm
from triggers import compliance

pytestmark = pytest.mark.unit

AS_OF = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
PLAN = Plan.from_dict({
    "version": 1, "name": "compliance",
    "rings": [
        {"name": "ring0", "patching": "direct",
         "members": {"tag": {"name": "ring", "value": "ring0"}, "subscriptions": [SUB]}},
        {"name": "ring1", "patching": "direct",
         "members": {"tag": {"name": "ring", "value": "ring1", "holdValue": "ring1-hold"}, "subscriptions": [SUB]}},
    ],
})


def assessment(machine_id: str, *, critical: int, security: int, hours_ago: float) -> dict[str, Any]:
    at = (AS_OF - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": f"{machine_id}/patchAssessmentResults/latest", "machineId": machine_id.lower(),
            "properties": {"availablePatchCountByClassification": {"critical": critical, "security": security,
                                                                   "updates": 4},
                           "lastModifiedDateTime": at, "rebootPending": False, "osType": "Windows"}}


ROWS = [
    assessment(f"{VM_RG}/web-01", critical=1, security=2, hours_ago=3),
    assessment(f"{ARC_RG}/srv-01", critical=0, security=0, hours_ago=2),
    assessment(f"{ARC_RG}/srv-02", critical=0, security=0, hours_ago=50),
    assessment(f"{ARC_RG}/srv-09", critical=0, security=1, hours_ago=1),
]


def graph(pages: list[list[dict[str, Any]]]) -> Any:
    def answer(request: Any) -> tuple[int, dict[str, str], Any]:
        body = json.loads(request.body)
        assert "patchassessmentresources" in body["query"] and body["subscriptions"] == [SUB.lower()]
        token = (body.get("options") or {}).get("$skipToken")
        index = int(token) if token else 0
        doc: dict[str, Any] = {"totalRecords": sum(map(len, pages)), "count": len(pages[index]),
                               "resultTruncated": "false", "facets": [], "data": pages[index]}
        if index + 1 < len(pages):
            doc["$skipToken"] = str(index + 1)
        return 200, {"x-ms-user-quota-remaining": "10"}, doc
    return answer


def fleet_script(pages: list[list[dict[str, Any]]]) -> list[tuple[str, str, Any]]:
    """The fleet in Resource Graph's ``resources`` table (members, issue 11) and the assessments in
    ``patchassessmentresources`` (``pages``), both answered by the one ARG endpoint."""
    resources = FakeGraph([vm("web-01", "ring0"), vm("web-07", None), machine("srv-01", "ring1"),
                           machine("srv-02", "ring1-hold"), machine("srv-03", "ring1"), machine("srv-09", None)])
    assessments = graph(pages)

    def answer(request: Any) -> tuple[int, dict[str, str], Any]:
        if "patchassessmentresources" in json.loads(request.body)["query"]:
            return assessments(request)
        return resources.responder(request)

    return [("POST", "/providers/Microsoft.ResourceGraph/resources", answer)]


def test_the_view_per_ring_with_ages_and_machines_in_no_ring(tmp_path: Path) -> None:
    clients, transport = clients_for(tmp_path, fleet_script([ROWS[:2], ROWS[2:]]))
    view = compliance.compliance_core(clients, PLAN.to_dict(), as_of=AS_OF)
    rings = {r["ring"]: r for r in view["rings"]}
    ring0 = rings["ring0"]
    assert (ring0["members"], ring0["missingCriticalOrSecurity"]) == (1, 1)
    web = ring0["machines"][0]
    assert (web["name"], web["kind"], web["critical"], web["security"], web["assessmentAgeHours"]) == (
        "web-01", "vm", 1, 2, 3.0)
    assert web["status"] == "missing-patches" and web["lastAssessedAt"] == "2026-11-16T09:00:00Z"
    ring1 = rings["ring1"]
    assert [(m["name"], m["status"]) for m in ring1["machines"]] == [
        ("srv-03", "not-assessed"), ("srv-02", "stale"), ("srv-01", "compliant")]
    assert (ring1["notAssessed"], ring1["stale"], ring1["missingCriticalOrSecurity"]) == (1, 1, 0)
    assert ring1["machines"][1]["assessmentAgeHours"] == 50.0
    unassigned = view["unassigned"]
    assert [(m["name"], m["kind"], m["status"]) for m in unassigned["machines"]] == [
        ("srv-09", "arc", "missing-patches"), ("web-07", "vm", "not-assessed")]
    # one resources query (VMs and Arc machines) for both rings, and one paged assessment query
    # (2 pages), not one per machine
    queries = [json.loads(r.body)["query"] for r in transport.requests if r.method == "POST"]
    assert sum(q.startswith("resources") for q in queries) == 1 and len(queries) == 3
    # and one read-role probe of the subscription (activities.members.read_probe)
    assert [r.url.split("?")[0].rsplit("/", 3)[-3:] for r in transport.requests if r.method == "GET"] == [
        ["Microsoft.Compute", "virtualMachines", "patchrings-read-probe"]]
    assert view["resourceGraph"] == {"queries": 1, "pages": 2}
    assert view["asOf"] == "2026-11-16T12:00:00Z" and view["subscriptions"] == [SUB.lower()]


def test_a_ring_filter_and_the_stale_threshold(tmp_path: Path) -> None:
    clients, _ = clients_for(tmp_path, fleet_script([ROWS]))
    view = compliance.compliance_core(clients, PLAN.to_dict(), as_of=AS_OF, stale_after=timedelta(hours=72),
                                      only_ring="ring1")
    assert [r["ring"] for r in view["rings"]] == ["ring1"]
    assert {m["name"]: m["status"] for m in view["rings"][0]["machines"]}["srv-02"] == "compliant"
    assert view["unassigned"]["count"] == 2  # still computed against every ring


# ----------------------------------------------------------------------------- the HTTP route
@pytest.fixture
def configured() -> Iterator[None]:
    deps.reset()
    deps.override(plan=PLAN, settings=Settings(arm_auth="static-token", arm_static_token="t",
                                               ledger_connection="AccountName=a;AccountKey=b"))
    yield
    deps.reset()


def call(params: dict[str, str]) -> func.HttpResponse:
    req = func.HttpRequest(method="GET", url="https://app/api/compliance", headers={}, params=params, body=b"")
    user = compliance.compliance._function.get_user_function()
    result = user(req)
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


@pytest.mark.parametrize(("params", "field", "status"), [
    ({"ring": "ring9"}, "ring", 404),
    ({"staleAfterHours": "0"}, "staleAfterHours", 400),
    ({"staleAfterHours": "abc"}, "staleAfterHours", 400),
    ({"staleAfterHours": "169"}, "staleAfterHours", 400),
    ({"asOf": "yesterday"}, "asOf", 400),
    ({"asOf": "2026-11-16T12:00:00+02:00"}, "asOf", 400),
    ({"sort": "name"}, "sort", 400),
])
def test_bad_parameters_are_4xx_naming_the_field(configured: None, params: dict[str, str], field: str,
                                                 status: int) -> None:
    resp = call(params)
    assert resp.status_code == status
    assert json.loads(resp.get_body())["error"]["field"] == field


def test_the_route_answers_the_view(configured: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clients, _ = clients_for(tmp_path, fleet_script([ROWS]))
    deps.override(clients=clients)
    resp = call({"asOf": "2026-11-16T12:00:00Z", "ring": "ring0"})
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    doc = json.loads(resp.get_body())
    assert doc["rings"][0]["machines"][0]["status"] == "missing-patches"
    # the API's own description (triggers/openapi.json) describes this answer
    import jsonschema

    document = json.loads((Path(__file__).parents[3] / "triggers" / "openapi.json").read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    schema = {**schemas["ComplianceView"], "$defs": schemas}
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    jsonschema.Draft202012Validator(json.loads(text)).validate(doc)


def test_now_is_resource_graphs_date_unless_as_of_is_given(tmp_path: Path) -> None:
    """Without ``asOf`` the ages are computed against the server's clock (the ``Date`` header of
    Resource Graph's answer), not the worker's: on the local platform that is the simulated time."""
    script = fleet_script([ROWS])
    plain = script[-1][2]

    def dated(request: Any) -> tuple[int, dict[str, str], Any]:
        status, headers, doc = plain(request)
        return status, {**headers, "Date": "Mon, 16 Nov 2026 12:00:00 GMT"}, doc

    clients, _ = clients_for(tmp_path, [*script[:-1], ("POST", script[-1][1], dated)])
    view = compliance.compliance_core(clients, PLAN.to_dict())
    assert (view["asOf"], view["asOfSource"]) == ("2026-11-16T12:00:00Z", "resourceGraph")
    web = {m["name"]: m for r in view["rings"] for m in r["machines"]}["web-01"]
    assert web["assessmentAgeHours"] == 3.0  # not the weeks the worker's wall clock would say

    clients, _ = clients_for(tmp_path, fleet_script([ROWS]))
    given = compliance.compliance_core(clients, PLAN.to_dict(), as_of=AS_OF + timedelta(hours=1))
    assert (given["asOf"], given["asOfSource"]) == ("2026-11-16T13:00:00Z", "request")


def test_server_time_parses_imf_fixdate_only() -> None:
    from activities.compliance import server_time

    assert server_time({"date": "Mon, 16 Nov 2026 12:00:00 GMT"}) == AS_OF
    assert server_time({"Date": "yesterday"}) is None and server_time({}) is None
