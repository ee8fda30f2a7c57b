"""The durable orchestration engine: lifecycle, recovery after a restart, and the scheduler.

:class:`DurableEngine` is assembled from the modules named for what they do (see the package
docstring for the map): :mod:`~emulator.host.core` (instance state, inboxes, timers, busy
accounting, the "is this result still wanted" check), :mod:`~emulator.host.replay` (episodes and
applying them), :mod:`~emulator.host.client_ops` (start / raise / terminate / suspend / resume /
purge / restart) and :mod:`~emulator.host.activity_runner` (the activity queue and pool). This
module keeps what ties them together:

* Batching: an instance with activities still queued or running waits (up to
  ``max_batch_delay`` real seconds) so a fan-out of N costs O(N) replay work; a queued
  terminate message is processed at once, suspended or not.
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
import logging
import time

from emulator.host import history as h
from emulator.host.client_ops import ClientOps
from emulator.host.instance import ACTIVE, TERMINAL, EngineError, Instance
from emulator.host.replay import Replay, custom_status_error, invoke_orchestrator

# Instance, ACTIVE, TERMINAL and EngineError live in emulator.host.instance; they stay importable
# from here, as do the replay helpers that used to be defined here.
__all__ = ["ACTIVE", "TERMINAL", "DurableEngine", "EngineError", "Instance", "custom_status_error",
           "invoke_orchestrator"]

log = logging.getLogger("emulator.host")
STOP_WAIT_SECONDS = 5.0  # how long stop() waits for cancelled tasks to end


class DurableEngine(ClientOps, Replay):
    """Durable instances, their episodes, activities and timers; see the module docstring."""

    # ================================================================== lifecycle
    async def start(self) -> None:
        self._recover()
        self._tasks.append(asyncio.create_task(self._scheduler(), name="durable-scheduler"))
        self._tasks.extend(self.activities.start())

    async def stop(self) -> None:
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
        self.activities.shutdown()

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
                    self.activities.enqueue(inst, seq)
                elif p["kind"] in ("timer", "retry-timer"):
                    self._arm_timer(inst, seq, h.parse_ts(p["fireAt"]))
            if inst.inbox:
                inst.inbox_since = time.monotonic()
                if inst.status != "Suspended":
                    self.work_add(len(inst.inbox))
                elif self._terminate_request(inst) is not None:
                    self.work_add(1)  # as terminate() does for a suspended instance
                self._mark_ready(inst)
        if self.instances:
            log.info("recovered %d durable instance(s) from %s", len(self.instances), self.store.path)

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
                if self.activities.in_flight(iid) and self.max_batch_delay is not None:
                    wait = cand.inbox_since + self.max_batch_delay - now_mono
                    if wait > 0:
                        timeout = wait if timeout is None else min(timeout, wait)
                        continue
                elif self.activities.in_flight(iid):
                    continue
                inst = cand
                break
            if inst is None:
                self._wake.clear()
                await self._wait_woken(timeout)
                continue
            self._ready.pop(inst.instance_id, None)
            try:
                await self._episode(inst)
            except Exception as exc:
                log.exception("episode of %s crashed", inst.instance_id)
                self._fail_on_host_error(inst, exc)
            if inst.inbox and inst.status in ACTIVE and inst.status != "Suspended":
                self._ready[inst.instance_id] = None

    async def _wait_woken(self, timeout: float | None) -> None:
        """Wait until the scheduler is woken (``_wake``) or ``timeout`` real seconds pass.

        Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives after the
        wake-up has already completed the inner wait (an activity ending just before ``stop()``),
        so the scheduler went on looping and a stopping host abandoned it after
        ``STOP_WAIT_SECONDS`` ("1 task(s) had not stopped after 5 s"). ``asyncio.timeout``
        re-raises a cancellation that is not its own.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass
