"""The activity bindings: registered under the contract's names, and thin wrappers over patchrings.deps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from activities import compute, ledger, maintenance, members, notify, plan, tags
from patchrings import deps
from patchrings.settings import Settings
from tests.unit.app.fakes import FakeLedger

pytestmark = pytest.mark.unit

CONTRACT = {
    "load_plan", "resolve_ring_members", "start_install", "poll_install", "start_assess", "poll_assess",
    "check_vm_health", "retag_vms", "set_ring_assignment", "pin_manifest", "get_configuration", "cancel_run",
    "collect_run_results", "ledger_record_rollout", "ledger_record_ring_run", "ledger_record_vm_results",
    "ledger_record_approval", "ledger_record_event", "ledger_read_gate",
    # issue 13 additions: decisions checked against the ledger (13.13), loud cancel failures (13.1)
    "ledger_check_decision", "notify",
    # issue 11: a failed gate's patches quarantined for the next cycle
    "ledger_record_quarantine", "ledger_read_quarantine",
    # issue 11: a ring's members live in the ledger (planned waves read back slice by slice)
    "plan_ring_waves", "read_wave_members", "ring_coverage",
}


@pytest.fixture
def fake_ledger() -> Iterator[FakeLedger]:
    ledger = FakeLedger()
    deps.override(settings=Settings(ledger_account_url="https://x"), clients=object(), ledger=ledger)
    yield ledger
    deps.reset()


def functions(module: Any) -> list[Any]:
    """The module's functions as the worker indexes them (a throwaway DFApp)."""
    import azure.durable_functions as df

    app = df.DFApp()
    app.register_functions(module.bp)
    return list(app.get_functions())


def test_every_contract_activity_is_registered_once() -> None:
    names: list[str] = []
    for module in (compute, ledger, maintenance, members, notify, plan, tags):
        for fn in functions(module):
            bindings = [b for b in fn.get_bindings() if b.type == "activityTrigger"]
            assert len(bindings) == 1, fn.get_function_name()
            names.append(fn.get_function_name())
    assert sorted(names) == sorted(CONTRACT)


def test_member_resolution_has_its_own_blueprint() -> None:
    """``resolve_ring_members`` lives in activities/members.py (issue 10), registered by
    function_app.py as ``members.bp`` and nowhere else (the worker refuses a name twice)."""
    assert sorted(fn.get_function_name() for fn in functions(members)) == [
        "plan_ring_waves", "read_wave_members", "resolve_ring_members", "ring_coverage"]
    assert "resolve_ring_members" not in [fn.get_function_name() for fn in functions(compute)]


def _user_function(module: Any, name: str) -> Any:
    for fn in functions(module):
        if fn.get_function_name() == name:
            return fn.get_user_function()
    raise KeyError(name)


def test_wrappers_use_the_process_deps(fake_ledger: FakeLedger) -> None:
    record = _user_function(ledger, "ledger_record_rollout")
    assert record({"rolloutId": "r1", "state": "running"}) == {"written": True}
    assert fake_ledger.rollout("r1") == {"rolloutId": "r1", "state": "running"}
    load = _user_function(plan, "load_plan")
    loaded = load({})
    assert loaded["hash"] and loaded["rings"]
