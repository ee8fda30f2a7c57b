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

State, validation and the run lifecycle live in
:class:`emulator.arm.backends.maintenance.MaintenanceBackend` (and its schedule engine); this
module is the thin HTTP layer above it.

LIMITATIONS: ``applyUpdates/default`` (on-demand apply) and parent-resource variants are not
supported (400 ``NotSupportedBySimulator``); other maintenance scopes are stored but never run.
"""

from __future__ import annotations

from typing import Any

from emulator.arm.backends.maintenance import MaintenanceBackend
from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError
from emulator.arm.fleet import MaintenanceConfiguration

__all__ = ["HANDLERS", "configuration_body"]


def configuration_body(backend: MaintenanceBackend, config: MaintenanceConfiguration) -> dict[str, Any]:
    """``MaintenanceConfiguration`` as ARM returns it (see :meth:`MaintenanceBackend.configuration_body`)."""
    return backend.configuration_body(config)


def _resource_path(call: Call) -> str:
    return call.path.split("?")[0].rstrip("/")


# -- configurations -----------------------------------------------------------------------------
def get_configuration(backend: MaintenanceBackend, call: Call) -> Reply:
    p = call.params
    return Reply(200, backend.configuration_body(backend.get_configuration(p["sub"], p["rg"], p["mc"])))


def put_configuration(backend: MaintenanceBackend, call: Call) -> Reply:
    p = call.params
    backend.check_scope(p["sub"], p["rg"])
    body = call.require_body()
    config, created = backend.create_or_update_configuration(p["sub"], p["rg"], p["mc"], body)
    return Reply(201 if created else 200, backend.configuration_body(config))


def patch_configuration(backend: MaintenanceBackend, call: Call) -> Reply:
    p = call.params
    config = backend.get_configuration(p["sub"], p["rg"], p["mc"])
    config = backend.update_configuration(config, call.require_body())
    return Reply(200, backend.configuration_body(config))


def delete_configuration(backend: MaintenanceBackend, call: Call) -> Reply:
    p = call.params
    config = backend.delete_configuration(p["sub"], p["rg"], p["mc"])
    if config is None:
        return Reply(204)
    return Reply(200, backend.configuration_body(config))


def list_configurations(backend: MaintenanceBackend, call: Call) -> Reply:
    configs = backend.list_configurations(call.params["sub"], call.params.get("rg"))
    return Reply(200, {"value": [backend.configuration_body(c) for c in configs]})


# -- assignments --------------------------------------------------------------------------------
def get_assignment(backend: MaintenanceBackend, call: Call) -> Reply:
    scope = backend.scope_of(call.params)
    return Reply(200, backend.assignment_body(backend.get_assignment(scope, call.params["ca"])))


def put_assignment(backend: MaintenanceBackend, call: Call) -> Reply:
    scope = backend.scope_of(call.params)
    body = call.require_body()
    assignment, existed = backend.create_or_update_assignment(scope, call.params["ca"], body)
    reply = backend.assignment_body(assignment)
    reply["properties"]["resourceId"] = scope
    return Reply(200 if existed else 201, reply)


def delete_assignment(backend: MaintenanceBackend, call: Call) -> Reply:
    scope = backend.scope_of(call.params)
    assignment = backend.delete_assignment(scope, call.params["ca"])
    if assignment is None:
        return Reply(204)
    return Reply(200, backend.assignment_body(assignment))


def list_assignments(backend: MaintenanceBackend, call: Call) -> Reply:
    """A resource's assignments, or (subscription route) every assignment within the subscription."""
    scope = backend.scope_of(call.params)
    wanted = backend.list_assignments(scope, resource="rname" in call.params)
    return Reply(200, {"value": [backend.assignment_body(a) for a in wanted]})


# -- applyUpdates -------------------------------------------------------------------------------
def get_apply_update(backend: MaintenanceBackend, call: Call) -> Reply:
    return Reply(200, backend.get_apply_update(_resource_path(call), call.params))


def put_apply_update(backend: MaintenanceBackend, call: Call) -> Reply:
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
        raise ArmError(
            400, "BadRequest",
            f"properties.status must be 'Cancel' to cancel a scheduled run, got {status or 'nothing'!r}.",
        )
    return Reply(200, backend.cancel_run(_resource_path(call), call.params))


def list_apply_updates(backend: MaintenanceBackend, call: Call) -> Reply:
    return Reply(200, {"value": backend.list_apply_updates(call.params["sub"], call.params.get("rg"))})


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
