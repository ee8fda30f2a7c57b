"""Arc scale: ARM and Resource Graph calls per machine for a scheduled ring of 1,000 mixed machines.

Issue 12's proof: a scheduled ring's per-machine results and gate come from Azure Resource Graph
(``patchinstallationresources`` / ``patchassessmentresources``) in **O(machines / 1,000)** queries
(ARG pages hold at most 1,000 rows), not one read per machine.

The real app (``function_app.py``) runs the default plan on the local platform (Functions host +
Durable engine, ARM simulator with its HybridCompute provider and Resource Graph, Azurite, skip
clock) over a generated fleet in one subscription: Ring 0 (direct) and Ring 1 (scheduled, retag)
have four machines each (two VMs, two Arc-enabled servers); **Ring 2** (scheduled, opened by the
dynamic-scope configuration assignment the app creates) has N machines, nine in ten of them Arc
enabled servers. Both approvals are given as soon as they are asked for. The simulator's recorder
attributes every request to the ring phase it was made in (start -> Ring 1's approval request ->
Ring 2's approval request -> end); Ring 2's phase is its opening, scheduled run, results, gate
and the rollout's close. Reported for that phase: ARM requests and Resource Graph queries (page
requests) per machine, by operation and by table, the machine-addressed requests (a path naming
one VM or Arc machine) per machine, throttled requests (429) in the whole run, and the durable
history size of the largest orchestration instance.

The run is done at N = 1,000 and N = 100 in the same invocation and the ratios between them
reported (``BENCH_ARC_SIZES=100,1000``). Counts and ratios only; wall seconds for orientation.

Results: ``bench/results/arc_scale.json`` (this module's own file, also when run through
``python -m bench``).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.bench_ring_scale import APPROVERS, TERMINAL, WAIT_SECONDS, _until_waiting

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
START = "2026-11-16T06:00:00Z"
SMALL = 4  # machines in Ring 0 and Ring 1: two VMs, two Arc machines
ARC_EVERY = 10  # one machine in ten of the big ring is an Azure VM


def _fleet(size: int) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The functional scenario with Ring 0 and Ring 1 of :data:`SMALL` and Ring 2 of ``size``
    machines (mostly Arc); returns it and, per ring, ``{lower-case machine name: "vm" | "arc"}``."""
    from tests.functional import platform_scenario as sc

    scenario = sc.scenario()
    group = scenario["subscriptions"][0]["resourceGroups"][0]
    kinds: dict[str, dict[str, str]] = {}
    vms: list[dict[str, Any]] = []
    arcs: list[dict[str, Any]] = []
    for ring, tag, count in (("ring0", "ring0", SMALL), ("ring1", "ring1-hold", SMALL), ("ring2", "ring2", size)):
        kinds[ring] = {}
        for i in range(count):
            os_name = "Windows" if i % 2 == 0 else "Linux"
            is_vm = (i % 4 < 2) if count == SMALL else (i % ARC_EVERY == 0)
            name = f"{ring[0]}{ring[-1]}-{'vm' if is_vm else 'arc'}-{i:04d}"
            kinds[ring][name.lower()] = "vm" if is_vm else "arc"
            entry = {"name": name, "os": os_name, "tags": {"patchRing": tag}}
            if is_vm:
                vms.append({**entry, "zone": str(i % 3 + 1)})
            else:
                arcs.append(entry)
    group["vms"] = vms
    group["arcMachines"] = arcs
    scope = scenario["subscriptions"][0]["dynamicScopes"][0]["filter"]
    scope["resourceTypes"] = ["Microsoft.Compute/virtualMachines", "Microsoft.HybridCompute/machines"]
    return scenario, kinds


def _machine_of(record: Any, operations: dict[str, Any]) -> str | None:
    """The VM / Arc machine name a request addresses (path, or the async operation it polls)."""
    parts = record.path.split("/")
    lower = [p.lower() for p in parts]
    for marker in ("virtualmachines", "machines"):
        if marker in lower:
            i = lower.index(marker)
            if i + 1 < len(parts) and i > 0 and lower[i - 1] in ("microsoft.compute", "microsoft.hybridcompute"):
                return parts[i + 1].lower()
    if "operations" in lower or "operationresults" in lower:
        op = operations.get(parts[-1])
        if op is not None:
            return str(op.vm_id).rsplit("/", 1)[-1].lower()
    return None


def _table_of(record: Any) -> str:
    text = str((record.body or {}).get("query") or "").lstrip()
    return text.split(None, 1)[0].split("|")[0].strip() if text else "?"


def measure(size: int) -> dict[str, Any]:
    from emulator.clock import make_clock
    from emulator.platform import LocalPlatform
    from tests.functional.platform_driver import driver

    scenario, kinds = _fleet(size)
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-arc-scale-{os.getpid()}-{size}"
    state.mkdir(parents=True, exist_ok=True)
    plan_path = state / "plan.json"
    plan_path.write_text((REPO / "plans" / "default.json").read_text())
    platform = LocalPlatform(scenario, clock=make_clock("skip", start=START), state_dir=state / "platform",
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
        d.until(lambda: d.runtime(rid) in TERMINAL, timeout=WAIT_SECONDS)
        final = d.status(rid)
        marks.append(len(recorder))
        wall = time.perf_counter() - started
        records = list(recorder.records)
        operations = dict(platform.arm.operations)

        async def histories() -> dict[str, int]:
            return {iid: len(inst.history) for iid, inst in platform.host.engine.instances.items()}

        assert platform.loop is not None
        hist: dict[str, int] = platform.loop.call(histories())
        view = d.api("GET", f"/api/rollouts/{rid}").json or {}
    finally:
        platform.stop()
    out = final.output or {}
    verdicts = Counter(str((r.get("verdict") or {}).get("outcome"))
                       for r in ((view.get("ledger") or {}).get("vmResults") or {}).get("ring2") or [])
    return _tally(records, operations, marks, kinds, out, hist, verdicts, wall, size)


def _tally(records: list[Any], operations: dict[str, Any], marks: list[int], kinds: dict[str, dict[str, str]],
           out: dict[str, Any], hist: dict[str, int], verdicts: Counter[str], wall: float,
           size: int) -> dict[str, Any]:
    phase = records[marks[2]:marks[3]]
    machines = max(size, 1)
    members = kinds["ring2"]
    by_op = Counter(r.operation or f"{r.method} ?" for r in phase)
    arg = [r for r in phase if r.operation == "arg.resources"]
    by_table = Counter(_table_of(r) for r in arg)
    addressed: Counter[str] = Counter()
    addressed_ops: dict[str, Counter[str]] = {"vm": Counter(), "arc": Counter()}
    for r in phase:
        name = _machine_of(r, operations)
        if name in members:
            addressed[members[name]] += 1
            addressed_ops[members[name]][r.operation or r.method] += 1
    count_kind = Counter(members.values())
    biggest = max(hist.items(), key=lambda kv: kv[1]) if hist else ("", 0)
    return {
        "ring2Machines": size,
        "ring2Kinds": dict(sorted(count_kind.items())),
        "outcome": f"{out.get('state')}/{out.get('outcome')}",
        "ring2Verdicts": dict(sorted(verdicts.items())),
        "ring2": {
            "armRequests": len(phase),
            "armRequestsPerMachine": round(len(phase) / machines, 3),
            "resourceGraphQueries": len(arg),
            "resourceGraphQueriesPerMachine": round(len(arg) / machines, 4),
            "resourceGraphQueriesByTable": dict(sorted(by_table.items())),
            "nonResourceGraphRequests": len(phase) - len(arg),
            "byOperation": dict(sorted(by_op.items())),
            "machineAddressedPerMachine": {
                kind: {"total": round(addressed[kind] / max(count_kind[kind], 1), 3),
                       **{op: round(n / max(count_kind[kind], 1), 3) for op, n in sorted(ops.items())}}
                for kind, ops in addressed_ops.items() if count_kind[kind]
            },
            "throttled": sum(1 for r in phase if r.status == 429),
        },
        "totalRequests": len(records),
        "throttled": sum(1 for r in records if r.status == 429),
        "throttledByOperation": dict(sorted(Counter(r.operation or r.method for r in records
                                                    if r.status == 429).items())),
        "instances": len(hist),
        "largestHistory": {"instance": biggest[0], "events": biggest[1]},
        "wallSeconds": round(wall, 1),
    }


def _ratio(big: float, small: float) -> float | None:
    return round(big / small, 2) if small else None


def run() -> dict[str, Any]:
    sizes = sorted(int(s) for s in os.environ.get("BENCH_ARC_SIZES", "100,1000").split(",") if s.strip())
    rows = []
    for size in sizes:
        row = measure(size)
        rows.append(row)
        r2 = row["ring2"]
        print(f"   N={size:>5} ({row['ring2Kinds']}): outcome {row['outcome']}, verdicts {row['ring2Verdicts']}")
        print(f"           Ring 2 phase: {r2['armRequests']} ARM requests ({r2['armRequestsPerMachine']}/machine), "
              f"{r2['resourceGraphQueries']} Resource Graph queries {r2['resourceGraphQueriesByTable']}, "
              f"machine-addressed/machine {r2['machineAddressedPerMachine']}")
        print(f"           throttled {row['throttled']} {row['throttledByOperation']}; largest history "
              f"{row['largestHistory']['events']} events ({row['largestHistory']['instance']}); "
              f"wall {row['wallSeconds']} s")
    result: dict[str, Any] = {"rows": rows}
    if len(rows) >= 2:
        small, big = rows[0], rows[-1]
        result["ratios"] = {
            "machines": _ratio(big["ring2Machines"], small["ring2Machines"]),
            "armRequests": _ratio(big["ring2"]["armRequests"], small["ring2"]["armRequests"]),
            "resourceGraphQueries": _ratio(big["ring2"]["resourceGraphQueries"],
                                           small["ring2"]["resourceGraphQueries"]),
            "nonResourceGraphRequests": _ratio(big["ring2"]["nonResourceGraphRequests"],
                                               small["ring2"]["nonResourceGraphRequests"]),
            "largestHistory": _ratio(big["largestHistory"]["events"], small["largestHistory"]["events"]),
        }
        print(f"   ratios {big['ring2Machines']} vs {small['ring2Machines']} machines: {result['ratios']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "arc_scale.json").write_text(json.dumps(result, indent=2, default=str))
    print("   saved bench/results/arc_scale.json")
    return result


if __name__ == "__main__":
    run()
