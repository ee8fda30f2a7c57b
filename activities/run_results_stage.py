"""``stage_run_results`` / ``read_staged_results``: a scheduled run's Resource Graph rows read
once for the whole ring, kept in the ledger per verify chunk (issue 11).

Why: a scheduled ring verifies in chunks of ``run_results.VERIFY_CHUNK`` VMs. If every chunk
queried Resource Graph for its own VMs, the ring would cost one run query (paging through the
whole run) per chunk per attempt. Staged, the run's rows are read once: the summary rows paged
at 1,000 rows (``$skipToken``), the per-patch rows of the terminal runs in ``in~`` batches of
``RUN_BATCH`` runs, the latest assessments paged (issue 12's rules and result shaping, reused
from :mod:`activities.resource_graph`), so the ring costs
``ceil(rows / 1,000) + ceil(VMs / RUN_BATCH) + ceil(assessment rows / 1,000)`` requests whatever
its chunk size. Each chunk then reads its own entries from the ledger (one read) and re-queries
Resource Graph only for its VMs still without a finished row (``verify.collect_results``).

``stage_run_results`` ``{correlationId, runId, planHash, since?, restage?}`` (``runId`` /
``planHash``: the members ``plan_ring_waves`` planned) → ``{complete, slices, staged, pending,
done, queries, pages}``:

* **check before act**: a plan already staged completely answers at once (no query); slices
  staged by an earlier call are not staged again (re-running is idempotent: the same rows);
* **time budget**: a Consumption activity dies at 10 minutes; after each slice it stops once
  :data:`BUDGET_SECONDS` are spent and answers ``complete: false`` -- the orchestrator calls it
  again and it goes on with the slices not staged yet (the run's summary rows are read again:
  one page per 1,000 rows);
* each slice's entries (``VmInstall`` + ``lastAssessment``, as ``collect_run_results_arg``) are
  written with :meth:`patchrings.ledger.Ledger.record_staged_results`; entries that are not
  ``done`` are staged too (late rows are inconclusive, never a pass) and counted (``pending``);
* ``restage: true`` (Resource Graph lagging for many machines: ``run_results`` re-stages on its
  re-query schedule before the chunks start) queries the run again and rewrites the slices that
  had rows missing; a chunk re-queries its own few late machines itself.

``read_staged_results`` ``{runId, planHash, wave, slice}`` → ``{results: [entry] | null}``
(``null``: not staged -- the chunk then queries Resource Graph for its VMs itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import azure.durable_functions as df

from activities import Payload
from activities.resource_graph import (
    Counter,
    add_assessments,
    checked_run,
    entry_of,
    patch_rows_for,
    run_rows,
    sender,
)
from patchrings import deps
from patchrings.arm import resource_graph as rg
from patchrings.arm.ids import subscription_of
from patchrings.boundary.activities import (
    ReadStagedResultsInput,
    ReadStagedResultsOutput,
    StageRunResultsInput,
    StageRunResultsOutput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.ports import ResourceGraphGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.run_results_stage")

__all__ = ["BUDGET_SECONDS", "StagedResultsStore", "bp", "read_staged_results", "read_staged_results_core",
           "stage_run_results", "stage_run_results_core"]

#: Seconds a call may spend before it stops after the slice at hand (a Consumption activity is
#: killed at 10 minutes: leave room for the last slice's queries and writes).
BUDGET_SECONDS = 360.0


class StagedResultsStore(Protocol):
    """The ledger's plan and staged-result rows (:class:`patchrings.ledger.Ledger`, ``Waves``)."""

    def wave_plan(self, run_id: str) -> dict[str, Any] | None: ...

    def wave_slice(self, run_id: str, plan_hash: str, wave: int, part: int) -> list[dict[str, Any]] | None: ...

    def record_staged_results(self, run_id: str, plan_hash: str, wave: int, part: int,
                              entries: list[dict[str, Any]]) -> int: ...

    def staged_results(self, run_id: str, plan_hash: str, wave: int, part: int) -> list[dict[str, Any]] | None: ...

    def staged_slices(self, run_id: str, plan_hash: str) -> dict[tuple[int, int], int]: ...

    def staging(self, run_id: str, plan_hash: str) -> dict[str, Any] | None: ...

    def record_staging(self, run_id: str, plan_hash: str, fields: Mapping[str, Any]) -> bool: ...


def planned_slices(plan: Mapping[str, Any]) -> list[tuple[int, int]]:
    """The ``(wave, slice)`` pairs of a plan row (``waves`` sizes, ``sliceSize``)."""
    size = max(1, int(plan.get("sliceSize") or 1))
    return [(wave, part) for wave, n in enumerate(int(n) for n in plan.get("waves") or [])
            for part in range(-(-n // size))]


def stage_run_results_core(clients: ResourceGraphGateway, ledger: StagedResultsStore,
                           payload: StageRunResultsInput | Mapping[str, Any], *,
                           clock: Callable[[], float] = time.monotonic,
                           budget: float | None = None) -> dict[str, Any]:
    """Stage a run's per-VM Resource Graph entries per planned slice (see the module docstring)."""
    spec = payload if isinstance(payload, StageRunResultsInput) else from_payload(StageRunResultsInput, payload)
    correlation_id = checked_run(spec.correlation_id)
    started = clock()
    limit = BUDGET_SECONDS if budget is None else budget
    progress = ledger.staging(spec.run_id, spec.plan_hash)
    plan = ledger.wave_plan(spec.run_id)
    if plan is None or str(plan.get("hash") or "") != spec.plan_hash:
        raise LookupError(f"run {spec.run_id}: no plan {spec.plan_hash} to stage results for")
    slices = planned_slices(plan)
    staged = ledger.staged_slices(spec.run_id, spec.plan_hash)
    if progress is not None and progress.get("complete") and not spec.restage:
        return to_payload(StageRunResultsOutput(complete=True, slices=len(slices), staged=len(slices),
                                                pending=sum(staged.values())))
    # restage: the slices whose rows were missing; the restaged ones are marked in the progress row
    # (``restaged``: slice keys of this round) so a call resumed after its budget skips them
    round_done = set(str(k) for k in (progress or {}).get("restaged") or []) if spec.restage else set()
    todo = [s for s in slices if s not in staged
            or (spec.restage and staged[s] > 0 and f"{s[0]}.{s[1]}" not in round_done)]
    members: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for wave, part in todo:
        vms = ledger.wave_slice(spec.run_id, spec.plan_hash, wave, part)
        if vms is None:
            raise LookupError(f"run {spec.run_id}: plan {spec.plan_hash} has no wave {wave} slice {part}")
        members[(wave, part)] = vms
    everyone = [vm for vms in members.values() for vm in vms]
    counter = Counter()
    done = 0
    if everyone:
        subscriptions = sorted({subscription_of(str(vm["id"])).lower() for vm in everyone})
        send = sender(clients)
        # restaging: what a slice staged before stays (finished rows, the latest assessments);
        # only machines without a finished row are looked at again
        prior: dict[str, dict[str, Any]] = {}
        for key in todo:
            if key in staged:
                prior.update({str(e.get("vm")).lower(): e
                              for e in ledger.staged_results(spec.run_id, spec.plan_hash, *key) or []})
        wanted = {str(vm["id"]).lower() for vm in everyone} - {m for m, e in prior.items() if _finished(e)}
        latest = run_rows(send, correlation_id, subscriptions, wanted, counter)
        assessed: dict[str, Any] = {m: e.get("lastAssessment") for m, e in prior.items()}
        fresh = [{"vm": vm["id"]} for vm in everyone if str(vm["id"]).lower() not in prior]
        if fresh:
            add_assessments(send, subscriptions, fresh, counter, batches=None, correlation_id=correlation_id)
            assessed.update({str(a["vm"]).lower(): a.get("lastAssessment") for a in fresh})
        # the per-patch rows of the slices' newly finished runs, RUN_BATCH runs a query across slices,
        # each slice written once its runs are read; the budget is checked between queries
        runs_of = {key: sorted({str(latest[m].get("run") or "").lower() for m in _ids(members[key])
                                if m in latest and rg.is_terminal(latest[m])} - {""}) for key in todo}
        order = list(dict.fromkeys(run for key in todo for run in runs_of[key]))
        patch_rows: dict[str, list[dict[str, Any]]] = {}
        fetched: set[str] = set()
        left = list(todo)
        wrote = 0
        position = 0
        while left:
            for key in [k for k in left if all(r in fetched for r in runs_of[k])]:
                entries = []
                for vm in members[key]:
                    m = str(vm["id"]).lower()
                    kept = m in prior and _finished(prior[m])
                    entry = prior[m] if kept else entry_of(vm, latest.get(m), patch_rows)
                    entry["lastAssessment"] = assessed.get(m)
                    done += entry["state"] == "done" and not kept
                    entries.append(entry)
                ledger.record_staged_results(spec.run_id, spec.plan_hash, key[0], key[1], entries)
                staged[key] = sum(1 for e in entries if not _finished(e))
                round_done.add(f"{key[0]}.{key[1]}")
                left.remove(key)
                wrote += 1
            batch = order[position:position + rg.RUN_BATCH]
            if not left or not batch or (wrote and clock() - started > limit):  # the next call goes on
                break
            position += len(batch)
            patch_rows.update(patch_rows_for(send, batch, subscriptions, counter))
            fetched.update(batch)
    complete = all(s in staged for s in slices) and (
        not spec.restage or all(f"{w}.{p}" in round_done for (w, p) in todo))
    previous = progress or {}
    ledger.record_staging(spec.run_id, spec.plan_hash, {
        "complete": all(s in staged for s in slices), "correlationId": correlation_id,
        # a restage round is over once complete: the next round starts afresh
        "restaged": sorted(round_done) if spec.restage and not complete else [],
        "queries": int(previous.get("queries") or 0) + counter.queries,
        "pages": int(previous.get("pages") or 0) + counter.pages})
    log.info("staged %d of %d slices of run %s (%d queries, %d pages)", len(staged), len(slices), correlation_id,
             counter.queries, counter.pages)
    return to_payload(StageRunResultsOutput(complete=complete, slices=len(slices), staged=len(staged),
                                            pending=sum(staged.values()), done=done,
                                            queries=counter.queries, pages=counter.pages))


def _finished(entry: Mapping[str, Any]) -> bool:
    return entry.get("state") == "done" and bool(entry.get("result"))


def _ids(vms: list[dict[str, Any]]) -> list[str]:
    return [str(vm["id"]).lower() for vm in vms]


def read_staged_results_core(ledger: StagedResultsStore,
                             payload: ReadStagedResultsInput | Mapping[str, Any]) -> dict[str, Any]:
    """One slice's staged entries, ``None`` when that slice is not staged (a read: retried)."""
    spec = payload if isinstance(payload, ReadStagedResultsInput) else from_payload(ReadStagedResultsInput, payload)
    return to_payload(ReadStagedResultsOutput(
        results=ledger.staged_results(spec.run_id, spec.plan_hash, spec.wave, spec.slice)))


# ------------------------------------------------------------------------------ bindings
@bp.activity_trigger(input_name="payload")
def stage_run_results(payload: Payload) -> dict[str, Any]:
    return stage_run_results_core(deps.clients(), deps.ledger(), from_payload(StageRunResultsInput, payload))


@bp.activity_trigger(input_name="payload")
def read_staged_results(payload: Payload) -> dict[str, Any]:
    return read_staged_results_core(deps.ledger(), from_payload(ReadStagedResultsInput, payload))
