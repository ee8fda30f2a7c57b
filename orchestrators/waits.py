"""The rollout's waits: external events, the Halt race and capped durable timers (issue 10).

Everything here works around the Python Durable SDK (azure-functions-durable 1.7.0); the rollout's
business flow (``rollout*.py``) only asks for what it means -- "the waiter for this event", "take
its payload", "wait for any of these or a Halt", "a timer until then" -- through :class:`Waits`.

DELETE WHEN THE SDK FIXES BUFFERING: the event-buffer workaround (one waiter per name, reused;
:func:`forget_buffered_event` reaching into ``context.deferred_tasks``) exists because of
https://github.com/Azure/azure-functions-durable-python/issues/507 ("Single event notification is
being yielded every time with wait_for_external_event"): an event raised while nobody waits for
its name is buffered in ``context.deferred_tasks[name]``, handed to the next waiter and never
removed, so every later waiter of that name would receive the same stale event again; and only
one event per name is buffered at all. When a fixed SDK is pinned, :meth:`Waits.event` becomes
``context.wait_for_external_event`` and :meth:`Waits.consume` becomes ``task.result``; nothing
in the rollout changes. The timer cap (:data:`MAX_TIMER`, issue 14.4) is a second SDK 1.7
limitation: a timer longer than its maximum short timer (6 days) is split into pieces whose
pending piece ``cancel()`` does not cancel.

Deterministic: it creates the same tasks in the same order on every replay (nothing here reads a
clock other than ``context.current_utc_datetime``).
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

from orchestrators import names
from orchestrators.inbox import decode_payload

__all__ = ["MAX_TIMER", "Halted", "Waits", "forget_buffered_event"]

Gen = Generator[Any, Any, Any]

# Longest single durable timer (below the SDK's 6-day maximum short timer; see Waits.timer).
MAX_TIMER = timedelta(days=5)


class Halted(Exception):
    """Raised inside the rollout's generators when a Halt event wins a race."""

    def __init__(self, by: str | None, reason: str) -> None:
        super().__init__(reason)
        self.by = by
        self.reason = reason


def forget_buffered_event(context: Any, name: str) -> None:
    """Drop the SDK's buffered copy of an external event once a waiter has consumed it.

    Why: azure-functions-durable 1.7.0 buffers an event that arrives while nobody waits for its
    name in ``context.deferred_tasks[name]`` and hands it to the next waiter, but never removes
    it, so *every* later waiter of that name would immediately receive the same stale event
    again (and a loop skipping duplicates would spin forever; azure-functions-durable-python#507).
    The rollout consumes each waiter right after it completes, so at that point the buffered
    entry is always the event just consumed (or an older one); removing it is replay-safe because
    replay repeats it exactly.
    """
    deferred = getattr(context, "deferred_tasks", None)
    if isinstance(deferred, dict):
        deferred.pop(name, None)


class Waits:
    """One outstanding waiter per external event name, the Halt event raced at every wait, and
    durable timers capped at :data:`MAX_TIMER`. Rebuilt identically on every replay."""

    def __init__(self, context: Any) -> None:
        self.ctx = context
        self._events: dict[str, Any] = {}
        self._halt: Any = None

    @property
    def now(self) -> datetime:
        return self.ctx.current_utc_datetime  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ events
    def event(self, name: str) -> Any:
        """The one outstanding wait for ``name`` (reused across waits, never left stale).

        The Python SDK hands an event to the *last* open waiter of that name and buffers only one
        event when nobody waits, so the rollout keeps exactly one waiter per name alive and
        consumes its result at the next wait point.
        """
        task = self._events.get(name)
        if task is None:
            task = self.ctx.wait_for_external_event(name)
            self._events[name] = task
        return task

    def consume(self, name: str) -> Any:
        """Take the payload of a completed waiter and forget it (a new one is made on demand)."""
        task = self._events.pop(name)
        forget_buffered_event(self.ctx, name)
        return task.result

    # ------------------------------------------------------------------ halt
    def halt(self) -> Any:
        """The Halt waiter (one for the rollout's life until a Halt is taken)."""
        if self._halt is None:
            self._halt = self.ctx.wait_for_external_event(names.EV_HALT)
        return self._halt

    def halt_arrived(self) -> bool:
        """Has a Halt event arrived that no :meth:`check_halt` has taken yet?"""
        return self._halt is not None and bool(self._halt.is_completed)

    def check_halt(self) -> None:
        """Raise :class:`Halted` if a Halt event has already arrived (and take it)."""
        task = self._halt
        if task is not None and task.is_completed:
            payload = decode_payload(task.result) or {}
            self._halt = None
            forget_buffered_event(self.ctx, names.EV_HALT)
            raise Halted(payload.get("by"), payload.get("reason") or "halted by request")

    def race(self, *tasks: Any) -> Gen:
        """``task_any`` over ``tasks`` plus the Halt event; raises :class:`Halted` if it wins
        (the other tasks cancelled). Returns the winning task."""
        self.check_halt()
        halt = self.halt()
        winner = yield self.ctx.task_any([*tasks, halt])
        if winner is halt:
            for task in tasks:
                if hasattr(task, "cancel") and not task.is_completed:
                    task.cancel()
            self.check_halt()
        return winner

    # ------------------------------------------------------------------ timers
    def timer(self, until: datetime) -> Any:
        """A durable timer for ``until``, or for :data:`MAX_TIMER` from now if that is sooner.

        Why (issue 14.4): azure-functions-durable 1.7.0 splits a timer longer than its maximum
        short timer (6 days) into pieces and ``cancel()`` does not cancel the pending piece, so an
        instance that finishes while such a timer runs stays Running (and blocks the next rollout)
        until the piece fires. Every wait of the rollout (approval timeout, resume window, waits
        for a monthly run's events) is a loop of timers of at most 5 days that re-checks its
        deadline; a cancelled piece is an ordinary short timer.
        """
        return self.ctx.create_timer(min(until, self.now + MAX_TIMER))
