"""Rate control for direct rings: how many VMs patch at once and how many may fail.

Semantics follow AWS Systems Manager (``MaxConcurrency`` / ``MaxErrors``, each a count or a
percentage) with Google VM Manager's zone awareness:

* ``maxConcurrency`` percentages round **up** and never resolve below 1, so ``"10%"`` of 3 VMs is
  1 VM per wave, not 0 (GCP rounds disruption-budget percentages up too).
* ``maxErrors`` percentages round **down** (SSM: ``10%`` of 50 targets allows 5 errors and stops on
  the sixth). The budget is *exceeded* when ``errors > maxErrors``; once exceeded no new install
  starts, in-flight installs finish (SSM). ``maxErrors: 0`` therefore stops after the first failure.
* Waves are spread across availability zones, then availability sets, round-robin, so one wave
  never takes a whole zone or set down when others are available. Order is deterministic (sorted by
  lower-cased id) because orchestrators replay.
* ``waveSchedule`` (optional, default ``"equal"``): ``"equal"`` waves are all ``maxConcurrency``
  VMs (the last one what is left); ``"geometric"`` waves grow 1, 2, 4, 8, ... up to
  ``maxConcurrency`` and stay there -- a bad patch meets one VM first (the blast radius of the
  first wave is 1), while a healthy ring still reaches full speed after log2(maxConcurrency)
  waves: a 40-VM ring at 5 takes 10 waves (1, 2, 4, 5, ...) instead of 8. Spreading is over the
  whole ring's order, so each wave still takes the next VMs of every failure domain in turn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

ThresholdKind = Literal["concurrency", "errors"]
WaveSchedule = Literal["equal", "geometric"]
WAVE_SCHEDULES: tuple[WaveSchedule, ...] = ("equal", "geometric")

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class Threshold:
    """A count (``3``) or a percentage (``"25%"``) of a ring's VMs."""

    value: float
    percent: bool
    kind: ThresholdKind = "concurrency"

    @classmethod
    def parse(cls, raw: int | str | Threshold, kind: ThresholdKind = "concurrency") -> Threshold:
        """Accept ``3``, ``"3"`` or ``"25%"``; raise ``ValueError`` with what is allowed."""
        if isinstance(raw, Threshold):
            return cls(raw.value, raw.percent, kind)
        minimum = 1 if kind == "concurrency" else 0
        allowed = f'must be a count >= {minimum} such as 3 or a percentage {minimum}-100% such as "25%"'
        if isinstance(raw, bool):
            raise ValueError(allowed)
        if isinstance(raw, int):
            if raw < minimum:
                raise ValueError(allowed)
            return cls(float(raw), False, kind)
        if isinstance(raw, str):
            m = _PERCENT.match(raw)
            if m:
                pct = float(m.group(1))
                if pct < minimum or pct > 100 or (kind == "concurrency" and pct <= 0):
                    raise ValueError(allowed)
                return cls(pct, True, kind)
            if raw.strip().isdigit():
                return cls.parse(int(raw.strip()), kind)
        raise ValueError(allowed)

    def resolve(self, total: int) -> int:
        """The absolute number for a ring of ``total`` VMs (see module docstring for rounding)."""
        if not self.percent:
            n = int(self.value)
        elif self.kind == "concurrency":
            n = math.ceil(total * self.value / 100 - 1e-9)
        else:
            n = math.floor(total * self.value / 100 + 1e-9)
        if self.kind == "concurrency":
            return max(1, n)
        return max(0, n)

    def to_json(self) -> int | str:
        """The plan form: ``3`` or ``"25%"``."""
        if self.percent:
            v = int(self.value) if self.value == int(self.value) else self.value
            return f"{v}%"
        return int(self.value)

    def __str__(self) -> str:
        return str(self.to_json())


@dataclass(frozen=True)
class RateControl:
    """A ring's ``rate`` block."""

    max_concurrency: Threshold
    max_errors: Threshold
    wave_schedule: WaveSchedule = "equal"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RateControl:
        schedule = doc.get("waveSchedule", "equal")
        if schedule not in WAVE_SCHEDULES:
            raise ValueError(f"waveSchedule must be one of {', '.join(WAVE_SCHEDULES)}, got {schedule!r}")
        return cls(
            Threshold.parse(doc.get("maxConcurrency", 1), "concurrency"),
            Threshold.parse(doc.get("maxErrors", 0), "errors"),
            schedule,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"maxConcurrency": self.max_concurrency.to_json(),
                               "maxErrors": self.max_errors.to_json()}
        if self.wave_schedule != "equal":  # only when set, so plans without it keep their hash
            out["waveSchedule"] = self.wave_schedule
        return out

    def waves(self, vms: Sequence[Mapping[str, Any] | str]) -> list[list[str]]:
        """The ring's waves under this rate control (:func:`plan_waves`)."""
        return plan_waves(vms, self.concurrency(len(vms)), self.wave_schedule) if vms else []

    def concurrency(self, total: int) -> int:
        return self.max_concurrency.resolve(total)

    def error_budget(self, total: int) -> int:
        return self.max_errors.resolve(total)


def _domain_key(vm: Mapping[str, Any]) -> tuple[str, str]:
    """The failure domain of a VM: its zone, else its availability set, else none."""
    zone = vm.get("zone")
    if zone not in (None, ""):
        return ("zone", str(zone).lower())
    avset = vm.get("availabilitySet")
    if avset:
        return ("availabilitySet", str(avset).lower())
    return ("none", "")


def _vm_id(vm: Mapping[str, Any] | str) -> str:
    if isinstance(vm, str):
        return vm
    vid = vm.get("id") or vm.get("name")
    if not vid:
        raise ValueError(f"VM reference without id: {dict(vm)!r}")
    return str(vid)


def spread_order(vms: Iterable[Mapping[str, Any] | str]) -> list[str]:
    """All VM ids interleaved across failure domains, round-robin, deterministically.

    Domains are visited in sorted order; inside a domain VMs are sorted by lower-cased id. VMs
    without zone or availability set form one domain of their own.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    seen: set[str] = set()
    for vm in vms:
        vid = _vm_id(vm)
        if vid.lower() in seen:
            continue
        seen.add(vid.lower())
        key = ("none", "") if isinstance(vm, str) else _domain_key(vm)
        groups.setdefault(key, []).append(vid)
    queues = [sorted(groups[k], key=str.lower) for k in sorted(groups)]
    order: list[str] = []
    depth = 0
    while True:
        added = False
        for q in queues:
            if depth < len(q):
                order.append(q[depth])
                added = True
        if not added:
            return order
        depth += 1


def wave_sizes(total: int, max_concurrency: int, schedule: WaveSchedule = "equal") -> list[int]:
    """The sizes of the waves that cover ``total`` VMs (sum == total).

    ``equal``: ``max_concurrency`` each, the last one the rest. ``geometric``: 1, 2, 4, ... capped
    at ``max_concurrency``, the last one the rest.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    if schedule not in WAVE_SCHEDULES:
        raise ValueError(f"wave schedule must be one of {', '.join(WAVE_SCHEDULES)}, got {schedule!r}")
    sizes: list[int] = []
    left = max(total, 0)
    size = 1 if schedule == "geometric" else max_concurrency
    while left > 0:
        take = min(size, left)
        sizes.append(take)
        left -= take
        size = min(size * 2, max_concurrency)
    return sizes


def plan_waves(vms: Sequence[Mapping[str, Any] | str], max_concurrency: int | Threshold,
               schedule: WaveSchedule = "equal") -> list[list[str]]:
    """Split a ring into waves of at most ``max_concurrency`` VM ids, each spread across domains.

    ``max_concurrency`` may be an already-resolved int or a :class:`Threshold` resolved against
    ``len(vms)``; ``schedule`` sets the wave sizes (:func:`wave_sizes`). Duplicate ids
    (case-insensitive) are dropped.
    """
    size = max_concurrency.resolve(len(vms)) if isinstance(max_concurrency, Threshold) else max_concurrency
    order = spread_order(vms)
    waves: list[list[str]] = []
    start = 0
    for n in wave_sizes(len(order), size, schedule):
        waves.append(order[start : start + n])
        start += n
    return waves


@dataclass
class ErrorBudget:
    """Counts install/health failures in a ring run and says when to stop starting new installs.

    Exceeded when ``len(failed) > max_errors`` (SSM semantics: with ``maxErrors: 3`` the fourth
    error stops the run). Recording the same VM twice counts once, so replayed or retried results
    never double-count.

    :meth:`record` is O(1): the lower-cased ids already recorded are kept in a set next to the two
    lists (it used to scan both lists on every call, which inside a replayed orchestrator made a
    ring of n VMs cost O(n^2) on every replay). The serialised form is unchanged; change the lists
    only through :meth:`record` (the set is built from them once, when the budget is created).
    """

    max_errors: int
    failed: list[str] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._seen = {v.lower() for v in self.failed} | {v.lower() for v in self.succeeded}

    @classmethod
    def for_ring(cls, rate: RateControl, total: int) -> ErrorBudget:
        return cls(max_errors=rate.error_budget(total))

    def record(self, vm_id: str, ok: bool) -> None:
        key = vm_id.lower()
        if key in self._seen:
            return
        self._seen.add(key)
        (self.succeeded if ok else self.failed).append(vm_id)

    @property
    def errors(self) -> int:
        return len(self.failed)

    @property
    def exceeded(self) -> bool:
        return self.errors > self.max_errors

    def may_start_more(self) -> bool:
        """False once the budget is exceeded: no new installs (in-flight ones may finish)."""
        return not self.exceeded

    @property
    def remaining(self) -> int:
        """How many more failures are tolerated before the budget is exceeded."""
        return max(0, self.max_errors - self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "maxErrors": self.max_errors,
            "failed": list(self.failed),
            "succeeded": list(self.succeeded),
            "exceeded": self.exceeded,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ErrorBudget:
        return cls(int(doc["maxErrors"]), list(doc.get("failed", [])), list(doc.get("succeeded", [])))


# ----------------------------------------------------------------------------- install starts
#: ARM's token buckets per region, subscription and principal (azure-arm-contracts.md §7; the
#: simulator's ``emulator/arm/throttle.py`` DEFAULT_BUCKETS): (size, refill per second).
ARM_READ_BUCKET = (250, 25.0)
ARM_WRITE_BUCKET = (200, 10.0)
#: What one install start costs in ARM calls, by kind: the instance view read for the once-only
#: check and the fail-fast baseline, and the installPatches POST (activities/compute.py).
START_CALLS = {"reads": 1, "writes": 1}
#: The share of a bucket the install starts of one ring may take in one burst, per subscription:
#: half, so a burst never leaves the app's principal with less than half of either bucket for
#: everything else it runs at the same time (polls, health reads, another ring's retag).
START_BUDGET_SHARE = 0.5
#: How many wave instances (slices of ``WAVE_SLICE`` VMs) are assumed to start side by side when
#: the caller does not say (``WaveInput.slices``): a wave of 500 VMs. A caller that runs more
#: must say so, or the slices together exceed the budget.
ASSUMED_SLICES = 5


@dataclass(frozen=True)
class StartPacing:
    """How one wave instance starts its installs: at most ``burst`` VMs of one subscription at
    once, then ``pause`` before the next burst (counted from the end of the previous one)."""

    burst: int
    pause_seconds: int


def start_pacing(slices: int | None = None, *, burst: int | None = None,
                 pause_seconds: int | None = None) -> StartPacing:
    """The burst plan of one of ``slices`` wave instances that start installs side by side.

    Per subscription, a burst of all the slices together takes at most :data:`START_BUDGET_SHARE`
    of ARM's read and write buckets (100 starts with the default buckets: 100 writes of 200, 100
    reads of 250); each slice takes its share of that (``budget // slices``, at least 1). The pause
    is the time the buckets need to refill what one burst of all slices took (100 writes at
    10/s: 10 s), so the buckets are full again at each burst: the starts never run the principal's
    buckets below half, however large the wave. ``burst`` / ``pause_seconds`` (the wave's input,
    when given) replace the computed ones; values below 1 / 0 are raised to them.
    """
    side_by_side = max(1, int(slices or ASSUMED_SLICES))
    budget = min(int(size * START_BUDGET_SHARE) // max(START_CALLS[kind], 1)
                 for kind, (size, _) in (("reads", ARM_READ_BUCKET), ("writes", ARM_WRITE_BUCKET)))
    own = max(1, int(burst)) if burst else max(1, budget // side_by_side)
    if pause_seconds is not None:
        return StartPacing(own, max(0, int(pause_seconds)))
    used = own * side_by_side
    pause = max(math.ceil(used * START_CALLS[kind] / refill)
                for kind, (_, refill) in (("reads", ARM_READ_BUCKET), ("writes", ARM_WRITE_BUCKET)))
    return StartPacing(own, pause)


def start_bursts(subscriptions: Sequence[str], burst: int) -> list[list[int]]:
    """Split a wave's starts (one subscription id per VM, in wave order) into bursts: burst ``k``
    takes the ``k``-th ``burst`` VMs of every subscription (ARM's buckets are per subscription),
    in wave order. Indexes into ``subscriptions``; every index once; no empty bursts."""
    size = max(1, int(burst))
    seen: dict[str, int] = {}
    bursts: list[list[int]] = []
    for index, sub in enumerate(subscriptions):
        key = str(sub or "").lower()
        k = seen.get(key, 0) // size
        seen[key] = seen.get(key, 0) + 1
        while len(bursts) <= k:
            bursts.append([])
        bursts[k].append(index)
    return bursts
