"""Wave bursts: throttled requests and first-wave calls per VM, unpaced vs paced (issue 11, W2).

The real app (``function_app.py``) on the local platform (Functions host + ARM simulator with
ARM's default buckets + Azurite, skip clock), the functional scenario's fleet with a direct
Ring 0 of ``N`` VMs (half Windows, half Linux, zones 1-3, one subscription) at ``maxConcurrency:
500``: the whole ring is one first wave, run as ``ceil(N / 100)`` wave slices side by side. The
run stops when Ring 0 is over (the rollout waits for Ring 1's approval). Twice, in one process:

* **before** -- the wave as it was: every slice starts all its installs in one fan-out, and the
  first wave polls at 30 minutes then every 2, 4, 8, 8 ... minutes (the in-process
  ``orchestrators.wave`` has ``start_pacing`` / ``_next_look`` substituted for the run);
* **after** -- the wave as it is: bursts from ``rate.start_pacing`` (five slices assumed unless
  the ring passes ``slices``) and the first-wave schedule of ``install_polling``.

Reported per run (from the simulator's recorder; helpers of ``bench_ring_scale`` by import):
throttled requests (429) in Ring 0's phase, by operation; ARM calls per VM in the phase and the
VM-addressed calls per Windows / Linux VM by operation (installs, polls, instance views); the
simulated minutes from the first to the last installPatches POST (what the pacing costs) and
Ring 0's simulated duration (rollout start to the approval wait); the ratios after / before.
``BENCH_WAVE_VMS=200`` (default; comma-separated for several sizes) sets ``N``.

Results: ``bench/results/wave_bursts.json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.bench_ring_scale import START, _arm_fleet, _plan, _until_waiting, _vm_of

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = 500


@contextmanager
def _unpaced() -> Iterator[None]:
    """The wave before issue 11's W2: one fan-out per slice, the old first-wave schedule."""
    import orchestrators.wave as wave
    from patchrings.domain.rate import StartPacing
    from patchrings.domain.results import next_install_poll

    pacing, look = getattr(wave, "start_pacing"), getattr(wave, "_next_look")  # noqa: B009

    def all_at_once(*_: Any, **__: Any) -> StartPacing:
        return StartPacing(10**6, 0)

    def old_look(started: Any, now: Any, expected: tuple[timedelta, bool], base: timedelta) -> Any:
        return next_install_poll(started, now, expected[0], base)

    setattr(wave, "start_pacing", all_at_once)  # noqa: B010
    setattr(wave, "_next_look", old_look)  # noqa: B010
    try:
        yield
    finally:
        setattr(wave, "start_pacing", pacing)  # noqa: B010
        setattr(wave, "_next_look", look)  # noqa: B010


def measure(size: int, *, paced: bool) -> dict[str, Any]:
    from emulator.clock import make_clock
    from emulator.platform import LocalPlatform
    from tests.functional.platform_driver import driver

    scenario, members = _arm_fleet((size, 1, 1))
    plan = _plan(CONCURRENCY)
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-wave-bursts-{os.getpid()}-{size}-{int(paced)}"
    state.mkdir(parents=True, exist_ok=True)
    plan_path = state / "plan.json"
    plan_path.write_text(json.dumps(plan))
    platform = LocalPlatform(scenario, clock=make_clock("skip", start=START), state_dir=state / "platform",
                             settings={"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true",
                                       "PATCHRINGS_PLAN_PATH": str(plan_path)})
    started = time.perf_counter()
    with (_unpaced() if not paced else _nothing()):
        platform.start()
        try:
            d = driver(platform)
            recorder = platform.arm.recorder
            rid = d.start(who="bench@contoso.com")
            _until_waiting(d, rid, "ring1")
            records = list(recorder.records)
            operations = dict(platform.arm.operations)
            runtime = d.runtime(rid)
        finally:
            platform.stop()
    wall = time.perf_counter() - started
    return _tally(records, operations, members["ring0"], size, paced, wall, runtime)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _minutes(a: datetime, b: datetime) -> float:
    return round((b - a).total_seconds() / 60, 2)


def _tally(records: list[Any], operations: dict[str, Any], ring0: list[tuple[str, str]], size: int, paced: bool,
           wall: float, runtime: Any) -> dict[str, Any]:
    from patchrings.domain.timeutil import parse_instant

    os_of = {name.lower(): os_name for name, os_name in ring0}
    count_os = Counter(os_of.values())
    per_os: dict[str, Counter[str]] = {"Windows": Counter(), "Linux": Counter()}
    for r in records:
        vm = _vm_of(r, operations)
        if vm in os_of:
            per_os[os_of[vm]][r.operation or r.method] += 1
    posts = sorted(r.time for r in records if r.operation == "vm.install_patches" and r.status < 300)
    start = parse_instant(START)
    throttled = [r for r in records if r.status == 429]
    return {
        "vms": size,
        "paced": paced,
        "slices": math.ceil(size / 100),
        "runtime": str(runtime),
        "calls": len(records),
        "callsPerVm": round(len(records) / size, 2),
        "throttled": len(throttled),
        "throttledByOperation": dict(sorted(Counter(r.operation or r.method for r in throttled).items())),
        # when (simulated minutes after the rollout's start) and by what: starts, polls or health reads
        "throttledByMinute": {f"{m:g}": n for m, n in sorted(Counter(
            round((r.time - start).total_seconds() / 60, 1) for r in throttled).items())},
        "vmAddressedPerVm": {
            os_name: {"total": round(sum(c.values()) / max(count_os[os_name], 1), 2),
                      **{op: round(n / max(count_os[os_name], 1), 2) for op, n in sorted(c.items())}}
            for os_name, c in per_os.items() if count_os[os_name]
        },
        "installsPosted": len(posts),
        "postSpreadMinutes": _minutes(posts[0], posts[-1]) if posts else None,
        "ring0Minutes": _minutes(start, records[-1].time) if records else None,
        "wallSeconds": round(wall, 1),
    }


def _ratio(after: Any, before: Any) -> float | None:
    if not isinstance(after, (int, float)) or not isinstance(before, (int, float)) or not before:
        return None
    return round(after / before, 3)


def run(sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    sizes = sizes or tuple(int(s) for s in os.environ.get("BENCH_WAVE_VMS", "200").split(",") if s.strip())
    rows = []
    for size in sizes:
        before = measure(size, paced=False)
        after = measure(size, paced=True)
        win_b = before["vmAddressedPerVm"].get("Windows", {}).get("total")
        win_a = after["vmAddressedPerVm"].get("Windows", {}).get("total")
        rows.append({"vms": size, "before": before, "after": after, "ratios": {
            "throttled": _ratio(after["throttled"], before["throttled"]),
            "callsPerVm": _ratio(after["callsPerVm"], before["callsPerVm"]),
            "windowsVmCalls": _ratio(win_a, win_b),
            "ring0Minutes": _ratio(after["ring0Minutes"], before["ring0Minutes"]),
        }})
        _print(rows[-1])
    out = {"bench": "wave_bursts", "concurrency": CONCURRENCY, "rows": rows,
           "machine": f"{os.cpu_count()} CPUs", "start": START}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wave_bursts.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _print(row: dict[str, Any]) -> None:
    print(f"   Ring 0 of {row['vms']} VMs at maxConcurrency {CONCURRENCY} (one first wave, "
          f"{row['before']['slices']} slices)")
    print(f"   {'':>7} {'429s':>6} {'calls/VM':>8} {'Windows VM':>10} {'Linux VM':>8} {'POST spread':>11} "
          f"{'Ring 0 min':>10}")
    for label in ("before", "after"):
        r = row[label]
        win = r["vmAddressedPerVm"].get("Windows", {}).get("total", 0)
        lin = r["vmAddressedPerVm"].get("Linux", {}).get("total", 0)
        print(f"   {label:>7} {r['throttled']:>6} {r['callsPerVm']:>8} {win:>10} {lin:>8} "
              f"{r['postSpreadMinutes']!s:>11} {r['ring0Minutes']!s:>10}")
    print(f"   ratios after/before: {row['ratios']}")


if __name__ == "__main__":
    run()
