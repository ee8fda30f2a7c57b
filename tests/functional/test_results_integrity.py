"""Results can't fake a pass (issue 13 items 7 and 8), on the ARM simulator and Azurite.

* A direct ring's installPatches LRO result carries the patch list and the reboot state, so Ring
  0 (direct in the demo and the default plan) can pass and build a manifest, which records the
  OS / image families it covered.
* A scheduled run's per-VM results are read from instance views (``collect_run_results``),
  which carry neither: every such VM is inconclusive, never a pass, and the reason names the
  missing source (Resource Graph, a later issue).
"""

from __future__ import annotations

from typing import Any

import pytest

from activities.compute import poll_install_core, resolve_ring_members_core, start_install_core
from activities.maintenance import collect_run_results_core
from orchestrators.verdicts import build_manifest_dict, coverage_refusal, gate_for, verdicts_for
from patchrings.clients import AzureClients
from patchrings.domain.health import HealthState
from patchrings.ledger import Ledger
from tests.functional.activities.conftest import (  # noqa: F401 -- fixtures
    PLAN,
    START,
    SimHandle,
    arm,
    arm_ledger,
    azurite,
    clients,
)
from tests.ring_inputs import named_ring

pytestmark = pytest.mark.functional

PARAMS = {"rebootSetting": "IfRequired",
          "windowsParameters": {"classificationsToInclude": ["Critical", "Security"], "maxPatchPublishDate": START},
          "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]}}


def healthy() -> HealthState:
    from patchrings.domain.timeutil import parse_instant as parse_iso

    return HealthState(phase="done", outcome="healthy", reasons=(), next_check_at=None, started_at=parse_iso(START))


def install(sim: SimHandle, api: AzureClients, ledger: Ledger, vm: dict[str, Any]) -> dict[str, Any]:
    run = "r:ring0"
    payload = {"rolloutId": "r", "ring": "ring0", "runId": run, "runStartedAt": START, "now": START,
               "vm": vm, "parameters": PARAMS}
    with sim.clock.hold():
        started = start_install_core(api, ledger, payload)
    assert started["state"] == "started"

    def poll() -> dict[str, Any] | None:
        out = poll_install_core(api, ledger, {"runId": run, "vm": vm, "token": started["token"], "now": START})
        return out if out["done"] else None

    done = sim.clock.advance_until(poll, timeout=60)
    return {"vm": vm["id"], "name": vm["name"], "os": vm["os"], "image": vm.get("image"), "state": "done",
            "result": done["result"], "error": done["error"]}


def test_direct_results_carry_patches_and_reboot_state_and_scheduled_ones_are_inconclusive(
    arm: SimHandle, clients: AzureClients, arm_ledger: Ledger  # noqa: F811 -- fixtures
) -> None:
    ring0 = [vm for vm in resolve_ring_members_core(clients, {**named_ring(PLAN, "ring0")})["vms"]
             if vm["powerState"] == "running"]
    assert {vm["os"] for vm in ring0} == {"Windows", "Linux"}
    assert all(vm["image"] for vm in ring0)  # VmRef.image: the family Ring 0 covers
    entries = [install(arm, clients, arm_ledger, vm) for vm in ring0]
    for entry in entries:  # the LRO result is the whole VirtualMachineInstallPatchesResult
        assert isinstance(entry["result"]["patches"], list) and entry["result"]["patches"]
        assert entry["result"]["rebootStatus"] not in (None, "Unknown")

    health = {vm["id"]: healthy() for vm in ring0}
    verdicts = verdicts_for(PLAN, "ring0", ring0, entries, health)
    assert [v["outcome"] for v in verdicts] == ["pass"] * len(ring0), verdicts
    assert gate_for(PLAN, "ring0", verdicts)["outcome"] == "pass"
    manifest = build_manifest_dict(entries, verdicts)
    assert manifest["windows"]["kbNumbers"] == ["5034123"]
    assert manifest["linux"]["packages"] == ["openssl=3.0.13"]
    assert sorted(manifest["coverage"]) == sorted(f"{vm['os']}/{vm['image'].lower()}" for vm in ring0)

    # Ring 1's VMs have the same families as Ring 0's: nothing refuses their promotion
    ring1 = resolve_ring_members_core(clients, {**named_ring(PLAN, "ring1")})["vms"]
    assert ring1 and coverage_refusal(PLAN, "ring1", manifest, ring1) == []
    # without a passing Linux VM in Ring 0, Ring 1's Linux VM is refused
    windows_only = build_manifest_dict(entries, [v for v in verdicts if v["vm"] == ring0[0]["id"]])
    refused = coverage_refusal(PLAN, "ring1", windows_only, ring1)
    assert [r["vm"] for r in refused] == [vm["id"] for vm in ring1 if vm["os"] != ring0[0]["os"]]

    # The same installs, read the way a scheduled run's results are read (instance views)
    collected = collect_run_results_core(clients, {
        "correlationId": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations"
                         "/ring1/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
        "vms": ring0, "since": START})["results"]
    assert [c["state"] for c in collected] == ["done"] * len(ring0)
    assert all(c["result"]["source"] == "instanceView" and c["result"]["patches"] == [] for c in collected)
    scheduled = verdicts_for(PLAN, "ring1", ring0, collected, health)
    assert [v["outcome"] for v in scheduled] == ["inconclusive"] * len(ring0)
    assert all(any("Resource Graph" in r for r in v["reasons"]) for v in scheduled)
    assert gate_for(PLAN, "ring1", scheduled)["outcome"] == "inconclusive"
    # and such results can never put a patch into a manifest
    assert build_manifest_dict(collected, scheduled)["windows"]["kbNumbers"] == []
