"""Issue 11 in the direct ring: learned install durations reach the next wave; waves hand on
lean per-VM results (manifest-relevant patches only)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators import ring_direct as ring_direct_mod
from orchestrators import wave as wave_mod
from tests.unit.orchestrators.test_orch_verdicts import (
    RING0,
    RING1,
    WAVE_SPEC,
    ActivityFailed,
    Call,
    ScriptedContext,
    drive,
    named,
    ok_result,
    raw,
    ring_doc,
    vm,
)

pytestmark = pytest.mark.unit


def wave_answer(part: list[dict[str, Any]], verdicts: list[dict[str, Any]], payload: dict[str, Any], *,
                results: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A fake wave's answer in the real contract (issue 11, item 2): packed verdicts plus the
    bounded summary the wave itself builds (``wave.summarise``: count, sample, kept results,
    sources) from the slice ``part`` and what the ring asked (sampleSize / sourcesWanted)."""
    from orchestrators.verdicts import pack_verdicts
    from patchrings.boundary.codec import to_payload
    from patchrings.boundary.rings import WaveOutput

    packed = pack_verdicts(part, verdicts)
    keep = payload.get("keepResults") is not False and results is not None
    summary = wave_mod.summarise(part, verdicts, results if keep else None, sample_size=payload.get("sampleSize"),
                                 sources_wanted=payload.get("sourcesWanted"))
    return {**to_payload(WaveOutput(packed=True, verdicts=packed["verdicts"], passed=packed["passed"], **summary)),
            **extra}


def test_each_wave_gets_the_install_durations_the_previous_wave_saw() -> None:
    vms = [vm(f"v{i}", "Windows" if i % 2 else "Linux") for i in range(6)]
    spec = {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "runId": "r:ring0", "vms": vms,
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
    assert out["results"][0]["result"] == {"patches": patches}  # the ring (manifest) reads only the patches
    # verify judges the lean entries with their counts and status (and a patch list: detail for the verdict)
    judged = named(ctx, "verify_orchestrator")[0].payload["installs"][0]["result"]
    assert judged["patches"] == patches and judged["installedPatchCount"] == 1 and judged["status"] == "Succeeded"
    # the wave's ledger row: counts and status, the installed KBs, not the patch list
    row = named(ctx, "ledger_record_vm_results")[0].payload["results"][0]["result"]
    assert row["installedPatchCount"] == 1 and "patches" not in row and len(row["installed"]) == 20


# ------------------------------------------------------------------ scheduled rings: verify in chunks
from orchestrators import retries  # noqa: E402
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


def test_a_1100_vm_scheduled_ring_is_verified_in_staggered_chunks_that_read_their_own_members() -> None:
    """Issue 11: run_results plans the members into the ledger and holds no VM; chunks of at most
    VERIFY_CHUNK read their own slice, collect their own results (one Resource Graph query each),
    write their own rows and answer summaries."""
    from tests.unit.orchestrators.chunked import ChunkContext, with_chunks

    vms = [vm(f"s{i:04d}") for i in range(1100)]
    healthy = {"powerState": "running", "vmAgent": "Ready", "appHealth": "Healthy", "probes": [], "readError": None}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "collect_run_results_arg":
            return {"results": [{"vm": v["id"], "state": "done", "result": ok_result()} for v in call.payload["vms"]]}
        if call.name == "check_vm_health_batch":
            return {"samples": [{"vm": c["vm"]["id"], **healthy} for c in call.payload["checks"]]}
        return {"written": True}

    ctx = ChunkContext(run_spec())
    out = drive(raw(run_results_mod.run_results_orchestrator), ctx, with_chunks(answer, vms))
    size = run_results_mod.VERIFY_CHUNK
    chunks = named(ctx, "verify_orchestrator")
    sizes = [size] * (1100 // size) + ([1100 % size] if 1100 % size else [])
    assert [c.payload["members"]["count"] for c in chunks] == sizes
    assert all("vms" not in c.payload and "installs" not in c.payload for c in chunks)  # no VM in this history
    pause = int(verify_mod.BURST_PAUSE.total_seconds())
    assert [c.payload.get("startDelaySeconds", 0) for c in chunks] == [i * pause for i in range(len(sizes))]
    assert ctx.sub_ids == ["inst:verify"] + [f"inst:verify:{i}" for i in range(1, len(sizes))]
    assert [len(c.payload["vms"]) for c in named(ctx, "collect_run_results_arg")] == sizes  # a query per chunk
    assert sum(len(c.payload["results"]) for c in named(ctx, "ledger_record_vm_results")) == 1100
    assert out["counts"]["vms"] == 1100 and out["gate"]["outcome"] == "pass"
    assert out["gate"]["counts"]["passed"] == 1100
    assert len(out["healthSample"]) == 50


def test_a_verify_chunk_writes_its_rows_and_reports_a_failed_write() -> None:
    spec = {"ringSpec": RING1, "ring": "ring1", "vms": [vm("a")], "decide": False, "rolloutId": "r",
            "ledger": {"runId": "run-1"}, "pack": True,
            "installs": [{"vm": vm("a")["id"], "state": "done", "result": ok_result()}]}
    healthy = {"powerState": "running", "vmAgent": "Ready", "appHealth": "Healthy", "probes": [], "readError": None}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == "ledger_record_vm_results":
            raise ActivityFailed("table down")
        return {"samples": [{"vm": c["vm"]["id"], **healthy} for c in call.payload["checks"]]}

    ctx = ScriptedContext(spec)
    out = drive(raw(verify_mod.verify_orchestrator), ctx, answer)
    write = named(ctx, "ledger_record_vm_results")[0]
    assert write.retry is retries.WRITE and write.payload["runId"] == "run-1"
    assert write.payload["results"] == spec["installs"] and len(write.payload["verdicts"]) == 1
    assert out["ledgerError"] == "table down"
    assert out["packed"] and out["passed"] == {"ok|healthy": [0]}


def test_verify_waits_its_start_delay_before_the_health_phases() -> None:
    spec = {"ringSpec": RING1, "ring": "ring1", "vms": [vm("a")], "decide": False, "startDelaySeconds": 30,
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
    wait = health_wait("ring1")
    assert first == [30 + wait]  # the wait phase starts after the delay
    assert out["verdicts"][0]["outcome"] == "pass"


def health_wait(ring: str) -> float:
    """The ring's health wait phase (seconds), from the domain ``Ring`` of the default plan."""
    return ring_doc(ring).health.wait.total_seconds()


# ------------------------------------------------------------------ packed verdicts, continue-as-new
from orchestrators.verdicts import pack_verdicts, unpack_verdicts  # noqa: E402


def test_packed_verdicts_keep_passing_vms_as_indexes_and_unpack_to_the_same_verdicts() -> None:
    vms = [vm(f"p{i}") for i in range(5)]
    verdicts = [
        {"vm": vms[0]["id"], "name": "p0", "install": "ok", "health": "healthy", "outcome": "pass", "reasons": []},
        {"vm": vms[1]["id"], "name": "p1", "install": "failed", "health": "skipped", "outcome": "fail",
         "reasons": ["install: boom"]},
        {"vm": vms[2]["id"], "name": "p2", "install": "ok", "health": "not-needed", "outcome": "pass", "reasons": []},
        {"vm": vms[3]["id"], "name": "p3", "install": "ok", "health": "healthy", "outcome": "pass",
         "reasons": ["note"]},  # a pass with a reason stays whole
        {"vm": vms[4]["id"], "name": "p4", "install": "ok", "health": "healthy", "outcome": "pass", "reasons": []},
    ]
    packed = pack_verdicts(vms, verdicts)
    assert packed["passed"] == {"ok|healthy": [0, 4], "ok|not-needed": [2]}
    assert [v["name"] for v in packed["verdicts"]] == ["p1", "p3"]
    assert unpack_verdicts(vms, packed) == verdicts
    assert unpack_verdicts(vms, {"verdicts": verdicts}) == verdicts  # an unpacked answer is taken as it is


class CanContext(ScriptedContext):
    """Records continue_as_new (the drive loop ends when the generator returns)."""

    def __init__(self, payload: Any) -> None:
        super().__init__(payload)
        self.continued: list[Any] = []

    def continue_as_new(self, payload: Any) -> None:
        self.continued.append(payload)


def test_a_ring_continues_as_new_every_k_waves_and_ends_with_the_same_summary() -> None:
    """Issue 11 item 3: 7 waves with 3 waves per execution = 3 executions; the gate, counts,
    budget and learned durations are those of one long execution."""
    vms = [vm(f"c{i}", "Windows") for i in range(14)]  # maxConcurrency 2 -> 7 waves
    spec = {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "runId": "r:ring0", "vms": vms,
            "startedAt": "2026-11-16T06:00:00Z", "wavesPerExecution": 3, "buildManifest": True}
    bad = vms[5]["id"]

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == wave_mod.names.WAVE:
            wave_vms = call.payload["vms"]
            verdicts = [{"vm": v["id"], "name": v["name"], "install": "ok", "health": "healthy", "outcome": "pass",
                         "reasons": []} if v["id"] != bad else
                        {"vm": v["id"], "name": v["name"], "install": "inconclusive", "health": "skipped",
                         "outcome": "inconclusive", "reasons": ["install: unreadable"]} for v in wave_vms]
            return wave_answer(wave_vms, verdicts, call.payload,
                               installSeconds={"windows": 100.0 * call.payload["wave"]},
                               results=[{"vm": v["id"], "os": "Windows", "state": "done", "result": ok_result()}
                                        for v in wave_vms])
        return {}

    executions, waves_seen = 0, []
    payload: Any = spec
    out = None
    while True:
        ctx = CanContext(payload)
        out = drive(raw(ring_direct_mod.ring_direct_orchestrator), ctx, answer)
        executions += 1
        waves_seen += [w.payload["wave"] for w in named(ctx, wave_mod.names.WAVE)]
        if not ctx.continued:
            break
        assert out is None and len(ctx.continued) == 1
        payload = ctx.continued[0]
        assert payload["carry"]["runStartedAt"] == "2026-11-16T06:00:00Z"  # the run's start is kept
    assert executions == 3 and waves_seen == list(range(7))
    assert out is not None
    assert out["counts"]["vms"] == 14 and out["counts"]["skipped"] == 0
    assert out["gate"]["outcome"] == "inconclusive" and out["gate"]["counts"]["passed"] == 13
    assert out["installSeconds"] == {"windows": 600.0}
    assert len(out["manifest"]["sources"]) == 13  # the manifest saw every wave's results


def test_a_wave_of_250_vms_runs_as_three_wave_instances_side_by_side() -> None:
    import copy

    ring0 = {**copy.deepcopy(RING0), "rate": {"maxConcurrency": 250, "maxErrors": 0}}
    vms = [vm(f"b{i:03d}", "Windows" if i % 2 else "Linux") for i in range(250)]
    spec = {"rolloutId": "r", "ringSpec": ring0, "ring": "ring0", "runId": "r:ring0", "vms": vms,
            "startedAt": "2026-11-16T06:00:00Z"}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == wave_mod.names.WAVE:
            part = call.payload["vms"]
            verdicts = [{"vm": v["id"], "name": v["name"], "install": "ok", "health": "healthy", "outcome": "pass",
                         "reasons": []} for v in part]
            return {**pack_verdicts(part, verdicts), "results": [],
                    "installSeconds": {"windows": 1000.0 + len(part), "linux": 300.0}}
        return {}

    ctx = IdContext(spec)
    out = drive(raw(ring_direct_mod.ring_direct_orchestrator), ctx, answer)
    waves = named(ctx, wave_mod.names.WAVE)
    assert [len(w.payload["vms"]) for w in waves] == [100, 100, 50]
    assert ctx.sub_ids == ["inst:w0", "inst:w0.1", "inst:w0.2"]
    assert len({w.payload["deadline"] for w in waves}) == 1  # one wave: same deadline
    assert out["counts"]["vms"] == 250 and out["gate"]["outcome"] == "pass"
    assert out["installSeconds"] == {"windows": 1100.0, "linux": 300.0}  # the longest of the slices
