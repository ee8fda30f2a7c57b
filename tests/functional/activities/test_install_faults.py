"""installPatches under injected ARM faults: throttling is retried, a 500 is never resent,
a dropped connection is never resent, and a re-run never sends a second POST."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.compute import poll_install_core, start_install_core
from patchrings.clients import AzureClients
from patchrings.ledger import Ledger
from patchrings.settings import Settings
from tests.functional.activities.conftest import SCENARIO, START, SimHandle, vm_id

pytestmark = pytest.mark.functional

PARAMS = {"rebootSetting": "IfRequired", "linuxParameters": {"classificationsToInclude": ["Security"]},
          "windowsParameters": {"classificationsToInclude": ["Security"]}}


def faulted(tmp_path: Path, fault: dict[str, Any]) -> SimHandle:
    scenario = copy.deepcopy(SCENARIO)
    scenario["faults"] = [fault]
    return SimHandle(tmp_path / "arm", scenario)


@pytest.fixture
def make(tmp_path: Path, azurite: Any) -> Iterator[Any]:
    handles: list[tuple[SimHandle, AzureClients]] = []

    def build(fault: dict[str, Any]) -> tuple[SimHandle, AzureClients, Ledger]:
        handle = faulted(tmp_path, fault)
        settings = Settings(arm_endpoint=handle.sim.endpoint, arm_auth="static-token",
                            arm_static_token=handle.sim.token, arm_ca_bundle=str(handle.sim.ca_path),
                            ledger_connection=azurite.connection_string,
                            ledger_table_prefix="f" + uuid.uuid4().hex[:12])
        clients = AzureClients(settings)
        handles.append((handle, clients))
        return handle, clients, Ledger.from_clients(clients)

    yield build
    for handle, clients in handles:
        clients.close()
        handle.stop()


def posts(arm: SimHandle) -> list[Any]:
    return arm.sim.recorder.find(method="POST", path_contains="/installPatches")


def payload(run: str) -> dict[str, Any]:
    return {"rolloutId": "r", "ring": "ring0", "runId": run, "runStartedAt": START, "parameters": PARAMS,
            "vm": {"id": vm_id("web-02"), "name": "web-02", "os": "Linux"}}


def test_throttled_install_is_retried_and_started_once(make: Any) -> None:
    arm, clients, ledger = make({"type": "httpError", "status": 429, "retryAfter": 1, "method": "POST",
                                 "pathContains": "installPatches", "count": 1})
    out = start_install_core(clients, ledger, payload("run-429"))
    assert out["state"] == "started" and out["token"]
    assert [p.status for p in posts(arm)] == [429, 202]


@pytest.mark.parametrize("fault", [
    {"type": "httpError", "status": 500, "method": "POST", "pathContains": "installPatches", "count": 1},
    {"type": "dropConnection", "method": "POST", "pathContains": "installPatches", "count": 1},
])
def test_ambiguous_failures_are_never_resent(make: Any, fault: dict[str, Any]) -> None:
    arm, clients, ledger = make(fault)
    out = start_install_core(clients, ledger, payload("run-x"))
    assert out["state"] == "already-started" and out["token"] is None
    assert len(posts(arm)) == 1
    assert start_install_core(clients, ledger, payload("run-x"))["state"] == "already-started"
    assert len(posts(arm)) == 1
    # the fault hit before the simulator installed anything: the run's install never shows up,
    # so polling keeps answering not-done (the wave's deadline decides), never a stale success
    polled = poll_install_core(clients, ledger, {"runId": "run-x", "vm": payload("run-x")["vm"], "token": None})
    assert polled["done"] is False
