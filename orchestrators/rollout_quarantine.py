"""The rollout's quarantine steps (issue 11): release what a person asks, read what Ring 0 must
exclude (fail closed), and record the patches a failed gate blames for the next cycle.

With the plan's ``quarantine.onBadManifest: wait`` and active entries, the rollout does not start
Ring 0 until a person decides (:meth:`QuarantineSteps.await_quarantine_decision`, implemented with
the ring approvals in ``rollout_approvals``): install Ring 0 without the patches, release them, or
reject the rollout."""

from __future__ import annotations

from typing import Any

from orchestrators import names, retries
from orchestrators.rollout_base import (
    Gen,
    RolloutBase,
    Stop,
    first_line,
    log,
)
from orchestrators.status import (
    FAILED,
)
from patchrings.boundary.activities import LedgerReadQuarantineInput, LedgerRecordQuarantineInput
from patchrings.domain.quarantine import parse_release, with_exclusions
from patchrings.domain.timeutil import iso


class QuarantineSteps(RolloutBase):
    def read_quarantine(self, *, release_allowed: bool = True) -> Gen:
        """Before Ring 0: release what the input asks to release, then read what to exclude.

        A dry run reads (``release_allowed=False``: it changes nothing) so that Ring 0's
        would-install lists leave the quarantined patches out, as the real run will.

        Fail closed: a quarantine that cannot be read (after READ retries) fails the rollout
        before anything is installed; Ring 0 must not re-install a patch it may not know is bad.
        The release (``releaseQuarantine``: entry ids) is a person's explicit request: only a
        rollout started by a person (not ``system:...``) may carry one; it is recorded in the
        ledger with who and the platform's time.
        """
        release, refused = parse_release(self.input.release_quarantine)
        by = str(self.initiator or "")
        if release and (not by or by.lower().startswith("system:")):
            refused, release = "releaseQuarantine needs a rollout started by a person", []
        if release and not release_allowed:
            refused, release = "a dry run releases nothing", []
        if refused:
            self.st.note(iso(self.now), f"quarantine release refused: {refused}")
        try:
            answer = yield from self.activity(
                names.LEDGER_READ_QUARANTINE,
                LedgerReadQuarantineInput(plan_name=self.plan_name(), release=release, by=by, at=iso(self.now),
                                          reason=f"released by rollout {self.rollout_id}", rollout_id=self.rollout_id)
                if release else LedgerReadQuarantineInput(plan_name=self.plan_name(), rollout_id=self.rollout_id),
                retries.WRITE if release else retries.READ,
            )
        except Exception as err:
            raise Stop(FAILED, f"the quarantine of plan {self.plan_name()} could not be read "
                               f"({first_line(err)}); nothing was installed") from err
        answer = answer if isinstance(answer, dict) else {}
        for entry_id in answer.get("released") or []:
            self.st.note(iso(self.now), f"quarantine {entry_id} released by {by}")
        if answer.get("unknown"):
            self.st.note(iso(self.now), f"quarantine release: plan {self.plan_name()} has no entry "
                                        f"{', '.join(str(u) for u in answer['unknown'][:5])}")
        entries = [e for e in answer.get("entries") or [] if isinstance(e, dict)]
        excluded = answer.get("exclusions") if isinstance(answer.get("exclusions"), dict) else {}
        self.quarantine = {"entries": entries, "exclusions": excluded or {}}
        if entries:
            patches = list((excluded or {}).get("kbNumbersToExclude") or []) + list(
                (excluded or {}).get("packageNameMasksToExclude") or [])
            shown = ", ".join((f"KB{p}" if p.isdigit() else p) for p in patches[:10])
            gates = answer.get("activeCount") or len(entries)
            self.st.note(iso(self.now), f"ring {self.resolved.ring_names[0]}: {len(patches)} quarantined "
                                        f"patch(es) excluded ({shown}{', ...' if len(patches) > 10 else ''}) "
                                        f"from {gates} failed gate(s), e.g. {entries[0].get('id')} at "
                                        f"{entries[0].get('at')}; release: releaseQuarantine")
        self.publish()
        if entries and self.resolved.quarantine.wait:
            if release_allowed:
                yield from self.await_quarantine_decision()
            else:
                self.st.note(iso(self.now), f"quarantine.onBadManifest is wait: a real run waits for a person's "
                                            f"decision before ring {self.resolved.ring_names[0]}")
                self.publish()

    def await_quarantine_decision(self) -> Gen:
        """Wait before Ring 0 for a person's decision on the quarantine (``rollout_approvals``)."""
        raise NotImplementedError  # the rollout composes ApprovalSteps, which implements it
        yield  # pragma: no cover

    def plan_excluding_quarantine(self, ring: str) -> dict[str, Any]:
        """The plan with ``ring``'s install block excluding the quarantined patches (a copy: the
        plan's hash and the plan every other ring reads stay as loaded)."""
        excluded = self.quarantine.get("exclusions") or {}
        if not (excluded.get("kbNumbersToExclude") or excluded.get("packageNameMasksToExclude")):
            return self.plan
        install = with_exclusions(self.ring_of(ring).install, excluded)
        rings = [{**r, "install": install} if r.get("name") == ring else r for r in self.plan.get("rings") or []]
        return {**self.plan, "rings": rings}

    def ring_spec_excluding_quarantine(self, ring: str) -> dict[str, Any]:
        """``ring``'s document (``ringSpec``) with its install block excluding the quarantined
        patches (what Ring 0 installs; the plan and every other ring stay as loaded)."""
        spec = self.ring_spec(ring)
        excluded = self.quarantine.get("exclusions") or {}
        if not (excluded.get("kbNumbersToExclude") or excluded.get("packageNameMasksToExclude")):
            return spec
        return {**spec, "install": with_exclusions(self.ring_of(ring).install, excluded)}

    def record_quarantine(self, ring: str, reasons: list[str]) -> Gen:
        """A failed gate: record the patches it blames so the next cycle's Ring 0 excludes them.

        Never fatal (the halt goes on whatever happens here): a record that cannot be written is
        a loud note and an error log line; the people notified of the halt decide."""
        why = f"ring {ring} of rollout {self.rollout_id} failed its gate" + (f": {reasons[0]}" if reasons else "")
        try:
            answer = yield from self.activity(
                names.LEDGER_RECORD_QUARANTINE,
                LedgerRecordQuarantineInput(
                    rollout_id=self.rollout_id, ring=ring,
                    run_id=f"{self.rollout_id}:{ring}" if not self.ring_of(ring).scheduled else None,
                    plan_name=self.plan_name(), plan_hash=self.plan.get("hash"),
                    manifest_hash=(self.manifest or {}).get("hash"), manifest=self.manifest,
                    reason=why, at=iso(self.now)),
                retries.WRITE,
            )
        except Exception as err:
            self.st.note(iso(self.now), f"ring {ring}: THE BAD PATCHES COULD NOT BE QUARANTINED: {first_line(err)}")
            self.publish()
            if not self.ctx.is_replaying:
                log.error("rollout %s: quarantine of ring %s not recorded: %s", self.rollout_id, ring, err)
            return
        entry = (answer or {}).get("entry") if isinstance(answer, dict) else None
        if isinstance(entry, dict):
            patches = [f"KB{k}" for k in entry.get("kbs") or []] + list(entry.get("packages") or [])
            self.st.note(iso(self.now), f"ring {ring}: quarantined {', '.join(patches[:10])}"
                                        f"{' ...' if len(patches) > 10 else ''} ({entry.get('source')}): the next "
                                        f"rollout's Ring 0 excludes them until released (entry {entry.get('id')})")
        else:
            self.st.note(iso(self.now), f"ring {ring}: nothing was installed to quarantine")
        self.publish()
