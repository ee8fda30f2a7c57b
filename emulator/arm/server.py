"""The ARM fleet simulator: an HTTPS Azure Resource Manager on loopback, on the shared clock.

Why: the app must reach Azure only through the real SDK clients, and locally those clients need
something that answers like Azure -- TLS, bearer auth, ARM error bodies, LROs, throttling,
maintenance schedules and events, failures included. :class:`ArmSimulator` composes the parts:

* :mod:`routes` (paths, RBAC actions), :mod:`compute`, :mod:`hybridcompute` (Arc-enabled servers),
  :mod:`tags`, :mod:`maintenance`, :mod:`resourcegraph` (handlers),
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from emulator.arm import compute, hybridcompute, maintenance, resourcegraph, tags
from emulator.arm.apiversions import check_api_version
from emulator.arm.calls import Call, Reply
from emulator.arm.control import add_control_routes, vm_health
from emulator.arm.errors import ArmError
from emulator.arm.events import EventBus, EventSubscription
from emulator.arm.faults import Faults, RequestFault
from emulator.arm.fleet import Fleet, Vm, stable_uuid
from emulator.arm.patching import InstallPlan
from emulator.arm.recorder import Recorder
from emulator.arm.routes import ROUTES, Route, match_route
from emulator.arm.scenario import ScenarioError, load_scenario, validate_fault
from emulator.arm.schedule import Run, ScheduleEngine
from emulator.arm.throttle import Throttle
from emulator.arm.tls import make_server_context
from emulator.clock import Clock, busy_middleware, parse_instant
from emulator.clock_http import add_clock_routes


def _routes_named(name: str) -> list[Route]:
    return [r for r in ROUTES if r.name == name]


__all__ = ["ArmSimulator"]

_HANDLERS: dict[str, Callable[[ArmSimulator, Call], Reply]] = {
    **compute.HANDLERS,
    **hybridcompute.HANDLERS,
    **tags.HANDLERS,
    **maintenance.HANDLERS,
    **resourcegraph.HANDLERS,
}


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")



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
        self.seed = int(self.scenario.get("seed", 1))
        self._ids = random.Random(f"{self.seed}/ids")
        self.fleet = Fleet.from_scenario(self.scenario, now=clock.now())
        self.faults = Faults(self.scenario.get("faults", []), self.seed, now=clock.now)
        self.faults.apply_initial(self.fleet)
        self._apply_initial_arc_faults()
        self.throttle = Throttle(self.scenario.get("throttling"))
        self.recorder = Recorder()
        lro = self.scenario.get("lro") or {}
        self.retry_after = int(lro.get("retryAfterSeconds", 1))
        self.assess_minutes = float(lro.get("assessMinutes", 2))
        self.reboot_minutes = float(lro.get("rebootMinutes", 5))
        self.page_size = int((self.scenario.get("paging") or {}).get("pageSize", 50))
        maintenance_options = self.scenario.get("maintenance") or {}
        self.reboot_setting_style = maintenance_options.get("rebootSettingStyle", "request")
        self.enforce_guest_limits = bool(maintenance_options.get("enforceGuestWindowLimits", True))
        # ARM refuses api-versions a provider does not register (apiversions.py); scenarios may opt out
        self.check_api_versions = bool((self.scenario.get("apiVersions") or {}).get("enforce", True))
        self.identities = self._identities()
        self.operations: dict[str, compute.Operation] = {}
        self.arc_operations: dict[str, hybridcompute.ArcOperation] = {}  # lower id -> Arc LRO
        self.apply_updates: dict[str, dict[str, Any]] = {}  # lower id -> ApplyUpdate body
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.events = EventBus(
            [EventSubscription.from_scenario(s) for s in self.scenario.get("eventSubscriptions", [])],
            clock,
            spawn=self.spawn,
            seed=self.seed,
            options=self.scenario.get("events"),
            fault=self.faults.for_delivery,
        )
        self.schedule = ScheduleEngine(self, self.scenario.get("events"))
        resourcegraph.initial_assessments(self)
        self._runner: web.AppRunner | None = None
        self._health_runner: web.AppRunner | None = None
        self.endpoint = ""
        self.health_base_url = ""
        self.ca_path = self.state_dir / "ca.pem"

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
        self._loop = asyncio.get_running_loop()
        ssl_context, self.ca_path = make_server_context(self.state_dir)
        app = web.Application(middlewares=[busy_middleware(self.clock)], client_max_size=16 * 1024 * 1024)
        add_control_routes(app, self)
        add_clock_routes(app, self.clock)  # /admin/clock: the shared clock over HTTP (issue 14.11)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, ssl_context=ssl_context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.endpoint = f"https://127.0.0.1:{port}"
        health = web.Application(middlewares=[busy_middleware(self.clock)])
        health.router.add_get("/vms/{name}/health", partial(vm_health, self))
        self._health_runner = web.AppRunner(health, access_log=None, handle_signals=False)
        await self._health_runner.setup()
        await web.TCPSite(self._health_runner, "127.0.0.1", self._health_port).start()
        self.health_base_url = f"http://127.0.0.1:{self._health_runner.addresses[0][1]}"
        self.events.validation_url_base = self.endpoint
        self.client_config_path.write_text(json.dumps(self.client_settings, indent=2) + "\n")
        self.schedule.start_all()
        for entry in self.scenario.get("timeline", []):
            self.spawn(self._scripted(entry))

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:
                pass
        await self.events.close()
        for runner in (self._runner, self._health_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._health_runner = None

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run background work (LRO progress, schedules, deliveries) on the simulator's loop.

        The clock counts the new task as busy from this call until the task has taken its first
        step (normally registering its ``sleep_until``): otherwise a skip clock, seeing nothing
        busy and no sleeper yet, could jump past the task's due time on a loaded machine.
        """
        self.clock.enter_busy()
        inner = asyncio.ensure_future(coro)

        async def first_step_then_release() -> None:
            try:
                await asyncio.sleep(0)  # the inner task's first step runs before this resumes
            finally:
                self.clock.exit_busy()

        self._tasks.add(inner)
        inner.add_done_callback(self._tasks.discard)
        guard = asyncio.ensure_future(first_step_then_release())
        self._tasks.add(guard)
        guard.add_done_callback(self._tasks.discard)
        return inner

    def _in_loop(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` on the simulator's loop (tests call the Python API from other threads)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return fn()
        try:
            if asyncio.get_running_loop() is loop:
                return fn()
        except RuntimeError:
            pass

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    # -- health endpoints -----------------------------------------------------------------------
    @property
    def health_url_template(self) -> str:
        return f"{self.health_base_url}/vms/{{vmName}}/health"

    def health_url(self, vm_name: str) -> str:
        return f"{self.health_base_url}/vms/{quote(vm_name)}/health"

    # -- state changes shared by LROs and the schedule engine -----------------------------------
    def start_operation(self, op: compute.Operation) -> None:
        self.operations[op.id.lower()] = op

        async def finish() -> None:
            await self.clock.sleep_until(op.end)
            with self.clock.busy():
                compute.finish_operation(self, op)

        self.spawn(finish())

    def start_arc_operation(self, op: hybridcompute.ArcOperation) -> None:
        self.arc_operations[op.id.lower()] = op

        async def finish() -> None:
            await self.clock.sleep_until(op.end)
            with self.clock.busy():
                hybridcompute.finish_operation(self, op)

        self.spawn(finish())

    def _apply_initial_arc_faults(self) -> None:
        """``vmAgentNotReady`` / ``deallocated`` on an Arc machine: its agent is Disconnected at start."""
        now = self.clock.now()
        for machine in self.fleet.machines.values():
            hit = self.faults._take("vmAgentNotReady", machine) + self.faults._take("deallocated", machine)
            if hit:
                machine.set_agent_status("Disconnected", now)

    def apply_install(self, vm: Vm, plan: InstallPlan) -> None:
        """An install finished: patches land, the summary updates, faults take effect."""
        vm.installed.update(plan.installed_keys)
        vm.last_installation = plan.summary()
        vm.install_count += 1
        resourcegraph.assess_after_install(self, vm, plan)
        if plan.becomes_unhealthy:
            vm.health = "Unhealthy"
            if plan.recover_after_minutes:
                self.spawn(self._recover(vm, self.clock.now() + timedelta(minutes=plan.recover_after_minutes)))
        if vm.busy_operation in (plan.activity_id, plan.maintenance_run_id):
            vm.busy_operation = None

    async def _scripted(self, entry: dict[str, Any]) -> None:
        """A scenario ``timeline`` entry: change matching VMs at a simulated instant."""
        await self.clock.sleep_until(parse_instant(entry["at"]))
        with self.clock.busy():
            for vm in self.fleet.all_machines():
                if not any(fnmatch.fnmatchcase(vm.name.lower(), g.lower()) for g in entry["vms"]):
                    continue
                if "agentStatus" in entry and vm.is_arc:
                    vm.set_agent_status(entry["agentStatus"], self.clock.now())
                if vm.is_arc and ("powerState" in entry or "vmAgent" in entry):
                    continue  # Arc machines have an agent status instead
                if "health" in entry:
                    vm.health = entry["health"]
                if "powerState" in entry:
                    vm.power_state = entry["powerState"]
                if "vmAgent" in entry:
                    vm.vm_agent_ready = entry["vmAgent"] == "Ready"
                for name, value in (entry.get("tags") or {}).items():
                    vm.tags = {k: v for k, v in vm.tags.items() if k.lower() != name.lower()}
                    if value is not None:
                        vm.tags[name] = value

    async def _recover(self, vm: Vm, when: datetime) -> None:
        await self.clock.sleep_until(when)
        with self.clock.busy():
            if vm.health == "Unhealthy":
                vm.health = "Healthy"

    def set_vm_apply_update(self, vm_id: str, run: Run, status: str) -> None:
        """A VM's ``applyUpdates/{run}`` record, with only the swagger's fields (``ApplyUpdate``:
        id, name, type, properties.status / resourceId / lastUpdateTime). Why a VM was skipped is
        kept on the run (``Run.skipped``, control API), not in the ARM record."""
        record_id = f"{vm_id}/providers/Microsoft.Maintenance/applyUpdates/{run.name}"
        self.apply_updates[record_id.lower()] = {
            "id": record_id,
            "name": run.name,
            "type": "Microsoft.Maintenance/applyUpdates",
            "properties": {"status": status, "resourceId": vm_id, "lastUpdateTime": _iso(self.clock.now())},
        }

    # -- Python control API ---------------------------------------------------------------------
    def vm(self, name: str) -> Vm:
        vm = self.fleet.vm_by_name(name)
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

        def change() -> None:
            if agent_status is not None:
                if agent_status not in ("Connected", "Disconnected", "Expired", "Error", "AwaitingConnection"):
                    raise ValueError(
                        "agentStatus must be Connected, Disconnected, Expired, Error or AwaitingConnection"
                    )
                vm.set_agent_status(agent_status, self.clock.now())
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

        self._in_loop(change)

    def set_vm_health(self, name: str, health: str) -> None:
        self.set_vm_state(name, health=health)

    def fire_run(self, configuration: str, start: datetime | None = None) -> str:
        """Schedule an extra run of a configuration (default: 41 min from now); returns its correlationId."""
        config = self.fleet.configuration_by_name(configuration)
        if config is None:
            raise KeyError(f"no maintenance configuration {configuration!r}")
        when = start or (self.clock.now() + timedelta(minutes=41)).replace(second=0, microsecond=0)
        return str(self._in_loop(lambda: self.schedule.fire(config, when)))

    # -- faults at run time ----------------------------------------------------------------------
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
        return int(self._in_loop(lambda: self.faults.add(fault)))

    def remove_fault(self, index: int) -> bool:
        return bool(self._in_loop(lambda: self.faults.remove(index)))

    def clear_faults(self) -> int:
        return int(self._in_loop(self.faults.clear))

    def fault_list(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._in_loop(self.faults.describe)
        return result

    @property
    def runs(self) -> list[Run]:
        """Every run created so far (snapshot taken on the simulator's loop; safe from any thread)."""
        runs: list[Run] = self._in_loop(lambda: list(self.schedule.runs.values()))
        return sorted(runs, key=lambda r: (r.start, r.config_id.lower()))

    def run(self, correlation_id: str) -> Run | None:
        return self.schedule.run(correlation_id)

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Event deliveries (one entry per attempt), oldest first."""
        return list(self._in_loop(lambda: list(self.events.log)))

    def fleet_state(self) -> dict[str, Any]:
        """VMs, configurations and assignments as plain JSON (what ``GET /_sim/fleet`` returns)."""
        return dict(self._in_loop(self._fleet_state))

    def _fleet_state(self) -> dict[str, Any]:
        return {
            "time": _iso(self.clock.now()),
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
                    "availablePatches": [p.key for p in self.fleet.available_patches(vm)],
                    "lastPatchInstallationSummary": vm.last_installation,
                    "installCount": vm.install_count,
                    "healthUrl": self.health_url(vm.name) if self.health_base_url else None,
                }
                for vm in sorted(self.fleet.vms.values(), key=lambda v: v.id.lower())
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
                    "availablePatches": [p.key for p in self.fleet.available_patches(m)],
                    "lastPatchInstallationSummary": m.last_installation,
                    "installCount": m.install_count,
                    "healthUrl": self.health_url(m.name) if self.health_base_url else None,
                }
                for m in sorted(self.fleet.machines.values(), key=lambda v: v.id.lower())
            ],
            "maintenanceConfigurations": [
                maintenance.configuration_body(self, c) for c in self.fleet.configurations.values()
            ],
            "assignments": [
                {"id": a.id, "configurationId": a.configuration_id, "scope": a.scope_id, "filter": a.filter}
                for a in self.fleet.assignments.values()
            ],
        }

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

    # -- control routes -------------------------------------------------------------------------
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
            reply = _HANDLERS[route.name](self, call)
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
