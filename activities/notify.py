"""The ``notify`` activity: say loudly that something needs a person (e.g. a run that could not be
cancelled and may patch ungated).

Why an activity: orchestrators may not do I/O. It always logs one structured error line
(``PATCHRINGS ALERT {json}``, which Application Insights indexes) and, when the app setting
``PATCHRINGS_NOTIFY_WEBHOOK`` is set, POSTs the same JSON to it (Teams/Slack/Logic App/any
webhook). Best effort: it never raises (a notification failing must not fail the caller), and the
POST is bounded by a short timeout. Only ``http``/``https`` URLs are used.

Input ``{kind, severity?, message, ...any JSON}``; output ``{"logged": true, "posted": bool,
"status"?: int, "error"?: str}``.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import azure.durable_functions as df

from activities import Payload

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.notify")

__all__ = ["NOTIFY_TIMEOUT_SECONDS", "NOTIFY_WEBHOOK_SETTING", "bp", "notify_core"]

NOTIFY_WEBHOOK_SETTING = "PATCHRINGS_NOTIFY_WEBHOOK"
NOTIFY_TIMEOUT_SECONDS = 10.0

Poster = Callable[[str, bytes, float], int]


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def notify_core(
    payload: Mapping[str, Any], *, webhook: str | None = None, post: Poster | None = None
) -> dict[str, Any]:
    """Log the alert at error level and POST it to the webhook if one is configured. Never raises."""
    try:
        doc = {"source": "patchrings", **dict(payload)}
        line = json.dumps(doc, sort_keys=True, default=str)
    except Exception as exc:
        doc, line = {"source": "patchrings", "unserialisable": str(exc)}, repr(payload)
    log.error("PATCHRINGS ALERT %s", line)
    url = (webhook if webhook is not None else _configured_webhook()).strip()
    if not url:
        return {"logged": True, "posted": False}
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        log.warning("notify: %s is not an http(s) URL; not posted", NOTIFY_WEBHOOK_SETTING)
        return {"logged": True, "posted": False, "error": "webhook is not an http(s) URL"}
    try:
        status = (post or _post)(url, line.encode("utf-8"), NOTIFY_TIMEOUT_SECONDS)
    except Exception as exc:
        log.warning("notify: webhook POST failed: %s", type(exc).__name__)
        return {"logged": True, "posted": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"logged": True, "posted": 200 <= status < 300, "status": status}


def _configured_webhook() -> str:
    """The validated ``PATCHRINGS_NOTIFY_WEBHOOK`` setting; empty when unset or unreadable."""
    try:
        from activities.deps import deps

        return deps().settings.notify_webhook or ""
    except Exception:  # an alert must never fail for want of settings
        return os.environ.get(NOTIFY_WEBHOOK_SETTING, "")


@bp.activity_trigger(input_name="payload")
def notify(payload: Payload) -> dict[str, Any]:
    return notify_core(payload or {})
