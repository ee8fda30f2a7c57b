"""The simulator's Resource Graph ``resources`` table and quota, driven through azure-mgmt-resourcegraph 8.0.1.

What is pinned (emulator/arm/resourcegraph.py documents the sources): one row per VM and Arc machine
whose ``properties`` are the ARM GET's plus, for a VM, ``properties.extended.instanceView.powerState``;
every change (tags, power state, creation, deletion) shows only after ``resourcesLagSeconds`` (default
60) plus the machine's ``resourceGraphLagMinutes``; ``$skipToken`` paging over thousands of rows; the
per-principal quota (15 per 5 s) enforced by default with ``Retry-After`` and the quota headers; the
queries the app sends for ring membership and power-state samples. Time moves only through the held
skip clock, except where a test lets the SDK sleep a real ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from emulator.arm import resourcegraph
from emulator.arm.fleet import Vm
from tests.emulator.arm.conftest import SUB, Running, base_scenario

pytestmark = pytest.mark.emulator

VM_IDS = f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines"
ARC_IDS = f"/subscriptions/{SUB}/resourceGroups/rg-arc/providers/Microsoft.HybridCompute/machines"
LAG = timedelta(seconds=60)

# The queries the app sends (ring membership, cheap power-state samples).
MEMBERS = ("resources "
           "| where type =~ 'microsoft.compute/virtualmachines' or type =~ 'microsoft.hybridcompute/machines' "
           "| where tostring(tags['patchRing']) =~ '{ring}' "
           "| project id, name, type, location, resourceGroup, tags, "
           "osType = coalesce(tostring(properties.storageProfile.osDisk.osType), tostring(properties.osType)) "
           "| order by id asc")
POWER = ("resources | where id in~ ({ids}) "
         "| project id, powerState = tostring(properties.extended.instanceView.powerState.code) | order by id asc")


def scenario(**extra: Any) -> dict[str, Any]:
    """The base fleet (4 VMs) plus two Arc machines."""
    doc = base_scenario(**extra)
    doc["subscriptions"][0]["resourceGroups"].append({
        "name": "rg-arc", "location": "westeurope",
        "arcMachines": [
            {"name": "arc-win-01", "os": "Windows", "kind": "AWS", "tags": {"patchRing": "ring0"}},
            {"name": "arc-lin-01", "os": "Linux", "tags": {"patchRing": "ring1"}},
        ],
    })
    return doc


def client(arm: Running, **kwargs: Any) -> Any:
    from azure.mgmt.resourcegraph import ResourceGraphClient

    kw = arm.kwargs()
    return ResourceGraphClient(kw.pop("credential"), **kw, **kwargs)


def query(arm: Running, text: str, *, rg: Any = None, **options: Any) -> dict[str, Any]:
    """One page as the raw JSON, plus ``_headers``."""
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    opts = QueryRequestOptions(**options) if options else None

    def raw(pipeline_response: Any, _body: Any, _headers: Any) -> dict[str, Any]:
        doc: dict[str, Any] = pipeline_response.http_response.json()
        doc["_headers"] = dict(pipeline_response.http_response.headers)
        return doc

    return (rg or client(arm)).resources(  # type: ignore[no-any-return]
        QueryRequest(query=text, subscriptions=[SUB], options=opts), cls=raw)


def all_rows(arm: Running, text: str) -> list[dict[str, Any]]:
    """Every row, following ``$skipToken`` with pages of 1,000."""
    rows: list[dict[str, Any]] = []
    token = None
    while True:
        page = query(arm, text, top=1000, skip_token=token) if token else query(arm, text, top=1000)
        rows.extend(page["data"])
        token = page.get("$skipToken")
        if not token:
            return rows


def raw_get(arm: Running, url_path: str, api_version: str) -> dict[str, Any]:
    """The ARM GET body of a resource, through an SDK pipeline (no model round trip)."""
    from azure.core.rest import HttpRequest

    compute = arm.compute()
    request = HttpRequest("GET", f"{arm.sim.endpoint.rstrip('/')}{url_path}?api-version={api_version}")
    response = compute._client.send_request(request)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def names(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(str(r["id"]).rsplit("/", 1)[-1] for r in rows)


def in_loop(arm: Running, fn: Callable[[], Any]) -> Any:
    result = arm.call(fn)
    arm.settle()
    return result


def test_rows_are_the_arm_get_of_each_vm_and_arc_machine_in_arg_s_columns(arm_factory: Callable[..., Running]) -> None:
    arm = arm_factory(scenario(tenantId="72f988bf-86f1-41af-91ab-2d7cd011db47"))
    rows = {r["name"]: r for r in all_rows(arm, "resources | order by id asc")}
    assert sorted(rows) == ["arc-lin-01", "arc-win-01", "lin-01", "lin-02", "win-01", "win-02"]
    assert set(rows["win-01"]) == set(resourcegraph.COLUMNS)
    for name in ("win-01", "lin-02"):
        row = rows[name]
        get = raw_get(arm, f"{VM_IDS}/{name}", "2024-07-01")
        view = raw_get(arm, f"{VM_IDS}/{name}/instanceView", "2024-07-01")
        extended = row["properties"].pop("extended")
        assert row["properties"] == get["properties"]  # the GET's own serialisation, not a copy
        assert (row["id"], row["name"], row["tags"], row["location"], row["zones"]) == (
            get["id"], get["name"], get["tags"], get["location"], get["zones"])
        assert row["type"] == "microsoft.compute/virtualmachines" and row["resourceGroup"] == "rg-fleet"
        assert row["subscriptionId"] == SUB and row["tenantId"] == "72f988bf-86f1-41af-91ab-2d7cd011db47"
        assert row["kind"] == "" and row["managedBy"] == "" and row["sku"] is None and row["plan"] is None
        power = next(s for s in view["statuses"] if s["code"].startswith("PowerState/"))
        assert extended["instanceView"]["powerState"] == {
            "code": "PowerState/running", "level": "Info", "displayStatus": "VM running"} == {
            k: power[k] for k in ("code", "level", "displayStatus")}
        assert extended["instanceView"]["computerName"] == view["computerName"] == name
        assert extended["instanceView"]["osName"] == view["osName"]
    arc = rows["arc-win-01"]
    get = raw_get(arm, f"{ARC_IDS}/arc-win-01", "2024-07-10")
    assert arc["properties"] == get["properties"] and "extended" not in arc["properties"]
    assert arc["type"] == "microsoft.hybridcompute/machines" and arc["kind"] == "AWS"
    assert arc["identity"] == get["identity"] and arc["tags"] == {"patchRing": "ring0"}
    assert arc["id"] == f"{ARC_IDS}/arc-win-01" and arc["resourceGroup"] == "rg-arc"


def test_tags_and_power_state_show_only_after_the_lag(arm_factory: Callable[..., Running]) -> None:
    arm = arm_factory(scenario())
    assert resourcegraph.options_for(arm.sim).resources_lag == LAG
    assert names(query(arm, MEMBERS.format(ring="ring0"))["data"]) == ["arc-win-01", "lin-01", "win-01"]
    changed = arm.now()
    arm.compute().virtual_machines.begin_update("rg-fleet", "win-02", {"tags": {"patchRing": "ring0"}}).result()
    arm.sim.set_vm_state("lin-01", power_state="deallocated")
    arm.settle()
    # ARM already has the changes; Resource Graph shows the fleet as it was
    assert arm.compute().virtual_machines.get("rg-fleet", "win-02").tags == {"patchRing": "ring0"}
    power = POWER.format(ids=f"'{VM_IDS}/lin-01', '{VM_IDS.upper()}/WIN-02'")
    arm.advance_to(changed + LAG - timedelta(seconds=1))
    assert names(query(arm, MEMBERS.format(ring="ring0"))["data"]) == ["arc-win-01", "lin-01", "win-01"]
    assert [r["powerState"] for r in query(arm, power)["data"]] == ["PowerState/running", "PowerState/running"]
    arm.advance_to(changed + LAG)
    assert names(query(arm, MEMBERS.format(ring="ring0"))["data"]) == ["arc-win-01", "lin-01", "win-01", "win-02"]
    assert [r["powerState"] for r in query(arm, power)["data"]] == ["PowerState/deallocated", "PowerState/running"]


def test_one_machine_can_lag_longer_and_two_changes_publish_in_order(arm_factory: Callable[..., Running]) -> None:
    doc = scenario(resourceGraph={"resourcesLagSeconds": 120})
    doc["subscriptions"][0]["resourceGroups"][0]["vms"][1]["resourceGraphLagMinutes"] = 30  # win-02
    arm = arm_factory(doc)
    t0 = arm.now()
    for name in ("win-01", "win-02"):
        arm.compute().virtual_machines.begin_update("rg-fleet", name, {"tags": {"patchRing": "ring2"}}).result()
    arm.advance_to(t0 + timedelta(minutes=1))
    arm.sim.set_vm_state("win-01", power_state="stopped")  # a second change, a minute after the first
    arm.settle()
    ring2 = MEMBERS.format(ring="ring2")
    arm.advance_to(t0 + timedelta(minutes=2))
    assert names(query(arm, ring2)["data"]) == ["win-01"]  # retagged out of ring0; win-02 is still listed...
    assert query(arm, POWER.format(ids=f"'{VM_IDS}/win-01'"))["data"][0]["powerState"] == "PowerState/running"
    assert names(query(arm, MEMBERS.format(ring="ring1"))["data"]) == ["arc-lin-01", "lin-02", "win-02"]  # ...here
    arm.advance_to(t0 + timedelta(minutes=3))
    assert query(arm, POWER.format(ids=f"'{VM_IDS}/win-01'"))["data"][0]["powerState"] == "PowerState/stopped"
    arm.advance_to(t0 + timedelta(minutes=32) - timedelta(seconds=1))
    assert names(query(arm, ring2)["data"]) == ["win-01"]
    arm.advance_to(t0 + timedelta(minutes=32))
    assert names(query(arm, ring2)["data"]) == ["win-01", "win-02"]


def test_a_change_counts_from_when_it_happened_not_from_the_next_query(arm_factory: Callable[..., Running]) -> None:
    """The scenario timeline stops one VM and adds a tag to another (in place) at 06:10; the first query
    comes a second before the lag has passed, the next one at the lag."""
    at = datetime(2026, 11, 16, 6, 10, tzinfo=UTC)
    arm = arm_factory(scenario(timeline=[
        {"at": "2026-11-16T06:10:00Z", "vms": ["win-02"], "powerState": "stopped"},
        {"at": "2026-11-16T06:10:00Z", "vms": ["lin-02"], "tags": {"wave": "early"}}]))
    text = ("resources | where name in ('win-02', 'lin-02') | project id, name, wave = tostring(tags['wave']), "
            "power = tostring(properties.extended.instanceView.powerState.code) | order by name asc")

    def rows() -> list[tuple[str, str, str]]:
        return [(r["name"], r["wave"], r["power"]) for r in query(arm, text)["data"]]

    arm.advance_to(at + LAG - timedelta(seconds=1))
    assert arm.sim.vm("win-02").power_state == "stopped" and arm.sim.vm("lin-02").tags["wave"] == "early"
    assert rows() == [("lin-02", "", "PowerState/running"), ("win-02", "", "PowerState/running")]
    arm.advance_to(at + LAG)
    assert rows() == [("lin-02", "early", "PowerState/running"), ("win-02", "", "PowerState/stopped")]


def test_creation_and_deletion_lag_too(arm_factory: Callable[..., Running]) -> None:
    """The simulator has no VM PUT/DELETE route; the fleet is changed directly, as those would."""
    arm = arm_factory(scenario())
    fleet = arm.sim.backends.core.fleet
    gone = f"{VM_IDS}/lin-02".lower()
    in_loop(arm, lambda: fleet.vms.pop(gone))
    new = Vm(subscription=SUB, resource_group="rg-fleet", name="win-09", os="Windows", location="westeurope",
             tags={"patchRing": "ring1"})
    in_loop(arm, lambda: fleet.vms.__setitem__(new.id.lower(), new))
    t0 = arm.now()
    ring1 = MEMBERS.format(ring="ring1")
    assert names(query(arm, ring1)["data"]) == ["arc-lin-01", "lin-02", "win-02"]  # first seen now: still as before
    arm.advance_to(t0 + LAG - timedelta(seconds=1))
    assert names(query(arm, ring1)["data"]) == ["arc-lin-01", "lin-02", "win-02"]
    arm.advance_to(t0 + LAG)
    assert names(query(arm, ring1)["data"]) == ["arc-lin-01", "win-02", "win-09"]
    row = query(arm, f"resources | where id =~ '{VM_IDS}/win-09'")["data"][0]
    assert row["properties"]["extended"]["instanceView"]["powerState"]["code"] == "PowerState/running"


def test_an_unhealthy_vm_is_still_running_in_arg(arm_factory: Callable[..., Running]) -> None:
    """ARG carries the power state, not application health: health needs the instance view or the probe."""
    arm = arm_factory(scenario())
    arm.sim.set_vm_state("win-01", health="Unhealthy")
    arm.settle()
    arm.advance_to(arm.now() + timedelta(hours=1))
    row = query(arm, POWER.format(ids=f"'{VM_IDS}/win-01'"))["data"][0]
    assert row["powerState"] == "PowerState/running"


def test_paging_2500_vms_returns_each_id_once_and_counts_agree(arm_factory: Callable[..., Running]) -> None:
    doc = base_scenario()
    doc["subscriptions"][0]["resourceGroups"][0]["vms"] = [
        {"name": f"vm-{i:04d}", "os": "Windows" if i % 2 else "Linux",
         "tags": {"patchRing": "ring0" if i % 5 == 0 else "ring1"}} for i in range(2500)]
    arm = arm_factory(doc)
    pages = []
    token = None
    text = "resources | project id, name | order by id asc"
    while True:
        page = query(arm, text, top=1000, skip_token=token) if token else query(arm, text, top=1000)
        pages.append(page)
        token = page.get("$skipToken")
        if not token:
            break
    ids = [r["id"] for p in pages for r in p["data"]]
    assert [p["count"] for p in pages] == [1000, 1000, 500] and {p["totalRecords"] for p in pages} == {2500}
    assert len(ids) == len(set(ids)) == 2500 and ids == sorted(ids, key=str.lower)
    assert set(ids) == {f"{VM_IDS}/vm-{i:04d}" for i in range(2500)}
    assert query(arm, "resources | summarize count()")["data"] == [{"count_": 2500}]
    assert query(arm, "resources | where tostring(tags['patchRing']) =~ 'ring0' | count")["data"] == [{"Count": 500}]
    members = [r for p in [query(arm, MEMBERS.format(ring="RING0"), top=1000)] for r in p["data"]]
    assert len(members) == 500 and {r["osType"] for r in members} == {"Linux", "Windows"}
    sample = [f"'{VM_IDS}/vm-{i:04d}'" for i in range(0, 2500, 25)]  # 100 ids in one in~
    powers = query(arm, POWER.format(ids=", ".join(sample)), top=1000)["data"]
    assert len(powers) == 100 and {r["powerState"] for r in powers} == {"PowerState/running"}


def test_membership_query_spans_vms_and_arc_and_tag_names_are_case_sensitive(
        arm_factory: Callable[..., Running]) -> None:
    doc = scenario()
    doc["subscriptions"][0]["resourceGroups"][0]["vms"][2]["tags"] = {"PatchRing": "Ring0"}  # lin-01, other casing
    arm = arm_factory(doc)
    rows = query(arm, MEMBERS.format(ring="ring0"))["data"]
    assert [(r["name"], r["type"], r["osType"]) for r in rows] == [
        ("arc-win-01", "microsoft.hybridcompute/machines", "windows"),
        ("win-01", "microsoft.compute/virtualmachines", "Windows")]  # lin-01's key is 'PatchRing': no match
    assert set(rows[0]) == {"id", "name", "type", "location", "resourceGroup", "tags", "osType"}
    any_case = ("resources | where tostring(parse_json(tolower(tostring(tags)))['patchring']) =~ 'ring0' "
                "| project id | order by id asc")
    assert names(query(arm, any_case)["data"]) == ["arc-win-01", "lin-01", "win-01"]
    by_type = query(arm, "resources | summarize n = count() by type | order by type asc")["data"]
    assert by_type == [{"type": "microsoft.compute/virtualmachines", "n": 4},
                       {"type": "microsoft.hybridcompute/machines", "n": 2}]
    # the spec's "Access a properties field" example: a column named after the path inside tostring()
    by_os = query(arm, "resources | where type =~ 'Microsoft.Compute/virtualMachines' "
                       "| summarize count() by tostring(properties.storageProfile.osDisk.osType)")["data"]
    assert sorted(by_os, key=str) == [{"properties_storageProfile_osDisk_osType": "Linux", "count_": 2},
                                      {"properties_storageProfile_osDisk_osType": "Windows", "count_": 2}]


@pytest.mark.parametrize(("text", "token"), [
    ("resources | mv-expand tags", "mv-expand"),
    ("resources | join (patchinstallationresources) on id", "join"),
    ("resources | where tags.patchRing matches regex 'ring.'", "matches"),
    ("resourcecontainers | project id", "resourcecontainers"),
])
def test_what_the_subset_does_not_evaluate_stays_a_400_with_quota_headers(arm: Running, text: str,
                                                                         token: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        query(arm, text)
    error: Any = caught.value
    assert error.status_code == 400 and error.error.code == "BadRequest"
    assert error.response.json()["error"]["details"][1]["token"] == token
    assert error.response.headers["x-ms-user-quota-remaining"] == "14"  # a refused query spent its unit too


def test_quota_is_enforced_by_default_with_retry_after_and_the_window_counts_real_seconds(arm: Running) -> None:
    opts = resourcegraph.options_for(arm.sim)
    assert opts.enforce_quota and opts.quota == 15 and opts.quota_window == timedelta(seconds=5)
    no_retry = client(arm, retry_total=0)
    seen = [query(arm, "resources | count", rg=no_retry)["_headers"] for _ in range(15)]
    assert [h["x-ms-user-quota-remaining"] for h in seen] == [str(n) for n in range(14, -1, -1)]
    with pytest.raises(HttpResponseError) as caught:
        query(arm, "resources | count", rg=no_retry)
    throttled: Any = caught.value
    assert throttled.status_code == 429 and throttled.error.code == "RateLimiting"
    headers = throttled.response.headers
    assert 1 <= int(headers["Retry-After"]) <= 5 and headers["x-ms-user-quota-remaining"] == "0"
    assert headers["x-ms-user-quota-resets-after"].startswith("00:00:0")
    # the held skip clock does not move; the SDK's default policy sleeps Retry-After real seconds and succeeds
    before = arm.now()
    answer = query(arm, "resources | count")
    assert answer["data"] == [{"Count": 4}] and arm.now() == before  # the base fleet's 4 VMs
    throttled_records = [r for r in arm.sim.recorder.find(method="POST") if r.status == 429]
    assert len(throttled_records) == 2  # the one raised above and the one the SDK retried


def test_enforce_quota_false_is_an_explicit_opt_out_that_keeps_the_headers(arm_factory: Callable[..., Running]) -> None:
    arm = arm_factory(base_scenario(resourceGraph={"enforceQuota": False}))
    no_retry = client(arm, retry_total=0)
    last = [query(arm, "resources | count", rg=no_retry) for _ in range(20)][-1]
    assert last["data"] == [{"Count": 4}] and last["_headers"]["x-ms-user-quota-remaining"] == "0"
    assert not [r for r in arm.sim.recorder.find(method="POST") if r.status == 429]


def test_scenario_schema_takes_resources_lag_seconds() -> None:
    from emulator.arm.scenario import ScenarioError, validate_scenario

    base = {"subscriptions": [{"id": "00000000-0000-0000-0000-000000000001"}]}
    validate_scenario({**base, "resourceGraph": {"resourcesLagSeconds": 300, "enforceQuota": False}}, source="s")
    with pytest.raises(ScenarioError, match="resourcesLagSeconds"):
        validate_scenario({**base, "resourceGraph": {"resourcesLagSeconds": -1}}, source="s")
