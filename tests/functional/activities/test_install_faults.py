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
from tests.functional.activities.conftest import SCENARIO, START, SUB, SimHandle, vm_id

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


# ------------------------------------------------------------------ uncertain starts (issue 13 item 4)
LATER = "2026-11-16T06:20:00Z"  # UNCERTAIN_START_GRACE (15 min) after the 06:00 claim


def timed(run: str, now: str, **extra: Any) -> dict[str, Any]:
    return {**payload(run), "now": now, **extra}


def tokenless_poll(clients: AzureClients, ledger: Ledger, run: str, now: str) -> dict[str, Any]:
    return poll_install_core(clients, ledger, {"runId": run, "runStartedAt": START, "now": now,
                                               "vm": payload(run)["vm"], "token": None})


def test_a_500_that_never_took_effect_is_sent_again_once(make: Any) -> None:
    arm, clients, ledger = make({"type": "httpError", "status": 500, "method": "POST",
                                 "pathContains": "installPatches", "count": 1})
    first = start_install_core(clients, ledger, timed("run-500", START))
    assert first["state"] == "already-started" and first["uncertain"] is True
    asked = tokenless_poll(clients, ledger, "run-500", LATER)
    assert asked["resend"] is True
    resent = start_install_core(clients, ledger, timed("run-500", LATER, resend=True))
    assert resent["state"] == "started" and resent["token"]
    assert start_install_core(clients, ledger, timed("run-500", LATER, resend=True))["state"] == "already-started"
    assert [p.status for p in posts(arm)] == [500, 202]
    done = poll_install_core(clients, ledger, {"runId": "run-500", "vm": payload("run-500")["vm"],
                                               "token": resent["token"]})
    assert done["error"] is None


def test_a_500_whose_install_did_start_is_never_sent_again(make: Any) -> None:
    arm, clients, ledger = make({"type": "httpError", "status": 500, "method": "POST",
                                 "pathContains": "installPatches", "count": 1})
    assert start_install_core(clients, ledger, timed("run-applied", START))["uncertain"] is True
    # The POST *was* applied after all (ARM answered 500 after accepting it): the VM's install
    # of this run shows up in its instance view.
    vm = payload("run-applied")["vm"]
    rg, name = "rg-web", vm["name"]
    clients.compute(SUB).virtual_machines.begin_install_patches(rg, name, PARAMS, polling=False)
    polled = tokenless_poll(clients, ledger, "run-applied", LATER)
    assert polled["done"] is False and "resend" not in polled
    forced = start_install_core(clients, ledger, timed("run-applied", LATER, resend=True))
    assert forced["state"] == "already-started"
    assert [p.status for p in posts(arm)] == [500, 202]  # the failed one and the applied one: no third


def test_a_crash_between_claim_and_post_is_resolved_by_one_post(make: Any) -> None:
    arm, clients, ledger = make({"type": "httpError", "status": 503, "method": "GET", "pathContains": "nothing"})
    # what a start activity leaves behind when its worker dies after the claim, before the POST
    ledger.record_install("run-crash", vm_id("web-02"), {"state": "posting", "claimedAt": START,
                                                         "runStartedAt": START, "ring": "ring0"})
    rerun = start_install_core(clients, ledger, timed("run-crash", START))
    assert rerun["state"] == "already-started" and rerun["uncertain"] is True
    assert posts(arm) == []
    assert "resend" not in tokenless_poll(clients, ledger, "run-crash", "2026-11-16T06:05:00Z")
    assert tokenless_poll(clients, ledger, "run-crash", LATER)["resend"] is True
    sent = start_install_core(clients, ledger, timed("run-crash", LATER, resend=True))
    assert sent["state"] == "started"
    for _ in range(3):  # every later attempt, however it is asked, sends nothing
        start_install_core(clients, ledger, timed("run-crash", LATER, resend=True))
        start_install_core(clients, ledger, timed("run-crash", LATER))
    assert [p.status for p in posts(arm)] == [202]
