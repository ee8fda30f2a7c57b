"""The local Event Grid topic's HTTPS server (see the package docstring for what it supports).

The thin HTTP layer: auth, api-version, size and CloudEvents validation, Event Grid's error shape;
the topic's state is :class:`emulator.eventgrid.backend.TopicBackend`.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from emulator.arm.tls import make_server_context
from emulator.eventgrid.backend import TopicBackend

__all__ = ["API_VERSIONS", "MAX_BATCH_BYTES", "EventGridTopic", "validate_cloud_event"]

API_VERSIONS = ("2018-01-01",)
#: "the array can have a total size of up to 1 MB" (post-to-custom-topic.md); each event too.
MAX_BATCH_BYTES = 1024 * 1024
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
SINGLE_CONTENT_TYPE = "application/cloudevents+json"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_STRING_ATTRIBUTES = ("subject", "datacontenttype", "dataschema", "time")


def error_body(code: str, message: str, detail_code: str | None = None) -> dict[str, Any]:
    """Event Grid's error shape: ``{"error": {"code", "message", "details": [{"code", "message"}]}}``."""
    return {"error": {"code": code, "message": message,
                      "details": [{"code": detail_code or code, "message": message}]}}


def _error(status: int, code: str, message: str, detail_code: str | None = None) -> web.Response:
    return web.json_response(error_body(code, message, detail_code), status=status)


def validate_cloud_event(event: Any, index: int) -> str | None:
    """Why ``event`` (position ``index`` in the batch) is not a valid CloudEvent 1.0, or ``None``."""
    where = f"event at index {index}"
    if not isinstance(event, dict):
        return f"{where}: must be a JSON object"
    for name in ("id", "source", "type", "specversion"):
        value = event.get(name)
        if value is None:
            return f"{where}: required property '{name}' was not set"
        if not isinstance(value, str) or not value.strip():
            return f"{where}: property '{name}' must be a non-empty string"
    if event["specversion"] != "1.0":
        return f"{where}: specversion '{event['specversion']}' is not supported; expected '1.0'"
    for name in _STRING_ATTRIBUTES:
        if name in event and event[name] is not None and not isinstance(event[name], str):
            return f"{where}: property '{name}' must be a string"
    time_text = event.get("time")
    if time_text is not None:
        try:
            if not _RFC3339.match(time_text):
                raise ValueError(time_text)
            datetime.fromisoformat(time_text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return f"{where}: property 'time' is not an RFC 3339 timestamp: {str(time_text)[:64]!r}"
    if event.get("data") is not None and event.get("data_base64") is not None:
        return f"{where}: only one of 'data' and 'data_base64' may be set"
    return None


class EventGridTopic:
    """One local custom topic. Construct, ``await start()``; ``endpoint`` is what the app publishes
    to, ``url`` the base of ``/_sim/events``; ``ca_path`` the CA its certificate is issued by."""

    def __init__(
        self,
        *,
        state_dir: Path,
        port: int = 0,
        tokens: Iterable[str] = (),
        sas_key: str | None = None,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._port = port
        self.tokens = {t for t in tokens if t}
        self.sas_key = sas_key
        self.max_batch_bytes = max_batch_bytes
        self.ca_path = self.state_dir / "ca.pem"
        self.url = ""
        self.backend = TopicBackend()
        self._runner: web.AppRunner | None = None

    @property
    def requests(self) -> int:
        """How many requests reached ``/api/events``."""
        return self.backend.requests

    @property
    def endpoint(self) -> str:
        """The topic endpoint, as Azure reports it (``https://.../api/events``)."""
        return f"{self.url}/api/events"

    @property
    def events(self) -> list[dict[str, Any]]:
        """A copy of every accepted event, in publish order."""
        return self.backend.events

    async def start(self) -> None:
        ssl_context, self.ca_path = make_server_context(self.state_dir)
        # Bodies up to 4 MB are read so that an oversize batch gets Event Grid's 413 from us.
        app = web.Application(client_max_size=4 * self.max_batch_bytes)
        app.router.add_route("*", "/api/events", self._publish)
        app.router.add_get("/_sim/events", self._list)
        app.router.add_delete("/_sim/events", self._clear)
        app.router.add_post("/_sim/faults", self._add_fault)
        app.router.add_delete("/_sim/faults", self._clear_faults)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self._port, ssl_context=ssl_context).start()
        self.url = f"https://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ the data plane
    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
            return any(hmac.compare_digest(token, known) for known in self.tokens)
        key = request.headers.get("aeg-sas-key")
        if key is not None and self.sas_key:
            return hmac.compare_digest(key, self.sas_key)
        return False

    async def _publish(self, request: web.Request) -> web.StreamResponse:
        self.backend.count_request()
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", f"{request.method} is not allowed on /api/events; use POST")
        version = request.query.get("api-version")
        if not version:
            return _error(400, "BadRequest", "the api-version query parameter is required", "ApiVersionMissing")
        if version not in API_VERSIONS:
            return _error(400, "BadRequest", f"api-version '{version}' is not supported; supported: "
                          + ", ".join(API_VERSIONS), "ApiVersionNotSupported")
        if not self._authorised(request):
            return _error(401, "Unauthorized", "the request has no valid bearer token or aeg-sas-key")
        if (request.content_length or 0) > self.max_batch_bytes:
            return _error(413, "RequestEntityTooLarge",
                          f"the batch is {request.content_length} bytes; the limit is {self.max_batch_bytes}")
        body = await request.read()
        if len(body) > self.max_batch_bytes:
            return _error(413, "RequestEntityTooLarge",
                          f"the batch is {len(body)} bytes; the limit is {self.max_batch_bytes}")
        media = request.content_type.lower()
        if media not in (BATCH_CONTENT_TYPE, SINGLE_CONTENT_TYPE):
            return _error(400, "BadRequest", f"content type '{media}' is not accepted by a CloudEvents 1.0 "
                          f"schema topic; use {BATCH_CONTENT_TYPE}", "InputJsonInvalid")
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            return _error(400, "BadRequest", f"the body is not valid JSON: {str(exc)[:200]}", "InputJsonInvalid")
        if media == BATCH_CONTENT_TYPE:
            if not isinstance(doc, list):
                return _error(400, "BadRequest", "a cloudevents-batch body must be a JSON array", "InputJsonInvalid")
            events = doc
        else:
            events = [doc]
        if not events:
            return _error(400, "BadRequest", "the batch has no events", "InputJsonInvalid")
        for index, event in enumerate(events):
            problem = validate_cloud_event(event, index)
            if problem:
                return _error(400, "BadRequest", problem, "InputJsonInvalid")
            if len(json.dumps(event).encode("utf-8")) > self.max_batch_bytes:
                return _error(413, "RequestEntityTooLarge",
                              f"event at index {index} exceeds {self.max_batch_bytes} bytes")
        fault = self.backend.next_fault()
        if fault is not None and fault.get("mode") == "status":
            status = int(fault.get("status", 503))
            return _error(status, "InjectedFault", f"injected {status}")
        self.backend.publish_events(events)
        if fault is not None and fault.get("mode") == "accept-then-drop" and request.transport is not None:
            request.transport.abort()  # recorded, but the publisher never hears back
        return web.Response(status=200)

    async def _not_found(self, request: web.Request) -> web.Response:
        return _error(404, "NotFound", f"no such endpoint: {request.path}; publish to /api/events")

    # ------------------------------------------------------------------ /_sim
    async def _list(self, request: web.Request) -> web.Response:
        events = self.backend.list_events(
            event_type=request.query.get("type"),
            source=request.query.get("source"),
            dedupe=request.query.get("dedupe", "").lower() in ("1", "true", "yes"),
        )
        return web.json_response({"events": events})

    async def _clear(self, request: web.Request) -> web.Response:
        self.backend.clear_events()
        return web.Response(status=204)

    async def _add_fault(self, request: web.Request) -> web.Response:
        try:
            fault = await request.json()
        except ValueError:
            return _error(400, "BadRequest", "the body must be a JSON object")
        try:
            queued = self.backend.add_fault(fault)
        except ValueError as exc:
            return _error(400, "BadRequest", str(exc))
        return web.json_response({"faults": queued}, status=201)

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.backend.clear_faults()
        return web.Response(status=204)
