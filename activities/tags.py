"""``retag_vms``: open or close a ring's dynamic scope by moving VMs between tag values.

Why the Tags API (``tags/default`` at the VM's scope, operation *Merge*) and not a VM PATCH:
Merge changes exactly one tag name and leaves the VM model untouched, needs only
``Microsoft.Resources/tags/write``, and works for any resource type a dynamic scope selects.
Check-before-act: each VM's tags are read first and VMs already at the value are skipped, so a
re-run after a crash changes nothing twice and the output says what actually changed.

Remember the T-40 rule: a tag change lands in a scheduled run only if it is made before T-40;
the orchestrator decides *when* to call this.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import AzureError

from activities import Payload
from activities.deps import deps
from patchrings.arm.errors import error_info
from patchrings.arm.fanout import map_bounded
from patchrings.arm.ids import parse_resource_id
from patchrings.arm.lro import OneShotARMPolling, poll_once, to_wire

bp = df.Blueprint()
log = logging.getLogger("patchrings.activities.tags")

__all__ = ["bp", "retag_vms", "retag_vms_core"]


def _tag_key(tags: Mapping[str, Any], name: str) -> str | None:
    """The existing spelling of tag ``name`` (tag names are case-insensitive in Azure)."""
    for key in tags:
        if key.lower() == name.lower():
            return key
    return None


def retag_vms_core(clients: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Set tag ``tag`` to ``value`` on every VM in ``vmIds`` (Merge), skipping those already there.

    Output ``{"changed": [ids], "unchanged": [ids], "failed": [{"vm", "error"}]}``; a failure
    on one VM never stops the others.
    """
    tag = str(payload["tag"])
    value = str(payload["value"])
    vm_ids = [str(v) for v in payload.get("vmIds") or []]
    outcomes = map_bounded(lambda vm_id: _retag_one(clients, vm_id, tag, value), vm_ids)
    out: dict[str, list[Any]] = {"changed": [], "unchanged": [], "failed": []}
    for vm_id, (kind, error) in zip(vm_ids, outcomes, strict=True):
        out[kind].append({"vm": vm_id, "error": error} if kind == "failed" else vm_id)
    log.info("retag %s=%s: %d changed, %d unchanged, %d failed", tag, value,
             len(out["changed"]), len(out["unchanged"]), len(out["failed"]))
    return out


def _retag_one(clients: Any, vm_id: str, tag: str, value: str) -> tuple[str, dict[str, Any] | None]:
    """``("changed"|"unchanged"|"failed", error)`` for one VM; never raises."""
    scope = vm_id.lstrip("/")
    try:
        resources = clients.resources(parse_resource_id(vm_id).subscription)
        current = to_wire(resources.tags.get_at_scope(scope)) or {}
        tags = dict((current.get("properties") or {}).get("tags") or {})
        key = _tag_key(tags, tag)
        if key is not None and tags[key] == value:
            return "unchanged", None
        poller = resources.tags.begin_update_at_scope(
            scope,
            {"operation": "Merge", "properties": {"tags": {key or tag: value}}},
            polling=OneShotARMPolling(),
        )
        step = poll_once(poller)  # no HTTP call when the PATCH answered 200
        if step.done and step.error:
            return "failed", step.error
        # A 202 still running is accepted by ARM: the next check-before-act confirms it.
        return "changed", None
    except (AzureError, ValueError) as exc:
        return "failed", error_info(exc)


@bp.activity_trigger(input_name="payload")
def retag_vms(payload: Payload) -> dict[str, Any]:
    return retag_vms_core(deps().clients, payload)
