"""``FunctionsHost``: the local Functions + Durable host as one aiohttp server.

Why one object: the local platform (``emulator/platform.py``), the CLI and the pytest
fixtures all need the same start/stop lifecycle on an asyncio loop that may also run the
ARM simulator (one loop, one shared :class:`~emulator.clock.Clock`, so ``skip`` time jumps
only when both are idle).

Start order mirrors ``func start``: ``local.settings.json`` ``Values`` go into
``os.environ``, explicit ``settings`` on top, *then* the app is imported (module-level code
may read settings), indexed, the HTTP port is bound and the durable engine recovers
persisted instances. ``stop()`` restores the environment variables it changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from emulator.clock import Clock, busy_middleware
from emulator.clock_http import add_clock_routes
from emulator.host import sdk_session
from emulator.host.durable_api import DurableApi, client_binding
from emulator.host.engine import DurableEngine
from emulator.host.indexing import AppIndex, IndexError_, index_app
from emulator.host.store import Store
from emulator.host.triggers import TriggerHandlers

__all__ = ["FunctionsHost", "HostConfigError", "load_host_json", "load_local_settings", "system_key",
           "system_key_setting"]

log = logging.getLogger("emulator.host")
SHUTDOWN_TIMEOUT_SECONDS = 5.0


HOSTJSON_HELP = "See https://aka.ms/functions-hostjson"
DURABLETASK_KEY = "durabletask_extension"
EVENTGRID_KEY = "eventgrid_extension"
SYSTEM_KEY_NAMES = (DURABLETASK_KEY, EVENTGRID_KEY)


def system_key_setting(name: str) -> str:
    """The app setting / environment variable that sets a system key, e.g.
    ``FUNCTIONS_SYSTEM_KEY_EVENTGRID_EXTENSION``."""
    return f"FUNCTIONS_SYSTEM_KEY_{name.upper()}"


def system_key(function_key: str, name: str) -> str:
    """The default local system key ``name``: derived from the default function key.

    Deterministic, so a component that knows the function key (the platform, a process that
    restarts the host) can build the same webhook URLs without asking the host; a caller that
    only *presents* the function key is still refused. Override with :func:`system_key_setting`.
    """
    digest = hmac.new(function_key.encode(), f"system-key:{name}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
_JSON_TOKENS = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.DOTALL)


class HostConfigError(IndexError_):
    """host.json cannot be used; the message is the Functions host's own (code HOST_CONFIG)."""

    code = "HOST_CONFIG"


def _strip_comments(text: str) -> str:
    """Newtonsoft's ``JObject.Parse`` ignores ``//`` and ``/* */`` comments; strings are kept."""
    return _JSON_TOKENS.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", text)


def load_host_json(app_dir: Path) -> dict[str, Any]:
    """``host.json`` of the app, checked as the Functions host does (``HostJsonFileConfigurationSource``).

    No file or an empty object means ``{"version": "2.0"}``; text that does not parse as a JSON
    object is "Unable to parse host configuration file '<path>'."; a missing/empty ``version`` or
    one other than ``"2.0"`` is refused with the host's messages. Raises :class:`HostConfigError`.
    """
    path = app_dir / "host.json"
    if not path.is_file():
        return {"version": "2.0"}
    try:
        data = json.loads(_strip_comments(path.read_text(encoding="utf-8-sig")))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HostConfigError(f"Unable to parse host configuration file '{path}'. ({exc})") from exc
    if not isinstance(data, dict):
        raise HostConfigError(f"Unable to parse host configuration file '{path}'. "
                              f"(the top-level value is a JSON {type(data).__name__}, not an object)")
    if not data:
        return {"version": "2.0"}
    version = data.get("version")
    if isinstance(version, float) and version.is_integer():
        version = int(version)  # Newtonsoft Value<string>() of 2.0 is "2"
    text = "" if version is None else (json.dumps(version) if isinstance(version, bool | dict | list)
                                       else str(version))
    if not text:
        raise HostConfigError(f"The host.json file is missing the required 'version' property. "
                              f"{HOSTJSON_HELP} for steps to migrate the configuration file. ({path})")
    if text != "2.0":
        message = (f"'{text}' is an invalid value for host.json 'version' property. "
                   "We recommend you set the 'version' property to '2.0'. ")
        if text.startswith("3"):
            message += ("This does not correspond to the function runtime version, only to the schema "
                        "version of the host.json file. ")
        raise HostConfigError(f"{message}{HOSTJSON_HELP} for more information on this configuration file. "
                              f"({path})")
    return data


def load_local_settings(app_dir: Path) -> dict[str, str]:
    """``Values`` of ``local.settings.json`` (empty if the file is absent)."""
    path = app_dir / "local.settings.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    values = data.get("Values") or {}
    return {str(k): str(v) for k, v in values.items()}


class FunctionsHost:
    """Runs one Python v2-model function app with Durable Functions; see the module docstring."""

    def __init__(
        self,
        app_dir: Path | str,
        clock: Clock,
        *,
        port: int = 0,
        storage: str = ":memory:",
        settings: dict[str, str] | None = None,
        function_key: str | None = None,
        host: str = "127.0.0.1",
        max_batch_delay: float | None = 2.0,
        activity_workers: int | None = None,
        max_batch_size: int | None = None,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.clock = clock
        self.port = port
        self.storage = storage
        self.settings = dict(settings or {})
        self._explicit_key = function_key
        self.bind_host = host
        self.max_batch_delay = max_batch_delay
        self.activity_workers = activity_workers
        self.max_batch_size = max_batch_size
        self.function_key = ""
        self.master_key = ""
        self.system_keys: dict[str, str] = {}  # durabletask_extension, eventgrid_extension
        self.index: AppIndex | None = None
        self.engine: DurableEngine | None = None
        self.triggers: TriggerHandlers | None = None
        self.store: Store | None = None
        self._runner: web.AppRunner | None = None
        self._saved_env: dict[str, str | None] = {}

    # ------------------------------------------------------------------ properties
    @property
    def base_url(self) -> str:
        return f"http://{self.bind_host}:{self.port}"

    def eventgrid_url(self, function_name: str) -> str:
        """The Event Grid webhook of a function, with the ``eventgrid_extension`` system key."""
        return (f"{self.base_url}/runtime/webhooks/eventgrid?functionName={function_name}"
                f"&code={self.system_keys.get(EVENTGRID_KEY, '')}")

    def client_binding_json(self) -> str:
        """The ``durableClient`` binding string (also handy for tests building a client); its
        webhook URLs carry the ``durabletask_extension`` system key, as on Azure."""
        return client_binding(self.base_url, self.system_keys.get(DURABLETASK_KEY, ""))

    # ------------------------------------------------------------------ lifecycle
    def _apply_settings(self) -> None:
        values = load_local_settings(self.app_dir)
        values.update(self.settings)
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _restore_env(self) -> None:
        for key, old in self._saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self._saved_env.clear()

    async def start(self) -> None:
        self._apply_settings()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self.function_key = (self._explicit_key or os.environ.get("FUNCTIONS_KEY")
                             or secrets.token_urlsafe(30))
        self.master_key = os.environ.get("FUNCTIONS_MASTER_KEY") or secrets.token_urlsafe(30)
        self.system_keys = {name: os.environ.get(system_key_setting(name)) or system_key(self.function_key, name)
                            for name in SYSTEM_KEY_NAMES}
        host_json = load_host_json(self.app_dir)  # read first, as the Functions host does
        sdk_session.install()
        self.index = index_app(self.app_dir)
        extensions = host_json.get("extensions") or {}
        route_prefix = str((extensions.get("http") or {}).get("routePrefix", "api"))
        durable = extensions.get("durableTask") or {}
        workers = self.activity_workers or int(durable.get("maxConcurrentActivityFunctions") or 16)
        self.triggers = TriggerHandlers(
            self.index, self.clock,
            client_json=self.client_binding_json,
            function_key=lambda: self.function_key,
            master_key=lambda: self.master_key,
            eventgrid_key=lambda: self.system_keys[EVENTGRID_KEY],
            route_prefix=route_prefix,
        )
        if self.storage != ":memory:":
            Path(self.storage).parent.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.storage)
        self.engine = DurableEngine(self.index, self.clock, self.store,
                                    activity_workers=workers,
                                    max_batch_delay=self.max_batch_delay,
                                    client_json=self.client_binding_json,
                                    max_batch_size=self.max_batch_size,
                                    default_version=str(durable.get("defaultVersion") or ""))
        app = web.Application(middlewares=[busy_middleware(self.clock)], client_max_size=64 * 1024 * 1024)
        durable_api = DurableApi(self.engine, lambda: self.base_url, lambda: self.system_keys[DURABLETASK_KEY],
                                 lambda: self.master_key)
        durable_api.add_routes(app)
        durable_api.add_admin_routes(app)
        add_clock_routes(app, self.clock)  # /admin/clock: state, leases, advance (emulator.clock_http)
        self.triggers.add_routes(app)
        app.router.add_get("/", self._root)
        app.router.add_get("/admin/host/status", self._host_status)
        self.triggers.add_http_routes(app)
        # A stopping host does not wait 60 s (aiohttp's default) for in-flight requests: a host
        # that stops is a host that crashed or is being restarted, and the tests restart it.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind_host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        await self.engine.start()
        self.triggers.start_timers()
        log.info("Functions host for %s listening on %s", self.app_dir, self.base_url)

    async def stop(self) -> None:
        if self.triggers is not None:
            await self.triggers.stop_timers()
        if self.engine is not None:
            await self.engine.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.store is not None:
            self.store.close()
            self.store = None
        await sdk_session.close_loop_session()
        self._restore_env()

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response({"state": "Running", "app": str(self.app_dir)})

    async def _host_status(self, request: web.Request) -> web.Response:
        return web.json_response({"state": "Running", "functions": sorted(
            e.name for e in (self.index.functions.values() if self.index else []))})

    # ------------------------------------------------------------------ descriptions
    def describe_routes(self) -> list[str]:
        """``func start``-style lines: one per function."""
        lines: list[str] = []
        if self.index is None or self.triggers is None:
            return lines
        for route in self.triggers.routes:
            methods = ",".join(sorted(route.methods)) if route.methods else "GET,POST,PUT,DELETE,PATCH"
            lines.append(f"{route.entry.name}: [{methods}] {self.triggers.url_for(self.base_url, route)}")
        for entry in self.index.functions.values():
            if entry.trigger_type == "httpTrigger":
                continue
            extra = ""
            if entry.trigger_type == "eventGridTrigger":
                extra = f"  {self.eventgrid_url(entry.name)}"
            elif entry.trigger_type == "timerTrigger":
                extra = f"  schedule '{self.triggers.schedules.get(entry.name)}'"
            elif entry.durable_name and entry.durable_name != entry.name:
                extra = f"  (durable name '{entry.durable_name}')"
            lines.append(f"{entry.name}: {entry.trigger_type}{extra}")
        return lines
