"""ErrorBudget.record is O(1) (issue 11) and behaves exactly like the old list-scanning version."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from patchrings.domain.rate import ErrorBudget

pytestmark = pytest.mark.unit


@dataclass
class OldErrorBudget:
    """The implementation before issue 11 (a scan of both lists on every record), as the oracle."""

    max_errors: int
    failed: list[str] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)

    def record(self, vm_id: str, ok: bool) -> None:
        key = vm_id.lower()
        if any(v.lower() == key for v in self.failed + self.succeeded):
            return
        (self.succeeded if ok else self.failed).append(vm_id)

    def to_dict(self) -> dict[str, Any]:
        return {"maxErrors": self.max_errors, "failed": list(self.failed), "succeeded": list(self.succeeded),
                "exceeded": len(self.failed) > self.max_errors}


@pytest.mark.parametrize("seed", range(25))
def test_same_results_as_the_old_budget_on_random_sequences(seed: int) -> None:
    rnd = random.Random(seed)
    max_errors = rnd.randint(0, 5)
    ids = [f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/VM{i}" for i in range(30)]
    new, old = ErrorBudget(max_errors), OldErrorBudget(max_errors)
    for step in range(rnd.randint(1, 120)):
        vm = rnd.choice(ids)
        vm = vm.lower() if rnd.random() < 0.3 else vm  # the same VM spelled differently counts once
        ok = rnd.random() < 0.7
        new.record(vm, ok)
        old.record(vm, ok)
        assert new.to_dict() == old.to_dict(), step
        assert new.errors == len(old.failed) and new.remaining == max(0, max_errors - len(old.failed))
        assert new.may_start_more() == (len(old.failed) <= max_errors)
        if rnd.random() < 0.1:  # a replay rebuilds the budget from its serialised form mid-way
            new = ErrorBudget.from_dict(new.to_dict())
            assert new.to_dict() == old.to_dict()


class CountingList(list[str]):
    """A list that counts whole-list work: iteration, concatenation, membership scans."""

    scans = 0

    def __iter__(self) -> Any:
        CountingList.scans += 1
        return super().__iter__()

    def __add__(self, other: Any) -> Any:  # type: ignore[override]
        CountingList.scans += 1
        return super().__add__(other)

    def __contains__(self, item: object) -> bool:
        CountingList.scans += 1
        return super().__contains__(item)


def test_record_never_scans_the_lists() -> None:
    budget = ErrorBudget(3, CountingList(), CountingList())
    CountingList.scans = 0
    for i in range(2_000):
        budget.record(f"vm{i % 1_500}", ok=i % 97 != 0)  # 500 repeats, a failure now and then
    assert CountingList.scans == 0
    assert len(budget.failed) + len(budget.succeeded) == 1_500
    first: dict[int, bool] = {}
    for i in range(2_000):
        first.setdefault(i % 1_500, i % 97 != 0)  # a VM's first result is the one that counts
    assert budget.errors == sum(1 for ok in first.values() if not ok)
    # the control: the old budget scans (concatenates) the lists on every record
    old = OldErrorBudget(3, CountingList(), CountingList())
    CountingList.scans = 0
    old.record("vm1", ok=True)
    assert CountingList.scans > 0


def test_serialised_form_is_unchanged_and_round_trips() -> None:
    budget = ErrorBudget(1)
    budget.record("A", ok=True)
    budget.record("b", ok=False)
    budget.record("a", ok=False)  # already recorded as a success
    doc = budget.to_dict()
    assert doc == {"maxErrors": 1, "failed": ["b"], "succeeded": ["A"], "exceeded": False}
    again = ErrorBudget.from_dict(doc)
    assert again == budget
    again.record("B", ok=False)  # known from the serialised lists: still counted once
    assert again.errors == 1
    again.record("c", ok=False)
    assert again.exceeded and again.to_dict()["failed"] == ["b", "c"]
