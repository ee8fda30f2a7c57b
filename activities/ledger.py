"""Ledger activities: small idempotent writes (and the gate read) the orchestrations make.

Why activities: orchestrators may not do I/O. Every write is keyed by natural ids, so a
replayed or retried activity lands on the same row (see :mod:`patchrings.ledger`); approvals
and events are append-only and report ``written: False`` for a duplicate.

Inputs (all JSON dicts; other keys are stored as columns, nested values as JSON):

* ``ledger_record_rollout``    ``{rolloutId, ...}``
* ``ledger_record_ring_run``   ``{rolloutId, ring, runId, ...}``
* ``ledger_record_vm_results`` ``{rolloutId, ring, runId, results: [{vm, ...}], verdicts?: [{vm, ...}]}``
  (one row per VM; a VM's verdict is stored in its row as ``verdict``)
* ``ledger_record_approval``   ``{rolloutId, ring, manifestHash, decision: {...}, at, decisionId?, ...}``
  (without ``decisionId`` the id is a hash of the payload, so a retried write collapses)
* ``ledger_record_event``      ``{configurationId, eventType, eventId, ...}``
* ``ledger_read_gate`` has two forms:

  - the guard's ``{correlationId, ring?, configurationId?}`` →
    ``{"authorised": bool, "reason": str, "rolloutId": str|None}``: authorised only when a
    rollout recorded ``authorised: true`` for exactly this run (ring-run row with
    ``runId = correlationId``) and that rollout is not halted/failed. No record = not authorised.
    When authorised it also carries what ``guard.install_drift`` compares the configuration
    with (issue 13.16): ``manifestHash`` (the run's), ``manifest`` (the rollout row's pinned
    manifest, only when its hash is that one) and ``rebootSetting`` (the run row's: the
    configuration's setting right after the pin).
  - ``{rolloutId, ring, manifestHash?}`` →
    ``{"decision": "approved"|"rejected"|None, "approval", "rollout", "ringRuns"}``: the latest
    approval bound to exactly (rollout, ring, manifest hash).

* ``ledger_check_decision`` ``{rolloutId, kind: "approval"|"resume", event: {...}, at}`` →
  ``{"accepted": bool, "reason": str, "decisionId": str|None, "acceptInconclusive"?: [str]}``
  (the last: the VMs the approver accepted as inconclusive, from the *recorded* row): does a raised
  ``ApprovalDecision`` / ``Resume`` event match an Approvals row the HTTP API recorded as
  ``submitted`` (domain ``match_recorded``)? When it does not, a refusal row (``outcome:
  "refused"``, ``reason``, the event's fields) is appended, keyed by a hash of the input so a
  retried activity writes it once. The orchestrator accepts only matching events (issue 13.13).
* ``ledger_record_quarantine`` ``{rolloutId, ring, runId?, planName, planHash?, manifestHash?,
  manifest?, reason, at}`` -> ``{"written": bool, "entry": {...}|None}``: after a *failed* gate,
  reads that ring's per-VM rows and records the patches they blame (domain
  ``quarantine.suspects``) as the plan's quarantine entry ``<rolloutId>:<ring>`` (create-only,
  so a retry never undoes a release); ``entry`` None when nothing was installed to blame.
* ``ledger_read_quarantine`` ``{planName, release?: [ids], by?, at?, reason?}`` ->
  ``{"entries": [active entries], "exclusions": {kbNumbersToExclude, packageNameMasksToExclude},
  "released": [ids released now or before], "unknown": [ids the plan does not have]}``: releases
  the named entries first (a person's explicit request, carried in the rollout input), then
  answers what the next Ring 0 must exclude.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import azure.durable_functions as df

from activities import Payload
from patchrings import deps
from patchrings.boundary.activities import (
    LedgerCheckDecisionInput,
    LedgerReadGateInput,
    LedgerReadQuarantineInput,
    LedgerRecordApprovalInput,
    LedgerRecordEventInput,
    LedgerRecordQuarantineInput,
    LedgerRecordRingRunInput,
    LedgerRecordRolloutInput,
    LedgerRecordVmResultsInput,
)
from patchrings.boundary.codec import from_payload, to_payload
from patchrings.domain import quarantine
from patchrings.domain.approval import match_recorded
from patchrings.ports import LedgerStore

bp = df.Blueprint()

__all__ = [
    "bp",
    "ledger_check_decision_core",
    "ledger_read_gate_core",
    "ledger_read_quarantine_core",
    "ledger_record_approval_core",
    "ledger_record_event_core",
    "ledger_record_quarantine_core",
    "ledger_record_ring_run_core",
    "ledger_record_rollout_core",
    "ledger_record_vm_results_core",
]

_APPROVE = frozenset({"approve", "approved"})
_REJECT = frozenset({"reject", "rejected"})
_CLOSED_ROLLOUT_STATES = frozenset({"halted", "failed"})


def _rest(payload: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in keys}


def _required(value: Any, key: str) -> Any:
    """A required input value; a missing one fails as the dict lookup it replaces did."""
    if value is None:
        raise KeyError(key)
    return value


def ledger_record_rollout_core(ledger: LedgerStore,
                               payload: LedgerRecordRolloutInput | Mapping[str, Any]) -> dict[str, Any]:
    spec = from_payload(LedgerRecordRolloutInput, payload)
    return {"written": ledger.record_rollout(str(spec.rollout_id), _rest(to_payload(spec), "rolloutId"))}


def ledger_record_ring_run_core(ledger: LedgerStore,
                                payload: LedgerRecordRingRunInput | Mapping[str, Any]) -> dict[str, Any]:
    spec = from_payload(LedgerRecordRingRunInput, payload)
    fields = _rest(to_payload(spec), "rolloutId", "ring", "runId")
    written = ledger.record_ring_run(str(spec.rollout_id), str(spec.ring), str(spec.run_id), fields)
    return {"written": written}


def ledger_record_vm_results_core(ledger: LedgerStore,
                                  payload: LedgerRecordVmResultsInput | Mapping[str, Any]) -> dict[str, Any]:
    spec = from_payload(LedgerRecordVmResultsInput, payload)
    verdicts = {str(v.get("vm") or "").lower(): v for v in spec.verdicts or [] if isinstance(v, Mapping)}
    rows: dict[str, dict[str, Any]] = {}
    staged = _staged_patches(ledger, spec)
    for result in spec.results or []:
        vm = str(result.get("vm") or result.get("id") or "")
        rows[vm.lower()] = {**result, "vm": vm}
        inner = result.get("result")
        if isinstance(inner, Mapping) and inner.get("patchesStaged"):
            patches = staged.get(vm.lower())
            if patches is None:  # never a row without the patches it stands for: fail, the caller retries
                raise LookupError(f"no staged patch list for {vm}")
            rows[vm.lower()]["result"] = {**{k: v for k, v in inner.items() if k != "patchesStaged"},
                                          "patches": patches}
    for key, verdict in verdicts.items():
        rows.setdefault(key, {"vm": str(verdict.get("vm"))})["verdict"] = dict(verdict)
    count = ledger.record_vm_results(
        str(spec.rollout_id), str(spec.ring), str(spec.run_id or ""), list(rows.values())
    )
    return {"written": count > 0, "count": count}


def _staged_patches(ledger: LedgerStore, spec: LedgerRecordVmResultsInput) -> dict[str, list[Any]]:
    """The patch lists of the staged slice the results point to (issue 11), by VM id (lower-case)."""
    if spec.staged is None or not any(isinstance(r.get("result"), Mapping) and r["result"].get("patchesStaged")
                                      for r in spec.results or []):
        return {}
    ref = spec.staged
    entries = ledger.staged_results(ref.run_id, ref.plan_hash, ref.wave, ref.slice) or []
    return {str(e.get("vm") or "").lower(): list((e.get("result") or {}).get("patches") or [])
            for e in entries if isinstance(e.get("result"), Mapping)}


def decision_id(payload: Mapping[str, Any]) -> str:
    """The payload's ``decisionId``, or a stable hash of the decision (same write = same id)."""
    if payload.get("decisionId"):
        return str(payload["decisionId"])
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def ledger_record_approval_core(ledger: LedgerStore,
                                payload: LedgerRecordApprovalInput | Mapping[str, Any]) -> dict[str, Any]:
    spec = from_payload(LedgerRecordApprovalInput, payload)
    doc = to_payload(spec)  # every key as sent: the columns, and the id's hash without decisionId
    fields = _rest(doc, "rolloutId", "decisionId")
    decision = doc.get("decision")
    if isinstance(decision, Mapping):  # the orchestrator passes ApprovalDecision.to_dict()
        fields.setdefault("approver", decision.get("approver"))
        fields.setdefault("verdict", decision.get("verdict"))
    return {"written": ledger.record_approval(str(spec.rollout_id), decision_id(doc), fields)}


def ledger_record_event_core(ledger: LedgerStore,
                             payload: LedgerRecordEventInput | Mapping[str, Any]) -> dict[str, Any]:
    spec = from_payload(LedgerRecordEventInput, payload)
    fields = _rest(to_payload(spec), "configurationId", "eventType", "eventId")
    written = ledger.record_event(str(spec.configuration_id), str(spec.event_type), str(spec.event_id), fields)
    return {"written": written}


def run_gate(ledger: LedgerStore, spec: LedgerReadGateInput) -> dict[str, Any]:
    """Is this exact run authorised? Fail closed: anything but a clear yes is a no."""
    run_id = str(spec.correlation_id)
    ring = spec.ring
    rows = [r for r in ledger.run_gates(run_id) if ring is None or str(r.get("ring")).lower() == str(ring).lower()]
    for row in rows:
        if row.get("authorised") is not True:
            continue
        rollout = ledger.rollout(str(row["rolloutId"])) or {}
        state = str(rollout.get("state") or "").lower()
        if state in _CLOSED_ROLLOUT_STATES:
            return {"authorised": False, "rolloutId": row["rolloutId"],
                    "reason": f"rollout {row['rolloutId']} is {state}"}
        out: dict[str, Any] = {"authorised": True, "rolloutId": row["rolloutId"],
                               "reason": f"authorised by rollout {row['rolloutId']} at {row.get('at')}"}
        out.update(_pinned(ledger, row, rollout))
        return out
    if rows:
        last = rows[-1]
        state = last.get("state") or "not authorised"
        return {"authorised": False, "rolloutId": last.get("rolloutId"),
                "reason": f"rollout {last.get('rolloutId')} recorded this run as {state}"}
    return {"authorised": False, "rolloutId": None, "reason": f"no rollout authorised run {run_id}"}


def _pinned(ledger: LedgerStore, row: Mapping[str, Any], rollout: Mapping[str, Any]) -> dict[str, Any]:
    """What the guard compares the configuration's install parameters with (issue 13.16).

    ``manifestHash`` of the authorised run; the rollout's pinned ``manifest`` (its KBs / package
    masks) only when its hash is that one (a newer or older manifest says nothing about this run);
    ``rebootSetting`` as the configuration had it right after the pin (from the run's ring row)."""
    out: dict[str, Any] = {}
    want = row.get("manifestHash")
    if want:
        out["manifestHash"] = want
        manifest = rollout.get("manifest")
        if isinstance(manifest, Mapping) and manifest.get("hash") == want:
            out["manifest"] = dict(manifest)
    run_id = str(row.get("runId") or "").lower()
    ring = str(row.get("ring") or "").lower()
    full: Mapping[str, Any] = next((r for r in ledger.ring_runs(str(row["rolloutId"]))
                 if str(r.get("runId") or "").lower() == run_id and str(r.get("ring") or "").lower() == ring), {})
    for key in ("rebootSetting", "manifestHash"):
        if full.get(key) and key not in out:
            out[key] = full[key]
    if "manifest" not in out and out.get("manifestHash"):
        manifest = full.get("manifest")
        if isinstance(manifest, Mapping) and manifest.get("hash") == out["manifestHash"]:
            out["manifest"] = dict(manifest)
    return out


def ledger_read_gate_core(ledger: LedgerStore, payload: LedgerReadGateInput | Mapping[str, Any]) -> dict[str, Any]:
    """The guard's run gate (``correlationId``) or the approval bound to (rollout, ring, manifest)."""
    spec = from_payload(LedgerReadGateInput, payload)
    if spec.correlation_id:
        return run_gate(ledger, spec)
    rollout_id = str(_required(spec.rollout_id, "rolloutId"))
    ring = str(_required(spec.ring, "ring"))
    manifest_hash = spec.manifest_hash
    # Only decisions the rollout accepted count ("submitted"/"refused" rows are the API's log).
    bound = [
        a for a in ledger.approvals(rollout_id)
        if str(a.get("ring")) == ring and (manifest_hash is None or a.get("manifestHash") == manifest_hash)
        and a.get("outcome") in (None, "accepted")
    ]
    latest = bound[-1] if bound else None
    verdict = str((latest or {}).get("verdict") or (latest or {}).get("decision") or "").lower()
    decision = "approved" if verdict in _APPROVE else "rejected" if verdict in _REJECT else None
    return {
        "decision": decision,
        "approval": latest,
        "rollout": ledger.rollout(rollout_id),
        "ringRuns": [r for r in ledger.ring_runs(rollout_id) if str(r.get("ring")) == ring],
    }


# Event fields copied into a refusal row (anything else a caller put in the event is dropped).
_EVENT_FIELDS = ("decisionId", "resumeId", "approver", "by", "ring", "manifestHash", "verdict", "comment",
                 "decidedAt", "reason")


def ledger_check_decision_core(ledger: LedgerStore,
                               payload: LedgerCheckDecisionInput | Mapping[str, Any]) -> dict[str, Any]:
    """Accept a raised decision only if the API recorded it as submitted; log a refusal otherwise."""
    spec = from_payload(LedgerCheckDecisionInput, payload)
    rollout_id = str(spec.rollout_id)
    kind = str(spec.kind or "approval")
    event = spec.event if isinstance(spec.event, Mapping) else {}
    assert isinstance(event, Mapping)
    recorded: list[Mapping[str, Any]] = list(ledger.approvals(rollout_id))
    row, reason = match_recorded(kind, event, recorded)
    if row is not None:
        out: dict[str, Any] = {"accepted": True, "reason": "", "decisionId": row.get("decisionId")}
        accepted = _string_list(row.get("acceptInconclusive"))
        if accepted:  # what the API validated and recorded, never what the raised event claims
            out["acceptInconclusive"] = accepted
        return out
    fields: dict[str, Any] = {}
    for key in _EVENT_FIELDS:
        value = event.get(key)
        if isinstance(value, str | int | float | bool):
            fields[f"event_{key}" if key == "reason" else key] = str(value)[:512]
    refusal_id = "refused-" + decision_id({"kind": kind, "event": dict(event), "rolloutId": rollout_id})
    ledger.record_approval(rollout_id, refusal_id, {
        **fields, "kind": kind, "outcome": "refused", "reason": reason, "source": "orchestrator",
        "at": spec.at,
    })
    return {"accepted": False, "reason": reason, "decisionId": event.get("decisionId") or event.get("resumeId")}


def _string_list(value: Any) -> list[str]:
    """A list of strings stored in a row (a list, or its JSON text in older rows)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    return [str(v) for v in value if isinstance(v, str)][:1000]


def ledger_record_quarantine_core(ledger: LedgerStore,
                                  payload: LedgerRecordQuarantineInput | Mapping[str, Any]) -> dict[str, Any]:
    """Record what a failed gate blames (see the module docstring); idempotent."""
    spec = from_payload(LedgerRecordQuarantineInput, payload)
    rollout_id = str(spec.rollout_id)
    ring = str(spec.ring)
    plan_name = str(spec.plan_name or "")
    if not plan_name:
        raise ValueError("ledger_record_quarantine needs planName")
    existing = ledger.quarantine(plan_name, quarantine.entry_id(rollout_id, ring))
    if existing is not None:  # a retry: the first record stands (and a release stays a release)
        return {"written": False, "entry": existing}
    run_id = str(spec.run_id or "")
    rows = [r for r in ledger.vm_results(rollout_id, ring) if not run_id or str(r.get("runId") or "") == run_id]
    manifest = spec.manifest if isinstance(spec.manifest, Mapping) else None
    found = quarantine.suspects(rows, manifest)
    if found.empty:
        return {"written": False, "entry": None, "source": found.source, "failedVms": list(found.vms)}
    entry = quarantine.new_entry(
        plan_name=plan_name, plan_hash=spec.plan_hash, rollout_id=rollout_id, ring=ring, found=found,
        reason=str(spec.reason or f"ring {ring} failed its gate"), at=str(spec.at or ""),
        manifest_hash=spec.manifest_hash,
    )
    written = ledger.record_quarantine(plan_name, entry["id"], entry)
    if not written:  # recorded concurrently: answer what is there
        return {"written": False, "entry": ledger.quarantine(plan_name, entry["id"]) or entry}
    return {"written": True, "entry": entry}


def ledger_read_quarantine_core(ledger: LedgerStore,
                                payload: LedgerReadQuarantineInput | Mapping[str, Any]) -> dict[str, Any]:
    """Release what a person asked to release, then the plan's active entries and exclusions."""
    spec = from_payload(LedgerReadQuarantineInput, payload)
    plan_name = str(spec.plan_name or "")
    if not plan_name:
        raise ValueError("ledger_read_quarantine needs planName")
    released: list[str] = []
    unknown: list[str] = []
    for entry_id in spec.release or []:
        row = ledger.release_quarantine(plan_name, str(entry_id), by=str(spec.by or "unknown"),
                                        at=spec.at, reason=spec.reason)
        (released if row is not None else unknown).append(str(entry_id))
    entries = quarantine.active(ledger.quarantines(plan_name))
    # the exclusions cover every active entry; the entries themselves (for notes) are the newest
    # 50, so the rollout's history stays bounded however many cycles failed unreleased
    return {"entries": entries[-50:], "activeCount": len(entries), "exclusions": quarantine.exclusions(entries),
            "released": released, "unknown": unknown}


@bp.activity_trigger(input_name="payload")
def ledger_record_quarantine(payload: Payload) -> dict[str, Any]:
    return ledger_record_quarantine_core(deps.ledger(), from_payload(LedgerRecordQuarantineInput, payload))


@bp.activity_trigger(input_name="payload")
def ledger_read_quarantine(payload: Payload) -> dict[str, Any]:
    return ledger_read_quarantine_core(deps.ledger(), from_payload(LedgerReadQuarantineInput, payload))


@bp.activity_trigger(input_name="payload")
def ledger_check_decision(payload: Payload) -> dict[str, Any]:
    return ledger_check_decision_core(deps.ledger(), from_payload(LedgerCheckDecisionInput, payload))


@bp.activity_trigger(input_name="payload")
def ledger_record_rollout(payload: Payload) -> dict[str, Any]:
    return ledger_record_rollout_core(deps.ledger(), from_payload(LedgerRecordRolloutInput, payload))


@bp.activity_trigger(input_name="payload")
def ledger_record_ring_run(payload: Payload) -> dict[str, Any]:
    return ledger_record_ring_run_core(deps.ledger(), from_payload(LedgerRecordRingRunInput, payload))


@bp.activity_trigger(input_name="payload")
def ledger_record_vm_results(payload: Payload) -> dict[str, Any]:
    return ledger_record_vm_results_core(deps.ledger(), from_payload(LedgerRecordVmResultsInput, payload))


@bp.activity_trigger(input_name="payload")
def ledger_record_approval(payload: Payload) -> dict[str, Any]:
    return ledger_record_approval_core(deps.ledger(), from_payload(LedgerRecordApprovalInput, payload))


@bp.activity_trigger(input_name="payload")
def ledger_record_event(payload: Payload) -> dict[str, Any]:
    return ledger_record_event_core(deps.ledger(), from_payload(LedgerRecordEventInput, payload))


@bp.activity_trigger(input_name="payload")
def ledger_read_gate(payload: Payload) -> dict[str, Any]:
    return ledger_read_gate_core(deps.ledger(), from_payload(LedgerReadGateInput, payload))
