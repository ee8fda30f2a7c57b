"""Repeat harm (issue 11) on the local platform: a bad patch halts the rollout at Ring 0's gate,
the halt is remembered as a quarantine in the ledger, and the next cycle's rollout of the same
plan does not install the bad patch on Ring 0 again (re-harm = 0), while Ring 0 still patches.

With the plan's ``quarantine.onBadManifest: wait`` the next cycle does not start Ring 0 until an
approver decides; decisions that are forged (raised around the API) or unauthorised are refused.

Each scenario checks it end to end: the real app, the ARM simulator (installPatches honours
``kbNumbersToExclude``) and Azurite, on one skip clock held from before the platform starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import PlatformHost, driver, installs, ledger, vm_name

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"




def test_a_bad_patch_is_not_installed_again_by_the_next_cycles_ring0(held: Any) -> None:
    fault = {"type": "patchFails", "patch": sc.KB_OLD, "vms": ["r0-web-1"]}
    p = held(sc.scenario(faults=[fault]))
    d = driver(p)

    # cycle 1: the bad patch fails on r0-web-1, Ring 0's gate fails, the rollout halts
    first = d.start(who="dave@contoso.com")
    out = d.until_done(first).output
    assert out["state"] == "halted" and "ring0 failed its gate" in out["outcome"], out
    harmed_first = [r for r in installs(p) if vm_name(r) == "r0-web-1"]
    assert harmed_first, "cycle 1 installed on r0-web-1"
    cycle1 = len(installs(p))

    # the ledger remembers what the failed gate blamed, per plan, with when and why
    lg = ledger(p)
    plan_name = str((lg.rollout(first) or {}).get("planName"))
    [entry] = lg.quarantines(plan_name)
    assert entry["id"] == f"{first}:ring0" and entry["rolloutId"] == first and entry["released"] is False
    assert sc.KB_OLD in entry["kbs"] and entry["by"] == "system:gate-failed"
    assert entry["at"] >= START and "r0-web-1" in entry["failedVms"]
    status = d.doc(first)
    assert any("quarantined" in n["text"] and f"KB{sc.KB_OLD}" in n["text"] for n in status["notes"]), status

    # cycle 2: the next rollout of the plan; Ring 0 runs and waits for Ring 1's approval
    second = d.start(who="dave@contoso.com")
    waiting = d.until_waiting(second, "approval", "ring1")
    assert waiting["rings"][0]["gate"]["outcome"] == "pass", waiting["rings"][0]
    again = installs(p)[cycle1:]
    assert sorted(vm_name(r) for r in again if (r.body or {}).get("windowsParameters")) == ["r0-web-1", "r0-web-2"]
    for record in again:
        wp = (record.body or {}).get("windowsParameters")
        if wp:  # every Windows install of cycle 2 excludes the quarantined KB
            assert sc.KB_OLD in [str(k).upper().removeprefix("KB") for k in wp.get("kbNumbersToExclude") or []]
    # re-harm = 0: the bad patch reached no VM in cycle 2 (it never installed on r0-web-1, and
    # nothing failed), and the manifest that later rings would get does not carry it
    assert not any(sc.KB_OLD in k for k in p.arm.vm("r0-web-1").installed)
    assert sc.KB_OLD not in (d.doc(second).get("manifest") or {}).get("windows", {}).get("kbNumbers", [])
    assert sc.OPENSSL in p.arm.vm("r0-app-1").installed  # Ring 0 still patched what was not blamed
    assert any("quarantined patch(es) excluded" in n["text"] for n in waiting["notes"]), waiting["notes"]
    row = lg.rollout(second) or {}
    assert row.get("quarantine", {}).get("entries") == [entry["id"]]
    # the planner's estimate at the start (issue 11): Ring 0 against Ring 1's next run at 12:00
    planner = row.get("planner") or {}
    assert planner.get("ring") == "ring0" and planner.get("nextRing") == "ring1", planner
    assert planner.get("nextRunStart", "").endswith("T12:00:00Z") and planner.get("fits") is True, planner
    assert [n for n in waiting["notes"] if n["text"].startswith("planner: ")] or not planner.get("warnings")


def _waiting_plan() -> dict[str, Any]:
    plan = json.loads((Path(__file__).resolve().parents[2] / "plans" / "default.json").read_text())
    plan["quarantine"] = {"onBadManifest": "wait"}
    return plan  # type: ignore[no-any-return]


def test_with_on_bad_manifest_wait_the_next_cycle_waits_for_a_person_and_refuses_forged_decisions(
        held: Any) -> None:
    fault = {"type": "patchFails", "patch": sc.KB_OLD, "vms": ["r0-web-1"]}
    p = held(sc.scenario(faults=[fault]), plan=_waiting_plan())
    d = driver(p)

    # cycle 1: nothing is quarantined yet, so nothing to wait for; the gate fails on the bad patch
    first = d.start(who="dave@contoso.com")
    out = d.until_done(first).output
    assert out["state"] == "halted" and "ring0 failed its gate" in out["outcome"], out
    lg = ledger(p)
    [entry] = lg.quarantines(str((lg.rollout(first) or {}).get("planName")))
    cycle1 = len(installs(p))

    # cycle 2: the rollout does not start Ring 0; it waits for a person, says for what and until when
    second = d.start(who="dave@contoso.com")
    doc = d.until_waiting(second, "approval", "ring0")
    waiting = doc["waitingFor"]
    assert waiting["kind"] == "quarantine" and waiting["quarantine"]["entries"] == [entry["id"]], waiting
    assert waiting["manifestHash"].startswith("q-") and waiting["until"] > START
    assert waiting["approvers"] == ["alice@contoso.com", "bob@contoso.com"]  # the first manual ring's
    assert len(installs(p)) == cycle1, "nothing is installed while the rollout waits"
    token = waiting["manifestHash"]

    # refused: a caller who is not an approver, the rollout's own initiator, a stale token
    assert d.decide(second, "ring0", "approve", token, "mallory@contoso.com").status == 403
    assert d.decide(second, "ring0", "approve", token, "dave@contoso.com").status == 403
    assert d.decide(second, "ring0", "approve", "q-000000000000", "alice@contoso.com").status == 409
    # a decision raised around the API (Durable webhook, system key) is refused by the rollout
    forged = {"decisionId": "forged-1", "approver": "alice@contoso.com", "ring": "ring0", "manifestHash": token,
              "verdict": "approve", "comment": ""}
    p.loop.call(PlatformHost(p).client().raise_event(second, "ApprovalDecision", forged))

    def refused() -> Any:
        approvals = d.doc(second).get("approvals") or []
        return [a for a in approvals if a.get("decisionId") == "forged-1" and a.get("accepted") is False]

    assert d.until(refused)[0]["error"]["code"] == "DecisionNotSubmitted"
    assert (d.doc(second).get("waitingFor") or {}).get("kind") == "quarantine"  # still waiting
    assert len(installs(p)) == cycle1

    # a person decides: install Ring 0 without the quarantined patch
    assert d.decide(second, "ring0", "approve", token, "alice@contoso.com", "install without it").status == 202
    after = d.until_waiting(second, "approval", "ring1")
    assert after["rings"][0]["gate"]["outcome"] == "pass", after["rings"][0]
    decided = [a for a in after["approvals"] if a.get("kind") == "quarantine" and a.get("accepted")]
    assert decided[-1]["approver"] == "alice@contoso.com" and decided[-1]["choice"] == "exclude"
    rows = [r for r in lg.approvals(second) if r.get("kind") == "quarantine"]
    assert {r.get("outcome") for r in rows} >= {"accepted", "refused"}, rows
    # re-harm = 0: cycle 2 excluded the bad patch on every Windows install, and r0-web-1 never got it
    again = installs(p)[cycle1:]
    assert again and all(sc.KB_OLD in [str(k).upper().removeprefix("KB") for k in wp.get("kbNumbersToExclude") or []]
                         for wp in ((r.body or {}).get("windowsParameters") for r in again) if wp)
    assert not any(sc.KB_OLD in k for k in p.arm.vm("r0-web-1").installed)

    # cycle 3 (after cycle 2 ends at Ring 1): the entry is still active, so it waits again; a
    # rejection ends the rollout with nothing installed
    assert d.decide(second, "ring1", "reject", after["waitingFor"]["manifestHash"], "bob@contoso.com").status == 202
    assert d.until_done(second).output["state"] == "halted"
    cycle2 = len(installs(p))
    third = d.start(who="dave@contoso.com")
    waiting = d.until_waiting(third, "approval", "ring0")["waitingFor"]
    assert waiting["manifestHash"] == token  # the same entries: the same decision token
    assert d.decide(third, "ring0", "reject", token, "bob@contoso.com", "not this week").status == 202
    out = d.until_done(third).output
    assert out["state"] == "halted" and "nothing was installed" in out["outcome"], out
    assert len(installs(p)) == cycle2


def test_with_on_bad_manifest_wait_a_person_may_release_the_entries_and_ring0_installs_as_planned(
        held: Any) -> None:
    fault = {"type": "patchFails", "patch": sc.KB_OLD, "vms": ["r0-web-1"]}
    p = held(sc.scenario(faults=[fault]), plan=_waiting_plan())
    d = driver(p)
    first = d.start(who="dave@contoso.com")
    assert d.until_done(first).output["state"] == "halted"
    lg = ledger(p)
    plan_name = str((lg.rollout(first) or {}).get("planName"))
    [entry] = lg.quarantines(plan_name)
    cycle1 = len(installs(p))

    second = d.start(who="dave@contoso.com")
    token = d.until_waiting(second, "approval", "ring0")["waitingFor"]["manifestHash"]
    release = {"manifestHash": token, "releaseQuarantine": [entry["id"]]}
    # a release goes with approve only, and only names entries of this decision
    assert d.api("POST", f"/api/rollouts/{second}/rings/ring0/reject", release, who="alice@contoso.com").status == 400
    assert d.api("POST", f"/api/rollouts/{second}/rings/ring0/approve", release, who="alice@contoso.com").status == 202
    # released by that person in the ledger; Ring 0 installs as the plan says (the bad patch fails
    # again on r0-web-1: the person asked for it) and the new failure is quarantined again
    out = d.until_done(second).output
    assert out["state"] == "halted" and "ring0 failed its gate" in out["outcome"], out
    entries = {e["id"]: e for e in lg.quarantines(plan_name)}
    assert entries[entry["id"]]["released"] is True and f"{second}:ring0" in entries
    rows = [r for r in lg.approvals(second) if r.get("kind") == "quarantine" and r.get("outcome") == "accepted"]
    assert rows and rows[-1].get("choice") == "release", rows
    # the API (and so the CLI) shows the release in the rollout's approvals, as the page does
    view = d.api("GET", f"/api/rollouts/{second}", who="alice@contoso.com").json
    shown = [a for a in view["approvals"] if a.get("kind") == "quarantine" and a.get("outcome") == "accepted"]
    assert shown and shown[-1]["choice"] == "release" and shown[-1]["releaseQuarantine"] == [entry["id"]], shown
    windows = [(r.body or {}).get("windowsParameters") for r in installs(p)[cycle1:]]
    assert windows and not any(sc.KB_OLD in str(wp.get("kbNumbersToExclude") or []) for wp in windows if wp)
