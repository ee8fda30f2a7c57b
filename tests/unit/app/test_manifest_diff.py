"""``manifest_diff`` (issue 9): later rings' latest assessments (Resource Graph, one paged query
per ring) against the manifest, with fakes for the SDK clients; and the pure diff itself."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from activities.manifest_diff import manifest_diff_core
from patchrings.arm.assessments import assessment_query, assessments_by_machine
from patchrings.domain.manifest import Manifest
from patchrings.domain.manifest_diff import ring_diff
from patchrings.domain.plan import load_plan
from tests.unit.activities.graph_fake import FakeGraph

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-0000000000aa"
VM = f"/subscriptions/{SUB}/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines"
ARC = f"/subscriptions/{SUB}/resourceGroups/rg-b/providers/Microsoft.HybridCompute/machines"
NOW = "2026-11-16T12:00:00Z"
CS = ["Critical", "Security"]

MANIFEST = Manifest(windows_kbs=("5048667", "5048685"), linux_packages=("openssl=3.0.2-0ubuntu1.19",),
                    cutoff="2026-11-16T06:00:00Z",
                    details={"KB5048667": {"title": "2026-11 Cumulative Update (KB5048667)",
                                           "classifications": ["Security Updates"]}}).to_dict()
PLAN = load_plan({
    "version": 1, "name": "diff",
    "defaults": {"install": {"windowsParameters": {"classificationsToInclude": CS},
                             "linuxParameters": {"classificationsToInclude": CS}}},
    "rings": [
        {"name": "ring0", "patching": "direct", "members": {"tag": {"name": "ring", "value": "r0"},
                                                           "subscriptions": [SUB]}},
        {"name": "ring1", "patching": "direct", "members": {"tag": {"name": "ring", "value": "r1"},
                                                           "subscriptions": [SUB]},
         "install": {"windowsParameters": {"kbNumbersToExclude": ["5048685"]}}},
        {"name": "ring2", "patching": "direct", "members": {"tag": {"name": "ring", "value": "r2"},
                                                           "subscriptions": [SUB]}},
    ],
}).to_dict()


def win(kb: str, cls: str = "Security Updates", published: str = "2026-11-10T17:00:00Z") -> dict[str, Any]:
    return {"patchName": f"Update (KB{kb})", "kbId": kb, "classifications": [cls], "publishedDateTime": published}


def lin(name: str, version: str, cls: str = "Security") -> dict[str, Any]:
    return {"patchName": name, "version": version, "classifications": [cls]}


def rows_for(machine: str, os_name: str, at: str, patches: list[dict[str, Any]],
             error: Any = None) -> list[dict[str, Any]]:
    summary = f"{machine}/patchAssessmentResults/latest"
    kind = "microsoft.compute/virtualmachines" if "/virtualMachines/" in machine else "microsoft.hybridcompute/machines"
    out = [{"id": summary, "type": f"{kind}/patchassessmentresults", "machineId": machine.lower(),
            "properties": {"osType": os_name, "startDateTime": at, "lastModifiedDateTime": at, "errorDetails": error}}]
    out += [{"id": f"{summary}/softwarePatches/p{i}", "type": f"{kind}/patchassessmentresults/softwarepatches",
             "machineId": machine.lower(), "properties": p} for i, p in enumerate(patches)]
    return out


class Pager:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def by_page(self) -> Any:
        return iter([self.items])


class Fleet:
    """compute / hybrid_compute / resource_graph fakes over one subscription (members from the
    ``resources`` table, :class:`FakeGraph`; ``fail_graph`` fails the assessment queries)."""

    def __init__(self, vms: list[dict[str, Any]], arc: list[dict[str, Any]], rows: list[dict[str, Any]],
                 page_size: int = 4, fail_graph: bool = False) -> None:
        self.vms, self.arc, self.rows, self.page_size, self.fail_graph = vms, arc, rows, page_size, fail_graph
        self.queries: list[tuple[str, list[str], str | None]] = []

    def compute(self, sub: str) -> Any:
        fleet = self

        class VirtualMachines:
            def list_all(self, status_only: str) -> Pager:
                return Pager(fleet.vms)

            def get(self, group: str, name: str) -> Any:  # the read-role probe: no such group (404)
                error = HttpResponseError(message=f"Resource group '{group}' could not be found.")
                error.status_code = 404
                raise error

        return type("C", (), {"virtual_machines": VirtualMachines()})()

    def hybrid_compute(self, sub: str) -> Any:
        fleet = self

        class Machines:
            def list_by_subscription(self) -> Pager:
                return Pager(fleet.arc)

        return type("H", (), {"machines": Machines()})()

    def resource_graph(self) -> Any:
        fleet = self

        class Graph:
            def resources(self, request: Any, cls: Any) -> Any:
                token = request.options.skip_token
                if str(request.query).startswith("resources"):  # ring members (issue 11): the resources table
                    body, headers = FakeGraph(fleet.vms + fleet.arc).send(
                        request.query, list(request.subscriptions or []), token)
                    http = type("R", (), {"text": lambda self: json.dumps(body), "headers": headers})()
                    return cls(type("P", (), {"http_response": http})(), None, None)
                fleet.queries.append((request.query, list(request.subscriptions or []), token))
                if fleet.fail_graph:
                    raise HttpResponseError(message="Forbidden", response=None)
                start = int(token or 0)
                page = fleet.rows[start:start + fleet.page_size]
                body = {"data": page, "count": len(page), "totalRecords": len(fleet.rows)}
                if start + fleet.page_size < len(fleet.rows):
                    body["$skipToken"] = str(start + fleet.page_size)
                http = type("R", (), {"text": lambda self: json.dumps(body), "headers": {}})()
                return cls(type("P", (), {"http_response": http})(), None, None)

        return Graph()


def vm(name: str, os_name: str, ring: str) -> dict[str, Any]:
    return {"id": f"{VM}/{name}", "name": name, "location": "westeurope", "tags": {"ring": ring},
            "properties": {"storageProfile": {"osDisk": {"osType": os_name}}}}


def arc(name: str, ring: str) -> dict[str, Any]:
    return {"id": f"{ARC}/{name}", "name": name, "location": "westeurope", "tags": {"ring": ring},
            "properties": {"osType": "linux", "status": "Connected", "osSku": "Ubuntu 22.04"}}


def test_diff_per_later_ring_in_one_paged_query_each() -> None:
    fresh, stale = "2026-11-16T08:00:00Z", "2026-11-14T08:00:00Z"
    rows = (
        rows_for(f"{VM}/w1", "Windows", fresh, [win("5048667"), win("5048685", "Critical Updates"), win("5049999"),
                                                win("5050000", published="2026-11-16T09:00:00Z")])
        + rows_for(f"{VM}/l1", "Linux", fresh, [lin("openssl", "3.0.2-0ubuntu1.20"), lin("vim", "9", "Other")])
        + rows_for(f"{VM}/w2", "Windows", stale, [win("5048667")])  # older than 24 h: not assessed
        + rows_for(f"{ARC}/a1", "Linux", fresh, [lin("openssl", "3.0.2-0ubuntu1.19")])
        + rows_for(f"{VM}/w9", "Windows", fresh, [win("5048667")])  # in no later ring: ignored
    )
    fleet = Fleet([vm("w0", "Windows", "r0"), vm("w1", "Windows", "r1"), vm("l1", "Linux", "r1"),
                   vm("w2", "Windows", "r1"), vm("w3", "Windows", "r2"), vm("w9", "Windows", "r0")],
                  [arc("a1", "r1")], rows)
    out = manifest_diff_core(fleet, {"rolloutId": "ro-1", "plan": PLAN, "manifest": MANIFEST,
                                     "fromRing": "ring0", "now": NOW})
    assert out["recencyChecked"] is True and out["maxAgeHours"] == 24
    ring1, ring2 = out["rings"]
    assert (ring1["ring"], ring1["machines"], ring1["assessed"], ring1["notAssessed"]) == ("ring1", 4, 3, 1)
    assert ring1["notAssessedMachines"] == ["w2"]
    # w1 gets KB5048667 (KB5048685 is excluded by ring1's own rules), a1 gets the pinned openssl; l1 nothing
    assert (ring1["wouldInstall"], ring1["wouldInstallPatches"]) == (2, 2)
    # ring1's rules want KB5049999 and openssl ...1.20 which Ring 0 did not prove; the late KB is past the cutoff
    assert ring1["notInManifest"] == [{"patch": "KB5049999 Update", "machines": 1},
                                      {"patch": "openssl=3.0.2-0ubuntu1.20", "machines": 1}]
    assert ring1["notInManifestCount"] == 2
    assert ring1["inManifestNotApplicable"] == [
        {"patch": "KB5048685", "reason": "no assessed machine of the ring would install it (not available there, "
                                         "or excluded)"}]
    # ring2: one machine, never assessed -> counted, never assumed clean
    assert (ring2["machines"], ring2["assessed"], ring2["wouldInstall"]) == (1, 0, 0)
    assert {e["patch"].split(" ")[0] for e in ring2["inManifestNotApplicable"]} == {
        "KB5048667", "KB5048685", "openssl=3.0.2-0ubuntu1.19"}
    assert "KB5048667 2026-11 Cumulative Update (KB5048667) [Security Updates]" in {
        e["patch"] for e in ring2["inManifestNotApplicable"]}
    # one paged query per ring (rows paged 4 at a time), scoped to the ring's resource groups
    first_pages = [q for q in fleet.queries if q[2] is None]
    assert len(first_pages) == 2 and ring1["queries"] == 1 and ring1["pages"] == len(fleet.queries) // 2
    assert ring1["pages"] > 1
    assert "resourceGroup in~ ('rg-a', 'rg-b')" in first_pages[0][0] and first_pages[0][1] == [SUB]


def test_arm_errors_are_returned_per_ring_never_raised() -> None:
    fleet = Fleet([vm("w1", "Windows", "r1")], [], [], fail_graph=True)
    out = manifest_diff_core(fleet, {"plan": PLAN, "manifest": MANIFEST, "fromRing": "ring1"})
    assert [r["ring"] for r in out["rings"]] == ["ring2"]
    assert "error" not in out["rings"][0]  # ring2 has no machines: no query needed
    out = manifest_diff_core(fleet, {"plan": PLAN, "manifest": MANIFEST, "fromRing": "ring0"})
    assert out["rings"][0]["ring"] == "ring1" and out["rings"][0]["error"]["message"]
    assert out["recencyChecked"] is False
    bad = manifest_diff_core(fleet, {"plan": PLAN, "manifest": MANIFEST, "fromRing": "nope"})
    assert (bad["error"]["code"], bad["error"]["field"]) == ("RequestInvalid", "fromRing")
    tampered = {**MANIFEST, "hash": "0" * 16}
    bad = manifest_diff_core(fleet, {"plan": PLAN, "manifest": tampered, "fromRing": "ring0"})
    assert (bad["error"]["code"], bad["error"]["field"]) == ("RequestInvalid", "manifest")


def test_query_and_grouping() -> None:
    q = assessment_query(["RG-A", "rg-a", "rg'b"])
    assert "resourceGroup in~ ('rg\\'b', 'rg-a')" in q and "| project id, type, machineId, properties" in q
    assert "resourceGroup" not in assessment_query([f"g{i}" for i in range(101)])
    grouped = assessments_by_machine(rows_for(f"{VM}/W1", "Windows", "2026-11-16T08:00:00Z", [win("1")],
                                              error={"code": "X"}))
    entry = grouped[f"{VM}/W1".lower()]
    assert entry.has_summary and entry.error and len(entry.patches) == 1
    assert not entry.recent(None, __import__("datetime").timedelta(hours=24))  # errors: not assessed


def test_ring_diff_without_assessments_never_assumes_clean() -> None:
    out = ring_diff("ring1", [{"id": "a", "name": "a", "os": "Linux"}], {}, MANIFEST, {})
    assert (out["machines"], out["assessed"], out["notAssessed"], out["wouldInstall"]) == (1, 0, 1, 0)
    assert out["inManifestNotApplicableCount"] == 3


def test_read_assessments_returns_fresh_rows_in_one_query_and_errors_as_values() -> None:
    from activities.manifest_diff import read_assessments_core

    rows = (rows_for(f"{ARC}/a1", "Linux", "2026-11-16T06:01:00Z", [lin("openssl", "3.0.2-0ubuntu1.19")])
            + rows_for(f"{ARC}/a2", "Linux", "2026-11-15T06:01:00Z", [lin("curl", "8")]))  # before `since`
    fleet = Fleet([], [], rows)
    refs = [{"id": f"{ARC}/a1", "kind": "arc"}, {"id": f"{ARC}/a2", "kind": "arc"}, {"id": f"{ARC}/a3"}]
    out = read_assessments_core(fleet, {"vms": refs, "since": "2026-11-16T06:00:00Z"})
    assert list(out["machines"]) == [f"{ARC}/a1".lower()] and out["queries"] == 1
    assert out["machines"][f"{ARC}/a1".lower()]["available"][0]["name"] == "openssl"
    assert len([q for q in fleet.queries if q[2] is None]) == 1
    failing = read_assessments_core(Fleet([], [], [], fail_graph=True), {"vms": refs})
    assert failing["error"]["message"]
    assert read_assessments_core(fleet, {"vms": []}) == {"machines": {}, "queries": 0, "pages": 0}
