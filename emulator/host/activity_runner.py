"""The activity runner: a queue of scheduled activities, worker tasks, and the pool they run on.

Why a separate object: activities are the one part of the engine with their own resources (a
work queue, a thread pool, the ``activityTrigger`` codec, per-instance in-flight counts) and a
narrow contract with the rest: take ``(instance, execution, task id)`` work items, run the
activity as the Python worker would (input decoded and the result encoded by the SDK's
``activityTrigger`` binding; sync functions on the pool, coroutines awaited on the loop), and
hand back one ``TaskCompleted`` / ``TaskFailed`` event if the instance still wants it. It talks
to the engine only through :class:`ActivityHost`.

Busy accounting (see :mod:`emulator.clock`): a queued activity holds one unit of the engine's
work count from :meth:`ActivityRunner.enqueue` until its worker is done with it, and a running
one is also inside ``clock.busy()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import azure.functions as func
from azure.functions import meta

from emulator.clock import Clock
from emulator.host import history as h
from emulator.host.indexing import AppIndex, FunctionEntry
from emulator.host.invocation import make_context

if TYPE_CHECKING:
    from emulator.host.instance import Instance

__all__ = ["ActivityHost", "ActivityRunner"]

log = logging.getLogger("emulator.host")


class ActivityHost(Protocol):
    """What the activity runner needs from the engine (implemented by :class:`~emulator.host.core.EngineCore`)."""

    stats: dict[str, float]

    def still_wanted(self, instance_id: str, execution_id: str, seq: int | None = None) -> Instance | None: ...

    def deliver(self, inst: Instance, event: dict[str, Any]) -> None: ...

    def work_add(self, n: int) -> None: ...

    def work_done(self, n: int) -> None: ...

    def activity_settled(self, instance_id: str) -> None: ...


def _user_stack(exc: BaseException) -> str:
    """The traceback without the host's own frames (what the worker reports as ``Stack``)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/emulator/host/" not in f.filename and "/concurrent/futures/" not in f.filename]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames),
             *traceback.format_exception_only(type(exc), exc)]
    return "".join(lines)


class ActivityRunner:
    """Scheduled activities: a queue, ``workers`` worker tasks and a thread pool of the same size."""

    def __init__(
        self,
        host: ActivityHost,
        index: AppIndex,
        clock: Clock,
        *,
        workers: int,
        client_json: Callable[[], str] | None,
    ) -> None:
        self.host = host
        self.index = index
        self.clock = clock
        self._workers = workers
        self._client_json = client_json
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="activity")
        self._queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
        self._inflight: dict[str, int] = {}
        self._codec = func.get_binding_registry().get("activityTrigger")

    def start(self) -> list[asyncio.Task[None]]:
        """Start the worker tasks (the caller cancels them when it stops)."""
        return [asyncio.create_task(self._worker(), name=f"activity-{i}") for i in range(self._workers)]

    def shutdown(self) -> None:
        """Drop queued pool work without waiting for running activities (a stopping host)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def in_flight(self, instance_id: str) -> int:
        """How many of the instance's activities are queued or running."""
        return self._inflight.get(instance_id, 0)

    def enqueue(self, inst: Instance, seq: int) -> None:
        """Queue the pending activity ``seq`` of the instance's current execution."""
        self.host.work_add(1)
        self._inflight[inst.instance_id] = self._inflight.get(inst.instance_id, 0) + 1
        self._queue.put_nowait((inst.instance_id, inst.execution_id, seq))

    async def _worker(self) -> None:
        while True:
            instance_id, execution_id, seq = await self._queue.get()
            try:
                await self._run(instance_id, execution_id, seq)
            except Exception:  # never let one activity kill the worker
                log.exception("activity worker error")
            finally:
                count = self._inflight.get(instance_id, 1) - 1
                if count <= 0:
                    self._inflight.pop(instance_id, None)
                else:
                    self._inflight[instance_id] = count
                self.host.work_done(1)
                self.host.activity_settled(instance_id)

    async def _run(self, instance_id: str, execution_id: str, seq: int) -> None:
        inst = self.host.still_wanted(instance_id, execution_id, seq)
        if inst is None:
            return
        p = inst.pending[seq]
        name, input_text = p["name"], p.get("input")
        entry = self.index.activity(name)
        started = time.perf_counter()
        if entry is None:
            event = h.task_failed(
                self.clock.now(), seq,
                f"Activity function '{name}' failed: The function '{name}' doesn't exist, is disabled, "
                "or is not an activity function.", "",
            )
            outcome = "NotFound"
        else:
            event, outcome = await self._invoke(entry, seq, input_text)
        self.host.stats["activities"] += 1
        log.info(
            "Executed activity '%s' (instance=%s, task=%d) in %.1fms: %s",
            name, instance_id, seq, (time.perf_counter() - started) * 1000, outcome,
        )
        inst = self.host.still_wanted(instance_id, execution_id, seq)
        if inst is None:
            return
        self.host.deliver(inst, event)

    async def _invoke(self, entry: FunctionEntry, seq: int, input_text: str | None) -> tuple[dict[str, Any], str]:
        with self.clock.busy():
            try:
                value = self._codec.decode(
                    meta.Datum(type="json", value=input_text if input_text is not None else "null"),
                    trigger_metadata={},
                )
                kwargs: dict[str, Any] = {entry.trigger_name: value}
                if entry.wants_context:
                    kwargs["context"] = make_context(entry, self.index.app_dir)
                if entry.client_name and self._client_json is not None:
                    kwargs[entry.client_name] = self._client_json()
                if entry.is_coroutine:
                    result = await entry.user_function(**kwargs)
                else:
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(
                        self._pool, functools.partial(entry.user_function, **kwargs)
                    )
                    if asyncio.iscoroutine(result):
                        result = await result
                encoded = self._codec.encode(result, expected_type=None)
                return h.task_completed(self.clock.now(), seq, encoded.value if encoded else None), "Succeeded"
            except Exception as exc:
                kind = type(exc).__name__
                stack = _user_stack(exc)
                reason = f"Activity function '{entry.durable_name}' failed: {kind}: {exc}"
                details = f"Result: Failure\nException: {kind}: {exc}\nStack: {stack}"
                return h.task_failed(self.clock.now(), seq, reason, details), f"Failed ({kind}: {exc})"
