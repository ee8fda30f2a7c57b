"""Least privilege, proven on traffic: the app's ARM calls during real rollouts need exactly the
actions of the custom roles in infra/role-actions.json.

How: the ARM simulator is given one identity whose allowed actions are the roles' actions (it
answers anything else with 403 AuthorizationFailed, as ARM does). On the local platform (host +
simulator + Azurite, skip clock) the unmodified app runs a dry run and then a full three-ring
rollout: Ring 0 installed directly, Ring 1 promoted by retag with the manifest pinned into its
configuration, Ring 2 opened by a dynamic-scope assignment, runs gated on their pre-events,
results collected on their post-events, gates closed at the end. Every recorded request is then
mapped to its RBAC action with the simulator's route table (``operation_action``).

Approvals are clicks, given on state: time moves only through the clock API
(``platform.clock_client().advance_until``), which re-reads the rollout's status once the platform
is idle and before every jump, so the test sees "waiting for approval of ring N" before the
approval timer can fire and approves as the plan's first approver. Nothing waits on wall time
(the earlier version approved by the plan's timeout and raced under load).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.members import PROBE_GROUP
from emulator.arm.routes import operation_action
from emulator.platform import LocalPlatform

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
ROLE = json.loads((REPO / "infra" / "role-actions.json").read_text(encoding="utf-8"))
ROLLOUT_ACTIONS = set(ROLE["actions"])
FLEET_ACTIONS = set(ROLE["subscriptionScope"]["actions"]) | set(ROLE["subscriptionScope"]["dynamicScopeActions"])
GRANTED = ROLLOUT_ACTIONS | FLEET_ACTIONS
INITIATOR = "dave@contoso.com"
VM_GROUP = "rg-vms"
CONFIG_GROUP = "rg-patching"
START = "2026-11-16T06:00:00Z"
DONE = ("Completed", "Failed", "Terminated")


def _vm(name: str, os: str, ring: str, zone: str) -> dict[str, Any]:
    return {"name": name, "os": os, "zone": zone, "tags": {"patchRing": ring},
            "patchMode": "AutomaticByPlatform", "bypassPlatformSafetyChecksOnUserSchedule": True}


def _scenario() -> dict[str, Any]:
    """Six healthy VMs, two per ring (Ring 1 held), one Arc-enabled server in Ring 0, the sample's
    schedules, catalog and event wiring."""
    sample = yaml.safe_load((REPO / "emulator" / "arm" / "scenarios" / "sample.yaml").read_text(encoding="utf-8"))
    subscription = sample["subscriptions"][0]
    patching = next(rg for rg in subscription["resourceGroups"] if rg["name"] == CONFIG_GROUP)
    return {
        "name": "least-privilege",
        "seed": 6,
        "subscriptions": [{
            "id": subscription["id"],
            "displayName": subscription.get("displayName", "prod"),
            "resourceGroups": [
                {"name": CONFIG_GROUP, "location": patching["location"],
                 "maintenanceConfigurations": [copy.deepcopy(mc) for mc in patching["maintenanceConfigurations"]
                                               if mc["name"] in ("mc-ring1", "mc-ring2")]},
                {"name": VM_GROUP, "location": patching["location"], "vms": [
                    _vm("r0-win-1", "Windows", "ring0", "1"), _vm("r0-lnx-1", "Linux", "ring0", "2"),
                    _vm("r1-win-1", "Windows", "ring1-hold", "1"), _vm("r1-lnx-1", "Linux", "ring1-hold", "2"),
                    _vm("r2-win-1", "Windows", "ring2", "1"), _vm("r2-lnx-1", "Linux", "ring2", "3"),
                ],
                 # An Arc-enabled server in Ring 0, so the HybridCompute grants are exercised too.
                 "arcMachines": [{"name": "r0-arc-1", "os": "Linux", "tags": {"patchRing": "ring0"}}]},
            ],
            # Ring 1's dynamic scope exists (retag promotion); Ring 2's is created by the app.
            "dynamicScopes": [copy.deepcopy(d) for d in subscription["dynamicScopes"] if d["name"] == "ds-ring1"],
        }],
        "catalog": sample["catalog"],
        # The sample's wiring, delivered with the host's Event Grid system key (as on Azure, the
        # webhook refuses the function key).
        "eventSubscriptions": [
            {**sub, "endpoint": str(sub["endpoint"]).replace("${FUNCTIONS_KEY:-}", "${EVENTGRID_KEY}")
                                                    .replace("${FUNCTIONS_KEY}", "${EVENTGRID_KEY}")}
            for sub in sample["eventSubscriptions"]],
        "auth": {"identities": [{"name": "patchrings-app", "token": "least-privilege-token-0001",
                                 "default": True, "actions": sorted(GRANTED)}]},
    }


def _plan(subscription_id: str) -> dict[str, Any]:
    text = (REPO / "plans" / "default.json").read_text(encoding="utf-8")
    plan = json.loads(text.replace("00000000-0000-0000-0000-000000000001", subscription_id))
    for ring in plan["rings"]:
        ring["members"]["resourceGroups"] = [VM_GROUP]
    return plan


def _wait_done(platform: LocalPlatform, rollout_id: str) -> dict[str, Any]:
    """Move time (clock API) until the rollout is done, approving each ring when it asks."""
    clock = platform.clock_client()
    approved: set[str] = set()

    def next_state() -> dict[str, Any] | None:
        doc = platform.api("GET", f"/api/rollouts/{rollout_id}").json or {}
        if doc.get("runtimeStatus") in DONE:
            return doc
        waiting = (doc.get("status") or {}).get("waitingFor") or {}
        if str(waiting.get("what", "")).startswith("approval") and waiting.get("ring") not in approved:
            return doc
        return None

    while True:
        doc: dict[str, Any] = clock.advance_until(next_state, timeout=480)
        if doc.get("runtimeStatus") in DONE:
            return doc
        waiting = doc["status"]["waitingFor"]
        ring = str(waiting["ring"])
        result = platform.api("POST", f"/api/rollouts/{rollout_id}/rings/{ring}/approve",
                              {"manifestHash": waiting["manifestHash"], "comment": "least-privilege check"},
                              headers={"X-PatchRings-Approver": str(waiting["approvers"][0])})
        assert result.status == 202, result
        approved.add(ring)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run a dry run and a full rollout; yield their final documents and the recorded requests."""
    tmp = tmp_path_factory.mktemp("least-privilege")
    scenario = _scenario()
    plan_file = tmp / "plan.json"
    plan_file.write_text(json.dumps(_plan(scenario["subscriptions"][0]["id"]), indent=2))
    platform = LocalPlatform(
        scenario, clock="skip", start=START, state_dir=tmp / "platform",
        settings={"PATCHRINGS_PLAN_PATH": str(plan_file), "PATCHRINGS_APPROVER_HEADER_FALLBACK": "true"},
    ).start()
    try:
        with platform.clock.hold():
            who = {"X-PatchRings-Approver": INITIATOR}
            dry = platform.api("POST", "/api/rollouts", {"dryRun": True}, headers=who)
            assert dry.status == 202, dry
            dry_doc = _wait_done(platform, dry.json["id"])
            full = platform.api("POST", "/api/rollouts", {"reason": "least-privilege check"}, headers=who)
            assert full.status == 202, full
            full_doc = _wait_done(platform, full.json["id"])
            # Fail closed: a run of a gated ring that nobody authorised is cancelled by the
            # app's guard (applyUpdates/write). A clean rollout never needs that, so ask for it.
            unapproved = platform.arm.fire_run("mc-ring1")
            cancelled = platform.clock_client().advance_until(
                lambda: (run := platform.arm.run(unapproved)) is not None and run.status == "Cancelled",
                timeout=240,
            )
        yield {"dry": dry_doc, "full": full_doc, "records": platform.arm.recorder.records, "cancelled": cancelled,
               "subscription": scenario["subscriptions"][0]["id"]}
    finally:
        platform.stop()


def test_the_flows_really_ran(traffic: dict[str, Any]) -> None:
    """Coverage claims below mean something only if both flows went all the way."""
    assert traffic["dry"]["status"]["state"] == "dry-run-completed", traffic["dry"]["status"]
    full = traffic["full"]["status"]
    assert full["state"] == "completed", json.dumps(full)[:2000]
    assert [(r["name"], r["phase"]) for r in full["rings"]] == [
        ("ring0", "passed"), ("ring1", "passed"), ("ring2", "passed")]
    assert len(traffic["records"]) > 50


def test_an_unauthorised_ring_run_was_cancelled(traffic: dict[str, Any]) -> None:
    assert traffic["cancelled"] is True


def test_no_request_was_refused(traffic: dict[str, Any]) -> None:
    refused = [f"{r.method} {r.path} -> {r.status} {r.error_code}" for r in traffic["records"]
               if r.status in (401, 403) or r.error_code == "AuthorizationFailed"]
    assert refused == [], "the roles lack actions the app needs"


def test_every_request_maps_to_a_granted_action(traffic: dict[str, Any]) -> None:
    unmapped, ungranted = [], []
    for record in traffic["records"]:
        try:
            action = operation_action(record.method, record.path)
        except ValueError:
            unmapped.append(f"{record.method} {record.path}")
            continue
        assert action == record.action, (record.method, record.path)
        if action not in GRANTED:
            ungranted.append(f"{record.method} {record.path} needs {action}")
    assert unmapped == []
    assert ungranted == []


# Actions only the fallback paths need, which a healthy run never takes: a scheduled run's per-VM
# results come from Resource Graph, and only machines whose rows are still missing after the
# re-queries are read from the instance view and their applyUpdates record. The static scan
# (tests/unit/infra/test_role_matches_activities.py) proves the code still calls them.
FALLBACK_ONLY = {"Microsoft.Maintenance/applyUpdates/read"}


def test_the_roles_hold_nothing_no_request_needed(traffic: dict[str, Any]) -> None:
    used = {operation_action(r.method, r.path) for r in traffic["records"]}
    assert GRANTED - used - FALLBACK_ONLY == set(), "granted but never used: remove from infra/role-actions.json"
    assert FALLBACK_ONLY <= GRANTED


def test_subscription_level_requests_are_covered_by_the_fleet_reader_role(traffic: dict[str, Any]) -> None:
    """The rollout role is assigned on resource groups only; requests whose path has no resource
    group are authorized on the subscription, where only the fleet-reader role is assigned."""
    outside = sorted({f"{r.method} {operation_action(r.method, r.path)}" for r in traffic["records"]
                      if "/resourcegroups/" not in r.path.lower()
                      and operation_action(r.method, r.path) not in FLEET_ACTIONS})
    assert outside == []


def test_resource_group_requests_stay_in_the_plans_resource_groups(traffic: dict[str, Any]) -> None:
    """The rollout scopes to grant are the ring VMs' and the configurations' resource groups (and
    the read-role probe's group, which does not exist: the fleet-reader role authorizes it)."""
    groups = set()
    for record in traffic["records"]:
        parts = record.path.lower().split("/")
        if "resourcegroups" in parts and parts[parts.index("resourcegroups") + 1] != PROBE_GROUP:
            at = parts.index("resourcegroups")
            groups.add((parts[at - 1], parts[at + 1]))
    assert groups == {(traffic["subscription"].lower(), VM_GROUP), (traffic["subscription"].lower(), CONFIG_GROUP)}


def test_member_resolution_probes_the_fleet_reader_role(traffic: dict[str, Any]) -> None:
    """Resource Graph answers only what the identity can read, so each resolution first GETs a VM
    in a resource group that does not exist (issue 11): outside the rollout role's resource groups,
    only the fleet-reader role's subscription-level VM read authorizes it, and the answer is 404."""
    probes = [r for r in traffic["records"] if f"/resourcegroups/{PROBE_GROUP}/" in r.path.lower()]
    assert probes, "no resolution probed the read role"
    assert {(r.method, r.status, operation_action(r.method, r.path)) for r in probes} == {
        ("GET", 404, "Microsoft.Compute/virtualMachines/read")}
    assert "Microsoft.Compute/virtualMachines/read" in FLEET_ACTIONS
