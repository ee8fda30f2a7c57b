"""Gate decisions: may the rollout move past this ring?

Per VM, the install verdict (``results.classify_install``) and the health outcome
(``health.HealthTracker``) fold into a :class:`VmVerdict`. The ring's gate is then:

* **fail** — failed VMs exceed the error budget. Without ``gate.tolerateErrors`` the budget is 0
  (any failed or unhealthy VM fails the gate); with it, failures up to the ring's ``maxErrors``
  (SSM floor semantics, see ``rate``) are tolerated and listed.
* **inconclusive** — nothing failed beyond budget but some signal is missing, unreadable or
  contradictory (Argo Rollouts: *Inconclusive → pause for a human*). Inconclusive never passes
  by itself; the orchestrator asks a person. An empty ring is inconclusive too: nothing was proven.
* **pass** — every VM installed cleanly and proved healthy (or failures are within a tolerated
  budget).

Every decision carries per-VM reasons so the status API and the ledger can say *why*.

Evidence that shrank (issue 11): a member that *left the ring* before its install (the live
pre-check; a scheduled ring's gate that did not open it) is not judged -- but it is counted
(``counts.leftRing``) and named in a reason ("N VM(s) left the ring before their install; not
judged"). When more left than :func:`left_ring_allowance` (the larger of the ring's ``maxErrors``
and 10% of the planned members, rounded up), the gate is at best *inconclusive*: the few VMs still judged do
not stand for the ring a person approved (:func:`evidence_shrank`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from patchrings.domain.health import HealthState
from patchrings.domain.membership import MemberRule, tag_value
from patchrings.domain.rate import RateControl
from patchrings.domain.results import InstallOutcome, InstallVerdict, classify_install

# How a caller names a ring member that was never started (``extra_reasons``: ``{vm, reason}``
# whose reason starts with this, e.g. "not started: the ring's error budget (maxErrors) was
# exceeded"); the gate counts them (``notStarted``) and its summary says how many.
NOT_STARTED = "not started"

HealthOutcome = Literal["healthy", "unhealthy", "unknown", "skipped"]
VmOutcome = Literal["pass", "fail", "inconclusive"]
GateOutcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class VmVerdict:
    """One VM's result in a ring run: install, health, and why."""

    vm: str
    install: InstallOutcome
    health: HealthOutcome
    reasons: tuple[str, ...] = ()
    name: str | None = None

    @property
    def outcome(self) -> VmOutcome:
        if self.install == "failed" or self.health == "unhealthy":
            return "fail"
        if self.install == "inconclusive" or self.health in ("unknown",):
            return "inconclusive"
        return "pass"

    @property
    def broke_health(self) -> bool:
        return self.health == "unhealthy"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "vm": self.vm,
            "install": self.install,
            "health": self.health,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
        }
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> VmVerdict:
        return cls(
            vm=str(doc["vm"]),
            install=doc["install"],
            health=doc.get("health", "skipped"),
            reasons=tuple(doc.get("reasons", ())),
            name=doc.get("name"),
        )


def vm_verdict(
    vm: str | Mapping[str, Any],
    install: InstallVerdict | Mapping[str, Any] | None,
    health: HealthState | Mapping[str, Any] | str | None,
    *,
    rules: Any = None,
) -> VmVerdict:
    """Fold an install result/verdict and a health state/outcome into a :class:`VmVerdict`.

    ``install`` may be an :class:`InstallVerdict` or a raw ``VirtualMachineInstallPatchesResult``
    dict (classified with ``rules``, an ``InstallRules``). ``health`` may be a final
    :class:`HealthState`, its dict, an outcome string, or ``None`` when health was not checked
    (install failed, so there was nothing to verify: ``skipped``).
    """
    vm_id = vm if isinstance(vm, str) else str(vm.get("id"))
    name = None if isinstance(vm, str) else vm.get("name")
    iv = install if isinstance(install, InstallVerdict) else classify_install(install, rules)
    reasons = [f"install: {r}" for r in iv.reasons]
    h: HealthOutcome
    if health is None:
        h = "skipped"
    elif isinstance(health, str):
        h = health  # type: ignore[assignment]
    else:
        state = health if isinstance(health, HealthState) else HealthState.from_dict(health)
        if not state.done or state.outcome is None:
            h = "unknown"
            reasons.append(f"health: verification did not finish (phase {state.phase})")
        else:
            h = state.outcome
            reasons.extend(f"health: {r}" for r in state.reasons)
    if h == "skipped" and iv.outcome == "ok":
        # a clean install whose health was never checked is not proven
        h = "unknown"
        reasons.append("health: not checked")
    return VmVerdict(vm_id, iv.outcome, h, tuple(reasons), name)


@dataclass(frozen=True)
class GateDecision:
    """The gate for one ring run: outcome, per-VM reasons, counts."""

    ring: str
    outcome: GateOutcome
    summary: str
    reasons: tuple[dict[str, str], ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ring": self.ring,
            "outcome": self.outcome,
            "summary": self.summary,
            "reasons": [dict(r) for r in self.reasons],
            "counts": dict(self.counts),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> GateDecision:
        return cls(
            ring=str(doc["ring"]),
            outcome=doc["outcome"],
            summary=str(doc.get("summary", "")),
            reasons=tuple(dict(r) for r in doc.get("reasons", ())),
            counts=dict(doc.get("counts", {})),
        )


def _ring_name(ring: Any) -> str:
    return ring if isinstance(ring, str) else str(ring.name)


def decide_gate(
    ring: Any,
    verdicts: Iterable[VmVerdict | Mapping[str, Any]],
    rate: RateControl | None = None,
    *,
    tolerate_errors: bool | None = None,
    extra_reasons: Sequence[dict[str, str]] = (),
    left_ring: int = 0,
    left_names: Sequence[str] = (),
    planned: int | None = None,
) -> GateDecision:
    """Decide pass / fail / inconclusive for ``ring`` (a ``Ring`` or its name).

    ``rate`` and ``tolerate_errors`` default to the ring's own settings when ``ring`` is a
    ``Ring``. ``extra_reasons`` (``{vm, reason}``) are ring-level findings the caller adds, e.g.
    "budget exceeded: 3 VMs never started"; they force at least *inconclusive*. Members named
    there as never started (a reason beginning :data:`NOT_STARTED`, no verdict of their own) are
    counted (``counts.notStarted``) and the summary says how many, so a 6-member ring halted
    after 4 reads "1 of 4 VM(s) failed (no failures tolerated); 2 not started".
    """
    vs = [v if isinstance(v, VmVerdict) else VmVerdict.from_dict(v) for v in verdicts]
    name = _ring_name(ring)
    if rate is None and not isinstance(ring, str):
        rate = ring.rate
    if tolerate_errors is None:
        tolerate_errors = bool(getattr(ring, "tolerate_errors", False))
    total = len(vs)
    failed = [v for v in vs if v.outcome == "fail"]
    unsure = [v for v in vs if v.outcome == "inconclusive"]
    passed = [v for v in vs if v.outcome == "pass"]
    budget = rate.error_budget(total) if (rate is not None and tolerate_errors) else 0
    # Ring-level findings (no VM: results unreadable, membership incomplete...) come first: they
    # explain the whole ring, and a bounded status keeps only the first few reasons.
    reasons: list[dict[str, str]] = [dict(r) for r in extra_reasons if not r.get("vm")]
    for v in failed + unsure:
        for r in v.reasons or (f"{v.outcome}",):
            reasons.append({"vm": v.vm, "reason": r})
    reasons.extend(dict(r) for r in extra_reasons if r.get("vm"))
    verified = {v.vm.lower() for v in vs}
    not_started = {str(r["vm"]).lower() for r in extra_reasons
                   if r.get("vm") and str(r.get("reason") or "").startswith(NOT_STARTED)} - verified
    counts = {
        "total": total,
        "passed": len(passed),
        "failed": len(failed),
        "inconclusive": len(unsure),
        "errorBudget": budget,
        "notStarted": len(not_started),
    }
    tail = f"; {len(not_started)} not started" if not_started else ""
    shrank = False
    if left_ring > 0:
        members = planned if planned is not None else total + left_ring
        allowed = left_ring_allowance(members, rate)
        shrank = evidence_shrank(left_ring, members, rate)
        counts["leftRing"] = left_ring
        named = ", ".join(str(n) for n in list(left_names)[:MAX_LEFT_NAMED])
        more = f" (e.g. {named})" if named else ""
        text = f"{left_ring} VM(s) left the ring before their install; not judged{more}"
        if shrank:
            text += (f"; more than {allowed} of {members} planned member(s) (the larger of maxErrors and 10%): "
                     "the VMs still judged do not stand for the ring, a person must decide")
        reasons.insert(0, {"vm": "", "reason": text})
        tail += f"; {left_ring} left the ring"
    if total == 0:
        return GateDecision(name, "inconclusive", "no VMs were verified in this ring" + tail, tuple(reasons), counts)
    if len(failed) > budget:
        summary = f"{len(failed)} of {total} VM(s) failed"
        summary += f" (error budget {budget})" if tolerate_errors else " (no failures tolerated)"
        return GateDecision(name, "fail", summary + tail, tuple(reasons), counts)
    if unsure or extra_reasons or shrank:
        summary = f"{len(unsure)} of {total} VM(s) could not be verified; a person must decide"
        if not unsure:
            summary = "ring-level signals are incomplete; a person must decide"
        if shrank and not unsure and not extra_reasons:
            summary = (f"only {total} of {total + left_ring} VM(s) were judged (the others left the ring); "
                       "a person must decide")
        return GateDecision(name, "inconclusive", summary + tail, tuple(reasons), counts)
    summary = f"all {total} VM(s) installed cleanly and stayed healthy"
    if failed:
        summary = f"{len(passed)} of {total} VM(s) clean; {len(failed)} failure(s) within error budget {budget}"
    return GateDecision(name, "pass", summary + tail, tuple(reasons), counts)


#: Most left-ring VMs a gate reason names (the rest are counted).
MAX_LEFT_NAMED = 10
#: The share of a ring's planned members that may leave it before the gate stops trusting the rest.
LEFT_RING_SHARE = 0.10


def left_ring_allowance(planned: int, rate: RateControl | None) -> int:
    """How many of ``planned`` members may leave the ring with the gate still judging the rest:
    the larger of the ring's ``maxErrors`` (resolved on the planned members) and 10% of them,
    rounded *up* to whole VMs (so one VM an operator moves out of a 3-VM ring does not stop the
    rollout; 3 of 20 do)."""
    max_errors = rate.error_budget(planned) if rate is not None else 0
    return max(int(max_errors), math.ceil(LEFT_RING_SHARE * planned - 1e-9))


def evidence_shrank(left: int, planned: int, rate: RateControl | None) -> bool:
    """True when more members left the ring than :func:`left_ring_allowance`: the gate must not
    pass on the rest (it is *inconclusive*, a person decides)."""
    return left > left_ring_allowance(planned, rate)


# ------------------------------------------------------------------ the gate's tag writes (issue 11)


def gate_write_refusal(rule: MemberRule, *, opening: bool, open_value: str, hold_value: str | None,
                       resource_group: str | None, location: Any, os: Any,
                       tags: Mapping[str, Any] | None) -> str | None:
    """Why a retag gate must *not* write this machine (live model), or None when it may.

    The gate's members come from Resource Graph, which lags: a machine retagged out of the ring a
    moment ago may still be listed. So before each write the live model is checked; the machine
    must be in the ring's scope (:meth:`MemberRule.in_scope`) and its tag must hold

    * **opening** (write ``open_value``): the hold value or already the open value -- the ring's
      tag still selects it. Opening must never pull a machine *into* the ring;
    * **closing** (write ``hold_value``): the open value the gate wrote (or already the hold
      value: the write changes nothing). Someone who retagged it meanwhile keeps their tag.

    The tag decides even for a ring that also has a maintenance configuration (where
    :meth:`MemberRule.left_because` cannot): the gate's write *is* the tag, and the dynamic scope
    selects by it. A refused machine is *left-ring*: not written, not a failure, not retried.

    Scope is checked when opening only. Closing writes the hold value back on any machine that
    still carries the open value, whatever its scope reads now (an Arc machine without ``osType``,
    a moved resource group): otherwise it would keep the open value, and the ring's dynamic scope
    would patch it after the gate said closed.
    """
    if opening and not rule.in_scope(resource_group=resource_group, location=location, os=os):
        return (f"out of the ring's scope now (resource group {resource_group!r}, location {location!r}, "
                f"OS {os!r})")
    if rule.tag_name is None:
        return None
    now = tag_value(tags, rule.tag_name)
    allowed = {open_value, *((hold_value,) if hold_value is not None else ())}
    if now in allowed:
        return None
    if opening:
        return f"tag {rule.tag_name!r} is {now!r} now, the ring selects {' or '.join(repr(v) for v in sorted(allowed))}"
    return (f"tag {rule.tag_name!r} is {now!r} now, not the open value {open_value!r} the gate wrote: "
            f"retagged by someone else, left as it is")
