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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import AzureError

from activities import Payload
from activities import arc as arc_ops
from activities.compute import HttpGet, _vm_parts, check_vm_health_core, default_http_get, run_probe
from activities.members import _LIST_PAGES
from patchrings import deps
from patchrings.arm.errors import error_info
from patchrings.arm.fanout import map_bounded
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

__all__ = ["bp", "check_vm_health_batch_core"]




def _status_only_power(clients: ComputeGateway, subscription: str) -> dict[str, str | None]:
    """Power state of every VM in a subscription: ``list_all(statusOnly=true)``, paged.

    The Compute spec documents ``statusOnly=true`` on the subscription list as "fetching run time
    status of all Virtual Machines"; ``$expand=instanceView`` on the resource-group list is only
    allowed with a scale-set ``$filter`` (ComputeRP 2026-04-01, ``VirtualMachines_List``), so it
    is not used. Only the power state is taken from it: the VM agent and Application Health
    come from the per-VM instance view (full samples).
    """
    out: dict[str, str | None] = {}
    pages = 0
    for page in clients.compute(subscription).virtual_machines.list_all(status_only="true").by_page():
        pages += 1
        for vm in page:
            wire = to_wire(vm) or {}
            out[str(wire.get("id")).lower()] = power_state((wire.get("properties") or {}).get("instanceView"))
    _LIST_PAGES[subscription.lower()] = max(pages, 1)
    return out


def check_vm_health_batch_core(
    clients: MachineGateway, payload: CheckHealthBatchInput | Mapping[str, Any], *,
    http_get: HttpGet = default_http_get
) -> dict[str, Any]:
    """Health samples of many VMs in one activity: ``{checks: [{vm, full}], probes}`` -> ``{samples}``.

    ``full`` checks read each VM's instance view (:func:`check_vm_health_core`, fanned out); the
    others are *cheap* (``partial: true``): the power state of all of them from one paged
    ``statusOnly`` list per subscription (or per-VM reads when that list is known to take more
    pages than there are VMs to check), plus the HTTP probes, which stay per VM (they are the
    app's own endpoints, not ARM). A list that fails leaves its VMs with a ``readError``
    (unknown, never healthy); a VM missing from its subscription's list is ``deleted``.
    """
    spec = from_payload(CheckHealthBatchInput, payload)
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
    power: dict[str, str | None] = {}
    failed: dict[str, str] = {}
    listed: set[str] = set()
    for sub, vms in cheap_by_sub.items():
        if _LIST_PAGES.get(sub, 1) > len(vms):
            continue  # cheaper one by one (below)
        try:
            power.update(_status_only_power(clients, sub))
            listed.add(sub)
        except AzureError as exc:
            info = error_info(exc)
            failed[sub] = f"{info['code']}: {info['message']}"

    def one(check: HealthCheck) -> dict[str, Any]:
        vm = check.vm
        if is_arc(vm):
            return arc_samples[str(vm["id"]).lower()]
        sub = _vm_parts(vm)[0].lower()
        if check.full or (sub not in listed and sub not in failed):
            return check_vm_health_core(clients, CheckHealthInput(vm=vm, probes=list(probes)), http_get=http_get)
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

    return to_payload(CheckHealthBatchOutput(samples=map_bounded(one, checks)))


@bp.activity_trigger(input_name="payload")
def check_vm_health_batch(payload: Payload) -> dict[str, Any]:
    return check_vm_health_batch_core(deps.clients(), from_payload(CheckHealthBatchInput, payload))
