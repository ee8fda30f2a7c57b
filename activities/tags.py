"""``retag_vms``: open or close a ring's dynamic scope by moving VMs between tag values.

Why the Tags API (``tags/default`` at the VM's scope, operation *Merge*) and not a VM PATCH:
Merge changes exactly one tag name and leaves the VM model untouched, needs only
``Microsoft.Resources/tags/write``, and works for any resource type a dynamic scope selects.

One call per VM, no read first (issue 11): a Merge of ``{tag: value}`` is idempotent (Tags API,
``Tags_UpdateAtScope``: "merge ... updating the values of tags with existing names"), so a re-run
after a crash writes the same value again and changes nothing; a read before every write only
doubled the calls. The answer is the resulting tag set (``TagsResource``): the activity checks it
carries ``tag=value`` (a policy ``modify`` effect could rewrite it: reported as failed,
``TagNotApplied``) but cannot tell whether the value was already there, so it reports VMs as
*written*, not as changed / unchanged.

Pacing (``patchrings.arm.fanout.Pacer``, one per subscription, shared by every retag running in
this worker process): ``WRITE_BURST`` writes at once, then ``WRITES_PER_SECOND`` -- under ARM's
per-subscription-and-principal write bucket (200 tokens refilling 10/s) -- and a pause whenever
ARM's ``x-ms-ratelimit-remaining-subscription-writes`` falls below ``WRITE_RESERVE`` (writers this
process cannot see: other activities, other app instances, other tools of the managed identity).
At most ``FANOUT_WORKERS`` writes are in flight.

Bounded duration: writes start only within ``budgetSeconds`` (default and maximum
``BUDGET_SECONDS``, well inside the 10-minute ``functionTimeout``); VMs not started by then are
returned in ``failed`` with ``error.code == "Deferred"`` (``retryable: true``) and counted in
``deferred``: the caller retags them in its next round like any other per-VM failure. At the
default pace one activity writes about ``WRITE_BURST + WRITES_PER_SECOND * BUDGET_SECONDS`` =
2,980 VMs of one subscription.

Output ``{"written": int, "failed": [{"vm", "error"}], "deferred": int, "pacing": {"seconds",
"waitedSeconds", "holds"}}``: ``seconds`` is the activity's duration, ``waitedSeconds`` the time its
calls slept for a slot (summed over the workers) and ``holds`` the pauses ARM's header asked for,
both counted on the shared pacers while this activity ran (a concurrent retag of the same
subscription in this process adds to them). A failure on one VM never stops the others. Old
outputs had ``changed`` / ``unchanged`` id lists; they are gone (the ring-gate summary counts
``written``).

Remember the T-40 rule: a tag change lands in a scheduled run only if it is made before T-40;
the orchestrator decides *when* to call this.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import AzureError

from activities import Payload
from patchrings import deps
from patchrings.arm.errors import error_info
from patchrings.arm.fanout import FANOUT_WORKERS, Pacer, PacerRegistry, map_paced
from patchrings.arm.ids import parse_resource_id
from patchrings.arm.lro import OneShotARMPolling, poll_once, to_wire
from patchrings.boundary.activities import (
    RetagVmsInput,
)
from patchrings.boundary.codec import from_payload
from patchrings.ports import TagsGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.tags")

__all__ = ["BUDGET_SECONDS", "WRITES_PER_SECOND", "WRITE_BURST", "WRITE_RESERVE", "bp", "pacer_for", "retag_vms",
           "retag_vms_core", "write_pacers"]

WRITES_PER_SECOND = 8.0  # ARM refills 10 writes/s per subscription and principal: 2/s left for others
WRITE_BURST = 100  # half of ARM's 200-token write bucket
WRITE_RESERVE = 40  # > FANOUT_WORKERS in flight: below this many remaining, wait for ARM to refill
ARM_WRITE_REFILL = 10.0
BUDGET_SECONDS = 360.0  # writes start within 6 minutes; in-flight ones finish well before 10
REMAINING_HEADER = "x-ms-ratelimit-remaining-subscription-writes"

_PACERS = PacerRegistry(lambda: Pacer(WRITES_PER_SECOND, WRITE_BURST, reserve=WRITE_RESERVE,
                                      server_refill=ARM_WRITE_REFILL))


def pacer_for(subscription: str) -> Pacer:
    """The write pacer of ``subscription`` in this process (created on first use)."""
    return _PACERS(subscription)


def write_pacers() -> dict[str, Pacer]:
    """This process's tag write pacers by lower-case subscription id (the limiter's cost)."""
    return _PACERS.all()


def _tag_value(tags: Mapping[str, Any], name: str) -> Any:
    """The value of tag ``name`` (tag names are case-insensitive in Azure), or None."""
    for key, value in tags.items():
        if key.lower() == name.lower():
            return value
    return None


def _remaining(response: Any) -> int | None:
    headers = getattr(getattr(response, "http_response", None), "headers", None) or {}
    try:
        return int(str(headers.get(REMAINING_HEADER)))
    except (TypeError, ValueError):
        return None


def retag_vms_core(clients: TagsGateway, payload: RetagVmsInput | Mapping[str, Any], *,
                   pacers: Callable[[str], Pacer] = pacer_for,
                   clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Merge tag ``tag`` = ``value`` onto every VM in ``vmIds``, paced (see module docstring).

    ``pacers`` maps a subscription id to its pacer and ``clock`` is the pacers' time base (both
    injectable for tests); ``payload["budgetSeconds"]`` may shorten the budget, never lengthen it.
    """
    spec = from_payload(RetagVmsInput, payload)
    tag = str(spec.tag)
    value = str(spec.value)
    vm_ids = [str(v) for v in spec.vm_ids or []]
    budget = min(float(spec.budget_seconds or BUDGET_SECONDS), BUDGET_SECONDS)
    began = clock()
    deadline = began + budget
    failed: list[dict[str, Any]] = []
    targets: list[tuple[str, str]] = []
    for vm_id in vm_ids:
        try:
            targets.append((vm_id, parse_resource_id(vm_id).subscription))
        except ValueError as exc:
            failed.append({"vm": vm_id, "error": error_info(exc)})
    used: dict[str, Pacer] = {}
    for _, subscription in targets:
        if subscription.lower() not in used:
            used[subscription.lower()] = pacers(subscription)

    before = {key: (p.waited, p.holds) for key, p in used.items()}  # pacers outlive the activity

    def pacer_of(target: tuple[str, str]) -> Pacer:
        return used[target[1].lower()]

    outcomes = map_paced(lambda t: _merge_one(clients, t, tag=tag, value=value, pacer=pacer_of(t)), targets,
                         pacer_of=pacer_of, deadline=deadline, workers=FANOUT_WORKERS)
    written = deferred = 0
    for (vm_id, _), outcome in zip(targets, outcomes, strict=True):
        if outcome is None:
            deferred += 1
            failed.append({"vm": vm_id, "error": {
                "code": "Deferred", "status": None, "retryable": True,
                "message": f"not written: the activity's {budget:g}-second write budget ran out (paced "
                           f"writes); retag again"}})
        elif outcome is True:
            written += 1
        else:
            failed.append({"vm": vm_id, "error": outcome})
    pacing = {"seconds": round(clock() - began, 1),
              "waitedSeconds": round(sum(p.waited - before[k][0] for k, p in used.items()), 1),
              "holds": sum(p.holds - before[k][1] for k, p in used.items())}
    log.info("retag %s=%s: %d written, %d failed (%d deferred); pacing %s", tag, value, written,
             len(failed) - deferred, deferred, pacing)
    return {"written": written, "failed": failed, "deferred": deferred, "pacing": pacing}


def _merge_one(clients: TagsGateway, target: tuple[str, str], *, tag: str, value: str,
               pacer: Pacer) -> bool | dict[str, Any]:
    """True when ARM accepted the Merge of ``tag=value`` on ``target`` (VM id, subscription),
    else the error; never raises."""
    vm_id, subscription = target
    scope = vm_id.lstrip("/")

    def observe(response: Any) -> None:  # every attempt, 429s the SDK retries included
        pacer.observe(_remaining(response))

    try:
        resources = clients.resources(subscription)
        poller = resources.tags.begin_update_at_scope(
            scope,
            {"operation": "Merge", "properties": {"tags": {tag: value}}},
            polling=OneShotARMPolling(),
            raw_response_hook=observe,
        )
        step = poll_once(poller)  # no HTTP call when the PATCH answered 200
    except (AzureError, ValueError) as exc:
        return error_info(exc)
    if step.done and step.error:
        return step.error
    if step.done and step.result is not None:
        tags = (to_wire(step.result) or {}).get("properties", {}).get("tags") or {}
        if _tag_value(tags, tag) != value:
            return {"code": "TagNotApplied", "status": 200, "retryable": False,
                    "message": f"the merge answered with {tag}={_tag_value(tags, tag)!r}, not {value!r}"}
    # A 202 still running is accepted by ARM; a re-run writes the same value again.
    return True


@bp.activity_trigger(input_name="payload")
def retag_vms(payload: Payload) -> dict[str, Any]:
    return retag_vms_core(deps.clients(), from_payload(RetagVmsInput, payload))
