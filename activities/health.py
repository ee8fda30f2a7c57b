"""Health samples of many VMs in one activity (issue 11: fewer ARM calls per VM per ring).

Why a module of its own: the verify orchestrator used to run ``check_vm_health`` once per VM per
round (16 instance-view GETs per VM per ring). ``check_vm_health_batch`` takes every VM due in a
round and answers in one activity: *full* samples read each VM's instance view (as
``check_vm_health`` does), *cheap* ones take the power state of all of them from Azure Resource
Graph by id (``resources | where id in~ (...) | project id, powerState =
properties.extended.instanceView.powerState.code``, one query per 100 VMs, whatever the size of
their subscriptions: it used to be a ``statusOnly`` list of the whole subscription, 200 pages at
10,000 VMs, or one instance view per VM). HTTP probes stay per VM (the app's own endpoints, not
ARM). Contract: ``{checks: [{vm: VmRef, full: bool}], probes}`` -> ``{samples: [sample]}`` in the
order of ``checks``; a cheap sample carries ``partial: true``.

**Resource Graph is stale** (it shows resources as they were some seconds to minutes ago): a
cheap sample may still say ``running`` for a VM that just stopped. That can only *delay*
detection, never pass a VM: a cheap sample never proves the VM agent or Application Health (the
tracker does not count it as healthy on its own), and the stay-healthy phase always ends on a
*full* sample (:attr:`patchrings.domain.health.HealthTracker.wants_full`), read live from the
instance view. A VM missing from the answer, or without a power state in it, is unknown (never
healthy).

Arc-enabled servers (issue 12) are sampled from one paged HybridCompute machine list per
subscription (agent status, last status change, OS; :func:`activities.arc.arc_health_samples`):
the list carries everything an Arc sample has, so every Arc sample is a full one.

Paced reads (issue 11: 0 throttled at 10,000 VMs): every instance view of a batch first takes a
slot from the subscription's read pacer (:func:`patchrings.arm.fanout.read_pacer`: shared by every
health batch of this worker process, a burst then a steady rate under ARM's read refill, and a
hold when ARM's remaining-reads header falls below a reserve; see fanout's docstring for why not a
durable-entity budget); every Resource Graph query waits for ARG's per-principal quota
(:data:`patchrings.arm.resource_graph.QUOTA`, fed by the ``x-ms-user-quota-*`` headers; a 429 is
waited out, not fatal). Reads start only within :data:`BUDGET_SECONDS` (well inside the 10-minute
``functionTimeout``); a VM whose read could not start by then gets a *deferred* sample
(``deferred: true``, ``readError`` saying so, no probes run): not a reading at all. The health
tracker (``patchrings.domain.health``) takes no decision on it and asks for the VM again
:data:`~patchrings.domain.health.DEFER_RETRY` later, so the verify orchestrator's next round picks
it up; a gate never judges a VM on a deferred sample. Each batch logs its pacing (seconds, seconds
its reads waited, ARM holds, Resource Graph quota waits and 429s, deferred).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import AzureError

from activities import Payload
from activities import arc as arc_ops
from activities.compute import HttpGet, _vm_parts, check_vm_health_core, default_http_get, run_probe
from activities.resource_graph import _raw_sender
from patchrings import deps
from patchrings.arm import resource_graph as rg
from patchrings.arm.errors import error_info
from patchrings.arm.fanout import Pacer, map_bounded, read_pacer, remaining_reads
from patchrings.arm.ids import subscription_of
from patchrings.arm.machines import is_arc
from patchrings.boundary.activities import (
    CheckHealthBatchInput,
    CheckHealthBatchOutput,
    CheckHealthInput,
    HealthCheck,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.ports import MachineGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.health")

__all__ = ["BUDGET_SECONDS", "bp", "check_vm_health_batch_core", "deferred_sample"]

#: Reads start within this many seconds of the activity's start (probes and reads in flight
#: finish after it: 8 workers x 10-second probe timeouts stay far inside the 10-minute timeout).
BUDGET_SECONDS = 240.0


def deferred_sample(vm: Mapping[str, Any], budget: float, *, partial: bool) -> dict[str, Any]:
    """The answer for a VM whose read could not start within the budget: no reading at all."""
    sample: dict[str, Any] = {
        "vm": vm["id"], "powerState": None, "vmAgent": None, "appHealth": None, "probes": [],
        "readError": f"Deferred: not read within the activity's {budget:g}-second read budget (paced "
                     "ARM reads); read again in the next round",
        "deferred": True}
    if partial:
        sample["partial"] = True
    return sample


def _observer(pacer: Pacer) -> Callable[[Any], None]:
    def observe(response: Any) -> None:  # every HTTP answer, 429s the SDK retries included
        pacer.observe(remaining_reads(response))

    return observe


def _graph_power(send: rg.Send, vm_ids: list[str], deadline: float, gate: rg.QuotaGate,
                 ) -> tuple[dict[str, str | None], set[str], dict[str, str]]:
    """Power states of the given VMs from Resource Graph: one query per
    :data:`~patchrings.arm.resource_graph.IDS_PER_QUERY` ids (scoped to their subscriptions),
    paced on ARG's per-principal quota (:func:`patchrings.arm.resource_graph.paced`).

    Returns ``(power, deferred, failed)``: the power state by lower-case id of every VM in an
    answer (None when ARG has none for it), the ids whose query could not start before
    ``deadline`` (quota), and an error text per id whose query failed or that is not a VM id a
    query may name (checked one by one: such an id never fails the others' query)."""
    power: dict[str, str | None] = {}
    deferred: set[str] = set()
    failed: dict[str, str] = {}
    gated = rg.paced(send, gate, deadline=deadline)
    ids = []
    for vm_id in sorted({vm_id.lower() for vm_id in vm_ids}):
        # one by one: an id no query may name is that VM's unknown sample, never its chunk's (issue 11)
        if rg.is_machine_id(vm_id) and "/microsoft.compute/virtualmachines/" in vm_id:
            ids.append(vm_id)
        else:
            failed[vm_id] = "InvalidMachineId: not a VM id a Resource Graph query may name"
    for first in range(0, len(ids), rg.IDS_PER_QUERY):
        chunk = ids[first:first + rg.IDS_PER_QUERY]
        scopes = sorted({subscription_of(vm_id).lower() for vm_id in chunk})
        try:
            rows, _ = rg.query_all(gated, rg.power_query(chunk), scopes)
        except rg.QuotaDeferred:
            deferred.update(chunk)
            continue
        except (AzureError, ValueError, RuntimeError) as exc:
            info = error_info(exc)
            failed.update((vm_id, f"{info['code']}: {info['message']}") for vm_id in chunk)
            continue
        for row in rows:
            power[str(row.get("id")).lower()] = rg.power_code(row.get("powerState"))
    return power, deferred, failed


def check_vm_health_batch_core(
    clients: MachineGateway, payload: CheckHealthBatchInput | Mapping[str, Any], *,
    http_get: HttpGet = default_http_get, pacers: Callable[[str], Pacer] = read_pacer,
    clock: Callable[[], float] = time.monotonic, budget_seconds: float = BUDGET_SECONDS,
    send: rg.Send | None = None, gate: rg.QuotaGate | None = None,
) -> dict[str, Any]:
    """Health samples of many VMs in one activity: ``{checks: [{vm, full}], probes}`` -> ``{samples}``.

    ``full`` checks read each VM's instance view (:func:`check_vm_health_core`, fanned out, each
    read paced per subscription); the others are *cheap* (``partial: true``): the power state of
    all of them from Resource Graph by id (:func:`_graph_power`: one query per 100 VMs, whatever
    the subscription's size), plus the HTTP probes, which stay per VM (they are the app's own
    endpoints, not ARM). A query that fails leaves its VMs with a ``readError`` (unknown, never
    healthy); a VM missing from the answer, or without a power state in it, is unknown too (ARG
    lags: a VM may not be there yet; a deleted VM is found by the next full sample's 404).

    ``pacers`` maps a subscription id to its ARM read pacer, ``clock`` is the time base of the
    pacers and of ``gate`` (Resource Graph's quota, the process's :data:`~patchrings.arm.resource_graph.QUOTA`
    unless given), ``budget_seconds`` the read budget, ``send`` replaces the SDK's Resource Graph
    call (all injectable for tests); VMs whose read could not start within the
    budget get a :func:`deferred_sample`.
    """
    spec = from_payload(CheckHealthBatchInput, payload)
    began = clock()
    deadline = began + min(float(budget_seconds), BUDGET_SECONDS)
    used: dict[str, Pacer] = {}

    def pacer_of(subscription: str) -> Pacer:
        key = subscription.lower()
        if key not in used:
            used[key] = pacers(subscription)
        return used[key]

    checks = list(spec.checks)
    probes = spec.probes or []
    arc_members: list[Mapping[str, Any]] = [c.vm for c in checks if is_arc(c.vm)]
    arc_samples = (arc_ops.arc_health_samples(clients, arc_members, list(probes), http_get, run_probe,
                                              map_many=map_bounded) if arc_members else {})
    cheap = [str(c.vm["id"]) for c in checks if not is_arc(c.vm) and not c.full]
    for check in checks:
        if not is_arc(check.vm) and check.full:
            pacer_of(_vm_parts(check.vm)[0])
    before = {key: (p.waited, p.holds) for key, p in used.items()}  # pacers outlive the activity
    quota = gate or rg.QUOTA
    quota_before = (quota.waited, quota.throttled)
    power: dict[str, str | None] = {}
    unlisted: set[str] = set()  # queries that could not start within the budget: deferred
    failed: dict[str, str] = {}
    if cheap:
        power, unlisted, failed = _graph_power(send or _raw_sender(clients), cheap, deadline, quota)

    def one(check: HealthCheck) -> dict[str, Any]:
        vm = check.vm
        if is_arc(vm):
            return arc_samples[str(vm["id"]).lower()]
        key = str(vm["id"]).lower()
        if check.full:
            pacer = pacer_of(_vm_parts(vm)[0])
            if not pacer.acquire(deadline):
                return deferred_sample(vm, deadline - began, partial=False)
            return check_vm_health_core(clients, CheckHealthInput(vm=vm, probes=list(probes)), http_get=http_get,
                                        response_hook=_observer(pacer))
        if key in unlisted:
            return deferred_sample(vm, deadline - began, partial=True)
        sample: dict[str, Any] = {"vm": vm["id"], "powerState": None, "vmAgent": None, "appHealth": None,
                                  "probes": [], "readError": None, "partial": True}
        if key in failed:
            sample["readError"] = failed[key]
        elif key not in power:
            sample["readError"] = "NotInResourceGraph: the VM is not in Resource Graph's answer (yet)"
        elif power[key] is None:
            sample["readError"] = "NoPowerState: Resource Graph has no power state for the VM"
        else:
            sample["powerState"] = power[key]
        sample["probes"] = [run_probe(p, vm, http_get) for p in probes]
        return sample

    samples = map_bounded(one, checks)
    deferred = sum(1 for sample in samples if sample.get("deferred"))
    log.info("health batch of %d VMs (%d cheap): %d deferred; pacing %.1f s, reads waited %.1f s, %d ARM holds; "
             "Resource Graph quota waited %.1f s, %d throttled",
             len(checks), len(cheap), deferred, clock() - began,
             sum(p.waited - before.get(k, (0.0, 0))[0] for k, p in used.items()),
             sum(p.holds - before.get(k, (0.0, 0))[1] for k, p in used.items()),
             quota.waited - quota_before[0], quota.throttled - quota_before[1])
    return to_payload(CheckHealthBatchOutput(samples=samples))


@bp.activity_trigger(input_name="payload")
def check_vm_health_batch(payload: Payload) -> dict[str, Any]:
    return check_vm_health_batch_core(deps.clients(), from_payload(CheckHealthBatchInput, payload))
