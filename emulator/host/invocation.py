"""Invoking non-durable functions the way the Python worker does (reference §7.5-§7.7).

Why: HTTP, Event Grid and timer functions must receive the same objects the worker passes
(``func.HttpRequest``, ``func.EventGridEvent``/CloudEvent, ``TimerRequest``), a
``func.Context`` when they ask for a ``context`` parameter, and - for functions with a
durable client binding - the binding JSON *string*, which the SDK's own
``df_client_middleware`` turns into a ``DurableOrchestrationClient``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import _abc

from emulator.host.indexing import FunctionEntry

__all__ = ["HostContext", "invoke_function", "make_context"]

log = logging.getLogger("emulator.host")


class _TraceContext(_abc.TraceContext):
    def __init__(self) -> None:
        self._tp = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._tp

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class HostContext(func.Context):
    """The ``context`` parameter the worker injects (invocation id, function name, ...)."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._tls = threading.local()
        self._tls.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> _abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> _abc.RetryContext:
        return _RetryContext()


def make_context(entry: FunctionEntry, app_dir: Path) -> HostContext:
    return HostContext(entry.name, str(app_dir))


async def invoke_function(
    entry: FunctionEntry,
    trigger_value: Any,
    *,
    app_dir: Path,
    client_json: str | None,
    label: str = "",
) -> Any:
    """Call a trigger function with its trigger value (and client / context); log one line."""
    kwargs: dict[str, Any] = {entry.trigger_name: trigger_value}
    if entry.client_name:
        kwargs[entry.client_name] = client_json
    if entry.wants_context:
        kwargs["context"] = make_context(entry, app_dir)
    invocation_id = str(uuid.uuid4())
    log.info("Executing %s '%s'%s (Id=%s)", entry.trigger_type, entry.name, f" ({label})" if label else "",
             invocation_id)
    started = time.perf_counter()
    outcome = "Succeeded"
    try:
        fn = entry.user_function
        if inspect.iscoroutinefunction(fn):
            result = await fn(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(None, functools.partial(fn, **kwargs))
            if asyncio.iscoroutine(result):
                result = await result
        return result
    except Exception as exc:
        outcome = f"Failed ({type(exc).__name__}: {exc})"
        raise
    finally:
        log.info(
            "Executed %s '%s'%s (Id=%s) in %.1fms: %s",
            entry.trigger_type, entry.name, f" ({label})" if label else "", invocation_id,
            (time.perf_counter() - started) * 1000, outcome,
        )
