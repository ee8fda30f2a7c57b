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
