"""The compute activities under every fault the ARM simulator injects (issue 13 item 6).

Faults: 429 with Retry-After, 500, 503, a dropped connection, 403 (``slowAnswer`` is not in the
simulator yet). Targets: ``start_install`` (its instance-view read and its POST),
``poll_install`` (the async-operation status), ``check_vm_health``, ``resolve_ring_members`` and
``collect_run_results``. After each: no double install, and the right refused / inconclusive
state (never a silent pass, never a silently shorter member list).
"""

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
from tests.ring_inputs import named_ring

pytestmark = pytest.mark.functional

PARAMS = {"rebootSetting": "IfRequired", "linuxParameters": {"classificationsToInclude": ["Security"]},
          "windowsParameters": {"classificationsToInclude": ["Security"]}}


def faulted(tmp_path: Path, fault: dict[str, Any] | list[dict[str, Any]]) -> SimHandle:
    scenario = copy.deepcopy(SCENARIO)
    if "actions" in fault:  # a role map that lacks one action: every such request gets 403
        scenario["auth"] = {"identities": [{"name": "patchrings-app", "token": "fault-token", "default": True,
                                            "actions": list(fault["actions"])}]}  # type: ignore[call-overload]
        scenario["faults"] = []
    else:
        scenario["faults"] = fault if isinstance(fault, list) else [fault]
    return SimHandle(tmp_path / f"arm-{uuid.uuid4().hex[:6]}", scenario)


@pytest.fixture
def make(tmp_path: Path, azurite: Any) -> Iterator[Any]:
    handles: list[tuple[SimHandle, AzureClients]] = []

    def build(fault: dict[str, Any] | list[dict[str, Any]]) -> tuple[SimHandle, AzureClients, Ledger]:
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
    # of this run shows up in its instance view. Time is held from here: between two calls of
    # this test the simulator is idle, and a skip clock would otherwise jump to the install's
    # end (a slow, loaded machine made this 'already-done' in a full run).
    vm = payload("run-applied")["vm"]
    rg, name = "rg-web", vm["name"]
    with arm.clock.hold():
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



# ------------------------------------------------------------------ the fault matrix (issue 13 item 6)
def fault(kind: str, *, method: str = "GET", path: str, count: int | None = 1) -> dict[str, Any]:
    """One request fault: ``429`` (Retry-After 1), ``500``, ``503`` or ``drop``."""
    doc: dict[str, Any] = {"method": method, "pathContains": path}
    if count is not None:
        doc["count"] = count
    if kind == "drop":
        return {**doc, "type": "dropConnection"}
    doc.update(type="httpError", status=int(kind))
    if kind == "429":
        doc["retryAfter"] = 1
    return doc


class Forbidden(dict):  # type: ignore[type-arg]
    """A 403: the simulator's role map without one RBAC action (its real AuthorizationFailed path;
    ``httpError`` faults only inject 429/5xx)."""

    def __init__(self, action: str) -> None:
        from emulator.arm.routes import ROUTES

        super().__init__(action=action, actions=sorted({r.action for r in ROUTES} - {action}))


def forbidden(action: str) -> Forbidden:
    return Forbidden(action)


TRANSIENT = ["429", "500", "503", "drop"]


def installs_on(arm: SimHandle, name: str) -> list[Any]:
    return [p for p in posts(arm) if f"/virtualMachines/{name}/" in p.path]


def accepted(arm: SimHandle) -> int:
    return sum(1 for p in posts(arm) if p.status == 202)


@pytest.mark.parametrize("kind", ["503"])
def test_start_post_5xx_is_uncertain_and_sent_once(make: Any, kind: str) -> None:
    arm, clients, ledger = make(fault(kind, method="POST", path="installPatches"))
    out = start_install_core(clients, ledger, timed("run-p", START))
    assert out["state"] == "already-started" and out["uncertain"] is True and out["error"]["retryable"] is True
    assert start_install_core(clients, ledger, timed("run-p", START))["state"] == "already-started"
    assert len(posts(arm)) == 1


def test_start_post_throttled_throughout_is_refused_retryable_and_nothing_installs(make: Any) -> None:
    arm, clients, ledger = make(fault("429", method="POST", path="installPatches", count=None))
    out = start_install_core(clients, ledger, timed("run-t", START))
    assert out["state"] == "refused" and out["error"]["retryable"] is True and out["error"]["status"] == 429
    assert ledger.install("run-t", vm_id("web-02")) is None  # the claim was freed: nothing was sent
    assert [p.status for p in posts(arm)] == [429, 429, 429] and accepted(arm) == 0


def test_start_post_forbidden_is_refused_for_good(make: Any) -> None:
    arm, clients, ledger = make(forbidden("Microsoft.Compute/virtualMachines/installPatches/action"))
    out = start_install_core(clients, ledger, timed("run-f", START))
    assert out["state"] == "refused" and out["error"]["retryable"] is False
    assert out["error"]["code"] == "AuthorizationFailed"
    assert ledger.install("run-f", vm_id("web-02")) is None
    assert [p.status for p in posts(arm)] == [403] and accepted(arm) == 0


@pytest.mark.parametrize("kind", TRANSIENT)
def test_start_survives_a_transient_instance_view_fault_and_posts_once(make: Any, kind: str) -> None:
    arm, clients, ledger = make(fault(kind, path="instanceView"))
    out = start_install_core(clients, ledger, timed("run-iv", START))
    assert out["state"] == "started" and out["token"]
    assert len(posts(arm)) == 1 and accepted(arm) == 1


def test_start_with_a_forbidden_instance_view_sends_nothing(make: Any) -> None:
    # the pre-check reads the VM with its instance view (GET $expand=instanceView: issue 11)
    arm, clients, ledger = make(forbidden("Microsoft.Compute/virtualMachines/read"))
    out = start_install_core(clients, ledger, timed("run-iv403", START))
    assert out["state"] == "refused" and out["error"]["code"] == "InstanceViewUnavailable"
    assert posts(arm) == [] and ledger.install("run-iv403", vm_id("web-02")) is None


@pytest.mark.parametrize("kind", [*TRANSIENT, "403", "429-throughout"])
def test_poll_faults_never_finish_an_install_or_post_again(make: Any, kind: str) -> None:
    persistent = kind in ("403", "429-throughout")
    status = kind.split("-", maxsplit=1)[0]
    arm, clients, ledger = make(forbidden("Microsoft.Compute/locations/operations/read") if kind == "403"
                                else fault(status, path="/operation", count=None if persistent else 1))
    with arm.clock.hold():
        started = start_install_core(clients, ledger, timed("run-poll", START))
        out = poll_install_core(clients, ledger, {"runId": "run-poll", "vm": payload("run-poll")["vm"],
                                                  "token": started["token"], "now": START})
    assert out["done"] is False and out.get("result") is None
    if persistent:
        assert out["error"]["status"] == int(status)
        assert out["error"]["retryable"] is (kind != "403")
    else:
        assert out["error"] is None  # the SDK's read retries absorbed it
    assert len(posts(arm)) == 1


@pytest.mark.parametrize("kind", TRANSIENT)
def test_health_survives_a_transient_fault(make: Any, kind: str) -> None:
    from activities.compute import check_vm_health_core

    _, clients, _ = make(fault(kind, path="instanceView"))
    sample = check_vm_health_core(clients, {"vm": payload("x")["vm"], "probes": []})
    assert sample["readError"] is None and sample["powerState"] == "running"


@pytest.mark.parametrize("kind", ["403", "429"])
def test_health_that_cannot_be_read_is_unknown_never_healthy(make: Any, kind: str) -> None:
    from activities.compute import check_vm_health_core
    from orchestrators.verdicts import sample_state

    _, clients, _ = make(forbidden("Microsoft.Compute/virtualMachines/instanceView/read") if kind == "403"
                         else fault(kind, path="instanceView", count=None))
    sample = check_vm_health_core(clients, {"vm": payload("x")["vm"], "probes": []})
    assert sample["readError"] and not sample.get("deleted")
    assert sample_state({}, sample)[0] == "unknown"


def test_health_of_a_vm_that_does_not_exist_marks_it_deleted(make: Any) -> None:
    from activities.compute import check_vm_health_core

    _, clients, _ = make([])
    ghost = {"id": vm_id("gone-01"), "name": "gone-01", "os": "Linux"}
    sample = check_vm_health_core(clients, {"vm": ghost, "probes": []})
    assert sample["deleted"] is True and sample["readError"]


RING0_NAMES = ["db-01", "web-01", "web-02"]
RING1_NAMES = ["app-01", "app-02"]


@pytest.mark.parametrize("kind", TRANSIENT)
def test_members_survive_a_transient_fault(make: Any, kind: str) -> None:
    from activities.compute import resolve_ring_members_core
    from tests.functional.activities.conftest import PLAN

    arm, clients, _ = make(fault(kind, path="/providers/Microsoft.ResourceGraph/resources"))
    vms = resolve_ring_members_core(clients, {**named_ring(PLAN, "ring0")})["vms"]
    assert [v["name"] for v in vms] == RING0_NAMES
    assert len(arm.sim.recorder.find(operation="arg.resources")) >= 1  # members come from Resource Graph


# Members come from Resource Graph (issue 11): a refused query fails the activity. (Azure's Resource
# Graph leaves out the rows of resources the identity cannot read instead of refusing; the fleet
# reader role grants the VM and Arc machine reads on each subscription for that reason.)
@pytest.mark.parametrize("action", ["Microsoft.ResourceGraph/resources/read",
                                    "Microsoft.Maintenance/configurationAssignments/read"])
def test_members_that_cannot_be_read_fail_the_activity_instead_of_shrinking_the_ring(make: Any, action: str) -> None:
    from azure.core.exceptions import HttpResponseError

    from activities.compute import resolve_ring_members_core
    from tests.functional.activities.conftest import PLAN

    _, clients, _ = make(forbidden(action))
    with pytest.raises(HttpResponseError):
        resolve_ring_members_core(clients, {**named_ring(PLAN, "ring1")})


@pytest.mark.parametrize("kind", ["403", "429"])
def test_results_that_cannot_be_read_are_unreadable_and_inconclusive(make: Any, kind: str) -> None:
    from activities.maintenance import collect_run_results_core
    from orchestrators.verdicts import gate_for, verdicts_for
    from tests.functional.activities.conftest import MC_RING1, PLAN

    _, clients, _ = make(forbidden("Microsoft.Compute/virtualMachines/instanceView/read") if kind == "403"
                         else fault(kind, path="instanceView", count=None))
    vm = payload("x")["vm"]
    out = collect_run_results_core(clients, {"correlationId": f"{MC_RING1}/providers/Microsoft.Maintenance"
                                                              "/applyUpdates/20261117020000",
                                             "vms": [vm], "since": START})["results"]
    assert out[0]["state"] == "unreadable"
    verdicts = verdicts_for(PLAN, "ring1", [vm], out, {})
    assert verdicts[0]["outcome"] == "inconclusive"
    assert gate_for(PLAN, "ring1", verdicts)["outcome"] == "inconclusive"


# ------------------------------------------------------------------ slow answers (a client timeout)
@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """ARM clients built after this give up reading an answer after 2 real seconds."""
    from patchrings import clients as clients_module

    monkeypatch.setitem(clients_module.ARM_LIMITS, "read_timeout", 2)


def slow(path: str, *, method: str = "POST", process_first: bool) -> dict[str, Any]:
    return {"type": "slowAnswer", "seconds": 4, "processFirst": process_first, "method": method,
            "pathContains": path, "count": 1}


@pytest.mark.usefixtures("short_timeout")
def test_a_post_applied_but_answered_too_late_is_never_sent_again(make: Any) -> None:
    arm, clients, ledger = make(slow("installPatches", process_first=True))
    out = start_install_core(clients, ledger, timed("run-slow", START))
    assert out["state"] == "already-started" and out["uncertain"] is True  # the answer never came
    polled = tokenless_poll(clients, ledger, "run-slow", LATER)
    assert polled["done"] is False and "resend" not in polled  # the VM shows this run's install
    assert start_install_core(clients, ledger, timed("run-slow", LATER, resend=True))["state"] == "already-started"
    # the simulator records the held request once its late answer is out
    recorded = arm.clock.advance_until(lambda: posts(arm) or None, timeout=30)
    assert len(recorded) == 1


@pytest.mark.usefixtures("short_timeout")
def test_a_post_the_client_gave_up_on_before_it_landed_is_sent_once_more(make: Any) -> None:
    arm, clients, ledger = make(slow("installPatches", process_first=False))
    out = start_install_core(clients, ledger, timed("run-gone", START))
    assert out["state"] == "already-started" and out["uncertain"] is True
    assert tokenless_poll(clients, ledger, "run-gone", LATER)["resend"] is True
    assert start_install_core(clients, ledger, timed("run-gone", LATER, resend=True))["state"] == "started"
    assert start_install_core(clients, ledger, timed("run-gone", LATER, resend=True))["state"] == "already-started"
    assert accepted(arm) == 1


@pytest.mark.usefixtures("short_timeout")
def test_a_slow_health_read_is_retried_by_the_sdk(make: Any) -> None:
    from activities.compute import check_vm_health_core

    _, clients, _ = make(slow("instanceView", method="GET", process_first=True))
    sample = check_vm_health_core(clients, {"vm": payload("x")["vm"], "probes": []})
    assert sample["readError"] is None and sample["powerState"] == "running"
