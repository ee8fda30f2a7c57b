"""HTTP interface of the shared virtual clock (issue 14 item 11) -- mounted by the Functions host,
by the ARM simulator and by the local platform's own clock server.

Why: under ``--clock skip`` time jumps to the next timer as soon as nothing is in flight, so an
external client (a person with curl, a test in another process, the demo) could never win a
race between its event and a timer. Modelled on Temporal's time-skipping test server, where
skipping is locked while a client holds it and unlocked while the client waits for a result:

``GET  /admin/clock``                 ``{now, nextDue, mode, leases, busy, jumps, ...}``;
                                      with ``?after=<instant>&timeout=<s>`` a long-poll that
                                      answers once ``now`` differs from ``after`` (followers).
``POST /admin/clock/lease``           ``{ttlSeconds, holder}`` -> ``{leaseId, expiresAt}``: no
                                      automatic jump while any unexpired lease is held; leases
                                      expire in REAL seconds, so a crashed client can't freeze time.
``POST /admin/clock/lease/{id}``      ``{ttlSeconds?}``: renew (404 if unknown or expired).
``DELETE /admin/clock/lease/{id}``    release (404 if unknown or expired).
``POST /admin/clock/advance``         exactly one of ``{"by": "PT1H"}`` (ISO-8601 duration),
                                      ``{"to": "2026-11-16T12:00:00Z"}`` (RFC 3339),
                                      ``{"next": true}`` (the next due time), ``{"untilIdle": true}``
                                      (time stands still until nothing is in flight). Optional
                                      ``timeoutSeconds`` (default 60) bounds the wait for idle.
                                      Explicit moves ignore leases (they are the holder's own way
                                      to move time) but never jump while work is in flight.
``POST /admin/clock/lease/{id}/report`` the follower protocol of :class:`emulator.clock.RemoteClock`;
``POST /admin/clock/lease/{id}/suspend|resume`` what ``Clock.lease_suspended`` does, for a host
                                      that follows another process's clock (its long-poll).

On a host that follows another process's clock (``--clock follow=URL``) the same routes act on
the authority's clock: leases and advances are forwarded (:class:`emulator.clock.RemoteClock`).

Errors: 400 ``{"error": {"code": "InvalidClockRequest", "field", "message"}}`` naming the field;
409 ``ClockNotSkippable`` (advancing a real/scale clock), ``InstantInPast`` (``to`` before now);
409 ``ClockBusy`` when work stays in flight past ``timeoutSeconds``.

:class:`ClockServer` serves only these routes (the platform's time authority); :class:`ClockClient`
is the blocking client the demo and the functional tests use -- the same calls curl makes.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from emulator.clock import (
    MAX_LEASE_SECONDS,
    Clock,
    ClockBusyError,
    clock_exempt,
    parse_instant,
)

__all__ = ["ClockClient", "ClockServer", "add_clock_routes", "parse_duration"]

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$")
ADVANCE_FIELDS = ("by", "to", "next", "untilIdle")


class _BadRequest(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


#: the longest ``timeoutSeconds`` the clock API accepts for one call (a longer wait is several calls)
MAX_TIMEOUT_SECONDS = 3600


def _wait_for(deadline: float) -> float:
    """One call's ``timeoutSeconds`` toward ``deadline`` (monotonic): at least 1 s, at most what
    the API accepts -- a longer ``advance_until`` used to send more, get a 400 and retry for ever
    without moving time."""
    return min(max(deadline - time.monotonic(), 1), MAX_TIMEOUT_SECONDS)

def parse_duration(text: str) -> timedelta:
    """ISO-8601 duration with weeks, days, hours, minutes, seconds (``PT1H30M``, ``P1DT2H``).

    Years and months are refused: their length depends on the calendar.
    """
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as PT1H30M or P1D (no years or months)")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(**parts)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return web.json_response({"error": body}, status=status)


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _BadRequest("body", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _BadRequest("body", "the body must be a JSON object")
    return body


def _ttl(body: dict[str, Any], *, required: bool) -> float | None:
    if "ttlSeconds" not in body:
        if required:
            raise _BadRequest("ttlSeconds", "ttlSeconds (real seconds, > 0) is required")
        return None
    value = body["ttlSeconds"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_LEASE_SECONDS:
        raise _BadRequest("ttlSeconds", f"ttlSeconds must be a number > 0 and <= {MAX_LEASE_SECONDS:g}")
    return float(value)


def _timeout(body: dict[str, Any]) -> float:
    value = body.get("timeoutSeconds", 60)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise _BadRequest("timeoutSeconds", "timeoutSeconds must be a number > 0 and <= 3600")
    return float(value)


def clock_state(clock: Clock) -> dict[str, Any]:
    """What ``GET /admin/clock`` answers."""
    state: dict[str, Any] = {
        "now": _iso(clock.now()),
        "mode": clock.mode,
        "spec": clock.spec,
        "nextDue": _iso(clock.next_due()) if clock.mode == "skip" else None,
        "leases": clock.leases(),
        "busy": clock._busy,
        "jumps": clock.jumps,
        "start": _iso(clock.start),
    }
    if clock.mode == "scale":
        state.update(scale=clock.scale, anchorUnix=clock.anchor_unix)
    return state


def add_clock_routes(app: web.Application, clock: Clock, *, prefix: str = "/admin/clock") -> None:
    """Register the clock routes on ``app`` (see the module docstring)."""
    prefix = prefix.rstrip("/")

    def guarded(fn: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                return await fn(request)  # type: ignore[no-any-return]
            except _BadRequest as exc:
                return _error(400, "InvalidClockRequest", exc.message, exc.field)

        handler.__name__ = fn.__name__
        return clock_exempt(handler)

    async def get_state(request: web.Request) -> web.Response:
        after = request.query.get("after")
        if after is not None:
            try:
                instant = parse_instant(after)
            except ValueError:
                raise _BadRequest("after", "after must be an RFC 3339 instant") from None
            try:
                timeout = float(request.query.get("timeout", "10"))
            except ValueError:
                raise _BadRequest("timeout", "timeout must be a number of seconds") from None
            if not 0 <= timeout <= 300:
                raise _BadRequest("timeout", "timeout must be between 0 and 300 seconds")
            await clock.wait_changed(instant, timeout)
        return web.json_response(clock_state(clock))

    async def take_lease(request: web.Request) -> web.Response:
        body = await _json_object(request)
        ttl = _ttl(body, required=True)
        assert ttl is not None
        holder = body.get("holder", "")
        if not isinstance(holder, str) or len(holder) > 200:
            raise _BadRequest("holder", "holder must be a string of at most 200 characters")
        follower = body.get("follower", False)
        if not isinstance(follower, bool):
            raise _BadRequest("follower", "follower must be true or false")
        lease_id = clock.acquire_lease(ttl, holder, follower=follower)
        return web.json_response({"leaseId": lease_id, "expiresAt": _iso(clock.lease_expires_at(lease_id)),
                                  "ttlSeconds": ttl, "holder": holder, "now": _iso(clock.now())})

    async def renew_lease(request: web.Request) -> web.Response:
        lease_id = request.match_info["lease"]
        ttl = _ttl(await _json_object(request), required=False)
        if not clock.renew_lease(lease_id, ttl):
            return _error(404, "LeaseNotFound", f"no lease {lease_id!r} (released or expired)")
        return web.json_response({"leaseId": lease_id, "expiresAt": _iso(clock.lease_expires_at(lease_id))})

    async def drop_lease(request: web.Request) -> web.Response:
        lease_id = request.match_info["lease"]
        if not clock.release_lease(lease_id):
            return _error(404, "LeaseNotFound", f"no lease {lease_id!r} (released or expired)")
        return web.json_response({"leaseId": lease_id, "released": True, "now": _iso(clock.now())})

    async def suspend(request: web.Request) -> web.Response:
        lease_id = request.match_info["lease"]
        if not clock.suspend_lease(lease_id):
            return _error(404, "LeaseNotFound", f"no lease {lease_id!r} (released or expired)")
        return web.json_response({"leaseId": lease_id, "suspended": True})

    async def resume(request: web.Request) -> web.Response:
        lease_id = request.match_info["lease"]
        if not clock.resume_lease(lease_id):
            return _error(404, "LeaseNotFound", f"no lease {lease_id!r} (released or expired)")
        return web.json_response({"leaseId": lease_id, "suspended": False})

    async def report(request: web.Request) -> web.Response:
        lease_id = request.match_info["lease"]
        body = await _json_object(request)
        try:
            seq = int(body["seq"])
            busy = bool(body["busy"])
            next_due = parse_instant(body["nextDue"]) if body.get("nextDue") else None
            seen = parse_instant(body["seen"]) if body.get("seen") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise _BadRequest("body", f"a report needs seq, busy, nextDue, seen: {exc}") from None
        answer = clock.follower_report(lease_id, seq=seq, busy=busy, next_due=next_due, seen=seen)
        if answer is None:
            return _error(404, "LeaseNotFound", f"no lease {lease_id!r} (released or expired)")
        return web.json_response(answer)

    async def advance(request: web.Request) -> web.Response:
        body = await _json_object(request)
        given = [name for name in ADVANCE_FIELDS if name in body]
        unknown = sorted(set(body) - set(ADVANCE_FIELDS) - {"timeoutSeconds"})
        if unknown:
            raise _BadRequest(unknown[0], f"unknown field {unknown[0]!r}; give exactly one of by, to, next, untilIdle")
        if len(given) != 1:
            field = given[1] if len(given) > 1 else "by"
            raise _BadRequest(field, "give exactly one of by, to, next, untilIdle")
        field = given[0]
        value = body[field]
        timeout = _timeout(body)
        target: datetime | None = None
        if field == "by":
            if not isinstance(value, str):
                raise _BadRequest("by", "by must be an ISO-8601 duration string such as PT1H")
            try:
                delta = parse_duration(value)
            except ValueError as exc:
                raise _BadRequest("by", str(exc)) from None
            target = clock.now() + delta
        elif field == "to":
            if not isinstance(value, str) or not _RFC3339.match(value.strip()):
                raise _BadRequest("to", "to must be an RFC 3339 instant with an offset, e.g. 2026-11-16T12:00:00Z")
            try:
                target = parse_instant(value.strip())
            except ValueError:
                raise _BadRequest("to", "to must be an RFC 3339 instant") from None
        elif value is not True:
            raise _BadRequest(field, f"{field} must be true")
        if clock.mode != "skip":
            return _error(409, "ClockNotSkippable",
                          f"a {clock.spec} clock cannot be advanced; start it with --clock skip")
        before = clock.now()
        if target is not None and target < before:
            return _error(409, "InstantInPast", f"{_iso(target)} is before now ({_iso(before)})")
        try:
            if field == "next":
                moved = await clock.advance_next(timeout=timeout)
                if moved is None:
                    return _error(409, "NothingDue", "nothing is waiting for a future time")
            elif field == "untilIdle":
                await clock.until_idle(timeout=timeout)
            else:
                assert target is not None
                await clock.advance_to(target, timeout=timeout)
        except ClockBusyError as exc:
            return _error(409, "ClockBusy", str(exc))
        except ValueError as exc:
            return _error(409, "InstantInPast", str(exc))
        return web.json_response({"from": _iso(before), "now": _iso(clock.now()),
                                  "nextDue": _iso(clock.next_due()), "leases": clock.leases()})

    app.router.add_get(prefix, guarded(get_state))
    app.router.add_post(f"{prefix}/lease", guarded(take_lease))
    app.router.add_post(f"{prefix}/lease/{{lease}}", guarded(renew_lease))
    app.router.add_delete(f"{prefix}/lease/{{lease}}", guarded(drop_lease))
    app.router.add_post(f"{prefix}/lease/{{lease}}/report", guarded(report))
    app.router.add_post(f"{prefix}/lease/{{lease}}/suspend", guarded(suspend))
    app.router.add_post(f"{prefix}/lease/{{lease}}/resume", guarded(resume))
    app.router.add_post(f"{prefix}/advance", guarded(advance))


class ClockServer:
    """An aiohttp server with only the clock routes: the local platform's time authority."""

    def __init__(self, clock: Clock, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.clock = clock
        self.port = port
        self.bind_host = host
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The clock API's URL (``http://127.0.0.1:PORT/admin/clock``)."""
        return f"http://{self.bind_host}:{self.port}/admin/clock"

    async def start(self) -> None:
        app = web.Application()
        add_clock_routes(app, self.clock)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind_host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class ClockClient:
    """Blocking client of the clock API: the calls a person makes with curl, from Python."""

    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str = "", body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None

    def _ok(self, method: str, path: str = "", body: Any = None) -> dict[str, Any]:
        status, answer = self._call(method, path, body)
        if status != 200:
            raise RuntimeError(f"{method} {self.url}{path}: HTTP {status} {answer}")
        return answer  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        return self._ok("GET")

    def now(self) -> datetime:
        return parse_instant(self.state()["now"])

    def lease(self, ttl_seconds: float, holder: str = "") -> str:
        return str(self._ok("POST", "/lease", {"ttlSeconds": ttl_seconds, "holder": holder})["leaseId"])

    def renew(self, lease_id: str, ttl_seconds: float | None = None) -> bool:
        body = {} if ttl_seconds is None else {"ttlSeconds": ttl_seconds}
        return self._call("POST", f"/lease/{lease_id}", body)[0] == 200

    def release(self, lease_id: str) -> bool:
        return self._call("DELETE", f"/lease/{lease_id}")[0] == 200

    def advance(self, **body: Any) -> tuple[int, Any]:
        """``advance(by="PT1H")``, ``advance(to=...)``, ``advance(next=True)``, ``advance(untilIdle=True)``."""
        return self._call("POST", "/advance", body)

    def advance_until(self, predicate: Callable[[], Any], *, timeout: float = 60.0, pace: float = 0.0) -> Any:
        """Like :meth:`Clock.advance_until`, over HTTP: settle, read the predicate, jump once, repeat."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not reached by simulated {self.state()['now']}")
            status, _ = self.advance(untilIdle=True, timeoutSeconds=_wait_for(deadline))
            if status != 200:
                continue
            value = predicate()  # the state reached while settling must be seen before time moves
            if value:
                return value
            status, answer = self.advance(next=True, timeoutSeconds=_wait_for(deadline))
            if status == 200 and pace:
                time.sleep(pace)
            elif status != 200 and (answer or {}).get("error", {}).get("code") == "NothingDue":
                time.sleep(0.05)
