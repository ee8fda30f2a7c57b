"""Two starts of the same install racing (a duplicate activity execution, issue 11): the one whose
create-only ledger row loses answers from its twin's record, never from its own view. A twin that
POSTed is never reported as *left the ring* (the machine would be patched but not judged), and a
twin that recorded *left-ring* is never reported as *already started*."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.unit.activities.test_left_ring import ACCEPTED, VM_ID, clients_for, start, vm_body
from tests.unit.app.fakes import FakeLedger

pytestmark = pytest.mark.unit

VM = {"id": VM_ID, "name": "web-01", "os": "Windows"}


class LateLedger(FakeLedger):
    """This start's first ledger read ran before its twin's row landed (it answers None once);
    ``twin`` is the row the twin then created."""

    def __init__(self, twin: dict[str, Any]) -> None:
        super().__init__()
        self.blind = True
        super().record_install("r:ring0", VM_ID, twin)

    def install(self, run_id: str, vm_id: str) -> dict[str, Any] | None:
        if self.blind:
            self.blind = False
            return None
        return super().install(run_id, vm_id)


def test_a_twin_that_posted_is_answered_as_started_not_left_ring() -> None:
    ledger = LateLedger({"state": "posting", "token": "tok-A"})
    clients, transport = clients_for(Path(tempfile.mkdtemp()), [
        ("GET", "/virtualMachines/web-01?", (200, {}, vm_body("none"))),  # retagged out after A sent
    ])
    answer = start(clients, ledger, VM)
    assert answer["state"] == "already-started" and answer["token"] == "tok-A"
    assert (ledger.install("r:ring0", VM_ID) or {})["state"] == "posting"  # A's row stands
    assert [r.method for r in transport.requests] == ["GET"]


def test_a_twin_that_recorded_left_ring_is_answered_as_left_ring_not_started() -> None:
    error = {"code": "LeftRing", "retryable": False, "status": None, "message": "not installed: left"}
    ledger = LateLedger({"state": "left-ring", "error": error})
    clients, transport = clients_for(Path(tempfile.mkdtemp()), [
        ("GET", "/virtualMachines/web-01?", (200, {}, vm_body("ring0"))),  # B still sees it in the ring
        ("POST", "/installPatches", ACCEPTED),
    ])
    answer = start(clients, ledger, VM)
    assert answer["state"] == "left-ring" and answer["token"] is None and answer["error"]["code"] == "LeftRing"
    assert [r.method for r in transport.requests] == ["GET"]  # B lost the claim: nothing sent
