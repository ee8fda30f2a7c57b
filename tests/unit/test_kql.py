"""The simulator's KQL subset (emulator/arm/kql.py) and the app's query builders
(patchrings/arm/resource_graph.py) agree: every query the app sends compiles and does what it says.

Semantics from arc-and-resource-graph.md §6.3 / §5.7 (``=~`` and ``has`` case-insensitive, ``has``
whole terms, the 3-argument ``split`` returning a one-element array, KQL's default ``desc`` sort,
unknown columns and functions refused).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from emulator.arm.kql import KqlError, compile_query
from patchrings.arm import resource_graph as rg

pytestmark = pytest.mark.unit

COLS = ["id", "name", "type", "subscriptionId", "properties"]
TABLES = {"patchinstallationresources": COLS}
VM = "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/{}"
RUN = ("/subscriptions/S1/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc/providers/"
       "Microsoft.Maintenance/applyUpdates/20261116060000")
NOW = datetime(2026, 11, 16, 12, tzinfo=UTC)


def summary(vm: str, guid: str, status: str = "Succeeded", run: str = RUN) -> dict[str, Any]:
    return {"id": f"{VM.format(vm)}/patchInstallationResults/{guid}", "name": guid, "subscriptionId": "S1",
            "type": "microsoft.compute/virtualmachines/patchinstallationresults",
            "properties": {"status": status, "maintenanceRunId": run, "rebootStatus": "Completed",
                           "installedPatchCount": 1, "failedPatchCount": 0}}


def patch(vm: str, guid: str, pid: str, state: str = "Installed") -> dict[str, Any]:
    return {"id": f"{VM.format(vm)}/patchInstallationResults/{guid}/softwarePatches/{pid}", "name": pid,
            "subscriptionId": "S1",
            "type": "microsoft.compute/virtualmachines/patchinstallationresults/softwarepatches",
            "properties": {"installationState": state, "patchName": f"p-{pid}", "kbId": pid,
                           "classifications": ["Security Updates"]}}


ROWS = [summary("vm-a", "g-a"), summary("vm-b", "g-b", "Failed"), summary("vm-c", "g-c", run=RUN + "x"),
        patch("vm-a", "g-a", "111"), patch("vm-b", "g-b", "222", "Failed"), patch("vm-c", "g-c", "333")]


def run(text: str, rows: list[dict[str, Any]] = ROWS) -> list[dict[str, Any]]:
    return compile_query(text, TABLES, now=NOW).run(rows, NOW)


def test_the_app_s_summary_query_selects_the_run_s_rows_case_insensitively() -> None:
    out = run(rg.summary_query(RUN.upper()))
    assert [r["run"] for r in out] == ["g-a", "g-b"]
    assert out[0]["machineId"] == VM.format("vm-a").lower() == rg.machine_of(out[0]["id"])
    assert set(out[0]) == {"id", "machineId", "run", "properties"}


def test_the_app_s_patch_query_selects_by_run_guid() -> None:
    out = run(rg.patch_rows_query(["G-A", "g-b"]))
    assert [(r["run"], r["properties"]["kbId"]) for r in out] == [("g-a", "111"), ("g-b", "222")]
    assert rg.run_of_patch_row(out[0]["id"]) == "g-a"
    result = rg.install_result(ROWS[0], [r for r in out if r["run"] == "g-a"])
    assert result["patches"][0]["kbId"] == "111" and result["rebootStatus"] == "Completed"
    assert result["source"] == "resourceGraph"


def test_query_builders_refuse_what_could_break_out_of_a_literal() -> None:
    assert rg.kql_string("a'b\\c") == "'a\\'b\\\\c'"
    assert run(f"patchinstallationresources | where name == {rg.kql_string(chr(39) + ' or 1==1')} | project id") == []
    with pytest.raises(ValueError):
        rg.patch_rows_query(["x' or 1==1 or '"])
    with pytest.raises(ValueError):
        rg.patch_rows_query([f"g{i}" for i in range(rg.RUN_BATCH + 1)])
    with pytest.raises(ValueError):
        rg.kql_string("line\nbreak")


@pytest.mark.parametrize(("where", "names"), [
    ("name == 'g-a'", ["g-a"]),
    ("name == 'G-A'", []),
    ("name =~ 'G-A'", ["g-a"]),
    ("name != 'g-a'", ["g-b", "g-c"]),
    ("name !~ 'G-A'", ["g-b", "g-c"]),
    ("name in ('g-a', 'g-c')", ["g-a", "g-c"]),
    ("name in~ ('G-A')", ["g-a"]),
    ("name !in ('g-a')", ["g-b", "g-c"]),
    ("id has 'VM-B'", ["g-b"]),
    ("id has 'vm'", ["g-a", "g-b", "g-c"]),  # '-' ends a term: 'vm' is a whole term of 'vm-b'
    ("id has 'virtualMach'", []),  # whole terms only, not substrings
    ("id contains 'VM-B'", ["g-b"]),
    ("id !has 'vm-b'", ["g-a", "g-c"]),
    ("type startswith 'MICROSOFT.compute'", ["g-a", "g-b", "g-c"]),
    ("properties.status == 'Failed' or name == 'g-c'", ["g-b", "g-c"]),
    ("properties.status == 'Failed' and name == 'g-c'", []),
    ("toint(properties.installedPatchCount) >= 1 and isnotnull(properties.rebootStatus)", ["g-a", "g-b", "g-c"]),
    ("isnull(properties.nothing)", ["g-a", "g-b", "g-c"]),
    ("not(properties.status == 'Failed')", ["g-a", "g-c"]),
])
def test_where_operators(where: str, names: list[str]) -> None:
    text = (f"patchinstallationresources | where type endswith '/patchinstallationresults' | where {where} "
            "| project name")
    assert sorted(r["name"] for r in run(text)) == names


def test_extend_project_summarize_order_take_count_distinct() -> None:
    out = run("patchinstallationresources\n"
              "| extend st = tostring(properties.status), kind = iff(type has 'softwarepatches', 'patch', 'summary')\n"
              "| summarize n = count(), failed = countif(st =~ 'failed'), runs = make_set(name) by kind\n"
              "| order by kind asc")
    assert [(r["kind"], r["n"], r["failed"]) for r in out] == [("patch", 3, 0), ("summary", 3, 1)]
    assert run("patchinstallationresources | count") == [{"Count": 6}]
    # KQL sorts descending by default
    assert [r["name"] for r in run("patchinstallationresources | order by name | take 2")] == ["g-c", "g-b"]
    assert [r["name"] for r in run("patchinstallationresources | sort by name asc | limit 1")] == ["111"]
    assert run("patchinstallationresources | top 1 by name asc | project name") == [{"name": "111"}]
    assert len(run("patchinstallationresources | distinct subscriptionId")) == 1
    assert set(run("patchinstallationresources | project properties.status | take 1")[0]) == {"properties_status"}
    assert set(run("patchinstallationresources | project-away properties | take 1")[0]) == {
        "id", "name", "type", "subscriptionId"}
    assert run("patchinstallationresources | summarize count()") == [{"count_": 6}]


def test_scalars_and_quirks() -> None:
    row = run("patchinstallationresources | take 1 | project a = tostring(split(id, '/', 8)), "
              "b = split(id, '/')[8], c = strcat('x', 1, true), d = tolower('AB'), e = toint('12'), "
              "f = tobool('true'), g = coalesce(properties.none, 'z'), h = array_length(split('a,b', ',')), "
              "i = tostring(properties) has 'Succeeded', j = properties['status'], k = ago(1d) < now(), "
              "l = todatetime('2026-11-16T00:00:00Z') < now(), m = parse_json('{\"k\": 1}').k // comment")[0]
    assert row == {"a": '["vm-a"]', "b": "vm-a", "c": "x1true", "d": "ab", "e": 12, "f": True, "g": "z", "h": 2,
                   "i": True, "j": "Succeeded", "k": True, "l": True, "m": 1}


@pytest.mark.parametrize(("text", "code"), [
    ("", "InvalidQuery"),
    ("patchinstallationresources | where", "ParserFailure"),
    ("patchinstallationresources | where name = 'x'", "ParserFailure"),
    ("patchinstallationresources | where nope == 1", "InvalidQuery"),
    ("patchinstallationresources | where cout() > 1", "UnknownFunction"),
    ("patchinstallationresources | summarize avg(1)", "UnknownFunction"),
    ("patchinstallationresources | where count() > 1", "InvalidQuery"),
    ("patchinstallationresources | join kind=inner (resources) on id", "ParserFailure"),
    ("patchinstallationresources | mv-expand properties", "ParserFailure"),
    ("patchinstallationresources | parse name with x", "ParserFailure"),
    ("patchinstallationresources | where name matches regex 'x'", "ParserFailure"),
    ("patchinstallationresources | project x = ", "ParserFailure"),
    ("patchinstallationresources | project name | where id == 'x'", "InvalidQuery"),
    ("resources", "InvalidQuery"),
    ("patchinstallationresources | take x", "ParserFailure"),
    ("patchinstallationresources | where name == 'unterminated", "ParserFailure"),
])
def test_anything_outside_the_subset_is_refused(text: str, code: str) -> None:
    with pytest.raises(KqlError) as caught:
        compile_query(text, TABLES, now=NOW)
    assert caught.value.code == code


def test_take_marks_the_query_unpageable() -> None:
    assert compile_query("patchinstallationresources | take 5", TABLES).limited
    assert not compile_query(rg.summary_query(RUN), TABLES).limited
