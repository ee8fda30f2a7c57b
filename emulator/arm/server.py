"""The ARM fleet simulator: an HTTPS Azure Resource Manager on loopback, on the shared clock.

Why: the app must reach Azure only through the real SDK clients, and locally those clients need
something that answers like Azure -- TLS, bearer auth, ARM error bodies, LROs, throttling,
maintenance schedules and events, failures included. :class:`ArmSimulator` is the HTTP app and
the wiring; the dependency runs one way (server → handlers → backends → state, see
:mod:`emulator.arm.backends`):

* :mod:`routes` (paths, RBAC actions), :mod:`compute`, :mod:`hybridcompute` (Arc-enabled servers),
  :mod:`tags`, :mod:`maintenance`, :mod:`resourcegraph`, :mod:`control` (thin handlers, each
  called with its backend),
* :mod:`emulator.arm.backends` (one backend per provider on a shared ``Core``: state, lifecycle,
  methods named after the SDK operations),
* :mod:`fleet` (state), :mod:`patching` (patch world), :mod:`schedule` (runs) with its own
  schedule oracle :mod:`recurrence` (never the app's), :mod:`events`,
* :mod:`apiversions` (registered api-versions), :mod:`faults`, :mod:`throttle`, :mod:`recorder`,
  :mod:`tls`.

Request pipeline (every request inside ``clock.busy()``): route match (case-insensitive) →
``api-version`` required → bearer token → identity → api-version registered for the provider (400
``NoRegisteredProviderFound``, :mod:`apiversions`) → role map (403 ``AuthorizationFailed``) →
throttle (429 + ``Retry-After``) → injected faults → handler → record.

SUPPORTED: see each handler module's docstring; :mod:`control` serves the ``/_sim/...`` test and
demo API and the per-VM health endpoints (a separate plain-HTTP listener); the shared clock's
HTTP interface (``/admin/clock``, :mod:`emulator.clock_http`) is mounted on the same HTTPS app.

LIMITATIONS: one process; state is in memory (continuation tokens resume against the same
running simulator, from any client process).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from emulator.arm import compute, control, hybridcompute, maintenance, resourcegraph, tags
from emulator.arm.apiversions import check_api_version
from emulator.arm.backends import Backends, Core
from emulator.arm.backends.compute import Operation
from emulator.arm.backends.hybridcompute import ArcOperation
from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError
from emulator.arm.events import EventBus
from emulator.arm.faults import Faults, RequestFault
from emulator.arm.fleet import Fleet, Vm, stable_uuid
from emulator.arm.patching import InstallPlan
from emulator.arm.recorder import Recorder
from emulator.arm.routes import ROUTES, Route, match_route
from emulator.arm.scenario import load_scenario
from emulator.arm.schedule import Run, ScheduleEngine
from emulator.arm.throttle import Throttle
from emulator.arm.tls import make_server_context
from emulator.clock import Clock, busy_middleware
from emulator.clock_http import add_clock_routes


def _routes_named(name: str) -> list[Route]:
    return [r for r in ROUTES if r.name == name]


__all__ = ["ArmSimulator"]


def _dispatch_table(backends: Backends) -> dict[str, Callable[[Call], Reply]]:
    """Route name -> handler bound to its provider's backend (the handlers never see the server)."""
    table: dict[str, Callable[[Call], Reply]] = {}
    bound: list[tuple[dict[str, Any], Any]] = [
        (compute.HANDLERS, backends.compute),
        (hybridcompute.HANDLERS, backends.hybridcompute),
        (tags.HANDLERS, backends.tags),
        (maintenance.HANDLERS, backends.maintenance),
        (resourcegraph.HANDLERS, backends.resourcegraph),
    ]
    for handlers, backend in bound:
        for name, handler in handlers.items():
            table[name] = partial(handler, backend)
    return table


_SUB_IN_PATH = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)


def _subscription_in(path: str) -> str:
    """The subscription a request path is under ('' for tenant-level paths)."""
    match = _SUB_IN_PATH.match(path)
    return match.group(1) if match else ""


class ArmSimulator:
    """See the module docstring. Construct, ``await start()``, use ``endpoint``/``client_settings``."""

    def __init__(
        self,
        scenario: dict[str, Any] | Path,
        clock: Clock,
        *,
        port: int = 0,
        state_dir: Path,
        variables: dict[str, str] | None = None,
        health_port: int = 0,
    ) -> None:
        self.scenario = load_scenario(scenario, variables)
        self.clock = clock
        self.state_dir = Path(state_dir)
        self._port = port
        self._health_port = health_port
        self.recorder = Recorder()
        self.core = Core(self.scenario, clock)
        self.backends = Backends.build(self.core, self.recorder)
        self.seed = self.core.seed
        self.fleet: Fleet = self.core.fleet
        self.faults: Faults = self.core.faults
        self.events: EventBus = self.core.events
        self.control = self.backends.control
        self.throttle = Throttle(self.scenario.get("throttling"))
        # ARM refuses api-versions a provider does not register (apiversions.py); scenarios may opt out
        self.check_api_versions = bool((self.scenario.get("apiVersions") or {}).get("enforce", True))
        self.identities = self._identities()
        self._handlers = _dispatch_table(self.backends)
        self._runner: web.AppRunner | None = None
        self._health_runner: web.AppRunner | None = None
        self.endpoint = ""
        self.ca_path = self.state_dir / "ca.pem"

    # -- the backends' state, under the names tests and tools use -------------------------------
    @property
    def operations(self) -> dict[str, Operation]:
        """Compute LROs (lower id -> record), :attr:`ComputeBackend.operations`."""
        return self.backends.compute.operations

    @property
    def arc_operations(self) -> dict[str, ArcOperation]:
        """HybridCompute LROs (lower id -> record), :attr:`HybridComputeBackend.operations`."""
        return self.backends.hybridcompute.operations

    @property
    def apply_updates(self) -> dict[str, dict[str, Any]]:
        """VMs' ``applyUpdates`` records (lower id -> body), :attr:`MaintenanceBackend.apply_updates`."""
        return self.backends.maintenance.apply_updates

    @property
    def schedule(self) -> ScheduleEngine:
        return self.backends.maintenance.schedule

    @property
    def retry_after(self) -> int:
        return self.core.retry_after

    @retry_after.setter
    def retry_after(self, value: int) -> None:
        self.core.retry_after = value

    @property
    def assess_minutes(self) -> float:
        return self.core.assess_minutes

    @assess_minutes.setter
    def assess_minutes(self, value: float) -> None:
        self.core.assess_minutes = value

    @property
    def reboot_minutes(self) -> float:
        return self.core.reboot_minutes

    @reboot_minutes.setter
    def reboot_minutes(self, value: float) -> None:
        self.core.reboot_minutes = value

    @property
    def page_size(self) -> int:
        return self.core.page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        self.core.page_size = value

    @property
    def reboot_setting_style(self) -> str:
        return str(self.backends.maintenance.reboot_setting_style)

    @reboot_setting_style.setter
    def reboot_setting_style(self, value: str) -> None:
        self.backends.maintenance.reboot_setting_style = value

    @property
    def enforce_guest_limits(self) -> bool:
        return self.backends.maintenance.enforce_guest_limits

    @enforce_guest_limits.setter
    def enforce_guest_limits(self, value: bool) -> None:
        self.backends.maintenance.enforce_guest_limits = value

    # -- identities -----------------------------------------------------------------------------
    def _identities(self) -> dict[str, dict[str, Any]]:
        entries = (self.scenario.get("auth") or {}).get("identities")
        if not entries:
            token = "sim-" + uuid.UUID(int=random.Random(f"{self.seed}/token").getrandbits(128)).hex
            entries = [{"name": "patchrings-app", "token": token, "default": True}]
        out = {}
        for entry in entries:
            out[entry["token"]] = {
                "name": entry["name"],
                "objectId": entry.get("objectId") or stable_uuid("principal", entry["name"]),
                "actions": entry.get("actions"),
                "default": entry.get("default", False),
            }
        return out

    @property
    def token(self) -> str:
        """The default identity's bearer token (what ``client_settings`` hands to the app)."""
        for token, identity in self.identities.items():
            if identity["default"]:
                return token
        return next(iter(self.identities))

    def token_for(self, identity_name: str) -> str:
        for token, identity in self.identities.items():
            if identity["name"] == identity_name:
                return token
        raise KeyError(f"no identity named {identity_name!r} in the scenario")

    @property
    def client_settings(self) -> dict[str, str]:
        """Exactly the four ``PATCHRINGS_ARM_*`` app settings (docs/architecture.md)."""
        return {
            "PATCHRINGS_ARM_ENDPOINT": self.endpoint,
            "PATCHRINGS_ARM_AUTH": "static-token",
            "PATCHRINGS_ARM_STATIC_TOKEN": self.token,
            "PATCHRINGS_ARM_CA_BUNDLE": str(self.ca_path),
        }

    @property
    def client_config_path(self) -> Path:
        return self.state_dir / "client-config.json"

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.core.loop = asyncio.get_running_loop()
        ssl_context, self.ca_path = make_server_context(self.state_dir)
        app = web.Application(middlewares=[busy_middleware(self.clock)], client_max_size=16 * 1024 * 1024)
        control.add_control_routes(app, self.control)
        add_clock_routes(app, self.clock)  # /admin/clock: the shared clock over HTTP (issue 14.11)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, ssl_context=ssl_context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.endpoint = f"https://127.0.0.1:{port}"
        health = web.Application(middlewares=[busy_middleware(self.clock)])
        health.router.add_get("/vms/{name}/health", partial(control.vm_health, self.control))
        self._health_runner = web.AppRunner(health, access_log=None, handle_signals=False)
        await self._health_runner.setup()
        await web.TCPSite(self._health_runner, "127.0.0.1", self._health_port).start()
        self.health_base_url = f"http://127.0.0.1:{self._health_runner.addresses[0][1]}"
        self.events.validation_url_base = self.endpoint
        self.client_config_path.write_text(json.dumps(self.client_settings, indent=2) + "\n")
        self.schedule.start_all()
        self.core.start_timeline()

    async def stop(self) -> None:
        await self.core.cancel_tasks()
        await self.events.close()
        for runner in (self._runner, self._health_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._health_runner = None

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run background work on the simulator's loop (:meth:`Core.spawn`)."""
        return self.core.spawn(coro)

    def _in_loop(self, fn: Callable[[], Any]) -> Any:
        return self.core.in_loop(fn)

    def new_id(self) -> str:
        return self.core.new_id()

    # -- health endpoints -----------------------------------------------------------------------
    @property
    def health_base_url(self) -> str:
        return self.control.health_base_url

    @health_base_url.setter
    def health_base_url(self, value: str) -> None:
        self.control.health_base_url = value

    @property
    def health_url_template(self) -> str:
        return self.control.health_url_template

    def health_url(self, vm_name: str) -> str:
        return self.control.health_url(vm_name)

    # -- state changes shared by LROs and the schedule engine (the backends own them) -----------
    def start_operation(self, op: Operation) -> None:
        self.backends.compute.start_operation(op)

    def start_arc_operation(self, op: ArcOperation) -> None:
        self.backends.hybridcompute.start_operation(op)

    def apply_install(self, vm: Vm, plan: InstallPlan) -> None:
        """An install finished: patches land, the summary updates, faults take effect."""
        self.core.apply_install(vm, plan)

    def set_vm_apply_update(self, vm_id: str, run: Run, status: str) -> None:
        self.backends.maintenance.set_vm_apply_update(vm_id, run, status)

    # -- Python control API (:class:`~emulator.arm.backends.control.ControlBackend`) ------------
    def vm(self, name: str) -> Vm:
        return self.control.vm(name)

    def set_vm_state(
        self,
        name: str,
        *,
        health: str | None = None,
        power_state: str | None = None,
        vm_agent_ready: bool | None = None,
        agent_status: str | None = None,
    ) -> None:
        self.control.set_vm_state(
            name, health=health, power_state=power_state, vm_agent_ready=vm_agent_ready, agent_status=agent_status
        )

    def set_vm_health(self, name: str, health: str) -> None:
        self.set_vm_state(name, health=health)

    def fire_run(self, configuration: str, start: datetime | None = None) -> str:
        """Schedule an extra run of a configuration (default: 41 min from now); returns its correlationId."""
        return self.control.fire_run(configuration, start)

    def add_fault(self, fault: dict[str, Any]) -> int:
        """Inject a fault now (validated like a scenario's); returns its index for :meth:`remove_fault`."""
        return self.control.add_fault(fault)

    def remove_fault(self, index: int) -> bool:
        return self.control.remove_fault(index)

    def clear_faults(self) -> int:
        return self.control.clear_faults()

    def fault_list(self) -> list[dict[str, Any]]:
        return self.control.fault_list()

    @property
    def runs(self) -> list[Run]:
        """Every run created so far (snapshot taken on the simulator's loop; safe from any thread)."""
        return self.control.runs

    def run(self, correlation_id: str) -> Run | None:
        return self.control.run(correlation_id)

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Event deliveries (one entry per attempt), oldest first."""
        return self.control.deliveries

    def fleet_state(self) -> dict[str, Any]:
        """VMs, configurations and assignments as plain JSON (what ``GET /_sim/fleet`` returns)."""
        return self.control.fleet_state()

    def _locations(self) -> list[str]:
        found = {vm.location for vm in self.fleet.all_machines()} | {
            c.location for c in self.fleet.configurations.values()
        }
        return sorted(loc for loc in found if loc)

    def _location_of(self, params: dict[str, str]) -> str:
        """The location ARM names in an api-version refusal: the resource's, else the fleet's first."""
        if params.get("location"):
            return params["location"]
        if params.get("vm") or params.get("machine"):
            vm = self.fleet.vm_by_name(params.get("vm") or params["machine"])
            if vm is not None:
                return vm.location
        if params.get("mc"):
            for config in self.fleet.configurations.values():
                if config.name.lower() == params["mc"].lower():
                    return config.location
        locations = self._locations()
        return locations[0] if locations else "global"

    # -- the ARM pipeline -----------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = self.clock.now()
        path = request.path
        query = {k: v for k, v in request.query.items()}
        api_version = query.get("api-version") or query.get("API-VERSION") or ""
        raw = await request.read()
        body: Any = None
        body_error = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_error = True
        found = match_route(request.method, path)
        route, params = found if found else (None, {})
        base = {
            "time": now,
            "method": request.method,
            "path": path,
            "query": query,
            "api_version": api_version or None,
            "body": body,
            "action": route.action if route else None,
            "operation": route.name if route else None,
        }
        identity: str | None = None
        fault_name: str | None = None
        slow: RequestFault | None = None
        headers: dict[str, str] = {
            # the server's clock, as ARM and Resource Graph send it: the simulated time (aiohttp
            # would otherwise stamp the real wall clock); the compliance view reads it as "now"
            "Date": format_datetime(now.astimezone(UTC), usegmt=True),
            "x-ms-request-id": self.new_id(),
            "x-ms-correlation-request-id": request.headers.get("x-ms-client-request-id") or self.new_id(),
        }
        try:
            if route is None:
                raise ArmError(
                    404,
                    "NoRegisteredProviderFound" if "/providers/" in path.lower() else "NotFound",
                    f"The simulator does not support {request.method} {path}.",
                )
            if not api_version:
                raise ArmError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            identity = self._authenticate(request)
            if self.check_api_versions:
                check_api_version(
                    route.name, api_version, location=self._location_of(params), locations=self._locations()
                )
            self._authorize(identity, route.action, path)
            # Tags at scope routes carry the scope, not ``sub``: bucket them with the subscription they
            # write into (ARM's buckets are per subscription, whatever the provider).
            sub = params.get("sub") or _subscription_in(path)
            allowed, throttle_headers, wait = self.throttle.take(sub, identity, request.method, now)
            headers.update(throttle_headers)
            if not allowed:
                fault_name = "throttled"
                raise ArmError(
                    429,
                    "TooManyRequests",
                    f"Number of {(request.method.upper() == 'GET' and 'read') or 'write'} requests for "
                    f"subscription '{sub}' and principal '{identity}' exceeded the "
                    f"limit; retry after {wait} seconds.",
                    headers={"Retry-After": str(wait)},
                )
            injected = self.faults.for_request(request.method, path, route.action)
            if injected is not None:
                fault_name = f"{injected.kind}#{injected.index}"
                if injected.kind == "dropConnection":
                    self._record(base, identity=identity, status=0, error_code=None, fault=fault_name)
                    if request.transport is not None:
                        request.transport.abort()
                    return web.Response(status=500)
                if injected.kind == "slowAnswer":
                    slow = injected
                    if not slow.process_first:
                        await self._slow_answer(slow)
                        if request.transport is None or request.transport.is_closing():
                            # the client gave up during the delay: the request is never processed
                            self._record(base, identity=identity, status=0, error_code="ClientClosedRequest",
                                         fault=fault_name)
                            return web.Response(status=499)
                else:
                    raise self._injected_error(injected, route.name, identity=identity, path=path, params=params)
            if body_error:
                raise ArmError.bad_request("The request content was invalid and could not be deserialized.")
            call = Call(
                method=request.method,
                path=path,
                params=params,
                query=query,
                body=body,
                identity=identity,
                api_version=api_version,
                base_url=self.endpoint,
            )
            reply = self._handlers[route.name](call)
            status, payload = reply.status, reply.body
            headers.update(reply.headers)
            error_code = None
        except ArmError as exc:
            status, payload, error_code = exc.status, exc.body(), exc.code
            headers.update(exc.headers)
        if slow is not None and slow.process_first:
            try:
                await self._slow_answer(slow)  # the request took effect; only its answer is late
            except asyncio.CancelledError:
                self._record(base, identity=identity, status=status, error_code=error_code, fault=fault_name)
                raise
        self._record(base, identity=identity, status=status, error_code=error_code, fault=fault_name)
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, headers=headers, body=json.dumps(payload), content_type="application/json")

    async def _slow_answer(self, fault: RequestFault) -> None:
        """Hold a request (``slowAnswer``): real seconds with the clock held, then simulated seconds."""
        if fault.seconds > 0:
            # deliberately real time: the request stays in the clock's busy section, so a skip
            # clock cannot jump past it while the app's real-seconds client timeout runs
            await asyncio.sleep(fault.seconds)
        if fault.simulated_seconds > 0:
            until = self.clock.now() + timedelta(seconds=fault.simulated_seconds)
            self.clock.exit_busy()  # let simulated time move on to the answer
            try:
                await self.clock.sleep_until(until)
            finally:
                self.clock.enter_busy()

    def _injected_error(
        self, fault: RequestFault, operation: str, *, identity: str, path: str, params: dict[str, str]
    ) -> ArmError:
        """ARM's answer for an injected ``httpError`` (bodies as each provider sends them)."""
        status, code, custom = fault.status, fault.code, fault.message
        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        compute_route = operation.startswith("vm.") or operation.startswith("compute.")
        if status == 429:
            if compute_route:
                return ArmError(
                    429,
                    code or "OperationNotAllowed",
                    custom or "The server rejected the request because too many requests have been received "
                    "for this subscription.",
                    details=[
                        {
                            "code": "TooManyRequests",
                            "target": "HighCostGet30Min",
                            "message": '{"operationGroup":"HighCostGet30Min","startTime":"",'
                            '"endTime":"","allowedRequestCount":900,"measuredRequestCount":901}',
                        }
                    ],
                    headers=extra,
                )
            return ArmError(429, code or "TooManyRequests", custom or "Too many requests; retry later.", headers=extra)
        if status == 403:
            entry = next((i for i in self.identities.values() if i["name"] == identity), {"objectId": ""})
            action = next((r.action for r in _routes_named(operation)), operation)
            return ArmError(
                403,
                code or "AuthorizationFailed",
                custom
                or f"The client '{identity}' with object id '{entry['objectId']}' does not have authorization "
                f"to perform action '{action}' over scope '{path.rstrip('/')}' or the scope is invalid. If access "
                "was recently granted, please refresh your credentials.",
                headers=extra,
            )
        if status == 404:
            if operation.startswith(("mc.", "ca.", "au.")):
                name = path.rstrip("/").rsplit("/", 1)[-1]
                message = custom or f"The resource '{name}' was not found."
                return ArmError(404, code or "NotFound", message, headers=extra)
            if "vm" in params and "rg" in params:
                error = ArmError.not_found("Microsoft.Compute/virtualMachines", params["vm"], params["rg"])
                return ArmError(404, code or error.code, custom or error.message, headers=extra)
            return ArmError(
                404,
                code or "ResourceNotFound",
                custom or f"The Resource '{path.rstrip('/')}' was not found. "
                "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                headers=extra,
            )
        if status == 409:
            return ArmError(
                409,
                code or ("OperationNotAllowed" if compute_route else "Conflict"),
                custom or "The operation could not be completed because another operation is in progress on the "
                "resource. Retry after it completes.",
                headers=extra,
            )
        messages = {
            500: ("InternalServerError", "An internal server error occurred. Please retry the request."),
            502: ("BadGateway", "The gateway did not receive a response in time."),
            503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry."),
        }
        default_code, message = messages.get(status, ("InternalServerError", "Injected failure."))
        return ArmError(status, code or default_code, custom or message, headers=extra)

    def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        challenge = {
            "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
            'error="invalid_token", error_description="The authentication failed"'
        }
        if not header:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                headers=challenge,
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                headers=challenge,
            )
        identity = self.identities.get(token.strip())
        if identity is None:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.", headers=challenge)
        return str(identity["name"])

    def _authorize(self, identity: str, action: str, path: str) -> None:
        entry = next(i for i in self.identities.values() if i["name"] == identity)
        allowed = entry["actions"]
        if allowed is None:
            return
        if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in allowed):
            return
        scope = path.rstrip("/")
        raise ArmError(
            403,
            "AuthorizationFailed",
            f"The client '{identity}' with object id '{entry['objectId']}' does not have authorization "
            f"to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was "
            "recently granted, please refresh your credentials.",
        )

    def _record(self, base: dict[str, Any], **fields: Any) -> None:
        self.recorder.add(**base, **fields)
