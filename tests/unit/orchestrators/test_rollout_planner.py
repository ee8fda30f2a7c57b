"""The planner's warning in the rollout's status (issue 11): at the start, Ring 0 (direct) is
estimated against the next ring's T-40 less the margin, as the dry run does; its warnings are
notes in the status, the estimate is on the ledger's rollout row; a failed read is a note.

Stepped with the fake context of ``test_rollout_notify``."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators import names
from tests.unit.orchestrators.test_rollout_notify import FakeContext, handler

pytestmark = pytest.mark.unit

MC1 = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc-ring1"
WINDOW = {"startDateTime": "2026-11-01 12:00", "duration": "03:55", "timeZone": "UTC", "recurEvery": "Day"}


def plan(concurrency: int) -> dict[str, Any]:
    return {"name": "test", "version": 1, "hash": "p-1", "promotion": {"t40Margin": "PT5M"},
            "rings": [{"name": "ring0", "patching": "direct", "rate": {"maxConcurrency": concurrency, "maxErrors": 0}},
                      {"name": "ring1", "patching": "scheduled", "members": {"maintenanceConfigurationId": MC1},
                       "approval": {"mode": "manual", "approvers": ["alice@contoso.com"], "timeout": "PT1H",
                                    "onTimeout": "reject"}}]}


def answers(concurrency: int, vms: int, config: Any) -> Any:
    base = handler({"ring0": "pass"})

    def answer(kind: str, name: str, payload: Any) -> Any:
        if name == names.LOAD_PLAN:
            return plan(concurrency)
        if name == names.RESOLVE_MEMBERS:
            return {"vms": [{"id": f"/x/virtualMachines/r0-{i}"} for i in range(vms)]}
        if name == names.GET_CONFIGURATION:
            return config(payload)
        if name == names.LEDGER_READ_QUARANTINE:
            return {"entries": [], "exclusions": {}}
        return base(kind, name, payload)
    return answer


def planner_notes(ctx: FakeContext) -> list[str]:
    return [n["text"] for n in ctx.statuses[-1]["notes"] if n["text"].startswith("planner: ")]


def first_row_planner(ctx: FakeContext) -> Any:
    return next(p["planner"] for _, n, p in ctx.calls if n == names.LEDGER_ROLLOUT and p.get("planner"))


def test_a_ring0_that_misses_the_next_rings_t40_is_warned_in_the_status_at_the_start() -> None:
    ctx = FakeContext({}, answers(1, 20, lambda p: {"window": WINDOW}), {})
    ctx.run()
    [resolve] = [p for _, n, p in ctx.calls if n == names.RESOLVE_MEMBERS][:1]
    assert resolve["ring"] == "ring0" and resolve["countOnly"] is True
    notes = planner_notes(ctx)
    estimate = first_row_planner(ctx)
    assert estimate["fits"] is False and estimate["vms"] == 20 and estimate["landBy"] == "2026-11-16T11:15:00Z"
    assert estimate["minConcurrencyToFit"] > 1
    assert notes and notes[0].startswith(
        f"planner: ring0 misses ring1's run at 2026-11-16T12:00:00Z: maxConcurrency >= "
        f"{estimate['minConcurrencyToFit']} would fit; it needs {estimate['needs']} (20 waves)"), notes
    assert "after T-40 less the margin (2026-11-16T11:15:00Z)" in notes[0]
    assert "cannot finish before ring1's run" in estimate["warnings"][0]  # the planner's full text
    # said at the start: before Ring 0 was started
    order = [n for _, n, _ in ctx.calls]
    assert order.index(names.GET_CONFIGURATION) < order.index(names.RING_DIRECT)


def test_a_ring0_that_fits_says_only_how_long_the_approval_may_take() -> None:
    ctx = FakeContext({}, answers(20, 20, lambda p: {"window": WINDOW}), {})
    ctx.run()
    notes = planner_notes(ctx)
    assert len(notes) == 1 and "ring1 needs an approval: it must be given within" in notes[0], notes
    assert first_row_planner(ctx)["fits"] is True


def test_an_unreadable_schedule_is_a_note_never_a_failure() -> None:
    def down(payload: Any) -> Any:
        raise RuntimeError("Maintenance RP unavailable")

    ctx = FakeContext({}, answers(1, 20, down), {})
    out = ctx.run()
    assert out["state"] != "failed" or "planner" not in out["outcome"]
    assert any("whether ring0 finishes before ring1's T-40 is unknown (Maintenance RP unavailable)" in n
               for n in planner_notes(ctx)), planner_notes(ctx)
    assert [p for _, n, p in ctx.calls if n == names.RING_DIRECT]  # Ring 0 still ran
