"""The local host refuses what Azure refuses (issue 14 items 2, 3, 5, 10, 11).

Each behaviour names the source it was taken from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import make_clock
from emulator.host.testing import HostThread

pytestmark = pytest.mark.emulator

APPS = Path(__file__).resolve().parent / "apps"
START = "2025-01-01T12:00:00Z"


@pytest.fixture(scope="module")
def parity() -> Iterator[HostThread]:
    clock = make_clock("skip", start=START)
    with HostThread(APPS / "parity", clock) as ht:
        yield ht
    clock.close()


def run(ht: HostThread, name: str, value: Any = None) -> Any:
    iid = ht.call(ht.client().start_new(name, None, value))
    return ht.wait_for(iid)


# ---------------------------------------------------------------- 14.2 custom status size
# Azure/azure-functions-durable-extension: OutOfProcOrchestrationShim.ScheduleDurableTaskEvents ->
# DurableOrchestrationContext.SetCustomStatus -> MessagePayloadDataConverter.Serialize(value, 16):
# (int)(UTF-16 bytes / 1024.0) > 16 throws ArgumentException, the orchestration fails.
# A JSON string of n characters is n + 2 UTF-16 code units: 8,701 chars = 17,406 bytes (16 KB
# truncated, accepted); 8,702 chars = 17,408 bytes = 17 KB (refused).

def test_custom_status_at_the_limit_is_accepted(parity: HostThread) -> None:
    status = run(parity, "big_status", "x" * 8701)
    assert status.runtime_status.value == "Completed"
    assert status.custom_status == "x" * 8701


def test_custom_status_is_measured_in_utf16_not_utf8(parity: HostThread) -> None:
    status = run(parity, "big_status", "€" * 8701)  # 26 KB in UTF-8, 17,406 bytes in UTF-16
    assert status.runtime_status.value == "Completed"


def test_custom_status_just_over_the_limit_fails_the_orchestration(parity: HostThread) -> None:
    status = run(parity, "big_status", "x" * 8702)
    assert status.runtime_status.value == "Failed"
    assert status.output == ("Orchestrator function 'big_status' failed: The UTF-16 size of the JSON-serialized "
                             "payload must not exceed 16 KB. The current payload size is 17 KB.")
    assert status.custom_status == "small"  # the oversized value was never stored
    history = parity.history(status.instance_id)
    assert sum(1 for e in history if e["EventType"] == 4) == 1  # the second activity was never scheduled
