"""Health samples of many VMs in one activity (issue 11: fewer ARM calls per VM per ring).

Why a module of its own: the verify orchestrator used to run ``check_vm_health`` once per VM per
round (16 instance-view GETs per VM per ring). ``check_vm_health_batch`` takes every VM due in a
round and answers in one activity: *full* samples read each VM's instance view (as
``check_vm_health`` does), *cheap* ones take the power state of all of them from one paged
``statusOnly`` VM list per subscription. HTTP probes stay per VM (the app's own endpoints, not
ARM). Contract: ``{checks: [{vm: VmRef, full: bool}], probes}`` -> ``{samples: [sample]}`` in the
order of ``checks``; a cheap sample carries ``partial: true``.

Arc-enabled servers (issue 12) are sampled from one paged HybridCompute machine list per
subscription (agent status, last status change, OS; :func:`activities.arc.arc_health_samples`):
the list carries everything an Arc sample has, so every Arc sample is a full one.

Paced reads (issue 11: 0 throttled at 10,000 VMs): every ARM read of a batch -- each instance
view, each page of a statusOnly list -- first takes a slot from the subscription's read pacer
(:func:`patchrings.arm.fanout.read_pacer`: shared by every health batch of this worker process,
a burst then a steady rate under ARM's read refill, and a hold when ARM's remaining-reads header
falls below a reserve; see fanout's docstring for why not a durable-entity budget). Reads start
only within :data:`BUDGET_SECONDS` (well inside the 10-minute ``functionTimeout``); a VM whose read
could not start by then gets a *deferred* sample (``deferred: true``, ``readError`` saying so, no
probes run): not a reading at all. The health tracker (``patchrings.domain.health``) takes no
decision on it and asks for the VM again :data:`~patchrings.domain.health.DEFER_RETRY` later, so
the verify orchestrator's next round picks it up; a gate never judges a VM on a deferred sample.
Each batch logs its pacing (seconds, seconds its reads waited, ARM holds, deferred).
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
from activities.members import _LIST_PAGES
from patchrings import deps
from patchrings.arm.errors import error_info
from patchrings.arm.fanout import Pacer, map_bounded, read_pacer, remaining_reads
from patchrings.arm.lro import to_wire
from patchrings.arm.machines import is_arc
from patchrings.arm.vms import power_state
from patchrings.boundary.activities import (
    CheckHealthBatchInput,
    CheckHealthBatchOutput,
    CheckHealthInput,
    HealthCheck,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.ports import ComputeGateway, MachineGateway

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


def _status_only_power(clients: ComputeGateway, subscription: str, pacer: Pacer | None = None,
                       deadline: float | None = None) -> dict[str, str | None] | None:
    """Power state of every VM in a subscription: ``list_all(statusOnly=true)``, paged; each page
    takes a slot from ``pacer`` first. None when a page could not start before ``deadline``
    (the list is incomplete: its VMs' samples are deferred).

    The Compute spec documents ``statusOnly=true`` on the subscription list as "fetching run time
    status of all Virtual Machines"; ``$expand=instanceView`` on the resource-group list is only
    allowed with a scale-set ``$filter`` (ComputeRP 2026-04-01, ``VirtualMachines_List``), so it
    is not used. Only the power state is taken from it: the VM agent and Application Health
    come from the per-VM instance view (full samples).
    """
    out: dict[str, str | None] = {}
    pages = 0
    kwargs: dict[str, Any] = {"raw_response_hook": _observer(pacer)} if pacer is not None else {}
    pager = clients.compute(subscription).virtual_machines.list_all(status_only="true", **kwargs).by_page()
    while True:
        if pages and getattr(pager, "continuation_token", "more") is None:
            break  # the last page had no nextLink: no slot for a request that will not be sent
        if pacer is not None and not pacer.acquire(deadline):
            return None
        try:
            page = next(pager)
        except StopIteration:
            break
        pages += 1
        for vm in page:
            wire = to_wire(vm) or {}
            out[str(wire.get("id")).lower()] = power_state((wire.get("properties") or {}).get("instanceView"))
    _LIST_PAGES[subscription.lower()] = max(pages, 1)
    return out


def check_vm_health_batch_core(
    clients: MachineGateway, payload: CheckHealthBatchInput | Mapping[str, Any], *,
    http_get: HttpGet = default_http_get, pacers: Callable[[str], Pacer] = read_pacer,
    clock: Callable[[], float] = time.monotonic, budget_seconds: float = BUDGET_SECONDS,
) -> dict[str, Any]:
    """Health samples of many VMs in one activity: ``{checks: [{vm, full}], probes}`` -> ``{samples}``.

    ``full`` checks read each VM's instance view (:func:`check_vm_health_core`, fanned out); the
    others are *cheap* (``partial: true``): the power state of all of them from one paged
    ``statusOnly`` list per subscription (or per-VM reads when that list is known to take more
    pages than there are VMs to check), plus the HTTP probes, which stay per VM (they are the
    app's own endpoints, not ARM). A list that fails leaves its VMs with a ``readError``
    (unknown, never healthy); a VM missing from its subscription's list is ``deleted``.

    Every ARM read is paced (module doc): ``pacers`` maps a subscription id to its read pacer,
    ``clock`` is the pacers' time base and ``budget_seconds`` the read budget (injectable for
    tests); VMs whose read could not start within it get a :func:`deferred_sample`.
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
    cheap_by_sub: dict[str, list[Mapping[str, Any]]] = {}
    for check in checks:
        if is_arc(check.vm):
            continue
        if not check.full:
            sub = _vm_parts(check.vm)[0].lower()
            cheap_by_sub.setdefault(sub, []).append(check.vm)
    for sub in {_vm_parts(c.vm)[0].lower() for c in checks if not is_arc(c.vm)}:
        pacer_of(sub)
    before = {key: (p.waited, p.holds) for key, p in used.items()}  # pacers outlive the activity
    power: dict[str, str | None] = {}
    failed: dict[str, str] = {}
    listed: set[str] = set()
    unlisted: set[str] = set()  # lists that could not finish within the budget: deferred
    for sub, vms in cheap_by_sub.items():
        if _LIST_PAGES.get(sub, 1) > len(vms):
            continue  # cheaper one by one (below)
        try:
            got = _status_only_power(clients, sub, pacer_of(sub), deadline)
            if got is None:
                unlisted.add(sub)
                continue
            power.update(got)
            listed.add(sub)
        except AzureError as exc:
            info = error_info(exc)
            failed[sub] = f"{info['code']}: {info['message']}"

    def one(check: HealthCheck) -> dict[str, Any]:
        vm = check.vm
        if is_arc(vm):
            return arc_samples[str(vm["id"]).lower()]
        sub = _vm_parts(vm)[0].lower()
        if not check.full and sub in unlisted:
            return deferred_sample(vm, deadline - began, partial=True)
        if check.full or (sub not in listed and sub not in failed):
            pacer = pacer_of(sub)
            if not pacer.acquire(deadline):
                return deferred_sample(vm, deadline - began, partial=not check.full)
            return check_vm_health_core(clients, CheckHealthInput(vm=vm, probes=list(probes)), http_get=http_get,
                                        response_hook=_observer(pacer))
        sample: dict[str, Any] = {"vm": vm["id"], "powerState": None, "vmAgent": None, "appHealth": None,
                                  "probes": [], "readError": None, "partial": True}
        key = str(vm["id"]).lower()
        if sub in failed:
            sample["readError"] = failed[sub]
        elif key not in power:
            sample.update(readError="NotFound: the VM is not in its subscription's VM list", deleted=True)
        else:
            sample["powerState"] = power[key]
        sample["probes"] = [run_probe(p, vm, http_get) for p in probes]
        return sample

    samples = map_bounded(one, checks)
    deferred = sum(1 for sample in samples if sample.get("deferred"))
    log.info("health batch of %d VMs: %d deferred; pacing %.1f s, reads waited %.1f s, %d ARM holds",
             len(checks), deferred, clock() - began,
             sum(p.waited - before.get(k, (0.0, 0))[0] for k, p in used.items()),
             sum(p.holds - before.get(k, (0.0, 0))[1] for k, p in used.items()))
    return to_payload(CheckHealthBatchOutput(samples=samples))


@bp.activity_trigger(input_name="payload")
def check_vm_health_batch(payload: Payload) -> dict[str, Any]:
    return check_vm_health_batch_core(deps.clients(), from_payload(CheckHealthBatchInput, payload))
