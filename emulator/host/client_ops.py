"""Client operations: what the durable HTTP API and the SDK client ask of the engine.

Start (also used for sub-orchestrations), raise event, terminate, suspend, resume, purge,
restart and lookups. Each one changes the instance state in one store transaction and, where
an event is involved, only enqueues it: the scheduler delivers it. Terminate in particular is
asynchronous as in DTFx (``TaskHubClient.TerminateInstanceAsync`` sends an
``ExecutionTerminated`` message): :meth:`~emulator.host.replay.Replay._apply_terminate` ends the
instance when the scheduler takes the message. Errors are :class:`EngineError` with the HTTP
status the durable API answers. Rewind is not emulated (the API answers 501 after
:meth:`ClientOps.require`).
"""

from __future__ import annotations

import uuid
from typing import Any

from emulator.host import history as h
from emulator.host.core import EngineCore
from emulator.host.instance import ACTIVE, TERMINAL, EngineError, Instance

__all__ = ["ClientOps"]


class ClientOps(EngineCore):
    """The client-facing operations (a mixin of :class:`~emulator.host.engine.DurableEngine`)."""

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

    def raise_event(self, instance_id: str, name: str, input_text: str | None) -> None:
        inst = self.require(instance_id)
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
        inst = self._require_not_ended(instance_id)
        with self.store.transaction():
            self._enqueue(inst, h.execution_terminated(self.clock.now(), reason))
        if inst.status == "Suspended":
            self.work_add(1)
            self._mark_ready(inst)

    def suspend(self, instance_id: str, reason: str | None) -> None:
        inst = self._require_not_ended(instance_id)
        if inst.status == "Suspended":
            return
        with self.store.transaction():
            self._append_history(inst, [h.execution_suspended(self.clock.now(), reason)])
            inst.status = "Suspended"
            inst.updated = self.clock.now()
            self.work_done(len(inst.inbox))
            self._save_meta(inst)

    def resume(self, instance_id: str, reason: str | None) -> None:
        inst = self._require_not_ended(instance_id)
        if inst.status != "Suspended":
            return
        with self.store.transaction():
            self._append_history(inst, [h.execution_resumed(self.clock.now(), reason)])
            inst.status = "Running" if inst.episodes else "Pending"
            inst.updated = self.clock.now()
            self.work_add(len(inst.inbox))
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
        inst = self.require(instance_id)
        new_id = uuid.uuid4().hex if new_instance_id else instance_id
        if not new_instance_id and inst.status in ACTIVE:
            raise EngineError("INSTANCE_EXISTS", f"Instance {instance_id} is still {inst.status}", 409)
        self.start_instance(inst.name, new_id, inst.input_text)
        return new_id

    def require(self, instance_id: str) -> Instance:
        """The instance, or EngineError ``INSTANCE_NOT_FOUND`` (404)."""
        inst = self.instances.get(instance_id)
        if inst is None:
            raise EngineError("INSTANCE_NOT_FOUND", f"No instance with ID '{instance_id}' found.", 404)
        return inst

    def _require_not_ended(self, instance_id: str) -> Instance:
        """The instance for terminate / suspend / resume: 404 when unknown, 410 when it has ended."""
        inst = self.require(instance_id)
        if inst.status in TERMINAL:
            raise EngineError("INSTANCE_GONE", f"Instance {instance_id} is already {inst.status}", 410)
        return inst
