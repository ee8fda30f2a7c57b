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

The API's view (issue 9): a running ring names the child orchestration doing its work
(``instance``: ring_direct ``{rollout}:{ring}[:attempt]``, run_results ``{rollout}:{ring}:run:{n}``);
ring_direct, wave and verify publish a small custom status of their own (wave n of m, VMs
installing / verifying, health phase and until when), which the HTTP API reads by those
deterministic ids, so counts move while a ring runs without this document or the rollout's history
growing. :func:`ring_view`, :func:`manifest_view` and :func:`diff_view` build what
``GET /api/rollouts/{id}`` shows from this document, the children's statuses and the ledger.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from patchrings.domain.arm_ids import last_segment
from patchrings.domain.membership import LEFT_RING

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
            "events": {"duplicates": 0},
        }
        return cls(doc)

    # ------------------------------------------------------------------ reading
    @property
    def state(self) -> str:
        return str(self.doc["state"])

    @property
    def outcome(self) -> str | None:
        return self.doc.get("outcome")

    @property
    def current_ring(self) -> str | None:
        return self.doc.get("currentRing")

    def touch(self, at: str) -> None:
        """The document changed at ``at`` (published now)."""
        self.doc["updatedAt"] = at

    def count_event(self, kind: str) -> None:
        """One more maintenance event of ``kind`` (``duplicates``, ``refused``) not acted on."""
        events = self.doc["events"]
        events[kind] = int(events.get(kind, 0)) + 1

    # ------------------------------------------------------------------ rings
    def ring(self, name: str) -> dict[str, Any]:
        for ring in self.doc["rings"]:
            if ring["name"] == name:
                return ring  # type: ignore[no-any-return]
        raise KeyError(name)

    def set_phase(self, ring: str, phase: str, at: str, **extra: Any) -> None:
        """``extra`` may carry ``until`` (when this phase ends) and ``instance`` (the child
        orchestration doing the work, whose own status the API reads); both belong to this phase
        only and are cleared by the next one."""
        entry = self.ring(ring)
        entry["phase"] = phase
        entry.pop("until", None)
        entry.pop("instance", None)
        entry.update({k: v for k, v in extra.items() if not (k in ("until", "instance") and v is None)})
        self.doc["currentRing"] = ring
        self.doc["updatedAt"] = at

    def set_target(self, ring: str, target: dict[str, Any] | None) -> None:
        """The scheduled run the ring targets (``next_run`` / ``promotion_target`` shape)."""
        self.ring(ring)["target"] = target

    def set_opened(self, ring: str, opened: bool) -> None:
        """Whether the ring's gate is open (retag / assignment done and not closed again)."""
        self.ring(ring)["opened"] = opened

    def set_members(self, ring: str, members: Any, schedule_issues: list[dict[str, Any]]) -> None:
        """The ring's size as its gate saw it and the VMs a scheduled run will not patch."""
        entry = self.ring(ring)
        entry["members"] = members
        entry["scheduleIssues"] = schedule_issues

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

    def set_manifest_diff(self, diff: dict[str, Any]) -> None:
        """Per later ring, counts of what its machines would install vs the manifest (the lists
        are in the ledger's rollout row; the API shows them)."""
        self.doc["manifestDiff"] = diff_summary(diff)

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

    def wait_for_resume(self, until: str, ring: str | None) -> None:
        """Halted, waiting for a Resume until ``until`` (the state stays ``halted``)."""
        self.wait_for("resume", until=until, ring=ring)
        self.doc["state"] = HALTED

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
    diff = doc.get("manifestDiff")
    if isinstance(diff, dict):
        out["manifestDiff"] = _short_dict(diff, text, max(items, 1))
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


# ---------------------------------------------------------------------- progress and the API's view
# Children (ring_direct, wave, verify) publish a small custom status of their own; the HTTP API
# reads them by their deterministic instance ids while a ring runs, so the counts move without
# the rollout's history or custom status growing (issue 9).

#: Most per-VM rows a ring's view carries (the ledger has them all).
MAX_VM_ROWS = 500

# What each ring phase means to a person (``phaseText``); ``{until}`` is filled in when known.
PHASE_TEXT = {
    "pending": "not started",
    "installing": "installing",
    "waiting-for-run": "waiting for its scheduled run",
    "gating-run": "deciding whether its scheduled run may go ahead",
    "run-authorised": "scheduled run authorised, waiting for it to finish",
    "collecting-and-verifying": "collecting results and verifying health",
    "passed": "passed its gate",
    "failed": "failed its gate",
    "inconclusive": "gate inconclusive: a person decides",
    "awaiting-approval": "waiting for approval",
    "promoting": "promoting",
    "promoted": "promoted",
    "coverage-refused": "not opened: OS families Ring 0 did not cover",
    "rejected": "rejected",
    "assessed": "assessed (dry run)",
    "halted": "halted",
    "cancelled": "cancelled",
}

HEALTH_PHASE_TEXT = {"wait": "waiting before the first health check", "elastic": "polling health",
                     "stayHealthy": "stay-healthy"}


def verify_instances(first: str, count: int) -> list[str]:
    """The instance ids of a run's verify instances side by side (a scheduled ring's chunks,
    ``run_results``' ``verifyInstance`` / ``verifyInstances``; a wave's read bursts): ``first``,
    then ``first:1``, ``first:2`` ... -- not only the ids that end with ``:verify``."""
    return [first] + [f"{first}:{i}" for i in range(1, max(1, int(count)))]


def merged_health(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """Several verify instances' custom statuses (``verify._progress``) as one: VMs per health
    phase summed, the phase most VMs are in, and the latest ``until`` among the instances whose
    own phase it is (the phase lasts until its last instance leaves it)."""
    phases: dict[str, int] = {}
    checked = 0
    for status in statuses:
        checked += int(status.get("checked") or 0)
        for phase, n in (status.get("healthPhases") or {}).items():
            phases[str(phase)] = phases.get(str(phase), 0) + int(n or 0)
    open_phases = {k: v for k, v in phases.items() if k != "done"}
    current = max(open_phases, key=lambda k: (open_phases[k], k)) if open_phases else ("done" if phases else None)
    until = max((str(s["until"]) for s in statuses if s.get("healthPhase") == current and s.get("until")),
                default=None)
    return {"healthPhases": phases, "healthPhase": current, "until": until, "checked": checked}


def short_name(vm_id: Any) -> str:
    """The last segment of an ARM id (``.../virtualMachines/web-1`` -> ``web-1``)."""
    return last_segment(str(vm_id or ""))


def vm_kind(vm_id: Any, kind: Any = None) -> str:
    """``arc`` for Azure Arc machines (Microsoft.HybridCompute), else ``vm``."""
    if kind in ("vm", "arc"):
        return str(kind)
    return "arc" if "/microsoft.hybridcompute/" in str(vm_id or "").lower() else "vm"


def vm_row(row: dict[str, Any]) -> dict[str, Any]:
    """One VM's line for the API from its ledger row: short name first, the full id one field away."""
    vm_id = str(row.get("vm") or row.get("id") or "")
    verdict: dict[str, Any] = row["verdict"] if isinstance(row.get("verdict"), dict) else {}
    result: dict[str, Any] = row["result"] if isinstance(row.get("result"), dict) else {}
    error = row.get("error") if isinstance(row.get("error"), dict) else None
    reasons = [str(r) for r in (verdict.get("reasons") or [])][:10]
    if not reasons and error:
        reasons = [f"{error.get('code')}: {error.get('message')}"[:300]]
    out: dict[str, Any] = {
        "name": str(row.get("name") or short_name(vm_id)),
        "id": vm_id,
        "kind": vm_kind(vm_id, row.get("kind")),
        "os": row.get("os"),
        "install": verdict.get("install") or row.get("state"),
        "installStatus": result.get("status"),
        "health": verdict.get("health"),
        # a VM the install's live read found no longer in the ring (ARG was stale) is never judged
        "outcome": verdict.get("outcome") or (LEFT_RING if row.get("state") == LEFT_RING
                                              else "pending" if not verdict else None),
        "reasons": reasons,
        "runId": row.get("runId"),
    }
    installed = result.get("installed")
    if isinstance(installed, list):
        out["installed"] = [str(i) for i in installed[:30]]
    return out


def phase_text(ring: dict[str, Any], progress: dict[str, Any] | None = None) -> str:
    """``installing wave 2 of 3``, ``stay-healthy until T``, ``waiting for approval until T``..."""
    phase = str(ring.get("phase") or "pending")
    text = PHASE_TEXT.get(phase, phase)
    progress = progress or {}
    if phase == "installing" and progress.get("waves"):
        text = f"installing wave {progress.get('wave') or 1} of {progress['waves']}"
        step = progress.get("step")
        if step == "verifying" and progress.get("healthPhase") in HEALTH_PHASE_TEXT:
            text += f": {HEALTH_PHASE_TEXT[progress['healthPhase']]}"
        elif step:
            text += f": {step}"
    elif phase == "collecting-and-verifying" and progress.get("healthPhase") in HEALTH_PHASE_TEXT:
        text = f"verifying: {HEALTH_PHASE_TEXT[progress['healthPhase']]}"
    until = ring_until(ring, progress)
    if until:
        text += f" until {until}"
    return text


def ring_until(ring: dict[str, Any], progress: dict[str, Any] | None = None) -> str | None:
    """Until when the ring's current step lasts, when known."""
    if progress and progress.get("until"):
        return str(progress["until"])
    return str(ring["until"]) if ring.get("until") else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: The gate reason of a VM a direct ring never started (``orchestrators.verdicts.gate_for``).
NOT_STARTED_REASON = "not started"


def ring_counts(total: int | None, rows: list[dict[str, Any]],
                progress: dict[str, Any] | None, skipped: int = 0) -> dict[str, int | None]:
    """Counts that include VMs not started and always add up:

    ``vms == passed + failed + inconclusive + inFlight + skipped + notStarted`` where the first
    three are finished VMs by outcome (ledger rows), ``inFlight`` the VMs of the running wave (of
    which ``installing`` / ``verifying`` say what they do now), ``skipped`` the VMs the ring will
    never start (its error budget was spent, or a halt stopped its waves) and ``notStarted`` the
    VMs not reached yet (a ring not run, a cancelled run). ``finished`` is the first three's sum."""
    counts: dict[str, int | None] = {"passed": 0, "failed": 0, "inconclusive": 0}
    tally = {"passed": 0, "failed": 0, "inconclusive": 0}
    for row in rows:
        outcome = row.get("outcome")
        tally[{"pass": "passed", "fail": "failed"}.get(str(outcome), "inconclusive")] += 1
    counts.update(tally)
    finished = len(rows)
    progress = progress or {}
    in_flight = int(progress.get("inFlight") or 0)
    skipped = max(int(progress.get("skipped") or 0), skipped)
    if total is not None:
        # A wave writes its VMs' rows to the ledger before the ring moves on, and the ring's status
        # counts them in flight until it does: such a VM is finished, never counted twice.
        in_flight = min(in_flight, max(0, int(total) - finished - skipped))
    counts["installing"] = int(progress.get("installing") or 0)
    counts["verifying"] = int(progress.get("verifying") or 0)
    counts["inFlight"] = in_flight
    counts["skipped"] = skipped
    counts["finished"] = finished
    if total is None and not finished and not in_flight and not skipped:
        # a ring not resolved yet: its size is not known (never a misleading 0)
        counts["vms"] = counts["notStarted"] = None
        return counts
    vms = max(int(total) if total is not None else 0, finished + in_flight + skipped)
    counts["vms"] = vms
    counts["notStarted"] = vms - finished - in_flight - skipped
    return counts


def _ring_total(ring: dict[str, Any], progress: dict[str, Any] | None) -> int | None:
    """The ring's size: the running child's own count, else the most any record says (the
    orchestrator's ``counts.vms`` counts verdicts only, so the VMs it skipped are added; a
    scheduled ring's ``members`` come from opening its gate)."""
    if progress and _int(progress.get("vms")) is not None:
        return _int(progress.get("vms"))
    counts_doc: dict[str, Any] = ring["counts"] if isinstance(ring.get("counts"), dict) else {}
    members = ring.get("members")
    if isinstance(members, dict):
        members = members.get("count")
    known = [n for n in (_int(counts_doc.get("vms")), _int(members)) if n is not None]
    if _int(counts_doc.get("vms")) is not None:
        known.append(int(counts_doc["vms"]) + (_int(counts_doc.get("skipped")) or 0))
    dry = ring.get("dryRun")
    if isinstance(dry, dict) and _int(dry.get("vms")) is not None:
        known.append(int(dry["vms"]))  # a dry run's ring: its VMs, none started
    return max(known) if known else None


def skipped_rows(gate: dict[str, Any] | None, known: set[str]) -> list[dict[str, Any]]:
    """Rows for the VMs the gate names as never started (not in the ledger: nothing ran there)."""
    rows = []
    for reason in (gate or {}).get("reasons") or []:
        if not isinstance(reason, dict):
            continue
        vm_id = str(reason.get("vm") or "")
        if vm_id and vm_id not in known and str(reason.get("reason") or "").startswith(NOT_STARTED_REASON):
            known.add(vm_id)
            rows.append({"name": short_name(vm_id), "id": vm_id, "kind": vm_kind(vm_id), "os": None,
                         "install": "not-started", "installStatus": None, "health": None,
                         "outcome": "not-started", "reasons": [str(reason.get("reason"))[:300]], "runId": None})
    return rows


def ring_view(ring: dict[str, Any], rows: list[dict[str, Any]], progress: dict[str, Any] | None = None,
              *, halted: bool = False, current: bool = False) -> dict[str, Any]:
    """One ring as the API shows it: phase (+ text and until), moving counts, per-VM rows, gate."""
    vms = [vm_row(r) for r in rows]
    gate = ring.get("gate") if isinstance(ring.get("gate"), dict) else None
    never = skipped_rows(gate, {v["id"] for v in vms})
    vms.extend(never)
    vms.sort(key=lambda v: (v["outcome"] == "pass", v["name"].lower()))
    counts_doc: dict[str, Any] = ring["counts"] if isinstance(ring.get("counts"), dict) else {}
    total = _ring_total(ring, progress)
    # VMs that left the ring before their install (``left-ring``) were never started: skipped
    skipped = max(_int(counts_doc.get("skipped")) or 0, len(never)) + sum(1 for v in vms if v["outcome"] == LEFT_RING)
    phase = str(ring.get("phase") or "pending")
    shown = dict(ring)
    if halted and current and phase not in ("passed", "failed", "inconclusive", "rejected"):
        # the halt's own deadline (resume by) is in waitingFor; the phase's deadline no longer holds
        shown.update(phase="halted", until=None)
        progress = None
    view = {
        "name": ring.get("name"),
        "patching": ring.get("patching"),
        "phase": shown["phase"] or "pending",
        "phaseText": phase_text(shown, progress),
        "until": ring_until(shown, progress),
        "current": current,
        "progress": progress or None,
        "counts": ring_counts(total, [v for v in vms if v["outcome"] not in ("pending", "not-started", LEFT_RING)],
                              progress, skipped),
        "gate": gate,
        "gateReasons": [r for r in (gate or {}).get("reasons") or []][:MAX_REASONS],
        "target": ring.get("target"),
        "opened": ring.get("opened"),
        "vms": vms[:MAX_VM_ROWS],
    }
    if len(vms) > MAX_VM_ROWS:
        view["vmsOmitted"] = len(vms) - MAX_VM_ROWS
    return view


def manifest_view(manifest: dict[str, Any] | None, summary: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The manifest's contents for a person: KBs with their titles and classifications (from
    Ring 0's install results, ``details``) and ``name=version`` packages; from the ledger's full
    manifest, else the status document's summary."""
    if not isinstance(manifest, dict):
        if not isinstance(summary, dict):
            return None
        kbs_raw = summary.get("windowsKbs") or []
        packages = summary.get("linuxPackages") or []
        out_summary: dict[str, Any] = {"hash": summary.get("hash"), "cutoff": summary.get("cutoff"),
                                       "windows": [{"kb": _kb(k)} for k in kbs_raw],
                                       "linux": [{"package": str(p)} for p in packages],
                                       "excluded": [], "coverage": []}
        return out_summary
    details: dict[str, Any] = manifest["details"] if isinstance(manifest.get("details"), dict) else {}
    kbs = [str(k) for k in (manifest.get("windows") or {}).get("kbNumbers") or []]
    windows = []
    for kb in kbs:
        info = details.get(_kb(kb)) or details.get(kb) or {}
        windows.append({"kb": _kb(kb), "title": info.get("title"),
                        "classifications": list(info.get("classifications") or [])})
    linux = []
    for package in [str(p) for p in (manifest.get("linux") or {}).get("packages") or []]:
        info = details.get(package) or {}
        linux.append({"package": package, "classifications": list(info.get("classifications") or [])})
    return {"hash": manifest.get("hash"), "cutoff": manifest.get("cutoff"), "windows": windows, "linux": linux,
            "excluded": list(manifest.get("excluded") or [])[:100], "coverage": list(manifest.get("coverage") or []),
            "sources": [short_name(s) for s in manifest.get("sources") or []][:100]}


def _kb(value: Any) -> str:
    text = str(value or "").strip()
    return text if text.upper().startswith("KB") else f"KB{text}"


def manifest_details(results: list[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Title and classifications of each manifest entry, from Ring 0's install results
    (``PatchInstallationDetail``: ``kbId``, ``name``, ``version``, ``classifications``); keyed
    ``KB<n>`` for Windows and ``name=version`` for Linux."""
    wanted_kbs = {_kb(k).upper() for k in (manifest.get("windows") or {}).get("kbNumbers") or []}
    wanted_pkgs = {str(p) for p in (manifest.get("linux") or {}).get("packages") or []}
    out: dict[str, dict[str, Any]] = {}
    for entry in results:
        result: dict[str, Any] = entry["result"] if isinstance(entry.get("result"), dict) else {}
        for patch in result.get("patches") or []:
            if not isinstance(patch, dict):
                continue
            classes = [str(c) for c in patch.get("classifications") or []][:5]
            kb = str(patch.get("kbId") or "").strip()
            if kb and _kb(kb).upper() in wanted_kbs and _kb(kb) not in out:
                out[_kb(kb)] = {"title": _short(str(patch.get("name") or ""), 200) or None, "classifications": classes}
                continue
            key = f"{patch.get('name')}={patch.get('version')}"
            if key in wanted_pkgs and key not in out:
                out[key] = {"classifications": classes}
    return out


_DIFF_COUNTS = ("machines", "assessed", "notAssessed", "wouldInstall", "notInManifestCount",
                "inManifestNotApplicableCount")


def diff_summary(diff: dict[str, Any] | None) -> dict[str, Any] | None:
    """The small form of a ``manifest_diff`` answer for the custom status: counts per ring."""
    if not isinstance(diff, dict):
        return None
    if diff.get("unavailable"):
        return {"unavailable": True, "reason": _short(diff.get("reason"), 200)}
    rings = []
    for entry in diff.get("rings") or []:
        if not isinstance(entry, dict):
            continue
        item: dict[str, Any] = {"ring": entry.get("ring")}
        if entry.get("error"):
            error = entry["error"] if isinstance(entry["error"], dict) else {"message": str(entry["error"])}
            item["error"] = _short(f"{error.get('code') or ''} {error.get('message') or ''}".strip(), 200)
        else:
            item.update({k: entry.get(k) for k in _DIFF_COUNTS if k in entry})
        rings.append(item)
    return {"rings": rings[:20]}


def diff_view(diff: dict[str, Any] | None, summary: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The manifest's diff per later ring for the API: the ledger's full answer (lists of at
    most 20 short entries each), else the status document's counts."""
    if not isinstance(diff, dict):
        return summary if isinstance(summary, dict) else None
    if diff.get("unavailable"):
        return {"unavailable": True, "reason": diff.get("reason"), "rings": []}
    rings = []
    for entry in diff.get("rings") or []:
        if isinstance(entry, dict):
            rings.append({k: v for k, v in entry.items() if k not in ("queries", "pages")})
    return {"rings": rings, "maxAgeHours": diff.get("maxAgeHours")}
