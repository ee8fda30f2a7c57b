"""Typed inputs (and the outputs orchestrators read) of the activities (issue 10).

One frozen dataclass per activity input, named after the activity (``orchestrators/names.py``),
mirroring the JSON each entry point reads today key for key (the contract in
docs/architecture.md, "Activity contract"); :mod:`patchrings.boundary.codec` turns them into that
JSON and back: camelCase keys, ``None`` optionals absent unless a field says ``keep_none`` (the
sender writes the key even when it is empty, e.g. ``runStartedAt: null``).

Open inputs: the ledger's record activities store every key they do not name as a column, and
``notify`` publishes its whole input, so their dataclasses have one *rest* field
(``metadata={"rest": True}``, see the codec) holding the other keys. A VM record (``VmRef``)
stays a dict: it grows additive keys (``kind``, ``scheduleIssue``, ``agentStatus``...) that must
ride along unchanged.

The ring, not the plan: ``resolve_ring_members`` and ``set_ring_assignment`` take ``ring_spec``
(JSON ``ringSpec``), the resolved ring document (``Plan.ring(name).to_dict()``, every setting
with the plan's defaults merged), instead of the whole plan. Pure Python: no ``azure`` imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "CancelRunInput",
    "CheckHealthBatchInput",
    "CheckHealthBatchOutput",
    "CheckHealthInput",
    "CollectRunResultsArgInput",
    "CollectRunResultsInput",
    "GetConfigurationInput",
    "HealthCheck",
    "LedgerCheckDecisionInput",
    "LedgerReadGateInput",
    "LedgerReadQuarantineInput",
    "LedgerRecordApprovalInput",
    "LedgerRecordEventInput",
    "LedgerRecordQuarantineInput",
    "LedgerRecordRingRunInput",
    "LedgerRecordRolloutInput",
    "LedgerRecordVmResultsInput",
    "LoadPlanInput",
    "ManifestDiffInput",
    "NotifyInput",
    "PinManifestInput",
    "PlanRingWavesInput",
    "PlanRingWavesOutput",
    "PlannedSlice",
    "PollAssessInput",
    "PollInstallInput",
    "PollOutput",
    "ReadAssessmentsInput",
    "ReadWaveMembersInput",
    "ReadWaveMembersOutput",
    "ResolveMembersInput",
    "ResolveMembersOutput",
    "RetagVmsInput",
    "RingComplianceInput",
    "RingCoverageInput",
    "RingCoverageOutput",
    "SetRingAssignmentInput",
    "StartAssessInput",
    "StartInstallInput",
    "StartOutput",
]

T = TypeVar("T")

#: a field whose ``None`` is written as ``null`` (the sender writes the key even when it is empty)
_NULL: Mapping[str, Any] = {"keep_none": True}
#: the field that holds every key the dataclass does not name (written back at the top level);
#: its own JSON key is one no payload uses, so the codec never fills it
_REST: Mapping[str, Any] = {"rest": True}

#: A VM / Arc machine record as ``resolve_ring_members`` answers it (``VmRef``): kept a dict.
VmRef = dict[str, Any]


# ---------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class LoadPlanInput:
    """``load_plan``: ``{}`` (the deployed plan) or ``{plan}`` (a plan carried in the rollout's input)."""

    plan: Any = None
    rollout_id: str | None = None


# ---------------------------------------------------------------------------------- compute


@dataclass(frozen=True)
class ResolveMembersInput:
    """``resolve_ring_members``: the ring's members, named by ``ringSpec`` (its resolved document;
    never the whole plan, so nothing re-validates a plan to read one ring). ``countOnly``: answer
    ``{vms: [], count}`` (issue 11: the rollout's planner needs Ring 0's size, not its VMs).
    ``includeHold`` is carried, not read (the tag selector always includes the hold value)."""

    ring: str
    ring_spec: dict[str, Any] = field(kw_only=True)
    rollout_id: str | None = None
    include_hold: bool | None = None
    count_only: bool | None = None


@dataclass(frozen=True)
class ResolveMembersOutput:
    """``{"vms": [VmRef...]}``, with ``error`` when the ring names nowhere to look; ``count``
    (and no VM) when asked ``countOnly``."""

    vms: list[VmRef]
    error: dict[str, Any] | None = None
    count: int | None = None


@dataclass(frozen=True)
class PlanRingWavesInput:
    """``plan_ring_waves`` (issue 11, bounded history): resolve a direct ring's members, plan its
    waves (the ring's ``rate``: ``plan_waves`` / ``spread_order``) and write them to the ledger
    in slices of at most ``sliceSize`` VMs, once per ``runId`` (a retry answers the first plan)."""

    ring: str
    run_id: str
    ring_spec: dict[str, Any] = field(kw_only=True)
    slice_size: int = 100
    rollout_id: str | None = None


@dataclass(frozen=True)
class PlanRingWavesOutput:
    """Counts only: ``{count, waves: [wave sizes], sliceSize, byOs: {os: n}, hash}`` (+ ``error``
    when the ring names nowhere to look); the VMs stay in the ledger (``read_wave_members``)."""

    count: int
    waves: list[int]
    slice_size: int
    hash: str
    by_os: dict[str, int] = field(default_factory=dict)
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class PlannedSlice:
    """One slice of one wave that ``plan_ring_waves`` planned into the ledger: the address every
    per-slice read uses (its members, its staged results)."""

    run_id: str
    plan_hash: str
    wave: int
    slice: int = 0
    rollout_id: str | None = None
    ring: str | None = None


@dataclass(frozen=True)
class ReadWaveMembersInput(PlannedSlice):
    """``read_wave_members``: the VmRefs of one slice (at most ``sliceSize``) of one planned wave."""


@dataclass(frozen=True)
class ReadWaveMembersOutput:
    vms: list[VmRef]


@dataclass(frozen=True)
class RingCoverageInput:
    """``ring_coverage`` (issue 11): the ring's machines whose OS / image family Ring 0's manifest
    did not cover, answered as counts and the first few, so the rollout never holds the ring's
    member list (the ring's ``gate.allowUncoveredOs`` lets every family through)."""

    ring: str
    ring_spec: dict[str, Any] = field(kw_only=True)
    manifest: dict[str, Any] | None = field(default=None, metadata=_NULL)
    rollout_id: str | None = None


@dataclass(frozen=True)
class RingCoverageOutput:
    """``{members, refusedCount, families: [uncovered families, sorted], refused: [{vm, family,
    reason}] (the first 100)}``."""

    members: int = 0
    refused_count: int = 0
    families: list[str] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StartInstallInput:
    """``start_install``: installPatches on one machine, at most once per (run, machine)."""

    vm: VmRef
    run_id: str
    rollout_id: str | None = None
    ring: str | None = None
    run_started_at: str | None = field(default=None, metadata=_NULL)  # the wave writes it, maybe null
    now: str | None = None
    parameters: dict[str, Any] | None = None
    probes: list[Any] | None = None
    resend: bool | None = None
    #: the ring's member rule (its ``members`` document, ``Ring.members.to_dict()``): the pre-check
    #: re-applies it to the live machine, which is not installed when it has left the ring (issue 11)
    member_rule: dict[str, Any] | None = None


@dataclass(frozen=True)
class StartOutput:
    """``start_install`` / ``start_assess``: ``{state, token, error}`` (+ ``uncertain``, ``baseline``)."""

    state: str
    token: str | None = field(default=None, metadata=_NULL)
    error: dict[str, Any] | None = field(default=None, metadata=_NULL)
    uncertain: bool | None = None
    baseline: dict[str, Any] | None = None


@dataclass(frozen=True)
class PollInstallInput:
    """``poll_install``: one status check of a machine's install."""

    vm: VmRef
    run_id: str | None = field(default=None, metadata=_NULL)
    run_started_at: str | None = field(default=None, metadata=_NULL)
    now: str | None = None
    token: str | None = field(default=None, metadata=_NULL)
    rollout_id: str | None = None
    ring: str | None = None


@dataclass(frozen=True)
class PollOutput:
    """``poll_install`` / ``poll_assess``: ``{done, result, error}`` (+ ``resend``)."""

    done: bool
    result: dict[str, Any] | None = field(default=None, metadata=_NULL)
    resend: bool | None = None  # before ``error``: the key order ``poll_install`` has always written
    error: dict[str, Any] | None = field(default=None, metadata=_NULL)


@dataclass(frozen=True)
class StartAssessInput:
    """``start_assess``: assessPatches on one machine (read-only, no once-only bookkeeping)."""

    vm: VmRef
    rollout_id: str | None = None
    ring: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class PollAssessInput:
    """``poll_assess``: one status check of an assessment."""

    vm: VmRef
    token: str
    run_id: str | None = None
    rollout_id: str | None = None
    ring: str | None = None


@dataclass(frozen=True)
class CheckHealthInput:
    """``check_vm_health``: one health sample of a machine, with the ring's HTTP probes."""

    vm: VmRef
    probes: list[Any] | None = None
    rollout_id: str | None = None
    ring: str | None = None


@dataclass(frozen=True)
class HealthCheck:
    """One machine of ``check_vm_health_batch``: ``full`` reads its instance view (absent: true)."""

    vm: VmRef
    full: bool | None = True


@dataclass(frozen=True)
class CheckHealthBatchInput:
    """``check_vm_health_batch``: ``{checks: [{vm, full}], probes}``."""

    checks: list[HealthCheck] = field(default_factory=list)
    probes: list[Any] | None = None
    rollout_id: str | None = None
    ring: str | None = None


@dataclass(frozen=True)
class CheckHealthBatchOutput:
    samples: list[dict[str, Any]]


# ---------------------------------------------------------------------------------- tags


@dataclass(frozen=True)
class RetagVmsInput:
    """``retag_vms``: merge-write ``tag=value`` on machines (paced, budgeted)."""

    tag: str
    value: str
    vm_ids: list[str] | None = None
    budget_seconds: float | None = None
    rollout_id: str | None = None
    ring: str | None = None
    #: the ring's member rule (``Ring.members.to_dict()``): when present, each machine is read live
    #: first and written only while the rule still holds it (``gates.gate_write_refusal``; issue 11:
    #: the gate's members come from Resource Graph, which lags). Absent: write without a read.
    member_rule: dict[str, Any] | None = None
    #: with ``member_rule``: True when ``value`` opens the ring, False when it closes it (parks the
    #: machine at the hold value; only machines still at the open value are written)
    opening: bool | None = None


# ---------------------------------------------------------------------------------- maintenance


@dataclass(frozen=True)
class GetConfigurationInput:
    """``get_configuration``: a maintenance configuration's window and install parameters."""

    configuration_id: str
    rollout_id: str | None = None


@dataclass(frozen=True)
class PinManifestInput:
    """``pin_manifest``: write the manifest's KBs / package masks into a configuration."""

    configuration_id: str
    manifest: dict[str, Any]
    rollout_id: str | None = None


@dataclass(frozen=True)
class SetRingAssignmentInput:
    """``set_ring_assignment``: create / delete a ring's configuration assignment(s); the ring is
    named by ``ringSpec`` (its resolved document)."""

    ring: str
    ring_spec: dict[str, Any] = field(kw_only=True)
    present: bool | None = None  # absent: true
    vm_ids: list[str] | None = None
    rollout_id: str | None = None


@dataclass(frozen=True)
class CancelRunInput:
    """``cancel_run``: cancel a scheduled run (``report`` answers a transient failure)."""

    correlation_id: str | None = None
    report: bool | None = None
    budget_seconds: float | None = None
    rollout_id: str | None = None


@dataclass(frozen=True)
class CollectRunResultsInput:
    """``collect_run_results``: a scheduled run's per-VM results from instance views (fallback)."""

    correlation_id: str
    vms: list[VmRef] | None = None
    since: str | None = field(default=None, metadata=_NULL)
    rollout_id: str | None = None
    ring: str | None = None


@dataclass(frozen=True)
class CollectRunResultsArgInput:
    """``collect_run_results_arg``: a scheduled run's per-VM results from Resource Graph."""

    correlation_id: str
    vms: list[VmRef] | None = None
    since: str | None = field(default=None, metadata=_NULL)
    rollout_id: str | None = None
    ring: str | None = None


# ---------------------------------------------------------------------------------- manifest_diff


@dataclass(frozen=True)
class ManifestDiffInput:
    """``manifest_diff``: later rings' latest assessments against Ring 0's manifest."""

    plan: dict[str, Any] | None = None  # required: the core answers RequestInvalid without it
    from_ring: str | None = None  # required, likewise
    manifest: dict[str, Any] | None = field(default=None, metadata=_NULL)
    now: str | None = None
    max_age_hours: Any = None  # hours (a number); a bad value is the core's RequestInvalid
    rollout_id: str | None = None


@dataclass(frozen=True)
class ReadAssessmentsInput:
    """``read_assessments``: the latest assessment of each machine from Resource Graph."""

    vms: list[Any] | None = None
    since: str | None = None
    rollout_id: str | None = None
    ring: str | None = None


@dataclass(frozen=True)
class RingComplianceInput:
    """``ring_compliance``: a ring's machines missing Critical / Security patches. The whole
    ``plan`` is needed for the first ring (``unassigned``) or when ``members`` are not given."""

    ring: str | None = None
    ring_spec: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    as_of: str | None = None
    stale_after_hours: float | None = None
    unassigned: bool | None = None
    members: list[VmRef] | None = None
    rollout_id: str | None = None


# ---------------------------------------------------------------------------------- ledger


@dataclass(frozen=True)
class LedgerRecordRolloutInput:
    """``ledger_record_rollout``: ``{rolloutId, ...}``; every other key is a column."""

    rollout_id: str
    columns: dict[str, Any] = field(default_factory=dict, metadata=_REST)


@dataclass(frozen=True)
class LedgerRecordRingRunInput:
    """``ledger_record_ring_run``: ``{rolloutId, ring, runId, ...}``; every other key is a column."""

    rollout_id: str
    ring: str
    run_id: str
    columns: dict[str, Any] = field(default_factory=dict, metadata=_REST)


@dataclass(frozen=True)
class LedgerRecordVmResultsInput:
    """``ledger_record_vm_results``: one row per VM (its verdict in it)."""

    rollout_id: str
    ring: str
    run_id: str | None = field(default=None, metadata=_NULL)
    results: list[dict[str, Any]] | None = None
    verdicts: list[Any] | None = None
    # results marked ``patchesStaged`` take their patch list from this staged slice (issue 11:
    # a verify chunk's history carries the patch lists once, not twice)
    staged: ReadStagedResultsInput | None = None


@dataclass(frozen=True)
class LedgerRecordApprovalInput:
    """``ledger_record_approval``: ``{rolloutId, decisionId?, ...}``; every other key is a column
    (without ``decisionId`` the row id is a hash of the whole input)."""

    rollout_id: str
    decision_id: str | None = None
    columns: dict[str, Any] = field(default_factory=dict, metadata=_REST)


@dataclass(frozen=True)
class LedgerRecordEventInput:
    """``ledger_record_event``: ``{configurationId, eventType, eventId, ...}``; the rest are columns."""

    configuration_id: str
    event_type: str
    event_id: str
    columns: dict[str, Any] = field(default_factory=dict, metadata=_REST)


@dataclass(frozen=True)
class LedgerReadGateInput:
    """``ledger_read_gate``: the guard's ``{correlationId, ring?, configurationId?}`` or the
    approval bound to ``{rolloutId, ring, manifestHash?}``."""

    correlation_id: str | None = None
    configuration_id: str | None = None
    ring: str | None = None
    rollout_id: str | None = None
    manifest_hash: str | None = None


@dataclass(frozen=True)
class LedgerCheckDecisionInput:
    """``ledger_check_decision``: does a raised decision match what the API recorded?"""

    rollout_id: str
    kind: str | None = None  # absent: "approval"
    event: Any = None
    at: str | None = None


@dataclass(frozen=True)
class LedgerRecordQuarantineInput:
    """``ledger_record_quarantine``: what a failed gate blames (the rollout writes every key)."""

    rollout_id: str
    ring: str
    plan_name: str | None = None
    run_id: str | None = field(default=None, metadata=_NULL)
    plan_hash: str | None = field(default=None, metadata=_NULL)
    manifest_hash: str | None = field(default=None, metadata=_NULL)
    manifest: dict[str, Any] | None = field(default=None, metadata=_NULL)
    reason: str | None = None
    at: str | None = None


@dataclass(frozen=True)
class LedgerReadQuarantineInput:
    """``ledger_read_quarantine``: release what a person asked to, then the active entries."""

    plan_name: str | None = None
    release: list[Any] | None = None
    by: str | None = None
    at: str | None = None
    reason: str | None = None
    rollout_id: str | None = None


# ---------------------------------------------------------------------------------- notify


@dataclass(frozen=True)
class NotifyInput:
    """``notify`` (contract NOTIFY): ``{kind, id, rolloutId, ring, severity, message, data, time}``;
    older shapes (``{kind, ...}``) still accepted: every key is logged and published."""

    kind: str | None = None
    id: str | None = None
    rollout_id: str | None = None
    ring: str | None = None  # null for a rollout-wide notice: kept by ``rest``
    severity: str | None = None
    message: str | None = None
    data: dict[str, Any] | None = None
    time: str | None = None
    rest: dict[str, Any] = field(default_factory=dict, metadata=_REST)


# ---------------------------------------------------------------------------------- staged run results (issue 11)


@dataclass(frozen=True)
class StageRunResultsInput:
    """``stage_run_results``: a scheduled run's per-VM Resource Graph results, queried once for
    the whole ring (paged, 1,000 rows per page) and written to the ledger per planned slice of
    ``plan_ring_waves`` (``runId`` / ``planHash``), where each verify chunk reads its own."""

    correlation_id: str
    run_id: str
    plan_hash: str
    since: str | None = field(default=None, metadata=_NULL)
    rollout_id: str | None = None
    ring: str | None = None
    restage: bool | None = None  # query again for the slices staged with rows missing (Resource Graph lag)


@dataclass(frozen=True)
class StageRunResultsOutput:
    """``complete``: every planned slice is staged (and, with ``restage``, every slice that had
    rows missing staged again); else call again: it resumes where it stopped. ``slices`` planned /
    ``staged`` so far; ``pending``: staged VMs without a finished row; ``done``: VMs with a
    finished row staged by this call; ``queries`` / ``pages``: Resource Graph requests of this call."""

    complete: bool
    slices: int = 0
    staged: int = 0
    pending: int = 0
    done: int = 0
    queries: int = 0
    pages: int = 0


@dataclass(frozen=True)
class ReadStagedResultsInput(PlannedSlice):
    """``read_staged_results``: one planned slice's staged entries (``None`` when not staged)."""


@dataclass(frozen=True)
class ReadStagedResultsOutput:
    results: list[dict[str, Any]] | None = field(default=None, metadata=_NULL)
