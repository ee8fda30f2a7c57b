"""The Maintenance backend: configurations, assignments, applyUpdates records and run cancellation.

State: the fleet's maintenance configurations and assignments (shared through the core), the
``applyUpdates`` records of each VM (:attr:`MaintenanceBackend.apply_updates`) and the schedule
engine (:attr:`MaintenanceBackend.schedule`, :mod:`emulator.arm.schedule`) that creates the runs.
Methods are named after ``MaintenanceManagementClient`` operations (``maintenance_configurations``,
``configuration_assignments``, ``apply_updates``); :mod:`emulator.arm.maintenance` is the HTTP
layer above it and documents the behaviour.

SUPPORTED: InGuestPatch window validation with the simulator's own recurrence
(:mod:`emulator.arm.recurrence`) and the Guest limits, ``rebootSetting`` echoed as sent or in the
service's form, writes that restart a configuration's schedule (late edits auto-cancel the
created run), dynamic-scope assignments, per-VM ``applyUpdates`` records, cancellation until
``min(cancellationCutOffDateTime, T-10)`` and of future occurrences not created yet.

LIMITATIONS: see :mod:`emulator.arm.maintenance`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from emulator.arm.backends.core import Core
from emulator.arm.backends.core import iso as _iso
from emulator.arm.errors import ArmError
from emulator.arm.fleet import Assignment, MaintenanceConfiguration, normalize_reboot_setting
from emulator.arm.recurrence import occurrences, parse_window
from emulator.arm.schedule import Run, ScheduleEngine

__all__ = ["MaintenanceBackend", "not_found"]

_TYPE_MC = "Microsoft.Maintenance/maintenanceConfigurations"
_TYPE_CA = "Microsoft.Maintenance/configurationAssignments"
_TYPE_AU = "Microsoft.Maintenance/applyUpdates"
_MIN_GUEST = timedelta(hours=1, minutes=30)
_MAX_GUEST = timedelta(hours=3, minutes=55)


def not_found(kind: str, name: str) -> ArmError:
    return ArmError(404, "NotFound", f"The {kind} '{name}' was not found.")


def _bad(message: str) -> ArmError:
    return ArmError(400, "BadRequest", message)


def _validate_properties(properties: dict[str, Any], *, enforce_limits: bool = True) -> dict[str, Any]:
    scope = str(properties.get("maintenanceScope") or "")
    if not scope:
        raise _bad("maintenanceScope is required.")
    window = properties.get("maintenanceWindow")
    if scope.lower() == "inguestpatch":
        if not isinstance(window, dict):
            raise _bad("maintenanceWindow is required for the InGuestPatch maintenance scope.")
        try:
            parsed = parse_window(window)
        except ValueError as exc:
            raise _bad(f"Invalid maintenanceWindow: {exc}") from None
        if enforce_limits and not _MIN_GUEST <= parsed.duration <= _MAX_GUEST:
            raise _bad(
                "Invalid maintenanceWindow: duration must be between 01:30 and 03:55 for the "
                "InGuestPatch maintenance scope."
            )
        install = properties.get("installPatches")
        if install is not None:
            if not isinstance(install, dict):
                raise _bad("installPatches must be an object.")
            try:
                normalize_reboot_setting(install.get("rebootSetting"))
            except ValueError as exc:
                raise _bad(str(exc)) from None
            windows = install.get("windowsParameters") or {}
            if "maxPatchPublishDate" in windows:
                raise _bad(
                    "windowsParameters.maxPatchPublishDate is not supported by maintenance configurations "
                    "(it exists only on the VM installPatches API)."
                )
    out = dict(properties)
    out.setdefault("namespace", "Microsoft.Maintenance")
    out.setdefault("visibility", "Custom")
    return out


def _assignment_id(scope: str, name: str) -> str:
    return f"{scope}/providers/Microsoft.Maintenance/configurationAssignments/{name}"


def _future_occurrence(config: MaintenanceConfiguration, name: str, now: datetime) -> bool:
    try:
        start = datetime.strptime(name, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return False
    return any(o.start == start for o in occurrences(config.window, start - timedelta(seconds=1), start)) and (
        start > now
    )


class MaintenanceBackend:
    """See the module docstring."""

    def __init__(self, core: Core) -> None:
        self.core = core
        options = core.scenario.get("maintenance") or {}
        self.reboot_setting_style = options.get("rebootSettingStyle", "request")
        self.enforce_guest_limits = bool(options.get("enforceGuestWindowLimits", True))
        self.apply_updates: dict[str, dict[str, Any]] = {}  # lower id -> ApplyUpdate body
        self.schedule = ScheduleEngine(core, core.scenario.get("events"), apply_update=self.set_vm_apply_update)

    def check_scope(self, sub: str, rg: str | None = None) -> None:
        fleet = self.core.fleet
        if not fleet.has_subscription(sub):
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        if rg is not None and not fleet.has_resource_group(sub, rg):
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")

    # -- maintenance_configurations -------------------------------------------------------------
    def configuration_body(self, config: MaintenanceConfiguration) -> dict[str, Any]:
        properties = dict(config.properties)
        install = dict(properties.get("installPatches") or {})
        if install.get("rebootSetting") is not None and self.reboot_setting_style == "service":
            install["rebootSetting"] = normalize_reboot_setting(install["rebootSetting"], style="service")
            properties["installPatches"] = install
        return {
            "id": config.id,
            "name": config.name,
            "type": _TYPE_MC,
            "location": config.location,
            "tags": dict(config.tags),
            "properties": properties,
        }

    @staticmethod
    def _configuration_id(sub: str, rg: str, name: str) -> str:
        return (
            f"/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.Maintenance/"
            f"maintenanceConfigurations/{name}"
        )

    def get_configuration(self, sub: str, rg: str, name: str) -> MaintenanceConfiguration:
        config = self.core.fleet.configuration(self._configuration_id(sub, rg, name))
        if config is None:
            self.check_scope(sub, rg)
            raise not_found("maintenance configuration", name)
        return config

    def create_or_update_configuration(
        self, sub: str, rg: str, name: str, body: dict[str, Any]
    ) -> tuple[MaintenanceConfiguration, bool]:
        """PUT: the configuration and whether it was created. Restarts its schedule."""
        self.check_scope(sub, rg)
        properties = _validate_properties(dict(body.get("properties") or {}), enforce_limits=self.enforce_guest_limits)
        existing = self.core.fleet.configuration(self._configuration_id(sub, rg, name))
        location = str(body.get("location") or (existing.location if existing else ""))
        if not location:
            raise _bad("location is required.")
        if existing is None:
            config = MaintenanceConfiguration(
                subscription=sub,
                resource_group=rg,
                name=name,
                location=location,
                properties=properties,
                tags=dict(body.get("tags") or {}),
                created=self.core.clock.now(),
            )
            self.core.fleet.configurations[config.id.lower()] = config
        else:
            config = existing
            config.properties = properties
            config.location = location
            if "tags" in body:
                config.tags = dict(body.get("tags") or {})
            config.generation += 1
            self.schedule.configuration_edited(config)  # an edit after T-40 auto-cancels that run
        self.schedule.restart(config)
        return config, existing is None

    def update_configuration(self, config: MaintenanceConfiguration, body: dict[str, Any]) -> MaintenanceConfiguration:
        """PATCH: merge properties, replace tags. Restarts the schedule (a late edit auto-cancels)."""
        if "properties" in body:
            merged = {**config.properties, **(body.get("properties") or {})}
            config.properties = _validate_properties(merged, enforce_limits=self.enforce_guest_limits)
            config.generation += 1
        if "tags" in body:
            config.tags = dict(body.get("tags") or {})
        self.schedule.configuration_edited(config)  # an edit after T-40 auto-cancels that run
        self.schedule.restart(config)
        return config

    def delete_configuration(self, sub: str, rg: str, name: str) -> MaintenanceConfiguration | None:
        """DELETE: the deleted configuration, or None when there was none (ARM's 204)."""
        try:
            config = self.get_configuration(sub, rg, name)
        except ArmError as exc:
            if exc.code == "NotFound":
                return None
            raise
        self.schedule.stop(config.id)
        del self.core.fleet.configurations[config.id.lower()]
        config.generation += 1
        return config

    def list_configurations(self, sub: str, rg: str | None = None) -> list[MaintenanceConfiguration]:
        self.check_scope(sub, rg)
        prefix = f"/subscriptions/{sub}/".lower()
        if rg is not None:
            prefix += f"resourcegroups/{rg}/".lower()
        return [c for key, c in sorted(self.core.fleet.configurations.items()) if key.startswith(prefix)]

    # -- configuration_assignments --------------------------------------------------------------
    @staticmethod
    def assignment_body(a: Assignment) -> dict[str, Any]:
        properties: dict[str, Any] = {"maintenanceConfigurationId": a.configuration_id, "resourceId": a.scope_id}
        if a.filter is not None:
            properties["filter"] = a.filter
        return {"id": a.id, "name": a.name, "type": _TYPE_CA, "location": a.location, "properties": properties}

    def scope_of(self, params: Mapping[str, str]) -> str:
        """The scope an assignment route names (``sub``, ``rg``, ``provider``/``rtype``/``rname``), 404s."""
        p = params
        fleet = self.core.fleet
        if "rname" in p:
            resource = (
                f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}/providers/{p['provider']}/{p['rtype']}/{p['rname']}"
            )
            vm = fleet.vm(resource)
            if vm is not None:
                return vm.id
            config = fleet.configuration(resource)
            if config is not None:
                return config.id
            self.check_scope(p["sub"], p.get("rg"))
            raise ArmError(404, "ResourceNotFound", f"The resource '{resource}' was not found.")
        self.check_scope(p["sub"], p.get("rg"))
        if "rg" in p:
            return f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}"
        return f"/subscriptions/{p['sub']}"

    def get_assignment(self, scope: str, name: str) -> Assignment:
        assignment = self.core.fleet.assignments.get(_assignment_id(scope, name).lower())
        if assignment is None:
            raise not_found("configuration assignment", name)
        return assignment

    def create_or_update_assignment(self, scope: str, name: str, body: dict[str, Any]) -> tuple[Assignment, bool]:
        """PUT: the assignment and whether it existed before."""
        fleet = self.core.fleet
        properties = body.get("properties") or {}
        config_id = str(properties.get("maintenanceConfigurationId") or "")
        config = fleet.configuration(config_id) if config_id else None
        if config is None:
            raise _bad(
                f"maintenanceConfigurationId '{config_id}' does not refer to an existing maintenance configuration."
            )
        flt = properties.get("filter")
        dynamic = scope.count("/") <= 4  # subscription or resource group scope
        if dynamic and not isinstance(flt, dict):
            flt = {}
        if flt is not None and not isinstance(flt, dict):
            raise _bad("filter must be an object.")
        if isinstance(flt, dict):
            operator = (flt.get("tagSettings") or {}).get("filterOperator") or "Any"
            if str(operator) not in ("All", "Any"):
                raise _bad("filter.tagSettings.filterOperator must be All or Any.")
            if scope.count("/") == 4:  # resource group assignment: restrict to that group
                flt = {**flt, "resourceGroups": [scope.split("/")[4]]}
        key = _assignment_id(scope, name).lower()
        existed = key in fleet.assignments
        vm = fleet.vm(scope)
        assignment = Assignment(
            id=_assignment_id(scope, name),
            name=name,
            scope_id=scope if not dynamic else "/".join(scope.split("/")[:3]),
            configuration_id=config.id,
            filter=flt if dynamic else None,
            location=str(body.get("location") or (vm.location if vm else "")),
        )
        fleet.assignments[key] = assignment
        return assignment, existed

    def delete_assignment(self, scope: str, name: str) -> Assignment | None:
        return self.core.fleet.assignments.pop(_assignment_id(scope, name).lower(), None)

    def list_assignments(self, scope: str, *, resource: bool) -> list[Assignment]:
        """A resource's assignments, or (``resource=False``) every assignment within the subscription."""
        scope = scope.lower()
        items = sorted(self.core.fleet.assignments.items())
        if resource:
            below = scope + "/providers/microsoft.maintenance/configurationassignments/"
            return [a for key, a in items if key.startswith(below)]
        return [a for key, a in items if key.startswith(scope + "/")]

    # -- apply_updates --------------------------------------------------------------------------
    @staticmethod
    def run_body(run_id: str, config_name: str, config_id: str, status: str, last: datetime | None) -> dict[str, Any]:
        properties: dict[str, Any] = {"resourceId": config_id, "status": status}
        if last is not None:
            properties["lastUpdateTime"] = _iso(last)
        return {"id": run_id, "name": config_name, "type": _TYPE_AU, "properties": properties}

    def set_vm_apply_update(self, vm_id: str, run: Run, status: str) -> None:
        """A VM's ``applyUpdates/{run}`` record, with only the swagger's fields (``ApplyUpdate``:
        id, name, type, properties.status / resourceId / lastUpdateTime). Why a VM was skipped is
        kept on the run (``Run.skipped``, control API), not in the ARM record."""
        record_id = f"{vm_id}/providers/Microsoft.Maintenance/applyUpdates/{run.name}"
        self.apply_updates[record_id.lower()] = {
            "id": record_id,
            "name": run.name,
            "type": "Microsoft.Maintenance/applyUpdates",
            "properties": {"status": status, "resourceId": vm_id, "lastUpdateTime": _iso(self.core.clock.now())},
        }

    def get_apply_update(self, resource_path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """A run (under a maintenance configuration) or a VM's record of a run, as ``ApplyUpdate``."""
        if params["rtype"].lower() == "maintenanceconfigurations":
            run = self.schedule.run(resource_path)
            if run is None:
                raise not_found("apply update", params["au"])
            return self.run_body(run.correlation_id, run.config_name, run.config_id, run.status, run.last_update)
        record = self.apply_updates.get(resource_path.lower())
        if record is None:
            self.scope_of(params)
            raise not_found("apply update", params["au"])
        return record

    def cancel_run(self, resource_path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """``PUT {correlationId}`` with status ``Cancel``: the ``Cancelled`` record, or 409 past the cutoff."""
        config_id = resource_path[: resource_path.lower().index("/providers/microsoft.maintenance/applyupdates/")]
        config = self.core.fleet.configuration(config_id)
        if config is None:
            self.check_scope(params["sub"], params.get("rg"))
            raise not_found("maintenance configuration", params["rname"])
        now = self.core.clock.now()
        run = self.schedule.run(resource_path)
        if run is None:
            if _future_occurrence(config, params["au"], now):
                correlation = f"{config.id}/providers/microsoft.maintenance/applyupdates/{params['au']}"
                self.schedule.precancelled.add(correlation.lower())
                return self.run_body(correlation, config.name, config.id, "Cancelled", now)
            raise not_found("maintenance run", params["au"])
        if run.cancelled_at is not None:
            return self.run_body(run.correlation_id, run.config_name, run.config_id, "Cancelled", now)
        deadline = run.cancel_deadline
        if now > deadline or run.status != "Pending":
            raise ArmError(
                409,
                "CancellationCutoffPassed",
                f"The maintenance run '{run.name}' of '{run.config_name}' can no longer be cancelled: "
                f"cancellation is honoured until {_iso(deadline)} (min of cancellationCutOffDateTime and "
                f"10 minutes before the start at {_iso(run.start)}); it is now {_iso(now)}.",
            )
        self.schedule.mark_cancelled(run, f"Maintenance cancelled using cancellation API at {_iso(now)}")
        return self.run_body(run.correlation_id, run.config_name, run.config_id, "Cancelled", now)

    def list_apply_updates(self, sub: str, rg: str | None = None) -> list[dict[str, Any]]:
        self.check_scope(sub, rg)
        prefix = f"/subscriptions/{sub}/".lower()
        if rg is not None:
            prefix += f"resourcegroups/{rg}/".lower()
        return [record for key, record in sorted(self.apply_updates.items()) if key.startswith(prefix)]
