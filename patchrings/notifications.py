"""Notifications as data: the CloudEvent and the chat-webhook body built from a ``notify`` input.

Pure (no I/O, no azure imports): :mod:`activities.notify` publishes what this module builds.

The input (contract NOTIFY, docs/architecture.md)::

    {"kind": K, "id": str(context.new_uuid()), "rolloutId": str, "ring": str | None,
     "severity": "info" | "warning" | "error", "message": str, "data": {...}, "time"?: RFC 3339}

with K one of :data:`KINDS`. Older callers send ``{kind, severity, message, ...}`` without
``id``/``data``: their other top-level fields become the event's data and the id is derived from
the whole input (same input, same id), so a retried activity still publishes the same event.

The CloudEvent (CloudEvents 1.0, what Event Grid's CloudEvents input schema takes)::

    {"specversion": "1.0",
     "id": <input id>,                       # deterministic: receivers dedupe on (source, id)
     "source": "/patchrings/rollouts/{rolloutId}"   (or "/patchrings" without a rollout),
     "type": "PatchRings.<CamelCaseKind>",   # e.g. PatchRings.ApprovalWaiting
     "subject": "rings/{ring}" | "rollout",
     "time": <input time, else the publish time>,
     "datacontenttype": "application/json",
     "data": {"kind", "severity", "message", "rolloutId", "ring", ...input data,
              "pageUrl"?, "approveUrl"? (absolute, when a base URL is known)}}

``pageUrl`` is a link for a person's browser. With App Service authentication on (settings:
``WEBSITE_AUTH_ENABLED=True``, ``Settings.platform_auth_enabled``) App Service answers a browser that
has not signed in with 401 (``infra/modules/app-auth.bicep``: ``Return401``), so the link goes
through its login endpoint, ``{base}/.auth/login/aad?post_login_redirect_uri=/api/ui/rollouts/{id}``
(:func:`person_link`), and lands on the page after sign-in; otherwise it is the page itself.
``approveUrl`` is the API's POST route (for scripts), always plain.

Delivery is at least once: the activity may run again after a crash or retry and publish the same
event again; the id stays the same, so an Event Grid subscriber (or anything downstream) drops the
repeat by ``(source, id)``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

__all__ = [
    "KINDS",
    "SEVERITIES",
    "build_cloud_event",
    "event_id",
    "event_type",
    "is_local_path",
    "login_path",
    "manifest_lines",
    "normalise",
    "person_link",
    "webhook_body",
]

#: The kinds the orchestrators send (contract NOTIFY). Others are published too (never drop an
#: alert), with a type built the same way.
KINDS = (
    "approval-waiting",
    "gate-failed",
    "gate-inconclusive",
    "rollout-halted",
    "cancel-failed",
    "rollout-completed",
)
#: Older names still accepted, published under the contract's kind.
ALIASES = {"guard-cancel-failed": "cancel-failed"}
SEVERITIES = ("info", "warning", "error")
TYPE_PREFIX = "PatchRings."
SOURCE_ROOT = "/patchrings"
MAX_MESSAGE = 2000
MAX_REASONS = 10
#: Event Grid takes events up to 1 MB (64 KB under the GA SLA); ours stay well under 64 KB.
MAX_EVENT_BYTES = 60_000
# The fields of the contract; anything else at the top level of an older input goes into data.
_ENVELOPE = ("kind", "id", "rolloutId", "ring", "severity", "message", "data", "time")
_NAMESPACE = uuid.UUID("6f1c5d7e-2b1a-4e38-9a53-70b0a2f1c9d4")
_SAFE_SEGMENT = re.compile(r"[^A-Za-z0-9._~:@!$&'()*+,;=-]")


def _text(value: Any, limit: int = 200) -> str:
    return ("" if value is None else str(value)).strip()[:limit]


def normalise(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The input in the contract's shape: kind (aliases resolved), id, rolloutId, ring, severity,
    message, data (with an older input's extra fields folded in) and time (or ``None``)."""
    raw = dict(payload or {})
    kind = _text(raw.get("kind"), 100).lower() or "notification"
    kind = ALIASES.get(kind, kind)
    severity = _text(raw.get("severity"), 20).lower()
    if severity not in SEVERITIES:
        severity = "error" if "fail" in kind or "halt" in kind else "info"
    data = raw.get("data")
    data = dict(data) if isinstance(data, Mapping) else ({} if data is None else {"value": data})
    for key, value in raw.items():
        if key not in _ENVELOPE and key not in data:
            data[key] = value
    reasons = data.get("reasons")
    if isinstance(reasons, list) and len(reasons) > MAX_REASONS:
        data["reasons"] = reasons[:MAX_REASONS]
        data["reasonsOmitted"] = len(reasons) - MAX_REASONS
    rollout = _text(raw.get("rolloutId") or data.get("rolloutId"), 200) or None
    ring = raw.get("ring") if raw.get("ring") is not None else data.get("ring")
    out = {
        "kind": kind,
        "rolloutId": rollout,
        "ring": _text(ring, 200) or None,
        "severity": severity,
        "message": _text(raw.get("message"), MAX_MESSAGE),
        "data": data,
        "time": _text(raw.get("time"), 64) or None,
    }
    out["id"] = _text(raw.get("id"), 200) or event_id(raw)
    return out


def event_id(payload: Mapping[str, Any]) -> str:
    """A deterministic id for an input that carries none: a UUID over its canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return str(uuid.uuid5(_NAMESPACE, hashlib.sha256(canonical.encode("utf-8")).hexdigest()))


def event_type(kind: str) -> str:
    """``approval-waiting`` -> ``PatchRings.ApprovalWaiting`` (any non-alphanumeric splits words)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", kind or "") if w]
    return TYPE_PREFIX + ("".join(w[:1].upper() + w[1:] for w in words) or "Notification")


def _segment(value: str) -> str:
    return _SAFE_SEGMENT.sub(lambda m: f"%{ord(m.group(0)):02X}" if ord(m.group(0)) < 128
                             else m.group(0), value)


def _absolute(base: str | None, path: Any) -> str | None:
    if not base or not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        return None
    return base.rstrip("/") + path


#: App Service authentication's sign-in endpoint for Microsoft Entra ID.
LOGIN_ENDPOINT = "/.auth/login/aad"


LOGIN_FALLBACK_PATH = "/api/ui"


def is_local_path(path: Any) -> bool:
    """True for a path on this app only: starts with one ``/``, not ``//`` or ``/\\`` (which a
    browser reads as another host), no control characters, at most 2,048 characters."""
    return (isinstance(path, str) and 0 < len(path) <= 2048 and path.startswith("/")
            and not path.startswith(("//", "/\\")) and not any(ord(c) < 32 or ord(c) == 127 for c in path))


def login_path(path: str) -> str:
    """``/.auth/login/aad?post_login_redirect_uri=<path>``: App Service signs the person in and then
    redirects to ``path`` (a path on the app itself, so no ``allowedExternalRedirectUrls`` needed).
    Never an open redirect: anything but a local path (:func:`is_local_path`) becomes the
    operator page's root, and the path is percent-encoded (``?``, ``#``, ``:``, ``\\``, ``%``)."""
    target = path if is_local_path(path) else LOGIN_FALLBACK_PATH
    return f"{LOGIN_ENDPOINT}?post_login_redirect_uri={quote(target, safe='/')}"


def person_link(base: str | None, path: Any, *, sign_in: bool = False) -> str | None:
    """The absolute link to hand a person for an app path: through App Service's login endpoint
    when ``sign_in`` (App Service authentication is on), else the path itself; None without a
    base URL or a path."""
    if not is_local_path(path):
        return None
    return _absolute(base, login_path(path) if sign_in else path)


def build_cloud_event(
    payload: Mapping[str, Any], *, link_base: str | None = None, now: str | None = None, sign_in: bool = False
) -> dict[str, Any]:
    """The CloudEvent (JSON form) for a ``notify`` input; see the module docstring.

    ``link_base`` makes ``data.pagePath``/``data.approvePath`` absolute (``pageUrl``/``approveUrl``);
    ``sign_in`` (App Service authentication on) makes ``pageUrl`` go through its login endpoint;
    ``now`` (RFC 3339) is the time used when the input carries none.
    """
    n = normalise(payload)
    data: dict[str, Any] = {
        "kind": n["kind"],
        "severity": n["severity"],
        "message": n["message"],
        "rolloutId": n["rolloutId"],
        "ring": n["ring"],
        **{k: v for k, v in n["data"].items() if k not in ("kind", "severity", "message", "rolloutId", "ring")},
    }
    links = {"pageUrl": person_link(link_base, data.get("pagePath"), sign_in=sign_in),
             "approveUrl": _absolute(link_base, data.get("approvePath"))}
    for url_key, url in links.items():
        if url and url_key not in data:
            data[url_key] = url
    source = f"{SOURCE_ROOT}/rollouts/{_segment(n['rolloutId'])}" if n["rolloutId"] else SOURCE_ROOT
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": n["id"],
        "source": source,
        "type": event_type(n["kind"]),
        "subject": f"rings/{_segment(n['ring'])}" if n["ring"] else "rollout",
        "datacontenttype": "application/json",
        "data": json.loads(json.dumps(data, default=str)),
    }
    if n["time"] or now:
        event["time"] = n["time"] or now
    if len(json.dumps(event, default=str).encode("utf-8")) > MAX_EVENT_BYTES:
        keep = {k: data.get(k) for k in ("kind", "severity", "rolloutId", "ring", "pageUrl", "approveUrl")}
        event["data"] = {**keep, "message": n["message"][:500], "truncated": True}
    return event


def manifest_lines(manifest: Any, limit: int = 12) -> list[str]:
    """What an approver signs, for a person: ``KB<n> <title>`` and ``name=version`` (at most
    ``limit``, then how many more). Takes the API's manifest view (``windows: [{kb, title}]``,
    ``linux: [{package}]``) or the status summary (``windowsKbs``, ``linuxPackages``)."""
    if not isinstance(manifest, Mapping):
        return []
    lines: list[str] = []
    for item in manifest.get("windows") or manifest.get("windowsKbs") or []:
        if isinstance(item, Mapping):
            lines.append(f"{item.get('kb')} {item.get('title') or ''}".strip())
        else:
            text = str(item)
            lines.append(text if text.upper().startswith("KB") else f"KB{text}")
    for item in manifest.get("linux") or manifest.get("linuxPackages") or []:
        lines.append(str(item.get("package")) if isinstance(item, Mapping) else str(item))
    if len(lines) > limit:
        lines = [*lines[:limit], f"and {len(lines) - limit} more"]
    return [_text(line, 200) for line in lines]


_WEB_LINK = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?/[^\s<>|\[\]()]*$")
_CHAT_LINKS = (("<", "\u2039"), (">", "\u203a"), ("](", "] ("), ("://", "[:]//"))


def chat_safe(value: Any) -> str:
    """Free text (a halt reason, a gate reason, a VM or tag name, a KB title) made inert for a
    Teams or Slack message, so nobody can post a link or a mention through PatchRings' bot:
    ``<`` ``>`` become single angle quotation marks U+2039 U+203A (Slack's ``<url|text>`` links
    and ``<!channel>`` mentions, Teams' HTML), ``](`` loses its meaning (Markdown links) and
    ``://`` is defanged to ``[:]//`` (bare URLs are not auto-linked). The message's own page
    link is added separately, unchanged."""
    text = str(value)
    for old, new in _CHAT_LINKS:
        text = text.replace(old, new)
    return text


def webhook_body(event: Mapping[str, Any]) -> dict[str, Any]:
    """A ``{"text": ...}`` body for a Teams or Slack incoming webhook (both accept it): one title
    line, the message, the deadline when there is one, and the page link (absolute) when known."""
    data = event.get("data") if isinstance(event.get("data"), Mapping) else {}
    assert isinstance(data, Mapping)
    severity = str(data.get("severity") or "info")
    kind = str(data.get("kind") or "")
    title = kind.replace("-", " ").capitalize() or "Notification"
    where = []
    if data.get("rolloutId"):
        where.append(f"rollout {chat_safe(data['rolloutId'])}")
    if data.get("ring"):
        where.append(f"ring {chat_safe(data['ring'])}")
    head = f"PatchRings {chat_safe(severity.upper())}: {chat_safe(title)}"
    lines = [head + (f" ({', '.join(where)})" if where else "")]
    if data.get("message"):
        lines.append(chat_safe(data["message"]))
    else:
        extra = {k: v for k, v in data.items() if k not in ("kind", "severity", "message", "rolloutId", "ring")}
        if extra:
            lines.append(chat_safe(json.dumps(extra, sort_keys=True, default=str)[:MAX_MESSAGE]))
    if data.get("deadline"):
        lines.append(f"Deadline: {chat_safe(data['deadline'])}")
    contents = manifest_lines(data.get("manifest"))
    if contents:
        lines.append("Manifest: " + "; ".join(chat_safe(c) for c in contents))
    reasons = data.get("reasons")
    if isinstance(reasons, list) and reasons:
        lines.extend(f"- {chat_safe(str(r)[:300])}" for r in reasons[:MAX_REASONS])
    # The page link: the app's own (an absolute URL on the configured base, or a local path);
    # anything else in the event is dropped rather than posted.
    link = data.get("pageUrl") or data.get("pagePath")
    if isinstance(link, str) and (is_local_path(link) or _WEB_LINK.match(link)):
        lines.append(f"Open: {link}")
    # Two line breaks: Teams renders a single "\n" inside text as a space.
    return {"text": "\n\n".join(lines)}
