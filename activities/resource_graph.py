"""Resource Graph activities: a scheduled run's per-VM results with their patch lists.

Azure VMs and Arc-enabled servers alike (issue 12): the summary query matches
``type endswith '/patchinstallationresults'``, which holds ``microsoft.compute/virtualmachines/…``
and ``microsoft.hybridcompute/machines/…`` rows (arc-and-resource-graph.md §5.1), and rows are
keyed by the lower-cased machine id, whatever its provider. For an Arc machine Resource Graph is
the only source of a run's result (it has no instance view), so a row still missing after the
orchestrator's re-queries stays *missing* (inconclusive), never passes.

``collect_run_results_arg`` ``{correlationId, vms: [VmRef]}`` → ``{"results": [VmInstall...],
"queries", "pages", "source": "resourceGraph"}``. Each entry is the wave's ``VmInstall`` shape
``{vm, name, os, state, result, error}`` (as ``collect_run_results``) plus ``lastAssessment``
(the machine's latest ``patchassessmentresources`` row: when, status, reboot pending, missing
Critical/Security and other counts; ``None`` when it has none; context for people, never a pass), ``result`` a
``VirtualMachineInstallPatchesResult``-shaped dict with ``patches[]`` and ``rebootStatus`` read
from ``patchinstallationresources`` (``source: "resourceGraph"``), so the domain's
``classify_install`` can judge it fully. ``state``:

* ``done`` -- the machine's summary row for this run is terminal and its per-patch rows are there;
* ``running`` -- the row says ``InProgress`` / ``NotStarted``;
* ``missing`` -- no row for this run yet (Resource Graph lags; the run skipped the machine), or a
  terminal row that reports patches whose per-patch rows have not arrived (``PatchRowsMissing``).

The orchestrator re-queries ``running``/``missing`` machines after durable timers and, after the
last attempt, reads their instance views as a fallback whose gap is stated
(``orchestrators/run_results.py``). Queries are per run, not per VM: one summary query and one
per-patch query per 100 runs, each paged at 1,000 rows (:mod:`patchrings.arm.resource_graph`).
A failed query raises (the orchestrator's ``retries.READ`` policy retries it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import azure.durable_functions as df

from activities import Payload
from patchrings import deps
from patchrings.arm import resource_graph as rg
from patchrings.arm.ids import parse_apply_update_id, subscription_of
from patchrings.boundary.activities import (
    CollectRunResultsArgInput,
)
from patchrings.boundary.codec import from_payload
from patchrings.errors import ArmTargetRefused
from patchrings.ports import ResourceGraphGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.resource_graph")

__all__ = ["bp", "collect_run_results_arg_core"]

MAX_QUOTA_WAIT_SECONDS = 10.0


def _hms_seconds(text: str | None) -> float:
    try:
        h, m, s = (float(x) for x in str(text).split(":"))
    except (TypeError, ValueError):
        return 1.0
    return h * 3600 + m * 60 + s


def _respect_quota(headers: Mapping[str, str]) -> None:
    """ARG's quota is per principal (§4.5): at 0 remaining, wait for the reset before the next page."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if str(lowered.get("x-ms-user-quota-remaining", "1")).strip() == "0":
        time.sleep(min(MAX_QUOTA_WAIT_SECONDS, _hms_seconds(lowered.get("x-ms-user-quota-resets-after"))))


def _sender(clients: ResourceGraphGateway) -> rg.Send:
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    client = clients.resource_graph()

    def raw(pipeline_response: Any, _deserialized: Any, _headers: Any) -> tuple[dict[str, Any], dict[str, str]]:
        http = pipeline_response.http_response
        return json.loads(http.text() or "{}"), dict(http.headers)

    def send(query: str, subscriptions: list[str], token: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        options = QueryRequestOptions(top=rg.MAX_PAGE, skip_token=token, result_format="objectArray")
        request = QueryRequest(query=query, subscriptions=subscriptions or None, options=options)
        page, headers = client.resources(request, cls=raw)
        return page, headers

    return send


def collect_run_results_arg_core(clients: ResourceGraphGateway,
                                 payload: CollectRunResultsArgInput | Mapping[str, Any]) -> dict[str, Any]:
    """Per-VM results of a scheduled run from Resource Graph (see the module docstring)."""
    spec = from_payload(CollectRunResultsArgInput, payload)
    correlation_id = str(spec.correlation_id)
    try:
        parse_apply_update_id(correlation_id)
    except ValueError as exc:  # never put anything but a schedule run id into a query
        raise ArmTargetRefused(str(exc), field="correlationId") from None
    vms = list(spec.vms or [])
    if not vms:
        return {"results": [], "queries": 0, "pages": 0, "source": "resourceGraph"}
    subscriptions = sorted({subscription_of(str(vm["id"])).lower() for vm in vms})
    send = _sender(clients)
    summaries, pages = rg.query_all(send, rg.summary_query(correlation_id), subscriptions,
                                    on_quota=_respect_quota)
    queries = 1
    wanted = {str(vm["id"]).lower() for vm in vms}
    latest: dict[str, dict[str, Any]] = {}
    for row in summaries:
        machine = str(row.get("machineId") or rg.machine_of(str(row.get("id", ""))))
        if machine not in wanted:
            continue
        props = row.get("properties") or {}
        seen = latest.get(machine)
        if seen is None or str(props.get("lastModifiedDateTime") or "") > str(
                (seen.get("properties") or {}).get("lastModifiedDateTime") or ""):
            latest[machine] = row
    runs = sorted({str(row.get("run") or "").lower() for row in latest.values() if rg.is_terminal(row)} - {""})
    patch_rows: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(runs), rg.RUN_BATCH):
        rows, n = rg.query_all(send, rg.patch_rows_query(runs[start:start + rg.RUN_BATCH]), subscriptions,
                               on_quota=_respect_quota)
        queries += 1
        pages += n
        for row in rows:
            run = str(row.get("run") or rg.run_of_patch_row(str(row.get("id", "")))).lower()
            patch_rows.setdefault(run, []).append(row)
    results = [_entry(vm, latest.get(str(vm["id"]).lower()), patch_rows) for vm in vms]
    # Each machine's latest assessment (patchassessmentresources, one paged query for all of them):
    # what the machine still misses after the run and whether it waits for a reboot. Reported with
    # the result, never a reason to pass; an unreadable table leaves it out (the run's rows decide).
    try:
        rows, n = rg.query_all(send, rg.assessment_query(), subscriptions, on_quota=_respect_quota)
        queries += 1
        pages += n
        assessed = {str(r.get("machineId") or rg.machine_of(str(r.get("id", "")))).lower(): r for r in rows}
        for entry in results:
            found = assessed.get(str(entry["vm"]).lower())
            entry["lastAssessment"] = _last_assessment(found) if found is not None else None
    except Exception as exc:  # the assessment is context, not the verdict: say so and go on
        log.warning("latest assessments unreadable for run %s: %s", correlation_id, str(exc)[:200])
        for entry in results:
            entry["lastAssessment"] = {"error": "Resource Graph patchassessmentresources could not be read"}
    return {"results": results, "queries": queries, "pages": pages, "source": "resourceGraph"}


def _last_assessment(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a ``…/patchAssessmentResults/latest`` row a person reads beside the result."""
    raw_props = row.get("properties")
    props: Mapping[str, Any] = raw_props if isinstance(raw_props, Mapping) else {}
    raw_counts = props.get("availablePatchCountByClassification")
    counts: Mapping[str, Any] = raw_counts if isinstance(raw_counts, Mapping) else {}
    return {
        "at": props.get("lastModifiedDateTime") or props.get("startDateTime"),
        "status": props.get("status"),
        "rebootPending": props.get("rebootPending"),
        "missingCriticalOrSecurity": int(counts.get("critical") or 0) + int(counts.get("security") or 0),
        "missingOther": sum(int(v or 0) for k, v in counts.items() if k not in ("critical", "security")
                            and isinstance(v, int | float)),
        "error": props.get("errorDetails") or None,
    }


def _entry(vm: Mapping[str, Any], row: dict[str, Any] | None,
           patch_rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"vm": vm["id"], "name": vm.get("name"), "os": vm.get("os"), "state": "missing",
                             "result": None, "error": None}
    if row is None:
        entry["error"] = {"code": "NoResourceGraphRow",
                          "message": "Resource Graph has no patchinstallationresults row of this run for the VM "
                                     "(not yet propagated, or the run did not patch it)"}
        return entry
    patches = patch_rows.get(str(row.get("run") or "").lower(), [])
    result = rg.install_result(row, patches)
    if not rg.is_terminal(row):
        entry.update(state="running", result=result)
        return entry
    reported = result["installedPatchCount"] + result["failedPatchCount"] + result["pendingPatchCount"]
    if reported and not patches:
        entry["error"] = {"code": "PatchRowsMissing",
                          "message": f"the run's summary row reports {reported} patch(es) but Resource Graph has "
                                     "no per-patch rows for it yet"}
        return entry
    entry.update(state="done", result=result)
    return entry


# ------------------------------------------------------------------------------ bindings
@bp.activity_trigger(input_name="payload")
def collect_run_results_arg(payload: Payload) -> dict[str, Any]:
    return collect_run_results_arg_core(deps.clients(), from_payload(CollectRunResultsArgInput, payload))
