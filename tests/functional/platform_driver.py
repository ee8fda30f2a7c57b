"""Adapts :class:`LocalPlatform` to the fake-fleet :class:`Driver` and reads the ledger.

Why: the same driving vocabulary (start, approve, wait for a state with a safe skip-clock
advance) works against the full platform (host + ARM simulator + Azurite), where maintenance
events come from the simulator's own schedules instead of the test.

Time moves through the platform's clock API (``platform.clock_url``, :class:`ClockClient`):
the same ``POST /admin/clock/advance`` calls the demo and a person with curl make.
"""

from __future__ import annotations

from typing import Any

from azure.data.tables import TableServiceClient

from patchrings.ledger import Ledger
from tests.functional.fakeapp.driver import Driver


class PlatformHost:
    """The bits of ``HostThread`` the Driver uses, on a LocalPlatform."""

    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.clock = platform.clock_client()

    @property
    def base_url(self) -> str:
        return str(self.platform.base_url)

    @property
    def function_key(self) -> str:
        return str(self.platform.function_key)

    def client(self) -> Any:
        from azure.durable_functions import DurableOrchestrationClient

        return DurableOrchestrationClient(self.platform.client_binding_json())

    def status(self, instance_id: str) -> Any:
        return self.platform.loop.call(self.client().get_status(instance_id))


def driver(platform: Any) -> Driver:
    return Driver(PlatformHost(platform))


def ledger(platform: Any) -> Ledger:
    service = TableServiceClient.from_connection_string(platform.settings["PATCHRINGS_LEDGER_CONNECTION"])
    return Ledger(service, platform.settings.get("PATCHRINGS_LEDGER_TABLE_PREFIX", "patchrings"))


def installs(platform: Any) -> list[Any]:
    """Recorded installPatches POSTs (the app's on-demand installs)."""
    return [r for r in platform.arm.recorder.find(method="POST") if r.path.lower().endswith("/installpatches")]


def vm_name(record: Any) -> str:
    parts = record.path.rstrip("/").split("/")
    return str(parts[parts.index("virtualMachines") + 1] if "virtualMachines" in parts else parts[-2])
