"""The simulator's Azure Resource Graph endpoint, driven through azure-mgmt-resourcegraph 8.0.1.

Shapes and rules from /work/shared/reference/arc-and-resource-graph.md: rows §5.2/§5.3 (ids with
the run GUID at segment 10), paging §4.4 (``$skipToken`` only while more rows exist and never with
``take``), errors §4.6 (400 ``BadRequest`` + ``InvalidQuery`` + ``ParserFailure`` /
``UnknownFunction``), quota headers and 429 ``RateLimiting`` §4.5, propagation delay and 30-day
retention §5.8. Time moves only through the held skip clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from emulator.arm import resourcegraph
from tests.emulator.arm.conftest import SUB, Running

pytestmark = pytest.mark.emulator

SUMMARY = ("patchinstallationresources | where type endswith '/patchinstallationresults' "
           "and tostring(properties.maintenanceRunId) =~ '{run}' "
           "| extend machineId = tostring(split(tolower(id), '/patchinstallationresults/')[0]) "
           "| project id, machineId, run = name, status = tostring(properties.status), "
           "reboot = tostring(properties.rebootStatus), properties | order by id asc")


def client(arm: Running) -> Any:
    from azure.mgmt.resourcegraph import ResourceGraphClient

    kw = arm.kwargs()
    return ResourceGraphClient(kw.pop("credential"), **kw)


def query(arm: Running, text: str, **options: Any) -> dict[str, Any]:
    """One page as the raw JSON, plus ``_headers``."""
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    opts = QueryRequestOptions(**options) if options else None

    def raw(pipeline_response: Any, _body: Any, _headers: Any) -> dict[str, Any]:
        doc: dict[str, Any] = pipeline_response.http_response.json()
        doc["_headers"] = dict(pipeline_response.http_response.headers)
        return doc

    return client(arm).resources(QueryRequest(query=text, subscriptions=[SUB], options=opts), cls=raw)  # type: ignore[no-any-return]


def finished_run(arm: Running) -> str:
    run = arm.sim.fire_run("mc-ring0")
    arm.advance_until(lambda: getattr(arm.sim.run(run), "status", None) == "Completed")
    return run


def visible(arm: Running, run: str) -> None:
    """Move the clock past the propagation delay of the run's last install."""
    found = arm.sim.run(run)
    assert found is not None
    last = max(p.end for p in found.plans.values())
    arm.advance_to(last + resourcegraph.options_for(arm.sim).propagation)


def test_rows_appear_after_the_propagation_delay_with_the_documented_shapes(arm: Running) -> None:
    run = finished_run(arm)
    early = query(arm, SUMMARY.format(run=run))["data"]
    # Resource Graph lags: the VM that finished last (win-01, at the run's end) has no row yet
    assert [r["machineId"].rsplit("/", 1)[-1] for r in early] == ["lin-01"]
    visible(arm, run)
    page = query(arm, SUMMARY.format(run=run.upper()))  # =~ compares case-insensitively
    assert page["resultTruncated"] == "false" and page["facets"] == [] and "$skipToken" not in page
    rows = {r["machineId"].rsplit("/", 1)[-1]: r for r in page["data"]}
    assert sorted(rows) == ["lin-01", "win-01"]  # the dynamic scope's ring0 members
    assert page["totalRecords"] == page["count"] == 2
    win = rows["win-01"]
    assert win["id"].endswith(f"/patchInstallationResults/{win['run']}") and "/virtualMachines/win-01/" in win["id"]
    assert win["status"] == "Succeeded" and win["reboot"] == "Completed"
    props = win["properties"]
    assert props["maintenanceRunId"] == run and props["osType"] == "Windows" and props["startedBy"] == "Platform"
    assert props["installedPatchCount"] == 2 and props["failedPatchCount"] == 0
    assert props["maintenanceWindowExceeded"] is False and props["patchServiceUsed"] == "WU-WSUS"
    patches = query(arm, (
        "patchinstallationresources | where type endswith '/patchinstallationresults/softwarepatches' "
        "| extend run = tostring(split(tolower(id), '/')[10]), vm = tostring(split(id, '/', 8)) "
        f"| where run in~ ('{win['run'].upper()}') "
        "| project id, run, vm, kb = tostring(properties.kbId), state = tostring(properties.installationState), "
        "properties | order by id asc"))["data"]
    assert {p["kb"]: p["state"] for p in patches} == {"5048667": "Installed", "5048654": "Installed",
                                                      "2267602": "NotSelected"}
    assert all(p["vm"] == '["win-01"]' for p in patches)  # the 3-argument split quirk (§5.7)
    assert all("version" not in p["properties"] and isinstance(p["properties"]["classifications"], list)
               for p in patches)
    linux = query(arm, ("patchinstallationresources | where properties has 'version' "
                        "| summarize n = count() by state = tostring(properties.installationState) "
                        "| order by state asc"))["data"]
    assert linux and all(set(r) == {"state", "n"} for r in linux)


def test_paging_with_skip_token_and_take(arm: Running) -> None:
    run = finished_run(arm)
    visible(arm, run)
    text = "patchinstallationresources | project id, type | order by id asc"
    everything = query(arm, text, top=1000)
    total = everything["totalRecords"]
    assert total == len(everything["data"]) > 3
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = query(arm, text, top=2, skip_token=token) if token else query(arm, text, top=2)
        pages += 1
        assert page["totalRecords"] == total and page["count"] == len(page["data"]) <= 2
        seen.extend(r["id"] for r in page["data"])
        token = page.get("$skipToken")
        if not token:
            break
    assert seen == [r["id"] for r in everything["data"]] and pages == (total + 1) // 2
    limited = query(arm, "patchinstallationresources | project id | take 3", top=2)
    assert limited["count"] == 2 and limited["resultTruncated"] == "true" and "$skipToken" not in limited
    no_id = query(arm, "patchinstallationresources | project type", top=2)
    assert "$skipToken" not in no_id and no_id["resultTruncated"] == "true"
    default = query(arm, "patchinstallationresources | project id")
    assert default["count"] == min(total, 100)  # no $top: the documented default page of 100


@pytest.mark.parametrize(("text", "code", "token"), [
    ("patchinstallationresources | where", "ParserFailure", "<EOF>"),
    ("patchinstallationresources | where cout() > 1", "UnknownFunction", "cout"),
    ("patchinstallationresources | join (resources) on id", "ParserFailure", "join"),
    ("patchinstallationresources | mv-expand properties", "ParserFailure", "mv-expand"),
    ("patchinstallationresources | where nosuchcolumn == 1", "ParserFailure", "nosuchcolumn"),
    ("maintenanceresources | project id", "ParserFailure", "maintenanceresources"),
])
def test_anything_outside_the_subset_is_arg_s_400(arm: Running, text: str, code: str, token: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        query(arm, text)
    error: Any = caught.value
    assert error.status_code == 400 and error.error.code == "BadRequest"
    body = error.response.json()["error"]
    assert body["message"].startswith("Please provide below info when asking for support")
    assert body["details"][0]["code"] == "InvalidQuery"
    assert body["details"][1]["code"] == code and body["details"][1]["token"] == token


def test_request_validation(arm: Running) -> None:
    with pytest.raises(HttpResponseError) as caught:
        query(arm, "patchinstallationresources | project id", top=5000)  # the SDK does not check $top
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError) as caught:
        query(arm, "patchinstallationresources | project id", skip_token="bm90IGEgdG9rZW4=")
    assert caught.value.status_code == 400
    table = query(arm, "patchinstallationresources | project id, type", result_format="table")
    assert [c["name"] for c in table["data"]["columns"]] == ["id", "type"] and table["data"]["rows"] == []


def test_retention_drops_rows_and_the_default_is_30_days(arm: Running) -> None:
    assert resourcegraph.options_for(arm.sim).retention == timedelta(days=30)
    assert resourcegraph.options_for(arm.sim).propagation == timedelta(minutes=3)
    run = finished_run(arm)
    visible(arm, run)
    assert len(query(arm, SUMMARY.format(run=run))["data"]) == 2
    resourcegraph.configure(arm.sim, retention=timedelta(minutes=30))
    arm.advance_to(arm.now() + timedelta(minutes=30))
    assert query(arm, SUMMARY.format(run=run))["data"] == []


def test_quota_headers_and_rate_limiting(arm: Running) -> None:
    page = query(arm, "patchinstallationresources | project id")
    assert page["_headers"]["x-ms-user-quota-remaining"] == "14"
    assert page["_headers"]["x-ms-user-quota-resets-after"] == "00:00:05"
    resourcegraph.configure(arm.sim, enforce_quota=True, quota=2, retry_after_on_429=False, used={})
    query(arm, "patchinstallationresources | project id")
    query(arm, "patchinstallationresources | project id")
    with pytest.raises(HttpResponseError) as caught:  # no Retry-After: azure-core does not retry (§4.5)
        query(arm, "patchinstallationresources | project id")
    throttled: Any = caught.value
    assert throttled.status_code == 429 and throttled.error.code == "RateLimiting"
    recorded = [r for r in arm.sim.recorder.find(method="POST") if r.status == 429]
    assert len(recorded) == 1 and recorded[0].action == "Microsoft.ResourceGraph/resources/read"


def test_the_sdk_deserialises_the_answer(arm: Running) -> None:
    """The answer fits azure-mgmt-resourcegraph 8.0.1's ``QueryResponse`` model (no ``cls`` hook)."""
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    run = finished_run(arm)
    visible(arm, run)
    answer = client(arm).resources(QueryRequest(
        query="patchinstallationresources | project id, properties | order by id asc", subscriptions=[SUB],
        options=QueryRequestOptions(top=1)))
    assert answer.count == 1 and answer.total_records > 1 and answer.result_truncated == "false"
    assert answer.skip_token and isinstance(answer.data, list) and answer.facets == []
    assert isinstance(answer.data[0]["properties"], dict)


def test_an_unregistered_api_version_is_refused(arm: Running) -> None:
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.resourcegraph.models import QueryRequest

    kw = arm.kwargs()
    old = ResourceGraphClient(kw.pop("credential"), api_version="2018-09-01-preview", **kw)
    with pytest.raises(HttpResponseError) as caught:
        old.resources(QueryRequest(query="patchinstallationresources | project id", subscriptions=[SUB]))
    refused: Any = caught.value
    assert refused.status_code == 400 and refused.error.code == "NoRegisteredProviderFound"
    assert "2021-03-01" in refused.error.message  # the SDK's default is registered


def test_scenario_schema_accepts_resource_graph_options_and_names_bad_ones() -> None:
    from emulator.arm.scenario import ScenarioError, validate_scenario

    base = {"subscriptions": [{"id": "00000000-0000-0000-0000-000000000001"}]}
    validate_scenario({**base, "resourceGraph": {"propagationMinutes": 10, "enforceQuota": True}}, source="s")
    with pytest.raises(ScenarioError, match="resourceGraph"):
        validate_scenario({**base, "resourceGraph": {"propagationMinuts": 10}}, source="s")
