"""Fixtures: the ARM simulator on its own loop thread, and real SDK clients pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from emulator.arm.server import ArmSimulator
from emulator.clock import Clock, make_clock

SUB = "00000000-0000-0000-0000-00000000aaaa"
START = "2026-11-16T06:00:00Z"  # a Monday


class StaticToken:
    """The credential the app uses locally (PATCHRINGS_ARM_AUTH=static-token)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, 4_102_444_800)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self.token, 4_102_444_800)


@dataclass
class Running:
    sim: ArmSimulator
    clock: Clock
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def kwargs(self, token: str | None = None) -> dict[str, Any]:
        return {
            "base_url": self.sim.endpoint,
            "connection_verify": str(self.sim.ca_path),
            "credential": StaticToken(token or self.sim.token),
        }

    def compute(self, token: str | None = None, sub: str = SUB) -> Any:
        from azure.mgmt.compute import ComputeManagementClient

        kw = self.kwargs(token)
        return ComputeManagementClient(kw.pop("credential"), sub, **kw)

    def maintenance(self, token: str | None = None, sub: str = SUB) -> Any:
        from azure.mgmt.maintenance import MaintenanceManagementClient

        kw = self.kwargs(token)
        return MaintenanceManagementClient(kw.pop("credential"), sub, **kw)

    def resources(self, token: str | None = None, sub: str = SUB) -> Any:
        from azure.mgmt.resource.resources import ResourceManagementClient

        kw = self.kwargs(token)
        return ResourceManagementClient(kw.pop("credential"), sub, **kw)

    def advance_until(self, predicate: Callable[[], Any], timeout: float = 60) -> Any:
        """Jump the (held) skip clock one due time at a time until ``predicate()`` holds.

        The predicate is evaluated only after the simulator's loop has drained (``settle``):
        ``Clock.advance_until`` checks the predicate *before* measuring idleness, so on a loaded
        machine work finishing in between could be missed and the clock jump one step too far.
        """

        def drained() -> Any:
            self.settle()
            return predicate()

        return self.clock.advance_until(drained, timeout=timeout)

    def advance_to(self, when: datetime) -> None:
        """Let everything due up to ``when`` happen, then stop the clock exactly there.

        A sleeper at ``when`` guarantees a due time there; it is registered (``settle``) before
        advancing, and the predicate reads the clock itself, which the jump sets synchronously --
        so a loaded machine cannot make the clock run past ``when``.
        """

        async def sleeper() -> None:
            await self.clock.sleep_until(when)

        asyncio.run_coroutine_threadsafe(sleeper(), self.loop)
        self.advance_until(lambda: self.clock.now() >= when)
        self.settle()

    def settle(self) -> None:
        """Wait until the simulator's loop has run everything already due (no clock jump)."""
        for _ in range(3):
            self.call(lambda: None)

    def lro(self, poller: Any) -> Any:
        """Drive a held clock until an SDK poller finishes, then return its result."""
        sim = self.sim
        self.advance_until(
            lambda: poller.done() or not any(op.status == "InProgress" for op in list(sim.operations.values()))
        )
        return poller.result()

    def now(self) -> datetime:
        return self.clock.now()


def base_scenario(**extra: Any) -> dict[str, Any]:
    """A small fleet: 2 Windows + 2 Linux VMs, a catalog, one weekly configuration."""
    scenario: dict[str, Any] = {
        "seed": 7,
        "subscriptions": [
            {
                "id": SUB,
                "resourceGroups": [
                    {
                        "name": "rg-fleet",
                        "location": "westeurope",
                        "vms": [
                            {"name": "win-01", "os": "Windows", "zone": "1", "tags": {"patchRing": "ring0"}},
                            {"name": "win-02", "os": "Windows", "zone": "2", "tags": {"patchRing": "ring1"}},
                            {"name": "lin-01", "os": "Linux", "zone": "1", "tags": {"patchRing": "ring0"}},
                            {"name": "lin-02", "os": "Linux", "zone": "3", "tags": {"patchRing": "ring1"}},
                        ],
                    },
                    {
                        "name": "rg-patching",
                        "location": "westeurope",
                        "maintenanceConfigurations": [
                            {
                                "name": "mc-ring0",
                                "window": {
                                    "startDateTime": "2026-11-01 20:00",
                                    "duration": "03:00",
                                    "timeZone": "UTC",
                                    "recurEvery": "Week Tuesday",
                                },
                                "installPatches": {
                                    "rebootSetting": "IfRequired",
                                    "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]},
                                    "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]},
                                },
                            },
                        ],
                    },
                ],
                "dynamicScopes": [
                    {
                        "name": "ds-ring0",
                        "maintenanceConfiguration": "mc-ring0",
                        "filter": {"tagSettings": {"tags": {"patchRing": ["ring0"]}, "filterOperator": "All"}},
                    }
                ],
            }
        ],
        "catalog": {
            "windows": [
                {
                    "kb": "5048667",
                    "name": "2026-11 Cumulative Update",
                    "classification": "Security",
                    "published": "2026-11-10T17:00:00Z",
                    "reboot": "AlwaysRequiresReboot",
                    "minutes": 30,
                },
                {
                    "kb": "5048654",
                    "name": "2026-11 Servicing Stack Update",
                    "classification": "Critical",
                    "published": "2026-11-10T17:00:00Z",
                    "reboot": "NeverReboots",
                    "minutes": 5,
                },
                {
                    "kb": "2267602",
                    "name": "Defender definitions",
                    "classification": "Definition",
                    "published": "2026-11-14T08:00:00Z",
                    "reboot": "NeverReboots",
                    "minutes": 1,
                },
            ],
            "linux": [
                {
                    "package": "openssl",
                    "version": "3.0.2-0ubuntu1.18",
                    "classification": "Security",
                    "published": "2026-11-05T10:00:00Z",
                    "minutes": 2,
                },
                {
                    "package": "openssl",
                    "version": "3.0.2-0ubuntu1.19",
                    "classification": "Security",
                    "published": "2026-11-17T10:00:00Z",
                    "minutes": 2,
                },
                {
                    "package": "curl",
                    "version": "7.81.0-1ubuntu1.19",
                    "classification": "Security",
                    "published": "2026-11-11T10:00:00Z",
                    "minutes": 1,
                },
                {
                    "package": "tzdata",
                    "version": "2026a",
                    "classification": "Other",
                    "published": "2026-11-02T10:00:00Z",
                    "minutes": 1,
                },
            ],
        },
    }
    scenario.update(extra)
    return scenario


@pytest.fixture
def arm_factory(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start simulators on a dedicated loop thread; each is stopped at teardown."""
    started: list[tuple[Running, threading.Thread]] = []
    holds = contextlib.ExitStack()

    def factory(
        scenario: dict[str, Any] | Path | None = None,
        *,
        clock: str = "skip",
        start: str = START,
        variables: dict[str, str] | None = None,
        hold: bool = True,
    ) -> Running:
        the_clock = make_clock(clock, start=start)
        if hold and clock == "skip":
            holds.enter_context(the_clock.hold())
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True, name="arm-sim-loop")
        thread.start()
        sim = ArmSimulator(
            scenario if scenario is not None else base_scenario(),
            the_clock,
            state_dir=tmp_path / f"arm-{len(started)}",
            variables=variables,
        )
        asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=30)
        running = Running(sim, the_clock, loop)
        started.append((running, thread))
        return running

    yield factory
    holds.close()
    for running, thread in reversed(started):
        asyncio.run_coroutine_threadsafe(running.sim.stop(), running.loop).result(timeout=30)
        running.loop.call_soon_threadsafe(running.loop.stop)
        thread.join(timeout=10)
        running.clock.close()


@pytest.fixture
def arm(arm_factory: Callable[..., Running]) -> Running:
    return arm_factory()


class Receiver:
    """A tiny webhook on loopback that records Event Grid deliveries and answers scripted statuses."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answered first, in order; then 200
        self.validation_mode = "echo"  # "echo" answers the validation code; anything else ignores it
        self.validation_requests: list[Any] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="receiver-loop")
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)

    async def _start(self) -> str:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            if request.headers.get("aeg-event-type") == "SubscriptionValidation":
                self.validation_requests.append(body)
                if self.validation_mode == "echo":
                    return web.json_response({"validationResponse": body[0]["data"]["validationCode"]})
                return web.json_response({})
            status = self.statuses.pop(0) if self.statuses else 200
            self.deliveries.append(
                {"headers": dict(request.headers), "body": body, "status": status, "query": dict(request.query)}
            )
            return web.Response(status=status)

        app = web.Application()

        async def options(request: web.Request) -> web.Response:
            origin = request.headers.get("WebHook-Request-Origin", "")
            self.validation_requests.append({"options": origin})
            return web.Response(headers={"WebHook-Allowed-Origin": origin, "Allow": "POST"})

        app.router.add_post("/{tail:.*}", handle)
        app.router.add_route("OPTIONS", "/{tail:.*}", options)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def events(self, event_type: str | None = None, *, accepted_only: bool = True) -> list[dict[str, Any]]:
        out = []
        for delivery in self.deliveries:
            if accepted_only and delivery["status"] >= 300:
                continue
            for event in delivery["body"]:
                kind = event.get("eventType") or event.get("type")
                if event_type is None or kind.endswith(event_type):
                    out.append(event)
        return out

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def with_events(scenario: dict[str, Any], **subscription: Any) -> dict[str, Any]:
    """Add an event subscription pointing at the receiver (``${RECEIVER}`` variable)."""
    entry = {"name": "patchrings", "endpoint": "${RECEIVER}/events?functionName=on_maintenance_event&code=${KEY:-}"}
    entry.update(subscription)
    scenario["eventSubscriptions"] = [entry]
    return scenario
