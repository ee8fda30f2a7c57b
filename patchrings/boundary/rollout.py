"""Typed inputs of the rollout and guard orchestrations (issue 10).

The HTTP API (``POST /api/rollouts``), the Event Grid trigger and the CLI start these with the JSON
below; :mod:`patchrings.boundary.codec` turns it into the dataclass once, where the orchestrator
starts (``from_payload``: camelCase keys, unknown keys ignored, ``None`` optionals absent). The
senders may build their input with the same dataclasses and ``to_payload``.

Pure Python: no ``azure`` imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["GuardInput", "RolloutInput"]


@dataclass(frozen=True)
class RolloutInput:
    """``rollout_orchestrator``: ``{initiator?, dryRun?, plan?, reason?, trigger?, releaseQuarantine?}``.

    ``plan``: a plan carried in the input (checked against the deployed one by ``load_plan``);
    absent, the deployed plan. ``trigger``: ``{"kind": "manual"}`` or ``{"kind": "event", ...the
    maintenance event}``. ``releaseQuarantine``: quarantine entry ids a person releases (as sent;
    ``patchrings.domain.quarantine.parse_release`` reads it).
    """

    initiator: str | None = None
    dry_run: bool | None = None
    plan: dict[str, Any] | None = None
    reason: str | None = None
    trigger: dict[str, Any] | None = None
    release_quarantine: Any = None


@dataclass(frozen=True)
class GuardInput:
    """``guard_orchestrator``: ``{event, ring, cancelMargin, decisionLead?}``.

    ``event``: the pre-maintenance event as the trigger raised it (``MaintenanceEvent.to_dict()``;
    kept as sent: the guard still cancels a run whose event has no usable start). Margins are ISO
    durations (``patchrings.domain.timeutil``); absent, the plan's default cancel margin and the
    guard's own lead.
    """

    event: Any = None
    ring: str | None = None
    cancel_margin: str | None = None
    decision_lead: str | None = field(default=None)
