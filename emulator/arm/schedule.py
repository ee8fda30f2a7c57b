"""The schedule engine: maintenance configuration runs on the shared clock.

Why: the app's whole control surface is Update Manager's timeline (update-manager-domain.md
§2.2), so the simulator reproduces it for every InGuestPatch configuration:

* **T-40** (``events.freezeMinutesBefore``): the run is created (``Pending``) and its scope is
  frozen -- resource-level assignments plus dynamic scopes evaluated *now*, so a tag change after
  T-40 applies to the next run. The configuration's ``installPatches`` are frozen too (whether
  Azure applies edits made between T-40 and T0 is undocumented; freezing is the conservative
  reading, so a manifest pinned late shows up in tests). ``events.freezeInstallParameters: false``
  reads them at T0 instead;
* **T-40…T-30**: ``PreMaintenanceEvent`` is published with ``cancellationCutOffDateTime`` = T-10
  (``events.cancellationCutOffMinutesBefore``). AUM triggers it "at least 30 mins prior" and the
  cancellation flow "is honored from T-40 when the premaintenance event is triggered until T-10"
  (update-manager-domain.md §2.2), so its time varies: each run draws its lead time uniformly in
  [30, 40] minutes (whole seconds) from ``Random(f"{seed}/pre-event/{correlationId}")`` --
  reproducible for a seed. ``events.preEventLeadMinutes`` pins it for every run (30 is the worst
  case: 20 minutes until the T-10 cutoff); ``preEventMinutesBefore`` is the older name of the pin;
* cancel (``PUT {correlationId}`` with status ``Cancel``) is honoured until
  ``min(cancellationCutOffDateTime, T-10)``;
* **T0**: every VM in the frozen scope that meets the prerequisites (running, and already at T-15;
  agent ready;
  ``AutomaticByPlatform`` with the bypass flag) installs with the configuration's
  ``installPatches`` within the window (reboot reserve 10 min Windows / 15 min Linux); VMs that do
  not are recorded as failed runs with a reason and left untouched. VMs in one availability set
  are patched one update domain after another (update-manager-domain.md §8), so a large set can
  run out of window;
* when the last VM finishes, the run is ``Completed``, per-VM results are visible in the instance
  view and in the VM's ``applyUpdates/{run}``, and ``PostMaintenanceEvent`` carries the run status
  (``Succeeded``, ``CompletedWithWarnings`` or ``Failed``). A cancelled run ends ``Cancelled`` and,
  unless ``events.postEventOnCancel`` is false, a post event with status ``Cancelled`` is sent.

**Late edits auto-cancel.** An edit (PUT or PATCH) of an existing configuration less than 40
minutes before its next run -- i.e. after that run was created at T-40 -- cancels that run: "If
you're creating a new schedule or editing an existing schedule with a pre event, you need at least
40 minutes prior to the maintenance window for the pre event to run" (learn.microsoft.com
azure/update-manager/manage-pre-post-events, timeline note), "otherwise it will lead to
auto-cancellation of the current scheduled run" (pre-post-scripts-overview.md, quoted in
update-manager-domain.md §2.2 and §6). The run's applyUpdates record (and each VM's) turns
``Cancelled`` at once, no VM is patched by it, the post event says ``Cancelled``, and the
restarted schedule creates the next occurrence as usual with the new parameters. Any PUT/PATCH
counts, even one that changes nothing (the docs do not distinguish; the conservative reading).
``events.cancelRunOnLateEdit: false`` turns this off (the run then goes ahead with the parameters
frozen at T-40). A configuration *created* less than 40 minutes before an occurrence skips that
occurrence (no run record).

Arc-enabled servers (``Microsoft.HybridCompute/machines``) in a configuration's scope (resource
assignments on the machine, or dynamic scopes whose ``resourceTypes`` include them) take part in
runs exactly like VMs, with the same pre/post events; their prerequisite is a ``Connected`` agent
(frozen scope at T-40, checked at T0), with no patch-mode or bypass-flag requirement.

LIMITATIONS: concurrent schedules on one VM are not serialized (a VM busy with another install is
recorded as failed with ``Conflict``); update domains are assigned round-robin (5) by VM name.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.arm.events import POST, PRE
from emulator.arm.fleet import MaintenanceConfiguration, Vm
from emulator.arm.patching import InstallPlan, activity_id, plan_install
from emulator.arm.recurrence import Occurrence, next_occurrence, run_name

if TYPE_CHECKING:
    from emulator.arm.backends.core import Core

__all__ = ["Run", "ScheduleEngine"]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass
class _Wave:
    members: list[Vm]
    previous: list[Vm]  # VMs whose installs must finish first (the previous update domain)


def _update_domain_waves(vms: list[Vm]) -> list[_Wave]:
    """Install waves: VMs outside availability sets together; each set one update domain at a time."""
    waves = [_Wave(members=[vm for vm in vms if not vm.availability_set_id], previous=[])]
    sets: dict[str, list[Vm]] = {}
    for vm in vms:
        if vm.availability_set_id:
            sets.setdefault(vm.availability_set_id.lower(), []).append(vm)
    for members in sets.values():
        previous: list[Vm] = []
        for domain in sorted({vm.update_domain for vm in members}):
            wave = [vm for vm in members if vm.update_domain == domain]
            waves.append(_Wave(members=wave, previous=previous))
            previous = wave
    return waves


@dataclass
class Run:
    """One scheduled run (a maintenance configuration's ``applyUpdates/{yyyyMMddHHmmss}``)."""

    config_id: str
    config_name: str
    name: str
    start: datetime
    end: datetime
    cutoff: datetime
    status: str = "Pending"  # Pending | InProgress | Completed | Cancelled
    vm_ids: list[str] = field(default_factory=list)
    plans: dict[str, InstallPlan] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # vm id -> reason
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    result_status: str | None = None
    last_update: datetime | None = None
    parameters: dict[str, Any] | None = None  # installPatches frozen at T-40 (None: read at T0)
    not_running_at_t15: set[str] = field(default_factory=set)  # lower VM ids

    @property
    def correlation_id(self) -> str:
        return f"{self.config_id}/providers/microsoft.maintenance/applyupdates/{self.name}"

    @property
    def cancel_deadline(self) -> datetime:
        return min(self.cutoff, self.start - timedelta(minutes=10))

    def to_dict(self) -> dict[str, Any]:
        return {
            "correlationId": self.correlation_id,
            "maintenanceConfigurationId": self.config_id,
            "name": self.name,
            "startDateTime": _iso(self.start),
            "endDateTime": _iso(self.end),
            "cancellationCutOffDateTime": _iso(self.cutoff),
            "status": self.status,
            "resultStatus": self.result_status,
            "vms": list(self.vm_ids),
            "results": {vm: plan.summary() for vm, plan in self.plans.items()},
            "skipped": dict(self.skipped),
            "cancelledAt": _iso(self.cancelled_at) if self.cancelled_at else None,
            "cancelReason": self.cancel_reason,
        }


class ScheduleEngine:
    """The runs of every configuration (the Maintenance backend owns one, see the module docstring).

    ``apply_update(vm_id, run, status)`` writes a VM's ``applyUpdates/{run}`` record (the
    Maintenance backend's :meth:`~emulator.arm.backends.maintenance.MaintenanceBackend.set_vm_apply_update`).
    """

    def __init__(
        self,
        core: Core,
        options: dict[str, Any] | None = None,
        *,
        apply_update: Callable[[str, Run, str], None],
    ) -> None:
        options = options or {}
        self.core = core
        self._apply_update = apply_update
        self.freeze = timedelta(minutes=float(options.get("freezeMinutesBefore", 40)))
        pinned = options.get("preEventLeadMinutes", options.get("preEventMinutesBefore"))
        self.pre_lead: timedelta | None = None if pinned is None else timedelta(minutes=float(pinned))
        self.cutoff_lead = timedelta(minutes=float(options.get("cancellationCutOffMinutesBefore", 10)))
        self.post_on_cancel = bool(options.get("postEventOnCancel", True))
        self.freeze_parameters = bool(options.get("freezeInstallParameters", True))
        self.system_cancel = bool(options.get("cancelIfPreEventUndelivered", False))
        self.cancel_on_late_edit = bool(options.get("cancelRunOnLateEdit", True))
        self.pre_deadline = timedelta(minutes=float(options.get("preEventDeadlineMinutesBefore", 30)))
        self.runs: dict[str, Run] = {}  # lower correlation id -> run
        self.precancelled: set[str] = set()  # lower correlation ids cancelled before T-40
        self._loops: dict[str, asyncio.Task[None]] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def start_all(self) -> None:
        for config in list(self.core.fleet.configurations.values()):
            self.restart(config)

    def restart(self, config: MaintenanceConfiguration) -> None:
        """(Re)start a configuration's schedule after it was created or changed."""
        self.stop(config.id)
        if config.scope.lower() != "inguestpatch":
            return
        self._loops[config.id.lower()] = self.core.spawn(self._loop(config.id, config.generation))

    def configuration_edited(self, config: MaintenanceConfiguration) -> list[Run]:
        """Auto-cancel the configuration's created, not yet started runs (an edit after their T-40)."""
        if not self.cancel_on_late_edit:
            return []
        now = self.core.clock.now()
        cancelled = []
        for run in self.runs.values():
            if run.config_id.lower() != config.id.lower() or run.status != "Pending" or run.cancelled_at is not None:
                continue
            if not now < run.start <= now + self.freeze:
                continue
            self.mark_cancelled(
                run,
                f"Maintenance cancelled automatically at {_iso(now)}: the maintenance configuration was "
                f"edited less than 40 minutes before the scheduled run at {_iso(run.start)}",
            )
            cancelled.append(run)
        return cancelled

    def mark_cancelled(self, run: Run, reason: str) -> None:
        """Cancel a pending run now: its records read ``Cancelled`` at once; at T0 nothing installs."""
        now = self.core.clock.now()
        run.cancelled_at = now
        run.cancel_reason = reason
        run.status = "Cancelled"
        run.last_update = now
        for vm_id in run.vm_ids:
            self._apply_update(vm_id, run, "Cancelled")

    def stop(self, config_id: str) -> None:
        task = self._loops.pop(config_id.lower(), None)
        if task is not None:
            task.cancel()

    def pre_event_lead(self, correlation_id: str) -> timedelta:
        """How long before its start a run's pre-event is published (pinned, or seeded in 30..40 min)."""
        if self.pre_lead is not None:
            return self.pre_lead
        rng = random.Random(f"{self.core.seed}/pre-event/{correlation_id.lower()}")
        return timedelta(seconds=30 * 60 + round(rng.random() * 600))

    def run(self, correlation_id: str) -> Run | None:
        return self.runs.get(correlation_id.lower().rstrip("/"))

    def fire(self, config: MaintenanceConfiguration, start: datetime) -> str:
        """Schedule an extra run of ``config`` at ``start`` (tests/demos); returns its correlationId."""
        occ = Occurrence(start=start, end=start + config.window.duration)
        self.core.spawn(self._run(config.id, occ))
        return f"{config.id}/providers/microsoft.maintenance/applyupdates/{run_name(start)}"

    # -- the loop -------------------------------------------------------------------------------
    async def _loop(self, config_id: str, generation: int) -> None:
        clock = self.core.clock
        after = clock.now() + self.freeze - timedelta(microseconds=1)
        while True:
            config = self.core.fleet.configuration(config_id)
            if config is None or config.generation != generation:
                return
            occ = next_occurrence(config.window, after)
            if occ is None:
                return
            await clock.sleep_until(occ.start - self.freeze)
            self.core.spawn(self._run(config_id, occ))
            after = occ.start

    async def _run(self, config_id: str, occ: Occurrence) -> None:
        clock = self.core.clock
        await clock.sleep_until(occ.start - self.freeze)
        with clock.busy():
            config = self.core.fleet.configuration(config_id)
            if config is None:
                return
            run = Run(
                config_id=config.id,
                config_name=config.name,
                name=run_name(occ.start),
                start=occ.start,
                end=occ.end,
                cutoff=occ.start - self.cutoff_lead,
                last_update=clock.now(),
            )
            if run.correlation_id.lower() in self.runs:
                return  # a fired run and the schedule may coincide
            run.vm_ids = [vm.id for vm in self.core.fleet.assigned_vms(config.id)]
            if self.freeze_parameters:
                run.parameters = config.install_patches
            self.runs[run.correlation_id.lower()] = run
            for vm_id in run.vm_ids:
                self._apply_update(vm_id, run, "Pending")
            if run.correlation_id.lower() in self.precancelled:
                self.mark_cancelled(run, "Maintenance cancelled using cancellation API before the run was scheduled")
        pre_lead = self.pre_event_lead(run.correlation_id)
        await clock.sleep_until(occ.start - pre_lead)
        with clock.busy():
            if run.cancelled_at is None:
                self._publish(PRE, run, config, include_cutoff=True)
        # system cancellation: the pre-event could not be sent by T-30 (one sent at T-30 was sent)
        if (
            self.system_cancel
            and pre_lead > self.pre_deadline
            and self.core.events.has_subscribers(PRE, config.id, config.name)
        ):
            await clock.sleep_until(occ.start - self.pre_deadline)
            with clock.busy():
                if run.cancelled_at is None and not self.core.events.was_delivered(PRE, run.correlation_id):
                    failure = f"Maintenance cancelled due to internal platform failure at {_iso(clock.now())}"
                    self.mark_cancelled(run, failure)
        await clock.sleep_until(occ.start - timedelta(minutes=15))
        with clock.busy():  # machines must be powered on at least 15 minutes before the run
            for vm_id in run.vm_ids:
                vm = self.core.fleet.vm(vm_id)
                if vm is not None and vm.power_state != "running":
                    run.not_running_at_t15.add(vm_id.lower())
        await clock.sleep_until(occ.start)
        with clock.busy():
            config = self.core.fleet.configuration(config_id) or config
            run.last_update = clock.now()
            if run.cancelled_at is not None:
                run.status = "Cancelled"
                for vm_id in run.vm_ids:
                    self._apply_update(vm_id, run, "Cancelled")
                if self.post_on_cancel:
                    self._publish(POST, run, config, status="Cancelled")
                return
            run.status = "InProgress"
            parameters = run.parameters if run.parameters is not None else config.install_patches
            eligible: list[Vm] = []
            for vm_id in run.vm_ids:
                vm = self.core.fleet.vm(vm_id)
                if vm is None:
                    run.skipped[vm_id] = "ResourceNotFound: the VM no longer exists"
                    continue
                reason = self._prerequisite_problem(vm)
                if reason is None and vm.id.lower() in run.not_running_at_t15:
                    reason = "VMNotRunning: the VM was not running 15 minutes before the scheduled run"
                if reason:
                    run.skipped[vm.id] = reason
                    self._apply_update(vm.id, run, "Completed")
                    continue
                eligible.append(vm)
            for group in _update_domain_waves(eligible):
                # VMs of one availability set patch one update domain after another
                group_start = max([clock.now()] + [run.plans[v.id].end for v in group.previous])
                for vm in group.members:
                    plan = plan_install(
                        vm,
                        self.core.fleet.available_patches(vm),
                        parameters,
                        start=group_start,
                        activity_id=activity_id(vm.id, run.correlation_id),
                        duration_limit=occ.end - group_start,
                        reboot_minutes=self.core.reboot_minutes,
                        maintenance_run_id=run.correlation_id,
                        **self.core.faults.for_install(vm),
                    )
                    run.plans[vm.id] = plan
                    vm.busy_operation = run.correlation_id
                    vm.last_installation = plan.summary(in_progress=True, now=clock.now())
                    self._apply_update(vm.id, run, "InProgress")
        for plan in sorted(run.plans.values(), key=lambda p: (p.end, p.vm_id)):
            await clock.sleep_until(plan.end)
            with clock.busy():
                vm = self.core.fleet.vm(plan.vm_id)
                if vm is not None:
                    self.core.apply_install(vm, plan)
                    self._apply_update(vm.id, run, "Completed")
        with clock.busy():
            run.status = "Completed"
            run.last_update = clock.now()
            statuses = [p.status for p in run.plans.values()]
            if "Failed" in statuses or run.skipped:
                run.result_status = "Failed"
            elif "CompletedWithWarnings" in statuses:
                run.result_status = "CompletedWithWarnings"
            else:
                run.result_status = "Succeeded"
            self._publish(POST, run, config, status=run.result_status)

    def _prerequisite_problem(self, vm: Vm) -> str | None:
        if vm.is_arc:
            # Arc: a Connected agent, no patch-orchestration prerequisite (arc-and-resource-graph.md §3.2)
            if vm.agent_status != "Connected":
                return (
                    f"MachineNotConnected: the Azure Connected Machine agent is {vm.agent_status}; "
                    "Arc-enabled servers patch only while Connected"
                )
            if vm.busy_operation:
                return f"Conflict: another patch operation is in progress ({vm.busy_operation})"
            return None
        if vm.power_state != "running":
            return f"VMNotRunning: the VM is {vm.power_state}; machines must be powered on for scheduled patching"
        if not vm.vm_agent_ready:
            return "VMAgentStatusCommunicationError: the VM agent is not ready"
        if vm.patch_mode != "AutomaticByPlatform" or not vm.bypass_platform_safety_checks:
            return (
                "PrerequisitesNotMet: scheduled patching needs patchMode AutomaticByPlatform and "
                "bypassPlatformSafetyChecksOnUserSchedule=true"
            )
        if vm.busy_operation:
            return f"Conflict: another patch operation is in progress ({vm.busy_operation})"
        return None

    def _publish(
        self,
        event_type: str,
        run: Run,
        config: MaintenanceConfiguration,
        *,
        include_cutoff: bool = False,
        status: str | None = None,
    ) -> None:
        subscriptions = sorted({vm_id.split("/")[2] for vm_id in run.vm_ids} or {config.subscription})
        data: dict[str, Any] = {
            "correlationId": run.correlation_id,
            "maintenanceConfigurationId": config.id,
            "startDateTime": _iso(run.start),
            "endDateTime": _iso(run.end),
        }
        if include_cutoff:
            data["cancellationCutOffDateTime"] = _iso(run.cutoff)
        data["resourceSubscriptionIds"] = subscriptions
        if status is not None:
            data["status"] = status
        self.core.events.publish(event_type, config_id=config.id, config_name=config.name, data=data)
