"""One wave of a direct ring: start installPatches on each VM, poll with durable timers, verify.

Why a sub-orchestration per wave: each wave gets its own history, so a 5,000-VM ring replays
``maxConcurrency``-sized histories instead of one huge one (durable-host-protocol.md §10).
Why start + poll: installPatches runs 30-120+ minutes, far beyond an activity's time limit, so an
activity only *starts* it (returning an LRO continuation token) and another does one status check
per round, between durable timers (§11). The hard deadline comes from the install's
``maximumDuration`` plus a grace period, computed from ``context.current_utc_datetime``.

Retries (issue 13 item 2): ``poll_install`` is a read and runs with ``retries.READ``; a poll
round whose activity still fails is simply a round without news (the deadline decides).
``start_install`` is **not** retried by the host: its POST keeps its once-only ledger claim, and
the wave re-drives only what the activity says was never sent (``refused`` + ``retryable``), or a
start whose activity failed outright (re-running it is safe: the claim makes it once-only).

Uncertain starts (issue 13 item 4): a claim with no POST behind it (crash between claim and
POST) or a POST answered 5xx leaves the install *uncertain*. ``poll_install`` (given ``now``)
answers ``resend: true`` once :data:`~patchrings.domain.results.UNCERTAIN_START_GRACE` has passed
since the claim and the VM shows nothing in progress and no install newer than the run's start;
the wave then calls ``start_install`` with ``resend: true``, which re-checks all of that and sends
the POST at most once more (a create-only resend claim in the ledger).

Fail fast (issue 11): ``start_install`` answers a started install with ``baseline``, the VM's
health sample from the instance view it read before the POST (and the ring's probes); the wave
hands these to verify, which fails a VM healthy before patching after two unhealthy samples.

Paced starts (issue 11): the wave does not start all its installs in one fan-out. It starts them
in bursts (:func:`~patchrings.domain.rate.start_bursts`: at most ``burst`` VMs of each
subscription), with a durable timer of ``pause`` after each burst, from
:func:`~patchrings.domain.rate.start_pacing`: all the slices of a wave running side by side take
at most half of ARM's per-principal read and write buckets per burst (100 starts with the default
buckets, 20 per slice of a 500-VM wave) and pause until the buckets have refilled (10 s). The
input's ``slices`` / ``startBurst`` / ``startPauseSeconds`` set it when present (read with
``getattr`` until :class:`~patchrings.boundary.rings.WaveInput` declares them); else five slices
are assumed. Refused-but-retryable starts are retried a minute later, paced the same way. The
health reads after the installs are paced the same way: one verify instance per burst, each
started ``pause`` after the one before (``<wave>:verify``, ``<wave>:verify:1`` ...).

Install polling (issue 11): each VM is polled on its own schedule, from its own start (so the
polls are spread like the bursts, never a whole wave's reads at once):
:func:`~patchrings.domain.install_polling.install_poll_at`. In a later wave of the ring (an
``expectedInstallSeconds`` learned from the earlier waves) first at that duration, then gaps of
``pollSeconds`` doubling up to 8 minutes; in the first wave (nothing learned) first at a quarter of
the OS's ``maximumDuration`` (at most 30 minutes), then the offset doubles (gaps at most 30
minutes): an install of up to an hour is seen in 2 looks. A round polls only the VMs due. What
the ring learns (``installSeconds``) is :func:`~patchrings.domain.install_polling.learned_install_seconds`.
Scouts (issue 11, item 6): in a first wave the first started VM of each OS is looked at on the
fine schedule (5 minutes, then gaps of ``pollSeconds`` doubling up to 8 minutes); once it is seen
done, the others of its OS still running are looked at their own start + its duration
(:func:`~patchrings.domain.install_polling.follower_poll_at`): a bad patch's VMs reach verify about
when the scout's install is seen done, not a coarse gap later.

Members (issue 11, item 2): ring_direct hands a wave ``members`` ``{planHash, slice, count}``,
not its VMs; the wave reads them first (``read_wave_members``, ``retries.READ``). A slice it
cannot read installs nothing: the answer is ``unread`` ``{count, error}`` (status step
``members-unreadable``) and the ring's gate is inconclusive with the slice named, never passed.

Input :class:`~patchrings.boundary.rings.WaveInput` ``{rolloutId, ringSpec (or, during the
transition, plan), ring, runId, wave, members: {planHash, slice, count} (or vms: [VmRef]),
parameters: {os: params}, pollSeconds, deadline, runStartedAt, expectedInstallSeconds?,
keepResults?, slices?, sampleSize?, sourcesWanted?}`` (seconds, or ``{os: seconds}``); output
:class:`~patchrings.boundary.rings.WaveOutput` ``{packed, verdicts, passed, results: [VmInstall],
installSeconds: {os: seconds}, count, sample, sources?, sourceCount?, unread?}`` (verdicts packed
by ``verdicts.pack_verdicts``: a plain pass is its index in the slice; ``results`` -- ``vm, os,
image, state, result.patches, verdict``, what the manifest reads, every VM that did not pass and
one passing VM per OS / image / patch list -- empty unless ``keepResults``, default true;
``sample`` the first ``sampleSize`` passing VMs in spread order; ``sources`` the first
``sourcesWanted`` passing VM ids, ``sourceCount`` all: :func:`summarise`) where ``VmInstall =
{vm, name, os, image, state, result, error}`` (``image``: the VmRef's image family, for Ring 0's
coverage in the manifest) and ``installSeconds`` is the longest install per OS seen done (the
ring learns it for its next waves).

Bounded history (issue 11): ``result.patches`` is cut to the installed and failed patches and the
fields read after the wave (:func:`_lean`): what ring_direct replays per VM is its counts, status
and the manifest-relevant patch keys, not the VM's whole patch inventory.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any, cast

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.verdicts import pack_verdicts, ring_of, verdict_passed
from patchrings.boundary.activities import (
    LedgerRecordVmResultsInput,
    PollInstallInput,
    ReadWaveMembersInput,
    StartInstallInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import VerifyInput, WaveInput, WaveOutput
from patchrings.domain.gates import MAX_LEFT_NAMED
from patchrings.domain.install_polling import (
    follower_poll_at,
    install_poll_at,
    learned_install_seconds,
    pick_scouts,
    scout_expected,
)
from patchrings.domain.membership import LEFT_RING
from patchrings.domain.rate import spread_order, start_bursts, start_pacing
from patchrings.domain.results import expected_install_duration
from patchrings.domain.timeutil import iso, parse_duration, parse_instant

bp = df.Blueprint()
log = logging.getLogger("patchrings.orchestrators.wave")

DEFAULT_POLL_SECONDS = 120
# A start refused with ``error.retryable`` sent nothing; it is retried this often, this far apart.
START_ATTEMPTS = 3
START_RETRY = timedelta(minutes=1)


def install_parameters_for(vm: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any] | None:
    """The install parameters for one VM's OS (``parameters`` is keyed by OS, any case);
    ``None`` means there is nothing to install on that OS."""
    os_name = str(vm.get("os") or "").lower()
    for key, value in parameters.items():
        if key.lower() == os_name:
            return value  # type: ignore[no-any-return]
    return None


@bp.orchestration_trigger(context_name="context", orchestration=names.WAVE)  # type: ignore[untyped-decorator]
def wave_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = from_payload(WaveInput, context.get_input() or {})
    vms: list[dict[str, Any]] = spec.vms or []
    if spec.members is not None:
        # Issue 11, item 2: the slice's VMs come from the ledger, not through the ring's history.
        try:
            read = yield context.call_activity_with_retry(
                names.READ_WAVE_MEMBERS, retries.READ, to_payload(ReadWaveMembersInput(
                    run_id=str(spec.run_id or ""), plan_hash=spec.members.plan_hash, wave=int(spec.wave or 0),
                    slice=spec.members.slice, rollout_id=spec.rollout_id, ring=spec.ring)))
            vms = list((read or {}).get("vms") or [])
        except Exception as exc:  # still failing after READ's attempts: nothing is installed
            return _unread(context, spec, exc)
    parameters: dict[str, Any] = spec.parameters or {}
    poll = timedelta(seconds=int(spec.poll_seconds or DEFAULT_POLL_SECONDS))
    deadline = parse_instant(spec.deadline) if spec.deadline else None

    results: dict[str, dict[str, Any]] = {}
    to_start: list[dict[str, Any]] = []
    for vm in vms:
        if install_parameters_for(vm, parameters) is None:
            # The manifest pins nothing for this OS: installing with empty include lists would
            # install everything, so this VM is deliberately left alone.
            results[vm["id"]] = _entry(vm, "not-needed", None, None)
        else:
            to_start.append(vm)

    ring_name = str(spec.ring or "")
    # The ring's document (issue 10: not the plan): its health probes go with each start.
    ring_spec = dict(spec.ring_spec)
    policy = ring_of(ring_spec).health if ring_spec else None
    probes = [p.to_dict() for p in policy.probes] if policy else []
    # The ring's member rule: start_install re-applies it to the live machine (issue 11: the wave's
    # members come from Resource Graph, which lags; a machine that left the ring is not installed).
    member_rule = ring_of(ring_spec).members.to_dict() if ring_spec else None
    baselines: dict[str, Any] = {}  # health before the install, per VM started now (fail fast)

    def start_input(vm: dict[str, Any], *, resend: bool = False) -> dict[str, Any]:
        return to_payload(StartInstallInput(
            rollout_id=spec.rollout_id,
            ring=spec.ring,
            run_id=cast(str, spec.run_id),  # always sent by ring_direct
            run_started_at=spec.run_started_at,
            now=iso(context.current_utc_datetime),
            vm=vm,
            parameters=install_parameters_for(vm, parameters),
            probes=probes,
            resend=True if resend else None,
            member_rule=member_rule,
        ))

    open_tokens: dict[str, str | None] = {}

    def progress(step: str, next_at: Any = None) -> None:
        # Read by the status API through this instance's deterministic id (issue 9): how many of
        # the wave's VMs are still installing, finished, refused; small whatever the wave's size.
        states: dict[str, int] = {}
        for entry in results.values():
            states[entry["state"]] = states.get(entry["state"], 0) + 1
        context.set_custom_status({"step": step, "vms": len(vms), "installing": len(open_tokens) + len(to_start),
                                   "states": states, "nextPollAt": iso(next_at) if next_at else None})

    last_error: dict[str, dict[str, Any]] = {}  # the latest poll's error per VM, for the timeout reason
    by_id = {vm["id"]: vm for vm in vms}
    # Paced starts (issue 11): bursts per subscription sized from ARM's buckets, a durable timer
    # between them (patchrings.domain.rate.start_pacing); each VM's polls follow its own start.
    pacing = start_pacing(_int_or_none(spec.slices), burst=_int_or_none(spec.start_burst),
                          pause_seconds=_int_or_none(spec.start_pause_seconds))
    started_at: dict[str, Any] = {}  # VM -> when its start answered (its poll schedule's origin)
    attempts = 0
    progress("starting")
    while to_start:
        attempts += 1
        retry: list[dict[str, Any]] = []
        pending = to_start
        for number, burst in enumerate(start_bursts([_subscription(vm) for vm in pending], pacing.burst)):
            if number and pacing.pause_seconds:
                yield context.create_timer(context.current_utc_datetime + timedelta(seconds=pacing.pause_seconds))
            batch = [pending[i] for i in burst]
            try:
                # Not retried by the host: the POST is once-only (see the module docstring).
                starts = yield context.task_all([context.call_activity(names.START_INSTALL, start_input(vm))
                                                 for vm in batch])
            except Exception as exc:  # an activity failed outright; a re-run is safe (ledger claim)
                failure = {"code": "StartActivityFailed", "message": str(exc)[:300], "retryable": True}
                starts = [{"state": "refused", "token": None, "error": failure} for _ in batch]
            answered = context.current_utc_datetime
            for vm, answer in zip(batch, starts, strict=True):
                start = answer or {}
                state = start.get("state")
                error = start.get("error") or {}
                if state == LEFT_RING:
                    # Not installed: the live machine is no longer selected by the ring's rule. Not
                    # verified, not judged (no verdict: never passed, never counted against maxErrors);
                    # its entry goes to the ledger's per-VM rows and the wave's status counts it.
                    results[vm["id"]] = _entry(vm, LEFT_RING, None, error or None)
                elif state in ("started", "already-started", "already-done"):
                    open_tokens[vm["id"]] = start.get("token")
                    started_at[vm["id"]] = answered
                    if isinstance(start.get("baseline"), dict):
                        baselines[vm["id"]] = start["baseline"]
                elif error.get("retryable") and attempts < START_ATTEMPTS:
                    retry.append(vm)  # nothing was sent (throttled, transient): try again shortly
                else:
                    # An Arc machine whose agent is not Connected was never sent an install: unknown,
                    # not failed (the gate is inconclusive for it, never passed).
                    results[vm["id"]] = _entry(vm, "unreachable" if error.get("unreachable") else "refused", None,
                                               error or None)
            to_start = [vm for vm in pending if vm["id"] not in open_tokens and vm["id"] not in results]
            progress("starting")
        to_start = retry
        if to_start:
            yield context.create_timer(context.current_utc_datetime + START_RETRY)

    # Each VM's own poll schedule from its own start (patchrings.domain.install_polling): the
    # first wave's (no learned duration) from a floor, doubling; a later wave's from the learned one.
    expected_of = {vm_id: _expected(spec, parameters, by_id[vm_id].get("os")) for vm_id in open_tokens}
    # Scouts (issue 11, item 6): in a first wave, the first started VM of each OS is looked at on
    # the fine schedule; once it is seen done, the others of its OS are looked at their own start
    # + its duration (install_polling.follower_poll_at) instead of the coarse first-wave schedule.
    scouts = _scouts([(vm["id"], vm.get("os")) for vm in vms if vm["id"] in open_tokens and
                      not expected_of[vm["id"]][1]])
    for vm_id in scouts.values():
        expected_of[vm_id] = (scout_expected(expected_of[vm_id][0]), True)
    next_at = {vm_id: _next_look(started_at[vm_id], started_at[vm_id], expected_of[vm_id], poll)
               for vm_id in open_tokens}
    running_at: dict[str, Any] = {}  # VM -> the last look that found its install running
    seen_done: dict[str, float] = {}  # OS -> longest install learned in this wave (seconds), for the ring
    while open_tokens:
        wake = min(next_at[v] for v in open_tokens)
        if deadline is not None and wake > deadline:
            wake = deadline
        if wake > context.current_utc_datetime:
            progress("polling", wake)
            yield context.create_timer(wake)
        now = context.current_utc_datetime
        at_deadline = deadline is not None and now >= deadline
        polling = [v for v in open_tokens if at_deadline or next_at[v] <= now]
        try:
            polls = yield context.task_all(
                [
                    context.call_activity_with_retry(
                        names.POLL_INSTALL,
                        retries.READ,
                        to_payload(PollInstallInput(
                            run_id=spec.run_id, run_started_at=spec.run_started_at, now=iso(now),
                            vm=by_id[vm_id], token=open_tokens[vm_id])),
                    )
                    for vm_id in polling
                ]
            )
        except Exception as exc:  # still failing after READ's attempts: a round without news
            if not context.is_replaying:
                log.warning("wave %s of %s: poll round failed: %s", spec.wave, spec.ring, exc)
            polls = [{"done": False} for _ in polling]
        resend: list[str] = []
        scouted: dict[str, float] = {}  # OS -> its scout's install, seen done in this round
        for vm_id, polled in zip(polling, polls, strict=True):
            poll_result = polled or {}
            if poll_result.get("done"):
                open_tokens.pop(vm_id)
                state = "done" if poll_result.get("result") is not None else "failed"
                results[vm_id] = _entry(by_id[vm_id], state, poll_result.get("result"), poll_result.get("error"))
                if state == "done":
                    os_key = str(by_id[vm_id].get("os") or "").lower()
                    scout = scouts.get(os_key) == vm_id
                    took = learned_install_seconds(started_at[vm_id], running_at.get(vm_id), now, middle=scout)
                    seen_done[os_key] = max(seen_done.get(os_key, 0.0), took)
                    if scout:
                        scouted[os_key] = took
            else:
                if poll_result.get("error"):
                    last_error[vm_id] = poll_result["error"]
                else:
                    running_at[vm_id] = now
                if poll_result.get("resend"):
                    resend.append(vm_id)
                next_at[vm_id] = _next_look(started_at[vm_id], now, expected_of[vm_id], poll)
        for os_key, took in scouted.items():
            learned_now = timedelta(seconds=took)
            looked = set(polling)
            for vm_id in open_tokens:
                if not expected_of[vm_id][1] and str(by_id[vm_id].get("os") or "").lower() == os_key:
                    expected_of[vm_id] = (learned_now, True)
                    next_at[vm_id] = follower_poll_at(started_at[vm_id], now, learned_now,
                                                      scout_started=started_at[scouts[os_key]],
                                                      looked_now=vm_id in looked, base=poll)
        if resend:
            yield from _resend(context, resend, by_id=by_id, open_tokens=open_tokens, results=results,
                               start_input=start_input)
        if not open_tokens:
            break
        if at_deadline and deadline is not None:
            for vm_id in list(open_tokens):
                open_tokens.pop(vm_id)
                results[vm_id] = _entry(
                    by_id[vm_id],
                    "timeout",
                    None,
                    {"code": "InstallDeadlineExceeded",
                     "message": f"no result by {iso(deadline)}" + _last(last_error.get(vm_id))},
                )
            break

    ordered = [_lean(results[vm["id"]]) for vm in vms]
    progress("verifying")
    if not context.is_replaying:
        log.info("wave %s of %s: %d installs finished", spec.wave, spec.ring, len(ordered))

    # Health reads paced like the starts (issue 11): one verify instance per start burst, each
    # ``pause`` after the one before (verify's startDelaySeconds); its rounds keep that offset, so
    # the slices side by side never read more instance views at once than they started installs.
    # One burst: one verify instance, ``<wave>:verify`` (what the status API follows).
    chunks = start_bursts([_subscription(vm) for vm in vms], pacing.burst) or [[]]
    outcomes = yield context.task_all([
        context.call_sub_orchestrator(
            names.VERIFY,
            to_payload(VerifyInput(
                rollout_id=spec.rollout_id,
                ring_spec=ring_spec,
                ring=spec.ring,
                vms=[vms[i] for i in chunk],
                installs=[ordered[i] for i in chunk],
                decide=False,
                baselines={vms[i]["id"]: baselines[vms[i]["id"]] for i in chunk if vms[i]["id"] in baselines},
                start_delay_seconds=number * pacing.pause_seconds or None,
            )),
            f"{context.instance_id}:verify" + (f":{number}" if number else ""),
        )
        for number, chunk in enumerate(chunks)
    ])
    position = {vm["id"]: i for i, vm in enumerate(vms)}
    verdicts = sorted((v for outcome in outcomes or [] for v in (outcome or {}).get("verdicts", [])),
                      key=lambda v: position.get(v.get("vm"), len(vms)))
    # Per-VM rows go to the ledger from here (idempotent upsert), so the ring replays them once.
    yield context.call_activity_with_retry(
        names.LEDGER_VM_RESULTS,
        retries.WRITE,
        to_payload(LedgerRecordVmResultsInput(
            rollout_id=cast(str, spec.rollout_id), ring=ring_name, run_id=spec.run_id,
            results=[_compact(r) for r in ordered], verdicts=verdicts)),
    )
    # Bounded history (issue 11): passing VMs go back as indexes; install results only when the
    # ring builds a manifest from them (``keepResults``, default true).
    keep = spec.keep_results is not False
    packed = pack_verdicts(vms, verdicts)
    summary = summarise(vms, verdicts, [_manifest_part(r) for r in ordered] if keep else None,
                        sample_size=spec.sample_size, sources_wanted=spec.sources_wanted)
    # members that left the ring before their install: counted and named by the wave that saw them,
    # so the ring's gate need not infer them from its counts (and can name them)
    left = [str(vm.get("name") or vm["id"]) for vm in vms if (results.get(vm["id"]) or {}).get("state") == LEFT_RING]
    return to_payload(WaveOutput(packed=packed["packed"], verdicts=packed["verdicts"], passed=packed["passed"],
                                 install_seconds=seen_done, left_ring_count=len(left) or None,
                                 left_ring=left[:MAX_LEFT_NAMED] or None, **summary))


def summarise(vms: list[dict[str, Any]], verdicts: list[dict[str, Any]], results: list[dict[str, Any]] | None, *,
              sample_size: int | None, sources_wanted: int | None) -> dict[str, Any]:
    """What a wave hands its ring besides the packed verdicts (issue 11, item 2: the ring does not
    hold the slice's VMs), bounded whatever the slice's size: ``count``; ``sample``, the first
    ``sample_size`` passing VMs in spread order (the ring's health sample merges them:
    ``spread_order`` keeps a VM's place as VMs are added); and when ``results`` (the manifest's
    entries, in slice order) are kept: each kept one with its ``verdict`` -- every VM that did not
    pass, and of the passing ones the first of each distinct OS / image / patch list (what the
    manifest reads is the same) -- ``sources``, the first ``sources_wanted`` passing VMs by id, and
    ``sourceCount``, all of them. ``sample_size`` / ``sources_wanted`` absent: none (an older ring)."""
    by_vm = {str(v.get("vm")): v for v in verdicts}
    passing = [vm for vm in vms if verdict_passed(by_vm.get(str(vm["id"])) or {})]
    refs = {str(vm["id"]): vm for vm in passing}
    sample = [refs[vm_id] for vm_id in spread_order(passing)[:max(0, int(sample_size or 0))]]
    out: dict[str, Any] = {"count": len(vms), "sample": sample}
    if results is None:
        return {**out, "results": []}
    kept: list[dict[str, Any]] = []
    shapes: set[str] = set()
    for entry in results:
        verdict = by_vm.get(str(entry.get("vm")))
        if verdict is not None and verdict_passed(verdict):
            shape = result_shape(entry)
            if shape in shapes:
                continue
            shapes.add(shape)
        kept.append({**entry, "verdict": verdict} if verdict is not None else dict(entry))
    ids = sorted((str(vm["id"]) for vm in passing), key=str.lower)
    return {**out, "results": kept, "sources": ids[:max(0, int(sources_wanted or 0))], "source_count": len(ids)}


def result_shape(entry: dict[str, Any]) -> str:
    """What a passing VM's install entry tells the manifest: its OS, image and patch list."""
    result = entry.get("result")
    patches = result.get("patches") if isinstance(result, dict) else None
    return json.dumps([str(entry.get("os") or "").lower(), entry.get("image"), patches], sort_keys=True)


def _unread(context: df.DurableOrchestrationContext, spec: WaveInput, exc: Exception) -> Any:
    """The wave's answer when its slice could not be read from the ledger (issue 11, item 2):
    nothing was installed; ``unread`` ``{count, error}`` tells the ring, which makes its gate
    inconclusive with a reason naming the slice (never passed); the status says so too."""
    count = int(spec.members.count) if spec.members is not None else 0
    error = {"code": "WaveMembersUnreadable", "message": str(exc)[:300]}
    context.set_custom_status({"step": "members-unreadable", "vms": count, "installing": 0,
                               "states": {"unread": count}, "error": error})
    if not context.is_replaying:
        log.warning("wave %s of %s: slice %s unreadable, %d VM(s) not installed: %s", spec.wave, spec.ring,
                    spec.members.slice if spec.members else None, count, exc)
    return to_payload(WaveOutput(packed=True, verdicts=[], passed={}, count=count, sample=[],
                                 unread={"count": count, "error": error}))


def _scouts(started: list[tuple[str, Any]]) -> dict[str, str]:
    """The first-wave scouts of the VMs started (``(id, os)`` in start order): one per OS."""
    return pick_scouts((vm_id, str(os_name or "")) for vm_id, os_name in started)


def _expected(spec: WaveInput, parameters: dict[str, Any], os_name: Any) -> tuple[timedelta, bool]:
    """A VM's first look and whether it was learned: ``expectedInstallSeconds`` (learned by the
    caller from earlier waves: a number, or ``{os: seconds}``), else the first-wave floor from
    its OS's ``maximumDuration`` (domain rule, :func:`expected_install_duration`)."""
    own = install_parameters_for({"os": os_name}, parameters) or {}
    try:
        maximum: timedelta | None = parse_duration(own["maximumDuration"])
    except (TypeError, KeyError, ValueError):
        maximum = None  # no (valid) maximumDuration for this OS: the domain default applies
    raw: Any = spec.expected_install_seconds
    if isinstance(raw, dict):
        raw = install_parameters_for({"os": os_name}, raw)
    try:
        learned = timedelta(seconds=float(raw)) if raw else None
    except (TypeError, ValueError):
        learned = None
    if learned is not None and learned <= timedelta(0):
        learned = None
    return expected_install_duration(maximum, learned), learned is not None


def _next_look(started: Any, now: Any, expected: tuple[timedelta, bool], base: timedelta) -> Any:
    """The next look at an install (first-wave or learned schedule, domain rule)."""
    return install_poll_at(started, now, expected[0], learned=expected[1], base=base)


def _int_or_none(value: Any) -> int | None:
    """An optional count from the wave's input (absent, null or not a number: ``None``)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _subscription(vm: dict[str, Any]) -> str:
    """The subscription id in a VM's ARM id (ARM's buckets are per subscription)."""
    parts = str(vm.get("id") or "").split("/")
    lower = [p.lower() for p in parts]
    if "subscriptions" in lower and lower.index("subscriptions") + 1 < len(parts):
        return parts[lower.index("subscriptions") + 1].lower()
    return ""


def _resend(
    context: df.DurableOrchestrationContext,
    vm_ids: list[str],
    *,
    by_id: dict[str, dict[str, Any]],
    open_tokens: dict[str, str | None],
    results: dict[str, dict[str, Any]],
    start_input: Any,
) -> Any:
    """Send installPatches again to VMs whose first POST provably never took effect.

    The activity re-checks the instance view and takes a create-only resend claim, so this can
    never produce a second install; a VM it refuses for good is recorded as refused.
    """
    try:
        answers = yield context.task_all(
            [context.call_activity(names.START_INSTALL, start_input(by_id[v], resend=True)) for v in vm_ids]
        )
    except Exception:  # nothing known: keep following; the next poll may ask again
        return
    for vm_id, answer in zip(vm_ids, answers, strict=True):
        start = answer or {}
        error = start.get("error") or {}
        if start.get("state") in ("started", "already-started", "already-done"):
            if start.get("token"):
                open_tokens[vm_id] = start["token"]
        elif not error.get("retryable"):
            open_tokens.pop(vm_id, None)
            results[vm_id] = _entry(by_id[vm_id], "unreachable" if error.get("unreachable") else "refused", None,
                                    error or None)
    if not context.is_replaying:
        log.info("re-sent installPatches to %d VM(s) whose first POST never took effect", len(vm_ids))


def _last(error: dict[str, Any] | None) -> str:
    """The last poll's error, so a timeout says what was seen (e.g. an install never observed)."""
    if not error:
        return ""
    return f"; last seen: {error.get('code')}: {error.get('message')}"


#: The per-patch fields anything after the wave reads (verdicts, manifest and its details, ledger row).
_PATCH_FIELDS = ("kbId", "name", "version", "classifications", "installationState")
#: Only these installation states say something about the manifest (installed = evidence,
#: failed = suspect); NotSelected / Excluded / Pending / Available entries are dropped.
_MANIFEST_STATES = ("installed", "failed")


def _lean(entry: dict[str, Any]) -> dict[str, Any]:
    """A VM's install entry as the wave hands it on (issue 11, bounded history): the result's
    counts and status as they are, its ``patches`` cut to the installed / failed ones and to the
    fields the verdict, the manifest and the ledger row read (classifications at most 5, names
    at most 200 characters). A missing ``patches`` stays missing (an instance-view summary is
    never a pass, ``has_patch_detail``)."""
    result = entry.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("patches"), list):
        return entry
    patches = []
    for patch in result["patches"]:
        if not isinstance(patch, dict):
            continue
        if str(patch.get("installationState") or "").lower() not in _MANIFEST_STATES:
            continue
        lean = {k: patch[k] for k in _PATCH_FIELDS if patch.get(k) is not None}
        if isinstance(lean.get("name"), str):
            lean["name"] = lean["name"][:200]
        if isinstance(lean.get("classifications"), list):
            lean["classifications"] = lean["classifications"][:5]
        patches.append(lean)
    return {**entry, "result": {**result, "patches": patches}}


def _manifest_part(entry: dict[str, Any]) -> dict[str, Any]:
    """What the manifest reads of a VM's install entry (``vm, os, image, state, result.patches``):
    its verdict is decided already, so counts, status and errors stay in the ledger row."""
    result = entry.get("result")
    patches = result.get("patches") if isinstance(result, dict) else None
    return {"vm": entry.get("vm"), "os": entry.get("os"), "image": entry.get("image"), "state": entry.get("state"),
            "result": {"patches": patches} if isinstance(patches, list) else None}


def _entry(vm: dict[str, Any], state: str, result: Any, error: Any) -> dict[str, Any]:
    return {
        "vm": vm["id"],
        "name": vm.get("name"),
        "os": vm.get("os"),
        "image": vm.get("image"),
        "state": state,
        "result": result,
        "error": error,
    }


# Most installed patches named in a VM's ledger row (the rest are counted in ``installedMore``).
INSTALLED_IN_ROW = 30


def _compact(entry: dict[str, Any]) -> dict[str, Any]:
    """A VM's install outcome without the full per-patch list (the ledger keeps rows small), but
    with a short list of what was installed (issue 13.7): ``KB<n>`` for Windows, ``name=version``
    for Linux, at most ``INSTALLED_IN_ROW`` of them, plus ``installedMore`` when there are more."""
    result = entry.get("result") or {}
    if not isinstance(result, dict):
        return {**entry, "result": None}
    summary = {k: v for k, v in result.items() if k != "patches"}
    patches = result.get("patches")
    if isinstance(patches, list):
        installed = _installed(patches)
        summary["installed"] = installed[:INSTALLED_IN_ROW]
        if len(installed) > INSTALLED_IN_ROW:
            summary["installedMore"] = len(installed) - INSTALLED_IN_ROW
    return {**entry, "result": summary}


def _installed(patches: list[Any]) -> list[str]:
    """``KB<n>`` / ``name=version`` of the patches whose installationState is Installed (sorted)."""
    out: set[str] = set()
    for patch in patches:
        if not isinstance(patch, dict) or str(patch.get("installationState") or "").lower() != "installed":
            continue
        kb = str(patch.get("kbId") or "").strip()
        if kb:
            out.add(kb if kb.upper().startswith("KB") else f"KB{kb}")
            continue
        name = str(patch.get("name") or "").strip()
        version = str(patch.get("version") or "").strip()
        if name:
            out.add(f"{name}={version}" if version else name)
    return sorted(out)
