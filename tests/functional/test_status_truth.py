"""``GET /api/rollouts/{id}`` tells the truth at a glance, on the local platform (issue 9).

One three-ring rollout (host + ARM simulator + Azurite + Event Grid topic, one skip clock):
while Ring 0 installs, the API says which wave of how many and its counts move (VMs not started
included); per-VM rows carry short names and full ids; the manifest lists KBs with titles;
links are absolute; an approval's ``decidedAt`` is the simulated time, not the wall clock; the
ledger's rollout row is not a stale copy; a halt notifies ``rollout-halted`` through the real
``notify`` activity to the topic, and a second halt answers 409 naming the state.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import driver, ledger

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"




def test_the_status_api_shows_moving_counts_platform_times_and_notifies_a_halt(held: Any) -> None:
    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who="dave@contoso.com")
    base = str(p.base_url)

    # While Ring 0 installs: every look at the API, until Ring 0 has left "installing".
    seen: list[dict[str, Any]] = []

    def ring0_installed() -> bool:
        view = d.api("GET", f"/api/rollouts/{rid}").json
        ring0 = (view.get("rings") or [{}])[0]
        if ring0.get("phase") == "installing":
            seen.append(ring0)
        return bool(ring0.get("phase")) and ring0.get("phase") not in ("pending", "installing")

    d.until(ring0_installed)
    assert seen, "the API never showed Ring 0 installing"
    assert all(r["phaseText"].startswith("installing wave ") for r in seen if r.get("progress")), seen
    assert any(r.get("progress") for r in seen), seen
    for ring in seen:  # VMs not started are counted: every VM is somewhere
        c = ring["counts"]
        assert c["vms"] == len(sc.RING0), c
        assert c["finished"] + c["installing"] + c["verifying"] + c["notStarted"] + c["skipped"] >= c["vms"] - 0, c
    moves = {(r["counts"]["finished"], r["counts"]["installing"], r["counts"]["verifying"], r["counts"]["notStarted"],
              (r.get("progress") or {}).get("step")) for r in seen}
    assert len(moves) >= 2, f"the counts did not move while Ring 0 ran: {moves}"

    # Waiting for Ring 1's approval: the API says until when, with absolute links.
    doc = d.until_waiting(rid, "approval", "ring1")
    view = d.api("GET", f"/api/rollouts/{rid}").json
    waiting = view["waitingFor"]
    assert waiting["approveUrl"] == f"{base}/api/rollouts/{rid}/rings/ring1/approve"
    assert view["links"]["page"] == f"{base}/api/ui/rollouts/{rid}"
    ring0, ring1 = view["rings"][0], view["rings"][1]
    assert ring1["phase"] == "awaiting-approval"
    assert ring1["phaseText"] == f"waiting for approval until {waiting['until']}"
    assert ring0["counts"]["passed"] == len(sc.RING0) and ring0["counts"]["notStarted"] == 0
    assert sorted(v["name"] for v in ring0["vms"]) == sorted(sc.RING0)
    assert all(v["id"] == f"{sc.VM}/{v['name']}" and v["kind"] == "vm" for v in ring0["vms"])
    manifest = view["manifest"]
    assert manifest["hash"] == doc["waitingFor"]["manifestHash"]
    assert sorted(k["kb"] for k in manifest["windows"]) == sorted(f"KB{k}" for k in (sc.KB_OLD, sc.KB_CRIT))
    assert all(k["title"] and k["classifications"] for k in manifest["windows"]), manifest
    assert [p_["package"] for p_ in manifest["linux"]] == [sc.OPENSSL]
    # the diff against what each later ring's machines would install (manifest_diff, asked once)
    diff = manifest["diff"]
    assert [r["ring"] for r in diff["rings"]] == ["ring1", "ring2"], diff
    assert all(r.get("error") or r["machines"] == 2 for r in diff["rings"]), diff
    # no stale copy: the ledger's rollout row follows the live state and carries no old document
    assert view["ledger"]["rollout"]["state"] == view["state"] == "waiting"
    assert "status" not in view["ledger"]["rollout"]

    answer = d.decide(rid, "ring1", "approve", waiting["manifestHash"], "alice@contoso.com")
    assert answer.status == 202 and "decidedAt" not in answer.json["decision"]
    d.until_waiting(rid, "approval", "ring2")

    # The decision's time is the platform's (simulated) time, within the run: not today's wall clock.
    view = d.api("GET", f"/api/rollouts/{rid}").json
    [accepted] = [a for a in view["approvals"] if a["outcome"] == "accepted" and a["ring"] == "ring1"]
    assert accepted["approver"] == "alice@contoso.com" and accepted["verdict"] == "approve"
    assert START <= accepted["decidedAt"] <= view["status"]["updatedAt"], accepted
    assert accepted["decidedAt"] < "2026-11-18T00:00:00Z" and accepted["decidedAt"].endswith("Z")
    # one time format, and every recorded time the platform's: no offsets, no wall-clock date
    text = json.dumps(view)
    assert "+00:00" not in text
    wall = datetime.now(UTC).strftime("%Y-%m-%dT")
    assert wall not in text or wall.startswith("2026-11-1"), [m for m in text.split('"') if m.startswith(wall)][:5]

    # The trigger's event rows carry the event's own (platform) time, not the worker's wall clock.
    rows = [r for r in ledger(p).events(f"{sc.MC}/mc-ring1") if "receivedAt" in r]  # (guard rows have none)
    assert rows, "Ring 1's maintenance events were recorded"
    assert all(START <= str(r["receivedAt"]) < "2026-11-18T00:00:00Z" for r in rows), rows

    # A halt tells people through the notify activity (CloudEvent on the topic); a second gets 409.
    halted = d.api("POST", f"/api/rollouts/{rid}/halt", {"reason": "incident 42"}, who="bob@contoso.com")
    assert halted.status == 202, halted
    d.until(lambda: p.published_events(type="PatchRings.RolloutHalted"))
    [event] = p.published_events(type="PatchRings.RolloutHalted", dedupe=True)
    assert event["source"] == f"/patchrings/rollouts/{rid}" and event["data"]["reason"] == "incident 42"
    waiting_events = p.published_events(type="PatchRings.ApprovalWaiting", dedupe=True)
    assert [e["subject"] for e in waiting_events] == ["rings/ring1", "rings/ring2"]
    assert waiting_events[0]["data"]["manifestHash"] == doc["waitingFor"]["manifestHash"]
    again = d.api("POST", f"/api/rollouts/{rid}/halt", {"reason": "again"}, who="bob@contoso.com")
    assert again.status == 409 and again.json["error"]["details"]["state"] == "halted", again
