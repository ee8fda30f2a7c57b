"""Post-install health: the plan's health policy and the three-phase tracker (ADM style).

Phases (Azure Deployment Manager health-check semantics, the best spec among the anchors):

1. **wait** (``waitDuration``): bake time; samples are ignored.
2. **elastic** (``elasticDuration``): poll every ``pollInterval``; unhealthy samples are ignored
   until the first healthy one. Never becoming healthy in time ends *unhealthy*, or *unknown* if
   no sample in the phase could be read at all.
3. **stay healthy** (``healthyStateDuration``): the VM must stay continuously healthy. One
   unhealthy sample ends *unhealthy* at once. An unreadable sample does not reset the clock, but
   the outcome at the end becomes *unknown* (it cannot be proven healthy), which the gate turns
   into "inconclusive: ask a person" rather than a pass.

The tracker is a pure state machine: the orchestrator calls ``observe(at, sample)`` with the
time it scheduled the check for (replay-safe), and sleeps until ``next_check_at``.

Arc-enabled servers (issue 12): a sample with ``kind: arc`` has no power state or VM agent; its
agent status takes their place (``Connected`` healthy; ``Disconnected`` / ``Expired`` / anything
else *unknown*, never healthy), with the same Application Health rule and HTTP probes.

Fewer reads, faster detection (issue 11):

* **Samples.** A *full* sample (instance view per VM: power state, VM agent, Application Health,
  plus the HTTP probes) is needed to enter the stay-healthy phase and to end it; between, during
  the stay-healthy phase, a *cheap* sample (:attr:`HealthSample.partial`: the power state from one
  bulk list per subscription, plus the probes) is enough to catch a VM that goes down.
  :attr:`HealthTracker.wants_full` tells the orchestrator which one the next check needs. The
  stay-healthy phase is sampled :data:`HOLD_CHECKS` times (every ``healthyStateDuration /
  HOLD_CHECKS``, never more often than ``pollInterval``), not every ``pollInterval``.
* **Fail fast.** A VM that was healthy *before* patching (``healthy_before``: the sample its
  install start took) and is unhealthy after it in :data:`FAIL_FAST_SAMPLES` consecutive samples
  fails at once: the elastic phase is for VMs that were not yet healthy, not for ones the patch
  broke. An unreadable sample neither extends nor breaks the streak; a healthy one breaks it.
* **Deferred samples.** A sample marked ``deferred`` was never taken: the health batch's paced
  reads could not start it within the activity's budget (``activities/health.py``). It is not a
  reading -- neither unknown nor anything else -- so the tracker decides nothing on it and asks
  for the VM again :data:`DEFER_RETRY` later (a durable timer, so an activity that deferred
  everything at once cannot spin the orchestrator). Deferral is bounded: once the phase's own end
  has passed (the elastic deadline; the stay-healthy hold's end), at most
  :data:`MAX_LATE_DEFERRALS` deferred samples in a row are waited for; the next one counts as the
  unreadable sample it is (``unknown``), so a subscription whose reads stay starved ends the VM
  *inconclusive* instead of keeping the verification (and its history) going for ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from patchrings.domain.timeutil import format_duration, format_instant, parse_duration, parse_instant

SignalState = Literal["healthy", "unhealthy", "unknown"]
Outcome = Literal["healthy", "unhealthy", "unknown"]
Phase = Literal["wait", "elastic", "stayHealthy", "done"]
AppHealthRule = Literal["required", "ifPresent", "ignore"]

#: How many samples the stay-healthy phase takes (its last one full, the others may be cheap).
HOLD_CHECKS = 3
#: Consecutive unhealthy samples after patching that fail a VM which was healthy before it.
FAIL_FAST_SAMPLES = 2
#: How long after a deferred sample (module doc) the VM is due again.
DEFER_RETRY = timedelta(seconds=30)
#: Deferred samples in a row still waited for once the phase's end has passed (module doc).
MAX_LATE_DEFERRALS = 4


@dataclass(frozen=True)
class HttpProbe:
    """An HTTP check run against each VM; ``url`` may contain ``{vmName}``."""

    url: str
    expect_status: int = 200
    body_pattern: str | None = None
    timeout_seconds: int = 10

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> HttpProbe:
        return cls(
            url=str(doc["url"]),
            expect_status=int(doc.get("expectStatus", 200)),
            body_pattern=doc.get("bodyPattern"),
            timeout_seconds=int(doc.get("timeoutSeconds", 10)),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "expectStatus": self.expect_status}
        if self.body_pattern is not None:
            out["bodyPattern"] = self.body_pattern
        out["timeoutSeconds"] = self.timeout_seconds
        return out

    def url_for(self, vm: Mapping[str, Any]) -> str:
        """The probe URL for one VM (``{vmName}`` substituted)."""
        return self.url.replace("{vmName}", str(vm.get("name", "")))


@dataclass(frozen=True)
class InstallRules:
    """How a VM's installPatches result is judged (see ``results.classify_install``)."""

    allow_warnings: bool = False
    allow_pending: bool = False
    allow_maintenance_window_exceeded: bool = False
    require_reboot_completed: bool = True

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> InstallRules:
        return cls(
            allow_warnings=bool(doc.get("allowWarnings", False)),
            allow_pending=bool(doc.get("allowPending", False)),
            allow_maintenance_window_exceeded=bool(doc.get("allowMaintenanceWindowExceeded", False)),
            require_reboot_completed=bool(doc.get("requireRebootCompleted", True)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowWarnings": self.allow_warnings,
            "allowPending": self.allow_pending,
            "allowMaintenanceWindowExceeded": self.allow_maintenance_window_exceeded,
            "requireRebootCompleted": self.require_reboot_completed,
        }


@dataclass(frozen=True)
class HealthPolicy:
    """A ring's ``health`` block: install rules, VM checks, probes and the three phases."""

    installation: InstallRules = InstallRules()
    power_state: bool = True
    vm_agent: bool = True
    application_health: AppHealthRule = "ifPresent"
    probes: tuple[HttpProbe, ...] = ()
    wait: timedelta = timedelta(minutes=5)
    elastic: timedelta = timedelta(minutes=30)
    healthy_state: timedelta = timedelta(minutes=15)
    poll_interval: timedelta = timedelta(minutes=1)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> HealthPolicy:
        checks = doc.get("checks", {})
        phases = doc.get("phases", {})
        d = cls()
        return cls(
            installation=InstallRules.from_dict(doc.get("installation", {})),
            power_state=bool(checks.get("powerState", d.power_state)),
            vm_agent=bool(checks.get("vmAgent", d.vm_agent)),
            application_health=checks.get("applicationHealth", d.application_health),
            probes=tuple(HttpProbe.from_dict(p) for p in doc.get("probes", [])),
            wait=_dur(phases, "waitDuration", d.wait),
            elastic=_dur(phases, "elasticDuration", d.elastic),
            healthy_state=_dur(phases, "healthyStateDuration", d.healthy_state),
            poll_interval=_dur(phases, "pollInterval", d.poll_interval),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "installation": self.installation.to_dict(),
            "checks": {
                "powerState": self.power_state,
                "vmAgent": self.vm_agent,
                "applicationHealth": self.application_health,
            },
            "probes": [p.to_dict() for p in self.probes],
            "phases": {
                "waitDuration": format_duration(self.wait),
                "elasticDuration": format_duration(self.elastic),
                "healthyStateDuration": format_duration(self.healthy_state),
                "pollInterval": format_duration(self.poll_interval),
            },
        }


def _dur(doc: Mapping[str, Any], key: str, default: timedelta) -> timedelta:
    return parse_duration(doc[key]) if key in doc else default


# --------------------------------------------------------------------------------------------
# samples


@dataclass(frozen=True)
class HealthSample:
    """One reading of a VM's health signals (the ``check_vm_health`` activity output).

    Values are matched case-insensitively and tolerate Azure's status-code forms
    (``PowerState/running``, ``ProvisioningState/succeeded``, ``Ready``, ``Not Ready``...).
    ``app_health`` ``None`` means the Application Health extension is not installed.
    ``read_error`` set means the signals could not be read at all.
    ``deferred`` marks a read that was never made (paced reads out of budget, module doc).
    ``partial`` marks a *cheap* sample (issue 11): a bulk read that carries the power state and
    the HTTP probes but not the VM agent or Application Health (Resource Graph's power state by
    id, at least a minute stale); those two signals are then not judged, and such a sample never proves a
    VM healthy on its own (see :attr:`HealthTracker.wants_full`).
    """

    power_state: str | None = None
    vm_agent: str | None = None
    app_health: str | None = None
    probes: tuple[Mapping[str, Any], ...] = ()
    read_error: str | None = None
    vm: str | None = None
    partial: bool = False
    kind: str | None = None
    agent_status: str | None = None
    last_status_change: str | None = None
    os: str | None = None
    deferred: bool = False

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> HealthSample:
        return cls(
            power_state=doc.get("powerState"),
            vm_agent=doc.get("vmAgent"),
            app_health=doc.get("appHealth"),
            probes=tuple(doc.get("probes") or ()),
            read_error=doc.get("readError"),
            vm=doc.get("vm") if isinstance(doc.get("vm"), str) else None,
            partial=bool(doc.get("partial", False)),
            kind=doc.get("kind") if isinstance(doc.get("kind"), str) else None,
            agent_status=doc.get("agentStatus"),
            last_status_change=doc.get("lastStatusChange"),
            os=doc.get("os"),
            deferred=bool(doc.get("deferred", False)),
        )

    @property
    def is_arc(self) -> bool:
        return str(self.kind or "").lower() == "arc"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "vm": self.vm,
            "powerState": self.power_state,
            "vmAgent": self.vm_agent,
            "appHealth": self.app_health,
            "probes": [dict(p) for p in self.probes],
            "readError": self.read_error,
        }
        if self.partial:
            out["partial"] = True
        if self.deferred:
            out["deferred"] = True
        if self.is_arc:
            out.update(kind="arc", agentStatus=self.agent_status, lastStatusChange=self.last_status_change,
                       os=self.os)
        return out


def _norm(value: str | None) -> str | None:
    if value is None:
        return None
    v = str(value).strip().lower()
    if "/" in v:
        v = v.rsplit("/", 1)[1]
    return v.replace(" ", "").replace("_", "")


def _arc_agent(sample: HealthSample, unknown: list[str]) -> None:
    """An Arc-enabled server's signal in place of power state and VM agent: its Connected
    Machine agent. ``Connected`` is the only healthy value; ``Disconnected`` / ``Expired`` /
    ``Error`` / ``AwaitingConnection`` / unknown say nothing about the machine's health (it may
    be up with its agent cut off, or down): *unknown*, never healthy, so a gate holding one is
    inconclusive (arc-and-resource-graph.md §2.4, §7 pitfalls)."""
    status = _norm(sample.agent_status)
    if status == "connected":
        return
    since = f" since {sample.last_status_change}" if sample.last_status_change else ""
    unknown.append(f"Arc agent is {sample.agent_status or 'not reporting'}{since}: the machine cannot be "
                   "judged healthy")


def evaluate_sample(policy: HealthPolicy, sample: HealthSample) -> tuple[SignalState, list[str]]:
    """Fold one sample into healthy / unhealthy / unknown, with a reason per bad signal.

    Unhealthy wins over unknown: a VM that is stopped is unhealthy even if a probe timed out.
    """
    if sample.read_error:
        return "unknown", [f"health signals could not be read: {sample.read_error}"]
    bad: list[str] = []
    unknown: list[str] = []
    if sample.is_arc:
        _arc_agent(sample, unknown)
    if policy.power_state and not sample.is_arc:
        ps = _norm(sample.power_state)
        if ps is None or ps == "unknown":
            unknown.append("power state unknown")
        elif ps != "running":
            bad.append(f"power state is {sample.power_state}, expected running")
    if policy.vm_agent and not sample.partial and not sample.is_arc:
        ag = _norm(sample.vm_agent)
        if ag is None or ag == "unknown":
            unknown.append("VM agent status unknown")
        elif ag not in ("ready", "succeeded"):
            bad.append(f"VM agent is {sample.vm_agent}, expected ready")
    if policy.application_health != "ignore" and not sample.partial:
        ah = _norm(sample.app_health)
        if ah is None or ah in ("notinstalled", "absent", "none"):
            if policy.application_health == "required":
                unknown.append("Application Health extension not reporting (required by the plan)")
        elif ah in ("unknown", "initializing"):
            unknown.append(f"application health is {sample.app_health}")
        elif ah != "healthy":
            bad.append(f"application health is {sample.app_health}, expected healthy")
    for i, probe in enumerate(sample.probes):
        label = probe.get("url") or f"probe[{i}]"
        ok = probe.get("ok")
        if ok is True:
            continue
        if ok is False:
            detail = probe.get("reason") or probe.get("error") or probe.get("status")
            bad.append(f"probe {label} failed: {detail}")
        elif probe.get("error"):
            unknown.append(f"probe {label} could not be read: {probe['error']}")
        elif isinstance(probe.get("status"), int):
            if not 200 <= probe["status"] < 300:
                bad.append(f"probe {label} returned HTTP {probe['status']}")
        else:
            unknown.append(f"probe {label} gave no result")
    if len(sample.probes) < len(policy.probes):
        unknown.append(f"{len(policy.probes) - len(sample.probes)} configured probe(s) did not report")
    if bad:
        return "unhealthy", bad
    if unknown:
        return "unknown", unknown
    return "healthy", []


# --------------------------------------------------------------------------------------------
# the tracker


@dataclass(frozen=True)
class HealthState:
    """Where one VM is in the three phases; ``outcome`` is set once ``phase == "done"``."""

    phase: Phase
    outcome: Outcome | None
    reasons: tuple[str, ...]
    next_check_at: datetime | None
    started_at: datetime
    healthy_since: datetime | None = None
    samples: int = 0
    unknown_while_holding: int = 0
    last_signal: SignalState | None = None
    last_reasons: tuple[str, ...] = ()
    unhealthy_streak: int = 0
    deferred_in_a_row: int = 0

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "nextCheckAt": format_instant(self.next_check_at) if self.next_check_at else None,
            "startedAt": format_instant(self.started_at),
            "healthySince": format_instant(self.healthy_since) if self.healthy_since else None,
            "samples": self.samples,
            "unknownWhileHolding": self.unknown_while_holding,
            "lastSignal": self.last_signal,
            "lastReasons": list(self.last_reasons),
            "unhealthyStreak": self.unhealthy_streak,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> HealthState:
        return cls(
            phase=doc["phase"],
            outcome=doc.get("outcome"),
            reasons=tuple(doc.get("reasons", ())),
            next_check_at=parse_instant(doc["nextCheckAt"]) if doc.get("nextCheckAt") else None,
            started_at=parse_instant(doc["startedAt"]),
            healthy_since=parse_instant(doc["healthySince"]) if doc.get("healthySince") else None,
            samples=int(doc.get("samples", 0)),
            unknown_while_holding=int(doc.get("unknownWhileHolding", 0)),
            last_signal=doc.get("lastSignal"),
            last_reasons=tuple(doc.get("lastReasons", ())),
            unhealthy_streak=int(doc.get("unhealthyStreak", 0)),
        )


@dataclass
class HealthTracker:
    """Three-phase health evaluation for one VM (or one ring, fed aggregated samples).

    ``start`` is when verification began (the install finished). Samples observed before
    ``start + wait`` are ignored. ``healthy_before``: the VM was healthy before it was patched
    (fail fast, module doc).
    """

    policy: HealthPolicy
    start: datetime
    healthy_before: bool = False
    state: HealthState = field(init=False)
    _ever_read: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.start = parse_instant(self.start)
        self.state = HealthState(
            phase="wait" if self.policy.wait > timedelta(0) else "elastic",
            outcome=None,
            reasons=(),
            next_check_at=self.start + self.policy.wait,
            started_at=self.start,
        )

    @property
    def elastic_deadline(self) -> datetime:
        return self.start + self.policy.wait + self.policy.elastic

    @property
    def hold_interval(self) -> timedelta:
        """How far apart the stay-healthy phase's samples are (module doc)."""
        return max(self.policy.poll_interval, self.policy.healthy_state / HOLD_CHECKS)

    @property
    def wants_full(self) -> bool:
        """Does the next check need a full sample? Only stay-healthy checks before its end don't."""
        st = self.state
        if st.phase != "stayHealthy" or st.healthy_since is None or st.next_check_at is None:
            return True
        return st.next_check_at >= st.healthy_since + self.policy.healthy_state

    def _phase_end(self, st: HealthState) -> datetime:
        """Where the current phase ends: the hold's end while staying healthy, else the elastic deadline."""
        if st.phase == "stayHealthy" and st.healthy_since is not None:
            return st.healthy_since + self.policy.healthy_state
        return self.elastic_deadline

    def observe(self, at: datetime, sample: HealthSample | Mapping[str, Any]) -> HealthState:
        """Feed one sample taken at ``at``; returns the new state (also kept in ``state``)."""
        at = parse_instant(at)
        if isinstance(sample, Mapping):
            sample = HealthSample.from_dict(sample)
        st = self.state
        if st.done:
            return st
        if sample.deferred:  # never taken: no decision, due again shortly -- within bounds (module doc)
            if at < self._phase_end(st) or st.deferred_in_a_row < MAX_LATE_DEFERRALS:
                self.state = replace(st, next_check_at=max(at, st.next_check_at or at) + DEFER_RETRY,
                                     deferred_in_a_row=st.deferred_in_a_row + 1)
                return self.state
            sample = replace(sample, deferred=False)  # starved past the phase's end: unreadable
        st = replace(st, deferred_in_a_row=0)
        wait_end = self.start + self.policy.wait
        if at < wait_end:
            self.state = replace(st, phase="wait", next_check_at=wait_end)
            return self.state
        signal, why = evaluate_sample(self.policy, sample)
        if signal != "unknown":
            self._ever_read = True
        st = replace(st, samples=st.samples + 1, last_signal=signal, last_reasons=tuple(why))
        poll = self.policy.poll_interval

        if st.phase in ("wait", "elastic"):
            if signal == "healthy" and not sample.partial:
                st = replace(st, phase="stayHealthy", healthy_since=at, unhealthy_streak=0)
                # fall through to the stay-healthy check (a zero hold completes at once)
            elif (streak := self._streak(st, signal)) >= FAIL_FAST_SAMPLES and self.healthy_before:
                self.state = replace(
                    st, phase="done", outcome="unhealthy", unhealthy_streak=streak, next_check_at=None,
                    reasons=(f"healthy before patching, unhealthy in {streak} consecutive samples after it "
                             "(failed fast, without waiting for elasticDuration)", *why),
                )
                return self.state
            elif at >= self.elastic_deadline:
                outcome: Outcome = "unhealthy" if self._ever_read else "unknown"
                lead = (
                    f"did not become healthy within {format_duration(self.policy.elastic)} (elasticDuration)"
                    if outcome == "unhealthy"
                    else "health could not be read during the elastic phase"
                )
                self.state = replace(st, phase="done", outcome=outcome, reasons=(lead, *why), next_check_at=None)
                return self.state
            else:
                self.state = replace(st, phase="elastic", unhealthy_streak=streak,
                                     next_check_at=min(at + poll, self.elastic_deadline))
                return self.state

        # stay healthy
        healthy_since = st.healthy_since
        assert healthy_since is not None
        if signal == "unhealthy":
            self.state = replace(
                st,
                phase="done",
                outcome="unhealthy",
                reasons=("became unhealthy during healthyStateDuration", *why),
                next_check_at=None,
            )
            return self.state
        if signal == "unknown":
            st = replace(st, unknown_while_holding=st.unknown_while_holding + 1)
        hold_end = healthy_since + self.policy.healthy_state
        if at >= hold_end and sample.partial:  # the last sample of the hold must be a full one
            self.state = replace(st, phase="stayHealthy", next_check_at=at)
            return self.state
        if at >= hold_end:
            if st.unknown_while_holding:
                self.state = replace(
                    st,
                    phase="done",
                    outcome="unknown",
                    reasons=(
                        f"{st.unknown_while_holding} sample(s) during healthyStateDuration could not be "
                        "read; health is not proven",
                        *why,
                    ),
                    next_check_at=None,
                )
            else:
                self.state = replace(st, phase="done", outcome="healthy", reasons=(), next_check_at=None)
            return self.state
        self.state = replace(st, phase="stayHealthy", next_check_at=min(at + self.hold_interval, hold_end))
        return self.state

    @staticmethod
    def _streak(st: HealthState, signal: SignalState) -> int:
        """Consecutive unhealthy samples including this one (unknown keeps, healthy resets)."""
        if signal == "unhealthy":
            return st.unhealthy_streak + 1
        return 0 if signal == "healthy" else st.unhealthy_streak

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": format_instant(self.start),
            "healthyBefore": self.healthy_before,
            "everRead": self._ever_read,
            "state": self.state.to_dict(),
        }

    @classmethod
    def from_dict(cls, policy: HealthPolicy, doc: Mapping[str, Any]) -> HealthTracker:
        tracker = cls(policy, parse_instant(doc["start"]), bool(doc.get("healthyBefore", False)))
        tracker.state = HealthState.from_dict(doc["state"])
        tracker._ever_read = bool(doc.get("everRead", False))
        return tracker
