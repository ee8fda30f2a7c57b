"""The notify activity: CloudEvents to Event Grid through the real EventGridPublisherClient (over a
recording transport), the Teams/Slack webhook body, old inputs, settings, bounded time."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from activities.notify import notify_core, publish_cloud_event
from patchrings.clients import AzureClients
from patchrings.errors import SettingsInvalid
from patchrings.notifications import build_cloud_event, event_type, normalise, webhook_body
from patchrings.settings import Settings
from tests.unit.app.fakes import ScriptedTransport

pytestmark = pytest.mark.unit

TOPIC = "https://topic1.westus2-1.eventgrid.azure.net/api/events"
ROLLOUT = "r-2026-12-01-a"
APPROVAL = {
    "kind": "approval-waiting", "id": "7b0c7a52-6a0e-5d43-9d0e-2b7c4c1f0a11", "rolloutId": ROLLOUT,
    "ring": "ring1", "severity": "warning", "message": "Ring ring1 waits for approval",
    "time": "2026-12-01T10:00:00Z",
    "data": {"deadline": "2026-12-02T10:00:00Z", "manifestHash": "0545a0c241d8f8c9",
             "approvePath": f"/api/rollouts/{ROLLOUT}/rings/ring1/approve", "pagePath": f"/api/ui/rollouts/{ROLLOUT}"},
}


def topic_settings(tmp_path: Path, **extra: Any) -> Settings:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    return Settings(arm_endpoint="https://127.0.0.1:8443", arm_auth="static-token", arm_static_token="sim-token",
                    ledger_connection="UseDevelopmentStorage=true", notify_topic_endpoint=TOPIC,
                    notify_topic_ca_bundle=str(ca), **extra)


def test_cloud_event_shape_for_the_contract_input() -> None:
    event = build_cloud_event(APPROVAL, link_base="https://app.example.net/", now="2030-01-01T00:00:00Z")
    assert event["specversion"] == "1.0"
    assert event["id"] == APPROVAL["id"]
    assert event["type"] == "PatchRings.ApprovalWaiting"
    assert event["source"] == f"/patchrings/rollouts/{ROLLOUT}"
    assert event["subject"] == "rings/ring1"
    assert event["time"] == "2026-12-01T10:00:00Z"  # the input's (platform) time, not now
    data = event["data"]
    assert data["kind"] == "approval-waiting" and data["severity"] == "warning"
    assert data["deadline"] == "2026-12-02T10:00:00Z" and data["manifestHash"] == "0545a0c241d8f8c9"
    assert data["pageUrl"] == f"https://app.example.net/api/ui/rollouts/{ROLLOUT}"
    assert data["approveUrl"] == f"https://app.example.net/api/rollouts/{ROLLOUT}/rings/ring1/approve"
    # no rollout ring: subject "rollout"; kinds map to CamelCase types
    done = build_cloud_event({"kind": "rollout-completed", "id": "x", "rolloutId": ROLLOUT, "ring": None,
                              "severity": "info", "message": "done", "data": {"outcome": "succeeded"}})
    assert done["subject"] == "rollout" and done["type"] == "PatchRings.RolloutCompleted"
    assert "pageUrl" not in done["data"] and "time" not in done
    assert [event_type(k) for k in ("gate-failed", "gate-inconclusive", "rollout-halted", "cancel-failed")] == [
        "PatchRings.GateFailed", "PatchRings.GateInconclusive", "PatchRings.RolloutHalted", "PatchRings.CancelFailed"]


def test_old_inputs_are_accepted_with_a_deterministic_id() -> None:
    old = {"kind": "guard-cancel-failed", "severity": "error", "message": "COULD NOT CANCEL run X",
           "correlationId": "run-1", "ring": "ring0", "attempts": 3}
    first, again = build_cloud_event(old), build_cloud_event(dict(old))
    assert first["id"] == again["id"]  # a retried activity publishes the same event
    assert build_cloud_event({**old, "attempts": 4})["id"] != first["id"]
    assert first["type"] == "PatchRings.CancelFailed" and first["source"] == "/patchrings"
    assert first["subject"] == "rings/ring0"
    assert first["data"]["correlationId"] == "run-1" and first["data"]["attempts"] == 3
    assert normalise({})["kind"] == "notification"
    reasons = [f"vm{i} unhealthy" for i in range(25)]
    gate = build_cloud_event({"kind": "gate-failed", "id": "g", "rolloutId": "r", "data": {"reasons": reasons}})
    assert len(gate["data"]["reasons"]) == 10 and gate["data"]["reasonsOmitted"] == 15
    huge = build_cloud_event({"kind": "gate-failed", "id": "h", "rolloutId": "r", "data": {"blob": "x" * 100_000}})
    assert huge["data"]["truncated"] is True and len(json.dumps(huge)) < 64_000


def test_webhook_body_is_teams_and_slack_text_with_the_page_link() -> None:
    body = webhook_body(build_cloud_event(APPROVAL, link_base="https://app.example.net"))
    assert set(body) == {"text"}
    text = body["text"]
    assert text.startswith("PatchRings WARNING: Approval waiting (rollout r-2026-12-01-a, ring ring1)")
    assert "Deadline: 2026-12-02T10:00:00Z" in text
    assert f"Open: https://app.example.net/api/ui/rollouts/{ROLLOUT}" in text
    # without a base URL the path is given as is
    assert f"Open: /api/ui/rollouts/{ROLLOUT}" in webhook_body(build_cloud_event(APPROVAL))["text"]


def test_publishes_through_event_grid_publisher_client(tmp_path: Path) -> None:
    transport = ScriptedTransport([("POST", "/api/events", (200, {}, None))])
    clients = AzureClients(topic_settings(tmp_path, public_base_url="https://app.example.net"), transport=transport)
    publisher = clients.event_grid_publisher()
    assert publisher is not None and clients.event_grid_publisher() is publisher  # cached

    out = notify_core(APPROVAL, webhook="", publish=lambda e: publish_cloud_event(publisher, e),
                      link_base="https://app.example.net")
    assert out == {"logged": True, "posted": False, "published": True, "eventId": APPROVAL["id"],
                   "eventType": "PatchRings.ApprovalWaiting", "attempts": 1}
    (request,) = transport.requests
    assert request.url == TOPIC + "?api-version=2018-01-01"
    assert request.headers["Content-Type"] == "application/cloudevents-batch+json; charset=utf-8"
    assert request.headers["Authorization"] == "Bearer sim-token"
    (sent,) = json.loads(request.body)
    assert {k: sent[k] for k in ("specversion", "id", "source", "type", "subject")} == {
        "specversion": "1.0", "id": APPROVAL["id"], "source": f"/patchrings/rollouts/{ROLLOUT}",
        "type": "PatchRings.ApprovalWaiting", "subject": "rings/ring1"}
    assert sent["time"].startswith("2026-12-01T10:00:00") and sent["time"].endswith("Z")
    assert sent["data"]["pageUrl"] == f"https://app.example.net/api/ui/rollouts/{ROLLOUT}"
    clients.close()


def test_the_publisher_trusts_the_topic_ca_and_keeps_timeouts_and_retries_short(tmp_path: Path) -> None:
    """The CA bundle, timeouts and retry limits reach the pipeline (the public 4.22.1 class drops them)."""
    from azure.core.pipeline.policies import RetryPolicy

    clients = AzureClients(topic_settings(tmp_path))
    pipeline = clients.event_grid_publisher()._client._client._pipeline  # type: ignore[union-attr]
    config = pipeline._transport.connection_config  # type: ignore[union-attr]
    assert (config.verify, config.timeout, config.read_timeout) == (str(tmp_path / "ca.pem"), 5, 5)
    (retry,) = [p for p in pipeline._impl_policies if isinstance(p, RetryPolicy)]
    assert (retry.total_retries, retry.backoff_max) == (1, 2)
    clients.close()


def test_settings_configure_the_topic_and_the_credential_scope(tmp_path: Path) -> None:
    seen: list[tuple[str, ...]] = []

    class Credential:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            from azure.core.credentials import AccessToken

            seen.append(scopes)
            return AccessToken("mi-token", 2_000_000_000)

    transport = ScriptedTransport([("POST", "/api/events", (200, {}, None))])
    settings = Settings(ledger_account_url="https://acct.table.core.windows.net", notify_topic_endpoint=TOPIC)
    clients = AzureClients(settings, credential=Credential(), transport=transport)  # type: ignore[arg-type]
    publisher = clients.event_grid_publisher()
    publish_cloud_event(publisher, build_cloud_event(APPROVAL))
    assert seen == [("https://eventgrid.azure.net/.default",)]
    assert transport.requests[0].headers["Authorization"] == "Bearer mi-token"
    assert AzureClients(replace(settings, notify_topic_endpoint=None)).event_grid_publisher() is None


def test_a_failing_topic_never_raises_and_says_what_was_delivered(tmp_path: Path) -> None:
    transport = ScriptedTransport([("POST", "/api/events", (400, {}, {"error": {"code": "BadRequest"}}))])
    clients = AzureClients(topic_settings(tmp_path), transport=transport)
    publisher = clients.event_grid_publisher()
    posted: list[bytes] = []

    def post(url: str, body: bytes, timeout: float) -> int:
        posted.append(body)
        return 200

    out = notify_core(APPROVAL, webhook="https://hooks.example/x", post=post,
                      publish=lambda e: publish_cloud_event(publisher, e), link_base="")
    assert out["published"] is False and "HttpResponseError" in out["publishError"]
    assert out["posted"] is True and out["status"] == 200  # the webhook still gets it
    assert json.loads(posted[0])["text"].startswith("PatchRings WARNING")


def test_a_hanging_topic_or_webhook_is_abandoned_at_its_budget() -> None:
    release = threading.Event()

    def hang(*_args: Any) -> Any:
        release.wait(30)
        return 200

    try:
        out = notify_core(APPROVAL, webhook="https://hooks.example/x", post=hang, publish=hang, link_base="",
                          publish_budget=0.2, webhook_budget=0.2)
    finally:
        release.set()
    assert out["published"] is False and "no answer within 0.2s" in out["publishError"]
    assert out["posted"] is False and "no answer" in out["error"]


def test_topic_settings_are_validated(tmp_path: Path) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "default.json").write_text("{}")
    base = {"PATCHRINGS_LEDGER_CONNECTION": "UseDevelopmentStorage=true"}
    ok = Settings.from_env({**base, "PATCHRINGS_NOTIFY_TOPIC_ENDPOINT": TOPIC,
                            "PATCHRINGS_PUBLIC_BASE_URL": "https://app.example.net/"}, app_dir=tmp_path)
    assert ok.notify_topic_endpoint == TOPIC and ok.link_base_url == "https://app.example.net"
    hosted = Settings.from_env({**base, "WEBSITE_HOSTNAME": "func-pr.azurewebsites.net"}, app_dir=tmp_path)
    assert hosted.notify_topic_endpoint is None and hosted.link_base_url == "https://func-pr.azurewebsites.net"
    for name, value in (("PATCHRINGS_NOTIFY_TOPIC_ENDPOINT", "http://topic.example/api/events"),
                        ("PATCHRINGS_NOTIFY_TOPIC_ENDPOINT", "https://u:p@topic.example/api/events"),
                        ("PATCHRINGS_NOTIFY_TOPIC_CA_BUNDLE", "missing/ca.pem"),
                        ("PATCHRINGS_PUBLIC_BASE_URL", "ftp://x")):
        with pytest.raises(SettingsInvalid) as err:
            Settings.from_env({**base, name: value}, app_dir=tmp_path)
        assert err.value.field == name


def test_with_app_service_authentication_on_the_page_link_goes_through_sign_in() -> None:
    """In Azure, App Service authentication answers unauthenticated requests 401, so a person's
    link must go through its login endpoint; the notify activity takes that from the settings."""
    from patchrings import deps

    posted: list[bytes] = []
    settings = Settings(ledger_account_url="https://x", notify_webhook="https://hooks.example/x",
                        platform_auth_enabled=True, public_base_url="https://app.example.net")
    deps.override(settings=settings, clients=object())
    try:
        notify_core(APPROVAL, post=lambda url, body, timeout: posted.append(body) or 200)
    finally:
        deps.reset()
    text = json.loads(posted[0])["text"]
    assert (f"Open: https://app.example.net/.auth/login/aad?post_login_redirect_uri=/api/ui/rollouts/{ROLLOUT}"
            in text), text
