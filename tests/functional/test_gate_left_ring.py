"""Issue 11 on the local platform: a scheduled ring's gate must never retag a VM that left the ring.

Ring 1 (scheduled, open mode ``retag``) finds its members in Resource Graph, which is stale. An
operator moves ``r1-app-1`` from ``ring1-hold`` to ``excluded`` just before the gate opens, while
Resource Graph (lagging 2 hours for this VM) still lists it at ``ring1-hold``. Before the check,
the gate merge-wrote ``patchRing=ring1`` on every listed member: the VM was pulled back into
Ring 1's dynamic scope and its ``excluded`` tag was lost. Now the gate reads each VM live first and
does not write one its rule no longer selects (``left-ring``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import driver

pytestmark = pytest.mark.functional

LEAVER = "r1-app-1"
TAGS = "/providers/Microsoft.Resources/tags/"


def _scenario() -> dict[str, Any]:
    doc = copy.deepcopy(sc.scenario())
    for group in doc["subscriptions"][0]["resourceGroups"]:
        for vm in group.get("vms", []):
            if vm["name"] == LEAVER:
                vm["resourceGraphLagMinutes"] = 120  # Resource Graph shows it as it was 2 hours ago
    return doc


def _retag(p: Any, value: str) -> None:
    """What the operator does (a plain Merge, no ring rule: no check)."""
    from activities.tags import retag_vms_core
    from patchrings.clients import AzureClients
    from patchrings.settings import Settings

    clients = AzureClients(Settings(arm_endpoint=p.arm.endpoint, arm_auth="static-token",
                                    arm_static_token=p.arm.token, arm_ca_bundle=str(p.arm.ca_path),
                                    ledger_account_url="https://unused"))
    try:
        out = retag_vms_core(clients, {"vmIds": [f"{sc.VM}/{LEAVER}"], "tag": "patchRing", "value": value})
    finally:
        clients.close()
    assert out["written"] == 1, out


def test_the_gate_does_not_pull_a_vm_that_left_back_into_its_ring(held: Any) -> None:
    p = held(_scenario())
    d = driver(p)
    rid = d.start(who="dave@contoso.com")
    doc = d.until_waiting(rid, "approval", "ring1")
    _retag(p, "excluded")  # the operator takes it out of Ring 1 before the gate opens
    writes_before = len(p.arm.recorder.find(method="PATCH", path_contains=TAGS))
    assert d.decide(rid, "ring1", "approve", doc["waitingFor"]["manifestHash"], "alice@contoso.com").status == 202
    waiting = d.until_waiting(rid, "approval", "ring2")

    assert p.arm.vm(LEAVER).tags.get("patchRing") == "excluded", "the gate re-tagged a VM that had left the ring"
    # Ring 1's verification knows the leaver was never opened: left-ring, not a missing result
    gate = waiting["rings"][1]["gate"]
    assert gate["outcome"] == "pass" and gate["counts"]["leftRing"] == 1, gate
    gate_writes = p.arm.recorder.find(method="PATCH", path_contains=TAGS)[writes_before:]
    assert not [r for r in gate_writes if f"/{LEAVER}/" in r.path], "a tag write reached the leaver"
    # the other Ring 1 members were opened as before (read live, then written)
    others = [n for n in sc.RING1 if n != LEAVER]
    opened = {r.path.split("/providers/Microsoft.Resources")[0].rsplit("/", 1)[1] for r in gate_writes
              if (r.body or {}).get("properties", {}).get("tags") == {"patchRing": "ring1"}}
    assert opened == set(others), opened
    reads = [r for r in p.arm.recorder.find(operation="vm.get") if r.path.lower().endswith(f"/{LEAVER}".lower())]
    assert reads, "the leaver was never read live before the gate's write"
