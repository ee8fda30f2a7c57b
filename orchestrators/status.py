"""The rollout state document: the orchestration's custom status and the API's status view.

Why: the HTTP status endpoint, the approval handler (which must know what is pending, for which
ring and manifest) and the demo UI all read one document, so the orchestrator keeps it complete
and small (custom status travels with every status query; Azure Storage moves payloads over
64 KB to blobs). Per-VM detail lives in the ledger; this document carries counts and at most
``MAX_REASONS`` reasons per gate. Pure: times are passed in by the orchestrator.
"""

from __future__ import annotations

import copy
from typing import Any

MAX_REASONS = 25

# Rollout states.
RUNNING = "running"
WAITING = "waiting"
HALTED = "halted"
COMPLETED = "completed"
FAILED = "failed"
DRY_RUN_DONE = "dry-run-completed"


def approve_url(rollout_id: str, ring: str, verdict: str = "approve") -> str:
    """Relative URL of the approval endpoint (the orchestrator does not know the host name)."""
    return f"/api/rollouts/{rollout_id}/rings/{ring}/{verdict}"


class RolloutStatus:
    """Mutable builder around the JSON document; ``doc`` is what goes into custom status."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    @classmethod
    def new(
        cls,
        *,
        rollout_id: str,
        plan: dict[str, Any],
        initiator: str | None,
        started_at: str,
        dry_run: bool,
        trigger: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> RolloutStatus:
        rings = []
        for ring in plan.get("rings", []):
            rings.append(
                {
                    "name": ring.get("name"),
                    "patching": ring.get("patching"),
                    "phase": "pending",
                    "counts": {},
                    "gate": None,
                    "runs": [],
                    "target": None,
                    "opened": False,
                }
            )
        doc = {
            "rolloutId": rollout_id,
            "plan": {"name": plan.get("name"), "version": plan.get("version"), "hash": plan.get("hash")},
            "initiator": initiator,
            "reason": reason,
            "trigger": trigger or {"kind": "manual"},
            "startedAt": started_at,
            "updatedAt": started_at,
            "dryRun": dry_run,
            "state": RUNNING,
            "currentRing": None,
            "rings": rings,
            "manifest": None,
            "approvals": [],
            "waitingFor": None,
            "halted": None,
            "outcome": None,
            "notes": [],
            "events": {"duplicates": 0, "ignored": 0},
        }
        return cls(doc)

    # ------------------------------------------------------------------ rings
    def ring(self, name: str) -> dict[str, Any]:
        for ring in self.doc["rings"]:
            if ring["name"] == name:
                return ring  # type: ignore[no-any-return]
        raise KeyError(name)

    def set_phase(self, ring: str, phase: str, at: str, **extra: Any) -> None:
        entry = self.ring(ring)
        entry["phase"] = phase
        entry.update(extra)
        self.doc["currentRing"] = ring
        self.doc["updatedAt"] = at

    def set_counts(self, ring: str, counts: dict[str, int]) -> None:
        self.ring(ring)["counts"] = dict(counts)

    def set_gate(self, ring: str, gate: dict[str, Any]) -> None:
        """Store a gate decision, trimming per-VM reasons so the document stays small."""
        trimmed = copy.deepcopy(gate)
        reasons = trimmed.get("reasons") or []
        if len(reasons) > MAX_REASONS:
            trimmed["reasons"] = reasons[:MAX_REASONS]
            trimmed["reasonsOmitted"] = len(reasons) - MAX_REASONS
        self.ring(ring)["gate"] = trimmed

    def add_run(self, ring: str, run: dict[str, Any]) -> None:
        self.ring(ring)["runs"].append(run)

    def update_run(self, ring: str, correlation_id: str, **fields: Any) -> None:
        for run in self.ring(ring)["runs"]:
            if run.get("correlationId", "").lower() == correlation_id.lower():
                run.update(fields)
                return
        self.add_run(ring, {"correlationId": correlation_id, **fields})

    # ------------------------------------------------------------------ rollout-level facts
    def set_manifest(self, manifest: dict[str, Any]) -> None:
        """Keep the manifest's hash and content size (the full list is in the ledger/output)."""
        self.doc["manifest"] = summarize_manifest(manifest)

    def add_approval(self, entry: dict[str, Any]) -> None:
        self.doc["approvals"].append(entry)

    def wait_for(
        self,
        what: str,
        *,
        until: str | None,
        ring: str | None = None,
        manifest_hash: str | None = None,
        approvers: list[str] | None = None,
        approve_url: str | None = None,
        **extra: Any,
    ) -> None:
        self.doc["waitingFor"] = {
            "what": what,
            "until": until,
            "ring": ring,
            "manifestHash": manifest_hash,
            "approvers": approvers,
            "approveUrl": approve_url,
            **extra,
        }
        self.doc["state"] = WAITING

    def stop_waiting(self) -> None:
        self.doc["waitingFor"] = None
        if self.doc["state"] == WAITING:
            self.doc["state"] = RUNNING

    def note(self, at: str, text: str) -> None:
        notes = self.doc["notes"]
        notes.append({"at": at, "text": text})
        if len(notes) > 50:
            del notes[: len(notes) - 50]

    def halt(self, at: str, by: str | None, reason: str) -> None:
        self.doc["halted"] = {"at": at, "by": by, "reason": reason}
        self.doc["state"] = HALTED
        self.doc["waitingFor"] = None

    def resume(self, at: str, by: str | None) -> None:
        self.note(at, f"resumed by {by or 'unknown'}")
        self.doc["halted"] = None
        self.doc["state"] = RUNNING

    def finish(self, state: str, at: str, outcome: str) -> None:
        self.doc["state"] = state
        self.doc["outcome"] = outcome
        self.doc["waitingFor"] = None
        self.doc["updatedAt"] = at


def summarize_manifest(manifest: dict[str, Any], limit: int = 200) -> dict[str, Any]:
    """Hash, counts and (up to ``limit`` of) the pinned KBs / packages an approver looks at."""
    kbs = list((manifest.get("windows") or {}).get("kbNumbers") or [])
    packages = list((manifest.get("linux") or {}).get("packages") or [])
    summary: dict[str, Any] = {
        "hash": manifest.get("hash"),
        "windowsCount": len(kbs),
        "linuxCount": len(packages),
        "windowsKbs": kbs[:limit],
        "linuxPackages": packages[:limit],
        "excludedCount": len(manifest.get("excluded") or []),
    }
    if manifest.get("cutoff"):
        summary["cutoff"] = manifest["cutoff"]
    return summary


def count_verdicts(verdicts: list[dict[str, Any]]) -> dict[str, int]:
    """Per-ring counts from VmVerdict dicts (``install``/``health`` outcomes)."""
    counts: dict[str, int] = {"vms": len(verdicts)}
    for verdict in verdicts:
        for facet in ("install", "health"):
            value = verdict.get(facet)
            if isinstance(value, dict):
                value = value.get("outcome") or value.get("state")
            if value:
                key = f"{facet}:{value}"
                counts[key] = counts.get(key, 0) + 1
    return counts
