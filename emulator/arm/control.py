"""The simulator's control API (``/_sim/...``) and per-VM health endpoints.

Why: tests and demos need to look inside the simulated Azure (recorded requests, fleet state,
runs, event deliveries) and to steer it (a VM turns unhealthy, a run fires early) without going
through ARM; app-level health probes need an HTTP endpoint per VM whose answer follows the VM's
simulated health. None of this is ARM, so it takes no auth and is never recorded.

SUPPORTED: ``GET /_sim/requests?method=&path_contains=&action=&identity=``, ``GET /_sim/fleet``,
``GET /_sim/runs``, ``GET /_sim/events``, ``POST /_sim/vms/{name}`` (``health``, ``powerState``,
``vmAgent``; for an Arc-enabled server ``health`` and ``agentStatus``: ``Connected`` /
``Disconnected`` / ``Expired`` / ``Error`` / ``AwaitingConnection``),
``POST /_sim/maintenanceConfigurations/{name}/fire`` (``{"start": ISO}`` or
``{"inMinutes": N}``), ``GET /_sim/eventSubscriptions/{name}/validate?code=`` (Event Grid's
validationUrl), and faults at run time: ``GET /_sim/faults``, ``POST /_sim/faults`` (one fault
object as in a scenario's ``faults:``; 201 ``{"index", "fault"}``, 400 naming the bad field),
``DELETE /_sim/faults/{index}``, ``DELETE /_sim/faults`` (all); see ``faults.py``. On the health
listener ``GET /vms/{name}/health``.

Arc-enabled servers have health endpoints too (``/vms/{name}/health``: the app's own probe, which
does not depend on the Arc agent).

The handlers receive the :class:`~emulator.arm.backends.control.ControlBackend` (the Python
control API), never the server.

LIMITATIONS: no authentication -- loopback only.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from emulator.arm.backends.control import ControlBackend
from emulator.arm.errors import error_body
from emulator.clock import parse_instant

__all__ = ["add_control_routes", "vm_health"]


def add_control_routes(app: web.Application, control: ControlBackend) -> None:
    """Register the ``/_sim/...`` routes on the simulator's HTTPS app."""

    async def requests(request: web.Request) -> web.Response:
        q = request.query
        found = control.recorder.find(
            method=q.get("method"),
            path_contains=q.get("path_contains"),
            action=q.get("action"),
            identity=q.get("identity"),
        )
        return web.json_response([r.to_dict() for r in found])

    async def fleet(request: web.Request) -> web.Response:
        return web.json_response(control.fleet_state())

    async def runs(request: web.Request) -> web.Response:
        return web.json_response([r.to_dict() for r in control.runs])

    async def events(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "published": control.core.events.published,
                "deliveries": control.deliveries,
                "validations": control.core.events.validations,
            }
        )

    async def set_vm(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            agent = body.get("vmAgent")
            control.set_vm_state(
                request.match_info["name"],
                health=body.get("health"),
                power_state=body.get("powerState"),
                vm_agent_ready=None if agent is None else agent == "Ready",
                agent_status=body.get("agentStatus"),
            )
        except KeyError as exc:
            return web.json_response(error_body("NotFound", str(exc)), status=404)
        except ValueError as exc:
            return web.json_response(error_body("BadRequest", str(exc)), status=400)
        return web.json_response({"ok": True})

    async def fire(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        start = None
        if body.get("start"):
            start = parse_instant(body["start"])
        elif body.get("inMinutes") is not None:
            start = control.core.clock.now() + timedelta(minutes=float(body["inMinutes"]))
        try:
            correlation = control.fire_run(request.match_info["name"], start)
        except KeyError as exc:
            return web.json_response(error_body("NotFound", str(exc)), status=404)
        return web.json_response({"correlationId": correlation})

    async def validate(request: web.Request) -> web.Response:
        ok = control.core.events.confirm_validation(request.match_info["name"], request.query.get("code", ""))
        return web.json_response({"validated": ok}, status=200 if ok else 404)

    async def list_faults(request: web.Request) -> web.Response:
        return web.json_response(control.fault_list())

    async def add_fault(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(error_body("BadRequest", "the body must be one fault object (JSON)"), status=400)
        try:
            index = control.add_fault(body)
        except ValueError as exc:
            return web.json_response(error_body("BadRequest", str(exc)), status=400)
        return web.json_response({"index": index, "fault": body}, status=201)

    async def remove_fault(request: web.Request) -> web.Response:
        try:
            index = int(request.match_info["index"])
        except ValueError:
            return web.json_response(error_body("BadRequest", "the fault index must be an integer"), status=400)
        if not control.remove_fault(index):
            return web.json_response(error_body("NotFound", f"no fault with index {index}"), status=404)
        return web.json_response({"removed": index})

    async def clear_faults(request: web.Request) -> web.Response:
        return web.json_response({"removed": control.clear_faults()})

    app.router.add_get("/_sim/faults", list_faults)
    app.router.add_post("/_sim/faults", add_fault)
    app.router.add_delete("/_sim/faults/{index}", remove_fault)
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_get("/_sim/eventSubscriptions/{name}/validate", validate)
    app.router.add_get("/_sim/requests", requests)
    app.router.add_get("/_sim/fleet", fleet)
    app.router.add_get("/_sim/runs", runs)
    app.router.add_get("/_sim/events", events)
    app.router.add_post("/_sim/vms/{name}", set_vm)
    app.router.add_post("/_sim/maintenanceConfigurations/{name}/fire", fire)


async def vm_health(control: ControlBackend, request: web.Request) -> web.Response:
    """``GET /vms/{name}/health``: 200 while the VM is running and healthy, else 503."""
    vm = control.core.fleet.vm_by_name(request.match_info["name"])
    if vm is None:
        return web.json_response({"status": "NotFound"}, status=404)
    if vm.power_state != "running":
        return web.json_response({"status": "Unreachable", "powerState": vm.power_state}, status=503)
    healthy = vm.health == "Healthy"
    return web.json_response({"status": vm.health, "vm": vm.name}, status=200 if healthy else 503)
