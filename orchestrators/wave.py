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

Install polling (issue 11): installs are polled on the schedule of
:func:`~patchrings.domain.results.next_install_poll` -- one look 5 minutes in, then at the
expected duration (``expectedInstallSeconds`` when the caller learned one, else a quarter of
``maximumDuration``, at most 30 minutes), then with gaps of ``pollSeconds`` doubling up to 8
minutes -- instead of every ``pollSeconds`` from the start.

Input ``{rolloutId, plan, ring, runId, wave, vms: [VmRef], parameters: {os: params},
pollSeconds, deadline, runStartedAt, expectedInstallSeconds?}``; output ``{results: [VmInstall], verdicts: [VmVerdict
dict]}`` where ``VmInstall = {vm, name, os, image, state, result, error}`` (``image``: the VmRef's image
family, for Ring 0's coverage in the manifest).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators import names, plan_view, retries
from orchestrators.timeutil import iso, parse_iso
from patchrings.domain.health import HealthPolicy
from patchrings.domain.results import expected_install_duration, next_install_poll
from patchrings.domain.timeutil import parse_duration

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


@bp.orchestration_trigger(context_name="context", orchestration=names.WAVE)
def wave_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec: dict[str, Any] = context.get_input() or {}
    vms: list[dict[str, Any]] = spec.get("vms") or []
    parameters: dict[str, Any] = spec.get("parameters") or {}
    poll = timedelta(seconds=int(spec.get("pollSeconds") or DEFAULT_POLL_SECONDS))
    deadline = parse_iso(spec["deadline"]) if spec.get("deadline") else None

    results: dict[str, dict[str, Any]] = {}
    to_start: list[dict[str, Any]] = []
    for vm in vms:
        if install_parameters_for(vm, parameters) is None:
            # The manifest pins nothing for this OS: installing with empty include lists would
            # install everything, so this VM is deliberately left alone.
            results[vm["id"]] = _entry(vm, "not-needed", None, None)
        else:
            to_start.append(vm)

    ring_name = str(spec.get("ring") or "")
    plan = spec.get("plan")
    policy = HealthPolicy.from_dict(plan_view.effective(plan, ring_name, "health")) if plan else None
    probes = [p.to_dict() for p in policy.probes] if policy else []
    baselines: dict[str, Any] = {}  # health before the install, per VM started now (fail fast)

    def start_input(vm: dict[str, Any], *, resend: bool = False) -> dict[str, Any]:
        doc = {
            "rolloutId": spec.get("rolloutId"),
            "ring": spec.get("ring"),
            "runId": spec.get("runId"),
            "runStartedAt": spec.get("runStartedAt"),
            "now": iso(context.current_utc_datetime),
            "vm": vm,
            "parameters": install_parameters_for(vm, parameters),
            "probes": probes,
        }
        if resend:
            doc["resend"] = True
        return doc

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
    attempts = 0
    progress("starting")
    while to_start:
        attempts += 1
        try:
            # Not retried by the host: the POST is once-only (see the module docstring).
            starts = yield context.task_all([context.call_activity(names.START_INSTALL, start_input(vm))
                                             for vm in to_start])
        except Exception as exc:  # an activity failed outright; a re-run is safe (ledger claim)
            failure = {"code": "StartActivityFailed", "message": str(exc)[:300], "retryable": True}
            starts = [{"state": "refused", "token": None, "error": failure} for _ in to_start]
        retry: list[dict[str, Any]] = []
        for vm, answer in zip(to_start, starts, strict=True):
            start = answer or {}
            state = start.get("state")
            error = start.get("error") or {}
            if state in ("started", "already-started", "already-done"):
                open_tokens[vm["id"]] = start.get("token")
                if isinstance(start.get("baseline"), dict):
                    baselines[vm["id"]] = start["baseline"]
            elif error.get("retryable") and attempts < START_ATTEMPTS:
                retry.append(vm)  # nothing was sent (throttled, transient): try again shortly
            else:
                # An Arc machine whose agent is not Connected was never sent an install: unknown,
                # not failed (the gate is inconclusive for it, never passed).
                results[vm["id"]] = _entry(vm, "unreachable" if error.get("unreachable") else "refused", None,
                                           error or None)
        to_start = retry
        if to_start:
            yield context.create_timer(context.current_utc_datetime + START_RETRY)

    installs_started = context.current_utc_datetime
    expected = _expected(spec, parameters)
    if open_tokens:  # the first look (see next_install_poll), not a status check at once
        first = next_install_poll(installs_started, installs_started, expected, poll)
        if deadline is not None and first > deadline:
            first = deadline
        progress("polling", first)
        yield context.create_timer(first)
    while open_tokens:
        now = context.current_utc_datetime
        polling = list(open_tokens)
        try:
            polls = yield context.task_all(
                [
                    context.call_activity_with_retry(
                        names.POLL_INSTALL,
                        retries.READ,
                        {"runId": spec.get("runId"), "runStartedAt": spec.get("runStartedAt"),
                         "now": iso(now), "vm": by_id[vm_id], "token": open_tokens[vm_id]},
                    )
                    for vm_id in polling
                ]
            )
        except Exception as exc:  # still failing after READ's attempts: a round without news
            if not context.is_replaying:
                log.warning("wave %s of %s: poll round failed: %s", spec.get("wave"), spec.get("ring"), exc)
            polls = [{"done": False} for _ in polling]
        resend: list[str] = []
        for vm_id, polled in zip(polling, polls, strict=True):
            poll_result = polled or {}
            if poll_result.get("done"):
                open_tokens.pop(vm_id)
                state = "done" if poll_result.get("result") is not None else "failed"
                results[vm_id] = _entry(by_id[vm_id], state, poll_result.get("result"), poll_result.get("error"))
            else:
                if poll_result.get("error"):
                    last_error[vm_id] = poll_result["error"]
                if poll_result.get("resend"):
                    resend.append(vm_id)
        if resend:
            yield from _resend(context, resend, by_id=by_id, open_tokens=open_tokens, results=results,
                               start_input=start_input)
        if not open_tokens:
            break
        now = context.current_utc_datetime
        if deadline is not None and now >= deadline:
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
        next_poll = next_install_poll(installs_started, now, expected, poll)
        if deadline is not None and next_poll > deadline:
            next_poll = deadline
        progress("polling", next_poll)
        yield context.create_timer(next_poll)

    ordered = [results[vm["id"]] for vm in vms]
    progress("verifying")
    if not context.is_replaying:
        log.info("wave %s of %s: %d installs finished", spec.get("wave"), spec.get("ring"), len(ordered))

    verification = yield context.call_sub_orchestrator(
        names.VERIFY,
        {
            "rolloutId": spec.get("rolloutId"),
            "plan": spec.get("plan"),
            "ring": spec.get("ring"),
            "vms": vms,
            "installs": ordered,
            "decide": False,
            "baselines": baselines,
        },
        f"{context.instance_id}:verify",
    )
    return {"results": ordered, "verdicts": (verification or {}).get("verdicts", [])}


def _expected(spec: dict[str, Any], parameters: dict[str, Any]) -> timedelta:
    """The wave's expected install duration: ``expectedInstallSeconds`` (learned by the caller,
    optional) or from the longest ``maximumDuration`` of its parameters (domain rule)."""
    maxima = []
    for params in parameters.values():
        try:
            maxima.append(parse_duration(params["maximumDuration"]))
        except (TypeError, KeyError, ValueError):
            continue  # no (valid) maximumDuration for this OS: the domain default applies
    learned = timedelta(seconds=float(spec["expectedInstallSeconds"])) if spec.get("expectedInstallSeconds") else None
    return expected_install_duration(max(maxima) if maxima else None, learned)


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
