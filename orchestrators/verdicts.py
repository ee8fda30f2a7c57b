"""Glue between orchestrator JSON and the pure domain: verdicts, gates, manifest, deadlines.

Why: orchestrators move plain dicts across the durable boundary, while the decisions (how an
install result is judged, when a gate passes, what goes into the manifest, when a run must be
decided) belong to :mod:`patchrings.domain`. These helpers translate between the two so the
orchestrator modules read as the flow they implement. Pure and deterministic.

The ring, not the plan (issue 10): the ring-level helpers take a ring's *source*, either the
resolved ring document a sub-orchestration receives as ``ringSpec`` (``Plan.ring(name).to_dict()``)
or, during the transition, the whole plan dict (``Plan.to_dict()``) it is looked up in;
:func:`ring_of` turns either into the domain :class:`~patchrings.domain.plan.Ring` without
re-validating the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from patchrings.domain import deadlines
from patchrings.domain.events import MaintenanceEvent
from patchrings.domain.gates import NOT_STARTED, decide_gate, vm_verdict
from patchrings.domain.health import HealthPolicy, HealthSample, HealthState, InstallRules, evaluate_sample
from patchrings.domain.manifest import Manifest, build_manifest, uncovered_vms
from patchrings.domain.membership import LEFT_RING
from patchrings.domain.plan import Ring, deep_merge
from patchrings.domain.results import InstallVerdict

# Install states (wave/collect entries) that are not a finished installPatches result.
_FAILED_STATES = {"refused": "install could not be started", "failed": "install failed without a result"}
_UNREADABLE_STATES = {
    "timeout": "no install result before the deadline",
    "missing": "no result for this VM in the maintenance run",
    "running": "the install was still running when results were collected",
    "unreadable": "the VM's install result could not be read",
    "unreachable": "the machine could not be reached (its Arc agent is not Connected); nothing was installed",
}


#: The ring settings a plan's ``defaults`` (and top-level blocks) are merged under.
_RING_SECTIONS = ("rate", "health", "install", "approval", "gate")


def ring_spec_from_plan(plan: Mapping[str, Any], ring: str) -> dict[str, Any]:
    """``ring``'s document in a plan dict with the plan's defaults merged under its settings (the
    transition fallback for a caller that still sends the whole plan: a resolved plan's rings
    already carry their defaults, so this is that ring's ``ringSpec``). Raises KeyError."""
    for entry in plan.get("rings") or []:
        if entry.get("name") == ring:
            break
    else:
        raise KeyError(f"plan has no ring {ring!r}")
    doc = dict(entry)
    defaults = plan.get("defaults")
    for key in _RING_SECTIONS:
        merged: dict[str, Any] = {}
        for layer in ((defaults or {}).get(key) if isinstance(defaults, Mapping) else None, plan.get(key),
                      entry.get(key)):
            if isinstance(layer, Mapping):
                merged = deep_merge(merged, layer)
        if merged or key in entry:
            doc[key] = merged
    return doc


def _source(source: Mapping[str, Any], ring: str) -> Mapping[str, Any]:
    """A ring document from a ring's source: a plan dict (it has ``rings``) or the ring's document."""
    return ring_spec_from_plan(source, ring) if "rings" in source else source


def ring_of(source: Mapping[str, Any], ring: str = "") -> Ring:
    """The domain :class:`Ring` of a ring document (``ringSpec``) or of ``ring`` in a plan dict:
    :meth:`Ring.from_dict`, built from the already resolved document without validating a plan
    (issue 10)."""
    doc = _source(source, ring)
    return Ring.from_dict(doc if doc.get("name") else {**doc, "name": ring})


def install_rules(source: Mapping[str, Any], ring: str = "") -> InstallRules:
    """The ring's installation rules (``source``: its ring document or the plan dict)."""
    return ring_of(source, ring).health.installation


def verdicts_for(
    source: Mapping[str, Any],
    ring: str,
    vms: list[dict[str, Any]],
    installs: list[dict[str, Any]],
    health: Mapping[str, HealthState],
) -> list[dict[str, Any]]:
    """One ``VmVerdict`` dict per VM from its install entry and (if checked) its health state
    (``source``: the ring's document or the plan dict). A VM whose entry is ``left-ring`` (the
    install's live pre-check found it no longer selected by the ring's rule: nothing was sent) gets
    none: it is neither passed nor failed nor inconclusive, and not counted in the ring's total or
    against its error budget; its entry stays in the ledger's per-VM rows."""
    rules = install_rules(source, ring)
    by_vm = {str(i.get("vm")).lower(): i for i in installs}
    health_by_vm = {k.lower(): v for k, v in health.items()}
    out = []
    for vm in vms:
        entry = by_vm.get(vm["id"].lower())
        install: InstallVerdict | Mapping[str, Any] | None
        if entry is not None and entry.get("state") == LEFT_RING:
            continue  # not installed, no longer a member (start_install's live pre-check): not judged
        if entry is None:
            install = InstallVerdict("inconclusive", ("no install outcome recorded",), {})
        elif entry.get("state") in _FAILED_STATES:
            install = InstallVerdict("failed", (_describe(entry, _FAILED_STATES[entry["state"]]),), {})
        elif entry.get("state") in _UNREADABLE_STATES:
            install = InstallVerdict("inconclusive", (_describe(entry, _UNREADABLE_STATES[entry["state"]]),), {})
        elif entry.get("state") == "not-needed":
            install = InstallVerdict("ok", (), {})
        else:
            install = entry.get("result")
        state = health_by_vm.get(vm["id"].lower())
        out.append(vm_verdict(vm, install, state, rules=rules).to_dict())
    return out


def _describe(entry: Mapping[str, Any], text: str) -> str:
    error = entry.get("error")
    if isinstance(error, Mapping):
        detail = error.get("message") or error.get("code")
        return f"{text}: {detail}" if detail else text
    return f"{text}: {error}" if error else text


_VERDICT_KEYS = {"vm", "name", "install", "health", "outcome", "reasons"}


def pack_verdicts(vms: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Verdicts in a form whose size does not grow with the *passing* VMs' ids (issue 11, bounded
    history): a plain passing verdict (no reasons) becomes its VM's index in ``vms``, grouped by
    ``install|health``; every other verdict is kept whole. :func:`unpack_verdicts` (with the same
    ``vms``) gives back the same verdicts, ordered as ``vms``."""
    index = {str(vm["id"]): i for i, vm in enumerate(vms)}
    passed: dict[str, list[int]] = {}
    other: list[dict[str, Any]] = []
    for verdict in verdicts:
        i = index.get(str(verdict.get("vm")))
        if (i is not None and verdict.get("outcome") == "pass" and not verdict.get("reasons")
                and set(verdict) <= _VERDICT_KEYS and (verdict.get("name") or None) == (vms[i].get("name") or None)):
            passed.setdefault(f"{verdict.get('install')}|{verdict.get('health')}", []).append(i)
        else:
            other.append(verdict)
    return {"packed": True, "verdicts": other, "passed": passed}


def unpack_verdicts(vms: list[dict[str, Any]], doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The verdicts of :func:`pack_verdicts` (a doc without ``packed`` is taken as it is)."""
    if not doc.get("packed"):
        return list(doc.get("verdicts") or [])
    index = {str(vm["id"]): i for i, vm in enumerate(vms)}
    placed: list[tuple[int, int, dict[str, Any]]] = []
    for order, verdict in enumerate(doc.get("verdicts") or []):
        placed.append((index.get(str(verdict.get("vm")), len(vms)), order, verdict))
    for key, indexes in (doc.get("passed") or {}).items():
        install, _, health = str(key).partition("|")
        for i in indexes:
            vm = vms[int(i)]
            stub: dict[str, Any] = {"vm": vm["id"], "install": install, "health": health, "outcome": "pass",
                                    "reasons": []}
            if vm.get("name"):
                stub["name"] = vm["name"]
            placed.append((int(i), -1, stub))
    return [verdict for _, _, verdict in sorted(placed, key=lambda p: (p[0], p[1]))]


def verdict_ok(verdict: Mapping[str, Any]) -> bool:
    """True unless the VM failed (inconclusive VMs do not consume the error budget)."""
    return verdict.get("outcome") != "fail"


def verdict_passed(verdict: Mapping[str, Any]) -> bool:
    return verdict.get("outcome") == "pass"


def gate_for(
    source: Mapping[str, Any],
    ring: str,
    verdicts: list[dict[str, Any]],
    *,
    skipped: list[str] | None = None,
    notes: list[dict[str, str]] | None = None,
    left_ring: int = 0,
    left_names: list[str] | None = None,
    planned: int | None = None,
) -> dict[str, Any]:
    """The ring's gate decision (domain ``decide_gate``) as a dict (``source``: the ring's
    document or the plan dict).

    ``notes`` (``{vm, reason}``) are ring-level findings (unreadable membership, results not
    recorded...): each forces at least *inconclusive*. ``left_ring`` members of ``planned`` left
    the ring before their install (issue 11; ``left_names`` the first few): counted and named in
    the gate, which is at best inconclusive when more left than ``gates.left_ring_allowance``."""
    spec = ring_of(source, ring)
    extra = [
        {"vm": vm_id, "reason": f"{NOT_STARTED}: the ring's error budget (maxErrors) was exceeded"}
        for vm_id in (skipped or [])
    ] + [dict(n) for n in (notes or [])]
    return decide_gate(ring, verdicts, spec.rate, tolerate_errors=spec.tolerate_errors, extra_reasons=extra,
                       left_ring=left_ring, left_names=left_names or (), planned=planned).to_dict()


def install_parameters(
    base: dict[str, Any], started_at: str | None, manifest: dict[str, Any] | None
) -> dict[str, Any]:
    """installPatches parameters per OS: Ring 0 frozen at the rollout's start (Windows
    ``maxPatchPublishDate``); later direct rings exactly the manifest (None = nothing to install)."""
    if manifest:
        pinned = Manifest.from_dict(manifest)
        return {os_name: pinned.install_parameters(os_name, base) for os_name in ("Windows", "Linux")}
    windows = {k: v for k, v in base.items() if k != "linuxParameters"}
    linux = {k: v for k, v in base.items() if k != "windowsParameters"}
    if started_at:
        windows["windowsParameters"] = {**(base.get("windowsParameters") or {}), "maxPatchPublishDate": started_at}
    return {"Windows": windows, "Linux": linux}


def build_manifest_dict(
    results: list[dict[str, Any]], verdicts: list[dict[str, Any]], cutoff: str | None = None
) -> dict[str, Any]:
    """The validated manifest from Ring 0's install entries (``{vm, os, image, result}``): only
    VMs whose verdict passed contribute patches and coverage (domain ``build_manifest``)."""
    items = [{"vm": r.get("vm"), "os": r.get("os"), "image": r.get("image"), "result": r.get("result") or {}}
             for r in results]
    return build_manifest(items, verdicts, cutoff=cutoff).to_dict()


def coverage_refusal(
    source: Mapping[str, Any], ring: str, manifest: Mapping[str, Any] | None, vms: list[dict[str, Any]]
) -> list[dict[str, str]]:
    """Why ``ring`` may not be promoted: its VMs whose OS / image family Ring 0 did not cover
    (``{vm, family, reason}``; empty = promote). Refused by default; a plan may opt out with the
    ring's (or defaults') ``gate.allowUncoveredOs: true`` (``source``: the ring's document or the plan dict)."""
    if ring_of(source, ring).allow_uncovered_os:
        return []
    return uncovered_vms(manifest or {}, vms)


def sample_state(policy: Mapping[str, Any], sample: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Fold one ``check_vm_health`` sample with the ring's health policy: healthy/unhealthy/unknown."""
    return evaluate_sample(HealthPolicy.from_dict(policy), HealthSample.from_dict(sample))


def previous_ring_check(
    policy: Mapping[str, Any],
    ring: str,
    vms: list[dict[str, Any]],
    samples: list[Mapping[str, Any] | None],
    *,
    accepted: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Is the previous ring *still* healthy? One sample per VM of its health sample (issue 13.5).

    Before a later ring's run is authorised the rollout re-checks the previous ring's passing
    VMs. One VM that can no longer be observed must not block every later ring forever:

    * **deleted** (``check_vm_health`` answered ``deleted``: 404 on the VM) -- the VM leaves the
      sample with a note (``removed``: the caller drops it from the sample it keeps);
    * **unreadable** -- the instance view could not be read (403, 5xx after retries...), the VM
      is deallocated / stopped (its probes cannot answer either), or its agent is not ready (the
      Application Health extension reports through it): nothing says the *patch* broke it,
      but nothing proves it healthy either. ``inconclusive`` lists these VMs; the outcome is
      ``inconclusive`` (a person decides) unless every one of them is in ``accepted`` (VM ids an
      approver accepted explicitly; the approval records them), in which case it is a note;
    * **unhealthy** -- a workload signal is bad (Application Health, an HTTP probe) on a VM that
      is running and reporting: the outcome is ``unhealthy`` and nothing can accept it.

    Returns ``{outcome: healthy|inconclusive|unhealthy, reasons, notes, removed, inconclusive}``
    where ``reasons`` block the run (empty when healthy) and ``notes`` are informational.
    """
    full = HealthPolicy.from_dict(policy)
    workload_only = HealthPolicy.from_dict(
        {**policy, "checks": {**(policy.get("checks") or {}), "powerState": False, "vmAgent": False}}
    )
    agent_blind = HealthPolicy.from_dict(
        {**policy, "checks": {**(policy.get("checks") or {}), "powerState": False, "vmAgent": False,
                              "applicationHealth": "ignore"}}
    )
    ok_ids = {str(a).lower() for a in accepted}
    reasons: list[str] = []
    notes: list[str] = []
    removed: list[str] = []
    unsure: list[str] = []
    unhealthy = False
    for vm, raw in zip(vms, samples, strict=True):
        sample = raw or {"readError": "no health sample returned"}
        label = f"previous ring {ring}: {vm.get('name') or vm['id']}"
        if sample.get("deleted"):
            removed.append(vm["id"])
            notes.append(f"{label} no longer exists (404 on its GET): it leaves the health sample")
            continue
        parsed = HealthSample.from_dict(sample)
        signal, why = evaluate_sample(full, parsed)
        if signal == "healthy":
            continue
        power = str(parsed.power_state or "").lower().rsplit("/", 1)[-1]
        agent = str(parsed.vm_agent or "").lower().replace(" ", "")
        if not parsed.read_error and power in ("running", ""):
            # Running: a bad workload signal is real. With the agent not ready, the Application
            # Health extension (reported through the agent) says nothing; probes still count.
            judge = workload_only if agent in ("ready", "succeeded", "") else agent_blind
            workload, workload_why = evaluate_sample(judge, parsed)
            if workload == "unhealthy":
                unhealthy = True
                reasons.append(f"{label} is unhealthy: {'; '.join(workload_why)}")
                continue
        text = f"{label} cannot be observed ({'; '.join(why)})"
        unsure.append(vm["id"])
        if vm["id"].lower() in ok_ids:
            notes.append(f"{text}: accepted as inconclusive by the approver")
        else:
            reasons.append(f"{text}: inconclusive, an approver may accept it explicitly")
    if removed and len(removed) == len(vms):
        unsure.extend(removed)
        if not all(v.lower() in ok_ids for v in removed):
            reasons.append(f"previous ring {ring}: every VM of its health sample was deleted; nothing is left "
                           "to prove it healthy: inconclusive, an approver may accept it explicitly")
    outcome = "unhealthy" if unhealthy else "inconclusive" if reasons else "healthy"
    return {"outcome": outcome, "reasons": reasons, "notes": notes, "removed": removed, "inconclusive": unsure}


def decision_deadline(event: MaintenanceEvent, margin: timedelta) -> datetime:
    """When a scheduled run's gate must be decided: min(cutoff, start - 10 min) - margin."""
    return deadlines.decision_deadline(event, margin)


def promotion_target(window: Mapping[str, Any], now: datetime, margin: timedelta) -> dict[str, Any]:
    """Which run a promotion made ``now`` can still reach (domain ``promotion_target``); when the
    next run's T-40 cannot be met it targets the following run and says so."""
    if not window:
        return {}
    target = deadlines.promotion_target(window, now, margin)
    if target is None:
        return {"runStart": None, "meetsT40": False, "reason": "the maintenance window has no future run"}
    return target.to_dict()
