"""Azure Arc-enabled servers in direct rings: installPatches / assessPatches, results, health.

No blueprint of its own: the activities in :mod:`activities.compute` and :mod:`activities.health`
(``start_install``, ``poll_install``, ``start_assess``, ``poll_assess``, ``check_vm_health``,
``check_vm_health_batch``) take a member record and hand Arc members (``kind: arc`` or a
``Microsoft.HybridCompute/machines`` id) to the functions here, so orchestrators, names and
contracts stay as they are. Calls go through azure-mgmt-hybridcompute 10.0.0
(``clients.hybrid_compute(subscription).machines``). Sources: arc-and-resource-graph.md §2, §5, §7.

**Once-only install** (same guarantees as for VMs, :mod:`activities.compute`): a ledger record
for (run, machine) answers ``already-started``/``already-done``; otherwise the machine is read
(its agent must be ``Connected``: a disconnected or expired agent cannot run an install, so the
start is refused with ``error.code = ArcAgentNotConnected`` and ``error.unreachable: true``,
never sent; and the ring's member rule is re-applied to the live machine: one that left the ring
since Resource Graph listed it answers ``left-ring``, never sent, as for VMs), Resource Graph is
asked for an install summary row of this machine that started at or after the run started
(``already-done``/``already-started``: the check-before-act an instance view gives for VMs),
then a create-only claim is taken and the POST sent once with the SDK's resending retries off
(429 only is retried). **Gap**: Resource Graph lags (minutes), so the
check-before-act only sees installs older than the lag; the ledger claim is what makes the POST
once-only. An uncertain start (5xx / lost answer) is **never re-sent** on an Arc machine:
without an instance view there is no prompt proof that the POST did not take effect, so it is
followed through Resource Graph rows until the wave's deadline.

**Results**: the LRO (202 + ``Location`` only, ``final-state-via: location``) ends with a
``MachineInstallPatchesResult``: no patch list, ``errorDetails``. A result still ``InProgress``
in a final 200 is not done (§2.7). A terminal result is completed from Resource Graph: the
machine's summary row of this install (by ``installationActivityId``, else the newest one that
started at/after the run) and that run's ``…/softwarepatches`` rows. While rows are missing the
poll answers ``done: false`` with ``error.code = PatchRowsMissing`` (the orchestrator polls
again; a *failed* install is answered at once: its verdict needs no patch list); once
:data:`ARG_ROWS_GRACE` has passed since the install ended it answers ``done`` with a result that
has **no** ``patches`` key (``patchDetail`` says why): inconclusive, never a pass.

**Health**: ``agentStatus`` (``Connected``, else inconclusive), ``lastStatusChange``, the OS the
agent reports, and the ring's HTTP probes; there is no power state or VM agent on Arc. Batches
read each subscription's machines in one paged list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError

from patchrings.arm import machines as arc
from patchrings.arm import resource_graph as rg
from patchrings.arm.errors import error_info, status_of
from patchrings.arm.ids import parse_resource_id
from patchrings.arm.lro import OneShotARMPolling, poll_once, to_wire
from patchrings.arm.vms import parse_time
from patchrings.boundary.activities import PollInstallInput
from patchrings.ports import ComputeGateway, InstallLedger, MachineGateway, ResourceGraphGateway

log = logging.getLogger("patchrings.activities.arc")

__all__ = [
    "ARG_ROWS_GRACE",
    "arc_health_sample",
    "arc_health_samples",
    "arc_install_from_graph",
    "get_machine",
    "list_machines",
    "poll_assess_arc",
    "poll_install_arc",
    "post_install_arc",
    "precheck_install_arc",
    "start_assess_arc",
]

#: How long after an Arc install ended its per-patch rows may still be missing from Resource
#: Graph before the result is taken without them (inconclusive). Resource Graph's lag is
#: undocumented (§5.8); the simulator's default is 3 minutes.
ARG_ROWS_GRACE = timedelta(minutes=30)
#: Pages the last Arc machine list of a subscription took (a cost hint, per process): a few Arc
#: canaries in a subscription of thousands of machines are read one by one instead of listing
#: every page (Arc health samples; VM members and cheap samples come from Resource Graph).
_ARC_PAGES: dict[str, int] = {}
_DONE = frozenset({"succeeded", "failed", "completedwithwarnings"})
HttpGet = Callable[[str, float], tuple[int, str]]


def _parts(member: Mapping[str, Any]) -> tuple[str, str, str]:
    rid = parse_resource_id(str(member["id"]))
    return rid.subscription, rid.resource_group or "", rid.name or str(member.get("name"))


# ------------------------------------------------------------------------------ reads
def list_machines(clients: ComputeGateway, subscription: str) -> tuple[list[dict[str, Any]], int]:
    """Every Arc machine of a subscription (REST JSON), paged: ``(machines, pages)``.

    A subscription where HybridCompute is not registered has no Arc machines: ARM answers 409
    ``MissingSubscriptionRegistration`` (and a provider that is not served, 404); those are an
    empty list. Anything else (403, 429/5xx after retries) raises: a partial member list would
    patch or verify a ring with machines silently missing.
    """
    out: list[dict[str, Any]] = []
    pages = 0
    try:
        for page in clients.hybrid_compute(subscription).machines.list_by_subscription().by_page():
            pages += 1
            out.extend(to_wire(m) or {} for m in page)
    except HttpResponseError as exc:
        code = str(getattr(getattr(exc, "error", None), "code", "") or "")
        if status_of(exc) == 404 or (status_of(exc) == 409 and "registration" in code.lower()):
            return [], max(pages, 1)
        raise
    _ARC_PAGES[subscription.lower()] = max(pages, 1)
    return out, max(pages, 1)


def get_machine(clients: ComputeGateway, member: Mapping[str, Any]) -> dict[str, Any]:
    sub, rg_name, name = _parts(member)
    return to_wire(clients.hybrid_compute(sub).machines.get(rg_name, name)) or {}


# ------------------------------------------------------------------------------ health
def arc_health_sample(machine: Mapping[str, Any] | None, member: Mapping[str, Any], probes: list[Any],
                      http_get: HttpGet, run_probe: Callable[..., dict[str, Any]], *,
                      read_error: str | None = None, deleted: bool = False) -> dict[str, Any]:
    """One health sample of an Arc machine (``kind: arc``): agent status, last change, OS, probes."""
    sample: dict[str, Any] = {"vm": member["id"], "kind": "arc", "powerState": None, "vmAgent": None,
                              "appHealth": None, "agentStatus": None, "lastStatusChange": None, "os": None,
                              "probes": [], "readError": read_error}
    if deleted:
        sample["deleted"] = True
    if machine is not None and read_error is None:
        status = arc.agent_status(machine)
        sample.update(agentStatus=status["agentStatus"], lastStatusChange=status["lastStatusChange"],
                      os=" ".join(str(x) for x in (status["osName"], status["osVersion"]) if x) or status["osType"])
    sample["probes"] = [run_probe(p, member, http_get) for p in probes]
    return sample


def arc_health_samples(clients: ComputeGateway, members: list[Mapping[str, Any]], probes: list[Any], http_get: HttpGet,
                       run_probe: Callable[..., dict[str, Any]], *,
                       map_many: Callable[..., list[Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Health samples of many Arc machines, keyed by lower-case id: one paged machine list per
    subscription (the agent status is in the list, so every Arc sample is a *full* one), or a
    GET per machine when a subscription holds a single member. A failed list leaves its machines
    with a ``readError`` (unknown, never healthy); a machine missing from its list is ``deleted``.
    When the subscription's list is known to take more pages than there are members to sample,
    they are read one by one instead."""
    by_sub: dict[str, list[Mapping[str, Any]]] = {}
    for member in members:
        by_sub.setdefault(_parts(member)[0].lower(), []).append(member)
    machines: dict[str, dict[str, Any] | None] = {}
    errors: dict[str, tuple[str, bool]] = {}
    for sub, group in by_sub.items():
        if len(group) == 1 or len(group) < _ARC_PAGES.get(sub, 1):  # cheaper one by one
            for member in group:
                try:
                    machines[str(member["id"]).lower()] = get_machine(clients, member)
                except AzureError as exc:
                    info = error_info(exc)
                    errors[str(member["id"]).lower()] = (f"{info['code']}: {info['message']}",
                                                         info.get("status") == 404)
            continue
        try:
            listed, _ = list_machines(clients, sub)
        except AzureError as exc:
            info = error_info(exc)
            for member in group:
                errors[str(member["id"]).lower()] = (f"{info['code']}: {info['message']}", False)
            continue
        found = {str(m.get("id")).lower(): m for m in listed}
        for member in group:
            key = str(member["id"]).lower()
            if key in found:
                machines[key] = found[key]
            else:
                errors[key] = ("NotFound: the machine is not in its subscription's Arc machine list", True)

    def one(member: Mapping[str, Any]) -> dict[str, Any]:
        key = str(member["id"]).lower()
        error, deleted = errors.get(key, (None, False))
        return arc_health_sample(machines.get(key), member, probes, http_get, run_probe,
                                 read_error=error, deleted=deleted)

    samples = map_many(one, members) if map_many is not None else [one(m) for m in members]
    return {str(m["id"]).lower(): s for m, s in zip(members, samples, strict=True)}


# ------------------------------------------------------------------------------ Resource Graph
def _arg_send(clients: ResourceGraphGateway) -> rg.Send:
    from activities.resource_graph import _sender  # one sender (paced on the quota gate) for the app

    return _sender(clients)


def arc_install_from_graph(clients: ResourceGraphGateway, machine_id: str, *, activity_id: str | None, since: Any,
                           with_patches: bool = True) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
    """This install's summary row and per-patch entries from Resource Graph.

    With ``activity_id`` (the LRO result's ``installationActivityId``) the per-patch rows of that
    run GUID are asked for first: one query, and when they are there the answer is
    ``(None, patches)`` (the LRO result is the summary). Otherwise (or while they are missing)
    the machine's summary rows are read and the one whose run GUID (``name``) or
    ``installationActivityId`` is ``activity_id`` -- else the newest that started at/after
    ``since`` -- is taken, then its per-patch rows (the GUID link is an inference, §5.3, so it is
    re-checked against the summary row). Returns ``(summary, patches)``; ``(None, None)`` when no
    row is there yet and ``(summary, None)`` when the summary reports patches whose rows have not
    arrived (or ``with_patches`` is false: one query, for the check before an install).
    """
    send = _arg_send(clients)
    subscription = parse_resource_id(machine_id).subscription
    if activity_id and with_patches:
        try:
            fast, _ = rg.query_all(send, rg.patch_rows_query([str(activity_id)]), [subscription.lower()])
        except ValueError:  # not a GUID-like id: the summary rows below decide
            fast = []
        mine = [r for r in fast if rg.machine_of(str(r.get("id", ""))) == machine_id.lower()]
        if mine:
            return None, rg.install_result({}, mine)["patches"]
    rows, _ = rg.query_all(send, rg.machine_installs_query([machine_id]), [subscription.lower()])
    wanted = str(activity_id or "").lower()
    chosen: dict[str, Any] | None = None
    for row in rows:
        props = row.get("properties") or {}
        run = str(row.get("run") or row.get("name") or "").lower()
        if wanted and wanted in (run, str(props.get("installationActivityId") or "").lower()):
            chosen = row
            break
        started = parse_time(props.get("startDateTime"))
        if not wanted and since is not None and started is not None and started >= since and (
                chosen is None or str(props.get("startDateTime")) >
                str((chosen.get("properties") or {}).get("startDateTime"))):
            chosen = row
    if chosen is None:
        return None, None
    run = str(chosen.get("run") or chosen.get("name") or "").lower()
    result = rg.install_result(chosen, [])
    if not run or not rg.is_terminal(chosen) or not with_patches:
        return chosen, None
    patch_rows, _ = rg.query_all(send, rg.patch_rows_query([run]), [subscription.lower()])
    if not patch_rows and arc.reported_patch_count(result):
        return chosen, None
    return chosen, rg.install_result(chosen, patch_rows)["patches"]


# ------------------------------------------------------------------------------ install
def precheck_install_arc(clients: MachineGateway, member: Mapping[str, Any],
                         since: Any) -> tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]:
    """Check-before-act for an Arc install: ``(observed, machine, refusal)``.

    ``refusal`` (an error dict) when the machine cannot be read or its agent is not Connected;
    ``observed`` ``started``/``done`` when Resource Graph already shows an install of this run.
    """
    try:
        machine = get_machine(clients, member)
    except AzureError as exc:
        return None, None, error_info(exc, code="MachineUnavailable")
    if not arc.is_connected(machine):
        status = arc.agent_status(machine)
        return None, machine, {
            "code": "ArcAgentNotConnected", "retryable": False, "unreachable": True, "status": None,
            "message": f"the Arc agent is {status['agentStatus'] or 'not reporting'} "
                       f"(since {status['lastStatusChange'] or 'unknown'}): installPatches cannot run on it",
        }
    if since is None:
        return None, machine, None
    try:
        summary, _ = arc_install_from_graph(clients, str(member["id"]), activity_id=None, since=since,
                                            with_patches=False)
    except (AzureError, ValueError, RuntimeError) as exc:  # Resource Graph is a hint here, the claim decides
        log.warning("Resource Graph check before installPatches on %s failed: %s", member["id"], exc)
        return None, machine, None
    if summary is None:
        return None, machine, None
    return ("done" if rg.is_terminal(summary) else "started"), machine, None


def post_install_arc(clients: ComputeGateway, member: Mapping[str, Any], parameters: dict[str, Any],
                     **kwargs: Any) -> Any:
    """``begin_install_patches`` on the machine (one POST; the caller controls retries)."""
    sub, rg_name, name = _parts(member)
    return clients.hybrid_compute(sub).machines.begin_install_patches(
        rg_name, name, arc.arc_install_parameters(parameters), **kwargs)


def poll_install_arc(clients: MachineGateway, ledger: InstallLedger, spec: PollInstallInput, *,
                     best_effort: Callable[..., Any]) -> dict[str, Any]:
    """One status check of an Arc install, completed from Resource Graph (module doc)."""
    member = spec.vm
    member_id = str(member["id"])
    run_id = str(spec.run_id)
    now = parse_time(spec.now)
    token = spec.token
    record = None
    if not token:
        record = best_effort(ledger.install, run_id, member_id)
        token = (record or {}).get("token")
    since = parse_time(spec.run_started_at) or parse_time((record or {}).get("runStartedAt"))
    lro: dict[str, Any] | None = None
    if token:
        sub, rg_name, name = _parts(member)
        poller = clients.hybrid_compute(sub).machines.begin_install_patches(
            rg_name, name, None, continuation_token=token, polling=OneShotARMPolling())
        step = poll_once(poller)
        if step.done and step.result is None:  # the operation failed (errorDetails in its body)
            best_effort(ledger.update_install, run_id, member_id, {"state": "done", "final": "OperationFailed"})
            return {"done": True, "result": None, "error": step.error}
        if not step.done and (step.error or {}).get("status") != 404:
            return {"done": False, "result": None, "error": step.error}
        lro = step.result
        if lro is not None and str(lro.get("status") or "").lower() not in _DONE:
            return {"done": False, "result": None, "error": None}  # a final 200 still InProgress (§2.7)
    try:
        summary, patches = arc_install_from_graph(
            clients, member_id, activity_id=(lro or {}).get("installationActivityId"), since=since)
    except (AzureError, ValueError, RuntimeError) as exc:
        summary, patches = None, None
        graph_error: dict[str, Any] | None = error_info(exc, code="ResourceGraphUnavailable")
    else:
        graph_error = None
    if lro is None:  # no token (or its record is gone): the install is followed in Resource Graph only
        if summary is None or not rg.is_terminal(summary):
            return {"done": False, "result": None, "error": graph_error or {
                "code": "InstallNotObserved", "retryable": True, "status": None,
                "message": "Resource Graph has no finished install of this run for the Arc machine yet"}}
        lro = dict(summary.get("properties") or {})
    ended = parse_time(lro.get("lastModifiedDateTime")) or parse_time(lro.get("startDateTime"))
    expected = arc.reported_patch_count(lro)
    failing = (str(lro.get("status") or "").lower() == "failed" or int(lro.get("failedPatchCount") or 0) > 0
               or str(lro.get("rebootStatus") or "").lower() == "failed")
    if patches is None and expected and failing:
        # The install failed: that verdict needs no patch list, so it is not delayed by the rows' lag.
        result = arc.install_result(lro, None, missing_reason="per-patch rows not awaited: the install failed")
    elif patches is None and expected:
        waited_out = now is not None and ended is not None and now >= ended + ARG_ROWS_GRACE
        if not waited_out:
            return {"done": False, "result": None, "error": graph_error or {
                "code": "PatchRowsMissing", "retryable": True, "status": None,
                "message": f"the install reports {expected} patch(es); their Resource Graph rows have not "
                           "appeared yet"}}
        reason = (f"Resource Graph had no per-patch rows for this Arc install {ARG_ROWS_GRACE} after it ended "
                  f"({(graph_error or {}).get('message') or 'rows not propagated'}): what was installed is unknown")
        result = arc.install_result(lro, None, missing_reason=reason)
    else:
        result = arc.install_result(lro, patches if patches is not None else [])
    best_effort(ledger.update_install, run_id, member_id, {"state": "done", "final": result.get("status")})
    return {"done": True, "result": result, "error": None}


# ------------------------------------------------------------------------------ assess (dry run)
def start_assess_arc(clients: ComputeGateway, member: Mapping[str, Any]) -> Any:
    sub, rg_name, name = _parts(member)
    return clients.hybrid_compute(sub).machines.begin_assess_patches(rg_name, name, polling=OneShotARMPolling())


def poll_assess_arc(clients: ComputeGateway, member: Mapping[str, Any], token: str) -> dict[str, Any]:
    """One status check of an Arc assessment: ``{"done", "result", "error"}``; the result adds the
    Compute-shaped counts (``criticalAndSecurityPatchCount`` / ``otherPatchCount``) to Arc's
    per-classification ones, so the dry run's summary reads both kinds alike."""
    sub, rg_name, name = _parts(member)
    poller = clients.hybrid_compute(sub).machines.begin_assess_patches(
        rg_name, name, continuation_token=token, polling=OneShotARMPolling())
    step = poll_once(poller)
    result = step.result
    if step.done and result is not None and str(result.get("status") or "").lower() not in _DONE:
        return {"done": False, "result": None, "error": None}
    if result is not None:
        counts = result.get("availablePatchCountByClassification") or {}
        critical = sum(int(counts.get(k) or 0) for k in ("critical", "security"))
        other = sum(int(v or 0) for k, v in counts.items() if k not in ("critical", "security"))
        result = {**result, "criticalAndSecurityPatchCount": critical, "otherPatchCount": other,
                  "error": result.get("errorDetails"), "source": "hybridCompute"}
    return {"done": step.done, "result": result, "error": step.error}
