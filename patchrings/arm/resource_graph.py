"""Azure Resource Graph: the queries for a scheduled run's per-machine results, the pager, and
turning result rows into the ``VirtualMachineInstallPatchesResult`` shape the gate judges.

Why Resource Graph: a scheduled (maintenance-configuration) run's per-machine results live in
``patchinstallationresources`` -- one summary row per machine and run (status, counts,
``rebootStatus``, ``maintenanceWindowExceeded``; ``properties.maintenanceRunId`` = the run's
correlationId) and one ``…/softwarepatches`` row per patch (name, KB / version, classifications,
``installationState``). Instance views only hold the VM's *latest* install summary, without the
patch list or the reboot state (arc-and-resource-graph.md §5.2, §5.3, §5.6, §7(b);
update-manager-domain.md §7 "Per-run gate query").

How (§4.4, §7 pitfalls): two queries, no join (the patch tables are documented as "can't join"):
the run's summary rows by ``maintenanceRunId =~ correlationId``, then the per-patch rows of those
runs by run GUID (segment 10 of the lower-cased id) in ``in~`` batches of at most
:data:`RUN_BATCH`. Every query projects ``id``, sorts by it and pages with ``$top`` = 1000 and
``$skipToken``: one request per 1,000 rows, never one per machine. Literals are quoted with
:func:`kql_string`; ids that go into a query are validated first.

Pure except :func:`query_all`, which drives a caller-supplied ``send`` (the SDK call).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from azure.mgmt.core.tools import parse_resource_id as parse_arm_id

__all__ = [
    "MAX_PAGE",
    "RUN_BATCH",
    "assessment_query",
    "install_result",
    "is_machine_id",
    "kql_string",
    "machine_installs_query",
    "machine_of",
    "patch_rows_query",
    "query_all",
    "run_of_patch_row",
    "summary_query",
]

MAX_PAGE = 1000  # ARG answers at most 1,000 rows per page (§4.4)
RUN_BATCH = 100  # run GUIDs per per-patch query (§7(b))
TERMINAL = frozenset({"succeeded", "failed", "completedwithwarnings"})
_GUIDISH = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def kql_string(value: str) -> str:
    """A KQL single-quoted string literal (backslash and quote escaped; control chars refused)."""
    if any(ord(c) < 0x20 for c in value):
        raise ValueError(f"refusing a control character in a query literal: {value[:80]!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def summary_query(correlation_id: str, machine_ids: Sequence[str] | None = None) -> str:
    """The run's summary rows (one per machine): id, machine id (lower-case), run GUID, properties;
    with ``machine_ids`` (at most :data:`MACHINE_BATCH`) only those machines' rows (a chunk's late
    rows re-queried without paging through the whole run, issue 11)."""
    only = f"| where machineId in~ ({_machine_literals(machine_ids)})\n" if machine_ids is not None else ""
    return (
        "patchinstallationresources\n"
        "| where type endswith '/patchinstallationresults'\n"
        f"| where tostring(properties.maintenanceRunId) =~ {kql_string(correlation_id)}\n"
        "| extend machineId = tostring(split(tolower(id), '/patchinstallationresults/')[0])\n"
        f"{only}"
        "| project id, machineId, run = name, properties\n"
        "| order by id asc"
    )


def patch_rows_query(run_ids: Sequence[str]) -> str:
    """Per-patch rows of the given runs (GUIDs, at most :data:`RUN_BATCH`)."""
    if not run_ids or len(run_ids) > RUN_BATCH:
        raise ValueError(f"1..{RUN_BATCH} run ids per query, got {len(run_ids)}")
    for run in run_ids:
        if not _GUIDISH.match(run):
            raise ValueError(f"not a run id: {run[:80]!r}")
    runs = ", ".join(kql_string(r) for r in run_ids)
    return (
        "patchinstallationresources\n"
        "| where type endswith '/patchinstallationresults/softwarepatches'\n"
        "| extend run = tostring(split(tolower(id), '/')[10])\n"
        f"| where run in~ ({runs})\n"
        "| project id, run, properties\n"
        "| order by id asc"
    )


MACHINE_BATCH = 100  # machine ids per ``in~`` list (§4.5: group ids into one query, not one per machine)
_MACHINE_ID = re.compile(
    r"^/subscriptions/[0-9A-Za-z-]{1,64}/resourcegroups/[A-Za-z0-9._()\-]{1,90}/providers/"
    r"(microsoft\.compute/virtualmachines|microsoft\.hybridcompute/machines)/[A-Za-z0-9._\-]{1,80}$",
    re.IGNORECASE,
)


def _machine_literals(machine_ids: Sequence[str]) -> str:
    if not machine_ids or len(machine_ids) > MACHINE_BATCH:
        raise ValueError(f"1..{MACHINE_BATCH} machine ids per query, got {len(machine_ids)}")
    for machine in machine_ids:
        if not _MACHINE_ID.match(str(machine)):
            raise ValueError(f"not a VM or Arc machine id: {str(machine)[:120]!r}")
    return ", ".join(kql_string(str(m).lower()) for m in machine_ids)


def machine_installs_query(machine_ids: Sequence[str]) -> str:
    """Every install summary row (any run, VMs or Arc) of the given machines (at most
    :data:`MACHINE_BATCH`): how an Arc machine's on-demand install is found in Resource Graph
    (its LRO result has no patch list; §2.6, §5.2). Rows are kept 30 days, so a machine has few."""
    return (
        "patchinstallationresources\n"
        "| where type endswith '/patchinstallationresults'\n"
        "| extend machineId = tostring(split(tolower(id), '/patchinstallationresults/')[0])\n"
        f"| where machineId in~ ({_machine_literals(machine_ids)})\n"
        "| project id, machineId, run = name, properties\n"
        "| order by id asc"
    )


def assessment_query(machine_ids: Sequence[str] | None = None) -> str:
    """The latest assessment summary of every machine (VMs and Arc) in the queried subscriptions
    (§7(c)): missing Critical / Security counts and when the machine was last assessed; with
    ``machine_ids`` (at most :data:`MACHINE_BATCH`) only those machines'."""
    only = f"| where machineId in~ ({_machine_literals(machine_ids)})\n" if machine_ids is not None else ""
    return (
        "patchassessmentresources\n"
        "| where type endswith '/patchassessmentresults'\n"
        "| extend machineId = tostring(split(tolower(id), '/patchassessmentresults/')[0])\n"
        f"{only}"
        "| project id, machineId, properties\n"
        "| order by id asc"
    )


def is_machine_id(value: str) -> bool:
    """Whether ``value`` is a VM or Arc machine id a query may name (:func:`summary_query`'s filter)."""
    return bool(_MACHINE_ID.match(str(value)))


def machine_of(row_id: str) -> str:
    """The machine id (lower-case) of a summary or per-patch row id."""
    low = str(row_id).lower()
    return low.split("/patchinstallationresults/")[0].split("/patchassessmentresults/")[0]


def run_of_patch_row(row_id: str) -> str:
    """The run GUID (lower-case) of a ``…/patchInstallationResults/<GUID>/softwarePatches/<p>`` id
    (the machine's first child resource name, as ``azure.mgmt.core.tools.parse_resource_id`` reads it)."""
    return str(parse_arm_id(str(row_id)).get("child_name_1") or "").lower()


Send = Callable[[str, list[str], "str | None"], "tuple[Mapping[str, Any], Mapping[str, str]]"]


def query_all(send: Send, query: str, subscriptions: list[str], *, max_pages: int = 1000,
              on_quota: Callable[[Mapping[str, str]], None] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Every row of ``query`` (objectArray), following ``$skipToken``; returns (rows, pages).

    ``send(query, subscriptions, skip_token)`` returns the page (a ``QueryResponse`` as a dict) and
    the response headers; ``on_quota(headers)`` is called between pages (back off on quota 0).
    """
    rows: list[dict[str, Any]] = []
    token: str | None = None
    pages = 0
    while True:
        page, headers = send(query, subscriptions, token)
        pages += 1
        data = page.get("data")
        if isinstance(data, list):
            rows.extend(r for r in data if isinstance(r, dict))
        elif data is not None:
            raise ValueError("Resource Graph answered in table format; objectArray was expected")
        token = page.get("$skipToken") or page.get("skipToken") or page.get("skip_token")
        if not token:
            return rows, pages
        if pages >= max_pages:
            raise RuntimeError(f"Resource Graph paging did not end after {max_pages} pages")
        if on_quota is not None:
            on_quota(headers)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _error(props: Mapping[str, Any]) -> dict[str, Any] | None:
    details = props.get("errorDetails")
    if not details:
        return None
    items = details if isinstance(details, list) else [details]
    items = [d if isinstance(d, Mapping) else {"message": str(d)} for d in items]
    first = items[0] if items else {}
    return {"code": first.get("code") or "PatchInstallationError",
            "message": f"{len(items)} error/s reported: {first.get('message') or ''}".strip(),
            "details": [dict(d) for d in items]}


def install_result(summary: Mapping[str, Any], patch_rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A summary row's ``properties`` plus its per-patch rows, in the
    ``VirtualMachineInstallPatchesResult`` shape (``source: resourceGraph``)."""
    props = summary.get("properties") if isinstance(summary.get("properties"), Mapping) else summary
    assert isinstance(props, Mapping)
    patches = []
    for row in sorted(patch_rows, key=lambda r: str(r.get("id", "")).lower()):
        p = row.get("properties") if isinstance(row.get("properties"), Mapping) else {}
        assert isinstance(p, Mapping)
        patches.append({
            "patchId": str(row.get("id", "")).rsplit("/", 1)[-1],
            "name": p.get("patchName"),
            "version": p.get("version"),
            "kbId": p.get("kbId"),
            "classifications": list(p.get("classifications") or []),
            "installationState": p.get("installationState"),
        })
    return {
        "status": props.get("status"),
        "installationActivityId": props.get("installationActivityId"),
        "rebootStatus": props.get("rebootStatus") or "Unknown",
        "maintenanceWindowExceeded": bool(props.get("maintenanceWindowExceeded")),
        "excludedPatchCount": _int(props.get("excludedPatchCount")),
        "notSelectedPatchCount": _int(props.get("notSelectedPatchCount")),
        "pendingPatchCount": _int(props.get("pendingPatchCount")),
        "installedPatchCount": _int(props.get("installedPatchCount")),
        "failedPatchCount": _int(props.get("failedPatchCount")),
        "patches": patches,
        "startDateTime": props.get("startDateTime"),
        "lastModifiedDateTime": props.get("lastModifiedDateTime"),
        "maintenanceRunId": props.get("maintenanceRunId"),
        "error": _error(props),
        "source": "resourceGraph",
    }


def is_terminal(summary: Mapping[str, Any]) -> bool:
    props = summary.get("properties") if isinstance(summary.get("properties"), Mapping) else summary
    return str((props or {}).get("status") or "").lower() in TERMINAL
