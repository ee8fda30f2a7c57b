"""The rollout state document: the orchestration's custom status and the API's status view.

Why: the HTTP status endpoint, the approval handler (which must know what is pending, for which
ring and manifest) and the demo UI all read one document, so the orchestrator keeps it complete
and small (custom status travels with every status query; Azure Storage moves payloads over
64 KB to blobs). Per-VM detail lives in the ledger; this document carries counts and at most
``MAX_REASONS`` reasons per gate. Pure: times are passed in by the orchestrator.

Size bound (issue 14.2): the Durable extension fails an orchestration whose custom status is over
16 KB (UTF-16 bytes of its JSON). The orchestrator publishes :func:`bounded` of the document, which
keeps the newest few approvals / notes / runs, a manifest *summary* (hash, counts, a few KBs and
packages: the full manifest is in the ledger and the output) and short texts, then trims further in
stages until the UTF-16 size is at most ``STATUS_BUDGET`` (10 KB; the limit is 16 KB) whatever the fleet,
manifest or plan size.
"""

from __future__ import annotations

import copy
import json
from typing import Any

MAX_REASONS = 25
# Custom status budget in UTF-16 bytes of its JSON (the extension's limit is 16 KB).
STATUS_BUDGET = 10 * 1024

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


def status_size(doc: Any) -> int:
    """Size as the Durable extension measures custom status: UTF-16 bytes of its JSON."""
    return len(json.dumps(doc, default=str).encode("utf-16-le"))


def _short(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "\u2026"
    return value


def _tail(items: Any, keep: int) -> list[Any]:
    items = list(items or [])
    return items[-keep:] if keep > 0 else []


# Trimming stages: (approvals, notes, runs per ring, reasons per gate, manifest items, text length).
_STAGES = ((10, 15, 5, 10, 10, 300), (5, 8, 3, 5, 5, 200), (2, 4, 2, 3, 3, 100), (1, 2, 1, 1, 0, 80),
           (0, 1, 0, 0, 0, 60))


def bounded(doc: dict[str, Any], budget: int = STATUS_BUDGET) -> dict[str, Any]:
    """A copy of the status document whose UTF-16 JSON size is at most ``budget`` bytes.

    Lists keep their newest entries and say how many were left out (``...Omitted``); long texts
    are cut. Everything dropped here is in the ledger (approvals, ring runs, per-VM results) or
    in the orchestration's output (the manifest).
    """
    out: dict[str, Any] = {}
    for stage in _STAGES:
        out = _trim(doc, stage)
        if status_size(out) <= budget:
            return out
    # Pathological plans (hundreds of rings): keep the rollout-level facts and the current ring.
    current = doc.get("currentRing")
    out["rings"] = [_ring_min(r) for r in doc.get("rings") or [] if r.get("name") == current]
    out["ringsOmitted"] = len(doc.get("rings") or []) - len(out["rings"])
    return out


def _ring_min(ring: dict[str, Any]) -> dict[str, Any]:
    gate = ring.get("gate") or None
    return {"name": _short(ring.get("name"), 60), "phase": ring.get("phase"),
            "gate": {"outcome": gate.get("outcome")} if isinstance(gate, dict) else None}


def _trim(doc: dict[str, Any], stage: tuple[int, ...]) -> dict[str, Any]:
    approvals, notes, runs, reasons, items, text = stage
    out = dict(doc)
    all_approvals = list(doc.get("approvals") or [])
    out["approvals"] = [{k: _short(v, text) if not isinstance(v, dict) else _short_dict(v, text)
                         for k, v in a.items()} for a in _tail(all_approvals, approvals)]
    if len(all_approvals) > approvals:
        out["approvalsOmitted"] = len(all_approvals) - approvals
    all_notes = list(doc.get("notes") or [])
    out["notes"] = [{"at": n.get("at"), "text": _short(n.get("text"), text)} for n in _tail(all_notes, notes)]
    if len(all_notes) > notes:
        out["notesOmitted"] = len(all_notes) - notes
    manifest = doc.get("manifest")
    if isinstance(manifest, dict):
        packages = list(manifest.get("linuxPackages") or [])[:items]
        out["manifest"] = {**manifest, "windowsKbs": list(manifest.get("windowsKbs") or [])[:items],
                           "linuxPackages": [_short(p, text) for p in packages]}
    waiting = doc.get("waitingFor")
    if isinstance(waiting, dict):
        # Kept whole: the approval endpoint reads the pending request and its approvers from here
        # (bounded by the plan schema: at most 25 approvers per ring); only free texts are cut.
        out["waitingFor"] = {k: _short(v, max(text, 200)) if k == "reason" else v for k, v in waiting.items()}
    halted = doc.get("halted")
    if isinstance(halted, dict):
        out["halted"] = _short_dict(halted, text)
    out["outcome"] = _short(doc.get("outcome"), max(text, 200))
    out["reason"] = _short(doc.get("reason"), text)
    out["rings"] = [_trim_ring(r, runs, reasons, text, items) for r in doc.get("rings") or []]
    return out


def _keeps_whole(key: str) -> bool:
    """Identifiers, instants and URLs are never cut (an id cut short is a wrong id)."""
    return key in ("vm", "id", "hash") or key.endswith(("Id", "Url", "At", "Start", "End", "Hash")) or key in (
        "until", "start", "end", "t40", "landBy", "at")


def _short_dict(value: dict[str, Any], text: int, list_items: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, str):
            out[key] = item if _keeps_whole(key) else _short(item, text)
        elif isinstance(item, list):
            out[key] = [_short(i, text) if not isinstance(i, dict) else _short_dict(i, text, list_items)
                        for i in item[:list_items]]
            if len(item) > list_items:
                out[f"{key}Omitted"] = len(item) - list_items
        elif isinstance(item, dict):
            out[key] = _short_dict(item, text, list_items)
        else:
            out[key] = item
    return out


def _trim_ring(ring: dict[str, Any], runs: int, reasons: int, text: int, items: int) -> dict[str, Any]:
    out = dict(ring)
    out["name"] = _short(ring.get("name"), 60)
    all_runs = list(ring.get("runs") or [])
    out["runs"] = [_short_dict(r, text, 3) for r in _tail(all_runs, runs)]
    if len(all_runs) > runs:
        out["runsOmitted"] = len(all_runs) - runs
    gate = ring.get("gate")
    if isinstance(gate, dict):
        all_reasons = list(gate.get("reasons") or [])
        trimmed = {k: v for k, v in gate.items() if k != "reasons"}
        trimmed["reasons"] = [_short_dict(r, text) if isinstance(r, dict) else _short(r, text)
                              for r in all_reasons[:reasons]]
        if len(all_reasons) > reasons:
            trimmed["reasonsOmitted"] = int(gate.get("reasonsOmitted") or 0) + len(all_reasons) - reasons
        out["gate"] = _short_dict(trimmed, text, max(reasons, 1))
    issues = list(ring.get("scheduleIssues") or [])
    if "scheduleIssues" in ring:
        out["scheduleIssues"] = [_short_dict(i, text) for i in issues[:items]]
    target = ring.get("target")
    if isinstance(target, dict):
        out["target"] = _short_dict(target, text)
    for key in ("dryRun",):
        if isinstance(ring.get(key), dict):
            out[key] = _short_dict(ring[key], text, items)
    return out


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
