"""Durable-client helpers the triggers share: finding rollouts and reading their state document.

Why: both the Event Grid trigger (route events to the active rollout) and the HTTP API (status,
approvals, halt) ask the same questions of the durable client, and the answers involve the
custom-status document the rollout orchestrator publishes (``orchestrators/status.py``).
"""

from __future__ import annotations

import json
from typing import Any

import azure.durable_functions as df

from orchestrators import names
from patchrings.boundary.codec import to_payload
from patchrings.boundary.rollout import GuardInput, RolloutInput
from patchrings.errors import NotFound

ACTIVE = (
    df.OrchestrationRuntimeStatus.Running,
    df.OrchestrationRuntimeStatus.Pending,
    df.OrchestrationRuntimeStatus.ContinuedAsNew,
)


def runtime_status(status: Any) -> str | None:
    value = getattr(status, "runtime_status", None)
    if value is None:
        return None
    return str(getattr(value, "value", value))


def custom_status(status: Any) -> dict[str, Any]:
    """The rollout state document from a status object (dict or JSON text), or ``{}``."""
    value = getattr(status, "custom_status", None)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def is_rollout(status: Any) -> bool:
    return str(getattr(status, "name", "") or "").lower() == names.ROLLOUT.lower()


def is_active(status: Any) -> bool:
    return runtime_status(status) in {s.value for s in ACTIVE}


async def exists(client: Any, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    return bool(status) and runtime_status(status) is not None


async def find_rollout(client: Any, instance_id: str) -> Any | None:
    """The durable status of a rollout instance, or None (unknown id or not a rollout)."""
    status = await client.get_status(instance_id)
    if not status or runtime_status(status) is None or not is_rollout(status):
        return None
    return status


async def require_rollout(client: Any, instance_id: str) -> Any:
    """:func:`find_rollout`, or :class:`NotFound` naming ``id`` (a 404 for the API and the page)."""
    status = await find_rollout(client, instance_id)
    if status is None:
        raise NotFound(f"no rollout {instance_id!r}", field="id")
    return status


async def start_rollout(client: Any, instance_id: str, spec: RolloutInput) -> None:
    """Start a rollout orchestration: its typed input becomes JSON here, once (the codec)."""
    await client.start_new(names.ROLLOUT, instance_id, to_payload(spec))


async def start_guard(client: Any, instance_id: str, spec: GuardInput) -> None:
    """Start the fail-closed guard of one scheduled run: its typed input becomes JSON here, once."""
    await client.start_new(names.GUARD, instance_id, to_payload(spec))


async def list_rollouts(client: Any) -> list[Any]:
    return [s for s in await client.get_status_all() if is_rollout(s)]


async def active_rollouts(client: Any) -> list[str]:
    """Ids of running (non dry-run) rollouts, oldest first."""
    statuses = await client.get_status_by(runtime_status=list(ACTIVE))
    active = [s for s in statuses if is_rollout(s) and not custom_status(s).get("dryRun")]
    active.sort(key=lambda s: str(getattr(s, "created_time", "") or ""))
    return [s.instance_id for s in active]
