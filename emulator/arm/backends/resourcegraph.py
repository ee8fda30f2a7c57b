"""The Resource Graph backend: rows of ``patchinstallationresources`` / ``patchassessmentresources``
computed from the other providers' records, the ``resources`` table's lagging versions of each VM and
Arc machine, the KQL subset, paging tokens and the per-principal quota.

State: :class:`ResourceGraphOptions` (from the scenario's ``resourceGraph``, changed at run time by
:func:`emulator.arm.resourcegraph.configure`) and the quota's query instants. Patch rows are read from
the Maintenance backend's runs, the Compute and HybridCompute backends' finished installs and each
machine's last assessment, so nothing is copied. ``resources`` rows are versions: each machine keeps
the rows it had since the newest change older than the lag (:class:`_Tracked`), serialised by the
Compute / HybridCompute backends when the change is published; its class is swapped for a watching
subclass (:func:`_watched_class`) so a change is stamped at the instant it happens. The one method
named after the SDK is :meth:`ResourceGraphBackend.resources` (``ResourceGraphClient.resources``);
:mod:`emulator.arm.resourcegraph` is the HTTP layer above it and documents the behaviour.

SUPPORTED / LIMITATIONS: see :mod:`emulator.arm.resourcegraph`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.arm.backends.core import Core
from emulator.arm.backends.core import iso as _iso
from emulator.arm.errors import ArmError
from emulator.arm.fleet import Vm, stable_uuid
from emulator.arm.kql import KqlError, compile_query, to_json_value
from emulator.arm.patching import _result_classifications, assessment_result

if TYPE_CHECKING:
    from emulator.arm.backends.compute import ComputeBackend
    from emulator.arm.backends.hybridcompute import HybridComputeBackend
    from emulator.arm.backends.maintenance import MaintenanceBackend
    from emulator.arm.patching import InstallPlan
    from emulator.arm.schedule import Run

__all__ = ["COLUMNS", "TABLES", "ResourceGraphBackend", "ResourceGraphOptions"]

COLUMNS = ["id", "name", "type", "tenantId", "kind", "location", "resourceGroup", "subscriptionId", "managedBy",
           "sku", "plan", "properties", "tags", "identity", "zones", "extendedLocation"]
TABLES = ("patchinstallationresources", "patchassessmentresources", "resources")
MAX_TOP = 1000
DEFAULT_TOP = 100
_INVALID = ("Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the "
            "error before retrying.")
_VM_TYPE = "microsoft.compute/virtualmachines"
_ARC_TYPE = "microsoft.hybridcompute/machines"
# The ``resources`` table's default staleness: ARG's published goal is 95 % of changes within 1 minute
# (MicrosoftDocs/azure-docs#19879; 30 s per Azure/azure-dev#540), with no upper bound. The simulator
# takes the slower published figure for every change; the tail is the per-machine knob.
DEFAULT_RESOURCES_LAG_SECONDS = 60.0
_PAST = datetime.min.replace(tzinfo=UTC)  # "before the simulator started": the fleet's initial state
# Vm fields whose change ARG publishes (tags, power state, an Arc agent's status, the model's few mutable fields)
_WATCHED = frozenset({"tags", "power_state", "agent_status", "last_status_change", "patch_mode", "size",
                      "location", "zone", "os_name", "os_version", "os_sku", "agent_version"})


@dataclass
class ResourceGraphOptions:
    propagation: timedelta = timedelta(minutes=3)
    retention: timedelta = timedelta(days=30)
    assessment_retention: timedelta = timedelta(days=7)
    quota: int = 15
    quota_window: timedelta = timedelta(seconds=5)
    enforce_quota: bool = True  # Azure always enforces it; ``enforceQuota: false`` is an explicit opt-out
    retry_after_on_429: bool = True
    initial_assessment: bool = False  # every Connected/running machine was assessed an hour before the start
    assess_after_install: bool = False  # an install ends with an assessment (§3.5), replacing …/latest
    resources_lag: timedelta = timedelta(seconds=DEFAULT_RESOURCES_LAG_SECONDS)  # the ``resources`` table's staleness
    # principal -> (simulated, real monotonic) instants of its queries in the current window
    used: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)

    @classmethod
    def from_scenario(cls, doc: dict[str, Any] | None) -> ResourceGraphOptions:
        doc = doc or {}
        return cls(
            propagation=timedelta(minutes=float(doc.get("propagationMinutes", 3))),
            retention=timedelta(days=float(doc.get("retentionDays", 30))),
            assessment_retention=timedelta(days=float(doc.get("assessmentRetentionDays", 7))),
            quota=int(doc.get("quota", 15)),
            quota_window=timedelta(seconds=float(doc.get("quotaWindowSeconds", 5))),
            enforce_quota=bool(doc.get("enforceQuota", True)),
            retry_after_on_429=bool(doc.get("retryAfterOn429", True)),
            initial_assessment=bool(doc.get("initialAssessment", False)),
            assess_after_install=bool(doc.get("assessAfterInstall", False)),
            resources_lag=timedelta(seconds=float(doc.get("resourcesLagSeconds", DEFAULT_RESOURCES_LAG_SECONDS))),
        )


def _service(os_name: str) -> str:
    return "WU-WSUS" if os_name == "Windows" else "APT"


def _type_prefix(vm: Any) -> str:
    """``microsoft.compute/virtualmachines`` or, for an Arc machine, ``microsoft.hybridcompute/machines``."""
    return _ARC_TYPE if vm is not None and vm.is_arc else _VM_TYPE


def _classifications(patch: Any) -> list[str]:
    return _result_classifications(patch) or (["Updates"] if patch.os == "Windows" else ["Others"])


def _token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode()


def _untoken(text: Any) -> tuple[int, str] | None:
    try:
        doc = json.loads(base64.b64decode(str(text), validate=True))
        return int(doc["o"]), str(doc["f"])
    except (ValueError, KeyError, TypeError):
        return None


def _column_type(values: list[Any]) -> str:
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, int):
            return "integer"
        if isinstance(v, float):
            return "number"
        if isinstance(v, (dict, list)):
            return "object"
        if isinstance(v, datetime):
            return "datetime"
        return "string"
    return "string"



@dataclass
class _Snapshot:
    """One published version of a resource: from ``at`` on (plus the lag) ARG shows ``row`` (None: gone)."""

    at: datetime
    fingerprint: tuple[Any, ...] | None
    row: dict[str, Any] | None


@dataclass
class _Tracked:
    """A VM's or Arc machine's versions, oldest first, pruned to the newest one older than the lag."""

    history: list[_Snapshot]
    extra_lag: timedelta = timedelta(0)
    pending: datetime | None = None  # a watched field changed at this instant; snapshot taken lazily


def _fingerprint(vm: Vm) -> tuple[Any, ...]:
    """What a row depends on that can change at run time (compared at query time: in-place tag edits)."""
    return (tuple(vm.tags.items()), vm.power_state, vm.agent_status, vm.last_status_change, vm.patch_mode,
            vm.size, vm.location, vm.zone, vm.os_name, vm.os_version, vm.os_sku, vm.agent_version)


class _WatchedTags(dict[str, str]):
    """A machine's tag dict that announces in-place edits (``vm.tags[k] = v``, ``del``, ``update`` ...)
    before they happen, as the scenario timeline does after replacing the dict."""

    def __init__(self, items: dict[str, str], before_change: Callable[[], None]) -> None:
        super().__init__(items)
        self._before_change = before_change

    def __setitem__(self, key: str, value: str) -> None:
        if self.get(key, _MISSING) != value:
            self._before_change()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._before_change()
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self._before_change()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, str]:
        self._before_change()
        return super().popitem()

    def clear(self) -> None:
        self._before_change()
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._before_change()
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self._before_change()
        return super().setdefault(key, default)


_MISSING = object()


def _watched_class(backend: ResourceGraphBackend) -> type[Vm]:
    """A subclass of :class:`Vm` whose instances tell ``backend`` *before* a watched field changes.

    Why: the Compute, HybridCompute, Tags and control backends, the scenario timeline and faults all
    assign ``vm.tags`` / ``vm.power_state`` / ``vm.agent_status`` directly (the timeline also edits the
    tag dict in place). Swapping each machine's class (per simulator, not a global patch) and its tag
    dict for a :class:`_WatchedTags` records the instant of every such change without touching those
    writers, so a row's staleness is measured from the change, not from the next query. The class
    holds the backend weakly: a stopped simulator's backend is not kept alive by its VMs."""
    ref = weakref.ref(backend)

    def before_change(vm: Vm) -> None:
        owner = ref()
        if owner is not None:
            owner._before_change(vm)

    def __setattr__(self: Vm, name: str, value: Any) -> None:
        if name in _WATCHED and name in self.__dict__ and self.__dict__[name] != value:
            before_change(self)
        if name == "tags" and type(value) is dict:
            value = _WatchedTags(value, lambda: before_change(self))
        object.__setattr__(self, name, value)

    return type("WatchedVm", (Vm,), {"__setattr__": __setattr__, "__module__": __name__})


class ResourceGraphBackend:
    """See the module docstring. Registers its closing assessment with the core's install listeners."""

    def __init__(
        self,
        core: Core,
        *,
        compute: ComputeBackend,
        hybridcompute: HybridComputeBackend,
        maintenance: MaintenanceBackend,
    ) -> None:
        self.core = core
        self.compute = compute
        self.hybridcompute = hybridcompute
        self.maintenance = maintenance
        self.options = ResourceGraphOptions.from_scenario(core.scenario.get("resourceGraph"))
        core.on_install(self.assess_after_install)
        self.initial_assessments()
        # the ``resources`` table: versions per machine (lower id), the machines present at the start
        self._tracked: dict[str, _Tracked] = {}
        self._initial = {vm.id.lower(): vm for vm in core.fleet.all_machines()}
        self._watch_class = _watched_class(self)
        for vm in core.fleet.all_machines():
            self._watch(vm)

    def configure(self, **changes: Any) -> ResourceGraphOptions:
        """Change options at run time, e.g. ``configure(propagation=timedelta(minutes=20))``."""
        opts = self.options
        for key, value in changes.items():
            if not hasattr(opts, key):
                raise TypeError(f"unknown Resource Graph option {key!r}")
            setattr(opts, key, value)
        return opts

    def initial_assessments(self) -> None:
        """``initialAssessment``: give every reachable machine a periodic assessment from an hour ago."""
        if not self.options.initial_assessment:
            return
        at = self.core.clock.now() - timedelta(hours=1)
        for vm in self.core.fleet.all_machines():
            if vm.patchable and vm.last_assessment is None:
                vm.last_assessment = assessment_result(vm, self.core.fleet.available_patches(vm), start=at,
                                                       activity_id=stable_uuid("assessment", vm.id, "initial"))


    def assess_after_install(self, vm: Any, plan: InstallPlan) -> None:
        """``assessAfterInstall``: the install's closing assessment replaces the machine's ``…/latest`` rows."""
        if not self.options.assess_after_install:
            return
        vm.last_assessment = assessment_result(vm, self.core.fleet.available_patches(vm), start=plan.end,
                                               activity_id=stable_uuid("assessment", plan.activity_id))


    # -- the ``resources`` table ------------------------------------------------------------------
    def _watch(self, vm: Vm) -> None:
        if type(vm) is Vm:
            vm.__class__ = self._watch_class
            vm.tags = dict(vm.tags)  # wrapped by the watching class's __setattr__ (equal: no change recorded)

    def _extra_lag(self, vm: Vm) -> timedelta:
        return timedelta(minutes=float(getattr(vm, "resource_graph_lag_minutes", 0) or 0))

    def _track(self, vm: Vm, *, since: datetime) -> _Tracked:
        """Start tracking ``vm`` with its current state as published from ``since``."""
        tracked = _Tracked(history=[_Snapshot(since, _fingerprint(vm), self.resource_row(vm))],
                           extra_lag=self._extra_lag(vm))
        self._tracked[vm.id.lower()] = tracked
        return tracked

    def _before_change(self, vm: Vm) -> None:
        """A watched field of ``vm`` is about to change (its current values are still the old ones)."""
        now = self.core.clock.now()
        key = vm.id.lower()
        tracked = self._tracked.get(key)
        if tracked is None:
            tracked = self._track(vm, since=_PAST if key in self._initial else now)
        elif tracked.pending is not None and tracked.pending < now:
            self._publish(vm, tracked, tracked.pending)  # the state it had from the earlier change until now
        if tracked.pending is None or tracked.pending < now:
            tracked.pending = now

    def _publish(self, vm: Vm, tracked: _Tracked, at: datetime) -> None:
        tracked.pending = None
        fingerprint = _fingerprint(vm)
        if tracked.history[-1].fingerprint != fingerprint:
            tracked.history.append(_Snapshot(at, fingerprint, self.resource_row(vm)))
        tracked.extra_lag = self._extra_lag(vm)

    def resource_row(self, vm: Vm) -> dict[str, Any]:
        """A VM's or Arc machine's ``resources`` row now: its ARM GET body (the one serialiser each provider
        has) in ARG's columns, plus, for a VM, ``properties.extended.instanceView`` as ARG publishes it."""
        if vm.is_arc:
            body = self.hybridcompute.machine_body(vm)
            properties = body["properties"]
        else:
            body = self.compute.vm_body(vm)
            view = self.compute.instance_view(vm)
            power = next((s for s in view["statuses"] if str(s["code"]).startswith("PowerState/")), None)
            properties = {**body["properties"], "extended": {"instanceView": {
                "computerName": view.get("computerName"), "osName": view.get("osName"),
                "osVersion": view.get("osVersion"), "hyperVGeneration": view.get("hyperVGeneration"),
                "powerState": {k: power[k] for k in ("code", "level", "displayStatus")} if power else None,
            }}}
        parts = vm.id.split("/")
        return {
            "id": body["id"], "name": body["name"], "type": str(body["type"]).lower(),
            "tenantId": self.core.scenario.get("tenantId") or "", "kind": body.get("kind") or "",
            "location": body.get("location") or "", "resourceGroup": parts[4].lower(),
            "subscriptionId": parts[2], "managedBy": body.get("managedBy") or "", "sku": body.get("sku"),
            "plan": body.get("plan"), "properties": properties, "tags": body.get("tags") or {},
            "identity": body.get("identity"), "zones": body.get("zones"),
            "extendedLocation": body.get("extendedLocation"),
        }

    def _resources_rows(self, now: datetime, opts: ResourceGraphOptions) -> list[dict[str, Any]]:
        """Each machine's newest version at or before ``now - lag``; one pass over each short history.

        Changes made through a watched field were stamped when they happened; anything else (a tag
        dict edited in place, a machine added or removed at run time) is stamped when first seen here."""
        fleet = self.core.fleet
        present: dict[str, Vm] = {**fleet.vms, **fleet.machines}
        rows: list[dict[str, Any]] = []
        for key, vm in present.items():
            tracked = self._tracked.get(key)
            if tracked is None:
                self._watch(vm)
                tracked = self._track(vm, since=_PAST if key in self._initial else now)
            elif tracked.pending is not None:
                self._publish(vm, tracked, tracked.pending)
            elif tracked.history[-1].fingerprint != _fingerprint(vm):
                self._publish(vm, tracked, now)
            row = self._visible(tracked, now - opts.resources_lag - tracked.extra_lag)
            if row is not None:
                rows.append(row)
        for key, vm in self._initial.items():  # there from the start, removed before any query saw it
            if key not in present and key not in self._tracked:
                self._track(vm, since=_PAST)
        for key in [k for k in self._tracked if k not in present]:
            tracked = self._tracked[key]
            if tracked.history[-1].row is not None:
                tracked.history.append(_Snapshot(now, None, None))  # deleted: the row stays until the lag passes
            row = self._visible(tracked, now - opts.resources_lag - tracked.extra_lag)
            if row is not None:
                rows.append(row)
            elif len(tracked.history) == 1:
                del self._tracked[key]  # gone for good, and published as gone
                self._initial.pop(key, None)
        return rows

    @staticmethod
    def _visible(tracked: _Tracked, cutoff: datetime) -> dict[str, Any] | None:
        """The newest version at or before ``cutoff`` (older ones are pruned: never visible again)."""
        history = tracked.history
        index = len(history) - 1
        while index >= 0 and history[index].at > cutoff:
            index -= 1
        if index < 0:
            return None  # created after the cutoff: not in ARG yet
        if index > 0:
            del history[:index]
        return history[0].row

    def _base_row(self, row_id: str, name: str, rtype: str, *, vm_id: str, location: str) -> dict[str, Any]:
        parts = vm_id.split("/")
        return {
            "id": row_id, "name": name, "type": rtype, "tenantId": self.core.scenario.get("tenantId") or "",
            "kind": "", "location": location, "resourceGroup": parts[4].lower() if len(parts) > 4 else "",
            "subscriptionId": parts[2] if len(parts) > 2 else "", "managedBy": "", "sku": None, "plan": None,
            "properties": {}, "tags": None, "identity": None, "zones": None, "extendedLocation": None,
        }


    def _lag(self, vm_id: str, opts: ResourceGraphOptions) -> timedelta:
        """The propagation delay of one machine's rows: the scenario's plus the machine's own lag."""
        vm = self.core.fleet.vm(vm_id)
        extra = float(getattr(vm, "resource_graph_lag_minutes", 0) or 0) if vm is not None else 0.0
        return opts.propagation + timedelta(minutes=extra)


    def _installation_rows(self, run: Run | None, plan: InstallPlan) -> list[dict[str, Any]]:
        """Summary + per-patch rows of one install: a scheduled run's (``run``) or a direct one (``None``)."""
        vm = self.core.fleet.vm(plan.vm_id)
        os_name = vm.os if vm else "Windows"
        location = vm.location if vm else ""
        prefix = _type_prefix(vm)
        summary_id = f"{plan.vm_id}/patchInstallationResults/{plan.activity_id}"
        summary = self._base_row(summary_id, plan.activity_id, f"{prefix}/patchinstallationresults",
                            vm_id=plan.vm_id, location=location)
        details = list((plan.error or {}).get("details") or [])[:5]
        summary["properties"] = {
            "status": plan.status,
            "installationActivityId": plan.activity_id,
            "maintenanceWindowExceeded": plan.window_exceeded,
            "lastModifiedDateTime": _iso(plan.end),
            "notSelectedPatchCount": plan.counts["NotSelected"],
            "installedPatchCount": plan.counts["Installed"],
            "excludedPatchCount": plan.counts["Excluded"],
            "pendingPatchCount": plan.counts["Pending"],
            "failedPatchCount": plan.counts["Failed"],
            "patchServiceUsed": _service(os_name),
            "startDateTime": _iso(plan.start),
            "rebootStatus": plan.reboot_status,
            "startedBy": "Platform" if run is not None else "User",
            "osType": os_name,
            "errorDetails": [{"code": d.get("code"), "message": d.get("message")} for d in details] or None,
            "maintenanceRunId": run.correlation_id if run is not None else None,
        }
        rows = [summary]
        for patch, state in plan.patches:
            row = self._base_row(f"{summary_id}/softwarePatches/{patch.patch_id}", patch.patch_id,
                            f"{prefix}/patchinstallationresults/softwarepatches", vm_id=plan.vm_id, location=location)
            props: dict[str, Any] = {
                "installationState": state,
                "lastModifiedDateTime": _iso(plan.end),
                "publishedDateTime": _iso(patch.published) if patch.os == "Windows" else None,
                "classifications": _classifications(patch),
                "rebootRequired": patch.needs_reboot,
                "rebootBehavior": patch.reboot_behavior,
                "patchName": patch.name if patch.os == "Linux" else f"{patch.name} (KB{patch.kb_id})",
            }
            if patch.os == "Windows":
                props["kbId"] = patch.kb_id
            else:
                props["version"] = patch.version
            row["properties"] = props
            rows.append(row)
        return rows


    def _assessment_rows(self, now: datetime, opts: ResourceGraphOptions) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for vm in self.core.fleet.all_machines():
            result = vm.last_assessment
            if not isinstance(result, dict) or not result.get("startDateTime"):
                continue
            try:
                at = datetime.fromisoformat(str(result["startDateTime"]).replace("Z", "+00:00"))
            except ValueError:
                continue
            if not at + self._lag(vm.id, opts) <= now < at + opts.assessment_retention:
                continue
            prefix = _type_prefix(vm)
            summary_id = f"{vm.id}/patchAssessmentResults/latest"
            summary = self._base_row(summary_id, "latest", f"{prefix}/patchassessmentresults", vm_id=vm.id,
                                location=vm.location)
            counts = {k: 0 for k in ("security", "critical", "updateRollup", "featurePack", "servicePack",
                                     "definition", "tools", "updates", "other")}
            patches = [p for p in result.get("availablePatches") or [] if isinstance(p, dict)]
            for p in patches:
                for c in p.get("classifications") or []:
                    key = str(c).lower().replace(" updates", "").replace(" ", "")
                    match = next((k for k in counts if k.lower() == key or k.lower() + "s" == key), "other")
                    counts[match] += 1
            summary["properties"] = {
                "rebootPending": bool(result.get("rebootPending")), "patchServiceUsed": _service(vm.os),
                "osType": vm.os, "startDateTime": result["startDateTime"],
                "lastModifiedDateTime": result["startDateTime"],
                "startedBy": "User", "errorDetails": None, "availablePatchCountByClassification": counts,
            }
            rows.append(summary)
            for p in patches:
                row = self._base_row(f"{summary_id}/softwarePatches/{p.get('patchId')}", str(p.get("patchId")),
                                f"{prefix}/patchassessmentresults/softwarepatches", vm_id=vm.id,
                                location=vm.location)
                props = {"patchName": p.get("name"), "classifications": p.get("classifications") or [],
                         "rebootBehavior": p.get("rebootBehavior"),
                         "lastModifiedDateTime": p.get("lastModifiedDateTime"),
                         "rebootRequired": p.get("rebootBehavior") in ("AlwaysRequiresReboot", "CanRequestReboot")}
                if vm.os == "Windows":
                    props.update(kbId=p.get("kbId"), publishedDateTime=p.get("publishedDate"))
                else:
                    props["version"] = p.get("version")
                row["properties"] = props
                rows.append(row)
        return rows


    def table_rows(self, table: str, now: datetime) -> list[dict[str, Any]]:
        """Every row of ``table`` visible at ``now`` (propagation delay and retention applied)."""
        opts = self.options
        if table == "patchassessmentresources":
            return self._assessment_rows(now, opts)
        if table == "resources":
            return self._resources_rows(now, opts)
        rows: list[dict[str, Any]] = []
        for run in list(self.maintenance.schedule.runs.values()):
            for plan in list(run.plans.values()):
                if plan.end + self._lag(plan.vm_id, opts) <= now < plan.end + opts.retention:
                    rows.extend(self._installation_rows(run, plan))
        for plan in self._direct_installs():
            if plan.end + self._lag(plan.vm_id, opts) <= now < plan.end + opts.retention:
                rows.extend(self._installation_rows(None, plan))
        return rows


    def _direct_installs(self) -> list[InstallPlan]:
        """Finished on-demand installPatches (Compute VMs and Arc machines) whose install ran.

        An operation that failed as a whole (``operationFails``, an Arc agent not Connected) installed
        nothing and leaves no row."""
        plans: list[InstallPlan] = []
        for op in list(self.compute.operations.values()) + list(self.hybridcompute.operations.values()):
            if op.kind == "installPatches" and op.plan is not None and op.status == "Succeeded" and op.failure is None:
                plans.append(op.plan)
        return plans


    def _bad_query(self, exc: KqlError | None, message: str | None = None) -> ArmError:
        detail: dict[str, Any] = {"code": "InvalidQuery", "message": _INVALID}
        details = [detail]
        if exc is not None:
            extra: dict[str, Any] = {"code": exc.code if exc.code != "InvalidQuery" else "ParserFailure",
                                     "message": str(exc)}
            if exc.code == "UnknownFunction":
                extra["message"] = str(exc)
            if exc.token is not None:
                extra.update(line=1, characterPositionInLine=exc.position if exc.position is not None else -1,
                             token=exc.token)
            details.append(extra)
        elif message:
            details.append({"code": "InvalidQuery", "message": message})
        return ArmError(400, "BadRequest", self._support_message(), details=details)


    def _support_message(self) -> str:
        return (f"Please provide below info when asking for support: timestamp = {_iso(self.core.clock.now())}, "
                f"correlationId = {self.core.new_id()}.")


    def _quota(self, identity: str, now: datetime) -> tuple[bool, dict[str, str], int]:
        """Take one unit of ``identity``'s quota: (allowed, the quota headers, seconds until a unit frees).

        A query leaves the window once ``quotaWindowSeconds`` have passed in simulated *or* real time,
        as ARM's throttle refills (:mod:`emulator.arm.throttle`): under the skip clock the SDK sleeps
        ``Retry-After`` real seconds while simulated time stands still, and that wait must count."""
        opts = self.options
        window = opts.quota_window.total_seconds()
        real = time.monotonic()

        def age(entry: tuple[datetime, float]) -> float:
            return max((now - entry[0]).total_seconds(), real - entry[1], 0.0)

        used = [e for e in opts.used.get(identity, []) if age(e) < window]
        allowed = not opts.enforce_quota or len(used) < opts.quota
        if allowed:
            used.append((now, real))
        opts.used[identity] = used
        remaining = max(0, opts.quota - len(used))
        resets = max(0.0, window - age(used[0])) if used else window
        seconds = math.ceil(resets)
        hms = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return allowed, {"x-ms-user-quota-remaining": str(remaining), "x-ms-user-quota-resets-after": hms}, seconds


    def resources(self, body: dict[str, Any], identity: str) -> tuple[dict[str, Any], dict[str, str]]:
        """``resources(query)``: a ``QueryResponse`` and the quota headers (ARM errors raised)."""
        now = self.core.clock.now()
        allowed, headers, resets = self._quota(identity, now)
        if not allowed:
            opts = self.options
            extra = {"Retry-After": str(max(1, resets))} if opts.retry_after_on_429 else {}
            raise ArmError(429, "RateLimiting", self._support_message(), details=[{
                "code": "RateLimiting",
                "message": "Client application has been throttled and should not attempt to repeat the request "
                           "until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling "
                           "for help."}],
                headers={**headers, **extra})
        try:
            return self._answer(body, now), headers
        except ArmError as exc:  # a refused query spent its unit too: the headers are on every answer
            exc.headers = {**headers, **exc.headers}
            raise

    def _answer(self, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise self._bad_query(None, "The 'query' field is required.")
        subscriptions = body.get("subscriptions")
        groups = body.get("managementGroups")
        if subscriptions and groups:
            raise ArmError(400, "BadRequest", "Only one of 'subscriptions' or 'managementGroups' may be specified.")
        if subscriptions is not None and not (isinstance(subscriptions, list)
                                              and all(isinstance(s, str) for s in subscriptions)):
            raise ArmError(400, "BadRequest", "'subscriptions' must be an array of subscription ids.")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise ArmError(400, "BadRequest", "'options' must be an object.")
        top = options.get("$top")
        if top is not None and (not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= MAX_TOP):
            raise ArmError(400, "BadRequest", f"The '$top' option must be an integer between 1 and {MAX_TOP}.")
        skip = options.get("$skip") or 0
        if not isinstance(skip, int) or skip < 0:
            raise ArmError(400, "BadRequest", "The '$skip' option must be a non-negative integer.")
        result_format = options.get("resultFormat") or "objectArray"
        if result_format not in ("objectArray", "table"):
            raise ArmError(400, "BadRequest", "The 'resultFormat' option must be 'objectArray' or 'table'.")
        try:
            compiled = compile_query(text, {t: COLUMNS for t in TABLES}, now=now)
        except KqlError as exc:
            raise self._bad_query(exc) from None
        rows = self.table_rows(compiled.table, now)
        if subscriptions:
            wanted = {s.lower() for s in subscriptions}
            rows = [r for r in rows if str(r.get("subscriptionId", "")).lower() in wanted]
        rows.sort(key=lambda r: str(r["id"]).lower())  # the store's natural order
        try:
            result = compiled.run(rows, now)
        except Exception as exc:  # a runtime evaluation failure is ARG's 500
            raise ArmError(500, "InternalServerError", "An unexpected query execution error occurred.") from exc
        scope = json.dumps([text, sorted(s.lower() for s in subscriptions or [])])
        fingerprint = hashlib.sha256(scope.encode()).hexdigest()[:16]
        if options.get("$skipToken"):
            parsed = _untoken(options["$skipToken"])
            if parsed is None or parsed[1] != fingerprint:
                raise ArmError(400, "BadRequest",
                               "The $skipToken is invalid or does not belong to this query and scope.")
            offset = parsed[0]
        else:
            offset = 0 if compiled.limited else skip
        page_size = top or DEFAULT_TOP
        page = result[offset:offset + page_size]
        more = offset + len(page) < len(result)
        pageable = not compiled.limited and "id" in compiled.columns
        answer: dict[str, Any] = {"totalRecords": len(result), "count": len(page),
                                  "resultTruncated": "true" if more and not pageable else "false", "facets": []}
        if more and pageable:
            answer["$skipToken"] = _token(offset + len(page), fingerprint)
        data = [{c: to_json_value(r.get(c)) for c in compiled.columns} for r in page]
        if result_format == "table":
            answer["data"] = {
                "columns": [{"name": c, "type": _column_type([r.get(c) for r in page])} for c in compiled.columns],
                "rows": [[row[c] for c in compiled.columns] for row in data],
            }
        else:
            answer["data"] = data
        return answer
