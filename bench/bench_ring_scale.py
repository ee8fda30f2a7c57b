"""Ring scale: ARM calls per VM per ring (simulator recorder), throttling, history per instance.

Two measurements, both reported as counts and ratios taken in one run (issue 11):

1. **ARM calls per VM per ring** -- the real app (``function_app.py``) on the local platform
   (Functions host + ARM simulator + Azurite, skip clock) runs the default plan's three rings over
   a generated fleet: a direct Ring 0 (installPatches + health checks), Ring 1 (scheduled, opened
   by retag) and Ring 2 (scheduled, opened by its configuration assignment). The simulator's
   recorder says which request belongs to which ring: each request is attributed to the ring
   phase it was made in (start -> Ring 1's approval request -> Ring 2's approval request -> end),
   and the VM-addressed ones also to their VM (by path; compute async-operation polls through the
   simulator's operation table). Reported per ring: calls per VM (all calls of the phase / the
   ring's VMs), calls per VM by operation, VM-addressed calls per Windows / Linux VM, and
   throttled requests (429) in the whole run. ``BENCH_FLEET_EXTRA=N`` adds N VMs of no ring to the
   same subscription (half tagged ``patchRing: none``, half untagged): what a ring costs in a large
   subscription without thousands of ring members. ``BENCH_ARM_RINGS=6,10,10`` sets the ring sizes
   (``20,490,490;20,5000,4980``: one platform run per size, one after the other, and the
   orchestrator CPU ratio of the last against the first), ``BENCH_ARM_CONCURRENCY`` Ring 0's
   maxConcurrency (default: the plan's, 2). Also from the same run: orchestrator CPU (the host's
   per-episode thread CPU time, ``engine.stats`` / ``Instance.cpu_seconds``) in all and per VM,
   history events and replayed bytes per instance of the real app (largest, by kind), and the
   limiter's time cost from the pacers' own counters (``stalled``: real seconds during which a
   call waited for its slot; the ARM read pacers of the health batches and the tag write pacers).
2. **Detection latency** -- one Ring 0 VM turns unhealthy after its install (the simulator's
   ``unhealthyAfterPatch`` fault): simulated minutes from the end of its install to the app's
   last health read of it (its verdict), from the durable histories.
3. **History per instance** -- the real orchestrators with the in-memory fake activities of
   ``tests/functional/fakeapp`` on a one-ring plan of N VMs in waves of 50: the largest history of
   any instance stays flat and the parent grows with the number of waves only.
   ``BENCH_RING_SIZES=5,50,500`` (default ``5,50``; empty skips it); ``BENCH_HISTORY_WAVE`` its
   maxConcurrency (default 50). Also per kind of instance
   (rollout, ring, wave, verify): max events and max replayed bytes (the history JSON a replay reads;
   an execution that continued as new is measured when it ended), and the largest history of
   each kind by event type. ``BENCH_BEFORE_TREE=<dir>`` runs the same part first in another
   checkout (e.g. ``git archive <commit>`` with this file copied in) and reports before / after
   per kind, in one run.
4. **History of a scheduled ring** -- the same with Ring 1 (scheduled) of ``size`` VMs: the
   run_results instance and its verify chunks. ``BENCH_SCHEDULED_SIZES=100,1000`` (default: skipped).

``BENCH_PARTS=3`` runs only the listed parts (default ``1,2,3,4``).

Results: ``bench/results/ring_scale.json`` (this module's own file, also when run through
``python -m bench``), or ``bench/results/$BENCH_OUT``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "tests" / "functional" / "fakeapp"
RESULTS = Path(__file__).resolve().parent / "results"
START = "2026-11-16T06:00:00Z"
WAVE = int(os.environ.get("BENCH_HISTORY_WAVE", "50"))  # the history plan's maxConcurrency
APPROVERS = {"ring1": "alice@contoso.com", "ring2": "carol@contoso.com"}


# ----------------------------------------------------------------------------- ARM calls per VM
#: VMs in the same subscription that belong to no ring (``BENCH_FLEET_EXTRA``): Ring 0's cost in a
#: large subscription without thousands of ring members (half tagged ``patchRing: none``, half untagged).
FLEET_EXTRA = int(os.environ.get("BENCH_FLEET_EXTRA", "0") or 0)


def _arm_fleet(sizes: tuple[int, int, int], extra: int = 0) -> tuple[dict[str, Any], dict[str, list[tuple[str, str]]]]:
    """The functional scenario with ``sizes`` VMs per ring (half Windows, half Linux) and ``extra``
    VMs of no ring in the same subscription and resource group."""
    from tests.functional import platform_scenario as sc

    scenario = sc.scenario()
    group = scenario["subscriptions"][0]["resourceGroups"][0]
    members: dict[str, list[tuple[str, str]]] = {}
    vms = []
    for ring, tag, count in zip(("ring0", "ring1", "ring2"), ("ring0", "ring1-hold", "ring2"), sizes, strict=True):
        members[ring] = []
        for i in range(count):
            os_name = "Windows" if i % 2 == 0 else "Linux"
            name = f"{ring[0]}{ring[-1]}-vm-{i:04d}"
            members[ring].append((name, os_name))
            vms.append({"name": name, "os": os_name, "zone": str(i % 3 + 1), "tags": {"patchRing": tag}})
    for i in range(extra):
        vms.append({"name": f"xx-vm-{i:05d}", "os": "Windows" if i % 2 == 0 else "Linux", "zone": str(i % 3 + 1),
                    "tags": {"patchRing": "none"} if i % 2 == 0 else {}})
    group["vms"] = vms
    return scenario, members


def _plan(concurrency: int | None) -> dict[str, Any]:
    plan = json.loads((REPO / "plans" / "default.json").read_text())
    if concurrency:
        plan["rings"][0]["rate"] = {**plan["rings"][0].get("rate", {}), "maxConcurrency": concurrency}
    return plan


def _vm_of(record: Any, operations: dict[str, Any]) -> str | None:
    """The VM name a request addresses (path, or the compute operation it polls)."""
    parts = record.path.split("/")
    lower = [p.lower() for p in parts]
    if "virtualmachines" in lower:
        i = lower.index("virtualmachines")
        if i + 1 < len(parts):
            return parts[i + 1].lower()
    if "operations" in lower or "operationresults" in lower:
        op = operations.get(parts[-1])
        if op is not None:
            return str(op.vm_id).rsplit("/", 1)[-1].lower()
    return None


TERMINAL = ("Completed", "Failed", "Terminated")
#: Real seconds a phase may take: throttled requests wait their Retry-After in real time.
WAIT_SECONDS = float(os.environ.get("BENCH_WAIT_SECONDS", "3600"))
#: The clock API refuses an advance with timeoutSeconds > 3600 (400), and ClockClient.advance_until
#: then retries for ever without moving time: longer waits are taken in pieces of this many seconds.
_UNTIL_PIECE = 3000.0


def _until(d: Any, predicate: Any, timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        piece = min(_UNTIL_PIECE, max(deadline - time.monotonic(), 1.0))
        try:
            return d.until(predicate, timeout=piece)
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise


def _until_waiting(d: Any, rid: str, ring: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        doc: dict[str, Any] = d.doc(rid)
        waiting = doc.get("waitingFor") or {}
        if waiting.get("what") == "approval" and waiting.get("ring") == ring:
            return doc
        if d.runtime(rid) in TERMINAL:
            raise RuntimeError(f"rollout ended while waiting for {ring}'s approval: {str(doc)[:2000]}")
        return None

    return _until(d, check)  # type: ignore[no-any-return]


def measure_arm(sizes: tuple[int, int, int], concurrency: int | None = None) -> dict[str, Any]:
    from emulator.clock import make_clock
    from emulator.platform import LocalPlatform
    from tests.functional.platform_driver import driver

    scenario, members = _arm_fleet(sizes, FLEET_EXTRA)
    _watch_continue_as_new()
    _EARLIER.clear()
    pacers_before = _pacer_counters()
    cpu_before = time.process_time()
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-ring-scale-{os.getpid()}"
    plan_path = state / "plan.json"
    state.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(json.dumps(_plan(concurrency)))
    clock = make_clock("skip", start=START)
    platform = LocalPlatform(scenario, clock=clock, state_dir=state / "platform",
                             settings={"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true",
                                       "PATCHRINGS_PLAN_PATH": str(plan_path)})
    platform.start()
    try:
        d = driver(platform)
        recorder = platform.arm.recorder
        started = time.perf_counter()
        marks = [0]
        rid = d.start(who="bench@contoso.com")
        for ring in ("ring1", "ring2"):
            doc = _until_waiting(d, rid, ring)
            marks.append(len(recorder))
            result = d.decide(rid, ring, "approve", doc["waitingFor"]["manifestHash"], APPROVERS[ring])
            assert result.status == 202, result
        _until(d, lambda: d.runtime(rid) in TERMINAL)
        final = d.status(rid)
        marks.append(len(recorder))
        wall = time.perf_counter() - started
        out = final.output or {}
        records = recorder.records
        operations = dict(platform.arm.operations)
        assert platform.loop is not None
        engine = platform.loop.call(_engine_figures(platform.host.engine, rid), timeout=900)
        process_cpu = time.process_time() - cpu_before
    finally:
        platform.stop()
    row = _tally(records, operations, marks, members, out, wall, sizes, concurrency)
    vms = sum(sizes)
    cpu = engine.pop("orchestratorCpuSeconds")
    row["cpu"] = {
        # CPU time of orchestrator code (the SDK's replay included), the host's one episode thread
        "orchestratorCpuSeconds": round(cpu, 2),
        "orchestratorCpuMsPerVm": round(cpu * 1000 / max(vms, 1), 3),
        "maxInstanceCpuSeconds": engine.pop("maxInstanceCpuSeconds"),
        "maxInstanceCpu": engine.pop("maxInstanceCpu"),
        "cpuByKind": engine.pop("cpuByKind"),
        "episodes": engine.pop("episodes"),
        # everything in this process (simulator, Azurite client, activities, host) for scale
        "processCpuSeconds": round(process_cpu, 1),
    }
    row["history"] = engine
    row["pacing"] = _pacing_cost(pacers_before, _pacer_counters(), wall)
    return row


def _pacer_counters() -> dict[str, dict[str, float]]:
    """The ARM pacers of this process (the activities run in it): read pacers (health batches) and
    the tag write pacers, by kind and subscription, with their counters."""
    from activities import tags
    from patchrings.arm.fanout import read_pacers

    out: dict[str, dict[str, float]] = {}
    for kind, pacers in (("reads", read_pacers()), ("writes", tags.write_pacers())):
        for sub, p in pacers.items():
            out[f"{kind}:{sub}"] = {"calls": p.calls, "waited": p.waited, "holds": p.holds,
                                    "stalled": getattr(p, "stalled", 0.0)}
    return out


def _pacing_cost(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
                 wall: float) -> dict[str, Any]:
    """The limiter's time cost in this run, from the pacers' own counters (real seconds)."""
    out: dict[str, Any] = {}
    for key, now in sorted(after.items()):
        was = before.get(key, {"calls": 0, "waited": 0.0, "holds": 0, "stalled": 0.0})
        kind = key.split(":", 1)[0]
        row = out.setdefault(kind, {"pacedCalls": 0, "stalledSeconds": 0.0, "waitedSecondsSummed": 0.0,
                                    "armHolds": 0})
        row["pacedCalls"] += int(now["calls"] - was["calls"])
        row["stalledSeconds"] = round(row["stalledSeconds"] + now["stalled"] - was["stalled"], 1)
        row["waitedSecondsSummed"] = round(row["waitedSecondsSummed"] + now["waited"] - was["waited"], 1)
        row["armHolds"] += int(now["holds"] - was["holds"])
    for row in out.values():
        row["stalledShareOfWall"] = round(row["stalledSeconds"] / wall, 3) if wall else None
    return out


async def _engine_figures(engine: Any, rid: str) -> dict[str, Any]:
    """Per instance of the real app: history events, replayed bytes (an execution that continued
    as new counts as it ended) and orchestrator CPU; the largest of each, and by kind."""
    events: dict[str, int] = {}
    replayed: dict[str, int] = {}
    cpu: dict[str, float] = {}
    for iid, inst in engine.instances.items():
        earlier = _EARLIER.get(iid, (0, 0))
        events[iid] = max(len(inst.history), earlier[0])
        replayed[iid] = max(len(json.dumps(list(inst.history), default=str)), earlier[1])
        cpu[iid] = float(getattr(inst, "cpu_seconds", 0.0))
    by_kind: dict[str, dict[str, Any]] = {}
    for iid, count in events.items():
        kind = _kind(iid, rid)
        row = by_kind.setdefault(kind, {"instances": 0, "maxEvents": 0, "maxReplayedBytes": 0,
                                        "cpuSeconds": 0.0, "maxCpuSeconds": 0.0})
        row["instances"] += 1
        row["maxEvents"] = max(row["maxEvents"], count)
        row["maxReplayedBytes"] = max(row["maxReplayedBytes"], replayed[iid])
        row["cpuSeconds"] += cpu[iid]
        row["maxCpuSeconds"] = max(row["maxCpuSeconds"], cpu[iid])
    for row in by_kind.values():
        row["cpuSeconds"] = round(row["cpuSeconds"], 3)
        row["maxCpuSeconds"] = round(row["maxCpuSeconds"], 3)
    top_events = max(events, key=lambda k: events[k])
    top_bytes = max(replayed, key=lambda k: replayed[k])
    top_cpu = max(cpu, key=lambda k: cpu[k])
    return {
        "instances": len(events),
        "maxEvents": events[top_events], "maxEventsInstance": top_events,
        "maxReplayedBytes": replayed[top_bytes], "maxReplayedBytesInstance": top_bytes,
        "byKind": by_kind,
        "orchestratorCpuSeconds": float(engine.stats.get("orchestrator_cpu_seconds", 0.0)),
        "maxInstanceCpuSeconds": round(cpu[top_cpu], 3), "maxInstanceCpu": top_cpu,
        "cpuByKind": {k: v["cpuSeconds"] for k, v in sorted(by_kind.items())},
        "episodes": int(engine.stats.get("episodes", 0)),
    }


def _arg_kind(record: Any) -> str:
    """What a Resource Graph request asked: ring members, power states (cheap health samples),
    assessments, install results."""
    query = str((record.body or {}).get("query") or "") if isinstance(record.body, dict) else ""
    head = query.lstrip().split("\n", 1)[0].strip().lower()
    if head == "resources":
        return "powerStates" if "powerState = tostring" in query and "osType" not in query else "members"
    return {"patchassessmentresources": "assessments", "patchinstallationresources": "installResults"}.get(head, head)


#: The tag value each ring's VMs carry in the bench fleet (``_arm_fleet``), as the app's member
#: queries send it (``tostring(tags) contains '<value>'``).
_RING_TAG = {"ring0": "ring0", "ring1": "ring1-hold", "ring2": "ring2"}


def _asks_about(record: Any, ring: str, ring_vms: set[str]) -> bool:
    """Whether a Resource Graph request asks about ``ring``: its members by its tag value, or any of
    its VMs by id (power states, assessments, install results)."""
    query = str((record.body or {}).get("query") or "") if isinstance(record.body, dict) else ""
    lower = query.lower()
    tag = _RING_TAG[ring]
    if f"'{tag}'" in lower or f'"{tag}"' in lower:
        return True
    return any(f"/virtualmachines/{name}'" in lower or f'/virtualmachines/{name}"' in lower for name in ring_vms)


def _tally(records: list[Any], operations: dict[str, Any], marks: list[int],
           members: dict[str, list[tuple[str, str]]], out: dict[str, Any], wall: float,
           sizes: tuple[int, int, int], concurrency: int | None) -> dict[str, Any]:
    os_of = {name.lower(): os_name for ring in members.values() for name, os_name in ring}
    rings: dict[str, Any] = {}
    for index, ring in enumerate(("ring0", "ring1", "ring2")):
        phase = records[marks[index]:marks[index + 1]]
        vms = max(len(members[ring]), 1)
        ring_vms = {name.lower() for name, _ in members[ring]}
        by_op = Counter(r.operation or f"{r.method} ?" for r in phase)
        per_os: dict[str, Counter[str]] = {"Windows": Counter(), "Linux": Counter()}
        for r in phase:
            vm = _vm_of(r, operations)
            if vm in ring_vms:
                per_os[os_of[vm]][r.operation or r.method] += 1
        count_os = Counter(os_name for _, os_name in members[ring])
        own = sum(1 for r in phase if _vm_of(r, operations) in ring_vms
                  or (r.operation == "arg.resources" and _asks_about(r, ring, ring_vms)))
        rings[ring] = {
            "vms": len(members[ring]),
            "calls": len(phase),
            "callsPerVm": round(len(phase) / vms, 2),
            # the phase's calls that are this ring's own work: addressed to its VMs, or Resource Graph
            # requests about its members (its tag value) or its VMs (by id); the rest of the phase is
            # other rings' work done meanwhile (the next ring's coverage, manifest diff, assignments)
            "ownCallsPerVm": round(own / vms, 2),
            "byOperationPerVm": {op: round(n / vms, 2) for op, n in sorted(by_op.items())},
            "vmAddressedPerVm": {
                os_name: {"total": round(sum(c.values()) / max(count_os[os_name], 1), 2),
                          **{op: round(n / max(count_os[os_name], 1), 2) for op, n in sorted(c.items())}}
                for os_name, c in per_os.items() if count_os[os_name]
            },
            # Resource Graph requests (pages) of the phase by what they asked (issue 11)
            "resourceGraphByQuery": dict(sorted(Counter(_arg_kind(r) for r in phase
                                                        if r.operation == "arg.resources").items())),
            "throttled": sum(1 for r in phase if r.status == 429),
            "throttledByOperation": dict(sorted(Counter(r.operation or r.method for r in phase
                                                        if r.status == 429).items())),
        }
    return {
        "sizes": list(sizes),
        "fleetExtra": FLEET_EXTRA,
        "ring0MaxConcurrency": concurrency or 2,
        "outcome": f"{out.get('state')}/{out.get('outcome')}",
        "totalCalls": len(records),
        "throttled": sum(1 for r in records if r.status == 429),
        "rings": rings,
        "wallSeconds": round(wall, 1),
    }


def _print_arm(row: dict[str, Any]) -> None:
    print(f"   ARM calls per VM per ring (ring sizes {row['sizes']}, {row.get('fleetExtra', 0)} more VMs of no ring in "
          f"the subscription, Ring 0 maxConcurrency "
          f"{row['ring0MaxConcurrency']}; outcome {row['outcome']}; throttled (429) {row['throttled']})")
    print(f"   {'ring':>5} {'VMs':>4} {'calls/VM':>8} {'own/VM':>6} {'Windows VM':>10} {'Linux VM':>8}  "
          "top operations per VM")
    for ring, r in row["rings"].items():
        top = sorted(r["byOperationPerVm"].items(), key=lambda kv: -kv[1])[:5]
        win = r["vmAddressedPerVm"].get("Windows", {}).get("total", 0)
        lin = r["vmAddressedPerVm"].get("Linux", {}).get("total", 0)
        print(f"   {ring:>5} {r['vms']:>4} {r['callsPerVm']:>8} {r.get('ownCallsPerVm', ''):>6} {win:>10} {lin:>8}  "
              + ", ".join(f"{op} {n}" for op, n in top))
        if r.get("resourceGraphByQuery"):
            print(f"   {'':>5} Resource Graph requests: "
                  + ", ".join(f"{kind} {n}" for kind, n in r["resourceGraphByQuery"].items()))
    if "cpu" in row:
        cpu, hist = row["cpu"], row["history"]
        print(f"   orchestrator CPU {cpu['orchestratorCpuSeconds']} s ({cpu['orchestratorCpuMsPerVm']} ms per VM, "
              f"{cpu['episodes']} episodes; largest instance {cpu['maxInstanceCpuSeconds']} s); process CPU "
              f"{cpu['processCpuSeconds']} s; wall {row['wallSeconds']} s")
        print(f"   history: {hist['instances']} instances, max events {hist['maxEvents']} "
              f"({hist['maxEventsInstance'].rsplit(':', 2)[-1]}), max replayed bytes {hist['maxReplayedBytes']} "
              f"({hist['maxReplayedBytesInstance'].rsplit(':', 2)[-1]})")
        for kind, p in row["pacing"].items():
            print(f"   pacing {kind}: {p['pacedCalls']} paced calls, stalled {p['stalledSeconds']} s "
                  f"({p['stalledShareOfWall']} of the wall time), {p['armHolds']} ARM holds")


# ----------------------------------------------------------------------------- detection latency
SICK_VM = "r0-vm-0000"


def measure_detection(sizes: tuple[int, int, int] = (4, 2, 2), concurrency: int = 2) -> dict[str, Any]:
    """Simulated minutes from the end of a bad install to the app's last health read of that VM
    (its verdict): Ring 0's first VM turns unhealthy after patching (``unhealthyAfterPatch``).

    Read from the durable histories: the last health-check activity scheduled for the VM by its
    wave's verify instance, against the end of its installPatches operation in the simulator."""
    from emulator.clock import make_clock
    from emulator.host import history as h
    from emulator.platform import LocalPlatform
    from tests.functional.platform_driver import driver

    scenario, _ = _arm_fleet(sizes)
    scenario["faults"] = [{"type": "unhealthyAfterPatch", "vms": [SICK_VM]}]
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-detection-{os.getpid()}"
    state.mkdir(parents=True, exist_ok=True)
    plan_path = state / "plan.json"
    plan_path.write_text(json.dumps(_plan(concurrency)))
    platform = LocalPlatform(scenario, clock=make_clock("skip", start=START), state_dir=state / "platform",
                             settings={"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true",
                                       "PATCHRINGS_PLAN_PATH": str(plan_path)})
    platform.start()
    try:
        d = driver(platform)
        rid = d.start(who="bench@contoso.com")
        d.until(lambda: d.runtime(rid) in TERMINAL, timeout=WAIT_SECONDS)
        final = d.status(rid)

        async def histories() -> dict[str, list[dict[str, Any]]]:
            return {iid: list(inst.history) for iid, inst in platform.host.engine.instances.items()}

        assert platform.loop is not None
        hist = platform.loop.call(histories())
        install_end = max(op.end for op in platform.arm.operations.values()
                          if op.kind == "installPatches" and op.vm_id.lower().endswith("/" + SICK_VM))
    finally:
        platform.stop()
    reads = [ev for iid, events in hist.items() if iid.endswith(":verify") for ev in events
             if ev.get("EventType") == h.TASK_SCHEDULED and str(ev.get("Name", "")).startswith("check_vm_health")
             and SICK_VM in str(ev.get("Input") or "")]
    last = max(ev["Timestamp"] for ev in reads)
    from patchrings.arm.vms import parse_time

    latency = (parse_time(last) - install_end).total_seconds() / 60  # type: ignore[operator,unused-ignore]
    out = final.output or {}
    return {"sizes": list(sizes), "ring0MaxConcurrency": concurrency, "sickVm": SICK_VM,
            "outcome": f"{out.get('state')}/{out.get('outcome')}", "healthReadsOfSickVm": len(reads),
            "detectionMinutesAfterInstall": round(latency, 1)}


# ----------------------------------------------------------------------------- history per instance
def _history_plan() -> dict[str, Any]:
    from patchrings.domain.plan import load_plan_file

    plan = load_plan_file(REPO / "plans" / "default.json").to_dict()
    plan.pop("hash", None)
    plan["name"] = "ring-scale"
    ring0 = plan["rings"][0]
    ring0["rate"] = {"maxConcurrency": WAVE, "maxErrors": 0}
    plan["rings"] = [ring0]
    return plan


#: (events, bytes) of each execution an instance ended by continuing as new, per instance id:
#: the engine clears an instance's history then, so the final history alone would hide them.
_EARLIER: dict[str, tuple[int, int]] = {}


def _watch_continue_as_new() -> None:
    """Record the size of every execution that continues as new (once per process)."""
    from emulator.host.replay import Replay

    if getattr(Replay, "_bench_watched", False):
        return
    original = Replay._continue_as_new

    def watched(self: Any, inst: Any, input_text: Any, now: Any) -> None:
        size = (len(inst.history), len(json.dumps(list(inst.history), default=str)))
        old = _EARLIER.get(inst.instance_id, (0, 0))
        _EARLIER[inst.instance_id] = (max(old[0], size[0]), max(old[1], size[1]))
        original(self, inst, input_text, now)

    Replay._continue_as_new = watched  # type: ignore[method-assign]
    Replay._bench_watched = True  # type: ignore[attr-defined]


def _breakdown(history: list[dict[str, Any]], top: int = 6) -> list[dict[str, Any]]:
    """Bytes of history JSON by (event type, name): what a replay of the instance reads most."""
    from emulator.host import history as h

    per: Counter[tuple[str, str]] = Counter()
    for event in history:
        kind = h.EVENT_NAMES.get(int(event.get("EventType") or 0), str(event.get("EventType")))
        per[(kind, str(event.get("Name") or ""))] += len(json.dumps(event, default=str))
    return [{"event": k[0], "name": k[1], "bytes": n} for k, n in per.most_common(top)]


def measure_history(size: int) -> dict[str, Any]:
    from emulator.clock import make_clock
    from emulator.host.testing import HostThread
    from patchrings import deps
    from patchrings.domain.plan import load_plan
    from patchrings.settings import Settings
    from tests.functional.fakeapp import fleet
    from tests.functional.fakeapp.driver import Driver

    plan = _history_plan()
    _watch_continue_as_new()
    _EARLIER.clear()
    f = fleet.reset(load_plan(plan).to_dict())
    for i in range(size):
        f.add(f"r0-vm-{i:05d}", "Windows" if i % 2 else "Linux", str(i % 3 + 1), "ring0")
    clock = make_clock("skip", start=START)
    ht = HostThread(APP, clock).start()
    deps.override(settings=Settings(approver_header_fallback=True), plan=load_plan(plan), ledger=f)
    try:
        d = Driver(ht)
        started = time.perf_counter()
        with clock.hold():
            rid = d.start(who="bench@contoso.com")
            clock.advance_until(lambda: d.runtime(rid) in ("Completed", "Failed", "Terminated"), timeout=3600)
            final = d.status(rid)
        wall = time.perf_counter() - started
        assert final.runtime_status.value == "Completed", final.output

        breakdown: dict[str, list[dict[str, Any]]] = {}

        def sizes() -> dict[str, tuple[int, int]]:
            assert ht.host.engine is not None
            out: dict[str, tuple[int, int]] = {}
            largest: dict[str, tuple[int, str]] = {}
            for iid, inst in ht.host.engine.instances.items():
                final = (len(inst.history), len(json.dumps(list(inst.history), default=str)))
                earlier = _EARLIER.get(iid, (0, 0))
                out[iid] = (max(final[0], earlier[0]), max(final[1], earlier[1]))
                kind = _kind(iid, rid)
                if final[1] > largest.get(kind, (-1, ""))[0]:
                    largest[kind] = (final[1], iid)
            for kind, (_, iid) in largest.items():
                breakdown[kind] = _breakdown(list(ht.host.engine.instances[iid].history))
            return out

        measured: dict[str, tuple[int, int]] = ht.run_sync(sizes)
        byk = _by_kind(measured, rid)
        executions = {iid: n for iid, n in _EARLIER.items()}
        histories = {iid: n for iid, (n, _) in measured.items()}
        replayed = {iid: b for iid, (_, b) in measured.items()}
        return {
            "vms": size,
            "installs": len(f.called("start_install")),
            "instances": len(histories),
            "parentHistory": histories.get(rid, 0),
            "maxHistory": max(histories.values()),
            "maxChildHistory": max((n for iid, n in histories.items() if iid != rid), default=0),
            # bytes of history JSON each replay of an instance reads (issue 11: bounded history)
            "maxReplayedBytes": max(replayed.values()),
            "maxReplayedBytesInstance": max(replayed, key=lambda k: replayed[k]),
            "parentReplayedBytes": replayed.get(rid, 0),
            "byKind": byk,
            # the largest final history of each kind, by event type (an execution that continued
            # as new counts in maxReplayedBytes above, measured when it ended)
            "bytesByEvent": breakdown,
            "instancesThatContinuedAsNew": len(executions),
            "wallSeconds": round(wall, 2),
        }
    finally:
        ht.stop()
        clock.close()
        deps.reset()


def _kind(iid: str, rid: str) -> str:
    """The orchestration an instance id belongs to (ids are deterministic: ``rid:ring:w3:verify``)."""
    if iid == rid:
        return "rollout"
    tail = iid[len(rid) + 1:] if iid.startswith(rid + ":") else iid
    parts = tail.split(":")
    if "verify" in parts:
        return "verify"
    if any(p.startswith("w") and p[1:].isdigit() for p in parts):
        return "wave"
    return "ring" if len(parts) == 1 else ":".join(["ring", *parts[1:2]])


def _by_kind(measured: dict[str, tuple[int, int]], rid: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for iid, (events, size) in measured.items():
        row = out.setdefault(_kind(iid, rid), {"instances": 0, "maxEvents": 0, "maxReplayedBytes": 0})
        row["instances"] += 1
        row["maxEvents"] = max(row["maxEvents"], events)
        row["maxReplayedBytes"] = max(row["maxReplayedBytes"], size)
    return out


def measure_scheduled_history(size: int) -> dict[str, Any]:
    """History per instance of a *scheduled* ring of ``size`` VMs (Ring 1 of the default plan, fake
    activities): the run_results instance and its verify chunks, after Ring 1's run is decided."""
    from emulator.clock import make_clock
    from emulator.host.testing import HostThread
    from patchrings import deps
    from patchrings.domain.plan import load_plan
    from patchrings.settings import Settings
    from tests.functional.fakeapp import fleet
    from tests.functional.fakeapp.driver import Driver, maintenance_event

    plan = load_plan_file_dict()
    f = fleet.reset(load_plan(plan).to_dict())
    for i, (name, os_name, tag) in enumerate([("r0-win-1", "Windows", "ring0"), ("r0-lnx-1", "Linux", "ring0"),
                                              ("r2-win-1", "Windows", "ring2")]):
        f.add(name, os_name, str(i % 3 + 1), tag)
    for i in range(size):
        f.add(f"r1-vm-{i:05d}", "Windows" if i % 2 else "Linux", str(i % 3 + 1), "ring1-hold")
    clock = make_clock("skip", start=START)
    ht = HostThread(APP, clock).start()
    deps.override(settings=Settings(approver_header_fallback=True), plan=load_plan(plan), ledger=f)
    try:
        d = Driver(ht)
        started = time.perf_counter()
        with clock.hold():
            rid = d.start(who="bench@contoso.com")
            doc = d.until_waiting(rid, "approval", "ring1")
            decided = d.decide(rid, "ring1", "approve", doc["waitingFor"]["manifestHash"], APPROVERS["ring1"])
            assert decided.status == 202, decided
            doc = d.until_waiting(rid, "pre-maintenance event", "ring1")
            start = doc["rings"][[r["name"] for r in doc["rings"]].index("ring1")]["target"]["runStart"]
            assert d.deliver(maintenance_event("pre", "mc-ring1", start)) == 202
            d.until_waiting(rid, "post-maintenance event", "ring1")
            assert d.deliver(maintenance_event("post", "mc-ring1", start)) == 202
            d.until_waiting(rid, "approval", "ring2")
        wall = time.perf_counter() - started

        def sizes() -> dict[str, tuple[int, int]]:
            assert ht.host.engine is not None
            return {iid: (len(inst.history), len(json.dumps(list(inst.history), default=str)))
                    for iid, inst in ht.host.engine.instances.items()}

        measured: dict[str, tuple[int, int]] = ht.run_sync(sizes)
        kinds = _by_kind(measured, rid)
        return {"vms": size, "instances": len(measured), "maxHistory": max(n for n, _ in measured.values()),
                "maxReplayedBytes": max(b for _, b in measured.values()), "byKind": kinds,
                "wallSeconds": round(wall, 2)}
    finally:
        ht.stop()
        clock.close()
        deps.reset()


def load_plan_file_dict() -> dict[str, Any]:
    from patchrings.domain.plan import load_plan_file

    plan = load_plan_file(REPO / "plans" / "default.json").to_dict()
    plan.pop("hash", None)
    return plan


def _scheduled(sizes: list[int]) -> list[dict[str, Any]]:
    rows = [measure_scheduled_history(size) for size in sizes]
    for row in rows:
        row["maxReplayedBytesRatio"] = round(row["maxReplayedBytes"] / rows[0]["maxReplayedBytes"], 3)
        print(f"   scheduled ring of {row['vms']} VMs: {row['instances']} instances, max events {row['maxHistory']}, "
              f"max replayed bytes {row['maxReplayedBytes']} (x{row['maxReplayedBytesRatio']}); by kind "
              + ", ".join(f"{k} {v['instances']}x max {v['maxEvents']} ev / {v['maxReplayedBytes']} B"
                          for k, v in sorted(row["byKind"].items())))
    return rows


def _history(sizes: list[int]) -> list[dict[str, Any]]:
    rows = [measure_history(size) for size in sizes]
    if not rows:
        return rows
    base = rows[0]
    print(f"   {'VMs':>6} {'instances':>9} {'parent hist':>11} {'max child hist':>14} "
          f"{'events/VM (parent)':>18} {'wall s':>7} {'wall/VM vs smallest':>19}")
    for row in rows:
        per_vm = row["parentHistory"] / row["vms"]
        row["parentEventsPerVm"] = round(per_vm, 3)
        row["wallPerVmRatio"] = round((row["wallSeconds"] / row["vms"]) / (base["wallSeconds"] / base["vms"]), 3)
        row["maxReplayedBytesRatio"] = round(row["maxReplayedBytes"] / base["maxReplayedBytes"], 3)
        print(f"   {row['vms']:>6} {row['instances']:>9} {row['parentHistory']:>11} {row['maxChildHistory']:>14} "
              f"{per_vm:>18.3f} {row['wallSeconds']:>7} {row['wallPerVmRatio']:>19}  max replayed bytes "
              f"{row['maxReplayedBytes']} (x{row['maxReplayedBytesRatio']} of the smallest; "
              f"{row['maxReplayedBytesInstance'].rsplit(':', 1)[-1]})")
    return rows


def _history_in(tree: Path, sizes: list[int]) -> list[dict[str, Any]]:
    """Part 3 run by this module in another checkout of the app (``BENCH_BEFORE_TREE``: e.g. a
    ``git archive`` of the commit before a change, with this file copied into its ``bench/``)."""
    import subprocess
    import sys

    env = {**os.environ, "BENCH_PARTS": "3", "BENCH_RING_SIZES": ",".join(map(str, sizes)),
           "BENCH_OUT": "_before.json", "BENCH_BEFORE_TREE": ""}
    print(f"   before: part 3 in {tree}")
    subprocess.run([sys.executable, "-m", "bench.bench_ring_scale"], cwd=tree, env=env, check=True)
    rows: list[dict[str, Any]] = json.loads((tree / "bench" / "results" / "_before.json").read_text())["history"]
    return rows


def _before_after(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size and kind of instance: max events and max replayed bytes before and after, and
    the after / before ratio."""
    out = []
    for b, a in zip(before, after, strict=True):
        kinds = {}
        for kind in sorted(set(b["byKind"]) | set(a["byKind"])):
            kb, ka = b["byKind"].get(kind, {}), a["byKind"].get(kind, {})
            kinds[kind] = {
                "maxEventsBefore": kb.get("maxEvents"), "maxEventsAfter": ka.get("maxEvents"),
                "maxReplayedBytesBefore": kb.get("maxReplayedBytes"),
                "maxReplayedBytesAfter": ka.get("maxReplayedBytes"),
                "bytesRatio": round(ka["maxReplayedBytes"] / kb["maxReplayedBytes"], 3)
                if kb.get("maxReplayedBytes") and ka.get("maxReplayedBytes") else None,
            }
        out.append({"vms": a["vms"], "maxReplayedBytesBefore": b["maxReplayedBytes"],
                    "maxReplayedBytesAfter": a["maxReplayedBytes"],
                    "ratio": round(a["maxReplayedBytes"] / b["maxReplayedBytes"], 3),
                    "maxEventsBefore": b["maxHistory"], "maxEventsAfter": a["maxHistory"], "byKind": kinds})
    return out


def _print_before_after(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(f"   {row['vms']} VMs: max replayed bytes {row['maxReplayedBytesBefore']} -> "
              f"{row['maxReplayedBytesAfter']} (x{row['ratio']}); max events {row['maxEventsBefore']} -> "
              f"{row['maxEventsAfter']}")
        for kind, k in row["byKind"].items():
            print(f"      {kind:>8}: events {k['maxEventsBefore']} -> {k['maxEventsAfter']}, bytes "
                  f"{k['maxReplayedBytesBefore']} -> {k['maxReplayedBytesAfter']} (x{k['bytesRatio']})")


def _cpu_ratio(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    a, b = small["cpu"]["orchestratorCpuSeconds"], large["cpu"]["orchestratorCpuSeconds"]
    return {"vms": [sum(small["sizes"]), sum(large["sizes"])],
            "vmsRatio": round(sum(large["sizes"]) / sum(small["sizes"]), 2),
            "orchestratorCpuSeconds": [a, b], "ratio": round(b / a, 2) if a else None}


def run() -> dict[str, Any]:
    """``BENCH_PARTS`` (default ``1,2,3,4``) picks the parts; ``BENCH_OUT`` the results file name."""
    parts = {p.strip() for p in os.environ.get("BENCH_PARTS", "1,2,3,4").split(",") if p.strip()}
    result: dict[str, Any] = {}
    if "1" in parts:
        concurrency = int(os.environ["BENCH_ARM_CONCURRENCY"]) if os.environ.get("BENCH_ARM_CONCURRENCY") else None
        runs = []
        for text in os.environ.get("BENCH_ARM_RINGS", "6,10,10").split(";"):
            ring_sizes = tuple(int(s) for s in text.split(","))
            assert len(ring_sizes) == 3, "BENCH_ARM_RINGS needs three sizes (runs separated by ';')"
            arm = measure_arm((ring_sizes[0], ring_sizes[1], ring_sizes[2]), concurrency)
            _print_arm(arm)
            runs.append(arm)
        result["armCalls"] = runs[-1]
        if len(runs) > 1:  # replay CPU of the largest run against the smallest, in one run
            result["armRuns"] = runs
            result["cpuRatio"] = _cpu_ratio(runs[0], runs[-1])
            print(f"   orchestrator CPU x{result['cpuRatio']['ratio']} for x{result['cpuRatio']['vmsRatio']} VMs")
    if "2" in parts:
        detection = measure_detection()
        print(f"   detection latency: {detection['detectionMinutesAfterInstall']} simulated minutes after the bad "
              f"install ({detection['healthReadsOfSickVm']} health reads of the sick VM; outcome "
              f"{detection['outcome']})")
        result["detection"] = detection
    if "3" in parts:
        history_sizes = [int(s) for s in os.environ.get("BENCH_RING_SIZES", "5,50").split(",") if s.strip()]
        result["historyWave"] = WAVE
        before_tree = os.environ.get("BENCH_BEFORE_TREE")
        if before_tree:  # the same part in an older tree first (same run, same machine): before / after
            result["historyBefore"] = _history_in(Path(before_tree), history_sizes)
        result["history"] = _history(history_sizes)
        if before_tree:
            result["beforeAfter"] = _before_after(result["historyBefore"], result["history"])
            _print_before_after(result["beforeAfter"])
    if "4" in parts:
        scheduled_sizes = [int(s) for s in os.environ.get("BENCH_SCHEDULED_SIZES", "").split(",") if s.strip()]
        result["scheduledHistory"] = _scheduled(scheduled_sizes)
    out = os.environ.get("BENCH_OUT") or "ring_scale.json"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / out).write_text(json.dumps(result, indent=2, default=str))
    print(f"   saved bench/results/{out}")
    return result


if __name__ == "__main__":
    run()
