"""Issue 11 in the direct ring: learned install durations reach the next wave; waves hand on
lean per-VM results (manifest-relevant patches only)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators import ring_direct as ring_direct_mod
from orchestrators import wave as wave_mod
from tests.unit.orchestrators.test_orch_verdicts import (
    PLAN,
    WAVE_SPEC,
    Call,
    ScriptedContext,
    drive,
    named,
    ok_result,
    raw,
    vm,
)

pytestmark = pytest.mark.unit


def test_each_wave_gets_the_install_durations_the_previous_wave_saw() -> None:
    vms = [vm(f"v{i}", "Windows" if i % 2 else "Linux") for i in range(6)]
    spec = {"rolloutId": "r", "plan": PLAN, "ring": "ring0", "runId": "r:ring0", "vms": vms,
            "startedAt": "2026-11-16T06:00:00Z"}
    seen = iter([{"windows": 3000.0, "linux": 600.0}, {"windows": 2880.0}, {}])

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == wave_mod.names.WAVE:
            wave_vms = call.payload["vms"]
            return {"results": [{"vm": v["id"], "os": v["os"], "state": "done", "result": ok_result()}
                                for v in wave_vms],
                    "verdicts": [{"vm": v["id"], "outcome": "pass", "install": "ok", "health": "healthy",
                                          "reasons": []} for v in wave_vms],
                    "installSeconds": next(seen)}
        return {}

    ctx = ScriptedContext(spec)
    out = drive(raw(ring_direct_mod.ring_direct_orchestrator), ctx, answer)
    waves = named(ctx, wave_mod.names.WAVE)
    assert len(waves) == 3  # maxConcurrency 2
    assert [w.payload["expectedInstallSeconds"] for w in waves] == [
        None, {"windows": 3000.0, "linux": 600.0}, {"windows": 2880.0, "linux": 600.0}]
    assert out["installSeconds"] == {"windows": 2880.0, "linux": 600.0}  # for a later direct ring


def test_a_wave_hands_on_only_installed_and_failed_patches_with_the_fields_read_later() -> None:
    inventory = [{"patchId": f"p{i}", "kbId": str(5040000 + i), "name": "x" * 300, "version": "1",
                  "classifications": ["Security", "Critical", "A", "B", "C", "D"], "rebootBehavior": "CanRequestReboot",
                  "installationState": state}
                 for i, state in enumerate(["Installed", "Failed", "NotSelected", "Excluded", "Pending"] * 20)]
    result = {**ok_result(), "patches": inventory}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "start_install":
            return {"state": "started", "token": "tok", "error": None}
        if call.name == "poll_install":
            return {"done": True, "result": result}
        return {"verdicts": []}

    ctx = ScriptedContext(WAVE_SPEC)
    out = drive(raw(wave_mod.wave_orchestrator), ctx, answer)
    patches = out["results"][0]["result"]["patches"]
    assert len(patches) == 40 and {p["installationState"] for p in patches} == {"Installed", "Failed"}
    assert all(set(p) == {"kbId", "name", "version", "classifications", "installationState"} for p in patches)
    assert all(len(p["name"]) == 200 and len(p["classifications"]) == 5 for p in patches)
    assert out["results"][0]["result"]["installedPatchCount"] == 1  # counts and status untouched
    # verify judges the same lean entries (a patch list is still there: detail for the verdict)
    assert named(ctx, "verify_orchestrator")[0].payload["installs"][0]["result"]["patches"] == patches


# ------------------------------------------------------------------ scheduled rings: verify in chunks
from orchestrators import run_results as run_results_mod  # noqa: E402
from orchestrators import verify as verify_mod  # noqa: E402
from tests.unit.orchestrators.test_orch_verdicts import run_spec  # noqa: E402


class IdContext(ScriptedContext):
    """Also records the instance id each sub-orchestration is started with."""

    def __init__(self, payload: Any) -> None:
        super().__init__(payload)
        self.sub_ids: list[str | None] = []

    def call_sub_orchestrator(self, name: str, payload: Any = None, instance_id: str | None = None) -> Call:
        self.sub_ids.append(instance_id)
        return super().call_sub_orchestrator(name, payload, instance_id)


def test_a_1100_vm_scheduled_ring_is_verified_in_staggered_chunks_of_at_most_500() -> None:
    vms = [vm(f"s{i:04d}") for i in range(1100)]

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "resolve_ring_members":
            return {"vms": vms}
        if call.name == "collect_run_results_arg":
            return {"results": [{"vm": v["id"], "state": "done", "result": ok_result()} for v in vms]}
        if call.name == "verify_orchestrator":
            return {"verdicts": [{"vm": v["id"], "install": "ok", "health": "healthy", "outcome": "pass",
                                  "reasons": []} for v in call.payload["vms"]]}
        return {}

    ctx = IdContext(run_spec())
    out = drive(raw(run_results_mod.run_results_orchestrator), ctx, answer)
    chunks = named(ctx, "verify_orchestrator")
    assert [len(c.payload["vms"]) for c in chunks] == [500, 500, 100]
    assert [len(c.payload["installs"]) for c in chunks] == [500, 500, 100]  # each chunk its own installs
    assert [c.payload.get("startDelaySeconds", 0) for c in chunks] == [0, 30, 60]  # 3 read bursts of 10 s each
    assert ctx.sub_ids == ["inst:verify", "inst:verify:1", "inst:verify:2"]
    assert out["counts"]["vms"] == 1100 and out["gate"]["outcome"] == "pass"
    assert len(out["healthSample"]) == 50
    ledger = named(ctx, "ledger_record_vm_results")[0].payload
    assert len(ledger["verdicts"]) == 1100


def test_verify_waits_its_start_delay_before_the_health_phases() -> None:
    spec = {"plan": PLAN, "ring": "ring1", "vms": [vm("a")], "decide": False, "startDelaySeconds": 30,
            "installs": [{"vm": vm("a")["id"], "state": "done", "result": ok_result()}]}
    first: list[float] = []

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if not first:
            first.append((ctx.current_utc_datetime - ctx_start).total_seconds())
        return {"samples": [{"vm": c["vm"]["id"], "powerState": "running", "vmAgent": "Ready", "appHealth": "Healthy",
                             "probes": [], "readError": None} for c in call.payload["checks"]]}

    ctx = ScriptedContext(spec)
    ctx_start = ctx.current_utc_datetime
    out = drive(raw(verify_mod.verify_orchestrator), ctx, answer)
    wait = plan_view_wait("ring1")
    assert first == [30 + wait]  # the wait phase starts after the delay
    assert out["verdicts"][0]["outcome"] == "pass"


def plan_view_wait(ring: str) -> float:
    from orchestrators import plan_view
    from patchrings.domain.health import HealthPolicy

    return HealthPolicy.from_dict(plan_view.effective(PLAN, ring, "health")).wait.total_seconds()
