"""Orchestration replay: one episode of an instance, and applying what the orchestrator decided.

Why it is built this way (protocol reference §4 and §8):

* Orchestrators run only through the SDK's own ``Orchestrator`` handle with the context
  JSON, exactly as the Functions host drives the Python worker; the engine never steps a
  generator itself, so replay behaviour (ids, buffering, ``is_replaying``) is the SDK's.
* The host mirrors DTFx bookkeeping: append-only action list, depth-first sequence ids,
  retries emulated host-side (a retry timer after every failed attempt; after the last one the
  current DTFx ``RetryInterceptor`` creates a back-compat timer that fires at once),
  completion held while un-cancelled timers or in-flight tasks remain, non-determinism
  detected by comparing the replayed action prefix.
* Batching: events that make the SDK's retry logic allocate an id are delivered alone
  (:meth:`Replay._take_batch`); everything else is batched.

An episode: take the next batch of the inbox, run the orchestrator on the worker thread (the
context JSON in, the state JSON out), then in one store transaction remove the batch, book the
delivered events (pending tasks, retry groups), check determinism, schedule the new actions
(activities, timers, sub-orchestrations), cancel cancelled timers, set the custom status and
decide the outcome (running, completed, failed, continued as new). A queued terminate message
is processed instead of an episode (:meth:`Replay._apply_terminate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
import warnings
from datetime import datetime, timedelta
from typing import Any

from emulator.host import history as h
from emulator.host.core import EngineCore
from emulator.host.instance import EngineError, Instance

__all__ = ["CUSTOM_STATUS_LIMIT_KB", "OrchestrationFailure", "Replay", "cpu_timed", "custom_status_error",
           "invoke_orchestrator"]

log = logging.getLogger("emulator.host")

OUT_OF_PROC = "\n\n$OutOfProcData$:"
LONG_TIMER_INTERVAL = "3.00:00:00"  # Azure Storage LongRunningTimerIntervalLength
MAX_SHORT_TIMER = "6.00:00:00"  # Azure Storage MaximumDelayTime


class OrchestrationFailure(Exception):
    """A failure decided by the host itself (non-determinism, unsupported action)."""


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


def cpu_timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and the CPU seconds this thread spent in it (``time.thread_time``).

    Episodes run on the engine's one orchestrator thread, so this is the CPU time of orchestrator
    code (the SDK's replay of the context JSON included) and nothing else: activities, the ARM
    simulator and the host's own bookkeeping run on other threads (issue 11: replay CPU).
    """
    began = time.thread_time()
    value = fn(*args)
    return value, time.thread_time() - began


_DUPLICATE = re.compile(r"Potential duplicate Task completion for TaskId: (-?\d+)$")


def _dups(caught: list[warnings.WarningMessage]) -> int:
    """Numeric-id duplicate warnings: a host/SDK sequence-id mismatch.

    The SDK emits the same warning with the event *name* as TaskId when it buffers an external
    event raised before the orchestrator waits for it; that is normal and not counted.
    """
    return sum(1 for w in caught if _DUPLICATE.search(str(w.message)))


class Replay(EngineCore):
    """Episodes and their application to the instance state (a mixin of :class:`DurableEngine`)."""

    # ================================================================== one episode
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
            (state_json, error, dups), cpu = await loop.run_in_executor(
                self._episode_pool, cpu_timed, invoke_orchestrator, entry.user_function, context_json
            )
            inst.cpu_seconds += cpu  # not persisted: a measurement of this host process
            self.stats["orchestrator_cpu_seconds"] += cpu
            if dups:
                self.stats["duplicate_completions"] += dups
                log.error("instance %s: %d duplicate task completion(s): host/SDK id mismatch",
                          inst.instance_id, dups)
        self.stats["episodes"] += 1
        self.stats["replayed_events"] += len(inst.history) + len(new_events)
        if self.still_wanted(inst.instance_id, execution_id) is not inst:
            # purged or restarted while the episode ran, or terminated (its inbox is already dropped)
            return
        outcome = self._apply(inst, batch=batch, new_events=new_events, state_json=state_json, error=error,
                              now=now)
        log.info(
            "Executed orchestrator '%s' (instance=%s, episode=%d, events=%d) in %.1fms: %s",
            inst.name, inst.instance_id, inst.episodes, len(inst.history),
            (time.perf_counter() - started) * 1000, outcome,
        )

    # ================================================================== a queued terminate message
    def _apply_terminate(self, inst: Instance, request: dict[str, Any]) -> None:
        """Process a queued terminate message: no user code runs, the instance ends Terminated."""
        now = self.clock.now()
        reason = request.get("Input")
        with self.store.transaction():
            if inst.status == "Suspended":
                self.work_done(1)  # the unit terminate() added for a suspended instance
            # the message's own event goes into the history, as DTFx does
            added = [dict(request), h.execution_completed(now, h.STATUS_TERMINATED, None)]
            self._append_history(inst, added)
            self._drop_runtime(inst)
            inst.status = "Terminated"
            inst.output = reason
            inst.updated = now
            self._save_meta(inst)
        log.info("Terminated orchestrator '%s' (instance=%s): %s", inst.name, inst.instance_id, reason)

    # ================================================================== a crashed episode
    def _fail_on_host_error(self, inst: Instance, exc: Exception) -> None:
        """A bug in the host must not spin on the same batch forever: fail the instance loudly."""
        if self.still_wanted(inst.instance_id, inst.execution_id) is not inst:
            return  # already ended, or no longer this engine's instance
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
                self.work_done(len(batch))
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
            self.activities.enqueue(inst, seq)
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
        seq = inst.parent["taskScheduledId"]
        parent = self.still_wanted(inst.parent["instanceId"], inst.parent["executionId"], seq)
        if parent is None:
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
        self.work_add(1)
        self._mark_ready(inst)
