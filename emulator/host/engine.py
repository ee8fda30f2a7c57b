"""The durable orchestration engine: episodes, actions, retries, timers, activities.

Why it is built this way (protocol reference §4 and §8):

* Orchestrators run only through the SDK's own ``Orchestrator`` handle with the context
  JSON, exactly as the Functions host drives the Python worker; the engine never steps a
  generator itself, so replay behaviour (ids, buffering, ``is_replaying``) is the SDK's.
* The host mirrors DTFx bookkeeping: append-only action list, depth-first sequence ids,
  retries emulated host-side (a retry timer after every failed attempt; after the last one the
  current DTFx ``RetryInterceptor`` creates a back-compat timer that fires at once),
  completion held while un-cancelled timers or in-flight tasks remain, non-determinism
  detected by comparing the replayed action prefix.
* Batching: events that make the SDK's retry logic allocate an id are delivered alone;
  everything else is batched, and an instance with activities still queued or running waits
  (up to ``max_batch_delay`` real seconds) so a fan-out of N costs O(N) replay work.
* Time comes only from the shared :class:`~emulator.clock.Clock`. Work that is queued or
  running (inbox events of runnable instances, activities) holds one ``busy`` token so a
  ``skip`` clock jumps only when the host is truly idle; durable timers wait through
  ``clock.sleep_until``.

All engine state is owned by the event loop thread. Orchestrator episodes run on one
dedicated worker thread (the context JSON in, the state JSON out) and activities on a
thread pool (coroutine activities are awaited on the loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import re
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import azure.functions as func
from azure.functions import meta

from emulator.clock import Clock
from emulator.host import history as h
from emulator.host.indexing import AppIndex, FunctionEntry
from emulator.host.invocation import make_context
from emulator.host.store import Store

__all__ = ["ACTIVE", "TERMINAL", "DurableEngine", "EngineError", "Instance"]

log = logging.getLogger("emulator.host")
STOP_WAIT_SECONDS = 5.0  # how long stop() waits for cancelled tasks to end

ACTIVE = ("Pending", "Running", "Suspended")
TERMINAL = ("Completed", "Failed", "Terminated", "Canceled")
OUT_OF_PROC = "\n\n$OutOfProcData$:"
LONG_TIMER_INTERVAL = "3.00:00:00"  # Azure Storage LongRunningTimerIntervalLength
MAX_SHORT_TIMER = "6.00:00:00"  # Azure Storage MaximumDelayTime


class EngineError(Exception):
    """A client-visible engine error with a stable ``code`` and an HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class OrchestrationFailure(Exception):
    """A failure decided by the host itself (non-determinism, unsupported action)."""


@dataclass
class Instance:
    """One orchestration instance; ``meta()`` is what the store keeps besides history/inbox."""

    instance_id: str
    name: str
    execution_id: str
    status: str
    input_text: str | None
    created: datetime
    updated: datetime
    output: Any = None
    custom_status: Any = None
    parent: dict[str, Any] | None = None
    prev_actions: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 0
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    groups: dict[int, dict[str, Any]] = field(default_factory=dict)
    episodes: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    inbox: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    inbox_since: float = 0.0
    version: str = ""

    def meta(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "version": self.version,
            "name": self.name,
            "executionId": self.execution_id,
            "status": self.status,
            "input": self.input_text,
            "created": h.fmt_ts(self.created),
            "updated": h.fmt_ts(self.updated),
            "output": self.output,
            "customStatus": self.custom_status,
            "parent": self.parent,
            "prevActions": self.prev_actions,
            "nextId": self.next_id,
            "pending": {str(k): v for k, v in self.pending.items()},
            "groups": {str(k): v for k, v in self.groups.items()},
            "episodes": self.episodes,
        }

    @classmethod
    def from_meta(cls, m: dict[str, Any]) -> Instance:
        return cls(
            instance_id=m["instanceId"],
            name=m["name"],
            execution_id=m["executionId"],
            status=m["status"],
            input_text=m["input"],
            created=h.parse_ts(m["created"]),
            updated=h.parse_ts(m["updated"]),
            output=m.get("output"),
            custom_status=m.get("customStatus"),
            parent=m.get("parent"),
            prev_actions=m.get("prevActions") or [],
            next_id=m.get("nextId", 0),
            pending={int(k): v for k, v in (m.get("pending") or {}).items()},
            groups={int(k): v for k, v in (m.get("groups") or {}).items()},
            episodes=m.get("episodes", 0),
            version=m.get("version") or "",
        )


def _strip_cancel(value: Any) -> Any:
    """An action without its ``isCanceled`` flags (they legitimately change between episodes)."""
    if isinstance(value, dict):
        return {k: _strip_cancel(v) for k, v in value.items() if k != "isCanceled"}
    if isinstance(value, list):
        return [_strip_cancel(v) for v in value]
    return value


def _action_at(actions: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    node: Any = None
    items: list[dict[str, Any]] = actions
    for part in path.split("."):
        i = int(part)
        if i >= len(items):
            return None
        node = items[i]
        items = node.get("compoundActions") or []
    return node if isinstance(node, dict) else None


def _describe(action: dict[str, Any]) -> str:
    kind = {0: "CallActivity", 1: "CallActivityWithRetry", 2: "CallSubOrchestrator",
            3: "CallSubOrchestratorWithRetry", 4: "ContinueAsNew", 5: "CreateTimer",
            6: "WaitForExternalEvent", 11: "WhenAny", 12: "WhenAll"}.get(action.get("actionType", -1),
                                                                         str(action.get("actionType")))
    name = action.get("functionName") or action.get("externalEventName") or ""
    return f"{kind} {name!r}" if name else kind


CUSTOM_STATUS_LIMIT_KB = 16


def custom_status_error(value: Any) -> str | None:
    """The extension's custom-status size check; the error text, or None when the value is accepted.

    ``OutOfProcOrchestrationShim.ScheduleDurableTaskEvents`` (the protocol the Python worker uses)
    calls ``SetCustomStatus``, which serialises the value with ``MessagePayloadDataConverter.Serialize(
    value, maxSizeInKB: 16)``: the compact JSON's UTF-16 byte count divided by 1024 and *truncated*
    to whole KB must not exceed 16 (so up to 17,407 bytes pass). The ``ArgumentException`` fails the
    orchestration before any of the episode's actions is scheduled, and the status keeps its
    previous value.
    """
    if value is None:
        return None
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    size_kb = int(len(text.encode("utf-16-le")) / 1024.0)
    if size_kb <= CUSTOM_STATUS_LIMIT_KB:
        return None
    return (f"The UTF-16 size of the JSON-serialized payload must not exceed {CUSTOM_STATUS_LIMIT_KB:,} KB. "
            f"The current payload size is {size_kb:,} KB.")


def invoke_orchestrator(handle: Any, context_json: str) -> tuple[str | None, Exception | None, int]:
    """Run one episode through the SDK handle (worker thread). Returns (state, error, duplicate warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return handle(context_json), None, _dups(caught)
        except Exception as exc:  # the SDK's out-of-proc failure protocol
            return None, exc, _dups(caught)


def _user_stack(exc: BaseException) -> str:
    """The traceback without the host's own frames (what the worker reports as ``Stack``)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/emulator/host/" not in f.filename and "/concurrent/futures/" not in f.filename]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames),
             *traceback.format_exception_only(type(exc), exc)]
    return "".join(lines)


_DUPLICATE = re.compile(r"Potential duplicate Task completion for TaskId: (-?\d+)$")


def _dups(caught: list[warnings.WarningMessage]) -> int:
    """Numeric-id duplicate warnings: a host/SDK sequence-id mismatch.

    The SDK emits the same warning with the event *name* as TaskId when it buffers an external
    event raised before the orchestrator waits for it; that is normal and not counted.
    """
    return sum(1 for w in caught if _DUPLICATE.search(str(w.message)))


class DurableEngine:
    """Durable instances, their episodes, activities and timers; see the module docstring."""

    def __init__(
        self,
        index: AppIndex,
        clock: Clock,
        store: Store,
        *,
        activity_workers: int = 16,
        max_batch_delay: float | None = 2.0,
        client_json: Callable[[], str] | None = None,
        max_batch_size: int | None = None,
        default_version: str = "",
    ) -> None:
        self.index = index
        # host.json extensions.durableTask.defaultVersion: the version of instances and
        # sub-orchestrations started without one
        self.default_version = default_version
        self._client_json = client_json
        self.max_batch_size = max_batch_size  # None = unlimited; 1 = the naive one-event-per-episode host
        self.clock = clock
        self.store = store
        self.instances: dict[str, Instance] = {}
        self.max_batch_delay = max_batch_delay
        self.stats = {"episodes": 0, "replayed_events": 0, "activities": 0, "duplicate_completions": 0}
        self._activity_workers = activity_workers
        self._episode_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="orchestrator")
        self._activity_pool = concurrent.futures.ThreadPoolExecutor(activity_workers,
                                                                    thread_name_prefix="activity")
        self._queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
        self._ready: dict[str, None] = {}
        self._inflight: dict[str, int] = {}
        self._timers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._work = 0
        self._running = False
        self._activity_codec = func.get_binding_registry().get("activityTrigger")
        self._watchers: dict[str, list[asyncio.Future[None]]] = {}

    # ================================================================== lifecycle
    async def start(self) -> None:
        self._running = True
        self._recover()
        self._tasks.append(asyncio.create_task(self._scheduler(), name="durable-scheduler"))
        for i in range(self._activity_workers):
            self._tasks.append(asyncio.create_task(self._activity_worker(), name=f"activity-{i}"))

    async def stop(self) -> None:
        self._running = False
        tasks = [*self._tasks, *self._timers.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task stuck in a clock wait or an executor hand-off must not keep a
            # stopping (crashing) host alive for ever; what has not ended by then is abandoned.
            _, pending = await asyncio.wait(tasks, timeout=STOP_WAIT_SECONDS)
            if pending:
                log.warning("%d task(s) had not stopped after %.0f s; abandoned", len(pending), STOP_WAIT_SECONDS)
        self._tasks.clear()
        self._timers.clear()
        if self._work:
            self._work = 0
            self.clock.exit_busy()
        self._episode_pool.shutdown(wait=False, cancel_futures=True)
        self._activity_pool.shutdown(wait=False, cancel_futures=True)

    def _recover(self) -> None:
        """Reload instances after a restart: re-arm timers, re-run in-flight activities."""
        for m, hist, inbox in self.store.load_all():
            inst = Instance.from_meta(m)
            for ev in hist:
                ev["IsPlayed"] = True
            inst.history = hist
            inst.inbox = sorted(inbox, key=lambda item: item[1]["EventType"] != h.EXECUTION_STARTED)
            self.instances[inst.instance_id] = inst
            if inst.status not in ACTIVE:
                continue
            delivered = {ev.get("TaskScheduledId") for _, ev in inst.inbox}
            for seq, p in inst.pending.items():
                if p["kind"] == "activity" and seq not in delivered:
                    self._enqueue_activity(inst, seq)
                elif p["kind"] in ("timer", "retry-timer"):
                    self._arm_timer(inst, seq, h.parse_ts(p["fireAt"]))
            if inst.inbox:
                inst.inbox_since = time.monotonic()
                if inst.status != "Suspended":
                    self._work_add(len(inst.inbox))
                elif self._terminate_request(inst) is not None:
                    self._work_add(1)  # as terminate() does for a suspended instance
                self._mark_ready(inst)
        if self.instances:
            log.info("recovered %d durable instance(s) from %s", len(self.instances), self.store.path)

    # ================================================================== change notification
    def _save_meta(self, inst: Instance) -> None:
        """Persist an instance's metadata (inside the caller's transaction) and wake its watchers."""
        self.store.put_meta(inst.instance_id, inst.meta())
        self._notify_watchers(inst.instance_id)

    def _notify_watchers(self, instance_id: str) -> None:
        for future in self._watchers.pop(instance_id, []):
            if not future.done():
                future.set_result(None)

    async def wait_changed(self, instance_id: str, timeout: float) -> None:
        """Return when the instance's metadata is next saved (or purged), or after ``timeout`` real seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(instance_id, []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            waiting = self._watchers.get(instance_id)
            if waiting and future in waiting:
                waiting.remove(future)
                if not waiting:
                    self._watchers.pop(instance_id, None)

    # ================================================================== busy accounting
    def _work_add(self, n: int) -> None:
        if n <= 0:
            return
        if self._work == 0:
            self.clock.enter_busy()
        self._work += n

    def _work_done(self, n: int) -> None:
        if n <= 0 or self._work == 0:
            return
        self._work -= min(n, self._work)
        if self._work == 0:
            self.clock.exit_busy()

    @property
    def idle(self) -> bool:
        """No queued or running durable work (timers may still be pending)."""
        return self._work == 0

    # ================================================================== client operations
    def get(self, instance_id: str) -> Instance | None:
        return self.instances.get(instance_id)

    def start_instance(
        self,
        name: str,
        instance_id: str | None,
        input_text: str | None,
        *,
        parent: dict[str, Any] | None = None,
        version: str | None = None,
    ) -> Instance:
        entry = self.index.orchestrator(name)
        if entry is None:
            raise EngineError(
                "ORCHESTRATOR_NOT_FOUND",
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                f"Additional info: the local host knows these orchestrators: "
                f"{', '.join(sorted(e.durable_name or e.name for e in self.index.orchestrators.values()))}",
                400,
            )
        instance_id = instance_id or uuid.uuid4().hex
        existing = self.instances.get(instance_id)
        if existing is not None and existing.status in ACTIVE:
            raise EngineError(
                "INSTANCE_EXISTS",
                f"An Orchestration instance with the status {existing.status} already exists.",
                409,
            )
        now = self.clock.now()
        assert entry.durable_name is not None
        inst = Instance(
            instance_id=instance_id,
            name=entry.durable_name,
            execution_id=uuid.uuid4().hex,
            status="Pending",
            input_text=input_text,
            created=now,
            updated=now,
            parent=parent,
            version=self.default_version if version is None else version,
        )
        with self.store.transaction():
            if existing is not None:
                self._forget(existing)
            self.instances[instance_id] = inst
            self._save_meta(inst)
            self._enqueue(inst, self._execution_started(inst, now))
        return inst

    def _execution_started(self, inst: Instance, now: datetime) -> dict[str, Any]:
        parent = None
        if inst.parent:
            parent = {
                "Name": inst.parent.get("name"),
                "Version": inst.parent.get("version") or "",
                "TaskScheduleId": inst.parent["taskScheduledId"],
                "OrchestrationInstance": {
                    "InstanceId": inst.parent["instanceId"],
                    "ExecutionId": inst.parent["executionId"],
                },
            }
        return h.execution_started(
            now, name=inst.name, instance_id=inst.instance_id, execution_id=inst.execution_id,
            input_text=inst.input_text, parent=parent, version=inst.version,
        )

    def raise_event(self, instance_id: str, name: str, input_text: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise EngineError("INSTANCE_GONE", f"Instance {instance_id} is gone: either completed or failed", 410)
        with self.store.transaction():
            self._enqueue(inst, h.event_raised(self.clock.now(), name, input_text))

    def terminate(self, instance_id: str, reason: str | None) -> None:
        """Queue a terminate message; the status changes only when the scheduler processes it.

        As in DTFx (``TaskHubClient.TerminateInstanceAsync`` sends an ``ExecutionTerminated``
        message to the instance's queue): the call returns at once and a status read right after
        it still shows the old status. A suspended instance processes the message too.
        """
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise EngineError("INSTANCE_GONE", f"Instance {instance_id} is already {inst.status}", 410)
        with self.store.transaction():
            self._enqueue(inst, h.execution_terminated(self.clock.now(), reason))
        if inst.status == "Suspended":
            self._work_add(1)
            self._mark_ready(inst)

    @staticmethod
    def _terminate_request(inst: Instance) -> dict[str, Any] | None:
        return next((ev for _, ev in inst.inbox if ev["EventType"] == h.EXECUTION_TERMINATED), None)

    def _apply_terminate(self, inst: Instance, request: dict[str, Any]) -> None:
        """Process a queued terminate message: no user code runs, the instance ends Terminated."""
        now = self.clock.now()
        reason = request.get("Input")
        with self.store.transaction():
            if inst.status == "Suspended":
                self._work_done(1)  # the unit terminate() added for a suspended instance
            # the message's own event goes into the history, as DTFx does
            added = [dict(request), h.execution_completed(now, h.STATUS_TERMINATED, None)]
            self._append_history(inst, added)
            self._drop_runtime(inst)
            inst.status = "Terminated"
            inst.output = reason
            inst.updated = now
            self._save_meta(inst)
        log.info("Terminated orchestrator '%s' (instance=%s): %s", inst.name, inst.instance_id, reason)

    def suspend(self, instance_id: str, reason: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise EngineError("INSTANCE_GONE", f"Instance {instance_id} is already {inst.status}", 410)
        if inst.status == "Suspended":
            return
        with self.store.transaction():
            self._append_history(inst, [h.execution_suspended(self.clock.now(), reason)])
            inst.status = "Suspended"
            inst.updated = self.clock.now()
            self._work_done(len(inst.inbox))
            self._save_meta(inst)

    def resume(self, instance_id: str, reason: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise EngineError("INSTANCE_GONE", f"Instance {instance_id} is already {inst.status}", 410)
        if inst.status != "Suspended":
            return
        with self.store.transaction():
            self._append_history(inst, [h.execution_resumed(self.clock.now(), reason)])
            inst.status = "Running" if inst.episodes else "Pending"
            inst.updated = self.clock.now()
            self._work_add(len(inst.inbox))
            self._save_meta(inst)
        if inst.inbox:
            self._mark_ready(inst)

    def purge(self, instance_id: str) -> bool:
        inst = self.instances.get(instance_id)
        if inst is None:
            return False
        with self.store.transaction():
            self._forget(inst)
        return True

    def restart(self, instance_id: str, new_instance_id: bool) -> str:
        inst = self._require(instance_id)
        new_id = uuid.uuid4().hex if new_instance_id else instance_id
        if not new_instance_id and inst.status in ACTIVE:
            raise EngineError("INSTANCE_EXISTS", f"Instance {instance_id} is still {inst.status}", 409)
        self.start_instance(inst.name, new_id, inst.input_text)
        return new_id

    def _require(self, instance_id: str) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None:
            raise EngineError("INSTANCE_NOT_FOUND", f"No instance with ID '{instance_id}' found.", 404)
        return inst

    def _forget(self, inst: Instance) -> None:
        """Remove an instance from memory and the store (purge / overwrite)."""
        self._drop_runtime(inst)
        self.instances.pop(inst.instance_id, None)
        self.store.delete_instance(inst.instance_id)
        self._notify_watchers(inst.instance_id)

    def _cancel_pending(self, inst: Instance) -> None:
        """Cancel an instance's timers and forget its pending tasks and retry groups."""
        for seq in list(inst.pending):
            task = self._timers.pop((inst.instance_id, seq), None)
            if task is not None:
                task.cancel()
        inst.pending.clear()
        inst.groups.clear()

    def _drop_runtime(self, inst: Instance) -> None:
        """Cancel timers, forget pending work and undelivered events of an instance."""
        self._cancel_pending(inst)
        if inst.inbox:
            if inst.status != "Suspended":
                self._work_done(len(inst.inbox))
            self.store.remove_inbox(row for row, _ in inst.inbox)
            inst.inbox.clear()
        self._ready.pop(inst.instance_id, None)

    # ================================================================== queues
    def _enqueue(self, inst: Instance, event: dict[str, Any]) -> None:
        """Durably add an event to an instance's inbox and wake the scheduler."""
        row = self.store.add_inbox(inst.instance_id, event)
        if not inst.inbox:
            inst.inbox_since = time.monotonic()
        inst.inbox.append((row, event))
        if inst.status != "Suspended":
            self._work_add(1)
            self._mark_ready(inst)

    def _mark_ready(self, inst: Instance) -> None:
        self._ready[inst.instance_id] = None
        self._wake.set()

    def _enqueue_activity(self, inst: Instance, seq: int) -> None:
        self._work_add(1)
        self._inflight[inst.instance_id] = self._inflight.get(inst.instance_id, 0) + 1
        self._queue.put_nowait((inst.instance_id, inst.execution_id, seq))

    def _arm_timer(self, inst: Instance, seq: int, fire_at: datetime) -> None:
        key = (inst.instance_id, seq)
        old = self._timers.get(key)
        if old is not None and not old.done():
            old.cancel()  # re-armed (a recovery): an orphan would outlive stop() and fire twice
        self._timers[key] = asyncio.get_running_loop().create_task(
            self._timer(inst.instance_id, inst.execution_id, seq, fire_at), name=f"timer-{seq}"
        )

    async def _timer(self, instance_id: str, execution_id: str, seq: int, fire_at: datetime) -> None:
        await self.clock.sleep_until(fire_at)
        self._timers.pop((instance_id, seq), None)
        inst = self.instances.get(instance_id)
        if inst is None or inst.execution_id != execution_id or seq not in inst.pending:
            return
        if inst.status in TERMINAL:
            return
        with self.store.transaction():
            self._enqueue(inst, h.timer_fired(self.clock.now(), seq, fire_at))

    # ================================================================== activities
    async def _activity_worker(self) -> None:
        while True:
            instance_id, execution_id, seq = await self._queue.get()
            try:
                await self._run_activity(instance_id, execution_id, seq)
            except Exception:  # never let one activity kill the worker
                log.exception("activity worker error")
            finally:
                count = self._inflight.get(instance_id, 1) - 1
                if count <= 0:
                    self._inflight.pop(instance_id, None)
                else:
                    self._inflight[instance_id] = count
                self._work_done(1)
                if instance_id in self._ready:
                    self._wake.set()

    async def _run_activity(self, instance_id: str, execution_id: str, seq: int) -> None:
        inst = self.instances.get(instance_id)
        if inst is None or inst.execution_id != execution_id or seq not in inst.pending:
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
            event, outcome = await self._invoke_activity(entry, instance_id, seq, input_text)
        self.stats["activities"] += 1
        log.info(
            "Executed activity '%s' (instance=%s, task=%d) in %.1fms: %s",
            name, instance_id, seq, (time.perf_counter() - started) * 1000, outcome,
        )
        inst = self.instances.get(instance_id)
        if inst is None or inst.execution_id != execution_id or seq not in inst.pending:
            return
        if inst.status in TERMINAL:
            return
        with self.store.transaction():
            self._enqueue(inst, event)

    async def _invoke_activity(
        self, entry: FunctionEntry, instance_id: str, seq: int, input_text: str | None
    ) -> tuple[dict[str, Any], str]:
        with self.clock.busy():
            try:
                value = self._activity_codec.decode(
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
                        self._activity_pool, functools.partial(entry.user_function, **kwargs)
                    )
                    if asyncio.iscoroutine(result):
                        result = await result
                encoded = self._activity_codec.encode(result, expected_type=None)
                return h.task_completed(self.clock.now(), seq, encoded.value if encoded else None), "Succeeded"
            except Exception as exc:
                kind = type(exc).__name__
                stack = _user_stack(exc)
                reason = f"Activity function '{entry.durable_name}' failed: {kind}: {exc}"
                details = f"Result: Failure\nException: {kind}: {exc}\nStack: {stack}"
                return h.task_failed(self.clock.now(), seq, reason, details), f"Failed ({kind}: {exc})"

    # ================================================================== scheduler
    async def _scheduler(self) -> None:
        while True:
            timeout = None
            inst = None
            now_mono = time.monotonic()
            for iid in list(self._ready):
                cand = self.instances.get(iid)
                if cand is None or not cand.inbox or cand.status not in ACTIVE:
                    self._ready.pop(iid, None)
                    continue
                if self._terminate_request(cand) is not None:
                    inst = cand  # a terminate message is processed at once, suspended or not
                    break
                if cand.status == "Suspended":
                    self._ready.pop(iid, None)
                    continue
                if self._inflight.get(iid) and self.max_batch_delay is not None:
                    wait = cand.inbox_since + self.max_batch_delay - now_mono
                    if wait > 0:
                        timeout = wait if timeout is None else min(timeout, wait)
                        continue
                elif self._inflight.get(iid):
                    continue
                inst = cand
                break
            if inst is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            self._ready.pop(inst.instance_id, None)
            try:
                await self._episode(inst)
            except Exception as exc:
                log.exception("episode of %s crashed", inst.instance_id)
                self._fail_on_host_error(inst, exc)
            if inst.inbox and inst.status in ACTIVE and inst.status != "Suspended":
                self._ready[inst.instance_id] = None

    def _fail_on_host_error(self, inst: Instance, exc: Exception) -> None:
        """A bug in the host must not spin on the same batch forever: fail the instance loudly."""
        if inst.status in TERMINAL or self.instances.get(inst.instance_id) is not inst:
            return
        now = self.clock.now()
        message = (f"Orchestrator function '{inst.name}' failed: local host error "
                   f"({type(exc).__name__}: {exc}); see the host log")
        try:
            with self.store.transaction():
                self._drop_runtime(inst)
                self._append_history(inst, [h.execution_completed(now, h.STATUS_FAILED, json.dumps(message))])
                inst.status = "Failed"
                inst.output = message
                inst.updated = now
                self._save_meta(inst)
                self._notify_parent(inst, "Failed", message, now)
        except Exception:
            log.exception("could not record the host error for %s", inst.instance_id)
            self._drop_runtime(inst)
            inst.status = "Failed"

    def _take_batch(self, inst: Instance) -> list[tuple[int, dict[str, Any]]]:
        """The next events to deliver: retry-allocating events alone, everything else together."""
        batch: list[tuple[int, dict[str, Any]]] = []
        for row, ev in inst.inbox:
            if self.max_batch_size is not None and len(batch) >= self.max_batch_size and (
                    ev["EventType"] != h.EXECUTION_STARTED):
                break
            if self._allocates_id(inst, ev):
                if not batch:
                    batch.append((row, ev))
                break
            batch.append((row, ev))
        return batch

    @staticmethod
    def _allocates_id(inst: Instance, ev: dict[str, Any]) -> bool:
        t = ev["EventType"]
        if t in (h.TASK_FAILED, h.SUB_ORCHESTRATION_FAILED):
            p = inst.pending.get(ev["TaskScheduledId"])
            return bool(p and p.get("group") is not None)
        if t == h.TIMER_FIRED:
            p = inst.pending.get(ev["TimerId"])
            if p and p["kind"] == "retry-timer":
                group = inst.groups.get(p["group"])
                return bool(group and group["attempt"] < group["max"])
        return False

    def _context_json(self, inst: Instance, new_events: list[dict[str, Any]]) -> str:
        return json.dumps({
            "history": [*inst.history, *new_events],
            "input": json.loads(inst.input_text) if inst.input_text is not None else None,
            "instanceId": inst.instance_id,
            "isReplaying": False,
            "parentInstanceId": inst.parent["instanceId"] if inst.parent else None,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
            "longRunningTimerIntervalDuration": LONG_TIMER_INTERVAL,
            "maximumShortTimerDuration": MAX_SHORT_TIMER,
            "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
        })

    async def _episode(self, inst: Instance) -> None:
        terminate = self._terminate_request(inst)
        if terminate is not None:
            self._apply_terminate(inst, terminate)
            return
        batch = self._take_batch(inst)
        if not batch:
            return
        entry = self.index.orchestrator(inst.name)
        now = self.clock.now()
        new_events = [h.orchestrator_started(now), *(ev for _, ev in batch)]
        execution_id = inst.execution_id
        started = time.perf_counter()
        state_json: str | None = None
        error: Exception | None = None
        if entry is None:
            error = Exception(f"The orchestrator function '{inst.name}' is no longer part of the app")
        else:
            context_json = self._context_json(inst, new_events)
            loop = asyncio.get_running_loop()
            state_json, error, dups = await loop.run_in_executor(
                self._episode_pool, invoke_orchestrator, entry.user_function, context_json
            )
            if dups:
                self.stats["duplicate_completions"] += dups
                log.error("instance %s: %d duplicate task completion(s): host/SDK id mismatch",
                          inst.instance_id, dups)
        self.stats["episodes"] += 1
        self.stats["replayed_events"] += len(inst.history) + len(new_events)
        if self.instances.get(inst.instance_id) is not inst or inst.execution_id != execution_id:
            return  # purged or restarted while the episode ran
        if inst.status in TERMINAL:
            return  # terminated while the episode ran; its inbox is already dropped
        outcome = self._apply(inst, batch=batch, new_events=new_events, state_json=state_json, error=error,
                              now=now)
        log.info(
            "Executed orchestrator '%s' (instance=%s, episode=%d, events=%d) in %.1fms: %s",
            inst.name, inst.instance_id, inst.episodes, len(inst.history),
            (time.perf_counter() - started) * 1000, outcome,
        )

    # ================================================================== applying an episode
    def _apply(
        self,
        inst: Instance,
        *,
        batch: list[tuple[int, dict[str, Any]]],
        new_events: list[dict[str, Any]],
        state_json: str | None,
        error: Exception | None,
        now: datetime,
    ) -> str:
        failure: str | None = None
        state: dict[str, Any] = {}
        if error is not None:
            text = str(error)
            if OUT_OF_PROC in text:
                failure, state_text = text.split(OUT_OF_PROC, 1)
                with contextlib.suppress(ValueError):
                    state = json.loads(state_text)
            else:
                failure = text or type(error).__name__
        else:
            state = json.loads(state_json or "{}")
        with self.store.transaction():
            self.store.remove_inbox(row for row, _ in batch)
            del inst.inbox[: len(batch)]
            if inst.inbox:
                inst.inbox_since = time.monotonic()
            if inst.status != "Suspended":
                self._work_done(len(batch))
            inst.episodes += 1
            if inst.status == "Pending":
                inst.status = "Running"
            added: list[dict[str, Any]] = list(new_events)
            for _, ev in batch:
                self._bookkeep(inst, ev, now, added)
            fatal: str | None = custom_status_error(state.get("customStatus"))
            if fatal is None and failure is None:
                actions = (state.get("actions") or [[]])[0] if state.get("actions") else []
                try:
                    self._check_determinism(inst, actions)
                    self._schedule_new(inst, actions, now, added)
                    self._cancel_timers(inst, actions)
                except OrchestrationFailure as exc:
                    fatal = str(exc)
                else:
                    inst.prev_actions = actions
            if fatal is None and ("customStatus" in state or failure is None):
                inst.custom_status = state.get("customStatus")
            self._append_history(inst, added)
            inst.updated = now
            outcome = self._decide(inst, state, failure, fatal, now)
            if outcome != "ContinuedAsNew":
                self._append_history(inst, [h.orchestrator_completed(now)])
            self._save_meta(inst)
        return outcome

    def _append_history(self, inst: Instance, events: list[dict[str, Any]]) -> None:
        for ev in events:
            ev["IsPlayed"] = True
        self.store.append_history(inst.instance_id, len(inst.history), events)
        inst.history.extend(events)

    def _bookkeep(self, inst: Instance, ev: dict[str, Any], now: datetime, added: list[dict[str, Any]]) -> None:
        """Pending-task and retry bookkeeping for one delivered event (reference §4.3)."""
        t = ev["EventType"]
        if t in (h.TASK_COMPLETED, h.SUB_ORCHESTRATION_COMPLETED):
            p = inst.pending.pop(ev["TaskScheduledId"], None)
            if p and p.get("group") is not None:
                inst.groups.pop(p["group"], None)
        elif t in (h.TASK_FAILED, h.SUB_ORCHESTRATION_FAILED):
            p = inst.pending.pop(ev["TaskScheduledId"], None)
            if p and p.get("group") is not None:
                group = inst.groups[p["group"]]
                seq = inst.next_id
                inst.next_id += 1
                # DTFx RetryInterceptor since PR #661: after the *last* attempt a back-compat dummy
                # timer at CurrentUtcDateTime (fires at once), so the task fails without a delay;
                # the SDK's RetryAbleTask still waits for that TimerFired.
                last = group["attempt"] >= group["max"]
                fire_at = now if last else now + timedelta(milliseconds=group["intervalMs"])
                added.append(h.timer_created(now, seq, fire_at))
                inst.pending[seq] = {"kind": "retry-timer", "group": p["group"], "fireAt": h.fmt_ts(fire_at)}
                self._arm_timer(inst, seq, fire_at)
        elif t == h.TIMER_FIRED:
            p = inst.pending.pop(ev["TimerId"], None)
            if p and p["kind"] == "retry-timer":
                group = inst.groups[p["group"]]
                if group["attempt"] < group["max"]:
                    group["attempt"] += 1
                    seq = inst.next_id
                    inst.next_id += 1
                    self._schedule_task(inst, seq, group["kind"], name=group["name"], input_text=group["input"],
                                        child_id=group.get("instanceId"), group=p["group"], now=now,
                                        added=added, version=group.get("version"))
                else:
                    inst.groups.pop(p["group"], None)

    def _check_determinism(self, inst: Instance, actions: list[dict[str, Any]]) -> None:
        prev = inst.prev_actions
        if len(actions) < len(prev):
            raise OrchestrationFailure(
                "Non-Deterministic workflow detected: a previous execution of this orchestration scheduled "
                f"{len(prev)} actions but the replay produced only {len(actions)}. Was a change made to the "
                "orchestrator code after this instance had already started running?"
            )
        for i, (old, new) in enumerate(zip(prev, actions, strict=False)):
            if _strip_cancel(old) != _strip_cancel(new):
                raise OrchestrationFailure(
                    f"Non-Deterministic workflow detected: action #{i} was {_describe(old)} in a previous "
                    f"execution but the replay produced {_describe(new)}. Was a change made to the "
                    "orchestrator code after this instance had already started running?"
                )

    def _schedule_new(self, inst: Instance, actions: list[dict[str, Any]], now: datetime,
                      added: list[dict[str, Any]]) -> None:
        for i in range(len(inst.prev_actions), len(actions)):
            self._schedule_action(inst, actions[i], str(i), now, added)

    def _schedule_action(self, inst: Instance, action: dict[str, Any], path: str, now: datetime,
                         added: list[dict[str, Any]]) -> None:
        kind = action.get("actionType")
        if kind in (11, 12):
            for j, child in enumerate(action.get("compoundActions") or []):
                self._schedule_action(inst, child, f"{path}.{j}", now, added)
            return
        if kind == 6:
            return  # WaitForExternalEvent: no sequence id, not a DTFx task
        if kind not in (0, 1, 2, 3, 4, 5):
            raise OrchestrationFailure(
                f"{_describe(action)} (actionType {kind}) is not supported by the local host "
                "(entities and call_http are not emulated)"
            )
        seq = inst.next_id
        inst.next_id += 1
        if kind == 4:
            return  # ContinueAsNew consumes an id; handled when the episode completes
        if kind == 5:
            fire_at = h.parse_ts(action["fireAt"])
            added.append(h.timer_created(now, seq, fire_at))
            if not action.get("isCanceled"):
                inst.pending[seq] = {"kind": "timer", "fireAt": h.fmt_ts(fire_at), "path": path}
                self._arm_timer(inst, seq, fire_at)
            return
        task_kind = "activity" if kind in (0, 1) else "suborch"
        group = None
        if kind in (1, 3):
            opts = action.get("retryOptions") or {}
            group = seq
            inst.groups[seq] = {
                "kind": task_kind,
                "name": action["functionName"],
                "input": action.get("input"),
                "instanceId": action.get("instanceId"),
                "version": action.get("version"),
                "max": int(opts.get("maxNumberOfAttempts") or 1),
                "intervalMs": int(opts.get("firstRetryIntervalInMilliseconds") or 0),
                "attempt": 1,
            }
        self._schedule_task(inst, seq, task_kind, name=action["functionName"], input_text=action.get("input"),
                            child_id=action.get("instanceId"), group=group, now=now, added=added,
                            version=action.get("version"))

    def _schedule_task(self, inst: Instance, seq: int, kind: str, *, name: str, input_text: str | None,
                       child_id: str | None, group: int | None, now: datetime,
                       added: list[dict[str, Any]], version: str | None = None) -> None:
        """TaskScheduled + work item, or SubOrchestrationInstanceCreated + child instance."""
        if kind == "activity":
            added.append(h.task_scheduled(now, seq, name, input_text))
            inst.pending[seq] = {"kind": "activity", "name": name, "input": input_text, "group": group}
            self._enqueue_activity(inst, seq)
            return
        child_id = child_id or f"{inst.execution_id}:{seq}"
        # the SDK sends "version" in CallSubOrchestrator actions; none means host.json's defaultVersion
        child_version = self.default_version if version is None else version
        added.append(h.sub_created(now, seq, name, child_id, input_text, version=child_version))
        inst.pending[seq] = {"kind": "suborch", "name": name, "child": child_id, "group": group}
        parent = {"instanceId": inst.instance_id, "executionId": inst.execution_id,
                  "taskScheduledId": seq, "name": inst.name, "version": inst.version}
        try:
            # DTFx serialises the action's input (JSON text) again, as for continue-as-new
            child_input = json.dumps(input_text) if input_text is not None else None
            self.start_instance(name, child_id, child_input, parent=parent, version=child_version)
        except EngineError as exc:
            self._enqueue(inst, h.sub_failed(
                now, seq, f"Orchestrator function '{name}' failed: {exc}", ""))

    def _cancel_timers(self, inst: Instance, actions: list[dict[str, Any]]) -> None:
        for seq, p in list(inst.pending.items()):
            if p["kind"] != "timer":
                continue
            action = _action_at(actions, p["path"])
            if action is not None and action.get("isCanceled"):
                inst.pending.pop(seq)
                task = self._timers.pop((inst.instance_id, seq), None)
                if task is not None:
                    task.cancel()

    # ================================================================== terminal transitions
    def _decide(self, inst: Instance, state: dict[str, Any], failure: str | None, fatal: str | None,
                now: datetime) -> str:
        if fatal is not None:
            self._finish(inst, "Failed", f"Orchestrator function '{inst.name}' failed: {fatal}", now)
            return "Failed (host)"
        done = failure is not None or bool(state.get("isDone"))
        if not done:
            return "Running"
        if inst.pending:
            return f"Running (done, held by {len(inst.pending)} open task(s))"
        if failure is not None:
            self._finish(inst, "Failed", f"Orchestrator function '{inst.name}' failed: {failure}", now)
            return "Failed"
        can = next((a for a in inst.prev_actions if a.get("actionType") == 4), None)
        if can is not None:
            self._continue_as_new(inst, can.get("input"), now)
            return "ContinuedAsNew"
        self._finish(inst, "Completed", state.get("output"), now)
        return "Completed"

    def _finish(self, inst: Instance, status: str, output: Any, now: datetime) -> None:
        if status == "Completed":
            result = json.dumps(output)
            self._append_history(inst, [h.execution_completed(now, h.STATUS_COMPLETED, result)])
        else:
            self._append_history(inst, [h.execution_completed(
                now, h.STATUS_FAILED, json.dumps(output),
                {"ErrorType": "OrchestrationFailure", "ErrorMessage": output})])
        self._cancel_pending(inst)
        inst.status = status
        inst.output = output
        self._notify_parent(inst, status, output, now)

    def _notify_parent(self, inst: Instance, status: str, output: Any, now: datetime) -> None:
        if not inst.parent:
            return
        parent = self.instances.get(inst.parent["instanceId"])
        seq = inst.parent["taskScheduledId"]
        if parent is None or parent.execution_id != inst.parent["executionId"] or seq not in parent.pending:
            return
        if parent.status in TERMINAL:
            return
        if status == "Completed":
            event = h.sub_completed(now, seq, json.dumps(output))
        else:
            event = h.sub_failed(now, seq, str(output), "")
        self._enqueue(parent, event)

    def _continue_as_new(self, inst: Instance, input_text: str | None, now: datetime) -> None:
        """Start a new execution: fresh history and ids; undelivered events carry over."""
        self.store.clear_history(inst.instance_id)
        inst.history = []
        inst.execution_id = uuid.uuid4().hex
        inst.input_text = json.dumps(input_text) if input_text is not None else None
        inst.prev_actions = []
        inst.next_id = 0
        inst.pending.clear()
        inst.groups.clear()
        inst.output = None
        started = self._execution_started(inst, now)
        row = self.store.add_inbox(inst.instance_id, started)
        inst.inbox.insert(0, (row, started))
        inst.inbox_since = time.monotonic()
        self._work_add(1)
        self._mark_ready(inst)
