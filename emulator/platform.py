"""The whole local platform in one process: ARM simulator + Functions host + Azurite.

Why one process: the ``skip`` clock can only tell that *everything* is idle when the host's
durable engine and the simulator's schedule engine share it, so both run on one asyncio loop
(in a background thread, so synchronous callers such as pytest and the demo can drive it).
Azurite runs as a child process; it keeps no time of its own that matters.

Wiring (the same settings the app would get in Azure, pointed at local endpoints):

1. pick the host's port and function key first, so the simulator's Event Grid subscriptions
   can target ``${FUNCTIONS_HOST}/runtime/webhooks/eventgrid?functionName=...``; the port is
   held from then until ``stop()`` (:func:`emulator.azurite.reserve_port`), so platforms started
   side by side (``pytest -n 2``) never pick the same one;
2. start Azurite -> ``PATCHRINGS_LEDGER_CONNECTION``;
3. start the simulator -> its ``client_settings`` (``PATCHRINGS_ARM_*``);
4. start the local Event Grid topic (:mod:`emulator.eventgrid`; it accepts the simulator's token)
   -> ``PATCHRINGS_NOTIFY_TOPIC_ENDPOINT`` / ``PATCHRINGS_NOTIFY_TOPIC_CA_BUNDLE``, and
   ``PATCHRINGS_PUBLIC_BASE_URL`` = the host's URL (absolute page links in notifications);
   what the app publishes is at ``GET {platform.eventgrid_url}/_sim/events``;
5. start the host with those settings on top of the app's ``local.settings.json``.

``python -m emulator platform --scenario FILE [--clock scale=60]`` runs it from a shell.

The clock's HTTP interface (:mod:`emulator.clock_http`) is served by the platform's own clock
server (``platform.clock_url``): the demo, the functional tests' driver and a person with curl
all take leases and advance time through it.

``host_process=True`` runs the Functions host as a separate process (``python -m emulator start
--clock follow=<clock_url>``) on a SQLite durable store: the simulator's process stays the time
authority, and :meth:`LocalPlatform.kill_host` / :meth:`LocalPlatform.start_host` SIGKILL and
restart the host alone while the simulated Azure (ARM simulator, Azurite) keeps running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from emulator.azurite import Azurite, reserve_port
from emulator.clock import Clock, make_clock
from emulator.clock_http import ClockClient, ClockServer

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


class LoopThread:
    """An asyncio event loop running in a daemon thread, with a blocking ``call``."""

    def __init__(self, name: str = "platform-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 120) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class HttpResult:
    """Status, headers and decoded JSON (or text) of one HTTP call."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json: Any = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self) -> str:
        return f"HttpResult({self.status}, {self.raw[:300]!r})"


def http_call(
    method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 60
) -> HttpResult:
    """A small JSON HTTP client (stdlib only) that returns 4xx/5xx instead of raising."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpResult(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        return HttpResult(err.code, dict(err.headers), err.read())


def host_arguments(*, app_dir: Path, port: int, storage: str, function_key: str, clock: str, ready_file: Path,
                   settings: dict[str, str]) -> list[str]:
    """The ``python -m emulator start`` arguments of a host process.

    Values go as ``--option=value``: a generated key may start with ``-`` (``token_urlsafe``), which
    argparse takes for an option when it is a separate argument (the host then exits with 2).
    """
    argv = [f"--app={app_dir}", f"--port={port}", f"--storage={storage}", f"--function-key={function_key}",
            f"--clock={clock}", f"--ready-file={ready_file}"]
    argv += [f"--setting={name}={value}" for name, value in settings.items()]
    return argv


class LocalPlatform:
    """ARM simulator + Functions host (one loop, shared clock) + Azurite."""

    def __init__(
        self,
        scenario: dict[str, Any] | Path,
        *,
        app_dir: Path = REPO,
        clock: str | Clock = "skip",
        start: datetime | str | None = None,
        state_dir: Path | None = None,
        storage: str = ":memory:",
        settings: dict[str, str] | None = None,
        host_port: int | None = None,
        arm_port: int = 0,
        use_azurite: bool = True,
        persist_ledger: bool = False,
        hold_clock: bool = True,
        host_process: bool = False,
        clock_port: int = 0,
    ) -> None:
        self.scenario = scenario
        self.app_dir = Path(app_dir)
        self.clock = clock if isinstance(clock, Clock) else make_clock(clock, start=start)
        self._own_state = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="patchrings-"))
        self.storage = storage
        self.extra_settings = dict(settings or {})
        # The host's port is picked before anything starts (the simulator's Event Grid subscriptions
        # name it) and held until stop(): no parallel test worker or outgoing connection can take it
        # meanwhile, nor while the host restarts on it (restart_host, kill_host/start_host).
        self._host_port_holder: Any = None
        if host_port:
            self.host_port = host_port
        else:
            self.host_port, self._host_port_holder = reserve_port()
        self.arm_port = arm_port
        self.function_key = secrets.token_urlsafe(24)
        self.use_azurite = use_azurite
        self.persist_ledger = persist_ledger
        # A skip clock would otherwise race ahead (days of schedules) while components start
        # and between a test's steps; held, time moves only inside wait_for().
        self.hold_clock = hold_clock
        self._hold: Any = None
        self.azurite: Azurite | None = None
        self.loop: LoopThread | None = None
        self.arm: Any = None
        self.eventgrid: Any = None  # emulator.eventgrid.EventGridTopic once started
        self.host: Any = None
        self.settings: dict[str, str] = {}
        self.clock_port = clock_port
        self.clock_server: ClockServer | None = None
        # Host as a separate process (crash drills): see the module docstring.
        self.host_process = host_process
        if host_process and storage == ":memory:":
            self.storage = str(self.state_dir / "durable.sqlite")
        self.host_proc: subprocess.Popen[bytes] | None = None
        self.host_output: str | None = "log"  # None: the host process writes to our stdout
        self.host_starts = 0
        self._host_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalPlatform:
        from emulator.arm.server import ArmSimulator
        from emulator.host.server import FunctionsHost

        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.hold_clock and self.clock.mode == "skip" and self._hold is None:
            self._hold = self.clock.hold()
            self._hold.__enter__()
        try:
            if self.use_azurite:
                self.azurite = Azurite(self.state_dir / "azurite", in_memory=not self.persist_ledger).start()
            self.loop = LoopThread()
            self.clock_server = ClockServer(self.clock, port=self.clock_port)
            self.loop.call(self.clock_server.start())
            host_url = f"http://127.0.0.1:{self.host_port}"
            self.arm = ArmSimulator(
                self.scenario,
                self.clock,
                port=self.arm_port,
                state_dir=self.state_dir / "arm",
                variables=self.scenario_variables(host_url),
            )
            self.loop.call(self.arm.start())
            settings = dict(self.arm.client_settings)
            if self.azurite is not None:
                settings["PATCHRINGS_LEDGER_CONNECTION"] = self.azurite.connection_string
            from emulator.eventgrid import EventGridTopic

            self.eventgrid = EventGridTopic(state_dir=self.state_dir / "eventgrid",
                                            tokens=[settings.get("PATCHRINGS_ARM_STATIC_TOKEN", "")])
            self.loop.call(self.eventgrid.start())
            settings["PATCHRINGS_NOTIFY_TOPIC_ENDPOINT"] = self.eventgrid.endpoint
            settings["PATCHRINGS_NOTIFY_TOPIC_CA_BUNDLE"] = str(self.eventgrid.ca_path)
            settings["PATCHRINGS_PUBLIC_BASE_URL"] = host_url
            settings.update(self.extra_settings)
            self.settings = settings
            if self.host_process:
                from emulator.host import sdk_session

                sdk_session.install()  # durable clients built here run on this platform's loop
                self.start_host()
                return self
            self.host = FunctionsHost(
                self.app_dir,
                self.clock,
                port=self.host_port,
                storage=self.storage,
                settings=settings,
                function_key=self.function_key,
            )
            self.loop.call(self.host.start())
        except BaseException:
            self.stop()
            raise
        return self

    def scenario_variables(self, host_url: str) -> dict[str, str]:
        """``${NAME}`` values for the simulator's scenario: the host URL and its keys.

        ``EVENTGRID_KEY`` is the host's ``eventgrid_extension`` system key (the Event Grid
        webhook refuses the function key, as on Azure): scenarios point their subscriptions at
        ``${FUNCTIONS_HOST}/runtime/webhooks/eventgrid?functionName=...&code=${EVENTGRID_KEY}``.
        """
        from emulator.host.server import EVENTGRID_KEY, system_key, system_key_setting

        eventgrid = self.extra_settings.get(system_key_setting(EVENTGRID_KEY)) \
            or system_key(self.function_key, EVENTGRID_KEY)
        return {"FUNCTIONS_HOST": host_url, "FUNCTIONS_KEY": self.function_key, "EVENTGRID_KEY": eventgrid}

    def release_hold(self) -> None:
        """Let go of the start-up hold (a caller that holds a lease of its own takes over)."""
        if self._hold is not None:
            self._hold.__exit__(None, None, None)
            self._hold = None
            self.hold_clock = False

    # ------------------------------------------------------------------ the host as a process
    def start_host(self, *, timeout: float = 120) -> None:
        """Start the Functions host as its own process, following the platform's clock."""
        assert self.clock_server is not None and self.host_process
        if self.host_proc is not None and self.host_proc.poll() is None:
            raise RuntimeError("the host process is already running")
        ready = self.state_dir / "host-ready.json"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "emulator", "start", *host_arguments(
            app_dir=self.app_dir, port=self.host_port, storage=self.storage, function_key=self.function_key,
            clock=f"follow={self.clock_server.url}", ready_file=ready, settings=self.settings)]
        self.host_starts += 1
        log_path = self.state_dir / "host.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.host_output is None:
            self.host_proc = subprocess.Popen(argv, cwd=self.app_dir, env=env)
        else:
            with log_path.open("ab") as log_file:
                log_file.write(f"\n===== host start #{self.host_starts}\n".encode())
                log_file.flush()
                self.host_proc = subprocess.Popen(argv, cwd=self.app_dir, stdout=log_file,
                                                  stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while not ready.is_file():
            if self.host_proc.poll() is not None:
                raise RuntimeError(f"the host process exited with {self.host_proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                self.kill_host()
                raise TimeoutError(f"the host process did not start in {timeout:g}s; see {log_path}")
            time.sleep(0.05)
        self._host_info = json.loads(ready.read_text())

    def kill_host(self) -> None:
        """SIGKILL the host process (no cleanup of any kind) and reap it."""
        proc = self.host_proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self.host_proc = None

    def client_binding_json(self) -> str:
        """The ``durableClient`` binding string for the running host (in-process or not)."""
        if self.host is not None:
            return str(self.host.client_binding_json())
        return str(self._host_info["clientBinding"])

    @property
    def eventgrid_url(self) -> str:
        """Base URL (https) of the local Event Grid topic: ``GET {eventgrid_url}/_sim/events`` lists
        what the app published (CA: ``eventgrid_ca_path``)."""
        assert self.eventgrid is not None, "the platform is not started"
        return str(self.eventgrid.url)

    @property
    def eventgrid_ca_path(self) -> Path:
        """The CA file that issued the topic's certificate (``curl --cacert``, ``ssl`` contexts)."""
        assert self.eventgrid is not None, "the platform is not started"
        return Path(self.eventgrid.ca_path)

    def published_events(self, *, dedupe: bool = False, type: str | None = None) -> list[dict[str, Any]]:
        """The CloudEvents the app published to the local topic, in publish order (``dedupe``: the
        first of each ``(source, id)``, as a receiver that dedupes sees them)."""
        import ssl
        from urllib.parse import urlencode

        query = {k: v for k, v in (("dedupe", "true" if dedupe else ""), ("type", type or "")) if v}
        url = f"{self.eventgrid_url}/_sim/events" + (f"?{urlencode(query)}" if query else "")
        context = ssl.create_default_context(cafile=str(self.eventgrid_ca_path))
        with urllib.request.urlopen(url, context=context, timeout=30) as resp:
            return list(json.loads(resp.read())["events"])

    @property
    def clock_url(self) -> str:
        """The clock API (``http://127.0.0.1:PORT/admin/clock``) of the time authority."""
        assert self.clock_server is not None, "the platform is not started"
        return self.clock_server.url

    def clock_client(self) -> ClockClient:
        """A client of the clock API: the calls a person makes with curl."""
        return ClockClient(self.clock_url)

    def restart_host(self) -> None:
        """Stop and start the Functions host on the same storage (a crash-restart drill)."""
        from emulator.host.server import FunctionsHost

        if self.host_process:
            self.kill_host()
            self.start_host()
            return
        assert self.loop is not None
        if self.host is not None:
            self.loop.call(self.host.stop())
        self.host = FunctionsHost(
            self.app_dir,
            self.clock,
            port=self.host_port,
            storage=self.storage,
            settings=self.settings,
            function_key=self.function_key,
        )
        self.loop.call(self.host.start())

    def stop(self) -> None:
        if self.host_proc is not None:
            proc = self.host_proc
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
            self.host_proc = None
        if self.loop is not None:
            for component in (self.host, self.arm, self.eventgrid, self.clock_server):
                if component is not None:
                    try:
                        self.loop.call(component.stop(), timeout=30)
                    except Exception:  # best effort: keep stopping the rest
                        pass
            if self.host_process:
                from emulator.host import sdk_session

                with contextlib.suppress(Exception):
                    self.loop.call(sdk_session.close_loop_session(), timeout=10)
            self.loop.close()
            self.loop = None
        self.host = self.arm = self.eventgrid = self.clock_server = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None
        if self._hold is not None:
            self._hold.__exit__(None, None, None)
            self._hold = None
        if self._host_port_holder is not None:
            self._host_port_holder.close()
            self._host_port_holder = None
        self.clock.close()
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ driving it
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    def api(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> HttpResult:
        """Call the app's HTTP API (``/api/...``) with the function key."""
        all_headers = {"x-functions-key": self.function_key, **(headers or {})}
        return http_call(method, f"{self.base_url}{path}", body=body, headers=all_headers)

    def wait_for(self, predicate: Callable[[], T], *, timeout: float = 120, pace: float = 0.0) -> T:
        """Advance simulated time (skip clock) or poll (real/scale) until ``predicate()`` holds."""
        return self.clock.advance_until(predicate, timeout=timeout, pace=pace)  # type: ignore[no-any-return]


class FunctionRunFormatter(logging.Formatter):
    """``func start``-style lines: ``[time] Executed 'name' (...) in 12.3ms: Succeeded``."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s] %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")


def stream_function_runs(verbose: bool = False, stream: Any = None) -> logging.Handler:
    """Print the host's function executions (logger ``emulator.host``) as ``func start`` does.

    With ``verbose`` every component's log (host, simulator, clock, app) is printed at DEBUG.
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(FunctionRunFormatter())
    if verbose:
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.DEBUG)
    else:
        for name in ("emulator.host", "emulator.clock"):
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
    return handler


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs (``--setting``) as a dict; raises ValueError naming a bad one."""
    settings: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--setting {pair!r}: use NAME=VALUE")
        settings[name.strip()] = value
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulator platform", description=main.__doc__)
    parser.add_argument("--scenario", required=True, type=Path, help="simulator scenario (YAML or JSON)")
    parser.add_argument("--app", type=Path, default=REPO, help="Function App folder (default: repo root)")
    parser.add_argument("--plan", type=Path, default=None,
                        help="rollout plan file (sets PATCHRINGS_PLAN_PATH; default: the app's setting)")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an app setting for the host (repeatable; wins over local.settings.json)")
    parser.add_argument("--clock", default="scale=60", help="real | skip | scale=N (default scale=60)")
    parser.add_argument("--start", default=None, help="simulated start instant (ISO-8601, UTC)")
    parser.add_argument("--port", type=int, default=7071, help="Functions host port (default 7071; 0: any)")
    parser.add_argument("--clock-port", type=int, default=0, help="clock API port (default: any free port)")
    parser.add_argument("--state-dir", type=Path, default=None, help="where to keep state (default .local/)")
    parser.add_argument("--host-process", action="store_true",
                        help="run the Functions host as its own process, following the platform's clock")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging from every component")
    return parser


def platform_from_args(args: argparse.Namespace) -> LocalPlatform:
    """The :class:`LocalPlatform` a ``python -m emulator platform`` command line describes."""
    settings = parse_settings(args.setting)
    if args.plan is not None:
        plan = Path(args.plan).resolve()
        if not plan.is_file():
            raise ValueError(f"--plan {args.plan}: no such file")
        settings["PATCHRINGS_PLAN_PATH"] = str(plan)
    state_dir = args.state_dir or (args.app / ".local" / "platform")
    platform = LocalPlatform(
        args.scenario,
        app_dir=args.app,
        clock=args.clock,
        start=args.start,
        state_dir=state_dir,
        storage=str(state_dir / "durable.sqlite"),
        settings=settings,
        host_port=args.port or None,
        persist_ledger=True,
        hold_clock=False,
        host_process=args.host_process,
        clock_port=args.clock_port,
    )
    platform.host_output = None
    return platform


def main(argv: list[str] | None = None) -> int:
    """``python -m emulator platform``: run the whole local platform until Ctrl-C."""
    args = build_parser().parse_args(argv)
    try:
        platform = platform_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stream_function_runs(args.verbose)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with platform:
        key = platform.function_key
        print(f"Functions host : {platform.base_url}   (function key: {key})"
              + ("   [separate process]" if platform.host_process else ""))
        if platform.host is not None:
            for line in platform.host.describe_routes():
                print(f"                 {line}")
        print(f"ARM simulator  : {platform.arm.endpoint}   (CA: {platform.arm.ca_path})")
        print(f"Event Grid     : {platform.eventgrid.endpoint}   (published events: GET "
              f"{platform.eventgrid_url}/_sim/events, CA: {platform.eventgrid_ca_path})")
        if platform.azurite:
            print(f"Azurite tables : {platform.azurite.table_endpoint}")
        print(f"Clock          : {platform.clock.spec}, now {platform.clock.now().isoformat()}")
        print(f"Clock API      : {platform.clock_url}   (GET it; POST .../lease, .../advance: see "
              "docs/local-platform.md)")
        for name in sorted(platform.extra_settings):
            print(f"Setting        : {name}={platform.extra_settings[name]}")
        print("Ctrl-C stops everything.", flush=True)
        stop.wait()
    return 0
