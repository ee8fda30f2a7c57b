"""``retag_vms``: open or close a ring's dynamic scope by moving VMs between tag values.

Why the Tags API (``tags/default`` at the VM's scope, operation *Merge*) and not a VM PATCH:
Merge changes exactly one tag name and leaves the VM model untouched, needs only
``Microsoft.Resources/tags/write``, and works for any resource type a dynamic scope selects.

One write per VM; a read first only for a ring's gate (issue 11). A Merge of ``{tag: value}`` is idempotent (Tags API,
``Tags_UpdateAtScope``: "merge ... updating the values of tags with existing names"), so a re-run
after a crash writes the same value again and changes nothing; a read before every write only
doubled the calls. The answer is the resulting tag set (``TagsResource``): the activity checks it
carries ``tag=value`` (a policy ``modify`` effect could rewrite it: reported as failed,
``TagNotApplied``) but cannot tell whether the value was already there, so it reports VMs as
*written*, not as changed / unchanged.

Check before act (issue 11, ``memberRule`` + ``opening`` in the input, which ``ring_gate`` always
sends): the gate's members come from Resource Graph, which is about a minute stale, so a VM an
operator moved out of the ring (``ring1-hold`` -> ``excluded``) a moment ago may still be listed.
Writing the open value on it would pull it *into* the ring's dynamic scope. So each VM is read
live first -- one GET of the VM (Arc: the machine), the same read and the same rule
(:class:`~patchrings.domain.membership.MemberRule`) as ``start_install``'s pre-check -- and
written only when :func:`patchrings.domain.gates.gate_write_refusal` allows it: opening, the rule
still selects it; closing, it still carries the open value (or already the hold value). A VM
refused is not written and is answered in ``leftRing`` (not a failure: never retried). Why a VM
GET and not ``GET tags/default``: it costs the same one read, needs no role action beyond the
``virtualMachines/read`` / ``machines/read`` the role already holds (a tags GET needs
``Microsoft.Resources/tags/read``), and it carries the location, OS and resource group the rule
checks besides the tag. A VM that is gone (404 on the read) left the ring too; any other failed
read is that VM's failure (the gate retries it in its rounds). The reads are paced by the
per-subscription read pacer (``patchrings.arm.fanout.read_pacer``) on top of the write pacer.

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

Output ``{"written": int, "failed": [{"vm", "error"}], "deferred": int, "leftRing": [{"vm", "reason"}]
(the first :data:`MAX_LEFT`), "leftRingCount": int, "leftRingIds": [ids] (all; the caller keeps them
in the ledger, bounded by its slice), "pacing": {"seconds",
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
from dataclasses import dataclass
from typing import Any, Protocol

import azure.durable_functions as df
from azure.core.exceptions import AzureError

from activities import Payload
from activities.members import member_ref
from patchrings import deps
from patchrings.arm.errors import error_info, status_of
from patchrings.arm.fanout import FANOUT_WORKERS, Pacer, PacerRegistry, map_paced, read_pacer, remaining_reads
from patchrings.arm.ids import parse_resource_id
from patchrings.arm.lro import OneShotARMPolling, poll_once, to_wire
from patchrings.arm.machines import is_arc
from patchrings.boundary.activities import (
    RetagVmsInput,
)
from patchrings.boundary.codec import from_payload
from patchrings.domain.gates import gate_write_refusal
from patchrings.domain.membership import MemberRule
from patchrings.ports import ComputeGateway, TagsGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.tags")

__all__ = ["BUDGET_SECONDS", "MAX_LEFT", "WRITES_PER_SECOND", "WRITE_BURST", "WRITE_RESERVE", "RetagGateway", "bp",
           "pacer_for", "retag_vms", "retag_vms_core", "write_pacers"]

WRITES_PER_SECOND = 8.0  # ARM refills 10 writes/s per subscription and principal: 2/s left for others
WRITE_BURST = 100  # half of ARM's 200-token write bucket
WRITE_RESERVE = 40  # > FANOUT_WORKERS in flight: below this many remaining, wait for ARM to refill
ARM_WRITE_REFILL = 10.0
BUDGET_SECONDS = 360.0  # writes start within 6 minutes; in-flight ones finish well before 10
REMAINING_HEADER = "x-ms-ratelimit-remaining-subscription-writes"
MAX_LEFT = 25  # left-ring VMs named with their reason in one answer (all are counted and listed by id)


class RetagGateway(TagsGateway, ComputeGateway, Protocol):
    """The Tags API, and the VM / Arc machine reads of the gate's check before each write."""


@dataclass(frozen=True)
class _Check:
    """The gate's check before act (``gate_write_refusal``'s arguments but the machine)."""

    rule: MemberRule
    opening: bool
    open_value: str
    hold_value: str | None


@dataclass(frozen=True)
class _Left:
    reason: str

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


def _check_of(spec: RetagVmsInput) -> _Check | None:
    if spec.member_rule is None:
        return None
    raw = spec.member_rule.get("tag")
    doc: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    opening = bool(spec.opening)
    open_value = str(spec.value) if opening or doc.get("value") is None else str(doc["value"])
    hold = doc.get("holdValue")
    return _Check(MemberRule.from_members(spec.member_rule), opening, open_value,
                  None if hold is None else str(hold))


def retag_vms_core(clients: RetagGateway | TagsGateway, payload: RetagVmsInput | Mapping[str, Any], *,
                   pacers: Callable[[str], Pacer] = pacer_for,
                   clock: Callable[[], float] = time.monotonic,
                   read_pacers: Callable[[str], Pacer] = read_pacer) -> dict[str, Any]:
    """Merge tag ``tag`` = ``value`` onto every VM in ``vmIds``, paced (see module docstring).

    ``pacers`` / ``read_pacers`` map a subscription id to its write / read pacer and ``clock`` is
    the pacers' time base (all injectable for tests); ``payload["budgetSeconds"]`` may shorten the
    budget, never lengthen it. With ``memberRule`` each VM is read live and checked first.
    """
    spec = from_payload(RetagVmsInput, payload)
    tag = str(spec.tag)
    value = str(spec.value)
    check = _check_of(spec)
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

    def one(t: tuple[str, str]) -> bool | dict[str, Any] | _Left | None:
        if check is not None:
            seen = _live_check(clients, t, check, read_pacers(t[1]), deadline)
            if seen is not True:
                return seen
        return _merge_one(clients, t, tag=tag, value=value, pacer=pacer_of(t))

    outcomes = map_paced(one, targets, pacer_of=pacer_of, deadline=deadline, workers=FANOUT_WORKERS)
    written = deferred = 0
    left: list[dict[str, Any]] = []
    for (vm_id, _), outcome in zip(targets, outcomes, strict=True):
        if isinstance(outcome, _Left):
            left.append({"vm": vm_id, "reason": outcome.reason})
        elif outcome is None:
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
    log.info("retag %s=%s: %d written, %d failed (%d deferred), %d left the ring; pacing %s", tag, value,
             written, len(failed) - deferred, deferred, len(left), pacing)
    out: dict[str, Any] = {"written": written, "failed": failed, "deferred": deferred, "pacing": pacing}
    if check is not None:
        out.update(leftRing=left[:MAX_LEFT], leftRingCount=len(left), leftRingIds=[x["vm"] for x in left])
    return out


def _live_check(clients: Any, target: tuple[str, str], check: _Check, pacer: Pacer,
                deadline: float) -> bool | dict[str, Any] | _Left | None:
    """Read the machine live (one GET, paced) and apply the gate's rule: True (write it), a
    :class:`_Left` (do not), an error (the read failed) or None (no read slot within the budget:
    deferred); never raises."""
    vm_id, subscription = target
    if not pacer.acquire(deadline):
        return None

    def observe(response: Any) -> None:
        pacer.observe(remaining_reads(response))

    try:
        ref = parse_resource_id(vm_id)
        if is_arc(vm_id):
            model = clients.hybrid_compute(subscription).machines.get(ref.resource_group, ref.name,
                                                                      raw_response_hook=observe)
        else:
            model = clients.compute(subscription).virtual_machines.get(ref.resource_group, ref.name,
                                                                       raw_response_hook=observe)
        wire = to_wire(model) or {}
    except (AzureError, ValueError) as exc:
        if isinstance(exc, AzureError) and status_of(exc) == 404:
            return _Left("the machine is gone (404 on its live read)")
        return error_info(exc)
    member = member_ref({**wire, "id": wire.get("id") or vm_id})
    reason = gate_write_refusal(check.rule, opening=check.opening, open_value=check.open_value,
                                hold_value=check.hold_value, resource_group=ref.resource_group,
                                location=member.get("location"), os=member.get("os"), tags=wire.get("tags") or {})
    return True if reason is None else _Left(reason)


def _merge_one(clients: Any, target: tuple[str, str], *, tag: str, value: str,
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
