"""HTTP, Event Grid, admin and timer triggers (reference §7.6-§7.7).

Why: these are the app's entry points besides the durable API. HTTP routes live under
``/api/`` with ASP.NET-style templates (``{id}``, ``{id?}``, ``{id:int}``, ``{*rest}``,
case-insensitive literals), methods and auth levels (FUNCTION: ``code`` query or
``x-functions-key`` header; ADMIN: the master key). Event Grid deliveries arrive at
``/runtime/webhooks/eventgrid?functionName=NAME`` as arrays (Event Grid schema) or
CloudEvents (single or batch); the subscription-validation handshakes are answered here as
the real extension does. Trigger values are built with the library's binding registry so the
function receives exactly what the worker would pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions import meta
from croniter import croniter

from emulator.clock import Clock
from emulator.host.indexing import AppIndex, FunctionEntry, IndexError_
from emulator.host.invocation import invoke_function

__all__ = ["HttpRoute", "TriggerHandlers", "compile_route", "parse_schedule"]

log = logging.getLogger("emulator.host")

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
}
_PARAM = re.compile(r"\{(\*{0,2})([A-Za-z_]\w*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?(?:=[^}]*)?\}")


@dataclass
class HttpRoute:
    entry: FunctionEntry
    template: str
    pattern: re.Pattern[str]
    methods: set[str] | None
    auth_level: str
    literals: int
    params: int


def compile_route(template: str) -> tuple[re.Pattern[str], int, int]:
    """An ASP.NET route template as a regex over the path after ``/api``; also literal/param counts."""
    regex = ""
    literals = params = 0
    for segment in [s for s in template.strip("/").split("/") if s]:
        whole = _PARAM.fullmatch(segment)
        if whole and whole.group(4):  # optional segment: "/{id?}"
            regex += rf"(?:/(?P<{whole.group(2)}>{_CONSTRAINTS.get(whole.group(3) or '', '[^/]+')}))?"
            params += 1
            continue
        if whole and whole.group(1):  # catch-all: "/{*rest}"
            regex += rf"(?:/(?P<{whole.group(2)}>.*))?"
            params += 1
            continue
        part, pos = "", 0
        for m in _PARAM.finditer(segment):
            part += re.escape(segment[pos:m.start()])
            part += rf"(?P<{m.group(2)}>{_CONSTRAINTS.get(m.group(3) or '', '[^/]+')})"
            pos = m.end()
            params += 1
        part += re.escape(segment[pos:])
        if pos == 0:
            literals += 1
        regex += "/" + part
    return re.compile(rf"^{regex}/?$", re.IGNORECASE), literals, params


def _resolve_setting(value: str) -> str:
    """``%NAME%`` app-setting references, as the host resolves them in binding properties."""
    return re.sub(r"%([^%]+)%", lambda m: os.environ.get(m.group(1), m.group(0)), value)


def parse_schedule(schedule: str, function_name: str) -> str:
    """Validate a 6-field NCRONTAB expression (seconds first); TimeSpan schedules are refused."""
    expr = _resolve_setting(schedule).strip()
    fields = expr.split()
    if len(fields) != 6:
        raise IndexError_(
            f"function '{function_name}': timer schedule '{expr}' is not a 6-field NCRONTAB expression "
            "('{second} {minute} {hour} {day} {month} {day-of-week}')"
        )
    try:
        croniter(expr, second_at_beginning=True)
    except Exception as exc:  # croniter raises several error types
        raise IndexError_(f"function '{function_name}': invalid timer schedule '{expr}': {exc}") from exc
    return expr


def next_occurrence(expr: str, after: datetime) -> datetime:
    result = croniter(expr, after, second_at_beginning=True).get_next(datetime)
    assert isinstance(result, datetime)
    return result


def _to_response(result: Any) -> web.Response:
    """The ``$return`` value as an aiohttp response."""
    if result is None:
        return web.Response(status=204)
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items()}
        if not any(k.lower() == "content-type" for k in headers):
            mimetype = result.mimetype or "text/plain"
            headers["Content-Type"] = f"{mimetype}; charset={result.charset}" if result.charset else mimetype
        return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
    if isinstance(result, (dict, list)):
        return web.Response(status=200, text=json.dumps(result), content_type="application/json")
    if isinstance(result, bytes):
        return web.Response(status=200, body=result, content_type="application/octet-stream")
    return web.Response(status=200, text=str(result), content_type="text/plain")


class TriggerHandlers:
    """HTTP routes, the Event Grid webhook, admin invocation and timer loops for one app."""

    def __init__(
        self,
        index: AppIndex,
        clock: Clock,
        *,
        client_json: Callable[[], str],
        function_key: Callable[[], str],
        master_key: Callable[[], str],
        eventgrid_key: Callable[[], str] | None = None,
        route_prefix: str = "api",
    ) -> None:
        self.index = index
        self.route_prefix = route_prefix.strip("/")
        self.clock = clock
        self._client_json = client_json
        self._function_key = function_key
        self._master_key = master_key
        self._eventgrid_key = eventgrid_key
        self.routes: list[HttpRoute] = []
        self.schedules: dict[str, str] = {}
        self._timer_tasks: list[asyncio.Task[None]] = []
        for entry in index.http_functions:
            template = entry.trigger.get("route") or entry.name
            pattern, literals, params = compile_route(template)
            methods = {m.upper() for m in entry.trigger.get("methods") or []} or None
            self.routes.append(HttpRoute(entry, template, pattern, methods,
                                         str(entry.trigger.get("authLevel") or "function").lower(),
                                         literals, params))
        self.routes.sort(key=lambda r: (-r.literals, r.params))
        for entry in index.timer_functions:
            self.schedules[entry.name] = parse_schedule(str(entry.trigger.get("schedule", "")), entry.name)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/runtime/webhooks/eventgrid", self.eventgrid)
        app.router.add_route("OPTIONS", "/runtime/webhooks/eventgrid", self.eventgrid_options)
        app.router.add_post("/admin/functions/{name}", self.admin)

    def add_http_routes(self, app: web.Application) -> None:
        """The HTTP-trigger catch-all; registered last so an empty route prefix cannot shadow the rest.

        The route prefix is matched case-insensitively (ASP.NET routing: ``/API/HttpTrigger`` works
        in Azure), so the catch-all takes every path and :meth:`http` strips the prefix itself.
        """
        app.router.add_route("*", "/{tail:.*}", self.http)

    def _strip_prefix(self, tail: str) -> str | None:
        """The path after the route prefix (compared ignoring case), or None when it is not under it."""
        if not self.route_prefix:
            return "/" + tail
        prefix = self.route_prefix.lower()
        if tail.lower() == prefix:
            return "/"
        if tail.lower().startswith(prefix + "/"):
            return tail[len(prefix):]
        return None

    def url_for(self, base_url: str, route: HttpRoute) -> str:
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        return f"{base_url}{prefix}/{route.template.strip('/')}"

    def _client(self, entry: FunctionEntry) -> str | None:
        return self._client_json() if entry.client_name else None

    # ------------------------------------------------------------------ HTTP
    def _authorized(self, route: HttpRoute, request: web.Request) -> bool:
        if route.auth_level == "anonymous":
            return True
        given = request.query.get("code") or request.headers.get("x-functions-key")
        if route.auth_level == "admin":
            return given == self._master_key()
        return given in (self._function_key(), self._master_key())

    async def http(self, request: web.Request) -> web.StreamResponse:
        stripped = self._strip_prefix(request.match_info["tail"])
        if stripped is None:
            return web.Response(status=404)
        path = stripped
        allowed: set[str] = set()
        for route in self.routes:
            m = route.pattern.match(path)
            if not m:
                continue
            if route.methods is not None and request.method.upper() not in route.methods:
                allowed |= route.methods
                continue
            if not self._authorized(route, request):
                return web.Response(status=401)
            return await self._invoke_http(route, request, {k: v for k, v in m.groupdict().items()
                                                            if v is not None})
        if allowed:
            return web.Response(status=405, headers={"Allow": ", ".join(sorted(allowed))})
        return web.Response(status=404)

    async def _invoke_http(self, route: HttpRoute, request: web.Request,
                           route_params: dict[str, str]) -> web.Response:
        body = await request.read()
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=route_params,
            body=body,
        )
        try:
            result = await invoke_function(route.entry, req, app_dir=self.index.app_dir,
                                           client_json=self._client(route.entry),
                                           label=f"{request.method} {request.path}")
        except Exception:
            log.exception("HTTP function '%s' failed", route.entry.name)
            return web.Response(status=500)
        return _to_response(result)

    # ------------------------------------------------------------------ Event Grid
    def _eventgrid_entry(self, request: web.Request) -> FunctionEntry | None:
        name = request.query.get("functionName", "")
        entry = self.index.function(name)
        if entry is None or entry.trigger_type != "eventGridTrigger":
            return None
        return entry

    def _eventgrid_authorized(self, request: web.Request) -> bool:
        """System level, as on Azure: the ``eventgrid_extension`` system key or the master key."""
        if self._eventgrid_key is None:
            return True
        given = request.query.get("code") or request.headers.get("x-functions-key")
        return given is not None and given in (self._eventgrid_key(), self._master_key())

    async def eventgrid_options(self, request: web.Request) -> web.Response:
        """CloudEvents abuse-protection handshake."""
        if not self._eventgrid_authorized(request):
            return web.Response(status=401)
        origin = request.headers.get("WebHook-Request-Origin", "*")
        return web.Response(status=200, headers={
            "WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST",
        })

    async def eventgrid(self, request: web.Request) -> web.Response:
        if not self._eventgrid_authorized(request):
            return web.Response(status=401)
        entry = self._eventgrid_entry(request)
        if entry is None:
            name = request.query.get("functionName", "")
            return web.json_response({"error": f"no Event Grid function named '{name}'"}, status=404)
        try:
            payload = json.loads(await request.text())
        except ValueError:
            return web.json_response({"error": "the request body is not valid JSON"}, status=400)
        events = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(e, dict) for e in events):
            return web.json_response({"error": "events must be JSON objects"}, status=400)
        kind = request.headers.get("aeg-event-type", "")
        if kind.lower() == "subscriptionvalidation" or any(
            e.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent" for e in events
        ):
            code = ((events[0].get("data") or {}) if events else {}).get("validationCode")
            if not code:
                return web.json_response({"error": "validation event without data.validationCode"}, status=400)
            return web.json_response({"validationResponse": code}, status=200)
        if kind.lower() == "subscriptiondeletion":
            return web.Response(status=202)
        ok = await self.deliver_events(entry, events)
        return web.Response(status=202 if ok else 500)

    async def deliver_events(self, entry: FunctionEntry, events: list[dict[str, Any]]) -> bool:
        """Invoke the function once per event; False if any invocation failed."""
        codec = func.get_binding_registry().get("eventGridTrigger")
        ok = True
        for ev in events:
            value = codec.decode(meta.Datum(type="json", value=json.dumps(ev)), trigger_metadata={})
            try:
                await invoke_function(entry, value, app_dir=self.index.app_dir,
                                      client_json=self._client(entry), label=f"event {ev.get('id')}")
            except Exception:
                log.exception("Event Grid function '%s' failed on event %s", entry.name, ev.get("id"))
                ok = False
        return ok

    # ------------------------------------------------------------------ admin
    async def admin(self, request: web.Request) -> web.Response:
        # Azure's admin API takes only the master key (``x-functions-key`` or ``code``): a function
        # key or a system key gets 401, so a key holder cannot inject events or fire timers here.
        given = request.query.get("code") or request.headers.get("x-functions-key")
        if not given or given != self._master_key():
            return web.Response(status=401)
        name = request.match_info["name"]
        entry = self.index.function(name)
        if entry is None:
            return web.json_response({"error": f"no function named '{name}'"}, status=404)
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError:
            return web.json_response({"error": "the request body is not valid JSON"}, status=400)
        raw_input = body.get("input") if isinstance(body, dict) else None
        try:
            if entry.trigger_type == "timerTrigger":
                await self.fire_timer(entry, past_due=False)
            elif entry.trigger_type == "eventGridTrigger":
                event = json.loads(raw_input) if isinstance(raw_input, str) else raw_input
                events = event if isinstance(event, list) else [event or {}]
                if not await self.deliver_events(entry, events):
                    return web.Response(status=500)
            else:
                return web.json_response(
                    {"error": f"function '{name}' has a {entry.trigger_type}; admin invocation is for "
                              "timer and Event Grid functions"}, status=400)
        except Exception:
            log.exception("admin invocation of '%s' failed", name)
            return web.Response(status=500)
        return web.Response(status=202)

    # ------------------------------------------------------------------ timers
    async def fire_timer(self, entry: FunctionEntry, *, past_due: bool) -> None:
        codec = func.get_binding_registry().get("timerTrigger")
        value = codec.decode(meta.Datum(type="json", value=json.dumps({"IsPastDue": past_due})),
                             trigger_metadata={})
        with self.clock.busy():
            await invoke_function(entry, value, app_dir=self.index.app_dir, client_json=self._client(entry),
                                  label="timer")

    def start_timers(self) -> None:
        for entry in self.index.timer_functions:
            self._timer_tasks.append(asyncio.create_task(self._timer_loop(entry), name=f"timer-{entry.name}"))

    async def stop_timers(self) -> None:
        for task in self._timer_tasks:
            task.cancel()
        if self._timer_tasks:
            await asyncio.wait(self._timer_tasks, timeout=5.0)  # bounded, like the engine's stop
        self._timer_tasks.clear()

    async def _timer_loop(self, entry: FunctionEntry) -> None:
        expr = self.schedules[entry.name]
        if entry.trigger.get("runOnStartup"):
            await self._safe_fire(entry, past_due=False)
        while True:
            due = next_occurrence(expr, self.clock.now())
            await self.clock.sleep_until(due)
            late = (self.clock.now() - due).total_seconds() > 60
            await self._safe_fire(entry, past_due=late)

    async def _safe_fire(self, entry: FunctionEntry, *, past_due: bool) -> None:
        try:
            await self.fire_timer(entry, past_due=past_due)
        except Exception:
            log.exception("timer function '%s' failed", entry.name)
