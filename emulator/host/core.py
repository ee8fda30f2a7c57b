"""The engine's shared state and the primitives every part of it uses.

Why a base class: replay (:mod:`emulator.host.replay`), client operations
(:mod:`emulator.host.client_ops`) and the scheduler (:mod:`emulator.host.engine`) all change the
same instance state machine. Replay and client operations are mixins over :class:`EngineCore`,
and :class:`~emulator.host.engine.DurableEngine` (the scheduler) combines them. The base owns that state
(instances, inboxes, the ready set, durable timers, the busy count, change watchers) and the few
operations on it that must be done one way only: enqueue an event, arm a timer, persist, forget
an instance, and decide whether a late result is still wanted (:meth:`EngineCore.still_wanted`).
The activity runner is a separate object (:class:`~emulator.host.activity_runner.ActivityRunner`)
with its own queue and pool; it reaches the engine only through the small
:class:`~emulator.host.activity_runner.ActivityHost` interface this class implements.

All of it is owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from emulator.clock import Clock
from emulator.host import history as h
from emulator.host.activity_runner import ActivityRunner
from emulator.host.indexing import AppIndex
from emulator.host.instance import TERMINAL, Instance
from emulator.host.store import Store

__all__ = ["EngineCore"]


class EngineCore:
    """Instances and their runtime state; the primitives replay, client operations and the scheduler share."""

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
        self.max_batch_size = max_batch_size  # None = unlimited; 1 = the naive one-event-per-episode host
        self.clock = clock
        self.store = store
        self.instances: dict[str, Instance] = {}
        self.max_batch_delay = max_batch_delay
        # orchestrator_cpu_seconds: CPU time of orchestrator episodes (replay.cpu_timed), issue 11
        self.stats: dict[str, float] = {"episodes": 0, "replayed_events": 0, "activities": 0,
                                        "duplicate_completions": 0, "orchestrator_cpu_seconds": 0.0}
        self._episode_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="orchestrator")
        self.activities = ActivityRunner(self, index, clock, workers=activity_workers, client_json=client_json)
        self._ready: dict[str, None] = {}
        self._timers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._work = 0
        self._watchers: dict[str, list[asyncio.Future[None]]] = {}

    # ================================================================== hooks (client_ops)
    def start_instance(
        self,
        name: str,
        instance_id: str | None,
        input_text: str | None,
        *,
        parent: dict[str, Any] | None = None,
        version: str | None = None,
    ) -> Instance:
        """Start an instance (a client start, or a sub-orchestration); see :class:`ClientOps`."""
        raise NotImplementedError

    # ================================================================== is a result still wanted
    def still_wanted(self, instance_id: str, execution_id: str, seq: int | None = None) -> Instance | None:
        """The instance a late result is for, or None when nobody wants it any more.

        A result (an activity's event, a fired timer, a child's completion, an episode's actions)
        is wanted only by the execution that asked for it: the instance still exists (not purged),
        it is the same execution (not restarted or continued as new), the task ``seq`` (if given)
        is still pending, and the instance has not ended (terminated while the work ran).
        """
        inst = self.instances.get(instance_id)
        if inst is None or inst.execution_id != execution_id:
            return None
        if seq is not None and seq not in inst.pending:
            return None
        if inst.status in TERMINAL:
            return None
        return inst

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
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives once the future is already done, so a stopping server's handler kept polling
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        finally:
            waiting = self._watchers.get(instance_id)
            if waiting and future in waiting:
                waiting.remove(future)
                if not waiting:
                    self._watchers.pop(instance_id, None)

    def _append_history(self, inst: Instance, events: list[dict[str, Any]]) -> None:
        for ev in events:
            ev["IsPlayed"] = True
        self.store.append_history(inst.instance_id, len(inst.history), events)
        inst.history.extend(events)

    # ================================================================== busy accounting
    def work_add(self, n: int) -> None:
        """Queued or running durable work: the clock counts the engine busy while any remains."""
        if n <= 0:
            return
        if self._work == 0:
            self.clock.enter_busy()
        self._work += n

    def work_done(self, n: int) -> None:
        if n <= 0 or self._work == 0:
            return
        self._work -= min(n, self._work)
        if self._work == 0:
            self.clock.exit_busy()

    @property
    def idle(self) -> bool:
        """No queued or running durable work (timers may still be pending)."""
        return self._work == 0

    # ================================================================== inbox and ready set
    def _enqueue(self, inst: Instance, event: dict[str, Any]) -> None:
        """Durably add an event to an instance's inbox and wake the scheduler."""
        row = self.store.add_inbox(inst.instance_id, event)
        if not inst.inbox:
            inst.inbox_since = time.monotonic()
        inst.inbox.append((row, event))
        if inst.status != "Suspended":
            self.work_add(1)
            self._mark_ready(inst)

    def deliver(self, inst: Instance, event: dict[str, Any]) -> None:
        """Enqueue a result event in its own transaction (a fired timer, an activity's outcome)."""
        with self.store.transaction():
            self._enqueue(inst, event)

    def _mark_ready(self, inst: Instance) -> None:
        self._ready[inst.instance_id] = None
        self._wake.set()

    def activity_settled(self, instance_id: str) -> None:
        """An activity of the instance ended: a batch held for it may be due now."""
        if instance_id in self._ready:
            self._wake.set()

    @staticmethod
    def _terminate_request(inst: Instance) -> dict[str, Any] | None:
        return next((ev for _, ev in inst.inbox if ev["EventType"] == h.EXECUTION_TERMINATED), None)

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

    # ================================================================== durable timers
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
        inst = self.still_wanted(instance_id, execution_id, seq)
        if inst is None:
            return
        self.deliver(inst, h.timer_fired(self.clock.now(), seq, fire_at))

    # ================================================================== forgetting runtime state
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
                self.work_done(len(inst.inbox))
            self.store.remove_inbox(row for row, _ in inst.inbox)
            inst.inbox.clear()
        self._ready.pop(inst.instance_id, None)
