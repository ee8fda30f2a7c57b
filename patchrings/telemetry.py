"""Structured logs with the rollout on every line, and Application Insights in Azure (issue 9).

What it does, and why this way:

* **A log context per invocation.** A :class:`contextvars.ContextVar` holds the fields of the
  invocation that is running (``rolloutId``, ``ring``, ``function``, ``instanceId``); a handler
  filter (:class:`ContextFilter`, put on the root logger's handlers and the exporter's handler by
  :func:`configure`) copies them onto every record while they are bound. Nothing is removed or
  replaced: the Functions worker's own handler (which forwards records to the host) keeps working
  and simply carries the extra attributes. Application Insights turns them into custom
  dimensions; the local :class:`KeyValueFormatter` prints them as ``key=value`` (it also reads the
  bound context itself, so a handler without the filter still prints them).
* **Bound without editing every entry point.** :func:`configure` (first line of
  ``function_app.py``, after its imports) wraps the user function of every function of the
  blueprints imported so far (:func:`instrument_blueprints`; ``telemetry.instrument(app)`` after
  registration does the same, idempotently): activities bind what their input says
  (``rolloutId``, ``ring``, or the rollout part of a ``runId`` such as ``<rolloutId>:ring0``),
  orchestrators bind their instance id and the
  rollout from their input (sub-orchestration ids start with ``<rolloutId>:``); HTTP and Event
  Grid functions are not wrapped (``http_fields`` + ``bind`` for their ``{id}``). The wrapper
  keeps the signature (``functools.wraps``: the worker reads parameter names and annotations
  through ``__wrapped__``) and the coroutine-ness. Entry points
  can also bind explicitly with :func:`activity_context` (``activities.with_log_context``) or
  :func:`bind`.
* **Application Insights only when asked for.** :func:`configure` calls azure-monitor-opentelemetry's
  ``configure_azure_monitor`` only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (Azure;
  off locally), for the ``patchrings`` loggers (the app's own; the SDKs' per-request HTTP logging
  stays out of the bill), with a span processor that stamps the bound fields on every span (the
  ARM calls the Azure SDK instrumentation records become dependencies carrying ``rolloutId``),
  authenticated with the app's managed identity when ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
  says ``Authorization=AAD`` (infra/ disables key-based ingestion).
  Any failure there is logged and start-up continues with plain logs: telemetry never stops the app.

One rollout end to end in Application Insights::

    union traces, dependencies
    | where customDimensions.rolloutId == "<rollout id>"
    | order by timestamp asc

Orchestrators replay: their code already logs only when ``not context.is_replaying``; the
binding itself has no side effect, so replays cost nothing here.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

log = logging.getLogger("patchrings.telemetry")

CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTH_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
#: The loggers exported to Application Insights (every app module logs under ``patchrings.``).
APP_LOGGER = "patchrings"
#: The fields bound per invocation, in the order the key=value formatter prints them.
FIELDS = ("rolloutId", "ring", "function", "instanceId")
#: Orchestrators whose instance id is the rollout id (``orchestrators/names.py`` ROLLOUT).
ROLLOUT_ORCHESTRATORS = frozenset({"rollout_orchestrator"})

_context: ContextVar[Mapping[str, str]] = ContextVar("patchrings_log_context", default={})  # noqa: B039 -- never mutated
_state: dict[str, Any] = {"instrumented": 0, "filtered": 0, "azureMonitor": False, "error": None}


# --------------------------------------------------------------------------- the context
def current() -> dict[str, str]:
    """The fields bound for the running invocation (empty outside one)."""
    return dict(_context.get())


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[dict[str, str]]:
    """Bind ``fields`` (None / empty values are ignored) on top of the current ones, for the block."""
    merged = {**_context.get(), **{k: str(v) for k, v in fields.items() if v not in (None, "")}}
    token = _context.set(merged)
    try:
        yield merged
    finally:
        with contextlib.suppress(ValueError):  # reset from another context (a generator resumed elsewhere)
            _context.reset(token)


def _rollout_of(run_id: Any) -> str | None:
    """``<rolloutId>`` from ``<rolloutId>:ring0[:2]`` (direct rings' run ids, sub-orchestration ids)."""
    text = str(run_id or "")
    return text.split(":", 1)[0] if ":" in text and not text.startswith("/") else None


def payload_fields(payload: Any) -> dict[str, str]:
    """What an activity input says about the rollout: ``rolloutId`` / ``ring`` (or a ``runId``'s rollout)."""
    if not isinstance(payload, Mapping):
        return {}
    rollout = payload.get("rolloutId") or _rollout_of(payload.get("runId"))
    ring = payload.get("ring")
    fields = {"rolloutId": rollout, "ring": ring if isinstance(ring, str) else None}
    return {k: str(v) for k, v in fields.items() if v}


def orchestration_fields(context: Any, root: bool = False) -> dict[str, str]:
    """Instance id and rollout of an orchestration trigger's context (object with ``body``, JSON or dict).

    The rollout comes from the input's ``rolloutId`` or from an instance id ``<rolloutId>:...``
    (sub-orchestrations); ``root``: the instance id *is* the rollout id (the rollout orchestrator).
    """
    body = getattr(context, "body", context)
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError:
            return {}
    if not isinstance(body, Mapping):
        return {}
    instance = str(body.get("instanceId") or "")
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        with contextlib.suppress(ValueError):
            raw_input = json.loads(raw_input)
    fields = payload_fields(raw_input)
    rollout = _rollout_of(instance) or (instance if root else None)
    if "rolloutId" not in fields and rollout:
        fields["rolloutId"] = rollout
    if instance:
        fields["instanceId"] = instance
    return fields


def http_fields(kwargs: Mapping[str, Any]) -> dict[str, str]:
    """The rollout an HTTP call is about: the ``{id}`` (and ``{ring}``) of its route."""
    for value in kwargs.values():
        params = getattr(value, "route_params", None)
        if isinstance(params, Mapping):
            return {k: str(v) for k, v in (("rolloutId", params.get("id")), ("ring", params.get("ring"))) if v}
    return {}


# --------------------------------------------------------------------------- wrapping entry points
def _wrap(fn: Callable[..., Any], name: str, fields_of: Callable[[tuple[Any, ...], dict[str, Any]], dict[str, str]]
          ) -> Callable[..., Any]:
    if getattr(fn, "__patchrings_log_context__", False):
        return fn

    def fields(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
        try:
            return {"function": name, **fields_of(args, kwargs)}
        except Exception:  # a log context must never fail an invocation
            return {"function": name}

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with bind(**fields(args, kwargs)):
                return await fn(*args, **kwargs)

        wrapper: Callable[..., Any] = async_wrapper
    else:
        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with bind(**fields(args, kwargs)):
                return fn(*args, **kwargs)

        wrapper = sync_wrapper
    wrapper.__patchrings_log_context__ = True  # type: ignore[attr-defined]
    return wrapper


def _first_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else next(iter(kwargs.values()), None)


def activity_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for an activity entry point: its input's rollout / ring are bound while it runs."""
    return _wrap(fn, fn.__name__, lambda a, k: payload_fields(_first_arg(a, k)))


def orchestrator_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for an orchestration trigger's handle: instance id and rollout bound while it runs."""
    root = fn.__name__ in ROLLOUT_ORCHESTRATORS
    return _wrap(fn, fn.__name__, lambda a, k: orchestration_fields(_first_arg(a, k), root))


def _orchestration_args(root: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    return orchestration_fields(_first_arg(args, kwargs), root)


def instrument_blueprints(packages: tuple[str, ...] = ("activities", "orchestrators", "triggers")) -> int:
    """Instrument the ``bp`` blueprint of every module of ``packages`` imported so far.

    Why: :func:`configure` runs at the top of ``function_app.py`` after its imports and before
    ``app.register_functions(bp)``, which adds the blueprints' own function builders to the app;
    wrapping them here therefore instruments the app without another line in it.
    """
    count = 0
    for name, module in list(sys.modules.items()):
        if name.split(".", 1)[0] in packages and module is not None:
            blueprint = getattr(module, "bp", None)
            if blueprint is not None and hasattr(blueprint, "_function_builders"):
                count += instrument(blueprint)
    return count


def instrument(app: Any) -> int:
    """Wrap every function registered on ``app`` (a ``df.DFApp`` or a ``df.Blueprint``) so its
    invocations bind a log context. Idempotent. Returns how many functions were wrapped now.
    """
    count = 0
    for builder in getattr(app, "_function_builders", []):
        function = getattr(builder, "_function", None)
        user = getattr(function, "_func", None)
        if function is None or not callable(user):
            continue
        trigger = getattr(function, "get_trigger", lambda: None)()
        kind = str(getattr(trigger, "type", "") or "")
        name = str(getattr(function, "get_function_name", lambda: None)() or getattr(user, "__name__", "function"))
        if kind == "activityTrigger":
            wrapped = _wrap(user, name, lambda a, k: payload_fields(_first_arg(a, k)))
        elif kind == "orchestrationTrigger":
            wrapped = _wrap(user, name, functools.partial(_orchestration_args, name in ROLLOUT_ORCHESTRATORS))
        else:
            # HTTP and Event Grid functions are left as they are: the Durable client middleware
            # wraps them already (tests and tools unwrap it by one ``__wrapped__``), and their log
            # lines name the rollout they act on. ``http_fields`` serves an explicit ``bind``.
            continue
        if wrapped is not user:
            function._func = wrapped
            count += 1
    return count


# --------------------------------------------------------------------------- records and lines
class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record passing through a handler; never drops a record.

    A handler filter rather than a record factory: it runs after ``extra=`` is applied, so a call
    such as ``log.info(..., extra={"rolloutId": ...})`` keeps its own value and can never collide
    (``Logger.makeRecord`` raises KeyError when ``extra`` names an attribute the record already has).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


_FILTER = ContextFilter()


def attach(handlers: list[logging.Handler]) -> int:
    """Put the context filter on ``handlers`` (idempotent); returns how many got it now."""
    count = 0
    for handler in handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(_FILTER)
            count += 1
    return count


class KeyValueFormatter(logging.Formatter):
    """``time=... level=INFO logger=... rollout=... ring=... function=... msg="..."`` (one line, UTC).

    The fields come from the record (the context filter or ``extra=``), else from the context
    bound where the record is formatted (handlers format in the thread that logs).
    """

    NAMES = {"rolloutId": "rollout", "ring": "ring", "function": "function", "instanceId": "instance"}
    converter = time.gmtime  # type: ignore[assignment]  # UTC, like every time the app writes

    def format(self, record: logging.LogRecord) -> str:
        bound = _context.get()
        parts = [
            f"time={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}.{int(record.msecs):03d}Z",
            f"level={record.levelname}",
            f"logger={record.name}",
        ]
        for field in FIELDS:
            value = getattr(record, field, None) or bound.get(field)
            if value:
                parts.append(f"{self.NAMES[field]}={_quote(str(value))}")
        parts.append(f"msg={json.dumps(record.getMessage(), ensure_ascii=False)}")
        if record.exc_info:
            parts.append(f"exc={json.dumps(self.formatException(record.exc_info), ensure_ascii=False)}")
        return " ".join(parts)


def _quote(value: str) -> str:
    return value if value and all(c.isprintable() and c not in ' "=' for c in value) else json.dumps(value)


# --------------------------------------------------------------------------- start-up
def _context_span_processor() -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class RolloutSpanProcessor(SpanProcessor):
        """Stamps the bound log context on every span started inside an invocation."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            fields = _context.get()
            if fields:
                span.set_attributes(dict(fields))

    return RolloutSpanProcessor()


def _ingestion_credential(env: Mapping[str, str]) -> dict[str, Any]:
    """``credential=`` for Entra ID ingestion when the Functions host is told to use it.

    infra/ creates the Application Insights resource with local (key) authentication disabled and
    sets ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD`` (``;ClientId=<id>`` for a
    user-assigned identity), which the host reads; the exporter needs the same as a credential, or
    every upload is refused (401).
    """
    auth = {k.strip().lower(): v.strip() for k, _, v in
            (part.partition("=") for part in (env.get(AUTH_SETTING) or "").split(";") if part.strip())}
    if auth.get("authorization", "").lower() != "aad":
        return {}
    from azure.identity import ManagedIdentityCredential

    client_id = auth.get("clientid")
    return {"credential": ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()}


def configure(environ: Mapping[str, str] | None = None,
              configure_azure_monitor: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Set up logging / tracing once per worker process; never raises.

    Always: the blueprints imported so far are instrumented (:func:`instrument_blueprints`) and
    the context filter goes on the handlers present now (the worker's, or the local platform's).
    With ``APPLICATIONINSIGHTS_CONNECTION_STRING``: Application Insights through
    azure-monitor-opentelemetry for the ``patchrings`` loggers and spans. Returns what it did
    (``{"instrumented": functions wrapped, "filtered": handlers given the filter,
    "azureMonitor": bool, "error": str | None}``).
    """
    env = os.environ if environ is None else environ
    try:
        _state["instrumented"] += instrument_blueprints()
        _state["filtered"] += attach(list(logging.getLogger().handlers) + list(logging.getLogger(APP_LOGGER).handlers))
    except Exception as err:  # telemetry never stops the app
        _state["error"] = f"log context: {err}"
        log.warning("structured log context not attached: %s", err)
    connection = (env.get(CONNECTION_SETTING) or "").strip()
    if not connection or _state["azureMonitor"]:
        return dict(_state)
    try:
        setup: Callable[..., Any]
        if configure_azure_monitor is not None:
            setup = configure_azure_monitor
        else:
            from azure.monitor.opentelemetry import configure_azure_monitor as setup
        setup(
            connection_string=connection,
            logger_name=APP_LOGGER,
            span_processors=[_context_span_processor()],
            **_ingestion_credential(env),
        )
        # the exporter's handler (on the app's logger) gets the fields as attributes: custom dimensions
        _state["filtered"] += attach(list(logging.getLogger(APP_LOGGER).handlers))
        _state.update(azureMonitor=True, error=None)
    except Exception as err:  # a bad connection string or exporter must not stop start-up
        _state["error"] = f"Application Insights: {type(err).__name__}: {err}"
        log.warning("Application Insights not configured (%s: %s); logging continues without it",
                    type(err).__name__, err)
    return dict(_state)
