"""In-memory fake activities (the documented names and JSON shapes) over a fleet the test owns.

Every call is recorded in ``FLEET.calls`` so tests assert on what the orchestrators asked for,
the way functional tests assert on the ARM simulator's recorder. It also stands in for the
ledger object the triggers use (``record_event``, ``record_approval``, ``ring_runs`` ...).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

import azure.durable_functions as df

from activities import Payload

bp = df.Blueprint()

SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-patching"
MC = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Maintenance/maintenanceConfigurations"

WINDOWS_PATCHES = [
    {"patchId": "kb1", "name": "2026-11 Cumulative Update", "kbId": "5040001", "version": "",
     "classifications": ["Security"], "installationState": "Installed"},
    {"patchId": "kb2", "name": "Defender update", "kbId": "5040002", "version": "",
     "classifications": ["Critical"], "installationState": "Installed"},
]
LINUX_PATCHES = [
    {"patchId": "openssl", "name": "openssl", "kbId": None, "version": "3.0.2-1ubuntu1.20",
     "classifications": ["Security"], "installationState": "Installed"},
]
WINDOW = {"startDateTime": "2026-11-16 12:00", "duration": "03:55", "timeZone": "UTC", "recurEvery": "Day"}


@dataclass
class Vm:
    id: str
    name: str
    os: str
    zone: str
    tags: dict[str, str]
    bad: bool = False  # its installs fail
    sick: bool = False  # unhealthy once patched
    unreadable: bool = False  # its health signals cannot be read
    deleted: bool = False  # gone: its GET answers 404

    def ref(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "os": self.os, "location": "westeurope", "zone": self.zone,
                "availabilitySet": None, "powerState": "running"}


@dataclass
class Fleet:
    plan: dict[str, Any] = field(default_factory=dict)
    vms: dict[str, Vm] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    installs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    patched: set[str] = field(default_factory=set)
    cancelled: list[str] = field(default_factory=list)
    pinned: dict[str, dict[str, Any]] = field(default_factory=dict)
    assignments: dict[str, bool] = field(default_factory=dict)
    ring_runs_: list[dict[str, Any]] = field(default_factory=list)
    rollouts_: dict[str, dict[str, Any]] = field(default_factory=dict)
    approvals_: list[dict[str, Any]] = field(default_factory=list)
    vm_results_: list[dict[str, Any]] = field(default_factory=list)
    events_: list[dict[str, Any]] = field(default_factory=list)
    window: dict[str, Any] = field(default_factory=lambda: dict(WINDOW))  # every configuration's schedule
    wave_plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> plan + slices (issue 11)
    fail_gate_read: bool = False
    fail_load_plan: bool = False
    refuse_once: set[str] = field(default_factory=set)  # VM names whose first start is a transient refusal
    unreadable_slices: set[tuple[int, int]] = field(default_factory=set)  # (wave, slice) read_wave_members fails
    lock: threading.RLock = field(default_factory=threading.RLock)

    # ------------------------------------------------------------------ set-up
    def add(self, name: str, os_name: str, zone: str, ring_tag: str, **flags: bool) -> Vm:
        vm_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}"
        vm = Vm(vm_id, name, os_name, zone, {"patchRing": ring_tag}, **flags)
        self.vms[vm_id.lower()] = vm
        return vm

    def record(self, name: str, payload: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append((name, copy.deepcopy(payload)))

    def called(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for n, p in self.calls if n == name]

    def vm(self, ref: dict[str, Any]) -> Vm:
        return self.vms[str(ref["id"]).lower()]

    # ------------------------------------------------------------------ ledger stand-in (triggers)
    def record_event(self, configuration_id: str, kind: str, event_id: str, fields: dict[str, Any]) -> bool:
        with self.lock:  # append-only, keyed like the real ledger: a redelivery is a no-op
            if any(e["eventType"] == kind and e["eventId"].lower() == event_id.lower() for e in self.events_):
                return False
            self.events_.append({**fields, "configurationId": configuration_id, "eventType": kind, "eventId": event_id})
        return True

    def record_approval(self, rollout_id: str, decision_id: str, fields: dict[str, Any]) -> bool:
        with self.lock:
            self.approvals_.append({"rolloutId": rollout_id, "decisionId": decision_id, **fields})
        return True

    def events(self, configuration_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events_ if e["configurationId"].lower() == configuration_id.lower()]

    def rollout(self, rollout_id: str) -> dict[str, Any] | None:
        return self.rollouts_.get(rollout_id)

    def record_rollout(self, rollout_id: str, fields: dict[str, Any]) -> bool:
        with self.lock:
            self.rollouts_.setdefault(rollout_id, {}).update(fields)
        return True

    def ring_runs(self, rollout_id: str) -> list[dict[str, Any]]:
        return [r for r in self.ring_runs_ if r.get("rolloutId") == rollout_id]

    def approvals(self, rollout_id: str) -> list[dict[str, Any]]:
        return [a for a in self.approvals_ if a.get("rolloutId") == rollout_id]

    def vm_results(self, rollout_id: str, ring: str) -> list[dict[str, Any]]:
        return [r for r in self.vm_results_ if r.get("rolloutId") == rollout_id and r.get("ring") == ring]


FLEET = Fleet()


def reset(plan: dict[str, Any]) -> Fleet:
    global FLEET
    FLEET = Fleet(plan=plan)
    return FLEET


def _ring(plan: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in plan["rings"] if r["name"] == name)


def _result(vm: Vm, parameters: dict[str, Any] | None) -> dict[str, Any]:
    patches: list[dict[str, Any]] = copy.deepcopy(WINDOWS_PATCHES if vm.os == "Windows" else LINUX_PATCHES)
    wp = (parameters or {}).get("windowsParameters") or {}
    lp = (parameters or {}).get("linuxParameters") or {}
    # each OS reads its own parameters (a pinned manifest carries both lists)
    if vm.os == "Windows" and wp.get("kbNumbersToInclude"):
        patches = [p for p in patches if p["kbId"] in wp["kbNumbersToInclude"]]
    if vm.os != "Windows" and lp.get("packageNameMasksToInclude"):
        patches = [p for p in patches if f"{p['name']}={p['version']}" in lp["packageNameMasksToInclude"]]
    if vm.bad:
        for p in patches:
            p["installationState"] = "Failed"
        return {"status": "Failed", "installedPatchCount": 0, "failedPatchCount": len(patches),
                "pendingPatchCount": 0, "rebootStatus": "NotNeeded", "maintenanceWindowExceeded": False,
                "patches": patches, "startDateTime": "2026-11-16T06:00:00Z", "error": None}
    return {"status": "Succeeded", "installedPatchCount": len(patches), "failedPatchCount": 0,
            "pendingPatchCount": 0, "rebootStatus": "Completed", "maintenanceWindowExceeded": False,
            "patches": patches, "startDateTime": "2026-11-16T06:00:00Z", "error": None}


# ---------------------------------------------------------------------- activities
@bp.activity_trigger(input_name="payload")
def load_plan(payload: Payload) -> dict[str, Any]:
    FLEET.record("load_plan", payload)
    if FLEET.fail_load_plan:
        raise ValueError("rollout plan (plans/default.json) is invalid: rings: must have at least 1 item")
    if payload.get("plan"):
        # the real check (activities.plan) of a plan carried in the rollout's input (issue 13.9)
        from activities.plan import checked_input_plan
        from patchrings import deps
        from patchrings.domain.plan import Plan

        return checked_input_plan(payload["plan"], Plan.from_dict(FLEET.plan), enabled=deps.settings().inline_plans)
    return FLEET.plan


@bp.activity_trigger(input_name="payload")
def resolve_ring_members(payload: Payload) -> dict[str, Any]:
    FLEET.record("resolve_ring_members", payload)
    if payload.get("countOnly"):  # as activities.members answers it (issue 11)
        return {"vms": [], "count": len(_members(payload))}
    return {"vms": _members(payload)}


def _members(payload: Payload) -> list[dict[str, Any]]:
    ring = payload.get("ringSpec") or _ring(payload["plan"], payload["ring"])
    tag = ring["members"]["tag"]
    wanted = {tag["value"], tag.get("holdValue")} - {None}
    vms = [vm.ref() for vm in FLEET.vms.values() if vm.tags.get(tag["name"]) in wanted]
    return sorted(vms, key=lambda v: v["id"])


@bp.activity_trigger(input_name="payload")
def plan_ring_waves(payload: Payload) -> dict[str, Any]:
    """As activities.members.plan_ring_waves: members and waves kept here, counts answered;
    a second call for the same run answers the first plan (check before act)."""
    from patchrings.domain.plan import Ring, short_hash

    FLEET.record("plan_ring_waves", payload)
    with FLEET.lock:
        known = FLEET.wave_plans.get(payload["runId"])
        if known is None:
            vms = _members(payload)
            by_id = {vm["id"]: vm for vm in vms}
            waves = Ring.from_dict(payload["ringSpec"]).rate.waves(vms)
            size = int(payload.get("sliceSize") or 100)
            by_os: dict[str, int] = {}
            for vm in vms:
                by_os[vm["os"]] = by_os.get(vm["os"], 0) + 1
            known = {"count": len(vms), "waves": [len(w) for w in waves], "sliceSize": size, "byOs": by_os,
                     "hash": short_hash({"waves": waves, "sliceSize": size}),
                     "slices": {(i, k): [by_id[v] for v in wave[first:first + size]]
                                for i, wave in enumerate(waves) for k, first in enumerate(range(0, len(wave), size))}}
            FLEET.wave_plans[payload["runId"]] = known
    return {k: v for k, v in known.items() if k != "slices"}


@bp.activity_trigger(input_name="payload")
def ring_coverage(payload: Payload) -> dict[str, Any]:
    """As activities.members.ring_coverage: the ring's uncovered machines, counted (the real judge)."""
    from activities.members import coverage_answer
    from patchrings.domain.plan import Ring

    FLEET.record("ring_coverage", payload)
    return coverage_answer(Ring.from_dict(payload["ringSpec"]), payload.get("manifest"), _members(payload))


@bp.activity_trigger(input_name="payload")
def read_wave_members(payload: Payload) -> dict[str, Any]:
    FLEET.record("read_wave_members", payload)
    if (int(payload["wave"]), int(payload.get("slice") or 0)) in FLEET.unreadable_slices:
        raise RuntimeError("the ledger's Waves table is unavailable")  # every attempt (issue 11, item 2)
    with FLEET.lock:
        known = FLEET.wave_plans[payload["runId"]]
        assert known["hash"] == payload["planHash"], payload
        return {"vms": copy.deepcopy(known["slices"][(int(payload["wave"]), int(payload.get("slice") or 0))])}


@bp.activity_trigger(input_name="payload")
def start_install(payload: Payload) -> dict[str, Any]:
    FLEET.record("start_install", payload)
    key = (payload["runId"], payload["vm"]["id"].lower())
    with FLEET.lock:
        if payload["vm"]["name"] in FLEET.refuse_once:
            FLEET.refuse_once.discard(payload["vm"]["name"])
            return {"state": "refused", "token": None,
                    "error": {"code": "TooManyRequests", "message": "throttled", "retryable": True}}
        if key in FLEET.installs:
            return {"state": "already-started", "token": f"tok-{payload['vm']['name']}", "error": None}
        FLEET.installs[key] = {"parameters": payload["parameters"], "polls": 0}
    return {"state": "started", "token": f"tok-{payload['vm']['name']}", "error": None}


@bp.activity_trigger(input_name="payload")
def poll_install(payload: Payload) -> dict[str, Any]:
    FLEET.record("poll_install", payload)
    vm = FLEET.vm(payload["vm"])
    with FLEET.lock:
        install = FLEET.installs[(payload["runId"], vm.id.lower())]
        install["polls"] += 1
        if install["polls"] < 2:
            return {"done": False, "result": None, "error": None}
        FLEET.patched.add(vm.id.lower())
    return {"done": True, "result": _result(vm, install["parameters"]), "error": None}


@bp.activity_trigger(input_name="payload")
def check_vm_health(payload: Payload) -> dict[str, Any]:
    FLEET.record("check_vm_health", payload)
    vm = FLEET.vm(payload["vm"])
    if vm.deleted:
        return {"vm": vm.id, "powerState": None, "vmAgent": None, "appHealth": None, "probes": [],
                "readError": "ResourceNotFound: the VM no longer exists", "deleted": True}
    if vm.unreadable:
        return {"vm": vm.id, "powerState": None, "vmAgent": None, "appHealth": None, "probes": [],
                "readError": "instance view unavailable"}
    sick = vm.sick and vm.id.lower() in FLEET.patched
    return {"vm": vm.id, "powerState": "PowerState/stopped" if sick else "PowerState/running",
            "vmAgent": "Ready", "appHealth": None, "probes": [], "readError": None}


@bp.activity_trigger(input_name="payload")
def start_assess(payload: Payload) -> dict[str, Any]:
    FLEET.record("start_assess", payload)
    return {"state": "started", "token": "assess", "error": None}


@bp.activity_trigger(input_name="payload")
def poll_assess(payload: Payload) -> dict[str, Any]:
    FLEET.record("poll_assess", payload)
    vm = FLEET.vm(payload["vm"])
    patches = WINDOWS_PATCHES if vm.os == "Windows" else LINUX_PATCHES
    return {"done": True, "result": {"status": "Succeeded", "criticalAndSecurityPatchCount": len(patches),
                                     "otherPatchCount": 0, "patches": patches}, "error": None}


@bp.activity_trigger(input_name="payload")
def retag_vms(payload: Payload) -> dict[str, Any]:
    FLEET.record("retag_vms", payload)
    changed = []
    for vm_id in payload["vmIds"]:
        vm = FLEET.vms[vm_id.lower()]
        if vm.tags.get(payload["tag"]) != payload["value"]:
            vm.tags[payload["tag"]] = payload["value"]
            changed.append(vm_id)
    return {"changed": changed, "unchanged": [v for v in payload["vmIds"] if v not in changed], "failed": []}


@bp.activity_trigger(input_name="payload")
def set_ring_assignment(payload: Payload) -> dict[str, Any]:
    FLEET.record("set_ring_assignment", {"ring": payload["ring"], "present": payload["present"]})
    changed = FLEET.assignments.get(payload["ring"], False) != payload["present"]
    FLEET.assignments[payload["ring"]] = payload["present"]
    return {"changed": changed}


@bp.activity_trigger(input_name="payload")
def pin_manifest(payload: Payload) -> dict[str, Any]:
    FLEET.record("pin_manifest", payload)
    FLEET.pinned[payload["configurationId"].lower()] = payload["manifest"]
    return {"changed": True}


@bp.activity_trigger(input_name="payload")
def get_configuration(payload: Payload) -> dict[str, Any]:
    FLEET.record("get_configuration", payload)
    pinned = FLEET.pinned.get(payload["configurationId"].lower())
    install: dict[str, Any] = {}
    if pinned:  # as pin_manifest_core leaves it: the manifest's include lists, the reboot setting kept
        from patchrings.domain.manifest import Manifest

        install = Manifest.from_dict(pinned).configuration_patch({"rebootSetting": "IfRequired"})
    return {"id": payload["configurationId"], "window": dict(FLEET.window), "installPatches": install}


@bp.activity_trigger(input_name="payload")
def cancel_run(payload: Payload) -> dict[str, Any]:
    FLEET.record("cancel_run", payload)
    with FLEET.lock:
        if payload["correlationId"] in FLEET.cancelled:
            return {"status": "AlreadyCancelled", "message": "already cancelled"}
        FLEET.cancelled.append(payload["correlationId"])
    return {"status": "Cancelled", "message": "cancelled"}


@bp.activity_trigger(input_name="payload")
def collect_run_results(payload: Payload) -> dict[str, Any]:
    FLEET.record("collect_run_results", payload)
    return _run_results(payload)


def _run_results(payload: Payload) -> dict[str, Any]:
    config = payload["correlationId"].split("/providers/Microsoft.Maintenance/applyUpdates/")[0].lower()
    manifest = FLEET.pinned.get(config) or {}
    params = {"windowsParameters": {"kbNumbersToInclude": manifest.get("windows", {}).get("kbNumbers", [])},
              "linuxParameters": {"packageNameMasksToInclude": manifest.get("linux", {}).get("packages", [])}}
    results: list[dict[str, Any]] = []
    for ref in payload["vms"]:
        vm = FLEET.vm(ref)
        if payload["correlationId"] in FLEET.cancelled:
            results.append({"vm": vm.id, "name": vm.name, "os": vm.os, "state": "missing", "result": None,
                            "error": None})
            continue
        FLEET.patched.add(vm.id.lower())
        results.append({"vm": vm.id, "name": vm.name, "os": vm.os, "state": "done",
                        "result": _result(vm, params), "error": None})
    return {"results": results}


@bp.activity_trigger(input_name="payload")
def collect_run_results_arg(payload: Payload) -> dict[str, Any]:
    """Resource Graph's per-VM results of a run: the fake fleet knows them at once (no lag)."""
    FLEET.record("collect_run_results_arg", payload)
    return {**_run_results(payload), "queries": 2, "pages": 2, "source": "resourceGraph"}


@bp.activity_trigger(input_name="payload")
def ledger_record_rollout(payload: Payload) -> dict[str, Any]:
    FLEET.record("ledger_record_rollout", {k: v for k, v in payload.items() if k != "status"})
    with FLEET.lock:
        FLEET.rollouts_.setdefault(payload["rolloutId"], {}).update(payload)
    return {"written": True}


@bp.activity_trigger(input_name="payload")
def ledger_record_ring_run(payload: Payload) -> dict[str, Any]:
    FLEET.record("ledger_record_ring_run", payload)
    with FLEET.lock:
        FLEET.ring_runs_.append(payload)
    return {"written": True}


@bp.activity_trigger(input_name="payload")
def ledger_record_vm_results(payload: Payload) -> dict[str, Any]:
    FLEET.record("ledger_record_vm_results", payload)
    with FLEET.lock:
        for result in payload["results"]:
            FLEET.vm_results_.append({"rolloutId": payload["rolloutId"], "ring": payload["ring"], **result})
    return {"written": True}


@bp.activity_trigger(input_name="payload")
def ledger_record_approval(payload: Payload) -> dict[str, Any]:
    FLEET.record("ledger_record_approval", payload)
    return {"written": True}


@bp.activity_trigger(input_name="payload")
def ledger_read_gate(payload: Payload) -> dict[str, Any]:
    FLEET.record("ledger_read_gate", payload)
    if not payload.get("correlationId"):
        accepted = [a for a in FLEET.called("ledger_record_approval")
                    if a.get("rolloutId") == payload["rolloutId"] and a.get("ring") == payload.get("ring")
                    and a.get("outcome") == "accepted"
                    and (payload.get("manifestHash") is None or a.get("manifestHash") == payload["manifestHash"])]
        verdict = ((accepted[-1].get("decision") or {}).get("verdict") if accepted else None) or ""
        decision = {"approve": "approved", "reject": "rejected"}.get(verdict)
        return {"decision": decision, "rollout": FLEET.rollout(payload["rolloutId"]), "ringRuns": []}
    if FLEET.fail_gate_read:
        raise RuntimeError("ledger unreachable")
    with FLEET.lock:
        runs = [r for r in FLEET.ring_runs_ if str(r.get("runId")).lower() == payload["correlationId"].lower()]
    authorised = bool(runs) and bool(runs[-1].get("authorised"))
    return {"authorised": authorised, "reason": "authorised by the rollout" if authorised else "not authorised"}


@bp.activity_trigger(input_name="payload")
def ledger_record_event(payload: Payload) -> dict[str, Any]:
    FLEET.record("ledger_record_event", payload)
    return {"written": True}


@bp.activity_trigger(input_name="payload")
def notify(payload: Payload) -> dict[str, Any]:
    FLEET.record("notify", payload)
    return {"logged": True, "posted": False}


@bp.activity_trigger(input_name="payload")
def manifest_diff(payload: Payload) -> dict[str, Any]:
    """Later rings' machines vs the manifest (activities/manifest_diff.py): counts only here."""
    FLEET.record("manifest_diff", payload)
    return {"rings": []}


@bp.activity_trigger(input_name="payload")
def ledger_check_decision(payload: Payload) -> dict[str, Any]:
    """The real check (activities.ledger) over this fleet's approvals, which the API wrote."""
    from activities.ledger import ledger_check_decision_core

    FLEET.record("ledger_check_decision", payload)
    return ledger_check_decision_core(FLEET, payload)


@bp.activity_trigger(input_name="payload")
def check_vm_health_batch(payload: Payload) -> dict[str, Any]:
    """Many VMs per call (issue 11): each sample as ``check_vm_health`` answers it (also recorded
    under that name, per VM, so tests counting health checks keep counting them)."""
    FLEET.record("check_vm_health_batch", payload)
    samples: list[dict[str, Any]] = []
    for check in payload.get("checks") or []:
        FLEET.record("check_vm_health", {"vm": check["vm"], "probes": payload.get("probes") or []})
        vm = FLEET.vm(check["vm"])
        if vm.deleted:  # as the real batch answers a VM missing from its subscription's list
            samples.append({"vm": vm.id, "powerState": None, "vmAgent": None, "appHealth": None, "probes": [],
                            "readError": "NotFound: the VM is not in its subscription's VM list", "deleted": True})
            continue
        if vm.unreadable:
            samples.append({"vm": vm.id, "powerState": None, "vmAgent": None, "appHealth": None, "probes": [],
                            "readError": "instance view unavailable"})
            continue
        sick = vm.sick and vm.id.lower() in FLEET.patched
        samples.append({"vm": vm.id, "powerState": "PowerState/stopped" if sick else "PowerState/running",
                        "vmAgent": "Ready", "appHealth": None, "probes": [], "readError": None})
    return {"samples": samples}


@bp.activity_trigger(input_name="payload")
def ledger_read_quarantine(payload: Payload) -> dict[str, Any]:
    """The plan's quarantine (issue 11 repeat harm): the fake fleet keeps none unless one was recorded."""
    FLEET.record("ledger_read_quarantine", payload)
    entries = [dict(p.get("entry") or {}) for p in FLEET.called("ledger_record_quarantine")
               if p.get("planName") == payload.get("planName") and p.get("entry")]
    return {"entries": entries, "exclusions": {"kbNumbersToExclude": [], "packageNameMasksToExclude": []},
            "released": [], "unknown": []}


@bp.activity_trigger(input_name="payload")
def ledger_record_quarantine(payload: Payload) -> dict[str, Any]:
    FLEET.record("ledger_record_quarantine", payload)
    return {"written": True, "entry": None}


@bp.activity_trigger(input_name="payload")
def stage_run_results(payload: Payload) -> dict[str, Any]:
    """As activities.run_results_stage.stage_run_results: the run's entries of every planned slice
    kept here (the fake fleet's Resource Graph has every row at once); check before act."""
    FLEET.record("stage_run_results", payload)
    with FLEET.lock:
        known = FLEET.wave_plans[payload["runId"]]
        assert known["hash"] == payload["planHash"], payload
        staged = known.setdefault("staged", {})
        for key, vms in known["slices"].items():
            if key not in staged:
                staged[key] = _run_results({"correlationId": payload["correlationId"], "vms": vms})["results"]
        return {"complete": True, "slices": len(known["slices"]), "staged": len(staged), "pending": 0,
                "queries": 2, "pages": 2}


@bp.activity_trigger(input_name="payload")
def read_staged_results(payload: Payload) -> dict[str, Any]:
    FLEET.record("read_staged_results", payload)
    with FLEET.lock:
        known = FLEET.wave_plans[payload["runId"]]
        staged = known.get("staged") or {} if known["hash"] == payload["planHash"] else {}
        found = staged.get((int(payload["wave"]), int(payload.get("slice") or 0)))
        return {"results": copy.deepcopy(found)}
