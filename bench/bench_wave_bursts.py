"""Wave bursts: throttled requests and first-wave calls per VM, unpaced vs paced (issue 11, W2).

The real app (``function_app.py``) on the local platform (Functions host + ARM simulator with
ARM's default buckets + Azurite, skip clock), the functional scenario's fleet with a direct
Ring 0 of ``N`` VMs (half Windows, half Linux, zones 1-3, one subscription) at ``maxConcurrency:
500``: the whole ring is one first wave, run as ``ceil(N / 100)`` wave slices side by side. The
run stops when Ring 0 is over (the rollout waits for Ring 1's approval). Twice, in one process:

* **before** -- the wave as it was: every slice starts all its installs in one fan-out, and the
  first wave polls at 30 minutes then every 2, 4, 8, 8 ... minutes (the in-process
  ``orchestrators.wave`` has ``start_pacing`` / ``_next_look`` substituted for the run);
* **noScouts** -- paced as now, the first-wave schedule of ``install_polling`` for every VM (the
  wave of the session before the scouts: ``orchestrators.wave._scouts`` answers none);
* **after** -- the wave as it is: bursts from ``rate.start_pacing`` (five slices assumed unless
  the ring passes ``slices``), the first-wave schedule for most VMs and a scout per OS per slice
  on the fine one (issue 11, item 6).

``BENCH_WAVE_MODES=before,noScouts,after`` (default all three) picks the runs.

Reported per run (from the simulator's recorder; helpers of ``bench_ring_scale`` by import):
throttled requests (429) in Ring 0's phase, by operation; ARM calls per VM in the phase and the
VM-addressed calls per Windows / Linux VM by operation (installs, polls, instance views); the
simulated minutes from the first to the last installPatches POST (what the pacing costs) and
Ring 0's simulated duration (rollout start to the approval wait); the ratios after / before.
``BENCH_WAVE_VMS=200`` (default; comma-separated for several sizes) sets ``N``.

Results: ``bench/results/wave_bursts.json`` (or ``bench/results/$BENCH_OUT``).
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

    pacing, look, scouts = getattr(wave, "start_pacing"), getattr(wave, "_next_look"), getattr(wave, "_scouts")  # noqa: B009

    def all_at_once(*_: Any, **__: Any) -> StartPacing:
        return StartPacing(10**6, 0)

    def old_look(started: Any, now: Any, expected: tuple[timedelta, bool], base: timedelta) -> Any:
        return next_install_poll(started, now, expected[0], base)

    setattr(wave, "start_pacing", all_at_once)  # noqa: B010
    setattr(wave, "_next_look", old_look)  # noqa: B010
    setattr(wave, "_scouts", _none)  # noqa: B010
    try:
        yield
    finally:
        setattr(wave, "start_pacing", pacing)  # noqa: B010
        setattr(wave, "_next_look", look)  # noqa: B010
        setattr(wave, "_scouts", scouts)  # noqa: B010


def _none(*_: Any, **__: Any) -> dict[str, str]:
    return {}


@contextmanager
def _no_scouts() -> Iterator[None]:
    """The paced wave of the session before the scouts: every VM on the first-wave schedule."""
    import orchestrators.wave as wave

    scouts = getattr(wave, "_scouts")  # noqa: B009
    setattr(wave, "_scouts", _none)  # noqa: B010
    try:
        yield
    finally:
        setattr(wave, "_scouts", scouts)  # noqa: B010


def measure(size: int, *, paced: bool, scouts: bool = True) -> dict[str, Any]:
    from emulator.clock import make_clock
    from emulator.platform import LocalPlatform
    from tests.functional.platform_driver import driver

    scenario, members = _arm_fleet((size, 1, 1))
    plan = _plan(CONCURRENCY)
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-wave-bursts-{os.getpid()}-{size}-{int(paced)}{int(scouts)}"
    state.mkdir(parents=True, exist_ok=True)
    plan_path = state / "plan.json"
    plan_path.write_text(json.dumps(plan))
    platform = LocalPlatform(scenario, clock=make_clock("skip", start=START), state_dir=state / "platform",
                             settings={"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true",
                                       "PATCHRINGS_PLAN_PATH": str(plan_path)})
    started = time.perf_counter()
    with (_unpaced() if not paced else _no_scouts() if not scouts else _nothing()):
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
    return {**_tally(records, operations, members["ring0"], size, paced, wall, runtime), "scouts": paced and scouts}


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


MODES = {"before": {"paced": False}, "noScouts": {"paced": True, "scouts": False}, "after": {"paced": True}}


def run(sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    sizes = sizes or tuple(int(s) for s in os.environ.get("BENCH_WAVE_VMS", "200").split(",") if s.strip())
    modes = [m.strip() for m in os.environ.get("BENCH_WAVE_MODES", ",".join(MODES)).split(",") if m.strip()]
    rows = []
    for size in sizes:
        row: dict[str, Any] = {"vms": size}
        for mode in modes:
            row[mode] = measure(size, **MODES[mode])
        ratios: dict[str, Any] = {}
        for base in ("before", "noScouts"):
            if base in row and "after" in row:
                b, a = row[base], row["after"]
                ratios[f"after/{base}"] = {
                    "throttled": _ratio(a["throttled"], b["throttled"]),
                    "callsPerVm": _ratio(a["callsPerVm"], b["callsPerVm"]),
                    "extraCallsPerVm": round(a["callsPerVm"] - b["callsPerVm"], 3),
                    "windowsVmCalls": _ratio(_win(a), _win(b)),
                    "ring0Minutes": _ratio(a["ring0Minutes"], b["ring0Minutes"]),
                }
        row["ratios"] = ratios
        rows.append(row)
        _print(row, modes)
    out = {"bench": "wave_bursts", "concurrency": CONCURRENCY, "rows": rows,
           "machine": f"{os.cpu_count()} CPUs", "start": START}
    RESULTS.mkdir(exist_ok=True)
    name = os.environ.get("BENCH_OUT") or "wave_bursts.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n")
    print(f"   saved bench/results/{name}")
    return out


def _win(r: dict[str, Any]) -> Any:
    return r["vmAddressedPerVm"].get("Windows", {}).get("total")


def _print(row: dict[str, Any], modes: list[str]) -> None:
    first = row[modes[0]]
    print(f"   Ring 0 of {row['vms']} VMs at maxConcurrency {CONCURRENCY} (one first wave, "
          f"{first['slices']} slices)")
    print(f"   {'':>9} {'429s':>6} {'calls/VM':>8} {'Windows VM':>10} {'Linux VM':>8} {'POST spread':>11} "
          f"{'Ring 0 min':>10}")
    for label in modes:
        r = row[label]
        win = r["vmAddressedPerVm"].get("Windows", {}).get("total", 0)
        lin = r["vmAddressedPerVm"].get("Linux", {}).get("total", 0)
        print(f"   {label:>9} {r['throttled']:>6} {r['callsPerVm']:>8} {win:>10} {lin:>8} "
              f"{r['postSpreadMinutes']!s:>11} {r['ring0Minutes']!s:>10}")
    for key, ratios in row["ratios"].items():
        print(f"   {key}: {ratios}")


if __name__ == "__main__":
    run()
