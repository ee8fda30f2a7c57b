"""Ring counts add up (issue 9, counts truth): vms = passed + failed + inconclusive + inFlight +
skipped + notStarted, over documents recorded from the platform (the bad-patch demo's Ring 0,
halted by its error budget with 2 VMs never started) and the other ring shapes: running,
scheduled, cancelled, not resolved yet.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators.status import ring_view

pytestmark = pytest.mark.unit

VM = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-patching"
      "/providers/Microsoft.Compute/virtualMachines")
BUDGET = "not started: the ring's error budget (maxErrors) was exceeded"

# Recorded from `python -m demo --scenario bad-patch` (GET /api/rollouts/{id}: status.rings[0]).
HALTED_BY_BUDGET = {
    "name": "ring0", "patching": "direct", "phase": "failed",
    "counts": {"vms": 4, "install:ok": 4, "health:healthy": 3, "health:unhealthy": 1, "skipped": 2, "waves": 3},
    "gate": {"ring": "ring0", "outcome": "fail", "summary": "1 of 4 VM(s) failed (no failures tolerated)",
             "counts": {"total": 4, "passed": 3, "failed": 1, "inconclusive": 0, "errorBudget": 0},
             "reasons": [{"vm": f"{VM}/r0-web-03", "reason": "health: application health is unhealthy"},
                         {"vm": f"{VM}/r0-web-01", "reason": BUDGET},
                         {"vm": f"{VM}/r0-web-02", "reason": BUDGET}]},
    "target": None, "opened": False,
}


def row(name: str, outcome: str) -> dict[str, Any]:
    return {"vm": f"{VM}/{name}", "name": name, "os": "Linux", "state": "done",
            "result": {"status": "Succeeded"},
            "verdict": {"vm": f"{VM}/{name}", "outcome": outcome, "install": "ok",
                        "health": "healthy" if outcome == "pass" else "unhealthy", "reasons": []}}


def adds_up(counts: dict[str, Any]) -> bool:
    parts = ("passed", "failed", "inconclusive", "inFlight", "skipped", "notStarted")
    return counts["vms"] == sum(counts[k] for k in parts) and counts["finished"] == sum(
        counts[k] for k in ("passed", "failed", "inconclusive"))


def test_a_ring_halted_by_its_error_budget_counts_the_vms_it_never_started() -> None:
    rows = [row("r0-app-01", "pass"), row("r0-app-02", "pass"), row("r0-onprem-01", "pass"), row("r0-web-03", "fail")]
    view = ring_view(HALTED_BY_BUDGET, rows, None, halted=True, current=True)
    counts = view["counts"]
    assert counts["vms"] == 6, counts  # was 4: the 2 VMs the budget stopped were not counted
    assert (counts["passed"], counts["failed"], counts["skipped"], counts["notStarted"]) == (3, 1, 2, 0), counts
    assert adds_up(counts), counts
    # the never-started VMs have a row each (short name, full id, the gate's reason)
    never = [v for v in view["vms"] if v["outcome"] == "not-started"]
    assert sorted(v["name"] for v in never) == ["r0-web-01", "r0-web-02"]
    assert never[0]["id"].startswith(VM) and never[0]["reasons"] == [BUDGET]
    assert len(view["vms"]) == counts["vms"]


def test_a_running_direct_ring_counts_in_flight_and_waves_not_reached() -> None:
    ring = {"name": "ring0", "patching": "direct", "phase": "installing", "counts": {}}
    progress = {"wave": 2, "waves": 3, "vms": 6, "skipped": 0, "inFlight": 2, "installing": 1, "verifying": 0}
    counts = ring_view(ring, [row("a", "pass"), row("b", "fail")], progress)["counts"]
    assert (counts["vms"], counts["finished"], counts["inFlight"], counts["notStarted"]) == (6, 2, 2, 2), counts
    assert adds_up(counts), counts


def test_a_finished_wave_whose_rows_are_in_the_ledger_is_not_also_in_flight() -> None:
    # between the wave writing its rows and the ring moving on, the ring's status still says
    # inFlight 2 for the last wave: seen by the status API under load (4 VMs in a 3-VM ring)
    ring = {"name": "ring0", "patching": "direct", "phase": "installing", "counts": {}}
    progress = {"wave": 2, "waves": 2, "vms": 3, "skipped": 0, "inFlight": 2, "installing": 0, "verifying": 2}
    counts = ring_view(ring, [row("a", "pass"), row("b", "pass"), row("c", "pass")], progress)["counts"]
    assert (counts["vms"], counts["finished"], counts["inFlight"], counts["notStarted"]) == (3, 3, 0, 0), counts
    assert adds_up(counts), counts


def test_scheduled_cancelled_and_unresolved_rings() -> None:
    # a scheduled ring: every member has a verdict (a missing result is inconclusive)
    scheduled = {"name": "ring1", "patching": "scheduled", "phase": "inconclusive", "members": 3,
                 "counts": {"vms": 3, "install:ok": 2, "install:missing": 1}}
    counts = ring_view(scheduled, [row("a", "pass"), row("b", "pass"), row("c", "inconclusive")])["counts"]
    assert (counts["vms"], counts["inconclusive"], counts["notStarted"]) == (3, 1, 0) and adds_up(counts), counts
    # its run cancelled (or the rollout halted before it): every member not started
    cancelled = {"name": "ring2", "patching": "scheduled", "phase": "cancelled", "members": 5, "counts": {}}
    counts = ring_view(cancelled, [])["counts"]
    assert (counts["vms"], counts["notStarted"]) == (5, 5) and adds_up(counts), counts
    # members not resolved yet: unknown, never a misleading 0
    counts = ring_view({"name": "ring2", "phase": "pending", "counts": {}}, [])["counts"]
    assert counts["vms"] is None and counts["notStarted"] is None, counts


def test_a_dry_run_ring_counts_its_vms_as_not_started() -> None:
    ring = {"name": "ring1", "phase": "assessed", "counts": {}, "dryRun": {"vms": 11, "assessed": 11}}
    counts = ring_view(ring, [])["counts"]
    assert (counts["vms"], counts["notStarted"]) == (11, 11) and adds_up(counts), counts
