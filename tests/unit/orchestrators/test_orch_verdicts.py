"""Glue between orchestrator JSON and the domain: verdicts, gates, install parameters, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrators.inbox import event_from_payload
from orchestrators.verdicts import (
    build_manifest_dict,
    decision_deadline,
    gate_for,
    install_parameters,
    promotion_target,
    verdict_ok,
    verdicts_for,
)
from orchestrators.wave import install_parameters_for
from patchrings.domain.health import HealthState
from patchrings.domain.plan import Plan, Ring, load_plan_file

pytestmark = pytest.mark.unit

PLAN = load_plan_file(Path(__file__).resolve().parents[3] / "plans" / "default.json").to_dict()


def ring_doc(name: str) -> Ring:
    """The domain ``Ring`` of the default plan (its effective install / health settings)."""
    return Plan.from_resolved(PLAN).ring(name)


#: the rings' resolved documents, the ``ringSpec`` a ring-level sub-orchestration receives (issue 10)
RING0 = ring_doc("ring0").to_dict()
RING1 = ring_doc("ring1").to_dict()

T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)


def vm(name: str, os_name: str = "Windows") -> dict:
    return {"id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}",
            "name": name, "os": os_name}


def ok_result(kb: str = "5048667") -> dict:
    return {"status": "Succeeded", "installedPatchCount": 1, "failedPatchCount": 0, "pendingPatchCount": 0,
            "rebootStatus": "Completed", "maintenanceWindowExceeded": False,
            "patches": [{"kbId": kb, "name": "CU", "installationState": "Installed"}]}


def healthy() -> HealthState:
    return HealthState(phase="done", outcome="healthy", reasons=(), next_check_at=None, started_at=T0)


def test_verdicts_cover_every_install_state() -> None:
    vms = [vm("a"), vm("b"), vm("c"), vm("d"), vm("e")]
    installs = [
        {"vm": vms[0]["id"], "state": "done", "result": ok_result()},
        {"vm": vms[1]["id"], "state": "refused", "result": None, "error": {"code": "Conflict", "message": "busy"}},
        {"vm": vms[2]["id"], "state": "timeout", "result": None, "error": None},
        {"vm": vms[3]["id"], "state": "not-needed", "result": None},
    ]
    health = {vms[0]["id"]: healthy(), vms[3]["id"]: healthy()}
    verdicts = {v["name"]: v for v in verdicts_for(PLAN, "ring0", vms, installs, health)}
    assert verdicts["a"]["outcome"] == "pass"
    assert verdicts["b"]["outcome"] == "fail" and "busy" in verdicts["b"]["reasons"][0]
    assert verdicts["c"]["outcome"] == "inconclusive"
    assert verdicts["d"]["outcome"] == "pass"
    assert verdicts["e"]["outcome"] == "inconclusive"  # no install outcome at all
    assert [verdict_ok(verdicts[n]) for n in "abcde"] == [True, False, True, True, True]


def test_gate_fails_on_any_failure_and_names_skipped_vms() -> None:
    vms = [vm("a"), vm("b")]
    installs = [{"vm": vms[0]["id"], "state": "done", "result": ok_result()},
                {"vm": vms[1]["id"], "state": "refused", "result": None, "error": None}]
    verdicts = verdicts_for(PLAN, "ring0", vms, installs, {vms[0]["id"]: healthy()})
    gate = gate_for(PLAN, "ring0", verdicts, skipped=["vm-c"])
    assert gate["outcome"] == "fail"
    assert {"vm": "vm-c", "reason": "not started: the ring's error budget (maxErrors) was exceeded"} in gate["reasons"]
    clean = gate_for(PLAN, "ring0", verdicts[:1])
    assert clean["outcome"] == "pass"


def test_ring0_parameters_pin_windows_to_the_rollout_start() -> None:
    base = ring_doc("ring0").install
    params = install_parameters(base, "2026-11-16T06:00:00Z", None)
    assert params["Windows"]["windowsParameters"]["maxPatchPublishDate"] == "2026-11-16T06:00:00Z"
    assert "linuxParameters" not in params["Windows"] and "windowsParameters" not in params["Linux"]
    assert install_parameters_for({"os": "windows"}, params) is params["Windows"]
    assert install_parameters_for({"os": "Solaris"}, params) is None


def test_later_rings_install_exactly_the_manifest() -> None:
    results = [{"vm": vm("a")["id"], "os": "Windows", "result": ok_result("5048667")},
               {"vm": vm("l", "Linux")["id"], "os": "Linux",
                "result": {**ok_result(), "patches": [{"name": "openssl", "version": "3.0.2", "kbId": None,
                                                       "installationState": "Installed"}]}}]
    passed = [{"vm": r["vm"], "install": "ok", "health": "healthy"} for r in results]
    manifest = build_manifest_dict(results, passed)
    params = install_parameters(ring_doc("ring1").install, "2026-11-16T06:00:00Z", manifest)
    assert params["Windows"]["windowsParameters"]["kbNumbersToInclude"] == ["5048667"]
    assert "maxPatchPublishDate" not in params["Windows"]["windowsParameters"]
    assert params["Linux"]["linuxParameters"]["packageNameMasksToInclude"] == ["openssl=3.0.2"]
    windows_only = build_manifest_dict(results[:1], passed)
    assert install_parameters({}, None, windows_only)["Linux"] is None  # nothing pinned: install nothing


def test_decision_deadline_is_min_of_cutoff_and_t10_minus_margin() -> None:
    late_cutoff = event_from_payload({"kind": "pre", "correlationId": "c", "maintenanceConfigurationId": "m",
                                     "startDateTime": "2026-11-16T12:00:00Z",
                                     "cancellationCutOffDateTime": "2026-11-16T11:59:00Z"})
    early_cutoff = event_from_payload({"kind": "pre", "correlationId": "c", "maintenanceConfigurationId": "m",
                                      "startDateTime": "2026-11-16T12:00:00Z",
                                      "cancellationCutOffDateTime": "2026-11-16T11:30:00Z"})
    assert late_cutoff is not None and early_cutoff is not None
    margin = timedelta(minutes=2)
    assert decision_deadline(late_cutoff, margin) == datetime(2026, 11, 16, 11, 48, tzinfo=UTC)
    assert decision_deadline(early_cutoff, margin) == datetime(2026, 11, 16, 11, 28, tzinfo=UTC)


def test_promotion_targets_the_following_run_when_t40_is_missed() -> None:
    window = {"startDateTime": "2026-11-01 12:00", "duration": "03:55", "timeZone": "UTC", "recurEvery": "Day"}
    early = promotion_target(window, datetime(2026, 11, 16, 9, 0, tzinfo=UTC), timedelta(minutes=5))
    assert early["meetsT40"] is True and early["runStart"] == "2026-11-16T12:00:00Z"
    late = promotion_target(window, datetime(2026, 11, 16, 11, 30, tzinfo=UTC), timedelta(minutes=5))
    assert late["meetsT40"] is False and late["runStart"] == "2026-11-17T12:00:00Z"
    assert "too late" in late["reason"]
    assert promotion_target({}, T0, timedelta(0)) == {}


# ------------------------------------------------------------------ orchestrators on a scripted context
# The generator functions are driven directly: every activity call is answered by a handler, so
# a test sees exactly which activities were scheduled, with which retry policy and input.
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from orchestrators import retries  # noqa: E402
from orchestrators import run_results as run_results_mod  # noqa: E402
from orchestrators import verify as verify_mod  # noqa: E402
from orchestrators import wave as wave_mod  # noqa: E402


def raw(builder: Any) -> Callable[..., Any]:
    """The user's generator function behind a blueprint's ``orchestration_trigger``."""
    import inspect

    # unwrap decorators that use functools.wraps (e.g. the log-context wrapper of patchrings.telemetry)
    handle = inspect.unwrap(builder._function.get_user_function())
    for cell in handle.__closure__ or ():
        fn = cell.cell_contents
        if callable(fn) and getattr(fn, "__name__", "") not in ("handle",) and hasattr(fn, "__code__"):
            return fn  # type: ignore[no-any-return]
    raise AssertionError("no user function found")


class Call:
    def __init__(self, kind: str, name: str, payload: Any, retry: Any = None) -> None:
        self.kind, self.name, self.payload, self.retry = kind, name, payload, retry


class ScriptedContext:
    def __init__(self, payload: Any, now: datetime = T0) -> None:
        self.payload = payload
        self.current_utc_datetime = now
        self.is_replaying = False
        self.instance_id = "inst"
        self.calls: list[Call] = []
        self.statuses: list[Any] = []

    def get_input(self) -> Any:
        return self.payload

    def set_custom_status(self, status: Any) -> None:
        self.statuses.append(status)

    def call_activity(self, name: str, payload: Any = None) -> Call:
        return Call("activity", name, payload)

    def call_activity_with_retry(self, name: str, retry: Any, payload: Any = None) -> Call:
        return Call("activity", name, payload, retry)

    def call_sub_orchestrator(self, name: str, payload: Any = None, instance_id: str | None = None) -> Call:
        return Call("sub", name, payload)

    def task_all(self, tasks: list[Call]) -> tuple[str, list[Call]]:
        return ("all", tasks)

    def create_timer(self, at: datetime) -> tuple[str, datetime]:
        return ("timer", at)


class ActivityFailed(Exception):
    pass


def drive(fn: Callable[..., Any], ctx: ScriptedContext, answer: Callable[[Call, ScriptedContext], Any]) -> Any:
    """Run an orchestrator generator to completion; ``answer`` may raise to fail an activity."""
    gen = fn(ctx)
    value: Any = None
    error: BaseException | None = None
    for _ in range(10_000):
        try:
            step = gen.throw(error) if error is not None else gen.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        calls: list[Call]
        if isinstance(step, tuple) and step[0] == "timer":
            ctx.current_utc_datetime = step[1]
            continue
        calls = list(step[1]) if isinstance(step, tuple) else [step]
        ctx.calls.extend(calls)
        try:
            results = [answer(c, ctx) for c in calls]
        except ActivityFailed as exc:
            error = exc
            continue
        value = results if isinstance(step, tuple) else results[0]
    raise AssertionError("orchestrator did not finish")


def named(ctx: ScriptedContext, name: str) -> list[Call]:
    return [c for c in ctx.calls if c.name == name]


WAVE_SPEC = {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "runId": "r:ring0", "wave": 0,
             "vms": [vm("a")], "parameters": {"Windows": {"rebootSetting": "IfRequired"}}, "pollSeconds": 120,
             "runStartedAt": "2026-11-16T06:00:00Z", "deadline": "2026-11-16T08:30:00Z"}


def test_wave_polls_with_the_read_policy_and_never_retries_the_install_start() -> None:
    polls = iter([ActivityFailed("worker lost"), {"done": False}, {"done": True, "result": ok_result()}])

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "start_install":
            return {"state": "started", "token": "tok", "error": None}
        if call.name == "poll_install":
            step = next(polls)
            if isinstance(step, Exception):
                raise step
            return step
        return {"verdicts": []}

    ctx = ScriptedContext(WAVE_SPEC)
    out = drive(raw(wave_mod.wave_orchestrator), ctx, answer)
    assert [c.retry for c in named(ctx, "start_install")] == [None]  # once-only POST: no host retry
    assert all(c.retry is retries.READ for c in named(ctx, "poll_install"))
    assert len(named(ctx, "poll_install")) == 3  # a failed poll round is a round without news
    assert out["results"][0]["state"] == "done"
    # what the status API reads by this wave's instance id (issue 9): it moves as the wave does
    steps = [(s["step"], s["installing"], s["states"]) for s in ctx.statuses]
    assert steps[0] == ("starting", 1, {}) and ("polling", 1, {}) in steps
    assert steps[-1] == ("verifying", 0, {"done": 1})
    assert all(s["nextPollAt"].endswith("Z") for s in ctx.statuses if s["step"] == "polling")


def test_wave_polls_a_60_minute_install_twice_in_the_first_wave() -> None:
    """Issue 11: a quarter of maximumDuration (PT2H / 4 = 30 min), then doubling (30, 60, 90,
    120: patchrings.domain.install_polling); not every 2 min, and since this session not a fine
    back-off either (2 looks instead of 6: <= 6 ARM calls per VM in the first wave). Since issue 11
    item 6 the first VM of each OS is a scout on the fine schedule (5, 7, 11 ... 59, 67 min):
    ``b`` is such an other VM."""
    spec = {**WAVE_SPEC, "vms": [vm("a"), vm("b")],
            "parameters": {"Windows": {"rebootSetting": "IfRequired", "maximumDuration": "PT2H"}}}
    done_at = T0 + timedelta(minutes=60)
    seen: list[int] = []

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "start_install":
            return {"state": "started", "token": "tok", "error": None}
        if call.name == "poll_install":
            if call.payload["vm"]["name"] == "b":
                seen.append(round((ctx.current_utc_datetime - T0).total_seconds() / 60))
            return {"done": True, "result": ok_result()} if ctx.current_utc_datetime >= done_at else {"done": False}
        return {"verdicts": []}

    out = drive(raw(wave_mod.wave_orchestrator), ScriptedContext(spec), answer)
    assert seen == [30, 60]
    assert out["results"][1]["state"] == "done"
    # what the ring learns for its next waves: the longest of b's bracket middle (30-60: 45 min)
    # and the scout's bracket middle (59-67: 63 min)
    assert out["installSeconds"] == {"windows": 3780.0}


def test_wave_uses_a_learned_expected_duration_and_never_polls_past_the_deadline() -> None:
    spec = {**WAVE_SPEC, "expectedInstallSeconds": 50 * 60, "deadline": "2026-11-16T07:00:00Z"}
    seen: list[int] = []

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "start_install":
            return {"state": "started", "token": "tok", "error": None}
        if call.name == "poll_install":
            seen.append(round((ctx.current_utc_datetime - T0).total_seconds() / 60))
            return {"done": False}
        return {"verdicts": []}

    out = drive(raw(wave_mod.wave_orchestrator), ScriptedContext(spec), answer)
    assert seen == [50, 52, 56, 60]
    assert out["results"][0]["state"] == "timeout"


def test_wave_polls_each_vm_at_its_own_os_learned_duration_once() -> None:
    """Issue 11: with durations learned per OS, a Windows (50 min) and a Linux (10 min) install
    are each polled once, when they are done, and each OS's longest install is handed back."""
    spec = {**WAVE_SPEC, "vms": [vm("w"), vm("l", "Linux")],
            "parameters": {"Windows": {"maximumDuration": "PT2H"}, "Linux": {"maximumDuration": "PT2H"}},
            "expectedInstallSeconds": {"Windows": 50 * 60, "linux": 10 * 60}}
    done_at = {vm("w")["id"]: T0 + timedelta(minutes=50), vm("l")["id"]: T0 + timedelta(minutes=10)}
    seen: list[tuple[str, int]] = []

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "start_install":
            return {"state": "started", "token": "tok", "error": None}
        if call.name == "poll_install":
            seen.append((call.payload["vm"]["name"], round((ctx.current_utc_datetime - T0).total_seconds() / 60)))
            ok = ctx.current_utc_datetime >= done_at[call.payload["vm"]["id"]]
            return {"done": True, "result": ok_result()} if ok else {"done": False}
        return {"verdicts": []}

    out = drive(raw(wave_mod.wave_orchestrator), ScriptedContext(spec), answer)
    assert seen == [("l", 10), ("w", 50)]
    assert out["installSeconds"] == {"linux": 600.0, "windows": 3000.0}


def test_wave_hands_the_health_before_each_install_to_verify_for_fail_fast() -> None:
    baseline = {"vm": vm("a")["id"], "powerState": "running", "vmAgent": "Ready", "appHealth": None,
                "probes": [], "readError": None}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "start_install":
            return {"state": "started", "token": "tok", "error": None, "baseline": baseline}
        if call.name == "poll_install":
            return {"done": True, "result": ok_result()}
        return {"verdicts": []}

    ctx = ScriptedContext(WAVE_SPEC)
    drive(raw(wave_mod.wave_orchestrator), ctx, answer)
    assert named(ctx, "start_install")[0].payload["probes"] == []
    assert named(ctx, "verify_orchestrator")[0].payload["baselines"] == {vm("a")["id"]: baseline}


def test_wave_resends_only_when_the_poll_says_the_first_post_never_took_effect() -> None:
    polls = iter([{"done": False, "resend": True}, {"done": True, "result": ok_result()}])
    starts = iter([{"state": "already-started", "token": None, "uncertain": True,
                    "error": {"code": "InternalError", "status": 500}},
                   {"state": "started", "token": "tok2", "error": None}])

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "start_install":
            return next(starts)
        if call.name == "poll_install":
            return next(polls)
        return {"verdicts": []}

    ctx = ScriptedContext(WAVE_SPEC)
    out = drive(raw(wave_mod.wave_orchestrator), ctx, answer)
    first, second = named(ctx, "start_install")
    assert "resend" not in first.payload and second.payload["resend"] is True
    assert second.payload["now"] and second.retry is None
    assert [c.payload["token"] for c in named(ctx, "poll_install")] == [None, "tok2"]
    assert out["results"][0]["state"] == "done"


def test_verify_checks_health_with_the_read_policy_and_an_unreadable_check_is_never_healthy() -> None:
    spec = {"ringSpec": RING0, "ring": "ring0", "vms": [vm("a")], "decide": True,
            "installs": [{"vm": vm("a")["id"], "state": "done", "result": ok_result()}]}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        raise ActivityFailed("instance view down")

    ctx = ScriptedContext(spec)
    out = drive(raw(verify_mod.verify_orchestrator), ctx, answer)
    batches = named(ctx, "check_vm_health_batch")
    assert batches and all(c.retry is retries.READ for c in batches)
    assert out["verdicts"][0]["outcome"] == "inconclusive"
    assert out["gate"]["outcome"] == "inconclusive"


def _healthy(vm_id: str, *, partial: bool = False, power: str = "running") -> dict[str, Any]:
    doc: dict[str, Any] = {"vm": vm_id, "powerState": power, "vmAgent": "Ready", "appHealth": None,
                           "probes": [], "readError": None}
    if partial:
        doc.update(vmAgent=None, partial=True)
    return doc


def test_verify_publishes_its_health_phase_and_until_when_for_the_status_api() -> None:
    """Issue 9: the API reads this status by the instance id: the phase most VMs are in and until
    when it lasts (stay-healthy: healthy since + healthyStateDuration), then done."""
    vms = [vm("a"), vm("b")]
    spec = {"ringSpec": RING0, "ring": "ring0", "vms": vms, "decide": False,
            "installs": [{"vm": v["id"], "state": "done", "result": ok_result()} for v in vms]}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        return {"samples": [_healthy(c["vm"]["id"], partial=not c["full"]) for c in call.payload["checks"]]}

    ctx = ScriptedContext(spec)
    drive(raw(verify_mod.verify_orchestrator), ctx, answer)
    phases = [s["healthPhase"] for s in ctx.statuses]
    assert phases[0] == "wait" and "stayHealthy" in phases and phases[-1] == "done"
    assert all(s["vms"] == 2 and s["step"] == "verifying" for s in ctx.statuses)
    holding = [s for s in ctx.statuses if s["healthPhase"] == "stayHealthy"]
    assert len({s["until"] for s in holding}) == 1 and holding[0]["until"].endswith("Z")


def test_verify_reads_a_whole_round_in_one_activity_with_full_samples_only_at_the_ends_of_the_phases() -> None:
    """Issue 11: one batch activity per round (not one per VM); cheap samples between the full
    ones at the end of the wait phase and at the end of the stay-healthy phase; 4 rounds, not 16."""
    vms = [vm("a"), vm("b"), vm("c")]
    spec = {"ringSpec": RING0, "ring": "ring0", "vms": vms, "decide": False,
            "installs": [{"vm": v["id"], "state": "done", "result": ok_result()} for v in vms]}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        return {"samples": [_healthy(c["vm"]["id"], partial=not c["full"]) for c in call.payload["checks"]]}

    ctx = ScriptedContext(spec)
    out = drive(raw(verify_mod.verify_orchestrator), ctx, answer)
    rounds = named(ctx, "check_vm_health_batch")
    assert not named(ctx, "check_vm_health")
    assert [[c["full"] for c in r.payload["checks"]] for r in rounds] == [[True] * 3, [False] * 3, [False] * 3,
                                                                           [True] * 3]
    assert [v["outcome"] for v in out["verdicts"]] == ["pass"] * 3


def test_verify_reads_a_large_round_in_bursts_of_200_with_a_pause_between() -> None:
    vms = [vm(f"v{i:03d}") for i in range(450)]
    spec = {"ringSpec": RING0, "ring": "ring0", "vms": vms, "decide": False,
            "installs": [{"vm": v["id"], "state": "done", "result": ok_result()} for v in vms]}
    times: list[datetime] = []

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        times.append(ctx.current_utc_datetime)
        return {"samples": [_healthy(c["vm"]["id"], partial=not c["full"]) for c in call.payload["checks"]]}

    ctx = ScriptedContext(spec)
    out = drive(raw(verify_mod.verify_orchestrator), ctx, answer)
    rounds = named(ctx, "check_vm_health_batch")
    assert [len(r.payload["checks"]) for r in rounds[:3]] == [200, 200, 50]
    assert times[1] - times[0] == verify_mod.BURST_PAUSE and times[2] - times[1] == verify_mod.BURST_PAUSE
    assert [v["outcome"] for v in out["verdicts"]] == ["pass"] * 450


def test_verify_fails_a_vm_healthy_before_patching_after_two_unhealthy_samples() -> None:
    """Issue 11 fail fast: a VM whose pre-install sample was healthy fails on the second unhealthy
    sample (one pollInterval after the end of the wait phase), not after elasticDuration; a VM
    with no baseline keeps the elastic phase."""
    vms = [vm("a"), vm("b")]
    spec = {"ringSpec": RING0, "ring": "ring0", "vms": vms, "decide": False,
            "installs": [{"vm": v["id"], "state": "done", "result": ok_result()} for v in vms],
            "baselines": {vm("a")["id"]: _healthy(vm("a")["id"])}}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        return {"samples": [_healthy(c["vm"]["id"], power="stopped") for c in call.payload["checks"]]}

    ctx = ScriptedContext(spec)
    out = drive(raw(verify_mod.verify_orchestrator), ctx, answer)
    rounds = named(ctx, "check_vm_health_batch")
    with_a = [r for r in rounds if any(c["vm"]["id"] == vm("a")["id"] for c in r.payload["checks"])]
    assert len(with_a) == 2  # failed on its second sample
    by_vm = {v["vm"]: v for v in out["verdicts"]}
    assert by_vm[vm("a")["id"]]["outcome"] == "fail"
    assert any("failed fast" in r for r in by_vm[vm("a")["id"]]["reasons"])
    assert by_vm[vm("b")["id"]]["outcome"] == "fail"
    assert len(rounds) > 20  # b (no baseline) was followed through the whole elastic phase


def run_spec() -> dict[str, Any]:
    return {"rolloutId": "r", "ringSpec": RING1, "ring": "ring1", "since": "2026-11-16T06:00:00Z",
            "correlationId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Maintenance/"
                             "maintenanceConfigurations/mc/providers/Microsoft.Maintenance/applyUpdates/20261116060000"}


def test_run_results_reads_with_read_and_writes_with_write_and_fails_closed() -> None:
    from tests.unit.orchestrators.chunked import ChunkContext, with_chunks

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "collect_run_results_arg":
            return {"results": []}  # no row of the run: re-queried, then the instance-view fallback
        return {"written": True}

    ctx = ChunkContext(run_spec())
    out = drive(raw(run_results_mod.run_results_orchestrator), ctx,
                with_chunks(answer, [vm("a")], fail=("collect_run_results", "ledger_record_vm_results")))
    assert named(ctx, "plan_ring_waves")[0].retry is retries.READ
    assert named(ctx, "read_wave_members")[0].retry is retries.READ
    assert named(ctx, "collect_run_results")[0].retry is retries.READ
    # the verify chunk writes the per-VM rows itself and says when that failed (issue 11)
    verify_input = named(ctx, "verify_orchestrator")[0].payload
    assert verify_input["ledger"] == {"runId": run_spec()["correlationId"]}
    write = named(ctx, "ledger_record_vm_results")[0]
    assert write.retry is retries.WRITE and write.payload["results"][0]["state"] == "unreadable"
    assert out["gate"]["outcome"] == "inconclusive"
    assert any("could not be written to the ledger" in r["reason"] for r in out["gate"]["reasons"])


def test_run_results_with_unresolvable_members_is_inconclusive_not_a_crash() -> None:
    def answer(call: Call, ctx: ScriptedContext) -> Any:
        raise ActivityFailed("ARM down")

    ctx = ScriptedContext(run_spec())
    out = drive(raw(run_results_mod.run_results_orchestrator), ctx, answer)
    assert out["gate"]["outcome"] == "inconclusive"
    assert "members could not be resolved" in out["gate"]["reasons"][0]["reason"]


# ------------------------------------------------------------------ previous ring re-check (issue 13.5)
from orchestrators.verdicts import previous_ring_check  # noqa: E402

HEALTHY: dict[str, Any] = {"powerState": "running", "vmAgent": "Ready", "appHealth": "Healthy", "probes": [],
                           "readError": None}
POLICY = ring_doc("ring0").health.to_dict()


def test_a_deleted_canary_leaves_the_sample_with_a_note() -> None:
    a, b = vm("a"), vm("b")
    out = previous_ring_check(POLICY, "ring0", [a, b], [{"readError": "ResourceNotFound: gone", "deleted": True},
                                                       HEALTHY])
    assert out["outcome"] == "healthy" and out["reasons"] == []
    assert out["removed"] == [a["id"]] and "no longer exists" in out["notes"][0]


@pytest.mark.parametrize("sample", [
    {"powerState": "deallocated", "vmAgent": None, "appHealth": "Unknown",
     "probes": [{"url": "http://a/health", "ok": False, "reason": "connection refused"}], "readError": None},
    {"powerState": "running", "vmAgent": "Not Ready", "appHealth": "Unknown", "probes": [], "readError": None},
    {"readError": "AuthorizationFailed: no access"},
])
def test_an_unreadable_canary_is_inconclusive_and_an_approver_may_accept_it(sample: dict) -> None:
    a, b = vm("a"), vm("b")
    out = previous_ring_check(POLICY, "ring0", [a, b], [sample, HEALTHY])
    assert out["outcome"] == "inconclusive" and out["inconclusive"] == [a["id"]]
    assert "cannot be observed" in out["reasons"][0] and "approver may accept" in out["reasons"][0]
    accepted = previous_ring_check(POLICY, "ring0", [a, b], [sample, HEALTHY], accepted=[a["id"].upper()])
    assert accepted["outcome"] == "healthy" and accepted["reasons"] == []
    assert "accepted as inconclusive by the approver" in accepted["notes"][0]
    # accepting one VM never accepts another
    other = previous_ring_check(POLICY, "ring0", [a, b], [sample, sample], accepted=[a["id"]])
    assert other["outcome"] == "inconclusive" and len(other["reasons"]) == 1


def test_a_running_canary_with_a_bad_workload_signal_is_unhealthy_and_cannot_be_accepted() -> None:
    a = vm("a")
    bad = {**HEALTHY, "appHealth": "Unhealthy"}
    out = previous_ring_check(POLICY, "ring0", [a], [bad], accepted=[a["id"]])
    assert out["outcome"] == "unhealthy" and "is unhealthy" in out["reasons"][0]
    probe = {**HEALTHY, "vmAgent": "Not Ready", "probes": [{"url": "http://a", "ok": False, "reason": "HTTP 503"}]}
    assert previous_ring_check(POLICY, "ring0", [a], [probe])["outcome"] == "unhealthy"


def test_a_sample_whose_every_vm_was_deleted_is_inconclusive() -> None:
    a = vm("a")
    out = previous_ring_check(POLICY, "ring0", [a], [{"readError": "gone", "deleted": True}])
    assert out["outcome"] == "inconclusive" and out["inconclusive"] == [a["id"]]
    assert previous_ring_check(POLICY, "ring0", [a], [{"readError": "gone", "deleted": True}],
                               accepted=[a["id"]])["outcome"] == "healthy"


# ------------------------------------------------------------------ results integrity (issue 13.7 / 13.8)
from orchestrators.run_results import install_entry  # noqa: E402
from orchestrators.verdicts import coverage_refusal  # noqa: E402
from patchrings.arm.vms import summary_as_result  # noqa: E402


def test_a_scheduled_run_result_read_from_the_instance_view_is_inconclusive_not_pass() -> None:
    a = vm("a")
    summary = {"status": "Succeeded", "startTime": "2026-11-17T02:05:00Z", "installedPatchCount": 0,
               "failedPatchCount": 0, "pendingPatchCount": 0, "maintenanceWindowExceeded": False}
    entry = install_entry([a], {"vm": a["id"], "state": "done", "result": summary_as_result(summary)})
    verdicts = verdicts_for(PLAN, "ring1", [a], [entry], {a["id"]: healthy()})
    assert verdicts[0]["outcome"] == "inconclusive"
    assert any("Resource Graph" in r for r in verdicts[0]["reasons"])
    assert any("reboot state not reported" in r for r in verdicts[0]["reasons"])
    gate = gate_for(PLAN, "ring1", verdicts)
    assert gate["outcome"] == "inconclusive"


def test_ring0_manifest_counts_only_passing_vms_and_promotion_refuses_uncovered_families() -> None:
    a, b = {**vm("a"), "image": "P:O:S"}, {**vm("b"), "image": "P:O:S"}
    results = [{"vm": a["id"], "os": "Windows", "image": a["image"], "result": ok_result("5048667")},
               {"vm": b["id"], "os": "Windows", "image": b["image"], "result": ok_result("5049999")}]
    verdicts = verdicts_for(PLAN, "ring0", [a, b], [{**r, "state": "done"} for r in results],
                            {a["id"]: healthy()})  # b's health never finished: inconclusive
    assert [v["outcome"] for v in verdicts] == ["pass", "inconclusive"]
    manifest = build_manifest_dict(results, verdicts)
    assert manifest["windows"]["kbNumbers"] == ["5048667"]
    assert manifest["coverage"] == ["Windows/p:o:s"]
    ring1 = [{**vm("c"), "image": "p:o:s"}, {**vm("l", "Linux"), "image": "Canonical:x:y"}]
    refused = coverage_refusal(PLAN, "ring1", manifest, ring1)
    assert [r["vm"] for r in refused] == [ring1[1]["id"]]
    lenient = {**PLAN, "rings": [dict(r, gate={**(r.get("gate") or {}), "allowUncoveredOs": True})
                                 if r["name"] == "ring1" else r for r in PLAN["rings"]]}
    assert coverage_refusal(lenient, "ring1", manifest, ring1) == []


def test_an_unreachable_arc_machine_is_inconclusive_not_failed() -> None:
    """wave.py records ``unreachable`` when the install was refused before sending because the Arc
    agent is not Connected (``error.unreachable``): nothing was installed, so the machine's outcome
    is unknown -- the gate can't pass on it, and it doesn't spend the error budget as a failure."""
    machines = [vm("arc")]
    installs = [{"vm": machines[0]["id"], "state": "unreachable", "result": None,
                 "error": {"code": "ArcAgentNotConnected", "message": "agent Disconnected", "unreachable": True}}]
    [verdict] = verdicts_for(PLAN, "ring0", machines, installs, {})
    assert verdict["outcome"] == "inconclusive" and "Arc agent is not Connected" in verdict["reasons"][0]
