"""Kill the host, keep Azure (issue 14 item 12): SIGKILL the Functions host process at 20 points
of a three-ring rollout while the ARM simulator and Azurite keep running and keep time.

Setup: ``LocalPlatform(host_process=True)`` -- the simulator's process is the time authority (its
clock API at ``platform.clock_url``), the host is ``python -m emulator start --clock
follow=<clock API>`` on a SQLite durable store. The test holds the clock and moves it only
through the clock API, so every kill lands at a state, not at a wall-clock moment:

* 18 kill points are seeded random positions in the simulator's request log (every ARM call
  the app makes, the simulator's own Event Grid deliveries count too), drawn from the length of
  an uncrashed reference run of the same rollout;
* 2 more kills land right after each approval was accepted (HTTP 202), the moment an approval
  could be lost.

After each kill the host is restarted on the same durable state. Checks: same outcome as the
uncrashed run (gates, manifest, what every VM installed), 0 duplicate installPatches per VM per
ring run (the simulator's recorder), 0 lost approvals (both approvals recorded, both gates
opened by them, no approval timeout).

Size: the functional fleet (7 VMs: 3 in Ring 0, 2 each in Rings 1 and 2), kept small so 21
host starts fit in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import make_clock
from emulator.platform import LocalPlatform
from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import driver, installs, ledger, vm_name

pytestmark = pytest.mark.functional
START = "2026-11-16T06:00:00Z"
INITIATOR = "dave@contoso.com"
APPROVERS = {"ring1": "alice@contoso.com", "ring2": "carol@contoso.com"}
SEED = 1412
RANDOM_KILLS = 18
TERMINAL = ("Completed", "Failed", "Terminated")


def _platform(tmp_path: Path, name: str) -> LocalPlatform:
    clock = make_clock("skip", start=START)
    return LocalPlatform(sc.scenario(), clock=clock, state_dir=tmp_path / name,
                         settings={"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true"}, host_process=True)


def _rollout(platform: LocalPlatform, kill_at: list[int], kill_after_approval: bool) -> dict[str, Any]:
    """Drive one rollout to its end, killing the host at the given recorder positions."""
    kills = sorted(kill_at)
    killed: list[str] = []
    approvals: list[tuple[str, int]] = []
    d = driver(platform)
    rid = d.start(who=INITIATOR)

    def progress() -> int:
        return len(platform.arm.recorder.find())

    def crash(why: str) -> None:
        platform.kill_host()
        killed.append(why)
        platform.start_host()

    def next_step() -> str | None:
        if kills and progress() >= kills[0]:
            return "kill"
        if d.runtime(rid) in TERMINAL:
            return "done"
        waiting = d.doc(rid).get("waitingFor") or {}
        if str(waiting.get("what", "")).startswith("approval") and waiting.get("ring") not in dict(approvals):
            return "approve"
        return None

    while True:
        step = d.until(next_step, timeout=180)
        if step == "done":
            break
        if step == "kill":
            crash(f"request #{kills.pop(0)}")
            continue
        waiting = d.doc(rid)["waitingFor"]
        ring = str(waiting["ring"])
        result = d.decide(rid, ring, "approve", waiting["manifestHash"], APPROVERS[ring])
        assert result.status == 202, result
        approvals.append((ring, result.status))
        if kill_after_approval:
            crash(f"right after approving {ring}")

    status = d.status(rid)
    out = status.output if isinstance(status.output, dict) else json.loads(status.output or "{}")
    lg = ledger(platform)
    recorded = sorted({(a.get("ring"), a.get("approver")) for a in lg.approvals(rid)
                       if str(a.get("verdict")).lower() in ("approve", "approved") and a.get("outcome") != "refused"})
    return {
        "runtime": d.runtime(rid),
        "state": out.get("state"),
        "outcome": out.get("outcome"),
        "gates": [(r.get("name"), (r.get("gate") or {}).get("outcome")) for r in out.get("rings", [])],
        "manifest": (out.get("manifest") or {}).get("hash"),
        "installed": {name: sorted(platform.arm.vm(name).installed) for name in sc.RING0 + sc.RING1 + sc.RING2},
        "approvals": approvals,
        "recordedApprovals": recorded,
        "killed": killed,
        "requests": progress(),
        "installPosts": sorted(vm_name(r) for r in installs(platform) if r.status < 300),
        # the scheduled runs that patched something, and which VMs they patched
        "runs": sorted((run.config_name.lower(), run.status, sorted(str(v).rsplit("/", 1)[-1] for v in run.plans))
                       for run in platform.arm.runs if run.plans),
    }


def test_twenty_host_kills_change_nothing(tmp_path: Path) -> None:
    with _platform(tmp_path, "reference") as platform:
        reference = _rollout(platform, [], kill_after_approval=False)
    # The outcome itself is the app's business (the other suites judge it); here it must only be
    # the same with and without crashes.
    assert reference["runtime"] == "Completed", reference
    assert [ring for ring, _ in reference["approvals"]] == ["ring1", "ring2"], reference
    assert reference["installPosts"] == sorted(sc.RING0)

    rng = random.Random(SEED)
    points = rng.sample(range(5, reference["requests"] - 5), RANDOM_KILLS)
    with _platform(tmp_path, "crashed") as platform:
        crashed = _rollout(platform, points, kill_after_approval=True)
        host_log = (platform.state_dir / "host.log").read_text(errors="replace")
        starts = platform.host_starts

    assert len(crashed["killed"]) == RANDOM_KILLS + 2, crashed["killed"]
    assert starts == RANDOM_KILLS + 3, starts  # the first start and one restart per kill
    assert "Traceback" not in host_log or "Failed" not in crashed["runtime"], host_log[-3000:]
    # same outcome as the uncrashed run
    summary = {k: (crashed[k], reference[k]) for k in ("state", "outcome", "gates", "killed")}
    for key in ("runtime", "state", "outcome", "gates", "manifest", "installed", "runs"):
        assert crashed[key] == reference[key], (key, "crashed vs reference:", summary)
    # 0 duplicate installPatches per VM per ring run: Ring 0 is the only ring installed on demand
    assert crashed["installPosts"] == sorted(sc.RING0), crashed["installPosts"]
    # 0 lost approvals: both accepted, both recorded, both gates opened by them
    assert [ring for ring, _ in crashed["approvals"]] == ["ring1", "ring2"]
    assert crashed["recordedApprovals"] == sorted(APPROVERS.items()), crashed["recordedApprovals"]


def test_a_person_with_curl_wins_the_approval_race_on_a_separate_host(tmp_path: Path) -> None:
    """Issue 14.11 across processes: a person holds a lease through the HOST's clock API (forwarded
    to the simulator's process, the time authority), waits with the host's long-poll (which lets
    time skip only while it waits) and approves each ring before its approval timeout can fire."""
    from urllib.parse import quote

    from emulator.clock_http import ClockClient
    from emulator.platform import http_call

    platform = _platform(tmp_path, "curl")
    with platform:
        host_clock = ClockClient(f"{platform.base_url}/admin/clock")
        lease = host_clock.lease(120, "a person with curl")
        assert any(item["leaseId"] == lease for item in platform.clock_client().state()["leases"])
        platform.release_hold()  # from here only the person's lease keeps time still
        who = {"x-functions-key": platform.function_key}
        started = http_call("POST", f"{platform.base_url}/api/rollouts", body={},
                            headers={**who, "X-PatchRings-Approver": INITIATOR})
        assert started.status == 202, started
        rid = str(started.json["id"])
        after = ""

        def long_poll_until(predicate: Any) -> dict[str, Any]:
            nonlocal after
            for _ in range(500):
                assert host_clock.renew(lease)
                url = (f"{platform.base_url}/admin/instances/{quote(rid, safe='')}/wait?lease={lease}&timeout=30"
                       + (f"&after={quote(after)}" if after else ""))
                answer = http_call("GET", url)
                assert answer.status in (200, 202), answer
                after = answer.headers.get("X-Last-Updated", after)
                body = answer.json
                custom = body.get("customStatus") or {}
                if isinstance(custom, str):
                    custom = json.loads(custom)
                if predicate(body, custom):
                    return dict(custom)
            raise AssertionError("the rollout never reached the awaited state")

        for ring in ("ring1", "ring2"):
            doc = long_poll_until(lambda body, custom, ring=ring: (custom.get("waitingFor") or {}).get("ring") == ring
                                  or body.get("runtimeStatus") in TERMINAL)
            waiting = doc["waitingFor"]
            assert waiting["what"].startswith("approval"), doc
            before = platform.clock.now()
            result = http_call("POST", f"{platform.base_url}/api/rollouts/{rid}/rings/{ring}/approve",
                               body={"manifestHash": waiting["manifestHash"]},
                               headers={**who, "X-PatchRings-Approver": APPROVERS[ring]})
            assert result.status == 202, result  # not 410: the approval timer has not fired
            assert platform.clock.now() == before  # the lease kept time still while the person acted
        final = long_poll_until(lambda body, custom: body.get("runtimeStatus") in TERMINAL)
        assert host_clock.release(lease)
    assert final.get("state") == "completed", json.dumps(final)[:2000]
