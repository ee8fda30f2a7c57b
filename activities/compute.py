"""Compute activities: installPatches / assessPatches and VM health (ring membership is
:mod:`activities.members`).

Members are Azure VMs and Azure Arc-enabled servers (issue 12): every record carries ``kind``
(``vm`` / ``arc``) besides ``id``. The same activities take both; an Arc member is handed to
:mod:`activities.arc` (HybridCompute's installPatches / assessPatches, results completed from
Resource Graph, agent-status health) with the same once-only claim in the ledger.

Why these are split into start + poll: installPatches runs for up to hours; an activity only
*starts* it and returns the LRO continuation token, and ``poll_install`` performs exactly one
status check per call between durable timers (see :mod:`patchrings.arm.lro`). No activity ever
blocks on ``LROPoller.result()`` or leaves a polling thread behind.

**installPatches is sent at most once per (run, VM)**, even when an activity re-runs after a
crash or runs twice concurrently:

1. an install record for (runId, VM) in the ledger means it was already sent (or is being
   sent): return ``already-started`` with its token;
2. otherwise the VM is read live -- one GET with ``$expand=instanceView``, the model and its
   instance view together (issue 11) -- and the ring's member rule (``memberRule``, the ring's
   ``members`` document) is applied to it again: the wave's members come from Azure Resource
   Graph, which lags, so a VM retagged out of the ring (or moved out of its scope) a moment ago
   may still be listed; such a machine is **not installed** and answers ``left-ring`` (error
   code ``LeftRing``, recorded in the ledger's install row; the wave neither verifies it nor
   counts it, never passes it). Then the instance view: an install ``InProgress`` (someone
   else's, or ours whose record was lost) gives ``already-started``; one finished after the run
   started gives ``already-done``;
3. otherwise a *claim* row is inserted (create-only, so two concurrent attempts cannot both
   win) **before** the POST, and the token is merged into it right after. A POST that was
   definitely refused (4xx, connection never made) deletes the claim so a later attempt may
   send it; an ambiguous failure (5xx, connection lost mid-request) keeps it and the install is
   followed through the instance view instead (``token: None``).

A ``started`` answer carries ``baseline`` (additive): the VM's health sample taken from the
instance view read in step 2 (the same GET), plus the HTTP probes given as ``probes`` (optional input): the
verify orchestrator fails a VM that was healthy before patching fast (issue 11).

``runStartedAt`` (optional input, ISO UTC) is the reference time for "finished after the run
started"; without it the Windows ``maxPatchPublishDate`` the orchestrator pins to the rollout
start is used.

**Uncertain starts are resolved** (issue 13 item 4). A claim with no token is *uncertain* when
its state is ``posting`` (the activity died between the claim and the POST) or ``unknown`` (the
POST got a 5xx or lost its answer). ``poll_install`` (given the orchestrator's ``now``) answers
``resend: true`` once :data:`~patchrings.domain.results.UNCERTAIN_START_GRACE` has passed since
the claim (``claimedAt``) and the instance view shows no install in progress and none that
started at or after the run's start: the POST provably never took effect. ``start_install`` with
``resend: true`` re-checks every one of those conditions on a fresh instance view, takes a
second create-only claim row (``<vm id>#resend``) and only then POSTs; so there is at most one
re-send per (run, VM), ever, and never one after an install was seen. A claim whose POST was
applied shows that install in the instance view and is never re-sent.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError
from azure.core.polling.base_polling import LocationPolling

from activities import Payload
from activities import arc as arc_ops

# Membership moved to :mod:`activities.members` (issue 10); these names stay importable from here.
from activities.members import member_ref, resolve_ring_members_core
from patchrings import deps
from patchrings.arm.errors import error_info, status_of
from patchrings.arm.ids import parse_resource_id
from patchrings.arm.lro import OneShotARMPolling, poll_once, to_wire
from patchrings.arm.machines import is_arc
from patchrings.arm.vms import (
    FINISHED_PATCH_STATES,
    app_health,
    install_summary,
    parse_time,
    power_state,
    summary_as_result,
    vm_agent_status,
)
from patchrings.boundary.activities import (
    CheckHealthInput,
    PollAssessInput,
    PollInstallInput,
    PollOutput,
    StartAssessInput,
    StartInstallInput,
    StartOutput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.domain.membership import LEFT_RING, MemberRule
from patchrings.domain.plan import normalize_reboot_setting
from patchrings.domain.results import UNCERTAIN_START_GRACE
from patchrings.ports import ComputeGateway, InstallLedger, MachineGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.compute")

__all__ = [
    "bp",
    "check_vm_health_core",
    "member_ref",
    "poll_assess_core",
    "poll_install_core",
    "resolve_ring_members_core",
    "start_assess_core",
    "start_install_core",
]

PROBE_TIMEOUT_CAP = 10  # seconds: a health probe must never hold an activity for long
THROTTLE_ATTEMPTS = 3  # installPatches POSTs answered 429 are retried (they were not processed)
THROTTLE_WAIT_CAP = 10.0  # seconds per wait: activities must stay short

HttpGet = Callable[[str, float], tuple[int, str]]



# ------------------------------------------------------------------------------ machines
def _vm_parts(vm: Mapping[str, Any]) -> tuple[str, str, str]:
    rid = parse_resource_id(str(vm["id"]))
    return rid.subscription, rid.resource_group or "", rid.name or str(vm.get("name"))


# ------------------------------------------------------------------------------ install
def _install_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(parameters or {})
    reboot = str(params.get("rebootSetting") or "IfRequired")
    try:
        params["rebootSetting"] = normalize_reboot_setting(reboot)
    except ValueError:
        params["rebootSetting"] = reboot  # let ARM answer 400 with its own message
    return params


def _run_started_at(spec: StartInstallInput | PollInstallInput,
                    record: Mapping[str, Any] | None = None) -> datetime | None:
    for started_at in ((record or {}).get("runStartedAt"), spec.run_started_at):
        started = parse_time(started_at)
        if started:
            return started
    parameters = spec.parameters if isinstance(spec, StartInstallInput) else None
    windows = (parameters or {}).get("windowsParameters") or {}
    return parse_time(windows.get("maxPatchPublishDate"))


def _instance_view(clients: ComputeGateway, vm: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The VM's instance view; ``kwargs`` go to the SDK call (e.g. a ``raw_response_hook``)."""
    sub, rg, name = _vm_parts(vm)
    return to_wire(clients.compute(sub).virtual_machines.instance_view(rg, name, **kwargs)) or {}


def _started(state: str, token: str | None, error: dict[str, Any] | None = None, *,
             uncertain: bool | None = None) -> dict[str, Any]:
    return to_payload(StartOutput(state=state, token=token, error=error, uncertain=uncertain))


UNCERTAIN_STATES = frozenset({"posting", "unknown"})
RESEND_SUFFIX = "#resend"


def _uncertain(record: Mapping[str, Any] | None) -> bool:
    """A claim with no token whose POST may never have taken effect (module doc)."""
    return bool(record) and not (record or {}).get("token") and str((record or {}).get("state")) in UNCERTAIN_STATES


def _grace_over(record: Mapping[str, Any], spec: StartInstallInput | PollInstallInput) -> bool:
    """Has :data:`UNCERTAIN_START_GRACE` passed since the claim, by the orchestrator's ``now``?"""
    now = parse_time(spec.now)
    claimed = parse_time(record.get("claimedAt")) or parse_time(record.get("runStartedAt"))
    return now is not None and claimed is not None and now >= claimed + UNCERTAIN_START_GRACE


def _nothing_of_this_run(summary: Mapping[str, Any] | None, since: datetime | None) -> bool:
    """The instance view shows no install in progress and none started at/after ``since``."""
    if since is None:
        return False  # no reference time: cannot prove the POST never took effect
    if not summary:
        return True
    if str(summary.get("status") or "").lower() not in FINISHED_PATCH_STATES:
        return False  # InProgress / NotStarted / unknown: something may be running
    started = parse_time(summary.get("startTime"))
    return started is not None and started < since


def start_install_core(clients: MachineGateway, ledger: InstallLedger,
                       payload: StartInstallInput | Mapping[str, Any]) -> dict[str, Any]:
    """Start installPatches on one VM unless it was already sent for this run (module doc).

    ``resend: true`` (with ``now``) asks to re-send an uncertain start: done only when the POST
    provably never took effect, and at most once per (run, VM).
    """
    spec = from_payload(StartInstallInput, payload)
    vm = spec.vm
    vm_id = str(vm["id"])
    run_id = str(spec.run_id)
    try:
        record = ledger.install(run_id, vm_id)
    except AzureError as exc:  # without the ledger once-only cannot be guaranteed: do not send
        return _started("refused", None, error_info(exc, code="LedgerUnavailable"))
    if record is not None:
        if spec.resend and _uncertain(record) and not is_arc(vm):  # Arc: never re-sent (activities/arc.py)
            return _resend_install(clients, ledger, spec, record)
        return _answer_for(record)

    since = _run_started_at(spec)
    if is_arc(vm):
        return _start_install_arc(clients, ledger, spec, since)
    try:
        model = _vm_with_view(clients, vm)
    except AzureError as exc:
        return _started("refused", None, error_info(exc, code="InstanceViewUnavailable"))
    left = _left_ring(spec, model)
    if left is not None:
        return _left(ledger, spec, left)
    view = (model.get("properties") or {}).get("instanceView") or {}
    summary = install_summary(view)
    out = _claim_and_send(clients, ledger, spec, since, observed=_observed_install(summary, since),
                          evidence={"observed": summary})
    if out.get("state") == "started":
        out["baseline"] = _baseline(view, vm, spec.probes or [])
    return out


def _vm_with_view(clients: ComputeGateway, vm: Mapping[str, Any]) -> dict[str, Any]:
    """The VM's live model with its instance view: one GET (``$expand=instanceView``)."""
    sub, rg, name = _vm_parts(vm)
    return to_wire(clients.compute(sub).virtual_machines.get(rg, name, expand="instanceView")) or {}


def _left_ring(spec: StartInstallInput, model: Mapping[str, Any]) -> str | None:
    """Why the live machine is no longer selected by the ring's rule (``memberRule``), or None.

    The wave's members came from Resource Graph, which lags: a VM retagged out of the ring (or
    moved out of its scope) a moment ago may still have been listed. The live model decides."""
    if spec.member_rule is None:
        return None
    rule = MemberRule.from_members(spec.member_rule)
    ref = member_ref(model)
    return rule.left_because(resource_group=parse_resource_id(str(spec.vm["id"])).resource_group,
                             location=ref.get("location"), os=ref.get("os"), tags=model.get("tags") or {})


def _left(ledger: InstallLedger, spec: StartInstallInput, reason: str) -> dict[str, Any]:
    """``left-ring``: nothing sent; recorded in the ledger's install row (best effort), so a re-run
    answers the same and the run's rows say why the machine was not installed."""
    vm_id, run_id = str(spec.vm["id"]), str(spec.run_id)
    error = {"code": "LeftRing", "retryable": False, "status": None,
             "message": f"not installed: the machine left ring {spec.ring!r} ({reason})"}
    recorded = _best_effort(ledger.record_install, run_id, vm_id, {
        "rolloutId": spec.rollout_id, "ring": str(spec.ring), "state": LEFT_RING, "claimedAt": spec.now,
        "error": error})
    if recorded is False:  # a twin start created the row first (it may have sent): its record answers
        return _lost_create(ledger, run_id, vm_id, _started(LEFT_RING, None, error))
    log.info("installPatches not sent to %s: %s", vm_id, error["message"])
    return _started(LEFT_RING, None, error)


def _lost_create(ledger: InstallLedger, run_id: str, vm_id: str, fallback: dict[str, Any]) -> dict[str, Any]:
    """The answer of a start whose create-only ledger row lost to a concurrent twin's: the twin's
    record decides (``left-ring``, ``already-started`` with its token, ``already-done``), never
    this start's own view (issue 11: a twin that POSTed must not be reported as *left the ring*,
    the machine would be patched but not judged). ``fallback`` when the record cannot be read."""
    record = _best_effort(ledger.install, run_id, vm_id)
    return _answer_for(record) if record else fallback


_NOTHING: Mapping[str, Any] = {}


def _claim_and_send(clients: MachineGateway, ledger: InstallLedger, spec: StartInstallInput, since: datetime | None, *,
                    observed: str | None, evidence: Mapping[str, Any] = _NOTHING,
                    claim_extra: Mapping[str, Any] = _NOTHING) -> dict[str, Any]:
    """Once-only, shared by VMs and Arc machines: an install already seen on the machine is
    recorded, not sent; otherwise the ledger claim decides who sends (create-only row), and the
    claim is released if the POST provably never left."""
    vm_id, run_id = str(spec.vm["id"]), str(spec.run_id)
    claim = {"rolloutId": spec.rollout_id, "ring": str(spec.ring), **claim_extra,
             "runStartedAt": since.isoformat() if since else None, "claimedAt": spec.now}
    if observed:  # ``evidence``: what showed the install (the VM's instance-view summary)
        answer = _started("already-done" if observed == "done" else "already-started", None)
        if _best_effort(ledger.record_install, run_id, vm_id, {**claim, "state": observed, **evidence}) is False:
            return _lost_create(ledger, run_id, vm_id, answer)
        return answer
    try:
        claimed = ledger.record_install(run_id, vm_id, {**claim, "state": "posting"})
    except AzureError as exc:
        return _started("refused", None, error_info(exc, code="LedgerUnavailable"))
    if not claimed:  # a twin claimed first: its row answers (``left-ring`` included, not *already-started*)
        return _lost_create(ledger, run_id, vm_id, _started("already-started", None))
    return _send(clients, ledger, spec, release=lambda: _best_effort(ledger.delete_install, run_id, vm_id))


def _start_install_arc(clients: MachineGateway, ledger: InstallLedger, spec: StartInstallInput,
                       since: datetime | None) -> dict[str, Any]:
    """:func:`start_install_core` for an Arc-enabled server (see :mod:`activities.arc`): the
    machine's agent must be Connected; Resource Graph stands in for the instance view."""
    vm = spec.vm
    observed, machine, refusal = arc_ops.precheck_install_arc(clients, vm, since)
    left = _left_ring(spec, machine) if machine is not None else None
    if left is not None:
        return _left(ledger, spec, left)
    if refusal is not None:
        return _started("refused", None, refusal)
    out = _claim_and_send(clients, ledger, spec, since, observed=observed, claim_extra={"kind": "arc"})
    if out.get("state") == "started":
        out["baseline"] = arc_ops.arc_health_sample(machine, vm, list(spec.probes or []),
                                                    default_http_get, run_probe)
    return out


def _baseline(view: Mapping[str, Any], vm: Mapping[str, Any], probes: list[Any]) -> dict[str, Any]:
    """The VM's health just before its install, from the instance view already read for the
    once-only check (no extra ARM call) plus the probes: the fail-fast baseline (issue 11)."""
    return {"vm": vm["id"], "powerState": power_state(view), "vmAgent": vm_agent_status(view),
            "appHealth": app_health(view), "probes": [run_probe(p, vm, default_http_get) for p in probes],
            "readError": None}


def _answer_for(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a re-run answers for an existing install record (``uncertain`` when it is)."""
    if record.get("state") == LEFT_RING:
        return _started(LEFT_RING, None, record.get("error") if isinstance(record.get("error"), dict) else None)
    return _started("already-done" if record.get("state") == "done" else "already-started", record.get("token"),
                    uncertain=True if _uncertain(record) else None)


def _resend_install(clients: MachineGateway, ledger: InstallLedger, spec: StartInstallInput,
                    record: Mapping[str, Any]) -> dict[str, Any]:
    """Re-send an uncertain start whose POST provably never took effect (module doc)."""
    vm = spec.vm
    vm_id = str(vm["id"])
    run_id = str(spec.run_id)
    if record.get("resent") or not _grace_over(record, spec):
        return _answer_for(record)
    since = _run_started_at(spec, record)
    try:
        summary = install_summary(_instance_view(clients, vm))
    except AzureError:
        return _answer_for(record)  # cannot prove anything: keep following
    if not _nothing_of_this_run(summary, since):
        observed = _observed_install(summary, since)
        if observed:
            _best_effort(ledger.update_install, run_id, vm_id, {"state": observed, "observed": summary})
            return _started("already-done" if observed == "done" else "already-started", None)
        return _answer_for(record)
    try:
        claimed = ledger.record_install(run_id, vm_id + RESEND_SUFFIX,
                                        {"state": "posting", "claimedAt": spec.now,
                                         "firstState": record.get("state")})
    except AzureError as exc:
        return _started("refused", None, error_info(exc, code="LedgerUnavailable"))
    if not claimed:  # another attempt re-sent (or is re-sending) it: never twice
        return _answer_for({**record, "resent": True})
    _best_effort(ledger.update_install, run_id, vm_id,
                 {"state": "posting", "resent": True, "resentAt": spec.now,
                  "firstError": record.get("error")})
    log.warning("installPatches on %s for run %s: first POST never took effect (%s); sending it again",
                vm_id, run_id, record.get("state"))

    def release() -> None:  # the re-send was definitely refused: it may be tried again later
        _best_effort(ledger.update_install, run_id, vm_id, {"state": record.get("state"), "resent": False})
        _best_effort(ledger.delete_install, run_id, vm_id + RESEND_SUFFIX)

    return _send(clients, ledger, spec, release=release)


def _send(clients: MachineGateway, ledger: InstallLedger, spec: StartInstallInput, *,
          release: Callable[[], Any]) -> dict[str, Any]:
    """POST installPatches once for a claimed (run, VM) and record what happened.

    ``release`` frees the claim when the POST was definitely refused (nothing was started).
    """
    vm = spec.vm
    vm_id = str(vm["id"])
    run_id = str(spec.run_id)
    try:
        poller = _post_install_once(clients, vm, _install_parameters(spec.parameters))
    except ServiceRequestError as exc:  # the request never reached ARM
        release()
        return _started("refused", None, error_info(exc))
    except HttpResponseError as exc:
        status = status_of(exc)
        if status is not None and 400 <= status < 500:  # refused: nothing was started
            release()
            log.warning("installPatches refused on %s (HTTP %s): %s", vm_id, status, exc)
            return _started("refused", None, error_info(exc))
        error = error_info(exc)
        _best_effort(ledger.update_install, run_id, vm_id, {"state": "unknown", "error": error})
        return _started("already-started", None, error, uncertain=True)
    except AzureError as exc:  # sent, but the answer was lost: it may have started
        error = error_info(exc)
        _best_effort(ledger.update_install, run_id, vm_id, {"state": "unknown", "error": error})
        return _started("already-started", None, error, uncertain=True)
    token = poller.continuation_token()
    poller.wait()
    # If this write is lost the claim stays without a token: a re-run answers already-started
    # and the install is followed through the instance view. Never fail after a POST.
    _best_effort(ledger.update_install, run_id, vm_id, {"state": "started", "token": token})
    log.info("installPatches started on %s for run %s", vm_id, run_id)
    return _started("started", token)


def _best_effort(fn: Callable[..., Any], *args: Any) -> Any:
    """A ledger call whose failure must not change the outcome (logged, ``None`` returned)."""
    try:
        return fn(*args)
    except AzureError as exc:
        log.warning("ledger %s failed: %s", getattr(fn, "__name__", fn), exc)
        return None


def _post_install_once(clients: MachineGateway, vm: Mapping[str, Any], parameters: dict[str, Any]) -> Any:
    """POST installPatches with the SDK's *resending* retries turned off.

    azure-core retries a POST on 500/503/504 (and on read errors) by sending it again, which
    could start a second install. Only throttling is retried here, because a 429 means the
    request was rejected before it was processed; every other failure surfaces to the caller.
    """
    sub, rg, name = _vm_parts(vm)
    operations = clients.compute(sub).virtual_machines
    for attempt in range(THROTTLE_ATTEMPTS):
        try:
            if is_arc(vm):
                return arc_ops.post_install_arc(clients, vm, parameters, polling=OneShotARMPolling(),
                                                retry_status=0, retry_read=0)
            return operations.begin_install_patches(
                rg, name, parameters, polling=OneShotARMPolling(), retry_status=0, retry_read=0
            )
        except HttpResponseError as exc:
            if status_of(exc) != 429 or attempt + 1 == THROTTLE_ATTEMPTS:
                raise
            time.sleep(min(_retry_after(exc), THROTTLE_WAIT_CAP))
    raise AssertionError("unreachable")


def _retry_after(exc: HttpResponseError) -> float:
    try:
        headers = getattr(exc.response, "headers", None) or {}
        return max(float(headers.get("Retry-After", 1)), 0.0)
    except (TypeError, ValueError):
        return 1.0


def _observed_install(summary: Mapping[str, Any] | None, since: datetime | None) -> str | None:
    """``started``/``done`` when the instance view shows an install belonging to this run."""
    if not summary:
        return None
    status = str(summary.get("status") or "").lower()
    if status == "inprogress":
        return "started"
    started = parse_time(summary.get("startTime"))
    if since and started and started >= since and status in FINISHED_PATCH_STATES:
        return "done"
    return None


def poll_install_core(clients: MachineGateway, ledger: InstallLedger,
                      payload: PollInstallInput | Mapping[str, Any]) -> dict[str, Any]:
    """One status check of a VM's install: ``{"done", "result", "error"}``.

    With a token: one GET of the LRO's ``Location`` (its last answer is the result, see
    :func:`_poll_install_lro`). Without one (the install was observed, or its POST had an
    ambiguous outcome): the instance view's install summary, accepted only when it started at or
    after the run started.
    """
    spec = from_payload(PollInstallInput, payload)
    vm = spec.vm
    if is_arc(vm):
        return arc_ops.poll_install_arc(clients, ledger, spec, best_effort=_best_effort)
    run_id = str(spec.run_id)
    token = spec.token
    record = None
    if not token:
        record = _best_effort(ledger.install, run_id, str(vm["id"]))
        token = (record or {}).get("token")
    sub, rg, name = _vm_parts(vm)
    if token:
        step = _poll_install_lro(clients, sub, rg, name, str(token))
        if step.done:
            final = (step.result or {}).get("status") if step.result else "OperationFailed"
            _best_effort(ledger.update_install, run_id, str(vm["id"]), {"state": "done", "final": final})
        if step.done or (step.error or {}).get("status") != 404:
            return _polled(step.done, step.result, step.error)
        # The operation record is gone (ARM keeps them for a limited time): the instance view
        # still tells how this run's install ended.
        if record is None:
            record = _best_effort(ledger.install, run_id, str(vm["id"]))

    try:
        summary = install_summary(_instance_view(clients, vm))
    except AzureError as exc:
        return _polled(False, None, error_info(exc))
    since = _run_started_at(spec, record)
    if (_uncertain(record) and not (record or {}).get("resent") and _grace_over(record or {}, spec)
            and _nothing_of_this_run(summary, since)):
        return _polled(False, None, resend=True, error={
            "code": "InstallNotSent", "retryable": True, "status": None,
            "message": f"no install of this run on the VM {UNCERTAIN_START_GRACE} after an uncertain "
                       f"start ({(record or {}).get('state')}): the POST never took effect"})
    if not summary or str(summary.get("status") or "").lower() not in FINISHED_PATCH_STATES:
        return _polled(False, None, None)
    started = parse_time(summary.get("startTime"))
    if since and (started is None or started < since):
        return _polled(False, None, {
            "code": "InstallNotObserved", "retryable": True, "status": None,
            "message": "the VM's last install predates this run; waiting for this run's install"})
    _best_effort(ledger.update_install, run_id, str(vm["id"]), {"state": "done", "final": summary.get("status")})
    return _polled(True, summary_as_result(summary), None)


def _polled(done: bool, result: dict[str, Any] | None, error: dict[str, Any] | None = None, *,
            resend: bool | None = None) -> dict[str, Any]:
    """A poll's answer: ``{done, result, error}`` (+ ``resend``)."""
    return to_payload(PollOutput(done=done, result=result, resend=resend, error=error))


def _poll_install_lro(clients: ComputeGateway, sub: str, rg: str, name: str, token: str) -> Any:
    """One check of an installPatches LRO in **one** GET where possible (issue 11).

    The 202 of installPatches carries ``Location`` (final-state-via: location, ComputeRP
    ``VirtualMachines_InstallPatches``); a GET of it answers 202 while the install runs and 200
    with the ``VirtualMachineInstallPatchesResult`` when it is done (azure-core's
    ``LocationPolling``: "polls Location until it gets a non-202, then uses that body as the
    result", azure-arm-contracts.md §3.1). So each poll is one GET and the last one carries the
    result, instead of an Azure-AsyncOperation GET plus a final GET of ``Location``.

    A Location GET answered with an error status (not 404, which the caller turns into the
    instance-view fallback) says nothing certain about *why*: that poll is redone the
    Azure-AsyncOperation way, which tells a Failed/Canceled operation (done, with its error)
    from a failed status check (not done). Only such error answers cost the extra call.
    """
    vms = clients.compute(sub).virtual_machines
    poller = vms.begin_install_patches(
        rg, name, None, continuation_token=token, polling=OneShotARMPolling(lro_algorithms=[LocationPolling()])
    )
    step = poll_once(poller)
    if step.done or step.error is None or step.error.get("status") == 404:
        return step
    poller = vms.begin_install_patches(rg, name, None, continuation_token=token, polling=OneShotARMPolling())
    return poll_once(poller)


# ------------------------------------------------------------------------------ assess (dry run)
def start_assess_core(clients: ComputeGateway, payload: StartAssessInput | Mapping[str, Any]) -> dict[str, Any]:
    """Start assessPatches (read-only on the VM, so no once-only bookkeeping is needed); on an Arc
    machine through HybridCompute."""
    spec = from_payload(StartAssessInput, payload)
    sub, rg, name = _vm_parts(spec.vm)
    try:
        if is_arc(spec.vm):
            poller = arc_ops.start_assess_arc(clients, spec.vm)
        else:
            poller = clients.compute(sub).virtual_machines.begin_assess_patches(rg, name, polling=OneShotARMPolling())
    except AzureError as exc:
        return _started("refused", None, error_info(exc))
    token = poller.continuation_token()
    poller.wait()
    return _started("started", token)


def poll_assess_core(clients: ComputeGateway, payload: PollAssessInput | Mapping[str, Any]) -> dict[str, Any]:
    """One status check of an assessment: ``{"done", "result", "error"}``."""
    spec = from_payload(PollAssessInput, payload)
    if is_arc(spec.vm):
        return arc_ops.poll_assess_arc(clients, spec.vm, str(spec.token))
    sub, rg, name = _vm_parts(spec.vm)
    poller = clients.compute(sub).virtual_machines.begin_assess_patches(
        rg, name, continuation_token=spec.token, polling=OneShotARMPolling()
    )
    step = poll_once(poller)
    return _polled(step.done, step.result, step.error)


# ------------------------------------------------------------------------------ health
def default_http_get(url: str, timeout: float) -> tuple[int, str]:
    """GET ``url``: (status, first 64 KiB of the body). HTTP errors are statuses, not exceptions."""
    request = urllib.request.Request(url, headers={"User-Agent": "patchrings-health-probe"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(65536).decode("utf-8", "replace") if exc.fp else ""


def run_probe(probe: Mapping[str, Any], vm: Mapping[str, Any], http_get: HttpGet) -> dict[str, Any]:
    """One HTTP probe: ``{url, status, ok, reason}`` or ``{url, error}`` when it can't be read."""
    url = str(probe["url"]).replace("{vmName}", str(vm.get("name") or ""))
    timeout = min(float(probe.get("timeoutSeconds") or PROBE_TIMEOUT_CAP), PROBE_TIMEOUT_CAP)
    expect = int(probe.get("expectStatus") or 200)
    try:
        status, body = http_get(url, timeout)
    except (OSError, ValueError) as exc:
        return {"url": url, "ok": None, "status": None, "error": f"{type(exc).__name__}: {exc}"[:500]}
    if status != expect:
        return {"url": url, "ok": False, "status": status, "reason": f"HTTP {status}, expected {expect}"}
    pattern = probe.get("bodyPattern")
    if pattern and not re.search(str(pattern), body):
        return {"url": url, "ok": False, "status": status, "reason": f"body does not match {pattern!r}"}
    return {"url": url, "ok": True, "status": status}


def check_vm_health_core(
    clients: MachineGateway, payload: CheckHealthInput | Mapping[str, Any], *, http_get: HttpGet = default_http_get,
    response_hook: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """One health sample of a VM: power state, VM agent, Application Health, HTTP probes.

    A failed instance-view read is reported as ``readError`` (the gate treats it as unknown,
    never as healthy); probes still run, since they do not depend on ARM. A VM that no longer
    exists (404 on its instance view) is marked ``deleted: true`` as well (additive field), so a
    deleted canary can leave the previous ring's health sample instead of blocking every
    later ring (issue 13 item 5). ``response_hook`` sees every HTTP answer of the read (the
    health batch feeds ARM's remaining-reads header to its pacer with it).
    """
    spec = from_payload(CheckHealthInput, payload)
    vm = spec.vm
    if is_arc(vm):
        return arc_ops.arc_health_samples(clients, [vm], list(spec.probes or []), http_get,
                                          run_probe)[str(vm["id"]).lower()]
    sample: dict[str, Any] = {"vm": vm["id"], "powerState": None, "vmAgent": None, "appHealth": None,
                              "probes": [], "readError": None}
    try:
        view = (_instance_view(clients, vm, raw_response_hook=response_hook) if response_hook
                else _instance_view(clients, vm))
        sample.update(powerState=power_state(view), vmAgent=vm_agent_status(view), appHealth=app_health(view))
    except AzureError as exc:
        info = error_info(exc)
        sample["readError"] = f"{info['code']}: {info['message']}"
        if info.get("status") == 404:
            sample["deleted"] = True
    except (ValueError, KeyError) as exc:
        sample["readError"] = f"{type(exc).__name__}: {exc}"
    sample["probes"] = [run_probe(p, vm, http_get) for p in spec.probes or []]
    return sample


# ------------------------------------------------------------------------------ bindings
@bp.activity_trigger(input_name="payload")
def start_install(payload: Payload) -> dict[str, Any]:
    return start_install_core(deps.clients(), deps.ledger(), from_payload(StartInstallInput, payload))


@bp.activity_trigger(input_name="payload")
def poll_install(payload: Payload) -> dict[str, Any]:
    return poll_install_core(deps.clients(), deps.ledger(), from_payload(PollInstallInput, payload))


@bp.activity_trigger(input_name="payload")
def start_assess(payload: Payload) -> dict[str, Any]:
    return start_assess_core(deps.clients(), from_payload(StartAssessInput, payload))


@bp.activity_trigger(input_name="payload")
def poll_assess(payload: Payload) -> dict[str, Any]:
    return poll_assess_core(deps.clients(), from_payload(PollAssessInput, payload))


@bp.activity_trigger(input_name="payload")
def check_vm_health(payload: Payload) -> dict[str, Any]:
    return check_vm_health_core(deps.clients(), from_payload(CheckHealthInput, payload))
