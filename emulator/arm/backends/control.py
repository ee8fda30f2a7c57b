"""The control backend: the simulator's Python control API, which ``/_sim/...`` serves over HTTP.

Why: tests and demos look inside the simulated Azure (recorded requests, fleet state, runs, event
deliveries) and steer it (a VM turns unhealthy, a run fires early, faults at run time) without
going through ARM. Every method is safe from any thread: it runs on the simulator's loop
(:meth:`~emulator.arm.backends.core.Core.in_loop`). :class:`~emulator.arm.server.ArmSimulator`
exposes the same methods; :mod:`emulator.arm.control` is the HTTP layer.

SUPPORTED: ``vm``, ``set_vm_state`` (health, power state, VM agent; an Arc machine's agent
status), ``fire_run``, ``add_fault`` / ``remove_fault`` / ``clear_faults`` / ``fault_list``,
``runs`` / ``run``, ``deliveries``, ``fleet_state``, the per-VM health URLs.

LIMITATIONS: ``vmAgentNotReady`` / ``deallocated`` faults apply at start only (use
``set_vm_state`` on a running simulator).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from emulator.arm.backends.core import Core
from emulator.arm.backends.core import iso as _iso
from emulator.arm.backends.maintenance import MaintenanceBackend
from emulator.arm.fleet import Vm
from emulator.arm.recorder import Recorder
from emulator.arm.scenario import ScenarioError, validate_fault
from emulator.arm.schedule import Run

__all__ = ["ControlBackend"]


class ControlBackend:
    """See the module docstring."""

    def __init__(self, core: Core, *, maintenance: MaintenanceBackend, recorder: Recorder) -> None:
        self.core = core
        self.maintenance = maintenance
        self.recorder = recorder
        self.health_base_url = ""  # set by the server when its health listener is up

    # -- health endpoints -----------------------------------------------------------------------
    @property
    def health_url_template(self) -> str:
        return f"{self.health_base_url}/vms/{{vmName}}/health"

    def health_url(self, vm_name: str) -> str:
        return f"{self.health_base_url}/vms/{quote(vm_name)}/health"

    # -- machines -------------------------------------------------------------------------------
    def vm(self, name: str) -> Vm:
        vm = self.core.fleet.vm_by_name(name)
        if vm is None:
            raise KeyError(f"no VM named {name!r}")
        return vm

    def set_vm_state(
        self,
        name: str,
        *,
        health: str | None = None,
        power_state: str | None = None,
        vm_agent_ready: bool | None = None,
        agent_status: str | None = None,
    ) -> None:
        vm = self.vm(name)
        if agent_status is not None and not vm.is_arc:
            raise ValueError(f"agentStatus: {name!r} is an Azure VM; use powerState / vmAgent")
        if vm.is_arc and (power_state is not None or vm_agent_ready is not None):
            raise ValueError(f"powerState/vmAgent: {name!r} is an Arc-enabled server; use agentStatus")
        clock = self.core.clock

        def change() -> None:
            if agent_status is not None:
                if agent_status not in ("Connected", "Disconnected", "Expired", "Error", "AwaitingConnection"):
                    raise ValueError(
                        "agentStatus must be Connected, Disconnected, Expired, Error or AwaitingConnection"
                    )
                vm.set_agent_status(agent_status, clock.now())
            if health is not None:
                if health not in ("Healthy", "Unhealthy", "Unknown"):
                    raise ValueError("health must be Healthy, Unhealthy or Unknown")
                vm.health = health
            if power_state is not None:
                if power_state not in ("running", "deallocated", "stopped"):
                    raise ValueError("powerState must be running, deallocated or stopped")
                vm.power_state = power_state
            if vm_agent_ready is not None:
                vm.vm_agent_ready = vm_agent_ready

        self.core.in_loop(change)

    # -- runs -----------------------------------------------------------------------------------
    def fire_run(self, configuration: str, start: datetime | None = None) -> str:
        """Schedule an extra run of a configuration (default: 41 min from now); returns its correlationId."""
        config = self.core.fleet.configuration_by_name(configuration)
        if config is None:
            raise KeyError(f"no maintenance configuration {configuration!r}")
        when = start or (self.core.clock.now() + timedelta(minutes=41)).replace(second=0, microsecond=0)
        schedule = self.maintenance.schedule
        return str(self.core.in_loop(lambda: schedule.fire(config, when)))

    @property
    def runs(self) -> list[Run]:
        """Every run created so far (snapshot taken on the simulator's loop; safe from any thread)."""
        schedule = self.maintenance.schedule
        runs: list[Run] = self.core.in_loop(lambda: list(schedule.runs.values()))
        return sorted(runs, key=lambda r: (r.start, r.config_id.lower()))

    def run(self, correlation_id: str) -> Run | None:
        return self.maintenance.schedule.run(correlation_id)

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Event deliveries (one entry per attempt), oldest first."""
        events = self.core.events
        return list(self.core.in_loop(lambda: list(events.log)))

    # -- faults at run time ---------------------------------------------------------------------
    def add_fault(self, fault: dict[str, Any]) -> int:
        """Inject a fault now (validated like a scenario's); returns its index for :meth:`remove_fault`."""
        try:
            validate_fault(fault)
        except ScenarioError as exc:
            raise ValueError(str(exc).replace("fault: invalid scenario:\n  faults[0]", "fault")) from None
        if fault["type"] in ("vmAgentNotReady", "deallocated"):
            raise ValueError(
                f"fault: {fault['type']} applies at start only; change a running VM with POST /_sim/vms/{{name}}"
            )
        faults = self.core.faults
        return int(self.core.in_loop(lambda: faults.add(fault)))

    def remove_fault(self, index: int) -> bool:
        faults = self.core.faults
        return bool(self.core.in_loop(lambda: faults.remove(index)))

    def clear_faults(self) -> int:
        return int(self.core.in_loop(self.core.faults.clear))

    def fault_list(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.core.in_loop(self.core.faults.describe)
        return result

    # -- fleet ----------------------------------------------------------------------------------
    def fleet_state(self) -> dict[str, Any]:
        """VMs, configurations and assignments as plain JSON (what ``GET /_sim/fleet`` returns)."""
        return dict(self.core.in_loop(self._fleet_state))

    def _fleet_state(self) -> dict[str, Any]:
        fleet = self.core.fleet
        return {
            "time": _iso(self.core.clock.now()),
            "vms": [
                {
                    "name": vm.name,
                    "id": vm.id,
                    "os": vm.os,
                    "location": vm.location,
                    "zone": vm.zone,
                    "tags": dict(vm.tags),
                    "powerState": vm.power_state,
                    "vmAgentReady": vm.vm_agent_ready,
                    "health": vm.health,
                    "installedPatches": sorted(vm.installed),
                    "availablePatches": [p.key for p in fleet.available_patches(vm)],
                    "lastPatchInstallationSummary": vm.last_installation,
                    "installCount": vm.install_count,
                    "healthUrl": self.health_url(vm.name) if self.health_base_url else None,
                }
                for vm in sorted(fleet.vms.values(), key=lambda v: v.id.lower())
            ],
            "arcMachines": [
                {
                    "name": m.name,
                    "id": m.id,
                    "kind": "arc",
                    "os": m.os,
                    "osName": m.os_name,
                    "osSku": m.os_sku,
                    "location": m.location,
                    "tags": dict(m.tags),
                    "status": m.agent_status,
                    "lastStatusChange": _iso(m.last_status_change) if m.last_status_change else None,
                    "health": m.health,
                    "installedPatches": sorted(m.installed),
                    "availablePatches": [p.key for p in fleet.available_patches(m)],
                    "lastPatchInstallationSummary": m.last_installation,
                    "installCount": m.install_count,
                    "healthUrl": self.health_url(m.name) if self.health_base_url else None,
                }
                for m in sorted(fleet.machines.values(), key=lambda v: v.id.lower())
            ],
            "maintenanceConfigurations": [
                self.maintenance.configuration_body(c) for c in fleet.configurations.values()
            ],
            "assignments": [
                {"id": a.id, "configurationId": a.configuration_id, "scope": a.scope_id, "filter": a.filter}
                for a in fleet.assignments.values()
            ],
        }
