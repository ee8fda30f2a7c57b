"""Ring scale: history per instance stays bounded as a direct ring grows (5 -> 50 -> 500 VMs).

The real orchestrators run on the local host (real azure-functions-durable replay) with the
in-memory fake activities of ``tests/functional/fakeapp``, so only orchestration work is
measured. A one-ring plan patches N VMs in waves of ``WAVE`` (maxConcurrency); each wave is a
sub-orchestration, so:

* the largest history of any instance should stay flat (bounded by the wave size), and
* the parent's history should grow with the number of waves only (a few events per wave),

instead of one instance carrying ~10 events per VM. Reported as ratios to the smallest ring.
Sizes can be overridden: ``BENCH_RING_SIZES=5,500,5000 python -m bench bench_ring_scale`` (5,000 VMs
takes about 20 minutes on 2 cores; 500 VMs gave 22 instances, parent history 28 events -- the same
as 5 VMs -- and a largest child history of 1,700 events, the same as 100 VMs).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "tests" / "functional" / "fakeapp"
START = "2026-11-16T06:00:00Z"
WAVE = 50


def _plan() -> dict[str, Any]:
    from patchrings.domain.plan import load_plan_file

    plan = load_plan_file(REPO / "plans" / "default.json").to_dict()
    plan.pop("hash", None)
    plan["name"] = "ring-scale"
    ring0 = plan["rings"][0]
    ring0["rate"] = {"maxConcurrency": WAVE, "maxErrors": 0}
    plan["rings"] = [ring0]
    return plan


def measure(size: int) -> dict[str, Any]:
    from emulator.clock import make_clock
    from emulator.host.testing import HostThread
    from patchrings.domain.plan import load_plan
    from patchrings.settings import Settings
    from tests.functional.fakeapp import fleet
    from tests.functional.fakeapp.driver import Driver
    from triggers import deps

    plan = _plan()
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

        def sizes() -> dict[str, int]:
            assert ht.host.engine is not None
            return {iid: len(inst.history) for iid, inst in ht.host.engine.instances.items()}

        histories: dict[str, int] = ht.run_sync(sizes)
        installs = len(f.called("start_install"))
        return {
            "vms": size,
            "installs": installs,
            "instances": len(histories),
            "parentHistory": histories.get(rid, 0),
            "maxHistory": max(histories.values()),
            "maxChildHistory": max((n for iid, n in histories.items() if iid != rid), default=0),
            "wallSeconds": round(wall, 2),
        }
    finally:
        ht.stop()
        clock.close()
        deps.reset()


def run() -> list[dict[str, Any]]:
    sizes = [int(s) for s in os.environ.get("BENCH_RING_SIZES", "5,50,500").split(",")]
    rows = [measure(size) for size in sizes]
    base = rows[0]
    print(f"   {'VMs':>6} {'instances':>9} {'parent hist':>11} {'max child hist':>14} "
          f"{'events/VM (parent)':>18} {'wall s':>7} {'wall/VM vs smallest':>19}")
    for row in rows:
        per_vm = row["parentHistory"] / row["vms"]
        row["parentEventsPerVm"] = round(per_vm, 3)
        row["wallPerVmRatio"] = round((row["wallSeconds"] / row["vms"]) / (base["wallSeconds"] / base["vms"]), 3)
        print(f"   {row['vms']:>6} {row['instances']:>9} {row['parentHistory']:>11} {row['maxChildHistory']:>14} "
              f"{per_vm:>18.3f} {row['wallSeconds']:>7} {row['wallPerVmRatio']:>19}")
    return rows


if __name__ == "__main__":
    run()
