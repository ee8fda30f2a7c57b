"""The rollout's promotion and gates: pin the manifest, refuse uncovered OS families, open a ring's
gate (retag / assignment) and target its run; close every opened gate again on the way out."""

from __future__ import annotations

from typing import Any

from orchestrators import names, retries
from orchestrators.rollout_approvals import ApprovalSteps
from orchestrators.rollout_base import (
    CLOSE_ATTEMPTS,
    CLOSE_PAUSE,
    Gen,
    Stop,
    first_line,
    log,
)
from orchestrators.status import (
    HALTED,
)
from orchestrators.verdicts import (
    promotion_target,
)
from patchrings.boundary.activities import (
    GetConfigurationInput,
    PinManifestInput,
    RingCoverageInput,
    RingCoverageOutput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.boundary.rings import RingGateInput
from patchrings.domain.plan import Ring
from patchrings.domain.timeutil import iso, parse_instant


class GateSteps(ApprovalSteps):
    def promote(self, spec: Ring) -> Gen:
        """Pin the manifest into the ring, open its gate, and say which run that targets."""
        ring = spec.name
        self.st.set_phase(ring, "promoting", iso(self.now))
        self.publish()
        yield from self.check_coverage(ring)
        configuration_id = spec.configuration_id
        scheduled = spec.scheduled
        pinned_at = None
        if scheduled and configuration_id and self.manifest is not None:
            pinned = yield from self.activity(
                names.PIN_MANIFEST,
                PinManifestInput(configuration_id=configuration_id, manifest=self.manifest, rollout_id=self.rollout_id),
                retries.WRITE
            )
            if (pinned or {}).get("changed", True):
                pinned_at = self.now  # the configuration write has landed by now
        mode = spec.open_mode
        if mode != "none" and ring not in self.opened:
            # Counted as open *before* the write: an open that fails half-way (some VMs retagged)
            # must still be closed by the close-down path.
            self.opened.append(ring)
        if mode != "none" or scheduled:
            opened = yield from self.gate(ring, open_=True)
            self.note_gate(ring, opened)
        self.st.set_opened(ring, mode != "none")
        if scheduled and configuration_id:
            config = yield from self.activity(
                names.GET_CONFIGURATION,
                GetConfigurationInput(configuration_id=configuration_id, rollout_id=self.rollout_id))
            self.windows[ring] = (config or {}).get("window") or {}
            reboot = _reboot_setting((config or {}).get("installPatches"))
            if reboot:
                self.pinned_reboot[ring] = reboot
            margin = self.resolved.promotion.t40_margin
            # Every write of the promotion (pin, retag / assignment) has landed by now, so the run
            # targeted is the first whose T-40 (minus the margin) is still ahead (issue 14.8).
            target = promotion_target((config or {}).get("window") or {}, self.now, margin)
            skipped = (target or {}).get("skippedRun") or {}
            if pinned_at is not None and skipped.get("t40") and pinned_at > parse_instant(skipped["t40"]):
                # AUM cancels a run whose configuration is edited less than 40 minutes before it.
                target["skippedRunCancelledByEdit"] = True
                target["reason"] = (f"{target.get('reason')}; the manifest pin at {iso(pinned_at)} landed after that "
                                    f"run's T-40 ({skipped['t40']}), so AUM cancels it")
            self.st.set_phase(ring, "promoted", iso(self.now), target=target)
            if target and not target.get("meetsT40", True):
                self.st.note(iso(self.now), f"ring {ring}: {target.get('reason')}")
        else:
            self.st.set_phase(ring, "promoted", iso(self.now))
        self.publish()
        yield from self.ledger_ring(ring, "promoted", manifestHash=(self.manifest or {}).get("hash"),
                                    target=self.st.ring(ring).get("target"))

    def check_coverage(self, ring: str) -> Gen:
        """Halt before opening ``ring`` if it holds an OS / image family Ring 0 did not cover
        (issue 13.7: the manifest was never validated there and would pin it to nothing), unless
        the plan's ``gate.allowUncoveredOs`` says otherwise (``ring_coverage``: the domain's
        ``uncovered_vms``)."""
        # Judged by the activity (issue 11): the rollout reads counts and the first 100 machines,
        # never the ring's member list.
        answer = yield from self.activity(names.RING_COVERAGE, RingCoverageInput(
            ring=ring, ring_spec=self.ring_spec(ring), manifest=self.manifest, rollout_id=self.rollout_id))
        coverage = from_payload(RingCoverageOutput, answer or {})
        refused = coverage.refused
        if not coverage.refused_count:
            return
        families = coverage.families
        covered = list((self.manifest or {}).get("coverage") or [])
        outcome = (f"ring {ring} not opened: {coverage.refused_count} VM(s) of OS / image families Ring 0 did not "
                   f"cover ({', '.join(families[:10])}; Ring 0 covered {', '.join(covered[:10]) or 'nothing'}), e.g. "
                   f"{refused[0].get('reason') if refused else ''}; set the ring's gate.allowUncoveredOs to promote "
                   "anyway")
        self.st.set_phase(ring, "coverage-refused", iso(self.now), uncovered=coverage.refused_count)
        self.st.note(iso(self.now), outcome)
        self.publish()
        yield from self.ledger_ring(ring, "coverage-refused", reason=outcome, families=families, covered=covered,
                                    uncovered=refused[:100], manifestHash=(self.manifest or {}).get("hash"))
        raise Stop(HALTED, outcome)

    def gate(self, ring: str, *, open_: bool) -> Gen:
        """Open or close a ring's gate in its own sub-orchestration (``ring_gate``)."""
        count = self.attempts[f"gate:{ring}"] = self.attempts.get(f"gate:{ring}", 0) + 1
        result = yield self.ctx.call_sub_orchestrator(
            names.RING_GATE,
            to_payload(RingGateInput(ring=ring, ring_spec=self.ring_spec(ring), opening=open_,
                                     rollout_id=self.rollout_id)),
            f"{self.rollout_id}:{ring}:{'open' if open_ else 'close'}:{count}",
        )
        result = result or {}
        if result.get("failed"):
            self.st.note(iso(self.now), f"ring {ring}: retag to {result.get('value')} failed for "
                                        f"{len(result['failed'])} VM(s)")
        return result

    def note_gate(self, ring: str, opened: dict[str, Any]) -> None:
        """Record the ring's size and the VMs a scheduled run will not patch (patch settings)."""
        issues = opened.get("scheduleIssues") or []
        self.st.set_members(ring, opened.get("members"), issues)
        left = [str(x.get("vm")) for x in opened.get("leftRing") or [] if x.get("vm")]
        self.gate_left[ring] = (left, int(opened.get("leftRingCount") or len(left)))
        if left:
            self.st.note(iso(self.now), f"ring {ring}: {self.gate_left[ring][1]} VM(s) left the ring before the gate "
                                        f"opened; not retagged (e.g. {left[0].rsplit('/', 1)[-1]})")
        if issues:
            self.st.note(iso(self.now), f"ring {ring}: {opened.get('scheduleIssueCount')} VM(s) will not follow "
                                        f"the schedule (e.g. {issues[0]['vm']}: {issues[0]['issue']})")

    def close_gates(self) -> Gen:
        """End of cycle (or halt): later rings closed again so the next cycle starts at Ring 0.

        Never raises for a failed close: every ring is tried (``CLOSE`` retries inside the gate
        sub-orchestration, then ``CLOSE_ATTEMPTS`` whole attempts); a ring that stays open is
        named loudly in the status and the ledger, and the method returns the rings left open.
        """
        left_open: list[str] = []
        for ring in list(reversed(self.opened)):
            error = None
            for attempt in range(CLOSE_ATTEMPTS):
                try:
                    yield from self.gate(ring, open_=False)
                    error = None
                    break
                except Exception as err:  # the close failed after its retries
                    error = first_line(err)
                    if attempt + 1 < CLOSE_ATTEMPTS:
                        yield self.ctx.create_timer(self.now + CLOSE_PAUSE)
            if error is None:
                self.st.set_opened(ring, False)
                self.opened.remove(ring)
                continue
            left_open.append(ring)
            self.st.set_opened(ring, True)
            self.st.note(iso(self.now), f"ring {ring}: GATE COULD NOT BE CLOSED: {error}")
            if not self.ctx.is_replaying:
                log.error("rollout %s: ring %s gate could not be closed: %s", self.rollout_id, ring, error)
            try:
                yield from self.ledger_ring(ring, "close-failed", error=error)
            except Exception:  # the ledger is down too: the status and the log say it
                pass
        self.publish()
        return left_open


def _reboot_setting(install_patches: Any) -> str | None:
    """``installPatches.rebootSetting`` of a configuration (keys compared case-insensitively)."""
    if not isinstance(install_patches, dict):
        return None
    for key, value in install_patches.items():
        if str(key).lower() == "rebootsetting" and value:
            return str(value)
    return None

