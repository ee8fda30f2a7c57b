"""Dry run of one ring: resolve its members and assess their patches, installing nothing.

Why: before anyone approves, an operator should see exactly which VMs each ring's selector
resolves to *now* and which patches the plan **would** install on each (issue 9;
update-manager-domain.md §14.8). Assessments are long-running like installs, so they are started
and polled with durable timers.

What "would install" means: assessPatches answers ``availablePatches`` (every patch the machine
lacks); the ring's installPatches parameters are built exactly as the install builds them
(:func:`orchestrators.verdicts.install_parameters`: the ring's classifications / includes /
excludes, the Windows ``maxPatchPublishDate`` frozen at the rollout's start, or the pinned
manifest when one is given) and applied by :func:`patchrings.domain.selection.machine_listing`.
Without a manifest a later ring is listed under its own rules with the cutoff: an upper bound,
since it will install only the manifest Ring 0 validates (``basis`` says which). A caller that runs
Ring 0's dry run first can pass later rings
``manifest = patchrings.domain.selection.projected_manifest(ring0_output)``: they then list exactly
what that pin would install on them.

Compliance section (issue 12): ``compliance`` = the ring's entry of the compliance view
(:mod:`activities.compliance`, the core ``GET /api/compliance`` uses, called through the
``ring_compliance`` activity): ``{ring, members, missingCriticalOrSecurity, notAssessed, stale,
error, machines: [{id, name, kind, os, status, critical, security, rebootPending, lastAssessedAt,
assessmentAgeHours}], asOf, asOfSource, staleAfterHours, resourceGraph}``, the first ring's also
``unassigned: {count, machines}`` (machines no ring selects), or ``{ring, error}``; ages against
the orchestration's time (the platform's). ``summary.compliance`` has its counts.

Input :class:`~patchrings.boundary.rings.DryRunRingInput` ``{rolloutId, ringSpec, plan?, ring,
startedAt?, manifest?}`` (``startedAt`` defaults to the orchestration's start). The ring's own
settings come from ``ringSpec`` (or, during the transition, its entry in ``plan``); the whole
``plan`` is read only for the first ring (its compliance section lists the machines in no ring,
its planner reads the next ring's schedule and the promotion margin): without it the ring is
listed as a later one. Output :class:`~patchrings.boundary.rings.DryRunRingOutput` ``{ring, patching, basis, cutoff,
vms: [...], summary: {...}, planner, warnings: [...], compliance}``;
each VM ``{vm, name, os, zone, assessed, status, error, availablePatchCount, wouldInstallCount,
filteredCount, filteredByReason, wouldInstall: [{patch, key, classifications, publishedDate?}],
filtered: [{patch, reason}] (first 20)}``; ``summary`` adds up the ring
(:func:`patchrings.domain.selection.ring_listing_summary`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import azure.durable_functions as df

from orchestrators import names, retries
from orchestrators.verdicts import install_parameters, ring_of, ring_spec_from_plan
from orchestrators.wave import install_parameters_for
from patchrings.boundary.activities import (
    GetConfigurationInput,
    PollAssessInput,
    ReadAssessmentsInput,
    ResolveMembersInput,
    RingComplianceInput,
    StartAssessInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import DryRunRingInput, DryRunRingOutput
from patchrings.domain.plan import DEFAULT_T40_MARGIN, Ring
from patchrings.domain.planner import estimate_ring
from patchrings.domain.recurrence import next_occurrence, parse_window
from patchrings.domain.results import expected_install_duration
from patchrings.domain.selection import available_of, machine_listing, ring_listing_summary
from patchrings.domain.timeutil import format_duration, iso, parse_duration, parse_instant

bp = df.Blueprint()

POLL = timedelta(minutes=1)
ASSESS_DEADLINE = timedelta(hours=1)
#: the activity (activities/manifest_diff.py) reading machines' latest assessments from Resource Graph
READ_ASSESSMENTS = getattr(names, "READ_ASSESSMENTS", "read_assessments")
#: the activity (registered on activities/manifest_diff.py's blueprint) answering a ring's compliance section
RING_COMPLIANCE = getattr(names, "RING_COMPLIANCE", "ring_compliance")
#: how long to wait for Resource Graph rows of assessments that came without a patch list (Arc)
ROWS_DEADLINE = timedelta(minutes=20)
ROWS_POLL = timedelta(minutes=2)


@bp.orchestration_trigger(context_name="context", orchestration=names.DRY_RUN_RING)  # type: ignore[untyped-decorator]
def dry_run_ring_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    spec = from_payload(DryRunRingInput, context.get_input() or {})
    ring_name = spec.ring
    # The ring's document (issue 10): its install rules and patching; the plan only for the first ring.
    ring_spec = dict(spec.ring_spec)
    ring = ring_of(ring_spec, ring_name)
    started_at = spec.started_at or iso(context.current_utc_datetime)  # the cutoff: the rollout's start
    members = yield context.call_activity_with_retry(names.RESOLVE_MEMBERS, retries.READ,
                                                     to_payload(ResolveMembersInput(
                                                         ring=ring_name, ring_spec=ring_spec)))
    vms: list[dict[str, Any]] = list((members or {}).get("vms") or [])
    run_id = f"{spec.rollout_id}:{ring_name}:assess"
    starts = yield context.task_all(
        [context.call_activity_with_retry(names.START_ASSESS, retries.WRITE,
                                          to_payload(StartAssessInput(rollout_id=spec.rollout_id, ring=ring_name,
                                                                            run_id=run_id, vm=vm))) for vm in vms]
    )
    tokens = {vm["id"]: (s or {}).get("token") for vm, s in zip(vms, starts, strict=True)
              if (s or {}).get("state") in ("started", "already-started", "already-done")}
    results: dict[str, Any] = {vm["id"]: {"error": (s or {}).get("error")} for vm, s in zip(vms, starts, strict=True)
                               if vm["id"] not in tokens}
    deadline = context.current_utc_datetime + ASSESS_DEADLINE
    while tokens:
        polls = yield context.task_all(
            [context.call_activity_with_retry(names.POLL_ASSESS, retries.READ,
                                              to_payload(PollAssessInput(
                                                  run_id=run_id, vm=next(v for v in vms if v["id"] == vm_id),
                                                  token=cast(str, token))))  # a started assessment has one
             for vm_id, token in tokens.items()]
        )
        for vm_id, poll in zip(list(tokens), polls, strict=True):
            if (poll or {}).get("done"):
                tokens.pop(vm_id)
                results[vm_id] = {"result": (poll or {}).get("result"), "error": (poll or {}).get("error")}
        if not tokens or context.current_utc_datetime >= deadline:
            break
        yield context.create_timer(context.current_utc_datetime + POLL)
    for vm_id in tokens:
        results[vm_id] = {"error": {"code": "AssessDeadlineExceeded", "message": "no assessment result in time"}}
    notes = yield from _patch_lists_from_resource_graph(context, vms, results, started_at)

    manifest = spec.manifest or None
    parameters = install_parameters(ring.install, None if manifest else started_at, manifest)
    first = _ring_names(spec.plan)[:1] == [ring_name]
    basis = ("manifest" if manifest else "ring rules" if first else
             "ring rules (upper bound: this ring installs only the manifest Ring 0 validates)")
    out = []
    for vm in vms:
        entry = results.get(vm["id"]) or {}
        result = entry.get("result") or {}
        assessed = bool(result) and not entry.get("error") and str(result.get("status") or "").lower() != "failed"
        listing = machine_listing(vm.get("os"), available_of(result), install_parameters_for(vm, parameters))
        detail = not assessed or _has_patch_list(result)
        out.append({"vm": vm["id"], "name": vm.get("name"), "os": vm.get("os"), "zone": vm.get("zone"),
                    "kind": vm.get("kind") or "vm", "assessed": assessed, "status": result.get("status"),
                    "patchDetail": detail, "patchSource": result.get("patchSource") or "assessPatches", **listing,
                    "error": entry.get("error") or result.get("error")})
    planner: dict[str, Any] | None = None
    if first and spec.plan is not None and ring.patching == "direct":
        planner = yield from _plan_first_ring(context, spec.plan, ring, len(vms), started_at)
    compliance = yield from _compliance(context, spec, ring_spec, vms, first)
    summary = ring_listing_summary(out)
    summary["withoutPatchDetail"] = sum(1 for o in out if not o["patchDetail"])
    warnings = notes + list((planner or {}).get("warnings") or [])
    if compliance.get("error"):
        why = compliance["error"].get("message") or compliance["error"].get("code")
        warnings.append(f"compliance could not be read from Resource Graph ({str(why)[:200]})")
    summary["warnings"] = warnings  # the rollout records the summary in its status: the warnings show there
    summary["compliance"] = _compliance_counts(compliance)
    return to_payload(DryRunRingOutput(ring=ring_name, patching=ring.patching, basis=basis,
                                       cutoff=None if manifest else started_at, vms=out, summary=summary,
                                       planner=planner, warnings=warnings, compliance=compliance))


def _ring_names(plan: dict[str, Any] | None) -> list[str]:
    return [str(r.get("name")) for r in (plan or {}).get("rings") or []]


def _compliance(context: df.DurableOrchestrationContext, spec: DryRunRingInput, ring_spec: dict[str, Any],
                vms: list[dict[str, Any]], first: bool) -> Any:
    """The ring's compliance section (issue 12; :mod:`activities.compliance`, the core of
    ``GET /api/compliance``): its machines missing Critical / Security patches and each one's last
    assessment age, from ``patchassessmentresources`` as Resource Graph shows them now (this dry
    run's own assessments once propagated), ages against this orchestration's time. The first
    ring's section also lists the machines in no ring at all (it resolves every ring; later rings
    reuse the members resolved above: one paged query, no listing). Never fails the dry run.
    The ring is named by ``ringSpec``; only the first ring's input carries the whole plan."""
    payload = to_payload(RingComplianceInput(
        ring=spec.ring, ring_spec=ring_spec, plan=spec.plan if first else None,
        as_of=iso(context.current_utc_datetime), unassigned=first, members=None if first else vms))
    try:
        answer = yield context.call_activity_with_retry(RING_COMPLIANCE, retries.READ, payload)
    except Exception as exc:  # a dry run reports, it never fails on this read
        answer = {"ring": spec.ring, "error": {"code": "ComplianceUnavailable",
                                                  "message": (str(exc).strip().splitlines() or ["?"])[0][:300]}}
    return dict(answer or {})


def _compliance_counts(section: dict[str, Any]) -> dict[str, Any]:
    """What the rollout's status shows of a ring's compliance section (no machine lists)."""
    if section.get("error") and "machines" not in section:
        return {"error": section["error"]}
    out = {key: section.get(key) for key in ("members", "missingCriticalOrSecurity", "notAssessed", "stale",
                                             "asOf")}
    if isinstance(section.get("unassigned"), dict):
        out["unassigned"] = section["unassigned"].get("count")
    return out


def _has_patch_list(result: dict[str, Any]) -> bool:
    return isinstance(result.get("availablePatches"), list) or isinstance(result.get("patches"), list)


def _patch_lists_from_resource_graph(context: df.DurableOrchestrationContext, vms: list[dict[str, Any]],
                                     results: dict[str, Any], since: str) -> Any:
    """Arc-enabled servers' assessPatches answers only count by classification: their patch
    lists come from Resource Graph (``patchassessmentresources``), which shows them after a lag,
    so read them for all such machines at once, again every :data:`ROWS_POLL` until
    :data:`ROWS_DEADLINE`. Returns notes for the ring's warnings."""
    def waiting() -> list[dict[str, Any]]:
        out = []
        for vm in vms:
            entry = results.get(vm["id"]) or {}
            result = entry.get("result") or {}
            if result and not entry.get("error") and not _has_patch_list(result):
                out.append(vm)
        return out

    pending = waiting()
    deadline = context.current_utc_datetime + ROWS_DEADLINE
    while pending:
        read = yield context.call_activity_with_retry(READ_ASSESSMENTS, retries.READ,
                                                      to_payload(ReadAssessmentsInput(vms=pending, since=since)))
        if (read or {}).get("error"):
            return [f"patch lists of {len(pending)} machine(s) could not be read from Resource Graph "
                    f"({str(read['error'].get('message') or read['error'].get('code'))[:200]})"]
        machines = (read or {}).get("machines") or {}
        for vm in pending:
            row = machines.get(str(vm["id"]).lower())
            if row is not None:
                entry = results[vm["id"]]
                entry["result"] = {**entry["result"], "availablePatches": row.get("available") or [],
                                   "patchSource": "resourceGraph"}
        pending = waiting()
        if not pending or context.current_utc_datetime >= deadline:
            break
        yield context.create_timer(context.current_utc_datetime + ROWS_POLL)
    if pending:
        names_ = ", ".join(sorted(str(vm.get("name")) for vm in pending)[:10])
        return [f"no patch list in Resource Graph for {len(pending)} assessed machine(s) ({names_}): what they "
                "would install is unknown"]
    return []


def _plan_first_ring(context: df.DurableOrchestrationContext, plan: dict[str, Any], own: Ring, vm_count: int,
                     started_at: str) -> Any:
    """Issue 11's planner for Ring 0: can it finish before the next ring's T-40 (less the margin)?
    The next ring's next run comes from its maintenance configuration's window (``plan``: the
    whole plan, for the next ring and the promotion margin)."""
    ring = own.name
    names_ = _ring_names(plan)
    next_ring = names_[names_.index(ring) + 1] if names_.index(ring) + 1 < len(names_) else None
    following = ring_of(ring_spec_from_plan(plan, next_ring), next_ring) if next_ring else None
    start = parse_instant(started_at)
    next_run = None
    warnings: list[str] = []
    configuration = following.configuration_id if following else None
    if next_ring and configuration and following and following.patching == "scheduled":
        try:
            config = yield context.call_activity_with_retry(names.GET_CONFIGURATION, retries.READ,
                                                            to_payload(GetConfigurationInput(
                                                                configuration_id=configuration)))
            occurrence = next_occurrence(parse_window(dict((config or {}).get("window") or {})), start)
            next_run = occurrence.start if occurrence else None
        except Exception as exc:  # a dry run reports, it never fails on this read
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            warnings.append(f"{next_ring}'s schedule could not be read ({why}): "
                            f"whether {ring} finishes before its T-40 is unknown")
    promotion = plan.get("promotion")
    margin = (promotion if isinstance(promotion, dict) else {}).get("t40Margin") or format_duration(DEFAULT_T40_MARGIN)
    estimate = estimate_ring(
        ring, vm_count,
        rate=own.rate,
        health=own.health,
        install_expected=expected_install_duration(parse_duration(own.install.get("maximumDuration") or "PT2H")),
        start=start, next_ring=next_ring, next_run_start=next_run, t40_margin=parse_duration(margin),
        approval_needed=following is not None and following.approval.mode != "none",
    ).to_dict()
    estimate["warnings"] = warnings + estimate["warnings"]
    return estimate
