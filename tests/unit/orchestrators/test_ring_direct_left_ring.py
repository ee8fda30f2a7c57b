"""Evidence that shrank (issue 11, review MEDIUM): a direct ring whose members left it before their
install counts them, names them, and does not pass on the few VMs still judged."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators import ring_direct as ring_direct_mod
from orchestrators import wave as wave_mod
from orchestrators.verdicts import verdicts_for
from tests.unit.orchestrators.test_orch_verdicts import RING0, Call, ScriptedContext, drive, ok_result, raw, vm
from tests.unit.orchestrators.test_ring_direct_scale import wave_answer

pytestmark = pytest.mark.unit


def run(members: int, stay: set[str]) -> dict[str, Any]:
    """A ring of ``members`` VMs where only ``stay`` are still in the ring when their install
    starts: the others' start_install answered ``left-ring`` (the wave's real verdicts_for)."""
    vms = [vm(f"v{i}") for i in range(members)]
    spec = {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "runId": "r:ring0", "vms": vms,
            "startedAt": "2026-11-16T06:00:00Z"}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == wave_mod.names.WAVE:
            part = call.payload["vms"]
            installs = [{"vm": v["id"], "os": v["os"], "state": "done", "result": ok_result()} if v["name"] in stay
                        else {"vm": v["id"], "os": v["os"], "state": "left-ring"} for v in part]
            health = {}
            verdicts = verdicts_for(RING0, "ring0", part, installs, health)
            for v in verdicts:  # healthy after the install (the health phases are not under test)
                v.update(health="healthy", outcome="pass", reasons=[])
            return wave_answer(part, verdicts, call.payload)
        return {}

    return drive(raw(ring_direct_mod.ring_direct_orchestrator), ScriptedContext(spec), answer)


def test_a_ring_of_20_where_19_left_is_inconclusive_not_pass() -> None:
    out = run(20, {"v7"})
    gate = out["gate"]
    assert gate["outcome"] == "inconclusive", gate
    assert gate["counts"]["total"] == 1 and gate["counts"]["leftRing"] == 19
    assert gate["reasons"][0]["reason"].startswith("19 VM(s) left the ring before their install; not judged")
    assert out["counts"]["leftRing"] == 19


def test_one_of_twenty_left_is_shown_and_the_ring_passes() -> None:
    out = run(20, {f"v{i}" for i in range(20)} - {"v3"})
    gate = out["gate"]
    assert gate["outcome"] == "pass" and gate["counts"]["leftRing"] == 1, gate
    assert "1 VM(s) left the ring" in gate["reasons"][0]["reason"]


def test_nobody_left_nothing_is_said() -> None:
    gate = run(4, {f"v{i}" for i in range(4)})["gate"]
    assert gate["outcome"] == "pass" and "leftRing" not in gate["counts"] and gate["reasons"] == []
