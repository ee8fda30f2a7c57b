"""The local Event Grid topic: what azure-eventgrid's publisher sends is accepted and recorded;
malformed, unauthorised and oversize batches get Event Grid's status codes and error shape."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.notify import notify_core, publish_cloud_event
from emulator.eventgrid import EventGridTopic
from emulator.platform import LoopThread
from patchrings.clients import AzureClients
from patchrings.settings import Settings

pytestmark = pytest.mark.emulator

TOKEN = "sim-token-eventgrid"
KEY = "local-sas-key"
GOOD = {"specversion": "1.0", "id": "e1", "source": "/patchrings/rollouts/r1", "type": "PatchRings.GateFailed",
        "subject": "rings/ring0", "time": "2026-11-16T06:00:00Z", "data": {"reasons": ["vm1 unhealthy"]}}


class Topic:
    def __init__(self, tmp_path: Path) -> None:
        self.loop = LoopThread("eventgrid-test")
        self.topic = EventGridTopic(state_dir=tmp_path / "eventgrid", tokens=[TOKEN], sas_key=KEY)
        self.loop.call(self.topic.start())
        self.ssl = ssl.create_default_context(cafile=str(self.topic.ca_path))

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Any]:
        request = urllib.request.Request(self.topic.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, context=self.ssl, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None

    def post(self, events: Any, *, content_type: str = "application/cloudevents-batch+json; charset=utf-8",
             version: str | None = "2018-01-01", auth: dict[str, str] | None = None) -> tuple[int, Any]:
        body = events if isinstance(events, bytes) else json.dumps(events).encode()
        query = f"?api-version={version}" if version else ""
        headers = {"Content-Type": content_type, **(auth if auth is not None else {"Authorization": f"Bearer {TOKEN}"})}
        return self.call("POST", "/api/events" + query, body, headers)

    def events(self, query: str = "") -> list[dict[str, Any]]:
        status, doc = self.call("GET", "/_sim/events" + query)
        assert status == 200
        return list(doc["events"])

    def close(self) -> None:
        self.loop.call(self.topic.stop())
        self.loop.close()


@pytest.fixture
def topic(tmp_path: Path) -> Iterator[Topic]:
    t = Topic(tmp_path)
    try:
        yield t
    finally:
        t.close()


def clients_for(topic: Topic) -> AzureClients:
    settings = Settings(arm_endpoint="https://127.0.0.1:1", arm_auth="static-token", arm_static_token=TOKEN,
                        ledger_connection="UseDevelopmentStorage=true",
                        notify_topic_endpoint=topic.topic.endpoint, notify_topic_ca_bundle=str(topic.topic.ca_path))
    return AzureClients(settings)


def test_the_sdk_publisher_lands_cloud_events_in_order(topic: Topic) -> None:
    clients = clients_for(topic)
    publisher = clients.event_grid_publisher()
    for n in range(3):
        out = notify_core({"kind": "gate-failed", "id": f"id-{n}", "rolloutId": "r1", "ring": "ring0",
                           "severity": "error", "message": f"gate {n}", "data": {"reasons": ["x"]}},
                          webhook="", link_base="", publish=lambda e: publish_cloud_event(publisher, e))
        assert out["published"] is True, out
    events = topic.events()
    assert [e["id"] for e in events] == ["id-0", "id-1", "id-2"]
    assert {(e["type"], e["source"], e["subject"], e["specversion"]) for e in events} == {
        ("PatchRings.GateFailed", "/patchrings/rollouts/r1", "rings/ring0", "1.0")}
    assert events[0]["data"]["message"] == "gate 0"
    assert topic.call("DELETE", "/_sim/events")[0] == 204 and topic.events() == []
    clients.close()


def test_accepts_sas_key_and_single_events_and_rejects_bad_auth(topic: Topic) -> None:
    assert topic.post([GOOD], auth={"aeg-sas-key": KEY})[0] == 200
    assert topic.post(GOOD, content_type="application/cloudevents+json")[0] == 200
    for auth in ({}, {"Authorization": "Bearer nope"}, {"aeg-sas-key": "nope"}):
        status, body = topic.post([GOOD], auth=auth)
        assert status == 401 and body["error"]["code"] == "Unauthorized"
    assert len(topic.events()) == 2


@pytest.mark.parametrize(("events", "needle"), [
    ([{**GOOD, "id": None}], "'id' was not set"),
    ([{k: v for k, v in GOOD.items() if k != "source"}], "'source' was not set"),
    ([{**GOOD, "type": ""}], "'type' must be a non-empty string"),
    ([{**GOOD, "specversion": "0.3"}], "specversion"),
    ([{**GOOD, "time": "yesterday"}], "RFC 3339"),
    ([{**GOOD, "data_base64": "AA=="}], "only one of"),
    ([GOOD, "not an object"], "index 1"),
    ({"id": "x"}, "JSON array"),
    ([], "no events"),
    (b"{not json", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nested deeper than the parser goes: 400, not 500
])
def test_malformed_batches_get_400_in_event_grids_error_shape(topic: Topic, events: Any, needle: str) -> None:
    status, body = topic.post(events)
    assert status == 400
    assert set(body) == {"error"} and body["error"]["code"] == "BadRequest"
    assert needle in body["error"]["message"]
    assert body["error"]["details"][0]["code"] == "InputJsonInvalid"
    assert topic.events() == []  # all or nothing: the good event of a bad batch is not recorded


def test_api_version_content_type_size_and_path(topic: Topic) -> None:
    assert topic.post([GOOD], version=None)[0] == 400
    status, body = topic.post([GOOD], version="2099-01-01")
    assert status == 400 and "2099-01-01" in body["error"]["message"]
    status, body = topic.post([GOOD], content_type="application/json")  # Event Grid schema: wrong topic
    assert status == 400 and "cloudevents-batch+json" in body["error"]["message"]
    big = [{**GOOD, "id": f"big-{i}", "data": {"blob": "x" * 200_000}} for i in range(6)]  # ~1.2 MB
    status, body = topic.post(big)
    assert status == 413 and body["error"]["code"] == "RequestEntityTooLarge"
    assert topic.post([GOOD])[0] == 200  # just under the limit is fine
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert topic.call("GET", "/api/events?api-version=2018-01-01", headers=bearer)[0] == 405
    assert topic.call("POST", "/api/other", b"[]")[0] == 404
    assert [e["id"] for e in topic.events()] == ["e1"]


def test_a_lost_answer_is_retried_and_the_receiver_dedupes(topic: Topic) -> None:
    """At least once: the topic keeps the batch but the answer is lost; notify resends the same
    event (azure-core does not retry a POST without an answer), and a receiver deduping on
    (source, id) sees it once. A retried or replayed activity (same input) does the same."""
    assert topic.call("POST", "/_sim/faults", json.dumps({"mode": "accept-then-drop", "count": 1}).encode(),
                      {"Content-Type": "application/json"})[0] == 201
    clients = clients_for(topic)
    publisher = clients.event_grid_publisher()
    out = notify_core({"kind": "rollout-halted", "id": "halt-1", "rolloutId": "r1", "ring": None,
                       "severity": "error", "message": "halted"}, webhook="", link_base="",
                      publish=lambda e: publish_cloud_event(publisher, e))
    assert out["published"] is True and out["attempts"] == 2
    assert [e["id"] for e in topic.events()] == ["halt-1", "halt-1"]
    assert [e["id"] for e in topic.events("?dedupe=true")] == ["halt-1"]
    assert [e["id"] for e in topic.events("?type=PatchRings.RolloutHalted&dedupe=true")] == ["halt-1"]
    assert topic.events("?type=PatchRings.GateFailed") == []
    # an injected 503 on every attempt: notify says it was not published, and never raises
    topic.call("POST", "/_sim/faults", json.dumps({"mode": "status", "status": 503, "count": 5}).encode(),
               {"Content-Type": "application/json"})
    out = notify_core({"kind": "rollout-halted", "id": "halt-2", "rolloutId": "r1"}, webhook="", link_base="",
                      publish=lambda e: publish_cloud_event(publisher, e))
    assert out["published"] is False and "503" in out["publishError"]
    assert topic.call("DELETE", "/_sim/faults")[0] == 204
    clients.close()
