"""Fixtures for the activities' functional tests: Azurite (ledger) and the ARM simulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchrings.clients import AzureClients
from patchrings.ledger import Ledger
from patchrings.settings import Settings


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from emulator.azurite import Azurite

    server = Azurite(tmp_path_factory.mktemp("azurite"), in_memory=True).start()
    yield server
    server.stop()


@pytest.fixture
def ledger_settings(azurite: object) -> Settings:
    # A fresh table prefix per test keeps tests independent on one Azurite process.
    prefix = "t" + uuid.uuid4().hex[:12]
    return Settings(
        arm_auth="static-token",
        arm_static_token="unused",
        ledger_connection=azurite.connection_string,  # type: ignore[attr-defined]
        ledger_table_prefix=prefix,
        app_dir=Path(__file__).resolve().parents[3],
    )


@pytest.fixture
def ledger(ledger_settings: Settings) -> Iterator[Ledger]:
    clients = AzureClients(ledger_settings)
    yield Ledger.from_clients(clients)
    clients.close()


# ---------------------------------------------------------------------------------------------
# ARM simulator on a skip clock, served from a background event-loop thread

SUB = "11111111-2222-3333-4444-555555555555"
RG_WEB = f"/subscriptions/{SUB}/resourceGroups/rg-web"
MC_RING1 = (f"/subscriptions/{SUB}/resourceGroups/rg-maint/providers/Microsoft.Maintenance"
            "/maintenanceConfigurations/ring1")
START = "2026-11-16T06:00:00Z"


def vm_id(name: str) -> str:
    return f"{RG_WEB}/providers/Microsoft.Compute/virtualMachines/{name}"


SCENARIO: dict[str, object] = {
    "name": "activities",
    "seed": 7,
    "subscriptions": [{
        "id": SUB,
        "resourceGroups": [
            {"name": "rg-web", "location": "westeurope", "vms": [
                {"name": "web-01", "os": "Windows", "zone": "1", "tags": {"ring": "ring0"},
                 "applicationHealthExtension": True},
                {"name": "web-02", "os": "Linux", "zone": "2", "tags": {"ring": "ring0"}},
                {"name": "app-01", "os": "Linux", "tags": {"ring": "ring1-hold"}},
                {"name": "app-02", "os": "Windows", "tags": {"ring": "ring1-hold"},
                 "bypassPlatformSafetyChecksOnUserSchedule": False},
                {"name": "db-01", "os": "Linux", "tags": {"ring": "ring0"}, "powerState": "deallocated"},
                {"name": "other-01", "os": "Linux", "tags": {"role": "other"}},
            ]},
            {"name": "rg-maint", "location": "westeurope", "maintenanceConfigurations": [
                {"name": "ring1",
                 "window": {"startDateTime": "2026-11-17 02:00", "duration": "03:00", "timeZone": "UTC",
                            "recurEvery": "Day"},
                 "installPatches": {"rebootSetting": "IfRequired",
                                    "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]},
                                    "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]}}},
            ]},
        ],
    }],
    "catalog": {
        "windows": [{"kb": "5034123", "name": "2026-11 Cumulative Update (KB5034123)", "classification": "Security",
                     "published": "2026-11-10T00:00:00Z", "minutes": 30}],
        "linux": [{"package": "openssl", "version": "3.0.13", "classification": "Security",
                   "published": "2026-11-10T00:00:00Z", "minutes": 5}],
    },
}

PLAN: dict[str, object] = {
    "version": 1,
    "name": "activities-test",
    "rings": [
        {"name": "ring0", "patching": "direct",
         "members": {"tag": {"name": "ring", "value": "ring0"}, "subscriptions": [SUB]}},
        {"name": "ring1", "patching": "scheduled", "open": {"mode": "retag"},
         "members": {"tag": {"name": "ring", "value": "ring1", "holdValue": "ring1-hold"},
                     "maintenanceConfigurationId": MC_RING1}},
    ],
}


class SimHandle:
    """An ArmSimulator running on its own loop thread, with a skip clock."""

    def __init__(self, state_dir: Path, scenario: dict[str, object]) -> None:
        import asyncio
        import threading

        from emulator.arm.server import ArmSimulator
        from emulator.clock import make_clock

        self.clock = make_clock("skip", start=START)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="arm-sim", daemon=True)
        self.thread.start()
        self.sim = ArmSimulator(scenario, self.clock, state_dir=state_dir)
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(timeout=60)

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.clock.close()


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[SimHandle]:
    handle = SimHandle(tmp_path / "arm", SCENARIO)
    yield handle
    handle.stop()


@pytest.fixture
def clients(arm: SimHandle, azurite: object) -> Iterator[AzureClients]:
    settings = Settings(
        arm_endpoint=arm.sim.endpoint,
        arm_auth="static-token",
        arm_static_token=arm.sim.token,
        arm_ca_bundle=str(arm.sim.ca_path),
        ledger_connection=azurite.connection_string,  # type: ignore[attr-defined]
        ledger_table_prefix="t" + uuid.uuid4().hex[:12],
    )
    built = AzureClients(settings)
    yield built
    built.close()


@pytest.fixture
def arm_ledger(clients: AzureClients) -> Ledger:
    return Ledger.from_clients(clients)
