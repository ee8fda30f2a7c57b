"""Activity inputs: what an orchestrator sends today round-trips unchanged (issue 10)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patchrings.boundary import activities as b
from patchrings.boundary.codec import BoundaryInvalid, from_payload, to_payload

VM = {"id": "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
      "name": "vm1", "os": "Windows", "kind": "vm", "scheduleIssue": None, "location": "westeurope"}
ARC = {"id": "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/m1",
       "name": "m1", "os": "Linux", "kind": "arc", "agentStatus": "Connected"}
PLAN = {"name": "p", "version": 1, "rings": [{"name": "ring0"}], "hash": "abc"}
RING = {"name": "ring0", "members": {"tag": {"name": "ring", "value": "0"}}, "patching": "direct",
        "open": {"mode": "none"}}
NOW = "2026-01-01T00:00:00Z"
MANIFEST = {"hash": "m1", "windows": {"kbNumbersToInclude": ["5031356"]}}

# (dataclass, a payload as a caller sends it today)
CASES: list[tuple[type, dict[str, Any]]] = [
    (b.LoadPlanInput, {}),
    (b.LoadPlanInput, {"plan": PLAN}),
    # rollout.activity adds rolloutId; the ring is named by its document {ringSpec, ring, **extra}
    (b.ResolveMembersInput, {"rolloutId": "r1", "ringSpec": RING, "ring": "ring0"}),
    (b.ResolveMembersInput, {"rolloutId": "r1", "ringSpec": RING, "ring": "ring0", "countOnly": True}),
    (b.ResolveMembersInput, {"ringSpec": RING, "ring": "ring0", "includeHold": True}),
    (b.ResolveMembersInput, {"ringSpec": RING, "ring": "ring0"}),
    (b.StartInstallInput, {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0", "runStartedAt": NOW,
                           "now": NOW, "vm": VM, "parameters": {"rebootSetting": "IfRequired"}, "probes": []}),
    (b.StartInstallInput, {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0", "runStartedAt": None,
                           "now": NOW, "vm": ARC, "parameters": {}, "probes": [{"url": "http://x"}],
                           "resend": True}),
    (b.PollInstallInput, {"runId": "r1:ring0", "runStartedAt": NOW, "now": NOW, "vm": VM, "token": "tok"}),
    (b.PollInstallInput, {"runId": "r1:ring0", "runStartedAt": None, "now": NOW, "vm": VM, "token": None}),
    (b.StartAssessInput, {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0:assess", "vm": VM}),
    (b.PollAssessInput, {"runId": "r1:ring0:assess", "vm": VM, "token": "tok"}),
    (b.CheckHealthInput, {"vm": VM, "probes": [{"url": "http://{vmName}/health", "expectStatus": 200}]}),
    (b.CheckHealthBatchInput, {"checks": [{"vm": VM, "full": True}, {"vm": ARC, "full": False}],
                               "probes": [], "rolloutId": "r1", "ring": "ring0"}),
    (b.RetagVmsInput, {"vmIds": [VM["id"]], "tag": "ring", "value": "0", "rolloutId": "r1", "ring": "ring0"}),
    (b.RetagVmsInput, {"vmIds": [VM["id"]], "tag": "ring", "value": "0", "budgetSeconds": 30}),
    (b.GetConfigurationInput, {"rolloutId": "r1", "configurationId": "/subscriptions/s1/x/c1"}),
    (b.GetConfigurationInput, {"configurationId": "/subscriptions/s1/x/c1"}),
    (b.PinManifestInput, {"rolloutId": "r1", "configurationId": "/subscriptions/s1/x/c1", "manifest": MANIFEST}),
    (b.SetRingAssignmentInput, {"ringSpec": RING, "ring": "ring0", "present": True, "rolloutId": "r1"}),
    (b.SetRingAssignmentInput, {"ringSpec": RING, "ring": "ring0", "present": False, "rolloutId": "r1",
                                "vmIds": [VM["id"]]}),
    (b.CancelRunInput, {"rolloutId": "r1", "correlationId": "run-1"}),
    (b.CancelRunInput, {"correlationId": "run-1", "report": True, "budgetSeconds": 12.5}),
    (b.CollectRunResultsInput, {"correlationId": "run-1", "vms": [VM], "since": None, "rolloutId": "r1",
                                "ring": "ring1"}),
    (b.CollectRunResultsArgInput, {"correlationId": "run-1", "vms": [VM, ARC], "since": NOW, "rolloutId": "r1",
                                   "ring": "ring1"}),
    (b.ManifestDiffInput, {"rolloutId": "r1", "plan": PLAN, "manifest": MANIFEST, "fromRing": "ring0",
                           "now": NOW}),
    (b.ManifestDiffInput, {"rolloutId": "r1", "plan": PLAN, "manifest": None, "fromRing": "ring0", "now": NOW}),
    (b.ReadAssessmentsInput, {"vms": [ARC], "since": NOW, "rolloutId": "r1", "ring": "ring0"}),
    (b.RingComplianceInput, {"plan": PLAN, "ring": "ring0", "asOf": NOW, "unassigned": True}),
    (b.RingComplianceInput, {"ringSpec": RING, "ring": "ring1", "asOf": NOW, "unassigned": False,
                             "members": [VM]}),
    (b.LedgerRecordRolloutInput, {"rolloutId": "r1", "state": "running", "outcome": None, "initiator": "a@b",
                                  "planHash": "abc", "planName": "p", "startedAt": NOW, "at": NOW,
                                  "dryRun": False, "manifestHash": None}),
    (b.LedgerRecordRingRunInput, {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0", "state": "installing",
                                  "at": NOW, "authorised": True, "manifest": MANIFEST}),
    (b.LedgerRecordVmResultsInput, {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0",
                                    "results": [{"vm": VM["id"], "state": "done"}], "verdicts": [{"vm": VM["id"]}]}),
    (b.LedgerRecordVmResultsInput, {"rolloutId": "r1", "ring": "ring0", "runId": None, "results": [],
                                    "verdicts": []}),
    (b.LedgerRecordApprovalInput, {"rolloutId": "r1", "ring": "ring1", "manifestHash": "m1",
                                   "decision": {"approver": "a@b", "verdict": "approve"}, "outcome": "accepted",
                                   "at": NOW}),
    (b.LedgerRecordApprovalInput, {"rolloutId": "r1", "ring": "ring1", "manifestHash": None,
                                   "decisionId": "d1:refused", "decision": {}, "outcome": "refused",
                                   "reason": "why", "at": NOW}),
    (b.LedgerRecordApprovalInput, {"rolloutId": "r1", "ring": "ring1", "kind": "resume", "by": "a@b",
                                   "outcome": "refused", "reason": "why", "resumeId": None, "at": NOW}),
    (b.LedgerRecordEventInput, {"configurationId": "/c1", "eventType": "guard:allowed", "eventId": "run-1",
                                "correlationId": "run-1", "ring": "ring1", "decision": "allowed", "reason": "",
                                "guard": "g1", "at": NOW, "cancel": None, "attempts": [], "rolloutId": None}),
    (b.LedgerReadGateInput, {"correlationId": "run-1", "configurationId": "/c1", "ring": "ring1"}),
    (b.LedgerReadGateInput, {"rolloutId": "r1", "ring": "ring1", "manifestHash": "m1"}),
    (b.LedgerReadGateInput, {"rolloutId": "r1", "ring": "ring1"}),
    (b.LedgerCheckDecisionInput, {"rolloutId": "r1", "kind": "approval", "event": {"decisionId": "d1"},
                                  "at": NOW}),
    (b.LedgerRecordQuarantineInput, {"rolloutId": "r1", "ring": "ring0", "runId": None, "planName": "p",
                                     "planHash": "abc", "manifestHash": None, "manifest": None, "reason": "x",
                                     "at": NOW}),
    (b.LedgerReadQuarantineInput, {"rolloutId": "r1", "planName": "p"}),
    (b.LedgerReadQuarantineInput, {"rolloutId": "r1", "planName": "p", "release": ["r0:ring0"], "by": "a@b",
                                   "at": NOW, "reason": "released by rollout r1"}),
    (b.NotifyInput, {"kind": "halted", "id": "u1", "rolloutId": "r1", "ring": None, "severity": "error",
                     "message": "m", "data": {"x": 1}, "time": NOW}),
    (b.NotifyInput, {"kind": "legacy", "anything": {"else": [1, 2]}}),
]


@pytest.mark.parametrize(("cls", "payload"), CASES, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(CASES)])
def test_what_a_caller_sends_round_trips_unchanged(cls: type, payload: dict[str, Any]) -> None:
    typed = from_payload(cls, payload)
    assert isinstance(typed, cls)
    back = to_payload(typed)
    assert back == payload
    assert json.dumps(back, sort_keys=True) == json.dumps(payload, sort_keys=True)
    assert from_payload(cls, back) == typed


@pytest.mark.parametrize(("cls", "payload"), [(c, p) for c, p in CASES if not any(
    f.metadata.get("rest") for f in c.__dataclass_fields__.values())])
def test_without_a_rest_field_the_codec_alone_round_trips(cls: type, payload: dict[str, Any]) -> None:
    assert to_payload(from_payload(cls, payload)) == payload


def test_open_inputs_keep_their_columns_and_name_their_ids() -> None:
    row = from_payload(b.LedgerRecordRingRunInput,
                           {"rolloutId": "r1", "ring": "ring0", "runId": "r1:ring0", "state": "s", "at": NOW})
    assert (row.rollout_id, row.ring, row.run_id) == ("r1", "ring0", "r1:ring0")
    assert row.columns == {"state": "s", "at": NOW}


def test_typed_fields() -> None:
    start = from_payload(b.StartInstallInput, CASES[6][1])
    assert start.vm == VM and start.run_id == "r1:ring0" and start.resend is None
    batch = from_payload(b.CheckHealthBatchInput, {"checks": [{"vm": VM}]})
    assert batch.checks == [b.HealthCheck(vm=VM, full=True)]
    members = from_payload(b.ResolveMembersInput, {"ringSpec": RING, "ring": "ring0"})
    assert members.ring_spec == RING
    with pytest.raises(BoundaryInvalid, match="ringSpec"):  # the whole plan no longer names a ring
        from_payload(b.ResolveMembersInput, {"plan": PLAN, "ring": "ring0"})


def test_a_missing_required_key_is_named() -> None:
    with pytest.raises(BoundaryInvalid, match="runId"):
        from_payload(b.StartInstallInput, {"vm": VM})
    with pytest.raises(BoundaryInvalid, match="rolloutId"):
        from_payload(b.LedgerRecordRolloutInput, {"state": "x"})


def test_outputs_keep_the_documented_nulls() -> None:
    assert to_payload(b.StartOutput(state="refused")) == {"state": "refused", "token": None, "error": None}
    assert to_payload(b.PollOutput(done=False)) == {"done": False, "result": None, "error": None}
    assert to_payload(b.ResolveMembersOutput(vms=[VM])) == {"vms": [VM]}
