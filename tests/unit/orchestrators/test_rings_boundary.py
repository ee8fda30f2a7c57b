"""The typed inputs / outputs of the ring-level sub-orchestrations (patchrings.boundary.rings).

* the JSON each orchestration is sent (and answers) today round-trips through its dataclass
  unchanged: ``to_payload(from_payload(X, doc)) == doc``;
* a missing required key is refused naming it (``BoundaryInvalid``);
* the receivers read the ring from ``ringSpec`` (the resolved ring document; a caller sending the
  whole plan instead is refused) and hand ``ringSpec``, never the plan, to what they start.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrators import dry_run as dry_run_mod
from orchestrators import names, ring_gate
from orchestrators import ring_direct as ring_direct_mod
from orchestrators import run_results as run_results_mod
from orchestrators import verify as verify_mod
from orchestrators import wave as wave_mod
from orchestrators.verdicts import ring_of, ring_spec_from_plan
from patchrings.boundary.codec import BoundaryInvalid, from_payload, to_payload
from patchrings.boundary.rings import (
    DryRunRingInput,
    DryRunRingOutput,
    RingDirectCarry,
    RingDirectInput,
    RingDirectOutput,
    RingGateInput,
    RingGateOutput,
    RunResultsInput,
    RunResultsOutput,
    VerifyInput,
    VerifyLedger,
    VerifyOutput,
    WaveInput,
    WaveOutput,
)
from patchrings.domain.plan import Plan
from tests.unit.orchestrators.test_orch_verdicts import (
    PLAN,
    WAVE_SPEC,
    Call,
    ScriptedContext,
    drive,
    named,
    ok_result,
    raw,
    run_spec,
    vm,
)

pytestmark = pytest.mark.unit

RING0 = Plan.from_resolved(PLAN).ring("ring0").to_dict()
RING1 = Plan.from_resolved(PLAN).ring("ring1").to_dict()


T = "2026-11-16T06:00:00Z"
RUN = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc/providers/"
       "Microsoft.Maintenance/applyUpdates/20261116060000")
VERDICT = {"vm": vm("a")["id"], "name": "a", "install": "ok", "health": "healthy", "outcome": "pass", "reasons": []}
GATE = {"ring": "ring0", "outcome": "pass", "reasons": [], "counts": {"pass": 1}}

# The JSON each sender writes today (rollout -> ring_direct / run_results / ring_gate / dry_run_ring,
# ring_direct -> wave and its own next execution, wave -> verify, run_results -> verify).
INPUTS: list[tuple[type, dict[str, Any]]] = [
    (RingDirectInput, {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "runId": "r:ring0", "startedAt": T,
                       "manifest": None, "buildManifest": True, "expectedInstallSeconds": None}),
    (RingDirectInput, {"rolloutId": "r", "ringSpec": RING1, "ring": "ring1", "runId": "r:ring1", "startedAt": T,
                       "manifest": {"hash": "h", "windows": {"kbNumbers": ["5048667"]}}, "buildManifest": False,
                       "expectedInstallSeconds": {"windows": 1800.0}}),
    (RingDirectInput, {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "runId": "r:ring0", "startedAt": T,
                       "manifest": None, "buildManifest": True, "expectedInstallSeconds": None, "vms": [vm("a")],
                       "wavesPerExecution": 2, "pollSeconds": 60,
                       "carry": {"runStartedAt": T, "next": 2, "learned": {"windows": 600.0},
                                 "verdicts": {"packed": True, "verdicts": [], "passed": {"ok|healthy": [0]}},
                                 "results": [], "skipped": [], "halted": False, "vms": [vm("a")],
                                 "sample": [], "sources": [], "sourceCount": 0, "skippedCount": 0}}),
    # issue 11: the carry of a ring whose VMs stay in the ledger (plan_ring_waves): counts, no VMs
    (RingDirectInput, {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "runId": "r:ring0", "startedAt": T,
                       "manifest": None, "buildManifest": True, "expectedInstallSeconds": None,
                       "carry": {"runStartedAt": T, "next": 60, "learned": {"windows": 600.0},
                                 "verdicts": {"packed": True, "verdicts": [], "counts": {"ok|healthy": 500}},
                                 "results": [], "skipped": [], "halted": False,
                                 "plan": {"count": 10000, "waves": [50] * 200, "sliceSize": 100, "hash": "h",
                                          "byOs": {"Windows": 10000}},
                                 "sample": [vm("a")], "sources": [vm("a")["id"]], "sourceCount": 500,
                                 "skippedCount": 0}}),
    (WaveInput, {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "runId": "r:ring0", "wave": 0,
                 "vms": [vm("a")], "parameters": {"Windows": {"rebootSetting": "IfRequired"}, "Linux": None},
                 "pollSeconds": 120, "runStartedAt": T, "deadline": "2026-11-16T08:30:00Z",
                 "expectedInstallSeconds": None, "keepResults": True}),
    (WaveInput, {**WAVE_SPEC, "expectedInstallSeconds": {"windows": 600.0}, "keepResults": False}),
    (VerifyInput, {"rolloutId": "r", "ringSpec": RING0, "ring": "ring0", "vms": [vm("a")],
                   "installs": [{"vm": vm("a")["id"], "state": "done", "result": ok_result()}], "decide": False,
                   "baselines": {vm("a")["id"]: {"powerState": "running"}}}),
    (VerifyInput, {"rolloutId": "r", "ringSpec": RING1, "ring": "ring1", "vms": [vm("a")], "decide": False,
                   "pack": True, "ledger": {"runId": RUN}, "installs": [], "startDelaySeconds": 10}),
    (VerifyInput, {"ringSpec": RING0, "ring": "ring0", "vms": [vm("a")], "decide": True, "installs": []}),
    (RunResultsInput, {"rolloutId": "r", "ringSpec": RING1, "ring": "ring1", "correlationId": RUN, "since": T}),
    (RingGateInput, {"ringSpec": RING1, "ring": "ring1", "open": True, "rolloutId": "r"}),
    (RingGateInput, {"ringSpec": RING1, "ring": "ring1", "open": False, "rolloutId": "r"}),
    (DryRunRingInput, {"rolloutId": "r", "plan": PLAN, "ringSpec": RING0, "ring": "ring0"}),
    (DryRunRingInput, {"rolloutId": "r", "ringSpec": RING1, "ring": "ring1", "startedAt": T,
                       "manifest": {"hash": "h"}}),
]

# What each answers today (the fields its caller reads).
OUTPUTS: list[tuple[type, dict[str, Any]]] = [
    (RingDirectOutput, {"gate": GATE, "manifest": None, "healthSample": [vm("a")],
                        "counts": {"pass": 1, "skipped": 0, "waves": 1}, "skipped": 0,
                        "budget": {"maxErrors": 0, "errors": 0, "exceeded": False}, "halted": False,
                        "installSeconds": {"windows": 600.0}}),
    (WaveOutput, {"packed": True, "verdicts": [], "passed": {"ok|healthy": [0]},
                  "results": [{"vm": vm("a")["id"], "os": "Windows", "image": None, "state": "done",
                               "result": {"patches": []}}], "installSeconds": {"windows": 600.0}}),
    (VerifyOutput, {"verdicts": [VERDICT], "gate": None}),
    (VerifyOutput, {"verdicts": [], "gate": GATE, "ledgerError": "down", "packed": True,
                    "passed": {"ok|healthy": [0]}}),
    (RunResultsOutput, {"gate": GATE, "healthSample": [], "counts": {"pass": 0}}),
    (RingGateOutput, {"mode": "retag", "members": 5, "value": "ring1", "changed": 5, "failed": [],
                      "scheduleIssues": [], "scheduleIssueCount": 0}),
    (RingGateOutput, {"mode": "none", "members": None, "value": None, "changed": 0, "failed": []}),
    (DryRunRingOutput, {"ring": "ring0", "patching": "direct", "basis": "ring rules", "cutoff": T, "vms": [],
                        "summary": {"warnings": []}, "planner": None, "warnings": [], "compliance": {"ring": "ring0"}}),
]


@pytest.mark.parametrize(("cls", "doc"), INPUTS + OUTPUTS,
                         ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(INPUTS + OUTPUTS)])
def test_todays_json_round_trips_unchanged(cls: type, doc: dict[str, Any]) -> None:
    before = copy.deepcopy(doc)
    assert to_payload(from_payload(cls, doc)) == doc
    assert doc == before  # reading never changes the document


@pytest.mark.parametrize(("cls", "doc", "missing"), [
    (RingDirectInput, {"ringSpec": RING0}, "ring"),
    # the whole plan no longer names a ring's settings: a caller that sends it instead is refused
    (RingDirectInput, {"ring": "ring0", "plan": PLAN}, "ringSpec"),
    (WaveInput, {"ring": "ring0", "plan": PLAN}, "ringSpec"),
    (VerifyInput, {"ring": "ring0", "plan": PLAN}, "ringSpec"),
    (RunResultsInput, {"ring": "ring1", "correlationId": RUN, "plan": PLAN}, "ringSpec"),
    (RingGateInput, {"ring": "ring1", "open": True, "plan": PLAN}, "ringSpec"),
    (DryRunRingInput, {"ring": "ring0", "plan": PLAN}, "ringSpec"),
    (RunResultsInput, {"ring": "ring1", "since": T, "ringSpec": RING1}, "correlationId"),
    (RunResultsInput, {"correlationId": RUN, "ringSpec": RING1}, "ring"),
    (RingGateInput, {"ringSpec": RING1, "open": True}, "ring"),
    (DryRunRingInput, {"plan": PLAN, "ringSpec": RING0}, "ring"),
    (RingDirectInput, {"ring": "ring0", "ringSpec": RING0,
                       "carry": {"runStartedAt": T, "learned": {}, "verdicts": {},
                                                  "results": [], "skipped": [], "halted": False}}, "carry.next"),
    (RingDirectCarry, {"vms": [], "next": 1, "learned": {}, "verdicts": {}, "results": [], "skipped": [],
                       "halted": False}, "runStartedAt"),
    (RingDirectOutput, {"manifest": None}, "gate"),
    (WaveOutput, {"packed": True, "verdicts": []}, "passed"),
    (VerifyOutput, {"gate": None}, "verdicts"),
    (RunResultsOutput, {"gate": GATE, "counts": {}}, "healthSample"),
    (RingGateOutput, {"members": 1}, "mode"),
    (DryRunRingOutput, {"ring": "ring0", "basis": "x"}, "patching"),
])
def test_a_missing_required_key_is_refused_naming_it(cls: type, doc: dict[str, Any], missing: str) -> None:
    with pytest.raises(BoundaryInvalid) as caught:
        from_payload(cls, doc)
    assert caught.value.field == missing and missing in str(caught.value)


@pytest.mark.parametrize(("cls", "least"), [(WaveInput, {"ringSpec": RING0}), (VerifyInput, {"ringSpec": RING0}),
                                             (VerifyLedger, {})])
def test_inputs_without_other_required_keys_still_refuse_what_is_not_an_object(cls: type,
                                                                               least: dict[str, Any]) -> None:
    # every other key optional, as each receiver reads it (only a key written as null stays, as null)
    assert {k: v for k, v in to_payload(from_payload(cls, least)).items() if v is not None} == least
    with pytest.raises(BoundaryInvalid):
        from_payload(cls, ["not", "an", "object"])


def test_the_ring_spec_a_plan_fallback_finds_is_the_ring_document() -> None:
    assert ring_spec_from_plan(PLAN, "ring0") == RING0
    assert ring_spec_from_plan(PLAN, "ring1") == RING1
    with pytest.raises(KeyError):
        ring_spec_from_plan(PLAN, "nope")


# ------------------------------------------------------------------ receivers: ringSpec, not the plan
def _direct_answer(call: Call, ctx: ScriptedContext) -> Any:
    members = [vm("a"), vm("b"), vm("c")]
    if call.name == names.PLAN_RING_WAVES:  # issue 11: the members and waves stay in the ledger
        waves = ring_of(call.payload["ringSpec"]).rate.waves(members)
        return {"count": 3, "waves": [len(w) for w in waves], "sliceSize": call.payload["sliceSize"], "hash": "h",
                "byOs": {"Windows": 3}}
    if call.name == names.READ_WAVE_MEMBERS:
        by_id = {m["id"]: m for m in members}
        wave = ring_of(RING0).rate.waves(members)[call.payload["wave"]]
        return {"vms": [by_id[i] for i in wave]}
    if call.name == names.WAVE:  # issue 11: the wave reads its slice (members), the ring never sends it
        part = _direct_answer(Call("activity", names.READ_WAVE_MEMBERS, {"wave": call.payload["wave"]}), ctx)["vms"]
        return {"results": [{"vm": v["id"], "os": v["os"], "state": "done", "result": ok_result()} for v in part],
                "verdicts": [{**VERDICT, "vm": v["id"], "name": v["name"]} for v in part],
                "installSeconds": {"windows": 600.0}}
    return {}


def test_ring_direct_reads_ring_spec_as_it_read_the_plan_and_hands_waves_the_ring_spec() -> None:
    base = {"rolloutId": "r", "ring": "ring0", "runId": "r:ring0", "startedAt": T, "buildManifest": True}
    new = ScriptedContext({**base, "ringSpec": RING0})
    out_ring = drive(raw(ring_direct_mod.ring_direct_orchestrator), new, _direct_answer)
    assert out_ring["gate"]["outcome"] == "pass"
    assert named(new, names.PLAN_RING_WAVES)[0].payload == {"ringSpec": RING0, "ring": "ring0", "runId": "r:ring0",
                                                            "sliceSize": 100, "rolloutId": "r"}
    waves = named(new, names.WAVE)
    assert waves and all(w.payload["ringSpec"] == RING0 and "plan" not in w.payload for w in waves)


def test_wave_reads_its_probes_from_ring_spec_and_hands_verify_the_ring_spec() -> None:
    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == names.START_INSTALL:
            return {"state": "started", "token": "tok", "error": None}
        if call.name == names.POLL_INSTALL:
            return {"done": True, "result": ok_result()}
        return {"verdicts": [VERDICT]}

    new = ScriptedContext(dict(WAVE_SPEC))
    assert new.payload["ringSpec"] == RING0
    drive(raw(wave_mod.wave_orchestrator), new, answer)
    assert named(new, names.START_INSTALL)
    [verify] = named(new, names.VERIFY)
    assert verify.payload["ringSpec"] == RING0 and "plan" not in verify.payload


def test_verify_decides_from_ring_spec_as_from_the_plan() -> None:
    a = vm("a")

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        return {"samples": [{"powerState": "running", "vmAgent": "Ready", "appHealth": "Healthy", "probes": [],
                             "readError": None} for _ in call.payload["checks"]]}

    base = {"ring": "ring0", "vms": [a], "decide": True,
            "installs": [{"vm": a["id"], "state": "done", "result": ok_result()}]}
    out_ring = drive(raw(verify_mod.verify_orchestrator), ScriptedContext({**base, "ringSpec": RING0}), answer)
    assert out_ring["gate"]["outcome"] == "pass"


def test_run_results_hands_its_verify_chunks_the_ring_spec() -> None:
    from tests.unit.orchestrators.chunked import ChunkContext, with_chunks

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == names.CHECK_HEALTH_BATCH:
            return {"samples": [{"vm": c["vm"]["id"], "powerState": "running", "vmAgent": "Ready",
                                 "appHealth": "Healthy", "probes": [], "readError": None}
                                for c in call.payload["checks"]]}
        if call.name == names.COLLECT_RESULTS_ARG:
            return {"results": [{"vm": vm("a")["id"], "state": "done", "result": ok_result()}]}
        return {"written": True}

    new = ChunkContext(run_spec())
    assert new.payload["ringSpec"] == RING1
    drive(raw(run_results_mod.run_results_orchestrator), new, with_chunks(answer, [vm("a")]))
    [plan] = named(new, names.PLAN_RING_WAVES)
    assert plan.payload["ringSpec"] == run_results_mod.one_wave(RING1) and plan.payload["ring"] == "ring1"
    [chunk] = named(new, names.VERIFY)
    assert chunk.payload["ringSpec"] == RING1 and "plan" not in chunk.payload
    assert chunk.payload["ledger"] == {"runId": run_spec()["correlationId"]}


def test_ring_gate_reads_mode_and_tag_from_ring_spec() -> None:
    from tests.unit.orchestrators.chunked import ChunkContext, with_chunks

    ring = {"name": "ring1", "patching": "scheduled", "open": {"mode": "retag"},
            "members": {"tag": {"name": "patchRing", "value": "ring1", "holdValue": "ring1-hold"}}}

    def answer(call: Call, ctx: ScriptedContext) -> Any:
        return {"written": 1, "failed": []}

    ctx = ChunkContext({"ringSpec": ring, "ring": "ring1", "open": False, "rolloutId": "r"})
    out = drive(raw(ring_gate.ring_gate_orchestrator), ctx, with_chunks(answer, [vm("a")]))
    [retag] = named(ctx, names.RETAG)
    assert retag.payload["value"] == "ring1-hold" and retag.payload["tag"] == "patchRing"
    # check before act (issue 11): the activity gets the ring's rule and the direction
    assert retag.payload["memberRule"] == ring["members"] and retag.payload["opening"] is False
    assert out == {"mode": "retag", "members": 1, "value": "ring1-hold", "changed": 1, "failed": [],
                   "leftRing": [], "leftRingCount": 0}


def test_a_later_rings_dry_run_needs_only_its_ring_spec() -> None:
    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == names.RESOLVE_MEMBERS:
            return {"vms": [vm("a")]}
        if call.name == names.START_ASSESS:
            return {"state": "started", "token": "t"}
        if call.name == names.POLL_ASSESS:
            return {"done": True, "result": {"status": "Succeeded", "availablePatches": []}}
        return {"ring": "ring1", "members": 1}

    ctx = ScriptedContext({"rolloutId": "r", "ringSpec": RING1, "ring": "ring1", "startedAt": T})
    out = drive(raw(dry_run_mod.dry_run_ring_orchestrator), ctx, answer)
    assert out["ring"] == "ring1" and out["patching"] == RING1["patching"] and out["planner"] is None
    assert named(ctx, names.RESOLVE_MEMBERS)[0].payload == {"ringSpec": RING1, "ring": "ring1"}
    [compliance] = named(ctx, dry_run_mod.RING_COMPLIANCE)
    assert compliance.payload["ringSpec"] == RING1 and compliance.payload["members"] == [vm("a")]
    assert "plan" not in compliance.payload


def test_the_first_rings_dry_run_also_sends_the_plan_for_the_machines_in_no_ring() -> None:
    def answer(call: Call, ctx: ScriptedContext) -> Any:
        if call.name == names.RESOLVE_MEMBERS:
            return {"vms": [vm("a")]}
        if call.name == names.START_ASSESS:
            return {"state": "started", "token": "t"}
        if call.name == names.POLL_ASSESS:
            return {"done": True, "result": {"status": "Succeeded", "availablePatches": []}}
        return {"ring": "ring0", "members": 1}

    ctx = ScriptedContext({"rolloutId": "r", "plan": PLAN, "ringSpec": RING0, "ring": "ring0", "startedAt": T})
    out = drive(raw(dry_run_mod.dry_run_ring_orchestrator), ctx, answer)
    assert out["ring"] == "ring0" and out["planner"] is not None  # Ring 0 is direct: the planner ran
    [compliance] = named(ctx, dry_run_mod.RING_COMPLIANCE)
    assert compliance.payload["ringSpec"] == RING0 and compliance.payload["plan"] == PLAN
    assert compliance.payload["unassigned"] is True and "members" not in compliance.payload
