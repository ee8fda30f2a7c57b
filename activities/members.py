"""``resolve_ring_members``: which VMs and Arc-enabled servers a ring holds (issue 10: its own module).

Members are Azure VMs and Azure Arc-enabled servers (issue 12): every record (``VmRef``) carries
``kind`` (``vm`` / ``arc``) besides ``id``; Arc records add ``agentStatus`` and
``lastStatusChange``. A ring is named by its resolved document (``ringSpec``, what the
orchestrators hold) or, during the transition, by ``plan`` + ``ring`` (the whole plan is then
validated again to read one ring; callers are switching to ``ringSpec``).

The compliance view and the manifest diff resolve rings with the same core
(:func:`resolve_ring_members_core`), so a ring is the same set of machines everywhere.

Where members come from (issue 11: a few calls per VM at any subscription size): one paged
Resource Graph query on the ``resources`` table per resolution, filtered server-side as far as
that can never drop a member and re-checked row by row with the ring's
:class:`~patchrings.domain.membership.MemberRule` (the core's docstring). Each resolution reads
that ring's rows only: the planner's count of every ring, ``plan_ring_waves`` and
``ring_coverage`` cost ``ceil(rows / 1000)`` requests each, not the subscription's list pages.
Resource Graph lags the live resources by seconds; the install's pre-check
(:func:`activities.compute.start_install_core`) re-applies the rule to the live VM.

Resource Graph answers only the rows the identity can read, so a missing read role gives a
smaller ring, not a 403 (issue 11). Each resolution therefore first probes every subscription it
queries (:func:`read_probe`: a GET of a VM in a resource group that does not exist, which ARM
authorizes on that scope before it looks the group up: 404 when the identity holds
``Microsoft.Compute/virtualMachines/read`` on the subscription -- the "Fleet Reader" role --, 403
``AuthorizationFailed`` when it does not; one small request, never a list of the subscription); a
refusal raises, so the caller's read fails (inconclusive) instead of verifying a smaller ring.

LIMITATION: the probe proves subscription-level VM reads only. Visibility that is partial --
read granted on some resource groups only, Arc machines (``Microsoft.HybridCompute/machines/read``)
without VMs -- cannot be detected this way: ARG still answers the visible rows. What would detect
it: results rows (run results, assessments, which name machines whatever the member list) for
machines that are not among the members, turned into an inconclusive ring; not done here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import azure.durable_functions as df
from azure.core.exceptions import HttpResponseError

from activities import Payload
from activities.plan import assignment_name, ring_from_spec
from activities.resource_graph import _raw_sender
from patchrings import deps
from patchrings.arm import resource_graph as rg
from patchrings.arm.errors import status_of
from patchrings.arm.fanout import map_bounded
from patchrings.arm.ids import parse_resource_id, same_arm_id
from patchrings.arm.lro import to_wire
from patchrings.arm.machines import arc_ref, is_arc
from patchrings.arm.vms import dynamic_scope_matches, vm_ref
from patchrings.boundary.activities import (
    PlanRingWavesInput,
    PlanRingWavesOutput,
    ReadWaveMembersInput,
    ReadWaveMembersOutput,
    ResolveMembersInput,
    ResolveMembersOutput,
    RingCoverageInput,
    RingCoverageOutput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.domain.manifest import uncovered_vms
from patchrings.domain.membership import MemberRule
from patchrings.domain.plan import Ring, short_hash
from patchrings.errors import ResourceGraphIncomplete
from patchrings.ports import FleetGateway

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.members")

__all__ = [
    "PROBE_GROUP",
    "QUOTA_WAIT_SECONDS",
    "WavePlanStore",
    "bp",
    "count_only",
    "coverage_answer",
    "member_ref",
    "plan_ring_waves",
    "plan_ring_waves_core",
    "read_probe",
    "read_wave_members",
    "read_wave_members_core",
    "resolve_ring_members",
    "resolve_ring_members_core",
    "ring_coverage",
    "ring_coverage_core",
]

#: Longest wait for Resource Graph's quota before a resolution fails (and is retried by the caller).
QUOTA_WAIT_SECONDS = 60.0

#: One member of the fleet being resolved: its record and its tags, by lower-cased id.
Fleet = dict[str, tuple[dict[str, Any], dict[str, Any]]]


def resolve_ring_members_core(clients: FleetGateway, payload: ResolveMembersInput | Mapping[str, Any], *,
                              listed: dict[str, list[dict[str, Any]]] | None = None,
                              send: rg.Send | None = None, gate: rg.QuotaGate | None = None,
                              probe: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Members of a ring: its tag selector (value or hold value) and/or its configuration's members.

    Where they come from (issue 11): one paged Resource Graph query on the ``resources`` table
    (:func:`patchrings.arm.resource_graph.members_query`, 1,000 rows a page, VMs and Arc machines of
    the ring's subscriptions), filtered server-side as far as KQL can without ever dropping a
    member (resource groups; the tag value as a substring of the tags when the ring is selected by
    tag alone), then every row re-checked with the ring's :class:`MemberRule` -- so the query costs
    rows, never a wrong member, and a ring of 20 VMs in a subscription of 10,000 is one request,
    not the subscription's 200 list pages. Resource Graph is seconds stale: safety does not rest on
    this list (the install's pre-check re-applies the rule to the live VM, ``left-ring``).

    ``listed`` (optional, the compliance view, which resolves every ring of a plan and also needs
    the machines in no ring): every machine of each subscription, read once by subscription id and
    shared across calls (REST-shaped rows, :func:`patchrings.arm.resource_graph.member_wire`);
    ``send`` replaces the SDK's Resource Graph call and ``gate`` the process's quota gate (tests);
    ``probe(subscription)`` is the read-role probe (module doc; :func:`read_probe` unless ``send``
    is given, as tests give a table without a subscription behind it), called once per
    subscription per resolution before its rows are read.

    The configuration's members are its resource-level assignments plus the machines its dynamic
    scopes (subscription-level assignments with a ``filter``) select, evaluated on the same rows.
    The plan's ``subscriptions``/``resourceGroups``/``locations``/``osTypes`` narrow both.

    Any read that fails (403, throttled or 5xx after the SDK's retries, quota not back within
    :data:`QUOTA_WAIT_SECONDS`, connection lost) raises: a partial member list would verify or
    patch a ring with VMs silently missing. Callers run this activity with ``retries.READ`` and
    treat a final failure as inconclusive.
    """
    spec = from_payload(ResolveMembersInput, payload)
    ring = ring_from_spec(spec.ring_spec, spec.ring)
    members = ring.members
    configuration_id = members.maintenance_configuration_id
    subscriptions = list(members.subscriptions)
    if not subscriptions and configuration_id:
        subscriptions = [parse_resource_id(configuration_id).subscription]
    if not subscriptions:
        return to_payload(ResolveMembersOutput(vms=[], error={
            "code": "NoSubscription", "message": f"ring {ring.name!r} names no subscription or configuration"}))
    rule = MemberRule.from_members(members.to_dict())
    if not members.tag and not configuration_id:
        return to_payload(ResolveMembersOutput(vms=[]))

    scopes = sorted({sub.lower() for sub in subscriptions})
    filters, assigned = _configuration_reads(clients, ring, subscriptions) if configuration_id else ([], set())
    quota = gate or rg.QUOTA
    sender = rg.paced(send or _raw_sender(clients), quota, deadline=quota.now() + QUOTA_WAIT_SECONDS)
    check = probe if probe is not None else (read_probe(clients) if send is None else None)
    wires: list[dict[str, Any]] = []
    if listed is not None:
        # The compliance view: every machine of each subscription once (it also needs the machines
        # in no ring), by subscription id, shared by every ring it resolves.
        for sub in scopes:
            if sub not in listed:
                if check is not None:
                    check(sub)
                rows, pages = rg.query_all(sender, rg.members_query(), [sub])
                log.info("subscription %s: %d Resource Graph row(s) in %d page(s)", sub, len(rows), pages)
                listed[sub] = [rg.member_wire(row) for row in rows]
            wires.extend(listed[sub])
    else:
        # Server-side: the ring's tag values, its dynamic scopes' tag values and its assigned ids
        # (a superset of its members); every machine in scope when that cannot be said.
        values, ids = _candidates(ring, rule, filters, assigned)
        query = rg.members_query(tag_values=values, resource_groups=members.resource_groups, ids=ids)
        if check is not None:
            for sub in scopes:
                check(sub)
        rows, pages = rg.query_all(sender, query, scopes)
        log.info("ring %s: %d Resource Graph row(s) in %d page(s)", ring.name, len(rows), pages)
        wires = [rg.member_wire(row) for row in rows]

    fleet: Fleet = {}
    for wire in wires:
        _consider(wire, fleet, rule)
    selected: set[str] = set()
    if members.tag:
        selected |= {key for key, (_, tags) in fleet.items() if rule.tag_selects(tags)}
    if configuration_id:
        selected |= _configuration_members(clients, ring, fleet, filters, assigned)
    return to_payload(ResolveMembersOutput(
        vms=sorted((fleet[key][0] for key in selected), key=lambda v: str(v["id"]).lower())))


#: The resource group and VM the read-role probe asks for (module doc): names no fleet uses.
PROBE_GROUP = "patchrings-read-probe"


def read_probe(clients: FleetGateway) -> Callable[[str], None]:
    """The read-role probe (module doc): one GET per subscription of a VM in a resource group that
    does not exist (:data:`PROBE_GROUP`). 404 means the identity may read VMs anywhere in the
    subscription; a 403 ``AuthorizationFailed`` (or any other answer: it proves nothing) raises,
    since Resource Graph would have answered fewer rows."""

    def probe(subscription: str) -> None:
        try:
            clients.compute(subscription).virtual_machines.get(PROBE_GROUP, PROBE_GROUP)
        except HttpResponseError as exc:
            if status_of(exc) == 404:
                return
            log.warning("subscription %s: the identity may not read its VMs (%s); Resource Graph would "
                        "answer fewer rows, so the resolution fails", subscription, str(exc)[:200])
            raise
        raise ResourceGraphIncomplete(
            f"subscription {subscription}: the read-role probe found resource group {PROBE_GROUP!r} with a VM "
            f"{PROBE_GROUP!r}; it cannot tell whether the identity reads the whole subscription")

    return probe


def member_ref(wire: Mapping[str, Any]) -> dict[str, Any]:
    """The member record of a listed resource: :func:`vm_ref` or, for Arc, :func:`arc_ref`."""
    return arc_ref(wire) if is_arc(str(wire.get("id") or "")) else vm_ref(wire)


def _consider(wire: Mapping[str, Any], fleet: Fleet, rule: MemberRule) -> None:
    """Add one VM or Arc machine (a Resource Graph row in REST shape, :func:`rg.member_wire`) to
    ``fleet`` when the ring's rule has it in scope (resource groups / locations / OS types): the
    client-side re-check of every row."""
    if str(wire.get("type") or "").lower() not in (rg.VM_TYPE, rg.ARC_TYPE):
        return
    ref = member_ref(wire)
    group = parse_resource_id(ref["id"]).resource_group
    if not rule.in_scope(resource_group=group, location=ref.get("location"), os=ref.get("os")):
        return
    fleet[ref["id"].lower()] = (ref, dict(wire.get("tags") or {}))


def _configuration_reads(clients: FleetGateway, ring: Ring, subscriptions: list[str]) -> tuple[list[Any], set[str]]:
    """The ring's configuration's dynamic-scope filters and resource-level assignments (lower-case
    resource ids), using only supported ARM reads:

    * the within-subscription assignment list (documented as not implemented in some API
      versions, so failures are tolerated) plus a direct GET of the ring's own subscription-level
      assignment (``open.assignmentName`` / ``patchrings-<ring>``).
    """
    configuration_id = ring.configuration_id
    filters: list[Any] = []
    assigned: set[str] = set()

    def consider(doc: Any) -> None:
        props = (to_wire(doc) or {}).get("properties") or {}
        if not same_arm_id(props.get("maintenanceConfigurationId"), configuration_id):
            return
        if props.get("filter") is not None:
            filters.append(props["filter"])
        elif props.get("resourceId"):
            assigned.add(str(props["resourceId"]).lower())

    for sub in subscriptions:
        maintenance = clients.maintenance(sub)
        try:
            for doc in maintenance.configuration_assignments_within_subscription.list():
                consider(doc)
        except HttpResponseError as exc:
            _tolerate_absent(exc)
        try:
            consider(maintenance.configuration_assignments_for_subscriptions.get(assignment_name(ring)))
        except HttpResponseError as exc:
            _tolerate_absent(exc)
    return filters, assigned


#: Most resource-level assignments named in the members query (``id in~``); more: no server-side filter.
NAMED_ASSIGNMENTS = 200


def _candidates(ring: Ring, rule: MemberRule, filters: list[Any],
                assigned: set[str]) -> tuple[set[str] | None, set[str]]:
    """What the members query may filter on server-side without losing a member: ``(tag values,
    ids)`` whose rows are a superset of the ring's, or ``(None, ...)`` when only every machine in
    scope is (a ring whose configuration alone is its membership, a dynamic scope without tags,
    too many assignments to name)."""
    if ring.configuration_id is None:
        return set(rule.tag_values), set()
    if ring.members.tag is None or len(assigned) > NAMED_ASSIGNMENTS:
        return None, set()
    values = set(rule.tag_values)
    for filt in filters:
        wanted = ((filt or {}).get("tagSettings") or {}).get("tags") or {}
        if not wanted or any(not vals for vals in wanted.values()):
            return None, set()  # a scope that selects machines whatever their tags
        values |= {str(v) for vals in wanted.values() for v in vals}
    if not all(rg.is_machine_id(a) for a in assigned):
        return None, set()
    return values, set(assigned)


def _configuration_members(clients: FleetGateway, ring: Ring, fleet: Fleet, filters: list[Any],
                           assigned: set[str]) -> set[str]:
    """The machines of ``fleet`` the ring's maintenance configuration covers: its resource-level
    assignments and the machines its dynamic scopes select; for rings without a tag selector (their
    configuration *is* their membership) also each candidate's own assignment list, fanned out. In
    Azure, Resource Graph (``maintenanceresources``) answers this in one query; it is not
    available locally."""
    configuration_id = ring.configuration_id
    assigned = set(assigned)
    if ring.members.tag is None:
        def vm_assignments(key: str) -> bool:
            rid = parse_resource_id(fleet[key][0]["id"])
            provider, kind = (("Microsoft.HybridCompute", "machines") if is_arc(fleet[key][0])
                              else ("Microsoft.Compute", "virtualMachines"))
            try:
                docs = clients.maintenance(rid.subscription).configuration_assignments.list(
                    rid.resource_group, provider, kind, rid.name)
                return any(same_arm_id(((to_wire(d) or {}).get("properties") or {}).get("maintenanceConfigurationId"),
                                       configuration_id) for d in docs)
            except HttpResponseError as exc:
                _tolerate_absent(exc)
                return False

        keys = sorted(fleet)
        assigned |= {key for key, hit in zip(keys, map_bounded(vm_assignments, keys), strict=True) if hit}
    selected = {key for key in assigned if key in fleet}
    for filt in filters:
        selected |= {key for key, (ref, tags) in fleet.items() if dynamic_scope_matches(filt, ref, tags=tags)}
    return selected


def _tolerate_absent(exc: HttpResponseError) -> None:
    """Swallow an answer that means *nothing there* (404, or a list the API version does not
    implement: 400/405/501); re-raise anything else (403, 429, 5xx...), so the activity fails
    and is retried instead of silently resolving a ring with members missing (fail closed)."""
    if status_of(exc) not in (400, 404, 405, 501):
        raise exc


# ------------------------------------------------------------------------------ wave plans (issue 11)
class WavePlanStore(Protocol):
    """The ledger's wave-plan rows (:class:`patchrings.ledger.Ledger`, ``Waves`` table)."""

    def wave_plan(self, run_id: str) -> dict[str, Any] | None: ...

    def record_wave_plan(self, run_id: str, plan: Mapping[str, Any],
                         slices: Iterable[tuple[int, int, list[dict[str, Any]]]]) -> dict[str, Any]: ...

    def wave_slice(self, run_id: str, plan_hash: str, wave: int, part: int) -> list[dict[str, Any]] | None: ...


def _plan_answer(plan: Mapping[str, Any]) -> dict[str, Any]:
    return to_payload(PlanRingWavesOutput(
        count=int(plan.get("count") or 0), waves=[int(n) for n in plan.get("waves") or []],
        slice_size=int(plan.get("sliceSize") or 0), hash=str(plan.get("hash") or ""),
        by_os={str(k): int(v) for k, v in (plan.get("byOs") or {}).items()}, error=plan.get("error") or None))


def plan_ring_waves_core(clients: FleetGateway, ledger: WavePlanStore,
                         payload: PlanRingWavesInput | Mapping[str, Any], *,
                         send: rg.Send | None = None) -> dict[str, Any]:
    """Resolve a direct ring's members, plan its waves and keep both in the ledger; answer counts.

    Check before act (at-least-once): a run whose plan row exists answers that plan, so a retried
    or replayed call never re-resolves a ring whose membership changed meanwhile. Otherwise the
    members (:func:`resolve_ring_members_core`) are split into the ring's waves (its ``rate``:
    ``plan_waves``, spread across zones / availability sets), each wave into slices of at most
    ``sliceSize`` VMs, written to the ``Waves`` table before the plan row (create-only, the
    first planner wins). The answer holds no VM: ``{count, waves, sliceSize, byOs, hash}``."""
    spec = payload if isinstance(payload, PlanRingWavesInput) else from_payload(PlanRingWavesInput, payload)
    existing = ledger.wave_plan(spec.run_id)
    if existing is not None:
        return _plan_answer(existing)
    resolved = resolve_ring_members_core(clients, ResolveMembersInput(ring=spec.ring, ring_spec=spec.ring_spec,
                                                                      rollout_id=spec.rollout_id), send=send)
    vms: list[dict[str, Any]] = list(resolved.get("vms") or [])
    if resolved.get("error"):
        # nowhere to look: nothing is planned (a later call looks again), the ring says why
        return to_payload(PlanRingWavesOutput(count=0, waves=[], slice_size=spec.slice_size, hash="",
                                              error=resolved["error"]))
    ring = ring_from_spec(spec.ring_spec, spec.ring)
    by_id = {str(vm["id"]): vm for vm in vms}
    waves = ring.rate.waves(vms)
    size = max(1, int(spec.slice_size or 100))
    slices = [(index, part, [by_id[vm_id] for vm_id in wave[first:first + size]])
              for index, wave in enumerate(waves) for part, first in enumerate(range(0, len(wave), size))]
    by_os: dict[str, int] = {}
    for vm in vms:
        key = str(vm.get("os") or "unknown")
        by_os[key] = by_os.get(key, 0) + 1
    plan = {"count": len(vms), "waves": [len(w) for w in waves], "sliceSize": size, "byOs": by_os,
            "hash": short_hash({"waves": waves, "sliceSize": size})}
    return _plan_answer(ledger.record_wave_plan(spec.run_id, plan, slices))


def read_wave_members_core(ledger: WavePlanStore, payload: ReadWaveMembersInput | Mapping[str, Any]) -> dict[str, Any]:
    """The VmRefs of one slice of one planned wave (a read: retried by the caller). A slice the
    plan does not hold raises: a ring must never install a wave it cannot name."""
    spec = payload if isinstance(payload, ReadWaveMembersInput) else from_payload(ReadWaveMembersInput, payload)
    vms = ledger.wave_slice(spec.run_id, spec.plan_hash, spec.wave, spec.slice)
    if vms is None:
        raise LookupError(f"run {spec.run_id}: plan {spec.plan_hash} has no wave {spec.wave} slice {spec.slice}")
    return to_payload(ReadWaveMembersOutput(vms=vms))


#: Most uncovered machines ``ring_coverage`` names (the rest are counted).
COVERAGE_NAMED = 100


def coverage_answer(ring: Ring, manifest: Mapping[str, Any] | None, vms: list[dict[str, Any]]) -> dict[str, Any]:
    """``ring_coverage``'s answer from a ring's members (also the fake fleet's)."""
    refused = [] if ring.allow_uncovered_os else uncovered_vms(manifest or {}, vms)
    return to_payload(RingCoverageOutput(members=len(vms), refused_count=len(refused),
                                         families=sorted({str(r["family"]) for r in refused}),
                                         refused=refused[:COVERAGE_NAMED]))


def ring_coverage_core(clients: FleetGateway, payload: RingCoverageInput | Mapping[str, Any], *,
                       send: rg.Send | None = None) -> dict[str, Any]:
    """The ring's machines of OS / image families Ring 0 did not cover (issue 13.7), resolved and
    judged here so the rollout reads counts and the first :data:`COVERAGE_NAMED` (issue 11)."""
    spec = payload if isinstance(payload, RingCoverageInput) else from_payload(RingCoverageInput, payload)
    resolved = resolve_ring_members_core(clients, ResolveMembersInput(ring=spec.ring, ring_spec=spec.ring_spec,
                                                                      rollout_id=spec.rollout_id), send=send)
    return coverage_answer(ring_from_spec(spec.ring_spec, spec.ring), spec.manifest,
                           list(resolved.get("vms") or []))


# ------------------------------------------------------------------------------ binding
@bp.activity_trigger(input_name="payload")
def ring_coverage(payload: Payload) -> dict[str, Any]:
    return ring_coverage_core(deps.clients(), from_payload(RingCoverageInput, payload))


@bp.activity_trigger(input_name="payload")
def plan_ring_waves(payload: Payload) -> dict[str, Any]:
    return plan_ring_waves_core(deps.clients(), deps.ledger(), from_payload(PlanRingWavesInput, payload))


@bp.activity_trigger(input_name="payload")
def read_wave_members(payload: Payload) -> dict[str, Any]:
    return read_wave_members_core(deps.ledger(), from_payload(ReadWaveMembersInput, payload))


@bp.activity_trigger(input_name="payload")
def resolve_ring_members(payload: Payload) -> dict[str, Any]:
    spec = from_payload(ResolveMembersInput, payload)
    answer = resolve_ring_members_core(deps.clients(), spec)
    return count_only(answer) if spec.count_only else answer


def count_only(answer: Mapping[str, Any]) -> dict[str, Any]:
    """``countOnly`` (issue 11): the members' number, no VM (the caller's history stays small)."""
    return to_payload(ResolveMembersOutput(vms=[], error=answer.get("error") or None,
                                           count=len(answer.get("vms") or [])))
