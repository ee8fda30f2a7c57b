"""Issue 11 on the local platform: Ring 0's members come from Resource Graph, which is stale; a VM
retagged out of Ring 0 a moment ago is still listed there, and the install's live pre-check keeps it
from being patched (``left-ring``): not installed, not judged, shown in the ledger's per-VM rows."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import driver, installs, vm_name

pytestmark = pytest.mark.functional

LEAVER = "r0-web-2"


def _scenario() -> dict[str, Any]:
    doc = copy.deepcopy(sc.scenario())
    for vm in doc["subscriptions"][0]["resourceGroups"][0]["vms"]:
        if vm["name"] == LEAVER:
            vm["resourceGraphLagMinutes"] = 120  # Resource Graph shows this VM as it was 2 hours ago
    return doc


def _retag_out(p: Any) -> None:
    from activities.tags import retag_vms_core
    from patchrings.clients import AzureClients
    from patchrings.settings import Settings

    clients = AzureClients(Settings(arm_endpoint=p.arm.endpoint, arm_auth="static-token",
                                    arm_static_token=p.arm.token, arm_ca_bundle=str(p.arm.ca_path),
                                    ledger_account_url="https://unused"))
    try:
        out = retag_vms_core(clients, {"vmIds": [f"{sc.VM}/{LEAVER}"], "tag": "patchRing", "value": "none"})
    finally:
        clients.close()
    assert out["written"] == 1 and out["failed"] == [], out


def test_a_vm_retagged_out_of_ring0_while_resource_graph_lists_it_is_not_patched(held: Any) -> None:
    p = held(_scenario())
    _retag_out(p)  # live: patchRing=none; Resource Graph: still ring0
    d = driver(p)
    rid = d.start(who="dave@contoso.com")
    waiting = d.until_waiting(rid, "approval", "ring1")

    # Ring 0's members were found in Resource Graph (never a list of the subscription's VMs) ...
    assert p.arm.recorder.find(operation="arg.resources")
    assert not p.arm.recorder.find(operation="vm.list_all")
    # ... the leaver among them (Resource Graph still said ring0): its pre-check read it live ...
    reads = [r for r in p.arm.recorder.find(operation="vm.get") if r.path.lower().endswith(f"/{LEAVER}")]
    assert reads, "the leaver was never read: it was not listed as a Ring 0 member"
    # ... and it was not installed; the others were
    assert sorted(vm_name(r) for r in installs(p)) == sorted(n for n in sc.RING0 if n != LEAVER)

    gate = waiting["rings"][0]["gate"]
    assert gate["outcome"] == "pass" and gate["counts"]["total"] == len(sc.RING0) - 1, gate
    # the wave that saw it leave counts and names it (the gate's reason says which VM)
    assert gate["counts"]["leftRing"] == 1 and any(LEAVER in str(r.get("reason")) for r in gate["reasons"]), gate
    status = d.api("GET", f"/api/rollouts/{rid}")
    rows = {r["vm"].rsplit("/", 1)[-1]: r for r in status.json["ledger"]["vmResults"]["ring0"]}
    assert rows[LEAVER]["state"] == "left-ring" and not rows[LEAVER].get("verdict"), rows[LEAVER]
    assert "left ring" in str(rows[LEAVER].get("error")), rows[LEAVER]

    # ... and the status shows it as left-ring: never judged, counted as skipped, counts adding up
    view = status.json["rings"][0]
    shown = {v["name"]: v for v in view["vms"]}
    assert shown[LEAVER]["outcome"] == "left-ring", shown[LEAVER]
    c = view["counts"]
    assert c["skipped"] == 1 and c["passed"] == len(sc.RING0) - 1, c
    assert c["vms"] == c["passed"] + c["failed"] + c["inconclusive"] + c["inFlight"] + c["skipped"] + c["notStarted"], c
