"""Notifications on the local platform: the real ``notify`` activity, run by the local Functions
host inside an orchestration, publishes CloudEvents through azure-eventgrid to the platform's
Event Grid topic emulator (TLS with its own CA, the simulator's bearer token).

Delivery is at least once: the probe orchestration calls ``notify`` twice with the same input
(what a retried or replayed activity does), the topic records both, and a receiver that dedupes
on ``(source, id)`` sees one event.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SAMPLE_SCENARIO

pytestmark = pytest.mark.functional

ROLLOUT = "ro-notify-1"

PROBE_APP = '''
import azure.durable_functions as df
import azure.functions as func

from activities import notify
from patchrings import deps

deps.load()  # a composition root starts from this host's settings (as function_app.py does)

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context")
def notify_probe(context: df.DurableOrchestrationContext):
    rollout = context.get_input()["rolloutId"]
    approval = {
        "kind": "approval-waiting", "id": str(context.new_uuid()), "rolloutId": rollout, "ring": "ring1",
        "severity": "warning", "message": "ring1 waits for an approval",
        "time": context.current_utc_datetime.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {"deadline": "2026-11-17T06:00:00Z", "manifestHash": "0545a0c241d8f8c9",
                 "approvePath": f"/api/rollouts/{rollout}/rings/ring1/approve",
                 "pagePath": f"/api/ui/rollouts/{rollout}"},
    }
    first = yield context.call_activity("notify", approval)
    again = yield context.call_activity("notify", approval)  # a retry of the same input
    old = yield context.call_activity("notify", {"kind": "guard-cancel-failed", "severity": "error",
                                                 "message": "COULD NOT CANCEL", "correlationId": "run-1"})
    return {"first": first, "again": again, "old": old, "approval": approval}


app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(notify.bp)
app.register_functions(bp)
'''


@pytest.fixture
def probe_platform(tmp_path: Path) -> Iterator[Any]:
    from emulator.platform import LocalPlatform

    app = tmp_path / "app"
    app.mkdir()
    (app / "function_app.py").write_text(PROBE_APP)
    shutil.copy(REPO / "host.json", app / "host.json")
    platform = LocalPlatform(SAMPLE_SCENARIO, app_dir=app, clock="skip", start="2026-11-16T06:00:00Z",
                             state_dir=tmp_path / "platform", use_azurite=False,
                             settings={"PATCHRINGS_LEDGER_CONNECTION": "UseDevelopmentStorage=true"})
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


def test_notify_through_the_host_lands_in_the_topic_once_per_receiver(probe_platform: Any) -> None:
    from azure.durable_functions import DurableOrchestrationClient

    p = probe_platform
    assert p.settings["PATCHRINGS_NOTIFY_TOPIC_ENDPOINT"] == f"{p.eventgrid_url}/api/events"
    client = DurableOrchestrationClient(p.client_binding_json())
    instance = p.loop.call(client.start_new("notify_probe", None, {"rolloutId": ROLLOUT}))

    def done() -> Any:
        status = p.loop.call(client.get_status(instance))
        return status if status.runtime_status and status.runtime_status.value in (
            "Completed", "Failed", "Terminated") else None

    status = p.wait_for(done, timeout=120)
    assert status.runtime_status.value == "Completed", status.output
    out = status.output
    approval = out["approval"]
    for result in (out["first"], out["again"]):
        assert result["published"] is True and result["eventId"] == approval["id"], result
        assert result["eventType"] == "PatchRings.ApprovalWaiting"
    assert out["old"]["published"] is True and out["old"]["eventType"] == "PatchRings.CancelFailed"

    events = p.published_events()
    assert [e["type"] for e in events] == ["PatchRings.ApprovalWaiting"] * 2 + ["PatchRings.CancelFailed"]
    first = events[0]
    assert first["id"] == approval["id"] == events[1]["id"]  # the retry carries the same id
    assert first["source"] == f"/patchrings/rollouts/{ROLLOUT}" and first["subject"] == "rings/ring1"
    assert first["specversion"] == "1.0" and first["time"].startswith("2026-11-16T06:")  # platform time
    data = first["data"]
    assert data["deadline"] == "2026-11-17T06:00:00Z" and data["manifestHash"] == "0545a0c241d8f8c9"
    assert data["pageUrl"] == f"{p.base_url}/api/ui/rollouts/{ROLLOUT}"
    assert data["approveUrl"] == f"{p.base_url}/api/rollouts/{ROLLOUT}/rings/ring1/approve"
    assert events[2]["source"] == "/patchrings" and events[2]["data"]["correlationId"] == "run-1"

    deduped = p.published_events(dedupe=True)
    assert [e["id"] for e in deduped] == [approval["id"], events[2]["id"]]
    assert [e["id"] for e in p.published_events(type="PatchRings.CancelFailed")] == [events[2]["id"]]




def test_a_rollout_that_halts_on_a_failed_gate_publishes_gate_failed_and_rollout_halted(held: Any) -> None:
    """The real rollout on the full platform: Ring 0's gate fails, the rollout halts, and the
    topic has PatchRings.GateFailed and PatchRings.RolloutHalted for it (engineer H1's call sites)."""
    from tests.functional import platform_scenario as sc
    from tests.functional.platform_driver import driver

    p = held(sc.scenario(faults=[{"type": "patchFails", "patch": sc.KB_OLD, "vms": ["r0-web-1"]}]))
    d = driver(p)
    rid = d.start(who="dave@contoso.com")
    final = d.until_done(rid)
    assert final.output["state"] == "halted", final.output
    source = f"/patchrings/rollouts/{rid}"
    events = [e for e in p.published_events(dedupe=True) if e["source"] == source]
    types = [e["type"] for e in events]
    assert "PatchRings.GateFailed" in types and types[-1] == "PatchRings.RolloutHalted", types
    gate = next(e for e in events if e["type"] == "PatchRings.GateFailed")
    assert gate["subject"] == "rings/ring0" and gate["data"]["severity"] == "error"
    assert 1 <= len(gate["data"]["reasons"]) <= 10
    halted = events[-1]
    assert halted["data"]["rolloutId"] == rid and halted["data"]["severity"] == "error"
    assert halted["data"]["pageUrl"] == f"{p.base_url}/api/ui/rollouts/{rid}"
    assert halted["time"].startswith("2026-11-")  # the orchestration's (simulated) time
