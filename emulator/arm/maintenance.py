"""Microsoft.Maintenance: configurations, assignments, applyUpdates and run cancellation.

SUPPORTED
* ``maintenanceConfigurations`` GET / PUT (201 create, 200 update) / PATCH / DELETE (200, 204 if
  absent), list by subscription and resource group. ``InGuestPatch`` windows are validated with
  the simulator's own schedule oracle :mod:`emulator.arm.recurrence` (full recurEvery grammar,
  Windows time zone names) and the Guest limits (duration 01:30-03:55;
  ``maintenance.enforceGuestWindowLimits: false`` lifts them, as the official example uses 05:00);
  ``rebootSetting`` accepts both spellings and is echoed as sent, or in the service's
  ``RebootIfRequired`` form with ``maintenance.rebootSettingStyle: service``.
  Every write restarts the configuration's schedule; an edit of an existing configuration less
  than 40 minutes before its next run auto-cancels that run (see ``schedule.py``).
* ``configurationAssignments`` at resource level (VMs), resource-group level and subscription
  level with a dynamic-scope ``filter`` (resourceTypes, resourceGroups, locations, osTypes,
  tagSettings All/Any), evaluated at each run's T-40. The subscription-level list
  (``ConfigurationAssignmentsWithinSubscription_List``) returns every assignment in the
  subscription, resource-level ones included.
* ``applyUpdates``: GET of a run (``…/maintenanceConfigurations/{mc}/providers/Microsoft.Maintenance/
  applyUpdates/{yyyyMMddHHmmss}``) and of a VM's record of a run (``{vmId}/providers/…/applyUpdates/
  {yyyyMMddHHmmss}``, with ``correlationId`` and ``maintenanceConfigurationId`` in properties);
  lists by subscription and resource group.
* Cancel: ``PUT {correlationId}`` with ``{"properties": {"status": "Cancel"}}`` → 200 ``Cancelled``
  until ``min(cancellationCutOffDateTime, T-10)`` (idempotent); after it → **409
  ``CancellationCutoffPassed``** naming the deadline. A run not created yet (before T-40) can be
  cancelled if its name is a future occurrence of the configuration.

LIMITATIONS: ``applyUpdates/default`` (on-demand apply) and parent-resource variants are not
supported (400 ``NotSupportedBySimulator``); other maintenance scopes are stored but never run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError
from emulator.arm.fleet import Assignment, MaintenanceConfiguration, normalize_reboot_setting
from emulator.arm.recurrence import occurrences, parse_window

if TYPE_CHECKING:
    from emulator.arm.server import ArmSimulator

__all__ = ["HANDLERS", "configuration_body"]

_TYPE_MC = "Microsoft.Maintenance/maintenanceConfigurations"
_TYPE_CA = "Microsoft.Maintenance/configurationAssignments"
_TYPE_AU = "Microsoft.Maintenance/applyUpdates"
_MIN_GUEST = timedelta(hours=1, minutes=30)
_MAX_GUEST = timedelta(hours=3, minutes=55)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _not_found(kind: str, name: str) -> ArmError:
    return ArmError(404, "NotFound", f"The {kind} '{name}' was not found.")


def _bad(message: str) -> ArmError:
    return ArmError(400, "BadRequest", message)


def _check_rg(sim: ArmSimulator, call: Call) -> None:
    p = call.params
    if not sim.fleet.has_subscription(p["sub"]):
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{p['sub']}' could not be found.")
    if "rg" in p and not sim.fleet.has_resource_group(p["sub"], p["rg"]):
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{p['rg']}' could not be found.")


# -- configurations -----------------------------------------------------------------------------
def configuration_body(sim: ArmSimulator, config: MaintenanceConfiguration) -> dict[str, Any]:
    properties = dict(config.properties)
    install = dict(properties.get("installPatches") or {})
    if install.get("rebootSetting") is not None and sim.reboot_setting_style == "service":
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


def _config(sim: ArmSimulator, call: Call) -> MaintenanceConfiguration:
    p = call.params
    config = sim.fleet.configuration(
        f"/subscriptions/{p['sub']}/resourcegroups/{p['rg']}/providers/Microsoft.Maintenance/maintenanceConfigurations/{p['mc']}"
    )
    if config is None:
        _check_rg(sim, call)
        raise _not_found("maintenance configuration", p["mc"])
    return config


def get_configuration(sim: ArmSimulator, call: Call) -> Reply:
    return Reply(200, configuration_body(sim, _config(sim, call)))


def put_configuration(sim: ArmSimulator, call: Call) -> Reply:
    _check_rg(sim, call)
    p = call.params
    body = call.require_body()
    properties = _validate_properties(dict(body.get("properties") or {}), enforce_limits=sim.enforce_guest_limits)
    config_id = (
        f"/subscriptions/{p['sub']}/resourcegroups/{p['rg']}/providers/Microsoft.Maintenance/"
        f"maintenanceConfigurations/{p['mc']}"
    )
    existing = sim.fleet.configuration(config_id)
    location = str(body.get("location") or (existing.location if existing else ""))
    if not location:
        raise _bad("location is required.")
    if existing is None:
        config = MaintenanceConfiguration(
            subscription=p["sub"],
            resource_group=p["rg"],
            name=p["mc"],
            location=location,
            properties=properties,
            tags=dict(body.get("tags") or {}),
            created=sim.clock.now(),
        )
        sim.fleet.configurations[config.id.lower()] = config
        status = 201
    else:
        config = existing
        config.properties = properties
        config.location = location
        if "tags" in body:
            config.tags = dict(body.get("tags") or {})
        config.generation += 1
        status = 200
        sim.schedule.configuration_edited(config)  # an edit after T-40 auto-cancels that run
    sim.schedule.restart(config)
    return Reply(status, configuration_body(sim, config))


def patch_configuration(sim: ArmSimulator, call: Call) -> Reply:
    config = _config(sim, call)
    body = call.require_body()
    if "properties" in body:
        merged = {**config.properties, **(body.get("properties") or {})}
        config.properties = _validate_properties(merged, enforce_limits=sim.enforce_guest_limits)
        config.generation += 1
    if "tags" in body:
        config.tags = dict(body.get("tags") or {})
    sim.schedule.configuration_edited(config)  # an edit after T-40 auto-cancels that run
    sim.schedule.restart(config)
    return Reply(200, configuration_body(sim, config))


def delete_configuration(sim: ArmSimulator, call: Call) -> Reply:
    try:
        config = _config(sim, call)
    except ArmError as exc:
        if exc.code == "NotFound":
            return Reply(204)
        raise
    sim.schedule.stop(config.id)
    del sim.fleet.configurations[config.id.lower()]
    config.generation += 1
    return Reply(200, configuration_body(sim, config))


def list_configurations(sim: ArmSimulator, call: Call) -> Reply:
    _check_rg(sim, call)
    prefix = f"/subscriptions/{call.params['sub']}/".lower()
    if "rg" in call.params:
        prefix += f"resourcegroups/{call.params['rg']}/".lower()
    items = [
        configuration_body(sim, c) for key, c in sorted(sim.fleet.configurations.items()) if key.startswith(prefix)
    ]
    return Reply(200, {"value": items})


# -- assignments --------------------------------------------------------------------------------
def _assignment_body(a: Assignment) -> dict[str, Any]:
    properties: dict[str, Any] = {"maintenanceConfigurationId": a.configuration_id, "resourceId": a.scope_id}
    if a.filter is not None:
        properties["filter"] = a.filter
    return {"id": a.id, "name": a.name, "type": _TYPE_CA, "location": a.location, "properties": properties}


def _scope_of(sim: ArmSimulator, call: Call) -> str:
    p = call.params
    if "rname" in p:
        resource = (
            f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}/providers/{p['provider']}/{p['rtype']}/{p['rname']}"
        )
        vm = sim.fleet.vm(resource)
        if vm is not None:
            return vm.id
        config = sim.fleet.configuration(resource)
        if config is not None:
            return config.id
        _check_rg(sim, call)
        raise ArmError(404, "ResourceNotFound", f"The resource '{resource}' was not found.")
    _check_rg(sim, call)
    if "rg" in p:
        return f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}"
    return f"/subscriptions/{p['sub']}"


def _assignment_id(scope: str, name: str) -> str:
    return f"{scope}/providers/Microsoft.Maintenance/configurationAssignments/{name}"


def get_assignment(sim: ArmSimulator, call: Call) -> Reply:
    scope = _scope_of(sim, call)
    assignment = sim.fleet.assignments.get(_assignment_id(scope, call.params["ca"]).lower())
    if assignment is None:
        raise _not_found("configuration assignment", call.params["ca"])
    return Reply(200, _assignment_body(assignment))


def put_assignment(sim: ArmSimulator, call: Call) -> Reply:
    scope = _scope_of(sim, call)
    body = call.require_body()
    properties = body.get("properties") or {}
    config_id = str(properties.get("maintenanceConfigurationId") or "")
    config = sim.fleet.configuration(config_id) if config_id else None
    if config is None:
        raise _bad(f"maintenanceConfigurationId '{config_id}' does not refer to an existing maintenance configuration.")
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
    key = _assignment_id(scope, call.params["ca"]).lower()
    existed = key in sim.fleet.assignments
    vm = sim.fleet.vm(scope)
    assignment = Assignment(
        id=_assignment_id(scope, call.params["ca"]),
        name=call.params["ca"],
        scope_id=scope if not dynamic else "/".join(scope.split("/")[:3]),
        configuration_id=config.id,
        filter=flt if dynamic else None,
        location=str(body.get("location") or (vm.location if vm else "")),
    )
    sim.fleet.assignments[key] = assignment
    reply = _assignment_body(assignment)
    reply["properties"]["resourceId"] = scope
    return Reply(200 if existed else 201, reply)


def delete_assignment(sim: ArmSimulator, call: Call) -> Reply:
    scope = _scope_of(sim, call)
    assignment = sim.fleet.assignments.pop(_assignment_id(scope, call.params["ca"]).lower(), None)
    if assignment is None:
        return Reply(204)
    return Reply(200, _assignment_body(assignment))


def list_assignments(sim: ArmSimulator, call: Call) -> Reply:
    """A resource's assignments, or (subscription route) every assignment within the subscription."""
    scope = _scope_of(sim, call).lower()
    if "rname" in call.params:
        wanted = [
            a
            for key, a in sorted(sim.fleet.assignments.items())
            if key.startswith(scope + "/providers/microsoft.maintenance/configurationassignments/")
        ]
    else:  # ConfigurationAssignmentsWithinSubscription_List: all scopes in the subscription
        wanted = [a for key, a in sorted(sim.fleet.assignments.items()) if key.startswith(scope + "/")]
    return Reply(200, {"value": [_assignment_body(a) for a in wanted]})


# -- applyUpdates -------------------------------------------------------------------------------
def _run_body(run_id: str, config_name: str, config_id: str, status: str, last: datetime | None) -> dict[str, Any]:
    properties: dict[str, Any] = {"resourceId": config_id, "status": status}
    if last is not None:
        properties["lastUpdateTime"] = _iso(last)
    return {"id": run_id, "name": config_name, "type": _TYPE_AU, "properties": properties}


def get_apply_update(sim: ArmSimulator, call: Call) -> Reply:
    resource_path = call.path.split("?")[0].rstrip("/")
    if call.params["rtype"].lower() == "maintenanceconfigurations":
        run = sim.schedule.run(resource_path)
        if run is None:
            raise _not_found("apply update", call.params["au"])
        return Reply(200, _run_body(run.correlation_id, run.config_name, run.config_id, run.status, run.last_update))
    record = sim.apply_updates.get(resource_path.lower())
    if record is None:
        _scope_of(sim, call)
        raise _not_found("apply update", call.params["au"])
    return Reply(200, record)


def _future_occurrence(config: MaintenanceConfiguration, name: str, now: datetime) -> bool:
    try:
        start = datetime.strptime(name, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return False
    return any(o.start == start for o in occurrences(config.window, start - timedelta(seconds=1), start)) and (
        start > now
    )


def put_apply_update(sim: ArmSimulator, call: Call) -> Reply:
    body = call.require_body()
    status = str((body.get("properties") or {}).get("status") or "")
    if call.params["rtype"].lower() != "maintenanceconfigurations" or call.params["au"].lower() == "default":
        raise ArmError(
            400,
            "NotSupportedBySimulator",
            "The simulator supports PUT applyUpdates only to cancel a "
            'scheduled run: PUT {correlationId} with {"properties": {"status": "Cancel"}}.',
        )
    if status.lower() != "cancel":
        raise _bad(f"properties.status must be 'Cancel' to cancel a scheduled run, got {status or 'nothing'!r}.")
    resource_path = call.path.split("?")[0].rstrip("/")
    config_id = resource_path[: resource_path.lower().index("/providers/microsoft.maintenance/applyupdates/")]
    config = sim.fleet.configuration(config_id)
    if config is None:
        _check_rg(sim, call)
        raise _not_found("maintenance configuration", call.params["rname"])
    now = sim.clock.now()
    run = sim.schedule.run(resource_path)
    if run is None:
        if _future_occurrence(config, call.params["au"], now):
            correlation = f"{config.id}/providers/microsoft.maintenance/applyupdates/{call.params['au']}"
            sim.schedule.precancelled.add(correlation.lower())
            return Reply(200, _run_body(correlation, config.name, config.id, "Cancelled", now))
        raise _not_found("maintenance run", call.params["au"])
    if run.cancelled_at is not None:
        return Reply(200, _run_body(run.correlation_id, run.config_name, run.config_id, "Cancelled", now))
    deadline = run.cancel_deadline
    if now > deadline or run.status != "Pending":
        raise ArmError(
            409,
            "CancellationCutoffPassed",
            f"The maintenance run '{run.name}' of '{run.config_name}' can no longer be cancelled: "
            f"cancellation is honoured until {_iso(deadline)} (min of cancellationCutOffDateTime and "
            f"10 minutes before the start at {_iso(run.start)}); it is now {_iso(now)}.",
        )
    sim.schedule.mark_cancelled(run, f"Maintenance cancelled using cancellation API at {_iso(now)}")
    return Reply(200, _run_body(run.correlation_id, run.config_name, run.config_id, "Cancelled", now))


def list_apply_updates(sim: ArmSimulator, call: Call) -> Reply:
    _check_rg(sim, call)
    prefix = f"/subscriptions/{call.params['sub']}/".lower()
    if "rg" in call.params:
        prefix += f"resourcegroups/{call.params['rg']}/".lower()
    items = [record for key, record in sorted(sim.apply_updates.items()) if key.startswith(prefix)]
    return Reply(200, {"value": items})


HANDLERS = {
    "mc.get": get_configuration,
    "mc.put": put_configuration,
    "mc.patch": patch_configuration,
    "mc.delete": delete_configuration,
    "mc.list": list_configurations,
    "mc.list_rg": list_configurations,
    "ca.get_sub": get_assignment,
    "ca.put_sub": put_assignment,
    "ca.delete_sub": delete_assignment,
    "ca.list_sub": list_assignments,
    "ca.get_rg": get_assignment,
    "ca.put_rg": put_assignment,
    "ca.delete_rg": delete_assignment,
    "ca.get_res": get_assignment,
    "ca.put_res": put_assignment,
    "ca.delete_res": delete_assignment,
    "ca.list_res": list_assignments,
    "au.get": get_apply_update,
    "au.put": put_apply_update,
    "au.list_sub": list_apply_updates,
    "au.list_rg": list_apply_updates,
}
