"""Drive a scheduled ring's orchestrators on a scripted context, two levels deep (issue 11).

``run_results`` and ``ring_gate`` hold no VM: they plan the ring's members into the ledger
(``plan_ring_waves``) and hand each slice to a sub-orchestration (``verify`` / ``ring_gate``) that
reads its own members (``read_wave_members``). :func:`with_chunks` wraps a test's ``answer`` so
that those two activities answer from a members list as the ledger would, and each such
sub-orchestration runs for real (its own :class:`ScriptedContext`, the same ``answer``), its
calls appended to the parent's log after the ``sub`` call itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrators import names
from orchestrators import ring_gate as ring_gate_mod
from orchestrators import verify as verify_mod
from tests.unit.orchestrators.test_orch_verdicts import ActivityFailed, Call, ScriptedContext, drive, raw

Answer = Callable[[Call, ScriptedContext], Any]


class ChunkContext(ScriptedContext):
    """A scripted context that records sub-orchestration instance ids (``payload["_instance"]``
    is not added: the payload stays what the orchestrator sent) in ``sub_ids``."""

    def __init__(self, payload: Any, instance_id: str = "inst") -> None:
        super().__init__(payload)
        self.instance_id = instance_id
        self.sub_ids: list[str | None] = []

    def call_sub_orchestrator(self, name: str, payload: Any = None, instance_id: str | None = None) -> Call:
        self.sub_ids.append(instance_id)
        call = Call("sub", name, payload)
        call.instance_id = instance_id  # type: ignore[attr-defined]
        return call


def with_chunks(answer: Answer, members: list[dict[str, Any]], *, fail: tuple[str, ...] = (),
                children: list[ChunkContext] | None = None) -> Answer:
    """``answer`` plus the ledger's wave plan over ``members`` and real child orchestrations;
    the activities named in ``fail`` fail (``ActivityFailed``)."""
    plans: dict[str, list[dict[str, Any]]] = {}

    def wrapped(call: Call, ctx: ScriptedContext) -> Any:
        if call.name in fail:
            raise ActivityFailed(f"{call.name} down")
        if call.name == names.PLAN_RING_WAVES:
            vms = members
            plans[call.payload["runId"]] = list(vms)
            return {"count": len(vms), "waves": [len(vms)] if vms else [], "sliceSize": call.payload["sliceSize"],
                    "hash": "h", "byOs": {}}
        if call.name == names.READ_WAVE_MEMBERS:
            size = int(ctx.payload.get("_sliceSize") or 0) or None
            vms = plans[call.payload["runId"]]
            size = size or len(vms)
            return {"vms": vms[call.payload["slice"] * size:(call.payload["slice"] + 1) * size]}
        if call.kind == "sub" and call.name in (names.VERIFY, names.RING_GATE):
            module = (verify_mod.verify_orchestrator if call.name == names.VERIFY
                      else ring_gate_mod.ring_gate_orchestrator)
            child = ChunkContext({**call.payload}, getattr(call, "instance_id", None) or "child")
            child.payload["_sliceSize"] = _slice_size(call)
            child.current_utc_datetime = ctx.current_utc_datetime
            out = drive(raw(module), child, wrapped)
            ctx.calls.extend(child.calls)
            ctx.current_utc_datetime = max(ctx.current_utc_datetime, child.current_utc_datetime)
            if children is not None:
                children.append(child)
            return out
        return answer(call, ctx)

    return wrapped


def _slice_size(call: Call) -> int:
    from orchestrators import run_results as run_results_mod

    return run_results_mod.VERIFY_CHUNK if call.name == names.VERIFY else ring_gate_mod.GATE_SLICE
