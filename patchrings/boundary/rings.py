"""Typed inputs and outputs of the ring-level sub-orchestrations (issue 10).

One frozen dataclass per input of ``ring_direct``, ``wave``, ``verify``, ``run_results``,
``ring_gate`` and ``dry_run_ring`` (and their outputs, which callers read field by field),
mirroring the JSON each receives and answers today key for key; :mod:`patchrings.boundary.codec`
turns them into that JSON and back (``to_payload`` / ``from_payload``: camelCase keys, ``None``
optionals absent unless a field says ``keep_none`` because the sender writes the key as ``null``).

The ring, not the plan (issue 10): every input carries ``ring_spec`` (JSON ``ringSpec``, required),
the resolved ring document (``Plan.ring(name).to_dict()``: every setting with the plan's defaults
merged); the whole plan no longer travels. Only the first ring's dry run also gets the plan (it
lists the machines in no ring and plans against the next ring's schedule).

Instants stay the strings the senders write (``YYYY-MM-DDTHH:MM:SSZ``), not ``datetime``, so the
JSON stays byte-compatible. Pure Python: no ``azure`` imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DryRunRingInput",
    "DryRunRingOutput",
    "RingDirectCarry",
    "RingDirectInput",
    "RingDirectOutput",
    "RingGateInput",
    "RingGateOutput",
    "RingGateSlice",
    "RunResultsInput",
    "RunResultsOutput",
    "VerifyCollect",
    "VerifyInput",
    "VerifyLedger",
    "VerifyMembers",
    "VerifyOutput",
    "VerifySummary",
    "WaveInput",
    "WaveMembers",
    "WaveOutput",
]

#: a field whose ``None`` is written as ``null`` (the sender writes the key even when it is empty)
_NULL = {"keep_none": True}


# ---------------------------------------------------------------------------------- ring_direct


@dataclass(frozen=True)
class RingDirectCarry:
    """The state a direct ring hands its next execution when it continues as new (bounded
    history, issue 11): counts, indexes and a few bounded lists, never the ring's VM list.

    ``plan`` is ``plan_ring_waves``' answer (count, wave sizes, slice size, hash: the VMs stay in
    the ledger); ``verdicts`` ``{packed, verdicts: [every verdict that is not a plain pass],
    counts: {"install|health": n}}`` (plain passes counted); ``results`` the install entries the
    manifest reads (Ring 0: non-passing VMs whole, passing ones one per distinct OS / image /
    patch list, each with its ``verdict``); ``sample`` the health sample so far (at most 50
    VmRefs); ``sources`` / ``sourceCount`` the manifest's first sources by id and their number;
    ``skipped`` the VMs named as not started (at most 100) of ``skippedCount``. ``vms``: only an
    older execution's carry (the ring's VMs, with ``verdicts`` packed as indexes into them)."""

    run_started_at: str
    next: int
    learned: dict[str, Any]
    verdicts: dict[str, Any]
    results: list[dict[str, Any]]
    skipped: list[str]
    halted: bool
    vms: list[dict[str, Any]] | None = None
    plan: dict[str, Any] | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    source_count: int = 0
    skipped_count: int = 0
    # wave slices whose members could not be read (issue 11, item 2): ring-level gate notes (at
    # most 100) and the number of VMs in them (never installed: inconclusive, never passed)
    unread: list[dict[str, Any]] | None = None
    unread_count: int | None = None
    #: members that left the ring before their install (issue 11): how many, the first few named
    left_ring_count: int | None = None
    left_ring: list[str] | None = None


@dataclass(frozen=True)
class RingDirectInput:
    """``ring_direct``: install a direct ring wave by wave (sent by the rollout)."""

    ring: str
    rollout_id: str | None = None
    ring_spec: dict[str, Any] = field(kw_only=True)  # JSON ringSpec: the resolved ring
    run_id: str | None = None
    started_at: str | None = None  # the rollout's start: Windows' maxPatchPublishDate for Ring 0
    manifest: dict[str, Any] | None = field(default=None, metadata=_NULL)  # later rings: the pin
    build_manifest: bool | None = None
    vms: list[dict[str, Any]] | None = None  # the ring's members when the caller resolved them
    expected_install_seconds: Any = field(default=None, metadata=_NULL)  # {os: seconds} or seconds
    waves_per_execution: int | None = None
    poll_seconds: int | None = None
    carry: RingDirectCarry | None = None


@dataclass(frozen=True)
class RingDirectOutput:
    """What the rollout reads of a direct ring: a small summary whatever the ring's size."""

    gate: dict[str, Any]
    manifest: dict[str, Any] | None = field(default=None, metadata=_NULL)
    health_sample: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    skipped: int = 0
    budget: dict[str, Any] = field(default_factory=dict)
    halted: bool = False
    install_seconds: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- wave


@dataclass(frozen=True)
class WaveMembers:
    """Where a wave instance's VMs are (issue 11, item 2): slice ``slice`` of wave ``wave`` (the
    wave input's) of the plan ``plan_hash`` that ``plan_ring_waves`` wrote to the ledger for the
    run ``run_id`` (the wave input's); ``count`` VMs (what the plan said: a slice the wave cannot
    read is that many VMs never installed)."""

    plan_hash: str
    slice: int
    count: int


@dataclass(frozen=True)
class WaveInput:
    """``wave``: start installPatches on a slice of a wave's VMs, poll them, verify (sent by ring_direct).

    ``members`` names the slice in the ledger (the wave reads it with ``read_wave_members``): what
    ring_direct sends, so no VM passes through the ring's history (issue 11). ``vms`` is the
    older form, the VMs themselves: a wave started by a ring given its VMs (``RingDirectInput.vms``,
    tests) or before the change (in flight across a deploy); ``members`` wins when both are set."""

    rollout_id: str | None = None
    ring_spec: dict[str, Any] = field(kw_only=True)  # JSON ringSpec: the resolved ring
    ring: str | None = None
    run_id: str | None = None
    wave: int | None = None
    vms: list[dict[str, Any]] | None = None
    members: WaveMembers | None = None
    parameters: dict[str, Any] | None = None  # installPatches parameters per OS
    poll_seconds: int | None = None
    run_started_at: str | None = None
    deadline: str | None = None
    expected_install_seconds: Any = field(default=None, metadata=_NULL)  # {os: seconds} or seconds
    keep_results: bool | None = None  # absent: true
    # ARM pacing (issue 11): how many wave instances start installs side by side (they share the
    # subscription's buckets), and an explicit burst size / pause overriding the domain's plan
    slices: int | None = None
    start_burst: int | None = None
    start_pause_seconds: int | None = None
    # What the ring asks back besides verdicts (issue 11, bounded history): at most ``sample_size``
    # passing VMs for its health sample (spread_order's first), at most ``sources_wanted`` ids of
    # the manifest's sources (the first by id); absent: all of them (an older caller)
    sample_size: int | None = None
    sources_wanted: int | None = None


@dataclass(frozen=True)
class WaveOutput:
    """A wave's answer: verdicts packed (``verdicts.pack_verdicts``), install results when kept,
    the longest install per OS seen done."""

    packed: bool
    verdicts: list[dict[str, Any]]
    passed: dict[str, list[int]]
    results: list[dict[str, Any]] = field(default_factory=list)
    install_seconds: dict[str, float] = field(default_factory=dict)
    # issue 11, item 2 (the ring does not hold the slice's VMs): how many VMs the slice held, the
    # passing ones for the ring's health sample, the manifest's sources (first by id) and their
    # number; ``unread`` ``{count, error}`` when the slice could not be read (nothing installed)
    count: int | None = None
    sample: list[dict[str, Any]] | None = None
    sources: list[str] | None = None
    source_count: int | None = None
    unread: dict[str, Any] | None = None
    #: the slice's members that left the ring before their install (issue 11): how many, the first
    #: few by name (absent: the ring infers the count from ``count`` and the verdicts)
    left_ring_count: int | None = None
    left_ring: list[str] | None = None


# ---------------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class VerifyLedger:
    """Where verify writes its per-VM rows itself (run_results' chunks)."""

    run_id: str | None = None


@dataclass(frozen=True)
class VerifyMembers:
    """Where a chunk of a scheduled ring reads its VMs (issue 11, bounded history): one slice of
    the members ``plan_ring_waves`` kept in the ledger under ``runId`` (``count``: its size)."""

    run_id: str
    plan_hash: str
    wave: int = 0
    slice: int = 0
    count: int | None = None


@dataclass(frozen=True)
class VerifyCollect:
    """A chunk collects its own VMs' results of a scheduled run (Resource Graph, re-queries,
    instance-view fallback) instead of receiving ``installs``."""

    correlation_id: str
    since: str | None = None
    # run_results staged the run's rows (this many ring-wide queries): read this slice's from the
    # ledger first; the re-query schedule goes on from there
    staged: int | None = None
    #: VMs the ring's gate did not open because they had left the ring (issue 11; ids, at most 25):
    #: not collected, not verified, not judged (``left-ring``)
    left: list[str] | None = None


@dataclass(frozen=True)
class VerifyInput:
    """``verify``: the health phases and verdicts of a set of VMs after their installs
    (sent by wave and run_results)."""

    rollout_id: str | None = None
    ring_spec: dict[str, Any] = field(kw_only=True)  # JSON ringSpec: the resolved ring
    ring: str | None = None
    vms: list[dict[str, Any]] | None = None
    installs: list[dict[str, Any]] | None = None
    decide: bool | None = None
    baselines: dict[str, Any] | None = None  # {vm id: health sample before the install}
    start_delay_seconds: int | None = None
    ledger: VerifyLedger | None = None
    pack: bool | None = None
    members: VerifyMembers | None = None  # read the VMs from the ledger (vms then absent)
    collect: VerifyCollect | None = None  # collect the installs here (installs then absent)
    summary: bool | None = None  # answer a VerifySummary, no per-VM verdicts
    sample_size: int | None = None  # the summary's health sample: at most this many VMs
    named_size: int | None = None  # the summary's named verdicts: at most this many (absent: MAX_NAMED)


@dataclass(frozen=True)
class VerifySummary:
    """A chunk's answer to run_results (issue 11): counts and the gate's inputs, bounded.

    ``named``: the first verdicts that are not a plain pass (whole); ``omitted``: the rest of
    them counted by ``outcome|install|health``; ``passed``: plain passes counted by
    ``install|health``; ``counts``: ``count_verdicts`` of every verdict; ``healthSample``: up to
    ``HEALTH_SAMPLE`` passing VmRefs; ``argPending`` / ``argQueries`` / ``argError``: VMs still
    without a Resource Graph row after ``argQueries`` queries (or why Resource Graph could not
    be read); ``notes``: chunk-level findings (members unreadable...), each forces inconclusive."""

    vms: int = 0
    named: list[dict[str, Any]] = field(default_factory=list)
    omitted: dict[str, int] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    health_sample: list[dict[str, Any]] = field(default_factory=list)
    arg_pending: int = 0
    arg_queries: int = 0
    arg_error: str | None = None
    notes: list[dict[str, str]] = field(default_factory=list)
    #: VMs the gate did not retag (``gateLeft``) that the run patched all the same: judged, not left
    left_judged: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VerifyOutput:
    """Verify's answer: verdicts (packed when asked), the gate when asked to decide."""

    verdicts: list[dict[str, Any]]
    gate: dict[str, Any] | None = field(default=None, metadata=_NULL)
    ledger_error: str | None = None
    packed: bool | None = None
    passed: dict[str, list[int]] | None = None
    summary: VerifySummary | None = None


# ---------------------------------------------------------------------------------- run_results


@dataclass(frozen=True)
class RunResultsInput:
    """``run_results``: a scheduled run's per-VM results, verification and gate (sent by the rollout)."""

    ring: str
    correlation_id: str
    rollout_id: str | None = None
    ring_spec: dict[str, Any] = field(kw_only=True)  # JSON ringSpec: the resolved ring
    since: str | None = None
    #: the opening gate's ``leftRing`` VM ids (at most 25) and ``leftRingCount`` (issue 11): VMs it
    #: did not retag into the run's dynamic scope, so the run did not patch them
    gate_left: list[str] | None = None
    gate_left_count: int | None = None


@dataclass(frozen=True)
class RunResultsOutput:
    gate: dict[str, Any]
    health_sample: list[dict[str, Any]]
    counts: dict[str, Any]


# ---------------------------------------------------------------------------------- ring_gate


@dataclass(frozen=True)
class RingGateSlice:
    """One slice of a ring's members (``plan_ring_waves`` in the ledger under ``runId``) that a
    ``ring_gate`` instance retags (``value``; absent: read for schedule issues only), issue 11."""

    run_id: str
    plan_hash: str
    wave: int = 0
    slice: int = 0
    value: str | None = None
    issues: bool | None = None  # report the slice's scheduleIssue VMs


@dataclass(frozen=True)
class RingGateInput:
    """``ring_gate``: open or close one ring's gate (sent by the rollout), or -- with ``slice``
    -- one slice of it (sent by ring_gate itself)."""

    ring: str
    ring_spec: dict[str, Any] = field(kw_only=True)  # JSON ringSpec: the resolved ring
    opening: bool | None = field(default=None, metadata={"key": "open"})
    rollout_id: str | None = None
    slice: RingGateSlice | None = None


@dataclass(frozen=True)
class RingGateOutput:
    mode: str
    members: int | None = field(default=None, metadata=_NULL)
    value: str | None = field(default=None, metadata=_NULL)
    changed: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    schedule_issues: list[dict[str, Any]] | None = None
    schedule_issue_count: int | None = None
    failed_count: int | None = None  # a slice's failed VMs (``failed`` names the first few)
    #: retag only (issue 11): VMs not written because the live read found them out of the ring
    #: (``[{vm, reason}]``, the first 25) and how many
    left_ring: list[dict[str, Any]] | None = None
    left_ring_count: int | None = None


# ---------------------------------------------------------------------------------- dry_run


@dataclass(frozen=True)
class DryRunRingInput:
    """``dry_run_ring``: list what a ring would install, installing nothing (sent by the rollout).

    ``plan`` is needed for the first ring only (its compliance section lists the machines in no
    ring; its planner reads the next ring's schedule and the promotion margin)."""

    ring: str
    rollout_id: str | None = None
    plan: dict[str, Any] | None = None
    ring_spec: dict[str, Any] = field(kw_only=True)  # JSON ringSpec: the resolved ring
    started_at: str | None = None
    manifest: dict[str, Any] | None = None


@dataclass(frozen=True)
class DryRunRingOutput:
    ring: str
    patching: str
    basis: str
    cutoff: str | None = field(default=None, metadata=_NULL)
    vms: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    planner: dict[str, Any] | None = field(default=None, metadata=_NULL)
    warnings: list[Any] = field(default_factory=list)
    compliance: dict[str, Any] = field(default_factory=dict)
