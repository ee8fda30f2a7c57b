"""What every provider backend shares: the scenario, the clock, the fleet, faults, events, ids and
the background tasks, plus the one state change several providers make (an install lands).

Why a core below the backends: Compute and HybridCompute LROs, the Maintenance schedule and
Resource Graph all act on one fleet at one simulated time, and the request ids the HTTP layer
stamps come from the same seeded sequence as the operation ids. The HTTP server
(:mod:`emulator.arm.server`) builds one :class:`Core`, the backends on it, and only wires them.

SUPPORTED: seeded ids (:meth:`Core.new_id`), background work on the simulator's loop that the
clock counts as busy until its first step (:meth:`Core.spawn`), calls onto that loop from other
threads (:meth:`Core.in_loop`), the scenario's LRO and paging knobs, the scenario ``timeline``
(:meth:`Core.start_timeline`), and :meth:`Core.apply_install` with listeners (Resource Graph's
closing assessment).

LIMITATIONS: one event loop, set by the server when it starts (``loop``); before that, calls run
inline.
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from emulator.arm.events import EventBus, EventSubscription
from emulator.arm.faults import Faults
from emulator.arm.fleet import Fleet, Vm
from emulator.arm.patching import InstallPlan
from emulator.clock import Clock, parse_instant

__all__ = ["Core", "InstallListener", "iso"]

InstallListener = Callable[[Vm, InstallPlan], None]


def iso(value: datetime) -> str:
    """An instant as ARM writes it (``...Z``)."""
    return value.isoformat().replace("+00:00", "Z")


class Core:
    """See the module docstring."""

    def __init__(self, scenario: dict[str, Any], clock: Clock) -> None:
        self.scenario = scenario
        self.clock = clock
        self.seed = int(scenario.get("seed", 1))
        self._ids = random.Random(f"{self.seed}/ids")
        self.fleet = Fleet.from_scenario(scenario, now=clock.now())
        self.faults = Faults(scenario.get("faults", []), self.seed, now=clock.now)
        self.faults.apply_initial(self.fleet)
        lro = scenario.get("lro") or {}
        self.retry_after = int(lro.get("retryAfterSeconds", 1))
        self.assess_minutes = float(lro.get("assessMinutes", 2))
        self.reboot_minutes = float(lro.get("rebootMinutes", 5))
        self.page_size = int((scenario.get("paging") or {}).get("pageSize", 50))
        self.tasks: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.events = EventBus(
            [EventSubscription.from_scenario(s) for s in scenario.get("eventSubscriptions", [])],
            clock,
            spawn=self.spawn,
            seed=self.seed,
            options=scenario.get("events"),
            fault=self.faults.for_delivery,
        )
        self._install_listeners: list[InstallListener] = []

    # -- ids and background work ----------------------------------------------------------------
    def new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

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

        self.tasks.add(inner)
        inner.add_done_callback(self.tasks.discard)
        guard = asyncio.ensure_future(first_step_then_release())
        self.tasks.add(guard)
        guard.add_done_callback(self.tasks.discard)
        return inner

    def at(self, when: Any, fn: Callable[[], Any]) -> asyncio.Task[Any]:
        """Call ``fn`` once the shared clock reaches ``when``, inside ``clock.busy()`` (an LRO
        finishing at its end time: Compute's and HybridCompute's operations alike)."""
        clock = self.clock

        async def due() -> None:
            await clock.sleep_until(when)
            with clock.busy():
                fn()

        return self.spawn(due())

    def in_loop(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` on the simulator's loop (tests call the Python API from other threads)."""
        loop = self.loop
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

    async def cancel_tasks(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:
                pass

    # -- installs (Compute and HybridCompute LROs, scheduled runs) ------------------------------
    def on_install(self, listener: InstallListener) -> None:
        """Call ``listener(vm, plan)`` after every install has landed (before health effects)."""
        self._install_listeners.append(listener)

    def apply_install(self, vm: Vm, plan: InstallPlan) -> None:
        """An install finished: patches land, the summary updates, faults take effect."""
        vm.installed.update(plan.installed_keys)
        vm.last_installation = plan.summary()
        vm.install_count += 1
        for listener in self._install_listeners:
            listener(vm, plan)
        if plan.becomes_unhealthy:
            vm.health = "Unhealthy"
            if plan.recover_after_minutes:
                self.spawn(self._recover(vm, self.clock.now() + timedelta(minutes=plan.recover_after_minutes)))
        if vm.busy_operation in (plan.activity_id, plan.maintenance_run_id):
            vm.busy_operation = None

    async def _recover(self, vm: Vm, when: datetime) -> None:
        await self.clock.sleep_until(when)
        with self.clock.busy():
            if vm.health == "Unhealthy":
                vm.health = "Healthy"

    # -- the scenario's timeline ----------------------------------------------------------------
    def start_timeline(self) -> None:
        for entry in self.scenario.get("timeline", []):
            self.spawn(self._scripted(entry))

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
