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
per-patch query per 100 runs, each paged at 1,000 rows (:mod:`patchrings.arm.resource_graph`);
a call for at most :data:`FILTER_MAX` machines (a verify chunk's late rows) names them in the
summary and assessment queries instead of paging through the whole run. A scheduled ring's
rows are normally read once for the whole ring by ``stage_run_results``
(``activities/run_results_stage.py``), which uses the same queries and shaping.
A failed query raises (the orchestrator's ``retries.READ`` policy retries it).
"""

from __future__ import annotations

import json
import logging
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
from patchrings.errors import ArmTargetRefused, ResourceGraphIncomplete
from patchrings.ports import ResourceGraphGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.resource_graph")

__all__ = ["FILTER_MAX", "Counter", "add_assessments", "bp", "checked_run", "collect_run_results_arg_core",
           "entry_of", "patch_rows_for", "patch_rows_of", "run_rows", "sender"]

def _page_of(text: str | None) -> dict[str, Any]:
    """A 2xx body as a ``QueryResponse`` dict; an empty or non-JSON body is a failed read, never
    an answer without rows (issue 11: it would pass as *no members / no results*)."""
    if not text or not text.strip():
        raise ResourceGraphIncomplete("Resource Graph answered an empty body")
    try:
        page = json.loads(text)
    except ValueError:
        raise ResourceGraphIncomplete(f"Resource Graph answered a body that is not JSON: {text[:80]!r}") from None
    if not isinstance(page, dict):
        raise ResourceGraphIncomplete(f"Resource Graph answered a JSON {type(page).__name__}, not a QueryResponse")
    return page


def _sender(clients: ResourceGraphGateway, gate: rg.QuotaGate | None = None) -> rg.Send:
    """The app's Resource Graph call, behind the process's quota gate (:func:`rg.paced` on
    :data:`rg.QUOTA` unless ``gate``): every query waits for ARG's per-principal quota and a 429
    without ``Retry-After`` (which azure-core does not retry) is waited out and sent again, so no
    caller sends unpaced (issue 11). Callers with a deadline (health, members) pace
    :func:`_raw_sender` themselves with it."""
    return rg.paced(_raw_sender(clients), gate or rg.QUOTA)


def _raw_sender(clients: ResourceGraphGateway) -> rg.Send:
    """The SDK's Resource Graph call, unpaced: only for callers that wrap it in :func:`rg.paced`."""
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    client = clients.resource_graph()

    def raw(pipeline_response: Any, _deserialized: Any, _headers: Any) -> tuple[dict[str, Any], dict[str, str]]:
        http = pipeline_response.http_response
        return _page_of(http.text()), dict(http.headers)

    def send(query: str, subscriptions: list[str], token: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        options = QueryRequestOptions(top=rg.MAX_PAGE, skip_token=token, result_format="objectArray")
        request = QueryRequest(query=query, subscriptions=subscriptions or None, options=options)
        page, headers = client.resources(request, cls=raw)
        return page, headers

    return send


#: A request for at most this many machines names them in the query (``in~`` batches of
#: ``rg.MACHINE_BATCH``) instead of paging through the whole run: a verify chunk's late rows,
#: or a chunk's own query when staging failed (issue 11).
FILTER_MAX = 2 * rg.MACHINE_BATCH


def collect_run_results_arg_core(clients: ResourceGraphGateway,
                                 payload: CollectRunResultsArgInput | Mapping[str, Any]) -> dict[str, Any]:
    """Per-VM results of a scheduled run from Resource Graph (see the module docstring)."""
    spec = from_payload(CollectRunResultsArgInput, payload)
    correlation_id = checked_run(spec.correlation_id)
    vms = list(spec.vms or [])
    if not vms:
        return {"results": [], "queries": 0, "pages": 0, "source": "resourceGraph"}
    subscriptions = sorted({subscription_of(str(vm["id"])).lower() for vm in vms})
    send = _sender(clients)
    ids = sorted({str(vm["id"]).lower() for vm in vms})
    named = len(ids) <= FILTER_MAX and all(rg.is_machine_id(i) for i in ids)
    batches: list[list[str] | None] = (
        [ids[i:i + rg.MACHINE_BATCH] for i in range(0, len(ids), rg.MACHINE_BATCH)] if named else [None])
    counter = Counter()
    latest = run_rows(send, correlation_id, subscriptions, set(ids), counter, batches=batches)
    patch_rows = patch_rows_of(send, latest, subscriptions, counter)
    results = [_entry(vm, latest.get(str(vm["id"]).lower()), patch_rows) for vm in vms]
    add_assessments(send, subscriptions, results, counter, batches=batches, correlation_id=correlation_id)
    return {"results": results, "queries": counter.queries, "pages": counter.pages, "source": "resourceGraph"}


class Counter:
    """Resource Graph requests of one activity call (queries, and pages: one request each)."""

    def __init__(self) -> None:
        self.queries = 0
        self.pages = 0

    def run(self, send: rg.Send, query: str, subscriptions: list[str]) -> list[dict[str, Any]]:
        rows, pages = rg.query_all(send, query, subscriptions)
        self.queries += 1
        self.pages += pages
        return rows


def checked_run(correlation_id: str) -> str:
    """The run id, refused unless it is a schedule run id (nothing else goes into a query)."""
    try:
        parse_apply_update_id(str(correlation_id))
    except ValueError as exc:
        raise ArmTargetRefused(str(exc), field="correlationId") from None
    return str(correlation_id)


def run_rows(send: rg.Send, correlation_id: str, subscriptions: list[str], wanted: set[str], counter: Counter, *,
             batches: list[list[str] | None] | None = None) -> dict[str, dict[str, Any]]:
    """The latest summary row of the run per wanted machine (lower-case id): the run's rows paged
    (``batches`` ``[None]``), or the named machines' rows (``in~`` batches)."""
    latest: dict[str, dict[str, Any]] = {}
    for batch in batches or [None]:
        for row in counter.run(send, rg.summary_query(correlation_id, batch), subscriptions):
            machine = str(row.get("machineId") or rg.machine_of(str(row.get("id", "")))).lower()
            if machine not in wanted:
                continue
            props = row.get("properties") or {}
            seen = latest.get(machine)
            if seen is None or str(props.get("lastModifiedDateTime") or "") > str(
                    (seen.get("properties") or {}).get("lastModifiedDateTime") or ""):
                latest[machine] = row
    return latest


def patch_rows_of(send: rg.Send, latest: Mapping[str, dict[str, Any]], subscriptions: list[str],
                  counter: Counter) -> dict[str, list[dict[str, Any]]]:
    """The per-patch rows of the terminal runs among ``latest``, by run GUID (``in~`` batches of
    ``rg.RUN_BATCH`` runs: issue 12's rule, the patch tables cannot be joined)."""
    runs = sorted({str(row.get("run") or "").lower() for row in latest.values() if rg.is_terminal(row)} - {""})
    patch_rows: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(runs), rg.RUN_BATCH):
        patch_rows.update(patch_rows_for(send, runs[start:start + rg.RUN_BATCH], subscriptions, counter))
    return patch_rows


def patch_rows_for(send: rg.Send, runs: list[str], subscriptions: list[str],
                   counter: Counter) -> dict[str, list[dict[str, Any]]]:
    """The per-patch rows of at most ``rg.RUN_BATCH`` runs (one paged query), by run GUID."""
    patch_rows: dict[str, list[dict[str, Any]]] = {}
    for row in counter.run(send, rg.patch_rows_query(runs), subscriptions):
        run = str(row.get("run") or rg.run_of_patch_row(str(row.get("id", "")))).lower()
        patch_rows.setdefault(run, []).append(row)
    return patch_rows


def add_assessments(send: rg.Send, subscriptions: list[str], results: list[dict[str, Any]], counter: Counter, *,
                    batches: list[list[str] | None] | None, correlation_id: str) -> None:
    """Each machine's latest assessment (``patchassessmentresources``): what the machine still
    misses after the run and whether it waits for a reboot. Reported with the result, never a
    reason to pass; an unreadable table leaves it out (the run's rows decide)."""
    try:
        assessed: dict[str, dict[str, Any]] = {}
        for batch in batches or [None]:
            for r in counter.run(send, rg.assessment_query(batch), subscriptions):
                assessed[str(r.get("machineId") or rg.machine_of(str(r.get("id", "")))).lower()] = r
        for entry in results:
            found = assessed.get(str(entry["vm"]).lower())
            entry["lastAssessment"] = _last_assessment(found) if found is not None else None
    except Exception as exc:  # the assessment is context, not the verdict: say so and go on
        log.warning("latest assessments unreadable for run %s: %s", correlation_id, str(exc)[:200])
        for entry in results:
            entry["lastAssessment"] = {"error": "Resource Graph patchassessmentresources could not be read"}


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


def entry_of(vm: Mapping[str, Any], row: dict[str, Any] | None,
             patch_rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One VM's ``VmInstall`` entry from its summary row and the runs' per-patch rows."""
    return _entry(vm, row, patch_rows)


def sender(clients: ResourceGraphGateway) -> rg.Send:
    """The SDK's Resource Graph call as :func:`patchrings.arm.resource_graph.query_all`'s ``send``
    (paced on the process's quota gate, :func:`_sender`)."""
    return _sender(clients)


# ------------------------------------------------------------------------------ bindings
@bp.activity_trigger(input_name="payload")
def collect_run_results_arg(payload: Payload) -> dict[str, Any]:
    return collect_run_results_arg_core(deps.clients(), from_payload(CollectRunResultsArgInput, payload))
