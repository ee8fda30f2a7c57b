"""Waves that do not burst ARM, and first-wave installs in few looks (issue 11), on the real wave
orchestrator driven by a scripted context: which starts go out together, the durable timers
between them, and each VM's looks at its install from its own start."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from orchestrators import wave as wave_mod
from patchrings.domain.plan import Plan, load_plan_file

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
RING0 = Plan.from_resolved(load_plan_file(Path(__file__).resolve().parents[3] / "plans" / "default.json")
                           .to_dict()).ring("ring0").to_dict()


def vm(i: int, os_name: str = "Windows", sub: str = "s1") -> dict[str, Any]:
    return {"id": f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{i:03d}",
            "name": f"vm{i:03d}", "os": os_name}


def ok_result() -> dict[str, Any]:
    return {"status": "Succeeded", "installedPatchCount": 1, "failedPatchCount": 0, "pendingPatchCount": 0,
            "rebootStatus": "Completed", "maintenanceWindowExceeded": False,
            "patches": [{"kbId": "5048667", "name": "CU", "installationState": "Installed"}]}


def spec(vms: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    params = {"rebootSetting": "IfRequired", "maximumDuration": "PT2H"}
    return {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "runId": "r:ring0", "wave": 0, "vms": vms,
            "parameters": {"Windows": params, "Linux": params}, "pollSeconds": 120,
            "runStartedAt": "2026-11-16T06:00:00Z", "deadline": "2026-11-16T08:30:00Z", **extra}


class Call:
    def __init__(self, name: str, payload: Any) -> None:
        self.name, self.payload = name, payload


class Ctx:
    def __init__(self, payload: Any) -> None:
        self.payload, self.current_utc_datetime = payload, T0
        self.is_replaying, self.instance_id = False, "inst"
        self.log: list[tuple[datetime, str, Any]] = []  # (time, "timer" | activity name, payload or instant)

    def get_input(self) -> Any:
        return self.payload

    def set_custom_status(self, status: Any) -> None:
        pass

    def call_activity(self, name: str, payload: Any = None) -> Call:
        return Call(name, payload)

    def call_activity_with_retry(self, name: str, retry: Any, payload: Any = None) -> Call:
        return Call(name, payload)

    def call_sub_orchestrator(self, name: str, payload: Any = None, instance_id: str | None = None) -> Call:
        return Call(name, {**payload, "_instance": instance_id})

    def task_all(self, tasks: list[Call]) -> tuple[str, list[Call]]:
        return ("all", tasks)

    def create_timer(self, at: datetime) -> tuple[str, datetime]:
        return ("timer", at)


def raw(builder: Any) -> Callable[..., Any]:
    handle = inspect.unwrap(builder._function.get_user_function())
    for cell in handle.__closure__ or ():
        fn = cell.cell_contents
        if callable(fn) and getattr(fn, "__name__", "") != "handle" and hasattr(fn, "__code__"):
            return fn  # type: ignore[no-any-return]
    raise AssertionError("no user function found")


def run(ctx: Ctx, answer: Callable[[Call, Ctx], Any], *, start_seconds: float = 0) -> Any:
    """Drive the wave; each start burst takes ``start_seconds`` of (simulated) time to answer."""
    gen = raw(wave_mod.wave_orchestrator)(ctx)
    value: Any = None
    for _ in range(100_000):
        try:
            step = gen.send(value)
        except StopIteration as stop:
            return stop.value
        if isinstance(step, tuple) and step[0] == "timer":
            assert step[1] >= ctx.current_utc_datetime
            ctx.log.append((ctx.current_utc_datetime, "timer", step[1]))
            ctx.current_utc_datetime, value = step[1], None
            continue
        calls = list(step[1]) if isinstance(step, tuple) else [step]
        for c in calls:
            ctx.log.append((ctx.current_utc_datetime, c.name, c.payload))
        results = [answer(c, ctx) for c in calls]
        if calls and calls[0].name == "start_install":
            ctx.current_utc_datetime += timedelta(seconds=start_seconds)
        value = results if isinstance(step, tuple) else results[0]
    raise AssertionError("the wave did not finish")


def done_after(minutes: dict[str, float] | float) -> Callable[[Call, Ctx], Any]:
    """Installs that end ``minutes`` after their start (per VM name, or all the same)."""
    started: dict[str, datetime] = {}

    def answer(call: Call, ctx: Ctx) -> Any:
        if call.name == "start_install":
            started[call.payload["vm"]["name"]] = ctx.current_utc_datetime
            return {"state": "started", "token": "tok", "error": None}
        if call.name == "poll_install":
            name = call.payload["vm"]["name"]
            took = minutes[name] if isinstance(minutes, dict) else minutes
            done = ctx.current_utc_datetime >= started[name] + timedelta(minutes=took)
            return {"done": True, "result": ok_result()} if done else {"done": False}
        return {"verdicts": []}

    return answer


def bursts(ctx: Ctx) -> list[tuple[datetime, int]]:
    """(instant, number of starts) per burst of start_install calls."""
    out: dict[datetime, int] = {}
    for at, name, _ in ctx.log:
        if name == "start_install":
            out[at] = out.get(at, 0) + 1
    return sorted(out.items())


def test_a_100_vm_slice_starts_in_bursts_of_20_with_a_durable_timer_of_10_s_between() -> None:
    """Defaults (no slices given: 5 slices of a 500-VM wave assumed): 20 starts per burst, 10 s."""
    ctx = Ctx(spec([vm(i) for i in range(100)]))
    out = run(ctx, done_after(45), start_seconds=3)
    got = bursts(ctx)
    assert [n for _, n in got] == [20] * 5
    gaps = [(b - a).total_seconds() for (a, _), (b, _) in pairwise(got)]
    assert gaps == [13.0] * 4  # the burst's own 3 s, then the 10 s pause from its end
    assert all(r["state"] == "done" for r in out["results"])


def test_slices_given_divide_the_budget_and_a_burst_given_wins() -> None:
    ctx = Ctx(spec([vm(i) for i in range(100)], slices=2))
    run(ctx, done_after(45))
    assert [n for _, n in bursts(ctx)] == [50, 50]
    ctx = Ctx(spec([vm(i) for i in range(10)], startBurst=4, startPauseSeconds=30))
    run(ctx, done_after(45))
    got = bursts(ctx)
    assert [n for _, n in got] == [4, 4, 2] and (got[1][0] - got[0][0]).total_seconds() == 30


def test_bursts_are_per_subscription() -> None:
    """ARM's buckets are per subscription: 20 of each subscription go together."""
    ctx = Ctx(spec([vm(i, sub="s1") for i in range(30)] + [vm(100 + i, sub="s2") for i in range(30)]))
    run(ctx, done_after(45))
    assert [n for _, n in bursts(ctx)] == [40, 20]


def test_each_vm_is_polled_from_its_own_start_so_polls_follow_the_bursts() -> None:
    """The scout (vm000, first started) on the fine schedule; the others at 30 min (coarse), then,
    once the scout is seen done at 51 min, at their own start + 51 min: the second burst's looks
    stay 10 s after the first's, as their starts were."""
    ctx = Ctx(spec([vm(i) for i in range(40)]))
    run(ctx, done_after(45))
    first, second = (at for at, _ in bursts(ctx))
    polls: dict[str, list[datetime]] = {}
    rounds: dict[datetime, int] = {}
    for at, name, payload in ctx.log:
        if name == "poll_install":
            polls.setdefault(payload["vm"]["name"], []).append(at)
            rounds[at] = rounds.get(at, 0) + 1
    assert [round((at - first).total_seconds() / 60) for at in polls["vm000"]] == [5, 7, 11, 19, 27, 35, 43, 51]
    assert polls["vm001"] == [first + timedelta(minutes=30), first + timedelta(minutes=51)]
    assert polls["vm020"] == [second + timedelta(minutes=30), second + timedelta(minutes=51)]
    assert max(rounds.values()) == 20  # never more looks at once than a burst of starts


# Looks per install in a first-wave slice of 10 VMs of one OS started together (PT2H): the scout's
# (5 min, then 2, 4, 8, 8 ... min) and each other VM's (30 min, then doubling, until the scout is
# seen done: then at once). Before the scouts, every VM looked like the others do (column 3 = the
# old one-VM figure); their looks end no later than before and at most one gap after the scout's.
@pytest.mark.parametrize(("minutes", "scout", "others", "seen_by"), [
    (2, 1, 1, 5), (29, 6, 1, 35), (45, 8, 2, 51), (60, 10, 2, 67), (75, 11, 3, 75), (110, 16, 4, 115)])
def test_first_wave_looks_scout_fine_others_coarse_then_at_once(minutes: float, scout: int, others: int,
                                                                seen_by: int) -> None:
    from patchrings.domain.install_polling import first_wave_with_scout

    ctx = Ctx(spec([vm(i) for i in range(10)]))
    out = run(ctx, done_after(minutes))
    looks: dict[str, int] = {}
    for _, name, payload in ctx.log:
        if name == "poll_install":
            looks[payload["vm"]["name"]] = looks.get(payload["vm"]["name"], 0) + 1
    assert looks["vm000"] == scout and {looks[f"vm{i:03d}"] for i in range(1, 10)} == {others}
    assert all(r["state"] == "done" for r in out["results"])
    last = max(at for at, name, _ in ctx.log if name == "poll_install")
    assert last == T0 + timedelta(minutes=seen_by)  # the whole slice seen done (then verify starts)
    # the domain's table says the same (what the docs quote)
    table, all_seen = first_wave_with_scout([timedelta(minutes=minutes)] * 10, timedelta(minutes=30))
    assert table == [scout] + [others] * 9 and all_seen == timedelta(minutes=seen_by)


def test_a_later_wave_has_no_scout_and_the_ring_learns_the_middle_of_the_scouts_bracket() -> None:
    ctx = Ctx(spec([vm(0), vm(1, "Linux")]))
    out = run(ctx, done_after({"vm000": 45, "vm001": 2}))
    # both are their OS's scout: Windows seen done at 51 (bracket 43-51: its middle, 47 min, not
    # its end: every later wave would wait the end's lateness), Linux at its first look (5)
    assert out["installSeconds"] == {"windows": 2820.0, "linux": 300.0}
    later = Ctx(spec([vm(2), vm(3, "Linux"), vm(4)], expectedInstallSeconds=out["installSeconds"]))
    again = run(later, done_after({"vm002": 45, "vm003": 2, "vm004": 45}))
    assert sum(1 for _, name, _ in later.log if name == "poll_install") == 3  # one look each, no scout
    assert again["installSeconds"] == {"windows": 2820.0, "linux": 300.0}


def test_a_failed_scout_leaves_the_others_on_the_coarse_schedule() -> None:
    inner = done_after(45)

    def answer(call: Call, ctx: Ctx) -> Any:
        if call.name == "poll_install" and call.payload["vm"]["name"] == "vm000":
            return {"done": True, "result": None, "error": {"code": "InstallFailed"}}
        return inner(call, ctx)

    ctx = Ctx(spec([vm(i) for i in range(3)]))
    out = run(ctx, answer)
    looks = [round((at - T0).total_seconds() / 60) for at, name, p in ctx.log
             if name == "poll_install" and p["vm"]["name"] == "vm001"]
    assert looks == [30, 60] and [r["state"] for r in out["results"]] == ["failed", "done", "done"]


def test_a_later_wave_keeps_the_learned_schedule_and_learns_its_narrow_bracket_end() -> None:
    ctx = Ctx(spec([vm(0)], expectedInstallSeconds={"Windows": 45 * 60}))
    out = run(ctx, done_after(50))
    assert [round((at - T0).total_seconds() / 60) for at, name, _ in ctx.log if name == "poll_install"] == [45, 47, 51]
    assert out["installSeconds"] == {"windows": 51 * 60.0}  # bracket 47-51 (4 min): its end


def test_the_deadline_still_caps_the_first_wave_schedule() -> None:
    ctx = Ctx(spec([vm(0)], deadline="2026-11-16T07:10:00Z"))
    out = run(ctx, done_after(200))
    looks = [round((at - T0).total_seconds() / 60) for at, name, _ in ctx.log if name == "poll_install"]
    assert looks == [5, 7, 11, 19, 27, 35, 43, 51, 59, 67, 70]  # a scout, cut at the deadline (70 min)
    assert out["results"][0]["state"] == "timeout"
    ctx = Ctx(spec([vm(0), vm(1)], deadline="2026-11-16T07:10:00Z"))
    out = run(ctx, done_after(200))
    assert [round((at - T0).total_seconds() / 60) for at, name, p in ctx.log
            if name == "poll_install" and p["vm"]["name"] == "vm001"] == [30, 60, 70]  # the coarse one
    assert [r["state"] for r in out["results"]] == ["timeout", "timeout"]


def test_refused_retryable_starts_are_retried_in_bursts_too() -> None:
    tries: dict[str, int] = {}
    inner = done_after(45)

    def answer(call: Call, ctx: Ctx) -> Any:
        if call.name == "start_install":
            name = call.payload["vm"]["name"]
            tries[name] = tries.get(name, 0) + 1
            if tries[name] == 1 and int(name[2:]) % 2:
                return {"state": "refused", "token": None, "error": {"code": "TooManyRequests", "retryable": True}}
        return inner(call, ctx)

    ctx = Ctx(spec([vm(i) for i in range(50)]))
    out = run(ctx, answer)
    assert [n for _, n in bursts(ctx)] == [20, 20, 10, 20, 5]  # 25 refused: retried a minute later, paced
    assert all(r["state"] == "done" for r in out["results"])


def test_health_reads_are_paced_like_the_starts_one_verify_instance_per_burst() -> None:
    verdict = {"outcome": "pass", "install": "ok", "health": "healthy"}

    def answer(call: Call, ctx: Ctx) -> Any:
        if call.name == "verify_orchestrator":
            return {"verdicts": [{**verdict, "vm": v["id"], "name": v["name"]} for v in call.payload["vms"]]}
        return inner(call, ctx)

    inner = done_after(45)
    vms = [vm(i) for i in range(50)]
    ctx = Ctx(spec(vms))
    out = run(ctx, answer)
    verifies = [payload for _, name, payload in ctx.log if name == "verify_orchestrator"]
    assert [len(p["vms"]) for p in verifies] == [20, 20, 10]
    assert [p.get("startDelaySeconds") for p in verifies] == [None, 10, 20]
    assert [p["_instance"] for p in verifies] == ["inst:verify", "inst:verify:1", "inst:verify:2"]
    assert all(set(p["baselines"]) <= {v["id"] for v in p["vms"]} for p in verifies)
    assert out["passed"] == {"ok|healthy": list(range(50))}  # every VM's verdict, in the wave's order
    small = Ctx(spec(vms[:3]))
    run(small, answer)
    assert [p["_instance"] for _, name, p in small.log if name == "verify_orchestrator"] == ["inst:verify"]
