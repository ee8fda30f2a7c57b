"""The HTTP API's rollout view and halt conflicts (issue 9), with a fake durable client and ledger.

The running ring's counts come from its child orchestrations' own custom status, read by their
deterministic instance ids; the ledger's copy of the state document is never shown; links are
absolute; a halt of an ended or already halted rollout is a 409 naming the state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest

from patchrings import deps
from patchrings.domain.plan import load_plan_file
from patchrings.settings import Settings
from tests.unit.app.fakes import FakeLedger
from triggers import http_api

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
HOST = "https://patchrings.example.net"
VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines"
RID = "ro-abc"


class Runtime:
    def __init__(self, value: str) -> None:
        self.value = value


class FakeClient:
    def __init__(self, statuses: dict[str, Any]) -> None:
        self.statuses = statuses
        self.raised: list[tuple[str, str, Any]] = []

    async def get_status(self, instance_id: str) -> Any:
        return self.statuses.get(instance_id) or SimpleNamespace(runtime_status=None, custom_status=None)

    async def raise_event(self, instance_id: str, name: str, payload: Any) -> None:
        self.raised.append((instance_id, name, payload))


def status(name: str, runtime: str, doc: dict[str, Any]) -> Any:
    return SimpleNamespace(name=name, instance_id=RID, runtime_status=Runtime(runtime), custom_status=doc,
                           created_time="2026-11-16T06:00:00Z", last_updated_time="2026-11-16T06:40:00Z", output=None)


@pytest.fixture
def ledger() -> Iterator[FakeLedger]:
    fake = FakeLedger()
    deps.reset()
    deps.override(plan=load_plan_file(REPO / "demo" / "plan.json"),
                  settings=Settings(approver_header_fallback=True), ledger=fake)
    yield fake
    deps.reset()


def call(function: Any, req: func.HttpRequest, client: Any) -> tuple[int, Any]:
    user = function._function.get_user_function()
    handler = getattr(user, "__wrapped__", user)
    result = asyncio.run(handler(req, client))
    return result.status_code, json.loads(result.get_body())


def request(path: str, method: str = "GET", route: dict[str, str] | None = None, body: Any = None) -> func.HttpRequest:
    return func.HttpRequest(method=method, url=f"{HOST}{path}?code=k",
                            headers={"X-PatchRings-Approver": "bob@contoso.com"}, params={},
                            route_params=route or {"id": RID}, body=json.dumps(body or {}).encode())


def test_a_running_ring_shows_wave_n_of_m_and_counts_read_from_its_children(ledger: FakeLedger) -> None:
    doc = {"state": "running", "currentRing": "ring0", "updatedAt": "2026-11-16T06:40:00Z",
           "rings": [{"name": "ring0", "phase": "installing", "instance": f"{RID}:ring0", "counts": {}},
                     {"name": "ring1", "phase": "pending", "counts": {}}],
           "waitingFor": None, "manifest": None, "approvals": []}
    client = FakeClient({
        RID: status("rollout_orchestrator", "Running", doc),
        f"{RID}:ring0": status("ring_direct_orchestrator", "Running", {
            "step": "installing", "wave": 2, "waves": 3, "vms": 7, "finished": 3, "skipped": 0,
            "waveInstance": f"{RID}:ring0:w1"}),
        f"{RID}:ring0:w1": status("wave_orchestrator", "Running", {
            "step": "polling", "vms": 3, "installing": 2, "states": {"done": 1}, "nextPollAt": "2026-11-16T06:45:00Z"}),
    })
    ledger.record_rollout(RID, {"state": "running", "status": {"state": "running", "rings": [{"phase": "pending"}]}})
    ledger.record_vm_results(RID, "ring0", f"{RID}:ring0", [
        {"vm": f"{VM}/web-{i}", "name": f"web-{i}", "verdict": {"outcome": "pass", "reasons": []}} for i in range(3)])
    code, view = call(http_api.rollout_status, request(f"/api/rollouts/{RID}"), client)
    assert code == 200
    ring0, ring1 = view["rings"]
    assert ring0["phaseText"] == "installing wave 2 of 3: polling"
    assert ring0["counts"] == {"vms": 7, "passed": 3, "failed": 0, "inconclusive": 0, "installing": 2,
                               "verifying": 1, "inFlight": 3, "skipped": 0, "finished": 3, "notStarted": 1}
    assert (ring0["vms"][0]["name"], ring0["vms"][0]["id"]) == ("web-0", f"{VM}/web-0")
    assert ring1["counts"]["vms"] is None and ring1["phaseText"] == "not started"
    assert "status" not in view["ledger"]["rollout"]  # the stale copy is not shown
    assert view["links"] == {"self": f"{HOST}/api/rollouts/{RID}", "page": f"{HOST}/api/ui/rollouts/{RID}"}


def test_a_wave_run_as_several_slices_counts_every_slice(ledger: FakeLedger) -> None:
    """A wave larger than ring_direct.WAVE_SLICE runs as instances ``…:w{n}``, ``…:w{n}.1``, …
    side by side: the ring's counts add every slice up, not just the first one's."""
    doc = {"state": "running", "currentRing": "ring0", "updatedAt": "2026-11-16T06:40:00Z",
           "rings": [{"name": "ring0", "phase": "installing", "instance": f"{RID}:ring0", "counts": {}},
                     {"name": "ring1", "phase": "pending", "counts": {}}],
           "waitingFor": None, "manifest": None, "approvals": []}
    wave = f"{RID}:ring0:w0"
    client = FakeClient({
        RID: status("rollout_orchestrator", "Running", doc),
        f"{RID}:ring0": status("ring_direct_orchestrator", "Running", {
            "step": "installing", "wave": 1, "waves": 1, "vms": 250, "finished": 0, "skipped": 0,
            "inFlight": 250, "waveInstance": wave}),
        wave: status("wave_orchestrator", "Running", {"step": "polling", "vms": 100, "installing": 90,
                                                      "states": {"done": 10}, "nextPollAt": "2026-11-16T06:45:00Z"}),
        f"{wave}.1": status("wave_orchestrator", "Running", {"step": "polling", "vms": 100, "installing": 100,
                                                             "states": {}, "nextPollAt": "2026-11-16T06:44:00Z"}),
        f"{wave}.2": status("wave_orchestrator", "Running", {"step": "polling", "vms": 50, "installing": 45,
                                                             "states": {"not-needed": 5}}),
    })
    ledger.record_rollout(RID, {"state": "running"})
    code, view = call(http_api.rollout_status, request(f"/api/rollouts/{RID}"), client)
    assert code == 200
    counts = view["rings"][0]["counts"]
    assert (counts["inFlight"], counts["installing"], counts["verifying"]) == (250, 235, 15), counts


def test_waiting_for_approval_links_are_absolute(ledger: FakeLedger) -> None:
    waiting = {"what": "approval", "until": "2026-11-17T06:00:00Z", "ring": "ring1",
               "approveUrl": f"/api/rollouts/{RID}/rings/ring1/approve",
               "rejectUrl": f"/api/rollouts/{RID}/rings/ring1/reject"}
    doc = {"state": "waiting", "rings": [], "waitingFor": waiting}
    client = FakeClient({RID: status("rollout_orchestrator", "Running", doc)})
    _, view = call(http_api.rollout_status, request(f"/api/rollouts/{RID}"), client)
    assert view["waitingFor"]["approveUrl"] == f"{HOST}/api/rollouts/{RID}/rings/ring1/approve"
    assert view["status"]["waitingFor"]["rejectUrl"] == f"{HOST}/api/rollouts/{RID}/rings/ring1/reject"
    _, listed = call(http_api.rollouts, request("/api/rollouts", route={}), SimpleNamespace(
        get_status_all=lambda: _async([status("rollout_orchestrator", "Running", doc)])))
    assert listed["rollouts"][0]["waitingFor"]["approveUrl"].startswith(HOST)


async def _async(value: Any) -> Any:
    return value


@pytest.mark.parametrize(("runtime", "state"), [("Completed", "completed"), ("Running", "halted")])
def test_halting_an_ended_or_halted_rollout_is_a_409_naming_the_state(ledger: FakeLedger, runtime: str,
                                                                        state: str) -> None:
    client = FakeClient({RID: status("rollout_orchestrator", runtime, {"state": state, "rings": []})})
    code, answer = call(http_api.halt_rollout, request(f"/api/rollouts/{RID}/halt", "POST"), client)
    assert code == 409 and answer["error"]["code"] == "RolloutConflict"
    assert answer["error"]["details"]["state"] == state and state in answer["error"]["message"]
    assert client.raised == []
    [refused] = ledger.approvals(RID)
    assert refused["outcome"] == "refused" and "at" not in refused  # no HTTP-side time stamp


class Starter(FakeClient):
    """A durable client that records what is started (nothing is running)."""

    def __init__(self) -> None:
        super().__init__({})
        self.started: list[tuple[str, str, Any]] = []

    async def start_new(self, name: str, instance_id: str, payload: Any) -> None:
        self.started.append((name, instance_id, payload))

    async def get_status_by(self, runtime_status: Any) -> list[Any]:
        return []


class EventLedger(FakeLedger):
    def events(self, configuration_id: str) -> list[dict[str, Any]]:
        return [row for key, row in self.event_rows.items() if key[0] == configuration_id.lower()]


def test_starts_carry_the_typed_inputs_json(ledger: FakeLedger) -> None:
    """POST /api/rollouts and Ring 0's pre-maintenance event start the rollout (and the event its
    guard) with patchrings.boundary.rollout's JSON: the dataclass through the codec (null fields
    absent), the event as ``MaintenanceEvent.to_dict()``."""
    from orchestrators import names
    from patchrings.domain.events import instance_id_for, parse_maintenance_event
    from patchrings.domain.timeutil import format_duration
    from triggers import eventgrid

    client = Starter()
    code, answer = call(http_api.rollouts, request("/api/rollouts", "POST", route={}, body={"dryRun": True}), client)
    assert code == 202
    assert client.started == [(names.ROLLOUT, answer["id"], {"initiator": "bob@contoso.com", "dryRun": True,
                                                             "trigger": {"kind": "manual"}})]

    deps.override(ledger=EventLedger())
    plan = deps.plan()
    mc = plan.rings[0].configuration_id
    assert mc
    raw = {"id": "e-1", "topic": mc, "subject": mc, "eventType": "Microsoft.Maintenance.PreMaintenanceEvent",
           "eventTime": "2026-11-16T05:30:00Z", "dataVersion": "1.0",
           "data": {"correlationId": f"{mc}/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
                    "maintenanceConfigurationId": mc, "startDateTime": "2026-11-16T06:00:00Z",
                    "endDateTime": "2026-11-16T09:55:00Z", "status": "Pending",
                    "resourceSubscriptionIds": ["00000000-0000-0000-0000-000000000001"]}}
    client = Starter()
    routed = asyncio.run(eventgrid.handle_event(raw, client))
    assert routed["action"] == "routed", routed
    event = parse_maintenance_event(raw)
    assert client.started == [
        (names.ROLLOUT, instance_id_for(event), {"initiator": "system:maintenance-event",
                                                 "reason": "pre-maintenance event of ring0",
                                                 "trigger": {"kind": "event", **event.to_dict()}}),
        (names.GUARD, eventgrid.guard_id_for(event), {"event": event.to_dict(), "ring": "ring0",
                                                      "cancelMargin": format_duration(plan.promotion.cancel_margin)}),
    ]
