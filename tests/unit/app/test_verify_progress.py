"""A running ring's health progress merges every verify instance (issue 11), not only the first.

A scheduled ring verifies in chunks side by side (``run_results``: ``<id>:verify``,
``<id>:verify:1`` ...); a direct wave in one instance per read burst (``<wave>:verify``,
``<wave>:verify:1`` ...). The status view reads them (at most ``MAX_CHILD_READS`` per request)
and merges their phases with ``orchestrators.status.merged_health``.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from triggers import rollout_views
from triggers.rollout_views import MAX_CHILD_READS, ring_progress, spread

pytestmark = pytest.mark.unit

RID = "ro-v"


class CountingClient:
    """Durable client fake: custom statuses by instance id; counts every read."""

    def __init__(self, statuses: dict[str, dict[str, Any]]) -> None:
        self.statuses = statuses
        self.reads: list[str] = []

    async def get_status(self, instance_id: str) -> Any:
        self.reads.append(instance_id)
        return SimpleNamespace(custom_status=self.statuses.get(instance_id))


def chunk(phases: dict[str, int], phase: str, until: str | None) -> dict[str, Any]:
    return {"step": "verifying", "vms": sum(phases.values()), "checked": sum(phases.values()),
            "healthPhases": phases, "healthPhase": phase, "until": until}


def test_a_scheduled_ring_merges_every_chunk_not_only_the_first() -> None:
    top = f"{RID}:ring1:run"
    client = CountingClient({
        top: {"step": "verifying", "vms": 500, "verifyInstance": f"{top}:verify", "verifyInstances": 3},
        f"{top}:verify": chunk({"done": 200}, "done", None),
        f"{top}:verify:1": chunk({"stayHealthy": 150, "done": 50}, "stayHealthy", "2026-11-16T07:10:00Z"),
        f"{top}:verify:2": chunk({"stayHealthy": 60, "wait": 40}, "stayHealthy", "2026-11-16T07:20:00Z"),
    })
    progress = asyncio.run(ring_progress(client, {"phase": "collecting-and-verifying", "instance": top}))
    assert progress is not None
    # the first chunk alone would say "done" with no end; the ring is still staying healthy until 07:20
    assert (progress["healthPhase"], progress["until"]) == ("stayHealthy", "2026-11-16T07:20:00Z")
    assert (progress["verifying"], progress["verifyChunks"], progress["verifyChunksRead"]) == (500, 3, 3)


def test_a_large_ring_reads_at_most_max_child_reads_chunks_first_and_last_included() -> None:
    top = f"{RID}:ring2:run"
    statuses = {top: {"step": "verifying", "vms": 10_000, "verifyInstance": f"{top}:verify", "verifyInstances": 50}}
    for i in range(50):
        name = f"{top}:verify" + (f":{i}" if i else "")
        statuses[name] = chunk({"elastic": 200}, "elastic", f"2026-11-16T08:{i:02d}:00Z")
    client = CountingClient(statuses)
    progress = asyncio.run(ring_progress(client, {"phase": "collecting-and-verifying", "instance": top}))
    assert progress is not None
    assert len(client.reads) == 1 + MAX_CHILD_READS  # the run_results instance, then the chunks
    assert f"{top}:verify" in client.reads and f"{top}:verify:49" in client.reads
    assert (progress["verifyChunks"], progress["verifyChunksRead"]) == (50, MAX_CHILD_READS)
    assert (progress["healthPhase"], progress["until"]) == ("elastic", "2026-11-16T08:49:00Z")


def test_spread_keeps_order_and_ends() -> None:
    ids = [str(i) for i in range(7)]
    assert spread(ids, 20) == ids
    assert spread(ids, 3) == ["0", "3", "6"]
    assert spread(ids, 1) == ["0"]


def test_a_direct_wave_merges_its_burst_instances_and_stops_at_the_first_missing() -> None:
    ring = f"{RID}:ring0"
    wave = f"{ring}:w0"
    client = CountingClient({
        ring: {"step": "installing", "wave": 1, "waves": 1, "vms": 300, "inFlight": 300, "waveInstance": wave},
        wave: {"step": "verifying", "vms": 150},
        f"{wave}.1": {"step": "verifying", "vms": 150},
        f"{wave}:verify": chunk({"done": 150}, "done", None),
        f"{wave}:verify:1": chunk({"wait": 0}, "done", None) | {"healthPhases": {}},
        f"{wave}.1:verify": chunk({"elastic": 150}, "elastic", "2026-11-16T06:58:00Z"),
    })
    progress = asyncio.run(ring_progress(client, {"phase": "installing", "instance": ring}))
    assert progress is not None
    assert (progress["step"], progress["healthPhase"], progress["until"]) == ("verifying", "elastic",
                                                                             "2026-11-16T06:58:00Z")
    # <wave>:verify:2 and <wave>.1:verify:1 were probed once each and were not there
    assert f"{wave}:verify:2" in client.reads and f"{wave}.1:verify:1" in client.reads
    assert f"{wave}:verify:3" not in client.reads


def test_direct_probing_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollout_views, "MAX_CHILD_READS", 4)
    ring = f"{RID}:ring0"
    wave = f"{ring}:w0"
    statuses = {ring: {"step": "installing", "wave": 1, "waves": 1, "vms": 10, "inFlight": 10, "waveInstance": wave},
                wave: {"step": "verifying", "vms": 10}}
    for i in range(10):
        statuses[f"{wave}:verify" + (f":{i}" if i else "")] = chunk({"wait": 1}, "wait", "2026-11-16T06:50:00Z")
    client = CountingClient(statuses)
    asyncio.run(ring_progress(client, {"phase": "installing", "instance": ring}))
    assert len([r for r in client.reads if ":verify" in r]) == 4
