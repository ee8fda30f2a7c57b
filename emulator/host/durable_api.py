"""The Durable Functions HTTP API (reference §5), served for the real ``DurableOrchestrationClient``.

Why: the Python client makes every call over HTTP under ``rpcBaseUrl`` and parses every
response with ``response.json(content_type=None)``, so status codes, empty bodies (an
unknown instance is 404 with *no* body) and the double-encoded start/raise bodies must be
exactly what the extension's ``HttpApiHandler`` produces. The same handlers are mounted at
``/durabletask/`` (the rpc base URL) and ``/runtime/webhooks/durabletask/`` (the public
URLs in ``create_check_status_response``); ``taskHub``/``connection`` query parameters are
accepted and ignored.

Keys, as on Azure: ``/runtime/webhooks/durabletask/...`` is a system-level webhook and needs the
``durabletask_extension`` system key (or the master key) as ``code=`` or ``x-functions-key``,
else 401; every URL the host hands out (client binding, check-status links) carries that key.
``/durabletask/`` is the rpc endpoint the SDK client uses (``rpcBaseUrl``); on Azure it listens
on localhost inside the app's sandbox only and takes no key, so it takes none here either.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from emulator.clock import clock_exempt
from emulator.host import history as h
from emulator.host.engine import DurableEngine
from emulator.host.instance import TERMINAL, EngineError, Instance

__all__ = ["TASK_HUB", "DurableApi", "client_binding", "management_urls"]

TASK_HUB = "TestHubName"
RPC_PREFIX = "/durabletask"
WEBHOOK_PREFIX = "/runtime/webhooks/durabletask"
PREFIXES = (RPC_PREFIX, WEBHOOK_PREFIX)


def management_urls(base_url: str, instance_id: str, key: str) -> dict[str, str]:
    """The check-status links (``managementUrls`` with the id substituted)."""
    root = f"{base_url}/runtime/webhooks/durabletask/instances/{instance_id}"
    q = f"taskHub={TASK_HUB}&connection=Storage&code={key}"
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{root}?{q}",
        "sendEventPostUri": f"{root}/raiseEvent/{{eventName}}?{q}",
        "terminatePostUri": f"{root}/terminate?reason={{text}}&{q}",
        "rewindPostUri": f"{root}/rewind?reason={{text}}&{q}",
        "purgeHistoryDeleteUri": f"{root}?{q}",
        "restartPostUri": f"{root}/restart?{q}",
        "suspendPostUri": f"{root}/suspend?reason={{text}}&{q}",
        "resumePostUri": f"{root}/resume?reason={{text}}&{q}",
    }


def client_binding(base_url: str, key: str) -> str:
    """The JSON *string* a ``durableClient`` parameter receives (reference §5.1)."""
    hook = f"{base_url}/runtime/webhooks/durabletask"
    return json.dumps({
        "taskHubName": TASK_HUB,
        "creationUrls": {
            "createNewInstancePostUri": f"{hook}/orchestrators/{{functionName}}[/{{instanceId}}]?code={key}",
            "createAndWaitOnNewInstancePostUri": (
                f"{hook}/orchestrators/{{functionName}}[/{{instanceId}}]?timeout={{timeoutInSeconds}}"
                f"&pollingInterval={{intervalInSeconds}}&code={key}"
            ),
        },
        "managementUrls": management_urls(base_url, "INSTANCEID", key),
        "baseUrl": hook,
        "requiredQueryStringParameters": f"code={key}",
        "rpcBaseUrl": f"{base_url}/durabletask/",
    })


MAX_INSTANCE_ID_LENGTH = 256
ARGUMENTS_INCORRECT = "One or more of the arguments submitted is incorrect"


def _argument_exception(param: str, text: str) -> str:
    """``new ArgumentException(nameof(instanceId), text)``: the extension passes the name as the
    *message* and the text as the parameter name, so .NET renders ``instanceId (Parameter 'text')``."""
    return f"{param} (Parameter '{text}')"


def instance_id_error(instance_id: str | None) -> str | None:
    """The extension's ``DurableClient.StartNewAsync`` checks, in its order; None when accepted.

    An empty id is replaced by a new GUID; ids starting with ``@`` (reserved for entities), with
    ``/ \\ # ?`` or control characters, or longer than 256 characters throw ``ArgumentException``,
    which ``HttpApiHandler`` answers with 400 "One or more of the arguments submitted is incorrect".
    """
    if not instance_id:
        return None
    if instance_id.startswith("@"):
        return _argument_exception("instanceId", "Orchestration instance ids must not start with @.")
    if any(c in "/\\#?" or ord(c) < 32 or 127 <= ord(c) < 160 for c in instance_id):
        return _argument_exception(
            "instanceId", "Orchestration instance ids must not contain /, \\, #, ?, or control characters.")
    if len(instance_id.encode("utf-16-le")) // 2 > MAX_INSTANCE_ID_LENGTH:  # .NET Length: UTF-16 units
        return f"Instance ID lengths must not exceed {MAX_INSTANCE_ID_LENGTH} characters."
    return None


WAIT_DEFAULT_SECONDS = 30
WAIT_MAX_SECONDS = 60


def _wait_error(status: int, field: str, message: str, *, code: str = "InvalidWaitRequest") -> web.Response:
    return web.json_response({"error": {"code": code, "field": field, "message": message}}, status=status)


def _updated_after(updated: datetime, after: datetime) -> bool:
    """Later than ``after`` at ``after``'s precision: whole seconds unless it carries a fraction."""
    if after.microsecond == 0:
        return updated.replace(microsecond=0) > after
    return updated > after


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json",
                        headers=headers)


def _error(exc: EngineError) -> web.Response:
    if exc.status == 404:
        return web.Response(status=404)  # the client relies on an empty body
    return _json({"Message": str(exc), "ExceptionMessage": str(exc), "code": exc.code}, exc.status)


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("true", "1", "yes")


def _reencode(text: str) -> str | None:
    """Newtonsoft parse + serialise of a request body: the JSON value kept as JSON text."""
    if not text.strip():
        return None
    return json.dumps(json.loads(text), separators=(",", ":"))


def _maybe_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def friendly_history(inst: Instance, with_output: bool) -> list[dict[str, Any]]:
    """History in the extension's status format: scheduling events folded into their completions."""
    scheduled: dict[int, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for ev in inst.history:
        t = ev["EventType"]
        name = h.EVENT_NAMES.get(t, str(t))
        if t in (h.TASK_SCHEDULED, h.SUB_ORCHESTRATION_CREATED, h.TIMER_CREATED):
            scheduled[ev["EventId"]] = ev
            continue
        if t in (h.ORCHESTRATOR_STARTED, h.ORCHESTRATOR_COMPLETED):
            continue
        item: dict[str, Any] = {"EventType": name, "Timestamp": ev["Timestamp"]}
        if t == h.EXECUTION_STARTED:
            item["FunctionName"] = ev.get("Name")
            if with_output:
                item["Input"] = _maybe_json(ev.get("Input"))
        elif t in (h.TASK_COMPLETED, h.TASK_FAILED, h.SUB_ORCHESTRATION_COMPLETED, h.SUB_ORCHESTRATION_FAILED):
            src = scheduled.get(ev["TaskScheduledId"], {})
            item["TaskScheduledId"] = ev["TaskScheduledId"]
            item["FunctionName"] = src.get("Name")
            item["ScheduledTime"] = src.get("Timestamp")
            if "InstanceId" in src:
                item["InstanceId"] = src["InstanceId"]
            if t in (h.TASK_FAILED, h.SUB_ORCHESTRATION_FAILED):
                item["Reason"] = ev.get("Reason")
                item["Details"] = ev.get("Details")
            elif with_output:
                item["Result"] = _maybe_json(ev.get("Result"))
        elif t == h.TIMER_FIRED:
            item["TimerId"] = ev["TimerId"]
            item["FireAt"] = ev["FireAt"]
        elif t == h.EVENT_RAISED:
            item["Name"] = ev.get("Name")
            if with_output:
                item["Input"] = _maybe_json(ev.get("Input"))
        elif t == h.EXECUTION_COMPLETED:
            status = {1: "Completed", 2: "ContinuedAsNew", 3: "Failed", 5: "Terminated"}
            item["OrchestrationStatus"] = status.get(ev.get("OrchestrationStatus", 0), "Unknown")
            if with_output:
                item["Result"] = _maybe_json(ev.get("Result"))
        elif t == h.EXECUTION_TERMINATED:
            item["Input"] = ev.get("Input")
        out.append(item)
    return out


def status_payload(inst: Instance, *, show_input: bool = True, show_history: bool = False,
                   show_history_output: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": inst.name,
        "instanceId": inst.instance_id,
        "runtimeStatus": inst.status,
        "input": _maybe_json(inst.input_text) if show_input else None,
        "customStatus": inst.custom_status,
        "output": inst.output,
        "createdTime": h.fmt_status_time(inst.created),
        "lastUpdatedTime": h.fmt_status_time(inst.updated),
    }
    if show_history:
        payload["historyEvents"] = friendly_history(inst, show_history_output)
    return payload


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def presented_key(request: web.Request) -> str | None:
    """The key a request presents: ``code`` query parameter, else the ``x-functions-key`` header."""
    return request.query.get("code") or request.headers.get("x-functions-key")


class DurableApi:
    """aiohttp handlers for the durable HTTP API; ``base_url``/keys are read lazily (port 0).

    ``key`` is the ``durabletask_extension`` system key (put in every URL handed out and required
    on the webhook prefix); ``master_key`` is accepted there too.
    """

    def __init__(self, engine: DurableEngine, base_url: Callable[[], str], key: Callable[[], str],
                 master_key: Callable[[], str] | None = None) -> None:
        self.engine = engine
        self._base_url = base_url
        self._key = key
        self._master_key = master_key

    def _authorized(self, request: web.Request) -> bool:
        given = presented_key(request)
        accepted = {self._key(), self._master_key() if self._master_key else ""} - {""}
        return given is not None and given in accepted

    def _system_level(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return web.Response(status=401)
            return await handler(request)

        return guarded

    def add_routes(self, app: web.Application) -> None:
        for p in PREFIXES:
            def route(h: Handler, p: str = p) -> Handler:
                return self._system_level(h) if p == WEBHOOK_PREFIX else h

            app.router.add_post(p + "/orchestrators/{functionName}", route(self.start))
            app.router.add_post(p + "/orchestrators/{functionName}/{instanceId}", route(self.start))
            app.router.add_get(p + "/instances", route(self.list_instances))
            app.router.add_get(p + "/instances/", route(self.list_instances))
            app.router.add_delete(p + "/instances", route(self.purge_by))
            app.router.add_delete(p + "/instances/", route(self.purge_by))
            app.router.add_get(p + "/instances/{instanceId}", route(self.get_status))
            app.router.add_delete(p + "/instances/{instanceId}", route(self.purge))
            app.router.add_post(p + "/instances/{instanceId}/raiseEvent/{eventName}", route(self.raise_event))
            app.router.add_post(p + "/instances/{instanceId}/{operation}", route(self.operation))
            app.router.add_post(p + "/orchestrators/{functionName}/{instanceId:.+}", route(self.start))
            app.router.add_route("*", p + "/{tail:.*}", route(self.not_found))

    def add_admin_routes(self, app: web.Application) -> None:
        """``GET /admin/instances/{instanceId}/wait``: the long-poll on instance status (issue 14.11)."""
        async def wait(request: web.Request) -> web.Response:
            return await self.wait_instance(request)

        app.router.add_get("/admin/instances/{instanceId}/wait", clock_exempt(wait))

    async def wait_instance(self, request: web.Request) -> web.Response:
        """Long-poll: the status once ``lastUpdatedTime`` is later than ``after``, or terminal, or at timeout.

        ``?after=<lastUpdatedTime>`` (RFC 3339; omitted: answer at once), ``&timeout=<real seconds,
        0..60, default 30>``, ``&lease=<clock lease id>``: while the request waits, that lease of
        the shared clock is suspended, so a ``skip`` clock may jump (Temporal's time-skipping
        model: skipping is unlocked while the client waits for a result); it blocks again once the
        answer is sent. The body is the durable status endpoint's (200 terminal, 202 otherwise).
        ``lastUpdatedTime`` has whole seconds; the ``X-Last-Updated`` header has microseconds and,
        passed back as ``after``, detects updates within the same second. The handler is exempt
        from the clock's busy accounting (it waits for time to move, it is not work).
        """
        instance_id = request.match_info["instanceId"]
        query = request.query
        after: datetime | None = None
        if query.get("after"):
            try:
                after = h.parse_ts(query["after"])
            except ValueError:
                return _wait_error(400, "after", "after must be an RFC 3339 instant, e.g. a lastUpdatedTime")
        try:
            timeout = float(query.get("timeout", str(WAIT_DEFAULT_SECONDS)))
        except ValueError:
            return _wait_error(400, "timeout", "timeout must be a number of seconds")
        if not 0 <= timeout <= WAIT_MAX_SECONDS:
            return _wait_error(400, "timeout", f"timeout must be between 0 and {WAIT_MAX_SECONDS} seconds")
        lease = query.get("lease") or None
        if self.engine.get(instance_id) is None:
            return _wait_error(404, "instanceId", f"no instance with ID '{instance_id}'", code="InstanceNotFound")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self.engine.clock.lease_suspended(lease):
            while True:
                inst = self.engine.get(instance_id)
                if inst is None:
                    return _wait_error(404, "instanceId", f"instance '{instance_id}' was purged",
                                       code="InstanceNotFound")
                if after is None or inst.status in TERMINAL or _updated_after(inst.updated, after):
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self.engine.wait_changed(instance_id, remaining)
        headers = {"X-Last-Updated": h.fmt_ts(inst.updated)}
        return _json(status_payload(inst), 200 if inst.status in TERMINAL else 202, headers=headers)

    async def not_found(self, request: web.Request) -> web.Response:
        """Unknown durable API paths: 404 with an empty body (the client parses every body as JSON)."""
        return web.Response(status=404)

    def _links(self, request: web.Request, instance_id: str) -> dict[str, str]:
        return management_urls(self._base_url(), quote(instance_id, safe=":"), self._key())

    async def start(self, request: web.Request) -> web.Response:
        name = request.match_info["functionName"]
        instance_id = request.match_info.get("instanceId")
        try:
            input_text = _reencode(await request.text())
        except ValueError:
            return _json({"Message": "The request body is not valid JSON."}, 400)
        problem = instance_id_error(instance_id)
        if problem is not None:
            return _json({"Message": ARGUMENTS_INCORRECT, "ExceptionMessage": problem,
                          "ExceptionType": "System.ArgumentException", "code": "INVALID_INSTANCE_ID"}, 400)
        try:
            inst = self.engine.start_instance(name, instance_id, input_text,
                                              version=request.query.get("version"))
        except EngineError as exc:
            return _error(exc)
        links = self._links(request, inst.instance_id)
        return _json(links, 202, headers={"Location": links["statusQueryGetUri"], "Retry-After": "10"})

    async def get_status(self, request: web.Request) -> web.Response:
        inst = self.engine.get(request.match_info["instanceId"])
        if inst is None:
            return web.Response(status=404)
        payload = status_payload(
            inst,
            show_input=_flag(request, "showInput", True),
            show_history=_flag(request, "showHistory"),
            show_history_output=_flag(request, "showHistoryOutput"),
        )
        if inst.status in TERMINAL:
            return _json(payload, 200)
        location = self._links(request, inst.instance_id)["statusQueryGetUri"]
        return _json(payload, 202, headers={"Location": location, "Retry-After": "5"})

    def _filtered(self, request: web.Request) -> list[Instance]:
        q = request.query
        since = h.parse_ts(q["createdTimeFrom"]) if q.get("createdTimeFrom") else None
        until = h.parse_ts(q["createdTimeTo"]) if q.get("createdTimeTo") else None
        statuses = {s.strip().lower() for s in q.get("runtimeStatus", "").split(",") if s.strip()}
        prefix = q.get("instanceIdPrefix")
        out = []
        for inst in self.engine.instances.values():
            if since is not None and inst.created < since:
                continue
            if until is not None and inst.created > until:
                continue
            if statuses and inst.status.lower() not in statuses:
                continue
            if prefix and not inst.instance_id.startswith(prefix):
                continue
            out.append(inst)
        out.sort(key=lambda i: (i.created, i.instance_id))
        return out

    async def list_instances(self, request: web.Request) -> web.Response:
        show_input = _flag(request, "showInput", True)
        return _json([status_payload(i, show_input=show_input) for i in self._filtered(request)])

    async def purge(self, request: web.Request) -> web.Response:
        if not self.engine.purge(request.match_info["instanceId"]):
            return web.Response(status=404)
        return _json({"instancesDeleted": 1})

    async def purge_by(self, request: web.Request) -> web.Response:
        victims = self._filtered(request)
        for inst in victims:
            self.engine.purge(inst.instance_id)
        if not victims:
            return web.Response(status=404)
        return _json({"instancesDeleted": len(victims)})

    async def raise_event(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _json({"Message": "Only application/json request content is supported"}, 400)
        try:
            input_text = _reencode(await request.text())
        except ValueError:
            return _json({"Message": "The request body is not valid JSON."}, 400)
        try:
            self.engine.raise_event(request.match_info["instanceId"], request.match_info["eventName"],
                                    input_text)
        except EngineError as exc:
            return _error(exc)
        return web.Response(status=202)

    async def operation(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instanceId"]
        op = request.match_info["operation"].lower()
        reason = request.query.get("reason")
        try:
            if op == "terminate":
                self.engine.terminate(instance_id, reason)
            elif op == "suspend":
                self.engine.suspend(instance_id, reason)
            elif op == "resume":
                self.engine.resume(instance_id, reason)
            elif op == "restart":
                new_id = self.engine.restart(instance_id, _flag(request, "restartWithNewInstanceId", True))
                return _json(new_id, 202)
            elif op == "rewind":
                self.engine.require(instance_id)
                return _json({"Message": "rewind is not supported by the local host", "code": "NOT_SUPPORTED"},
                             501)
            else:
                return _json({"Message": f"unknown operation '{op}'"}, 404)
        except EngineError as exc:
            return _error(exc)
        return web.Response(status=202)


def iso(value: datetime) -> str:
    return h.fmt_ts(value)
