"""Blast radius of a bad patch, detection latency and time to full fleet, by wave schedule (issue 11).

The real app (``function_app.py``) on the local platform (Functions host + ARM simulator +
Azurite, skip clock) rolls the functional scenario's fleet with a 40-VM Ring 0 (half Windows, half
Linux, zones 1-3) and 2 VMs in each of Rings 1 and 2, once per Ring 0 rate control:
``maxConcurrency: 5``, ``maxConcurrency: "10%"`` and ``maxConcurrency: 5`` with
``waveSchedule: "geometric"`` (1, 2, 4, 5, 5, ...); ``maxErrors: 0`` throughout. Two runs each:

* **Bad patch** -- the Windows security update turns every Windows VM that installs it unhealthy
  (the simulator's ``unhealthyAfterPatch`` fault, ``patch`` + ``os``). *Harmed* = VMs the app
  installed it on that turned unhealthy (the simulator's install plans). *Lower bound* = the
  affected VMs of the first wave that holds one (that wave runs at once: no schedule of the same
  waves can harm fewer). The waves are the ones the app actually ran (the wave sub-orchestrations'
  inputs). *Detection latency* = simulated minutes from the end of a harmed VM's install to the
  app's last health read of it (its verdict), from the durable histories; the largest over the
  harmed VMs is reported.
* **The next cycle** -- on the same platform, after the bad run halted: the next morning's rollout
  of the same plan (``quarantine.onBadManifest`` as the plan says: ``exclude`` by default) runs
  Ring 0 until it halts or waits for Ring 1's approval (the VMs the bad run harmed repaired first,
  as a person would). *Re-harm* = VMs whose cycle-2 install
  installed the patch the failed gate quarantined or turned unhealthy (goal 0): the halt is
  carried into the next cycle (issue 11, "remember a bad manifest"). Measured on the simulator's
  install plans of cycle 2's installs, with the exclusions the app sent.
* **Good patch** -- the same fleet without the fault, both approvals given as soon as asked.
  *Ring 0 time / lower bound*: Ring 0's sub-orchestration from start to end against
  sum over its waves (longest install of the wave, from the simulator) + waves x (waitDuration +
  healthyStateDuration): what serial, verified waves need with no polling delay. *Time to full
  fleet* = rollout start to the end of the last install anywhere (Ring 2's scheduled run);
  its *lower bound* is the same run moved to the Ring 1 window a Ring 0 at its lower bound would
  have made (Ring 1's daily window at 12:00 UTC, promotion by T-40 minus the plan's t40Margin):
  a ratio above 1 is days lost to a missed cutoff.

The rollout starts at 01:00 UTC, so a Ring 0 at its lower bound can make Ring 1's 12:00 window.

``BENCH_BLAST_SCHEDULES=5,10%,geometric`` picks rows.

Results: ``bench/results/blast_radius.json`` (this module's own file, or ``$BENCH_OUT``;
``python -m bench`` also writes ``bench_blast_radius.json``).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.bench_ring_scale import APPROVERS, TERMINAL, WAIT_SECONDS, _arm_fleet, _plan

RESULTS = Path(__file__).resolve().parent / "results"
START = "2026-11-16T01:00:00Z"
SIZES = (40, 2, 2)
RING1_WINDOW_HOUR = 12  # mc-ring1: daily at 12:00 UTC (tests/functional/platform_scenario.py)
T40 = timedelta(minutes=40)

ROWS: dict[str, dict[str, Any]] = {
    "5": {"maxConcurrency": 5, "maxErrors": 0},
    "10%": {"maxConcurrency": "10%", "maxErrors": 0},
    "geometric": {"maxConcurrency": 5, "maxErrors": 0, "waveSchedule": "geometric"},
}


def _minutes(delta: timedelta) -> float:
    return round(delta.total_seconds() / 60, 1)


def _ts(value: Any) -> datetime:
    from patchrings.arm.vms import parse_time

    parsed = value if isinstance(value, datetime) else parse_time(str(value))
    assert parsed is not None, value
    return parsed


def _platform(rate: dict[str, Any], faults: list[dict[str, Any]], tag: str) -> tuple[Any, dict[str, str]]:
    from emulator.clock import make_clock
    from emulator.platform import LocalPlatform

    scenario, members = _arm_fleet(SIZES)
    scenario["faults"] = faults
    plan = _plan(None)
    plan["rings"][0]["rate"] = dict(rate)
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-blast-{os.getpid()}-{tag}"
    state.mkdir(parents=True, exist_ok=True)
    plan_path = state / "plan.json"
    plan_path.write_text(json.dumps(plan))
    platform = LocalPlatform(scenario, clock=make_clock("skip", start=START), state_dir=state / "platform",
                             settings={"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true",
                                       "PATCHRINGS_PLAN_PATH": str(plan_path)})
    os_of = {name.lower(): os_name for ring in members.values() for name, os_name in ring}
    return platform, os_of


def _instances(platform: Any) -> dict[str, Any]:
    async def snapshot() -> dict[str, Any]:
        return {iid: {"name": inst.name, "created": inst.created, "updated": inst.updated,
                      "input": inst.input_text, "status": inst.status, "history": list(inst.history)}
                for iid, inst in platform.host.engine.instances.items()}

    assert platform.loop is not None
    result: dict[str, Any] = platform.loop.call(snapshot())
    return result


def _waves(instances: dict[str, Any], rid: str) -> list[list[str]]:
    """VM names of Ring 0's waves, in the order the app ran them: each wave instance's (and
    slice's, ``w3.1``) members -- the ``read_wave_members`` answer in its history (issue 11, item
    2: the ring hands a wave a reference, not its VMs), or its input's ``vms`` (an older wave)."""
    from emulator.host import history as h

    prefix = f"{rid}:ring0:w"
    found: dict[int, list[tuple[int, list[str]]]] = {}
    for iid, inst in instances.items():
        tail = iid[len(prefix):] if iid.startswith(prefix) else ""
        wave, _, part = tail.partition(".")
        if not wave.isdigit() or (part and not part.isdigit()):
            continue
        doc = _json(inst["input"] or "{}")
        vms = doc.get("vms")
        if vms is None:
            scheduled = {ev["EventId"] for ev in inst["history"] if ev.get("EventType") == h.TASK_SCHEDULED
                         and ev.get("Name") == "read_wave_members"}
            answers = [_json(ev.get("Result") or "{}") for ev in inst["history"]
                       if ev.get("EventType") == h.TASK_COMPLETED and ev.get("TaskScheduledId") in scheduled]
            vms = [vm for answer in answers for vm in answer.get("vms") or []]
        found.setdefault(int(wave), []).append(
            (int(part or 0), [str(vm["id"]).rsplit("/", 1)[-1].lower() for vm in vms]))
    return [[name for _, names in sorted(found[w]) for name in names] for w in sorted(found)]


def _json(text: Any) -> dict[str, Any]:
    doc = text
    while isinstance(doc, str):  # the host keeps inputs and results as JSON text (of JSON text)
        doc = json.loads(doc)
    return doc if isinstance(doc, dict) else {}


def _install_plans(platform: Any) -> dict[str, Any]:
    """VM name -> the simulator's InstallPlan of its direct install (Ring 0)."""
    return {op.vm_id.rsplit("/", 1)[-1].lower(): op.plan for op in platform.arm.operations.values()
            if op.kind == "installPatches" and op.plan is not None}


def _drive(platform: Any, *, approve: bool) -> tuple[str, dict[str, Any]]:
    from tests.functional.platform_driver import driver

    d = driver(platform)
    rid = d.start(who="bench@contoso.com")
    decided: set[str] = set()
    while True:
        def step() -> Any:
            if d.runtime(rid) in TERMINAL:
                return "done"
            waiting = d.doc(rid).get("waitingFor") or {}
            if approve and waiting.get("what") == "approval" and waiting.get("ring") not in decided:
                return waiting
            return None

        got = d.until(step, timeout=WAIT_SECONDS)
        if got == "done":
            break
        decided.add(got["ring"])
        result = d.decide(rid, got["ring"], "approve", got["manifestHash"], APPROVERS[got["ring"]])
        assert result.status == 202, result
    return rid, d.status(rid).output or {}


def _next_cycle(platform: Any, bad_kb: str, harmed: list[str]) -> dict[str, Any]:
    """The next cycle's rollout on the same platform, until it ends or waits for Ring 1 (re-harm).

    The VMs the bad run harmed are repaired first (the simulator would keep them unhealthy for
    ever, and Ring 0's gate would fail on them again whatever the rollout installs)."""
    from tests.functional.platform_driver import driver, installs

    for name in harmed:
        platform.arm.control.set_vm_state(name, health="Healthy")
    d = driver(platform)
    before = set(platform.arm.operations)
    sent = len(installs(platform))
    rid = d.start(who="bench@contoso.com")

    def step() -> Any:
        if d.runtime(rid) in TERMINAL:
            return "done"
        waiting = d.doc(rid).get("waitingFor") or {}
        return "waiting" if waiting.get("what") == "approval" and waiting.get("ring") != "ring0" else None

    reached = d.until(step, timeout=WAIT_SECONDS)
    doc = d.doc(rid)
    ops = [op for key, op in platform.arm.operations.items() if key not in before
           and op.kind == "installPatches" and op.plan is not None]
    reharmed = sorted({op.vm_id.rsplit("/", 1)[-1].lower() for op in ops
                       if op.plan.becomes_unhealthy or any(bad_kb in k for k in op.plan.installed_keys)})
    bodies = [(r.body or {}).get("windowsParameters") for r in installs(platform)[sent:]]
    windows = [wp for wp in bodies if wp]
    excluding = [wp for wp in windows
                 if bad_kb in [str(k).upper().removeprefix("KB") for k in wp.get("kbNumbersToExclude") or []]]
    gate = ((doc.get("rings") or [{}])[0].get("gate") or {}).get("outcome")
    return {
        "onBadManifest": (_plan(None).get("quarantine") or {}).get("onBadManifest", "exclude"),
        "reached": "ring1-approval" if reached == "waiting" else "ended",
        "state": doc.get("state"), "ring0Gate": gate, "repairedBeforeCycle": len(harmed), "installs": len(ops),
        "windowsInstallsExcludingBadPatch": f"{len(excluding)}/{len(windows)}",
        "reHarm": len(reharmed), "reHarmedVms": reharmed,
    }


def measure_bad(label: str, rate: dict[str, Any]) -> dict[str, Any]:
    from emulator.host import history as h
    from tests.functional.platform_scenario import KB_OLD

    fault = {"type": "unhealthyAfterPatch", "patch": KB_OLD, "os": "Windows"}
    platform, os_of = _platform(rate, [fault], f"bad-{label.strip('%')}")
    started = time.perf_counter()
    platform.start()
    try:
        rid, out = _drive(platform, approve=False)
        instances = _instances(platform)
        plans = _install_plans(platform)
        next_cycle = _next_cycle(platform, KB_OLD, sorted(n for n, p in plans.items() if p.becomes_unhealthy))
    finally:
        platform.stop()
    waves = _waves(instances, rid)
    affected = {name for name, os_name in os_of.items() if os_name == "Windows" and name.startswith("r0-")}
    harmed = sorted(name for name, plan in plans.items() if plan.becomes_unhealthy)
    first_hit = next((i for i, wave in enumerate(waves) if affected & set(wave)), None)
    bound = len(affected & set(waves[first_hit])) if first_hit is not None else 0
    latencies = {}
    for name in harmed:
        reads = [ev["Timestamp"] for iid, inst in instances.items() if iid.endswith(":verify")
                 for ev in inst["history"] if ev.get("EventType") == h.TASK_SCHEDULED
                 and str(ev.get("Name", "")).startswith("check_vm_health")
                 and name in str(ev.get("Input") or "").lower()]
        if reads:
            latencies[name] = _minutes(_ts(max(reads)) - plans[name].end)
    return {
        "rate": rate, "outcome": f"{out.get('state')}/{out.get('outcome')}"[:300],
        "waveSizes": [len(w) for w in waves], "wavesRun": len(waves),
        "harmed": len(harmed), "harmedVms": harmed, "lowerBound": bound,
        "harmedOverLowerBound": round(len(harmed) / bound, 3) if bound else None,
        "installs": len(plans),
        "detectionMinutesAfterInstall": max(latencies.values()) if latencies else None,
        "detectionByVm": latencies,
        "nextCycle": next_cycle,
        "nextCycleReHarm": next_cycle["reHarm"],
        "wallSeconds": round(time.perf_counter() - started, 1),
    }


def _phase_minutes(plan: dict[str, Any], key: str, default: float) -> float:
    from patchrings.domain.timeutil import parse_duration

    phases = ((plan.get("defaults") or {}).get("health") or {}).get("phases") or {}
    raw = phases.get(key)
    return parse_duration(raw).total_seconds() / 60 if raw else default


def measure_good(label: str, rate: dict[str, Any]) -> dict[str, Any]:
    platform, _ = _platform(rate, [], f"good-{label.strip('%')}")
    plan = _plan(None)
    per_wave = _phase_minutes(plan, "waitDuration", 5) + _phase_minutes(plan, "healthyStateDuration", 15)
    margin = timedelta(minutes=5)  # the plan's promotion.t40Margin (BUILTIN_PROMOTION)
    started = time.perf_counter()
    platform.start()
    try:
        rid, out = _drive(platform, approve=True)
        instances = _instances(platform)
        plans = _install_plans(platform)
        run_plans = [(run.config_name, p) for run in platform.arm.runs for p in run.plans.values()]
    finally:
        platform.stop()
    waves = _waves(instances, rid)
    t0 = _ts(instances[rid]["created"])
    ring0 = instances[f"{rid}:ring0"]
    ring0_minutes = _minutes(_ts(ring0["updated"]) - _ts(ring0["created"]))
    ring0_bound = sum(max(_minutes(plans[n].end - plans[n].start) for n in wave) + per_wave for wave in waves)
    ends = [p.end for p in plans.values()] + [p.end for _, p in run_plans]
    full = max(ends) - t0
    ring1_starts = sorted(p.start for name, p in run_plans if "ring1" in name.lower())
    shift = timedelta(0)
    if ring1_starts:
        used = ring1_starts[0].replace(hour=RING1_WINDOW_HOUR, minute=0, second=0, microsecond=0)
        ready = t0 + timedelta(minutes=ring0_bound) + T40 + margin  # Ring 0 at its bound, then promotion
        best = used
        while best - timedelta(days=1) >= ready:
            best -= timedelta(days=1)
        shift = used - best
    bound = full - shift
    return {
        "rate": rate, "outcome": f"{out.get('state')}/{out.get('outcome')}"[:300],
        "waveSizes": [len(w) for w in waves], "wavesRun": len(waves),
        "ring0Minutes": ring0_minutes, "ring0LowerBoundMinutes": round(ring0_bound, 1),
        "ring0OverLowerBound": round(ring0_minutes / ring0_bound, 3) if ring0_bound else None,
        "fullFleetHours": round(full.total_seconds() / 3600, 2),
        "fullFleetLowerBoundHours": round(bound.total_seconds() / 3600, 2),
        "fullFleetOverLowerBound": round(full / bound, 4) if bound else None,
        "daysLostToRing1Cutoff": shift.days,
        "wallSeconds": round(time.perf_counter() - started, 1),
    }


def run() -> dict[str, Any]:
    labels = [s.strip() for s in os.environ.get("BENCH_BLAST_SCHEDULES", "5,10%,geometric").split(",") if s.strip()]
    rows = {}
    print(f"   Ring 0: {SIZES[0]} VMs (half Windows); bad patch: the Windows security update -> unhealthy; "
          f"maxErrors 0; start {START}")
    print(f"   {'schedule':>10} {'waves (bad run)':>24} {'harmed':>6} {'bound':>5} {'ratio':>5} {'detect min':>10} "
          f"{'ring0 min':>9} {'/bound':>6} {'fleet h':>7} {'/bound':>6} {'re-harm':>7}")
    for label in labels:
        rate = ROWS[label]
        bad = measure_bad(label, rate)
        good = measure_good(label, rate)
        rows[label] = {"badPatch": bad, "goodPatch": good}
        print(f"   {label:>10} {str(bad['waveSizes'])[:24]:>24} {bad['harmed']:>6} {bad['lowerBound']:>5} "
              f"{bad['harmedOverLowerBound']!s:>5} {bad['detectionMinutesAfterInstall']!s:>10} "
              f"{good['ring0Minutes']:>9} {good['ring0OverLowerBound']!s:>6} {good['fullFleetHours']:>7} "
              f"{good['fullFleetOverLowerBound']!s:>6} {bad['nextCycleReHarm']!s:>7}")
    result = {"start": START, "sizes": list(SIZES), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    name = os.environ.get("BENCH_OUT") or "blast_radius.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2, default=str))
    print(f"   saved bench/results/{name}")
    return result


if __name__ == "__main__":
    run()
