"""The ``notify`` activity: tell people that something needs them (an approval is waiting, a gate
failed or was inconclusive, a rollout halted or completed, a run could not be cancelled).

Why an activity: orchestrators may not do I/O. For every input it

1. logs one structured line at error level (``PATCHRINGS ALERT {json}``, which Application
   Insights indexes) -- always, whatever else is configured;
2. publishes a CloudEvent (:func:`patchrings.notifications.build_cloud_event`: type
   ``PatchRings.<CamelCaseKind>``, source ``/patchrings/rollouts/{rolloutId}``, subject
   ``rings/{ring}`` or ``rollout``, id = the input's ``id``) to the Event Grid topic in
   ``PATCHRINGS_NOTIFY_TOPIC_ENDPOINT`` with azure-eventgrid's ``EventGridPublisherClient`` (built
   in :meth:`patchrings.clients.AzureClients.event_grid_publisher`), when that setting is set;
3. POSTs a ``{"text": ...}`` body (Teams and Slack incoming webhooks both take it; the operator
   page link made absolute with ``PATCHRINGS_PUBLIC_BASE_URL`` or ``WEBSITE_HOSTNAME``) to
   ``PATCHRINGS_NOTIFY_WEBHOOK`` when that is set (http/https only).

Best effort and bounded: it never raises (a notification failing must not fail the caller) and
returns within :data:`PUBLISH_BUDGET_SECONDS` + :data:`NOTIFY_TIMEOUT_SECONDS` even if the topic
or the webhook hangs (each send runs in a daemon thread that is abandoned at its budget; the SDK's
own timeouts are shorter still). Delivery is at least once: a retried activity publishes the
same event id again and receivers dedupe on ``(source, id)``.

Input: contract NOTIFY ``{kind, id, rolloutId, ring, severity, message, data, time?}``; older
``{kind, severity?, message, ...any JSON}`` inputs are accepted. Output ``{"logged": true,
"posted": bool, "status"?: int, "error"?: str}`` plus, when a topic is configured,
``{"published": bool, "eventId": str, "eventType": str, "attempts"?: int, "publishError"?: str}``
(one resend when the connection failed or the answer was lost: same id).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import azure.durable_functions as df

from activities import Payload
from patchrings.boundary.activities import (
    NotifyInput,
)
from patchrings.boundary.codec import BoundaryInvalid, from_payload, to_payload
from patchrings.notifications import build_cloud_event, webhook_body

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.notify")

__all__ = [
    "NOTIFY_TIMEOUT_SECONDS",
    "NOTIFY_WEBHOOK_SETTING",
    "PUBLISH_BUDGET_SECONDS",
    "bp",
    "notify_core",
    "publish_cloud_event",
]

NOTIFY_WEBHOOK_SETTING = "PATCHRINGS_NOTIFY_WEBHOOK"
NOTIFY_TIMEOUT_SECONDS = 5.0
#: The longest the topic publish may take, token acquisition included.
PUBLISH_BUDGET_SECONDS = 12.0

Poster = Callable[[str, bytes, float], int]
#: ``publish(event_json)``: sends one CloudEvent to the topic; raises on failure.
Publisher = Callable[[dict[str, Any]], None]


class _TimedOut(Exception):
    pass


def _bounded(fn: Callable[[], Any], seconds: float) -> Any:
    """Run ``fn`` in a daemon thread; its result, its exception re-raised, or :class:`_TimedOut`
    once ``seconds`` have passed (the thread is then abandoned: it cannot hold the activity)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="patchrings-notify", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise _TimedOut(f"no answer within {seconds:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def publish_cloud_event(client: Any, event: Mapping[str, Any]) -> None:
    """Send one CloudEvent (JSON form) with an ``EventGridPublisherClient``; raises on failure."""
    from azure.core.messaging import CloudEvent

    extras = {k: v for k, v in event.items() if k not in (
        "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data")}
    time_text = event.get("time")
    when = datetime.fromisoformat(str(time_text).replace("Z", "+00:00")) if time_text else None
    cloud_event = CloudEvent(
        source=str(event["source"]),
        type=str(event["type"]),
        data=event.get("data"),
        subject=event.get("subject"),
        id=str(event["id"]),
        time=when,
        datacontenttype=event.get("datacontenttype"),
        extensions=extras or None,
    )
    client.send([cloud_event])


def _publish_with_one_resend(publish: Publisher, event: dict[str, Any]) -> int:
    """Publish; once more when the connection failed or the answer was lost (azure-core's
    RetryPolicy does not retry a POST whose answer never came, and the topic may have the event
    already: the resend carries the same id, receivers dedupe). Returns the attempts made."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    try:
        publish(event)
        return 1
    except (ServiceRequestError, ServiceResponseError) as exc:
        log.info("notify: resending %s after %s", event.get("id"), type(exc).__name__)
    publish(event)
    return 2


def _rfc3339_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_text(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"[:500] if first else type(exc).__name__


def notify_core(
    payload: NotifyInput | Mapping[str, Any],
    *,
    webhook: str | None = None,
    post: Poster | None = None,
    publish: Publisher | None = None,
    link_base: str | None = None,
    sign_in: bool | None = None,
    publish_budget: float = PUBLISH_BUDGET_SECONDS,
    webhook_budget: float = NOTIFY_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Log the notification, publish it to the topic and post it to the webhook. Never raises.

    ``webhook`` / ``publish`` / ``link_base`` / ``sign_in`` default to what the settings configure
    (``publish`` is ``None`` when no topic is configured; ``sign_in`` is App Service authentication
    being on, so the page link goes through its login endpoint); tests pass their own.
    """
    if isinstance(payload, NotifyInput):  # published as sent: every key, the typed and the rest
        payload = to_payload(payload)
    try:
        doc = {"source": "patchrings", **dict(payload)}
        line = json.dumps(doc, sort_keys=True, default=str)
    except Exception as exc:
        doc, line = {"source": "patchrings", "unserialisable": str(exc)}, repr(payload)
    log.error("PATCHRINGS ALERT %s", line)
    result: dict[str, Any] = {"logged": True, "posted": False}
    configured = (_configured() if webhook is None or publish is None or link_base is None or sign_in is None
                  else {})
    if webhook is None:
        webhook = configured.get("webhook") or ""
    if publish is None:
        publish = configured.get("publish")
    if link_base is None:
        link_base = configured.get("link_base")
    if sign_in is None:
        sign_in = bool(configured.get("sign_in"))
    try:
        event: dict[str, Any] | None = build_cloud_event(
            payload if isinstance(payload, Mapping) else {}, link_base=link_base, now=_rfc3339_now(),
            sign_in=sign_in)
    except Exception as exc:  # a malformed input must not stop the log line or the webhook
        log.warning("notify: could not build the event: %s", _error_text(exc))
        event = None

    if publish is not None:
        if event is None:
            result.update(published=False, publishError="the input could not be turned into an event")
        else:
            result.update(eventId=event["id"], eventType=event["type"])
            try:
                result["attempts"] = _bounded(lambda: _publish_with_one_resend(publish, event), publish_budget)
                result["published"] = True
            except Exception as exc:
                log.warning("notify: Event Grid publish of %s failed: %s", event["id"], _error_text(exc))
                result.update(published=False, publishError=_error_text(exc))

    url = (webhook or "").strip()
    if not url:
        return result
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        log.warning("notify: %s is not an http(s) URL; not posted", NOTIFY_WEBHOOK_SETTING)
        result["error"] = "webhook is not an http(s) URL"
        return result
    body = json.dumps(webhook_body(event) if event is not None else {"text": line[:2000]}).encode("utf-8")
    poster = post or _post
    try:
        status = int(_bounded(lambda: poster(url, body, webhook_budget), webhook_budget + 1.0))
    except Exception as exc:
        log.warning("notify: webhook POST failed: %s", type(exc).__name__)
        result["error"] = _error_text(exc)
        return result
    result.update(posted=200 <= status < 300, status=status)
    return result


def _configured() -> dict[str, Any]:
    """Webhook URL, topic publisher and link base from the validated settings; the raw
    ``PATCHRINGS_NOTIFY_WEBHOOK`` (and no topic) when the settings cannot be read."""
    try:
        from patchrings import deps

        settings = deps.settings()
        publish: Publisher | None = None
        if getattr(settings, "notify_topic_endpoint", None):
            builder = getattr(deps.clients(), "event_grid_publisher", None)
            client = builder() if builder is not None else None
            if client is not None:
                def publish(event: dict[str, Any]) -> None:
                    publish_cloud_event(client, event)
        return {"webhook": settings.notify_webhook or "", "publish": publish,
                "link_base": getattr(settings, "link_base_url", None),
                "sign_in": bool(getattr(settings, "platform_auth_enabled", False))}
    except Exception as exc:  # a notification must never fail for want of settings
        log.warning("notify: settings unavailable (%s); logging and webhook only", _error_text(exc))
        return {"webhook": os.environ.get(NOTIFY_WEBHOOK_SETTING, ""), "publish": None, "link_base": None,
                "sign_in": False}


@bp.activity_trigger(input_name="payload")
def notify(payload: Payload) -> dict[str, Any]:
    try:
        spec: NotifyInput | Mapping[str, Any] = from_payload(NotifyInput, payload or {})
    except BoundaryInvalid:  # not an object: logged as it came (a notification never raises)
        spec = payload
    return notify_core(spec)
