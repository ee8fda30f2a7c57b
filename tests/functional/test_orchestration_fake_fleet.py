"""The real orchestrators and triggers on the local host, against in-memory fake activities.

These pin down the orchestration logic (rings, waves, gates, approvals bound to the manifest,
events de-duplicated and reordered, fail-closed guard, halt/resume) independently of the ARM
simulator; ``test_platform_*.py`` run the same flows against the simulator and Azurite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import make_clock
from emulator.host.testing import HostThread
from patchrings.domain.plan import load_plan_file
from patchrings.settings import Settings
from tests.functional.fakeapp import fleet
from tests.functional.fakeapp.driver import Driver, correlation_id, maintenance_event
from triggers import deps

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "fakeapp"
START = "2026-11-16T06:00:00Z"
INITIATOR = "dave@contoso.com"


def default_plan(**ring_changes: dict[str, Any]) -> dict[str, Any]:
    plan = load_plan_file(REPO / "plans" / "default.json").to_dict()
    plan.pop("hash", None)
    for ring in plan["rings"]:
        ring.update(ring_changes.get(ring["name"], {}))
    return plan


def make_fleet(plan: dict[str, Any]) -> fleet.Fleet:
    from patchrings.domain.plan import load_plan

    f = fleet.reset(load_plan(plan).to_dict())
    f.add("r0-win-1", "Windows", "1", "ring0")
    f.add("r0-win-2", "Windows", "2", "ring0")
    f.add("r0-lnx-1", "Linux", "3", "ring0")
    f.add("r1-win-1", "Windows", "1", "ring1-hold")
    f.add("r1-lnx-1", "Linux", "2", "ring1-hold")
    f.add("r2-win-1", "Windows", "1", "ring2")
    f.add("r2-lnx-1", "Linux", "3", "ring2")
    return f


@pytest.fixture
def run() -> Iterator[Any]:
    """Start the fake app with a given plan; yields ``start(plan) -> (driver, fleet)``."""
    hosts: list[HostThread] = []

    def start(plan: dict[str, Any] | None = None, storage: str = ":memory:") -> tuple[Driver, fleet.Fleet]:
        from patchrings.domain.plan import load_plan

        plan = plan or default_plan()
        f = make_fleet(plan)
        ht = HostThread(APP, make_clock("skip", start=START), storage=storage).start()
        hosts.append(ht)
        deps.override(settings=Settings(approver_header_fallback=True), plan=load_plan(plan), ledger=f)
        return Driver(ht), f

    yield start
    for ht in hosts:
        ht.stop()
        ht.clock.close()
    deps.reset()


def ring_ids(f: fleet.Fleet, prefix: str) -> set[str]:
    return {vm.id for vm in f.vms.values() if vm.name.startswith(prefix)}


def approve(d: Driver, rid: str, ring: str, who: str = "alice@contoso.com") -> dict[str, Any]:
    doc = d.until_waiting(rid, "approval", ring)
    result = d.decide(rid, ring, "approve", doc["waitingFor"]["manifestHash"], who)
    assert result.status == 202, result
    return doc


def scheduled_run(d: Driver, rid: str, ring: str, configuration: str, *, post_status: str = "Succeeded") -> str:
    doc = d.until_waiting(rid, "pre-maintenance event", ring)
    start = doc["rings"][[r["name"] for r in doc["rings"]].index(ring)]["target"]["runStart"]
    assert d.deliver(maintenance_event("pre", configuration, start)) == 202
    d.until_waiting(rid, "post-maintenance event", ring)
    assert d.deliver(maintenance_event("post", configuration, start, status=post_status)) == 202
    return correlation_id(configuration, start)


# ---------------------------------------------------------------------- happy path
def test_happy_path_three_rings(run: Any) -> None:
    d, f = run()
    with d.clock.hold():
        rid = d.start(who=INITIATOR, reason="November patches")
        doc = approve(d, rid, "ring1")
        manifest_hash = doc["manifest"]["hash"]
        assert doc["rings"][0]["gate"]["outcome"] == "pass"
        ring1_run = scheduled_run(d, rid, "ring1", "mc-ring1")
        approve(d, rid, "ring2", who="carol@contoso.com")
        ring2_run = scheduled_run(d, rid, "ring2", "mc-ring2")
        final = d.until_done(rid)

    assert final.runtime_status.value == "Completed"
    assert final.output["state"] == "completed", final.output
    assert final.output["outcome"] == "passed"
    assert [r["gate"]["outcome"] for r in final.output["rings"]] == ["pass", "pass", "pass"]

    # Ring 0 only was installed directly, once per VM, Windows pinned to the rollout's start.
    installs = f.called("start_install")
    assert {p["vm"]["id"] for p in installs} == ring_ids(f, "r0-")
    assert len(installs) == 3
    for p in installs:
        if p["vm"]["os"] == "Windows":
            assert p["parameters"]["windowsParameters"]["maxPatchPublishDate"] == START
    # waves of at most maxConcurrency=2
    assert len({p["runId"] for p in installs}) == 1

    # The manifest from Ring 0 was pinned into both later rings' configurations.
    pins = f.called("pin_manifest")
    assert [p["configurationId"].rsplit("/", 1)[-1] for p in pins] == ["mc-ring1", "mc-ring2"]
    assert {p["manifest"]["hash"] for p in pins} == {manifest_hash}
    assert pins[0]["manifest"]["windows"]["kbNumbers"] == ["5040001", "5040002"]
    assert pins[0]["manifest"]["linux"]["packages"] == ["openssl=3.0.2-1ubuntu1.20"]

    # Ring 1 opened by retag and closed again; ring 2 by its assignment, removed at the end.
    retags = [(p["value"], sorted(p["vmIds"])) for p in f.called("retag_vms")]
    assert retags == [("ring1", sorted(ring_ids(f, "r1-"))), ("ring1-hold", sorted(ring_ids(f, "r1-")))]
    assert [(p["ring"], p["present"]) for p in f.called("set_ring_assignment")] == [
        ("ring2", True),
        ("ring2", False),
    ]
    # Both scheduled runs were authorised (nothing cancelled), and the guard let them run.
    assert f.cancelled == []
    authorised = {r["runId"] for r in f.ring_runs_ if r.get("state") == "authorised"}
    assert authorised == {ring1_run, ring2_run}
    # The approvals are in the ledger, bound to the manifest.
    accepted = [a for a in f.called("ledger_record_approval")]
    assert [(a["ring"], a["decision"]["approver"], a["manifestHash"]) for a in accepted] == [
        ("ring1", "alice@contoso.com", manifest_hash),
        ("ring2", "carol@contoso.com", manifest_hash),
    ]
