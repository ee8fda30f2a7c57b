"""Read-only access to the plan dict an orchestrator carries (``Plan.to_dict()``).

Why: the plan crosses the durable boundary as JSON; orchestrators need a few effective values per
ring (ring settings override the plan's top-level defaults). Keeping those look-ups here means one
place adapts if the plan document's layout evolves, and orchestrator code stays readable.
"""

from __future__ import annotations

from typing import Any

from patchrings.domain.arm_ids import same_arm_id


def rings(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return list(plan.get("rings") or [])


def ring_names(plan: dict[str, Any]) -> list[str]:
    return [r["name"] for r in rings(plan)]


def ring(plan: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in rings(plan):
        if entry.get("name") == name:
            return entry
    raise KeyError(f"plan has no ring {name!r}")


def ring_for_configuration(plan: dict[str, Any], configuration_id: str) -> dict[str, Any] | None:
    for entry in rings(plan):
        if same_arm_id(configuration_id, configuration_of(entry)):
            return entry
    return None


def effective(plan: dict[str, Any], ring_name: str, key: str) -> dict[str, Any]:
    """A ring's ``key`` block (health, install, rate, approval) merged over plan defaults."""
    base: dict[str, Any] = {}
    defaults = plan.get("defaults")
    if isinstance(defaults, dict) and isinstance(defaults.get(key), dict):
        base = _merge(base, defaults[key])
    if isinstance(plan.get(key), dict):
        base = _merge(base, plan[key])
    own = ring(plan, ring_name).get(key)
    if isinstance(own, dict):
        base = _merge(base, own)
    return base


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def configuration_of(ring_doc: dict[str, Any]) -> str | None:
    members = ring_doc.get("members") or {}
    return members.get("maintenanceConfigurationId") or ring_doc.get("maintenanceConfigurationId")


def patching(ring_doc: dict[str, Any]) -> str:
    return str(ring_doc.get("patching") or "direct")


def open_mode(ring_doc: dict[str, Any]) -> str:
    opened = ring_doc.get("open") or {}
    if isinstance(opened, str):
        return opened
    return str(opened.get("mode") or "none")


def tag_selector(ring_doc: dict[str, Any]) -> dict[str, Any] | None:
    tag = (ring_doc.get("members") or {}).get("tag")
    return tag if isinstance(tag, dict) else None


def approval(plan: dict[str, Any], ring_name: str) -> dict[str, Any]:
    block = effective(plan, ring_name, "approval")
    return block or {"mode": "none"}


def promotion(plan: dict[str, Any]) -> dict[str, Any]:
    block = plan.get("promotion")
    return block if isinstance(block, dict) else {}
