"""Results of one scheduled maintenance run: collect per-VM outcomes, verify health, decide.

Why a sub-orchestration: a scheduled ring can be thousands of VMs; their per-VM results and
verdicts belong in the ledger, not in the long-lived rollout's history (which every later episode
replays). The rollout gets back a small summary.

Bounded history at any size (issue 11): this instance holds **no VM**. ``plan_ring_waves`` (the
direct ring's planner, activities/members.py) resolves the ring's members once and keeps them in
the ledger's ``Waves`` table in slices of :data:`VERIFY_CHUNK` VMs (under :func:`members_run_id`,
as one wave: the ring's ``rate`` does not apply to a run the platform already made), answering
counts. Each slice is one ``verify`` chunk (sub-orchestration, side by side, staggered so their
reads do not burst together) that reads its own members (``read_wave_members``), collects its own
results (Resource Graph for its VMs, re-queried while rows are late, instance views for the rest:
``verify.collect_results``), runs the health phases, writes its per-VM rows to the ledger and
answers a bounded :class:`~patchrings.boundary.rings.VerifySummary` (counts, the first
``verify.MAX_NAMED`` verdicts that are not a plain pass, a passing health sample). The gate is
decided here from those summaries: plain passes and the counted failures beyond the named ones
enter ``decide_gate`` as stand-ins, so its counts and outcome are those of every verdict; the
gate names the named VMs and says how many more the ledger holds.

Retries (issue 13 item 2): membership and results are reads (``retries.READ``), the ledger write
is an idempotent upsert (``retries.WRITE``). A call that still fails does not fail the
orchestration: the gate turns *inconclusive* with the reason (unreadable members -- the ring's or
a chunk's --, unreadable results, results not recorded), so a person decides and nothing passes
on missing evidence.

Where the results come from (issue 12): Azure Resource Graph: the run's
``patchinstallationresources`` summary rows with their per-patch rows and reboot state, read
**once for the ring** before the chunks start (``stage_run_results``, :func:`stage_results`:
one request per 1,000 summary rows, per-patch rows per 100 runs, assessments per 1,000 rows) and
staged in the ledger per slice; each chunk reads its slice's entries (``read_staged_results``, one
ledger read). Resource Graph lags behind the run's end, so a chunk's machines without a finished
row are re-queried after durable timers (:data:`ARG_REQUERY_DELAYS`, about half an hour in all;
the staged read counts as the first query), naming only those machines
(``collect_run_results_arg``). If staging fails, every chunk queries for its own VMs from the
start, as before (no safety change).
Machines still without one -- or all of them when Resource Graph cannot be read -- fall back to
``collect_run_results`` (instance views). That fallback's gap is stated in the gate: an instance
view carries neither the patch list nor the reboot state, so those machines are *inconclusive*,
never passed (``patchrings.domain.results``); a machine with no result at all is inconclusive too.

VMs the gate did not open (issue 11): the opening ``ring_gate`` read each member live and did not
retag the ones that had left the ring (``leftRing``), so the run's dynamic scope never held them;
Resource Graph, about a minute stale, may still list them as members here. The rollout hands their
ids (``gateLeft``, at most 25) and count (``gateLeftCount``) in; each chunk marks those it holds
``left-ring`` (not collected, not judged) and the gate counts them all and names the first few
(``gates.decide_gate``: inconclusive when more left than the larger of maxErrors and 10% of the
planned members). Leavers past the 25 named that Resource Graph still lists have no result: they
are inconclusive, never passed.

Input :class:`~patchrings.boundary.rings.RunResultsInput` ``{rolloutId, ringSpec, ring,
correlationId, since, gateLeft?, gateLeftCount?}``; output :class:`~patchrings.boundary.rings.RunResultsOutput` ``{gate,
healthSample, counts}``. Its verify chunks get the ring's document (``ringSpec``), never the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.ring_direct import HEALTH_SAMPLE, health_sample
from orchestrators.verdicts import gate_for
from orchestrators.verify import ARG_REQUERY_DELAYS, BURST_PAUSE, READ_BURST, install_entry
from patchrings.boundary.activities import PlanRingWavesInput, StageRunResultsInput, StageRunResultsOutput
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import (
    RunResultsInput,
    RunResultsOutput,
    VerifyCollect,
    VerifyInput,
    VerifyLedger,
    VerifyMembers,
    VerifyOutput,
    VerifySummary,
)
from patchrings.domain.timeutil import iso

__all__ = ["ARG_REQUERY_DELAYS", "MAX_GATE_NAMED", "MAX_STAGE_CALLS", "VERIFY_CHUNK", "bp", "install_entry",
           "members_run_id", "one_wave", "run_results_orchestrator", "stage_results"]

bp = df.Blueprint()
log = logging.getLogger("patchrings.orchestrators.run_results")

#: At most this many VMs per verify chunk (issue 11, bounded history): a chunk's history holds its
#: members, its results (patch lists included) and its health rounds. Measured on the fake fleet
#: with realistic patch lists (5 KBs per Windows VM, 40 packages per Linux VM): 2.39 MB per chunk
#: of 200 VMs, 1.20 MB of 100, 0.61 MB of 50 (about 12 KB per VM, of which the patch lists twice:
#: the staged results read and the ledger write). With the ledger write taking the patch lists
#: from the staged rows instead of the history (``patchesStaged``): 0.85 MB per chunk of 100 VMs,
#: 1.69 MB of 200. Hence 100; smaller chunks would grow run_results' own history (one
#: sub-orchestration per chunk: 100 at 10,000 VMs).
VERIFY_CHUNK = 100

#: Most VMs the gate names (failed / inconclusive, whole); the others are counted in one reason.
MAX_GATE_NAMED = 100

#: Prefix of the stand-in verdicts of counted VMs (never shown: the gate's reasons drop them).
_STAND_IN = "counted:"


def members_run_id(context: df.DurableOrchestrationContext) -> str:
    """Where an instance keeps its ring's members in the ledger's Waves table: its id and the
    start of its execution (deterministic on replay; a new execution under a reused id plans anew
    instead of answering an older plan)."""
    return f"{context.instance_id}:members@{iso(context.current_utc_datetime)}"


def one_wave(ring_spec: dict[str, Any]) -> dict[str, Any]:
    """The ring's document planned as one wave (``plan_ring_waves`` then only slices it): the
    run already happened, the ring's ``rate`` has nothing to pace here."""
    return {**ring_spec, "rate": {"maxConcurrency": "100%", "maxErrors": 0}}


@bp.orchestration_trigger(context_name="context", orchestration=names.RUN_RESULTS)  # type: ignore[untyped-decorator]
def run_results_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = from_payload(RunResultsInput, context.get_input() or {})
    ring = spec.ring
    # The ring's document (issue 10: not the plan): its gate settings, and what its verify chunks read.
    ring_spec = dict(spec.ring_spec)
    notes: list[dict[str, str]] = []
    run_id = members_run_id(context)
    try:
        plan = yield context.call_activity_with_retry(names.PLAN_RING_WAVES, retries.READ, to_payload(
            PlanRingWavesInput(ring=ring, run_id=run_id, ring_spec=one_wave(ring_spec),
                               slice_size=VERIFY_CHUNK, rollout_id=spec.rollout_id)))
    except Exception as exc:
        reason = f"the ring's members could not be resolved: {str(exc)[:300]}"
        return to_payload(RunResultsOutput(gate=gate_for(ring_spec, ring, [], notes=[{"vm": "", "reason": reason}]),
                                           health_sample=[], counts={"vms": 0}))
    plan = plan or {}
    if plan.get("error"):
        error = plan["error"]
        notes.append({"vm": "", "reason": f"membership incomplete: {error.get('message') or error.get('code')}"})
    count = int(plan.get("count") or 0)
    size = max(1, int(plan.get("sliceSize") or VERIFY_CHUNK))
    slices = [(wave, part, min(size, n - part * size))
              for wave, n in enumerate(int(n) for n in plan.get("waves") or [])
              for part in range(-(-n // size))]
    plan_hash = str(plan.get("hash") or "")
    context.set_custom_status({"step": "collecting", "vms": count})
    staged = (yield from stage_results(context, spec, run_id, plan_hash)) if slices else 0
    # Read by the status API through this instance's id (issue 9): what the ring is doing now.
    context.set_custom_status({"step": "verifying", "vms": count, "verifyInstance": f"{context.instance_id}:verify",
                               "verifyInstances": len(slices)})
    summaries, ledger_errors = yield from verify_in_chunks(context, spec, ring_spec, run_id, plan_hash=plan_hash,
                                                           slices=slices, staged=staged)
    # the gate's leavers, less those the run patched all the same (judged on their rows, not left)
    judged = {str(v).lower() for summary in summaries for v in summary.left_judged}
    left_ids = [str(v) for v in spec.gate_left or [] if str(v).lower() not in judged]
    left_count = max(int(spec.gate_left_count or 0) - len(judged), len(left_ids))
    arg_notes(summaries, notes)
    for summary in summaries:
        notes.extend(summary.notes)
    if ledger_errors:
        notes.append({"vm": "", "reason": f"per-VM results could not be written to the ledger: {ledger_errors[0]}"})
    gate = gate_of(ring_spec, ring, summaries, notes, left_count=left_count,
                   left_names=[v.rsplit("/", 1)[-1] for v in left_ids], planned=max(count, left_count))
    return to_payload(RunResultsOutput(gate=gate,
                                       health_sample=health_sample([vm for s in summaries for vm in s.health_sample]),
                                       counts=sum_counts(summaries)))


#: Most calls of ``stage_run_results`` per staging round (each resumes where the one before
#: stopped for its time budget; 10,000 VMs stage in one call on the simulator).
MAX_STAGE_CALLS = 5


def stage_results(context: df.DurableOrchestrationContext, spec: RunResultsInput, run_id: str,
                  plan_hash: str, chunk: int = VERIFY_CHUNK) -> Generator[Any, Any, int]:
    """The run's Resource Graph rows read once for the ring and staged in the ledger per slice
    (``stage_run_results``, called again while it answers ``complete: false``). While more than
    ``chunk`` VMs (one chunk's worth: Resource Graph lags for the run as a whole) have no finished
    row, the ring is staged again on the re-query schedule (:data:`ARG_REQUERY_DELAYS`) before the
    chunks start; fewer late rows are re-queried by their chunks, naming those machines.

    Returns how many ring-wide queries were staged (each chunk's re-query schedule goes on from
    there), 0 when staging never answered: every chunk then queries Resource Graph for its own
    VMs, as without staging (no safety change). A slice not staged reads as such, and its chunk
    queries for itself."""
    rounds = 0
    while True:
        out: StageRunResultsOutput | None = None
        for _ in range(MAX_STAGE_CALLS):
            try:
                answer = yield context.call_activity_with_retry(names.STAGE_RUN_RESULTS, retries.READ, to_payload(
                    StageRunResultsInput(correlation_id=spec.correlation_id, run_id=run_id, plan_hash=plan_hash,
                                         since=spec.since, rollout_id=spec.rollout_id, ring=spec.ring,
                                         restage=True if rounds else None)))
                out = from_payload(StageRunResultsOutput, answer or {})
            except Exception as exc:
                if not context.is_replaying:
                    log.warning("results of run %s not staged (%s); chunks query for themselves",
                                spec.correlation_id, str(exc)[:200])
                return rounds
            if out.complete:
                break
        rounds += 1
        if out is None or out.pending <= chunk or rounds > len(ARG_REQUERY_DELAYS):
            return rounds
        yield context.create_timer(context.current_utc_datetime + ARG_REQUERY_DELAYS[rounds - 1])


def verify_in_chunks(context: df.DurableOrchestrationContext, spec: RunResultsInput, ring_spec: dict[str, Any],
                     run_id: str, *, plan_hash: str, slices: list[tuple[int, int, int]], staged: int = 0,
                     ) -> Generator[Any, Any, tuple[list[VerifySummary], list[str]]]:
    """One verify chunk per planned slice ``(wave, slice, VMs)``, side by side.

    Chunk ``i`` starts ``i x`` (its read bursts x ``verify.BURST_PAUSE``) later (``startDelaySeconds``),
    so the chunks' Resource Graph queries and rounds of full reads follow one another instead of
    emptying ARM's per-subscription read bucket together. The first chunk keeps the instance id
    ``<this>:verify`` (what the status API follows); the others are ``<this>:verify:<i>``. Each
    chunk reads its members, collects, verifies, writes its per-VM ledger rows and answers a
    summary. Returns ``(summaries, ledger errors)``."""
    tasks = []
    delay = 0
    # each chunk's share of the ring's health sample, twice over (the spread is chosen here)
    share = min(HEALTH_SAMPLE, max(5, -(-2 * HEALTH_SAMPLE // max(1, len(slices)))))
    # and of the gate's named verdicts, twice over too: the gate names at most MAX_GATE_NAMED (the
    # rest are counted), so a ring where every VM fails does not bring every chunk's verdicts back
    named_share = max(1, -(-2 * MAX_GATE_NAMED // max(1, len(slices))))
    for index, (wave, part, n) in enumerate(slices):
        doc = VerifyInput(rollout_id=spec.rollout_id, ring_spec=ring_spec, ring=spec.ring, decide=False,
                          summary=True, ledger=VerifyLedger(run_id=spec.correlation_id),
                          members=VerifyMembers(run_id=run_id, plan_hash=plan_hash,
                                                wave=wave, slice=part, count=n),
                          collect=VerifyCollect(correlation_id=spec.correlation_id, since=spec.since,
                                                staged=staged or None, left=list(spec.gate_left or []) or None),
                          start_delay_seconds=delay or None, sample_size=share, named_size=named_share)
        suffix = "" if index == 0 else f":{index}"
        tasks.append(context.call_sub_orchestrator(names.VERIFY, to_payload(doc),
                                                   f"{context.instance_id}:verify{suffix}"))
        delay += -(-n // READ_BURST) * int(BURST_PAUSE.total_seconds())
    answers = (yield context.task_all(tasks)) if tasks else []
    summaries: list[VerifySummary] = []
    errors: list[str] = []
    for (_, part, n), answer in zip(slices, answers or [], strict=False):
        out = from_payload(VerifyOutput, answer or {"verdicts": []})
        if out.summary is None:  # never expected: a chunk that answered nothing verified nothing
            reason = f"{n} member(s) of slice {part} were not verified (the chunk answered no summary)"
            out = VerifyOutput(verdicts=[], summary=VerifySummary(notes=[{"vm": "", "reason": reason}]))
        summaries.append(out.summary)  # type: ignore[arg-type]
        if out.ledger_error:
            errors.append(out.ledger_error)
    return summaries, errors


def arg_notes(summaries: list[VerifySummary], notes: list[dict[str, str]]) -> None:
    """The Resource Graph fallback's gap, stated once for the whole ring (chunks count it)."""
    unreadable = [s.arg_error for s in summaries if s.arg_error]
    if unreadable:
        notes.append({"vm": "", "reason": f"Resource Graph could not be read ({unreadable[0]}); per-VM results fall "
                                          "back to instance views, which list neither patches nor the reboot state"})
    pending = sum(s.arg_pending for s in summaries if not s.arg_error)
    if pending:
        queries = max(s.arg_queries for s in summaries if s.arg_pending and not s.arg_error)
        notes.append({"vm": "", "reason": f"Resource Graph has no finished result of this run for {pending} VM(s) "
                                          f"after {queries} queries; their results fall back to instance views, "
                                          "which list neither patches nor the reboot state (never a pass)"})


def gate_of(ring_spec: dict[str, Any], ring: str, summaries: list[VerifySummary],
            notes: list[dict[str, str]], *, left_count: int = 0, left_names: list[str] | None = None,
            planned: int | None = None) -> dict[str, Any]:
    """The ring's gate from its chunks' summaries: ``gate_for`` over the named verdicts plus
    stand-ins for the counted ones (so the outcome and counts are those of every verdict), the
    stand-ins' reasons replaced by one that counts them (the ledger has their rows)."""
    named: list[dict[str, Any]] = []
    counted: dict[str, int] = {}
    for summary in summaries:
        for verdict in summary.named:
            if len(named) < MAX_GATE_NAMED:
                named.append(verdict)
            else:
                key = f"{verdict.get('outcome')}|{verdict.get('install')}|{verdict.get('health')}"
                counted[key] = counted.get(key, 0) + 1
        for key, n in summary.omitted.items():
            counted[key] = counted.get(key, 0) + int(n)
    stand_ins: list[dict[str, Any]] = []
    for key, n in sorted(counted.items()):
        outcome, install, health = [*key.split("|"), "", ""][:3]
        stand_ins.extend({"vm": f"{_STAND_IN}{key}:{i}", "install": install, "health": health, "outcome": outcome,
                          "reasons": []} for i in range(n))
    for summary in summaries:
        for key, n in sorted(summary.passed.items()):
            install, _, health = key.partition("|")
            stand_ins.extend({"vm": f"{_STAND_IN}{key}:{i}", "install": install, "health": health,
                              "outcome": "pass", "reasons": []} for i in range(int(n)))
    gate = gate_for(ring_spec, ring, named + stand_ins, notes=notes, left_ring=left_count, left_names=left_names,
                    planned=planned)
    if counted:
        reasons = [r for r in gate.get("reasons") or [] if not str(r.get("vm") or "").startswith(_STAND_IN)]
        reasons.append({"vm": "", "reason": f"{sum(counted.values())} more VM(s) failed or could not be verified "
                                            "(not named here; the ledger has their rows)"})
        gate["reasons"] = reasons
    return gate


def sum_counts(summaries: list[VerifySummary]) -> dict[str, int]:
    """``count_verdicts`` of every verdict: the chunks' counts added up."""
    out: dict[str, int] = {"vms": 0}
    for summary in summaries:
        for key, n in summary.counts.items():
            out[key] = out.get(key, 0) + int(n)
    return out
