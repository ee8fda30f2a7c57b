"""HTTP routes and auth levels, Event Grid deliveries and handshakes, admin invocation, timers."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from emulator.host.testing import HostThread
from tests.contracts import EVENTGRID_EXAMPLES

sys.path.insert(0, str(Path(__file__).parent))
from host_http import http

pytestmark = pytest.mark.emulator

EXAMPLES = EVENTGRID_EXAMPLES
PRE_EVENT = {
    "id": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc/"
          "providers/microsoft.maintenance/applyupdates/20230509150000",
    "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc",
    "subject": "mc",
    "data": {"correlationId": "corr-1", "startDateTime": "2023-05-09T15:00:00Z"},
    "eventType": "Microsoft.Maintenance.PreMaintenanceEvent",
    "eventTime": "2023-05-09T14:25:00.3717473Z",
    "dataVersion": "1.0",
    "metadataVersion": "1",
}


@pytest.fixture(scope="module")
def trig() -> HostThread:
    from emulator.clock import make_clock

    clock = make_clock("skip", start="2025-01-01T00:00:00Z")
    with HostThread(Path(__file__).parent / "apps" / "triggers", clock, function_key="fkey") as ht:
        yield ht
    clock.close()


def test_function_level_route_needs_a_key(trig: HostThread) -> None:
    url = f"{trig.base_url}/api/hello/bob"
    assert http("GET", url)[0] == 401
    assert http("GET", url + "?code=wrong")[0] == 401
    status, _, body = http("GET", url + "?code=fkey")
    assert (status, body) == (200, b"hello bob")
    assert http("GET", url, headers={"x-functions-key": "fkey"})[2] == b"hello bob"
    assert http("GET", f"{trig.base_url}/api/admin-only?code=fkey")[0] == 401
    assert http("GET", f"{trig.base_url}/api/admin-only?code={trig.host.master_key}")[2] == b"admin ok"


def test_routes_methods_constraints_and_catch_all(trig: HostThread) -> None:
    status, headers, body = http("POST", f"{trig.base_url}/api/anon?q=1", body={"a": 1})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"method": "POST", "q": "1", "body": '{"a": 1}'}
    assert http("DELETE", f"{trig.base_url}/api/anon")[0] == 405
    assert http("GET", f"{trig.base_url}/api/items/42")[2] == b"item 42"
    assert http("GET", f"{trig.base_url}/api/ITEMS/special")[2] == b"special"
    assert http("GET", f"{trig.base_url}/api/items/abc")[0] == 404
    assert http("GET", f"{trig.base_url}/api/files/a/b/c.txt")[2] == b"a/b/c.txt"
    assert http("GET", f"{trig.base_url}/api/nothing")[0] == 204
    assert http("GET", f"{trig.base_url}/api/boom")[0] == 500
    assert http("GET", f"{trig.base_url}/api/nope")[0] == 404


def test_check_status_links_work(trig: HostThread) -> None:
    status, headers, body = http("POST", f"{trig.base_url}/api/start/record_event?code=fkey", body={"x": 1})
    assert status == 202
    links = json.loads(body)
    assert headers["Location"] == links["statusQueryGetUri"]
    assert links["statusQueryGetUri"].startswith(f"{trig.base_url}/runtime/webhooks/durabletask/instances/")
    trig.wait_for(links["id"])
    status, _, body = http("GET", links["statusQueryGetUri"])
    assert status == 200
    payload = json.loads(body)
    assert payload["runtimeStatus"] == "Completed" and payload["output"] == {"x": 1}
    assert payload["createdTime"].endswith("Z") and len(payload["createdTime"]) == 20
    terminate = links["terminatePostUri"].replace("{text}", "late")
    assert http("POST", terminate)[0] == 410  # already completed
    assert http("DELETE", links["purgeHistoryDeleteUri"])[0] == 200
    assert http("GET", links["statusQueryGetUri"])[0] == 404


def test_eventgrid_validation_handshake(trig: HostThread) -> None:
    validation = json.loads((EXAMPLES / "SubscriptionValidationEvent.eventgrid-schema.json").read_text())
    code = (validation[0] if isinstance(validation, list) else validation)["data"]["validationCode"]
    status, _, body = http("POST", trig.host.eventgrid_url("on_event"), body=validation,
                           headers={"aeg-event-type": "SubscriptionValidation"})
    assert status == 200 and json.loads(body) == {"validationResponse": code}


def test_cloudevents_options_handshake(trig: HostThread) -> None:
    status, headers, _ = http("OPTIONS", trig.host.eventgrid_url("on_event"),
                              headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert status == 200 and headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_eventgrid_batch_invokes_the_function_once_per_event(trig: HostThread) -> None:
    second = dict(PRE_EVENT, id=PRE_EVENT["id"] + "-2", subject="mc2")
    status, _, _ = http("POST", trig.host.eventgrid_url("on_event"), body=[PRE_EVENT, second],
                        headers={"aeg-event-type": "Notification"})
    assert status == 202
    first = trig.wait_for(PRE_EVENT["id"].replace("/", "_"))
    assert first.output == {"id": PRE_EVENT["id"], "type": "Microsoft.Maintenance.PreMaintenanceEvent",
                            "subject": "mc", "data": PRE_EVENT["data"]}
    assert trig.wait_for(second["id"].replace("/", "_")).output["subject"] == "mc2"


def test_instance_ids_with_a_slash_are_rejected(trig: HostThread) -> None:
    with pytest.raises(Exception, match="Orchestration instance ids must not contain /"):
        trig.call(trig.client().start_new("record_event", "a/b", None))


def test_eventgrid_contract_examples_and_cloudevents(trig: HostThread) -> None:
    received = trig.host.index.function("plain_event").user_function.__globals__["RECEIVED"]
    received.clear()
    for name in ("PreMaintenanceEvent.eventgrid-schema.json", "PostMaintenanceEvent.cloudevents-schema.json"):
        payload = json.loads((EXAMPLES / name).read_text())
        ctype = "application/cloudevents-batch+json" if "cloudevents" in name else "application/json"
        status, _, _ = http("POST", trig.host.eventgrid_url("plain_event"), body=json.dumps(payload).encode(),
                            headers={"aeg-event-type": "Notification", "Content-Type": ctype})
        assert status == 202
    single = json.loads((EXAMPLES / "PreMaintenanceEvent.cloudevents-schema.json").read_text())
    single = single[0] if isinstance(single, list) else single  # structured mode: one object
    status, _, _ = http("POST", trig.host.eventgrid_url("plain_event"), body=json.dumps(single).encode(),
                        headers={"Content-Type": "application/cloudevents+json"})
    assert status == 202
    kinds = [(r["kind"], r["cls"]) for r in received]
    assert kinds == [("Microsoft.Maintenance.PreMaintenanceEvent", "EventGridEvent"),
                     ("Microsoft.Maintenance.PostMaintenanceEvent", "CloudEvent"),
                     ("Microsoft.Maintenance.PreMaintenanceEvent", "CloudEvent")]
    assert http("POST", trig.host.eventgrid_url("no_such_function"), body=[PRE_EVENT])[0] == 404


def test_admin_invokes_an_eventgrid_function(trig: HostThread) -> None:
    event = dict(PRE_EVENT, id="admin-event-1")
    url = f"{trig.base_url}/admin/functions/on_event"
    assert http("POST", url, body={"input": json.dumps(event)})[0] == 401  # no key
    assert http("POST", url, body={"input": json.dumps(event)},
                headers={"x-functions-key": trig.host.function_key})[0] == 401  # a function key is not enough
    master = {"x-functions-key": trig.host.master_key}
    status, _, _ = http("POST", url, body={"input": json.dumps(event)}, headers=master)
    assert status == 202
    assert trig.wait_for("admin-event-1").output["id"] == "admin-event-1"
    assert http("POST", f"{trig.base_url}/admin/functions/hello", body={"input": ""}, headers=master)[0] == 400


def test_timer_triggers_follow_the_skip_clock(host_factory) -> None:
    ht = host_factory("timers", start="2025-01-01T00:00:00Z")
    ticks = ht.host.index.function("on_startup").user_function.__globals__["TICKS"]
    assert ticks == [False]  # runOnStartup, schedule from a %SETTING% in local.settings.json
    client = ht.client()
    with ht.clock.hold():
        ht.clock.advance_until(
            lambda: len([s for s in ht.call(client.get_status_all())
                         if s.runtime_status.value == "Completed"]) >= 3, timeout=30)
    statuses = sorted(ht.call(client.get_status_all()), key=lambda s: s.output["at"] if s.output else "")
    done = [s.output for s in statuses if s.output][:3]
    assert [d["at"] for d in done] == ["2025-01-01T00:10:00+00:00", "2025-01-01T00:20:00+00:00",
                                       "2025-01-01T00:30:00+00:00"]
    assert all(d["pastDue"] is False for d in done)


def test_admin_runs_a_timer_function(host_factory) -> None:
    ht = host_factory("timers", start="2025-01-01T00:00:00Z")
    with ht.clock.hold():
        assert http("POST", f"{ht.base_url}/admin/functions/every_ten_minutes", body={},
                    headers={"x-functions-key": ht.host.master_key})[0] == 202
        ht.clock.advance_until(lambda: any(s.runtime_status.value == "Completed"
                                           for s in ht.call(ht.client().get_status_all())), timeout=30)
        (first,) = [s for s in ht.call(ht.client().get_status_all()) if s.output]
        assert first.output["at"] == "2025-01-01T00:00:00+00:00"
    assert ht.clock.now() - first.created_time.replace(tzinfo=ht.clock.now().tzinfo) < timedelta(hours=1)


def test_local_settings_values_are_loaded_and_restored(host_factory) -> None:
    import os

    ht = host_factory("timers", settings={"EXTRA_SETTING": "x"})
    assert os.environ["TIMERS_APP_MARKER"] == "from-local-settings"
    assert os.environ["EXTRA_SETTING"] == "x"
    ht.stop()
    assert "TIMERS_APP_MARKER" not in os.environ and "EXTRA_SETTING" not in os.environ


def test_host_json_route_prefix_is_honoured(host_factory) -> None:
    ht = host_factory("prefixed")
    assert http("GET", f"{ht.base_url}/v1/ping")[2] == b"pong"
    assert http("GET", f"{ht.base_url}/api/ping")[0] == 404
    assert ht.host.describe_routes()[0].endswith(f"] {ht.base_url}/v1/ping")
