"""The rollout remembers a bad manifest (issue 11, repeat harm): a failed gate records what it
blames; the next rollout reads the plan's quarantine before Ring 0 and excludes it there only;
an unreadable quarantine installs nothing; a person's release rides in the rollout input.

Stepped with the fake context of ``test_rollout_notify`` (virtual clock, scripted answers)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from orchestrators import names
from patchrings.domain.quarantine import decision_token
from tests.unit.orchestrators.test_rollout_notify import T0, FakeContext, handler, plan

pytestmark = pytest.mark.unit

ENTRY = {"id": "ro-old:ring0", "planName": "test", "kbs": ["5048667"], "packages": ["openssl=3.0.2"],
         "at": "2026-11-15T07:00:00Z", "released": False}
EXCLUDED = {"kbNumbersToExclude": ["5048667"], "packageNameMasksToExclude": ["openssl=3.0.2"]}


def with_quarantine(gates: dict[str, str], read: Any) -> Any:
    base = handler(gates)

    def answer(kind: str, name: str, payload: Any) -> Any:
        if name == names.LEDGER_READ_QUARANTINE:
            return read(payload)
        if name == names.LEDGER_RECORD_QUARANTINE:
            return {"written": True, "entry": {"id": f"{payload['rolloutId']}:{payload['ring']}",
                                               "kbs": ["5048667"], "packages": [], "source": "failed-vms"}}
        if name == names.LOAD_PLAN:
            doc = plan()
            doc["defaults"] = {"install": {"windowsParameters": {"classificationsToInclude": ["Security"],
                                                                 "kbNumbersToExclude": ["5000001"]}}}
            return doc
        return base(kind, name, payload)
    return answer


def calls(ctx: FakeContext, name: str) -> list[Any]:
    return [p for _, n, p in ctx.calls if n == name]


def notes(ctx: FakeContext) -> list[str]:
    return [n["text"] for n in ctx.statuses[-1]["notes"]]


def test_a_failed_gate_records_the_quarantine_with_plan_ring_and_platform_time() -> None:
    ctx = FakeContext({}, with_quarantine({"ring0": "fail"}, lambda p: {"entries": [], "exclusions": {}}), {})
    out = ctx.run()
    assert out["state"] == "halted"
    [record] = calls(ctx, names.LEDGER_RECORD_QUARANTINE)
    assert record["planName"] == "test" and record["ring"] == "ring0" and record["rolloutId"] == "ro-test"
    assert record["runId"] == "ro-test:ring0" and record["at"] == "2026-11-16T06:00:00Z"
    assert record["reason"].startswith("ring ring0 of rollout ro-test failed its gate")
    assert any("quarantined KB5048667" in t for t in notes(ctx))
    # recorded before the halt is announced
    order = [n if n != names.NOTIFY else p["kind"] for _, n, p in ctx.calls]
    assert order.index(names.LEDGER_RECORD_QUARANTINE) < order.index("rollout-halted")


def test_an_inconclusive_gate_or_a_persons_halt_quarantines_nothing() -> None:
    ctx = FakeContext({}, with_quarantine({"ring0": "inconclusive", "ring1": "pass"},
                                          lambda p: {"entries": [], "exclusions": {}}), {})
    ctx.run()
    assert calls(ctx, names.LEDGER_RECORD_QUARANTINE) == []


def test_the_next_rollout_excludes_the_quarantine_in_ring0_only() -> None:
    ctx = FakeContext({}, with_quarantine({"ring0": "pass", "ring1": "pass"},
                                          lambda p: {"entries": [ENTRY], "exclusions": EXCLUDED}), {})
    ctx.run()
    [read] = calls(ctx, names.LEDGER_READ_QUARANTINE)
    assert read == {"rolloutId": "ro-test", "planName": "test"}
    directs = calls(ctx, names.RING_DIRECT)
    ring0 = next(d for d in directs if d["ring"] == "ring0")
    # issue 10: the ring's own document (ringSpec, all ring_direct reads) carries the exclusions;
    # the whole plan no longer travels
    assert "plan" not in ring0
    install = ring0["ringSpec"]["install"]
    # the plan's own exclusion stays, the quarantine's is added, the rest of the install is kept
    assert install["windowsParameters"] == {"classificationsToInclude": ["Security"],
                                            "kbNumbersToExclude": ["5000001", "5048667"]}
    assert install["linuxParameters"]["packageNameMasksToExclude"] == ["openssl=3.0.2"]
    [diff] = calls(ctx, names.MANIFEST_DIFF)  # the plan the later rings are compared with is as loaded
    assert diff["plan"]["hash"] == "p-1" and all("install" not in r for r in diff["plan"]["rings"])
    assert any("2 quarantined patch(es) excluded (KB5048667, openssl=3.0.2)" in t for t in notes(ctx))
    rows = [p for p in calls(ctx, names.LEDGER_ROLLOUT) if p.get("quarantine")]
    assert rows and rows[-1]["quarantine"] == {"entries": ["ro-old:ring0"], "exclusions": EXCLUDED}


def test_an_unreadable_quarantine_fails_the_rollout_before_anything_is_installed() -> None:
    def down(payload: Any) -> Any:
        raise RuntimeError("table service unavailable")

    ctx = FakeContext({}, with_quarantine({"ring0": "pass"}, down), {})
    out = ctx.run()
    assert out["state"] == "failed" and "quarantine of plan test could not be read" in out["outcome"], out
    assert calls(ctx, names.RING_DIRECT) == []


def test_a_person_releases_by_the_rollout_input_a_system_start_cannot() -> None:
    seen: list[Any] = []

    def read(payload: Any) -> Any:
        seen.append(payload)
        return {"entries": [], "exclusions": {}, "released": list(payload.get("release") or []), "unknown": []}

    spec = {"initiator": "dave@contoso.com", "releaseQuarantine": ["ro-old:ring0"]}
    ctx = FakeContext(spec, with_quarantine({"ring0": "pass", "ring1": "pass"}, read), {})
    ctx.run()
    assert seen[0]["release"] == ["ro-old:ring0"] and seen[0]["by"] == "dave@contoso.com"
    assert seen[0]["at"] == "2026-11-16T06:00:00Z"
    assert any("quarantine ro-old:ring0 released by dave@contoso.com" in t for t in notes(ctx))

    seen.clear()
    spec = {"initiator": "system:maintenance-event", "releaseQuarantine": ["ro-old:ring0"]}
    ctx = FakeContext(spec, with_quarantine({"ring0": "pass", "ring1": "pass"}, read), {})
    ctx.run()
    assert "release" not in seen[0]
    assert any("releaseQuarantine needs a rollout started by a person" in t for t in notes(ctx))


def test_a_dry_run_lists_ring0_without_the_quarantine_and_releases_nothing() -> None:
    seen: list[Any] = []

    def read(payload: Any) -> Any:
        seen.append(payload)
        return {"entries": [ENTRY], "exclusions": EXCLUDED}

    spec = {"initiator": "dave@contoso.com", "dryRun": True, "releaseQuarantine": ["ro-old:ring0"]}
    ctx = FakeContext(spec, with_quarantine({}, read), {})
    out = ctx.run()
    assert out["state"] == "dry-run-completed"
    assert seen == [{"rolloutId": "ro-test", "planName": "test"}]  # no release in a dry run
    dry = {p["ring"]: p for _, n, p in ctx.calls if n == names.DRY_RUN_RING}
    install = next(r for r in dry["ring0"]["plan"]["rings"] if r["name"] == "ring0")["install"]
    assert "5048667" in install["windowsParameters"]["kbNumbersToExclude"]
    assert any("a dry run releases nothing" in t for t in notes(ctx))


# --------------------------------------------------------------------------------------------
# quarantine.onBadManifest: wait -- a person decides before Ring 0 (issue 11)

TOKEN = decision_token([ENTRY])


def waiting_plan(read: Any, check: Any = None) -> Any:
    base = with_quarantine({"ring0": "pass", "ring1": "pass"}, read)

    def answer(kind: str, name: str, payload: Any) -> Any:
        if name == names.LOAD_PLAN:
            doc = base(kind, name, payload)
            doc["quarantine"] = {"onBadManifest": "wait"}
            return doc
        if name == names.LEDGER_CHECK_DECISION and check is not None:
            return check(payload)
        return base(kind, name, payload)
    return answer


def active_read(payload: Any) -> Any:
    if payload.get("release"):
        return {"entries": [], "exclusions": {"kbNumbersToExclude": [], "packageNameMasksToExclude": []},
                "released": list(payload["release"]), "unknown": []}
    return {"entries": [ENTRY], "exclusions": EXCLUDED}


def decision(verdict: str = "approve", who: str = "alice@contoso.com", did: str = "d1", **extra: Any) -> Any:
    return {"decisionId": did, "approver": who, "ring": "ring0", "manifestHash": TOKEN, "verdict": verdict,
            "comment": "", **extra}


def ring1_approval() -> tuple[datetime, Any]:
    return (T0 + timedelta(hours=3), {"decisionId": "d-r1", "approver": "alice@contoso.com", "ring": "ring1",
                                      "manifestHash": "m-1", "verdict": "approve", "comment": ""})


def quarantine_rows(ctx: FakeContext) -> list[Any]:
    return [p for p in calls(ctx, names.LEDGER_APPROVAL) if p.get("kind") == "quarantine"]


def ring0_install(ctx: FakeContext) -> dict[str, Any]:
    [ring0] = [d for d in calls(ctx, names.RING_DIRECT) if d["ring"] == "ring0"]
    return ring0["ringSpec"]["install"]  # type: ignore[no-any-return]


class WaitingStatus:
    """The status the rollout published while it waited for the quarantine decision."""

    def __init__(self, ctx: FakeContext) -> None:
        waits = [s for s in ctx.statuses if (s.get("waitingFor") or {}).get("kind") == "quarantine"]
        assert waits, "the rollout never waited for the quarantine decision"
        self.doc = waits[-1]
        self.waiting = self.doc["waitingFor"]


def test_wait_holds_ring0_until_a_person_decides_then_installs_without_the_patches() -> None:
    events = {names.EV_APPROVAL: [(T0 + timedelta(hours=1), decision()), ring1_approval()]}
    ctx = FakeContext({"initiator": "system:maintenance-event"}, waiting_plan(active_read), events)
    out = ctx.run()
    assert out["state"] == "completed", out
    w = WaitingStatus(ctx)
    assert w.doc["state"] == "waiting" and w.waiting["what"] == "approval" and w.waiting["ring"] == "ring0"
    # what it waits for, who decides (the first manual ring's approvers), until when (its timeout)
    assert w.waiting["manifestHash"] == TOKEN and w.waiting["approvers"] == ["alice@contoso.com"]
    assert w.waiting["until"] == "2026-11-16T10:00:00Z" and w.waiting["request"]["onTimeout"] == "reject"
    assert w.waiting["quarantine"]["entries"] == ["ro-old:ring0"] and "releaseQuarantine" in w.waiting["reason"]
    assert w.waiting["approveUrl"] == "/api/rollouts/ro-test/rings/ring0/approve"
    # nothing installed before the decision; Ring 0 then excludes the quarantine
    [(at, _)] = [(t, p) for t, n, p in ctx.calls if n == names.RING_DIRECT and p["ring"] == "ring0"]
    assert at == T0 + timedelta(hours=1)
    assert ring0_install(ctx)["windowsParameters"]["kbNumbersToExclude"] == ["5000001", "5048667"]
    [row] = quarantine_rows(ctx)
    assert row["outcome"] == "accepted" and row["choice"] == "exclude" and row["manifestHash"] == TOKEN
    assert row["decision"]["approver"] == "alice@contoso.com" and row["at"] == "2026-11-16T07:00:00Z"
    [told] = [n for n in ctx.notifications() if n["kind"] == "approval-waiting" and n["ring"] == "ring0"]
    assert told["data"]["decisionKind"] == "quarantine" and told["data"]["manifestHash"] == TOKEN
    assert any("decided to install without the 2 quarantined patch(es)" in t for t in notes(ctx))


def test_a_release_decision_releases_the_entries_by_that_person_and_installs_as_the_plan_says() -> None:
    reads: list[Any] = []

    def read(payload: Any) -> Any:
        reads.append(payload)
        return active_read(payload)

    events = {names.EV_APPROVAL: [(T0 + timedelta(hours=1), decision(releaseQuarantine=["ro-old:ring0"])),
                                  ring1_approval()]}
    ctx = FakeContext({"initiator": "system:maintenance-event"}, waiting_plan(read), events)
    out = ctx.run()
    assert out["state"] == "completed", out
    assert reads[1]["release"] == ["ro-old:ring0"] and reads[1]["by"] == "alice@contoso.com"
    assert reads[1]["at"] == "2026-11-16T07:00:00Z"
    # the plan's own exclusion only: the quarantine was released
    assert ring0_install(ctx)["windowsParameters"]["kbNumbersToExclude"] == ["5000001"]
    assert "packageNameMasksToExclude" not in (ring0_install(ctx).get("linuxParameters") or {})
    [row] = quarantine_rows(ctx)
    assert row["choice"] == "release" and row["releaseQuarantine"] == ["ro-old:ring0"]
    # the check of the decision carried the release: only a release the API recorded counts
    check = [p for p in calls(ctx, names.LEDGER_CHECK_DECISION) if p["event"].get("ring") == "ring0"]
    assert check[0]["event"]["releaseQuarantine"] == ["ro-old:ring0"]
    assert any("quarantine ro-old:ring0 released by alice@contoso.com" in t for t in notes(ctx))


@pytest.mark.parametrize("late", [False, True])
def test_a_rejection_or_the_timeout_ends_the_rollout_with_nothing_installed(late: bool) -> None:
    events = {} if late else {names.EV_APPROVAL: [(T0 + timedelta(hours=1), decision("reject"))]}
    ctx = FakeContext({"initiator": "system:maintenance-event"}, waiting_plan(active_read), events)
    out = ctx.run()
    assert out["state"] == "halted" and "nothing was installed" in out["outcome"], out
    assert calls(ctx, names.RING_DIRECT) == []
    [row] = quarantine_rows(ctx)
    assert row["choice"] == "reject"
    assert row["decision"]["approver"] == ("system:timeout" if late else "alice@contoso.com")
    if late:
        assert ctx.current_utc_datetime == T0 + timedelta(hours=4)


def test_forged_unauthorised_and_self_approved_decisions_are_refused_and_recorded() -> None:
    def check(payload: Any) -> Any:
        if payload["event"]["decisionId"] == "forged":
            return {"accepted": False, "reason": "no approval 'forged' was submitted through the API"}
        return {"accepted": True, "reason": ""}

    events = {names.EV_APPROVAL: [
        (T0 + timedelta(minutes=10), decision(did="forged")),
        (T0 + timedelta(minutes=20), decision(who="mallory@contoso.com", did="m1")),
        (T0 + timedelta(minutes=30), decision(who="dave@contoso.com", did="self")),
        (T0 + timedelta(minutes=40), decision(did="bad-release", releaseQuarantine=["ro-other:ring0"])),
        (T0 + timedelta(minutes=50), decision("reject", did="reject-release", releaseQuarantine=["ro-old:ring0"])),
        (T0 + timedelta(hours=1), decision(did="ok")),
        ring1_approval()]}
    plan_with_dave = waiting_plan(active_read, check)

    def answer(kind: str, name: str, payload: Any) -> Any:
        doc = plan_with_dave(kind, name, payload)
        if name == names.LOAD_PLAN:
            doc["rings"][1]["approval"]["approvers"] = ["alice@contoso.com", "dave@contoso.com"]
        return doc

    ctx = FakeContext({"initiator": "dave@contoso.com"}, answer, events)
    out = ctx.run()
    assert out["state"] == "completed", out
    refused = [r for r in quarantine_rows(ctx) if r["outcome"] == "refused"]
    assert [r["decision"]["decisionId"] for r in refused] == ["forged", "m1", "self", "bad-release",
                                                             "reject-release"]
    assert "was submitted through the API" in refused[0]["reason"]
    assert "not an approver" in refused[1]["reason"] and "may not approve it" in refused[2]["reason"]
    assert "not asked about: ro-other:ring0" in refused[3]["reason"]
    assert "goes with approve" in refused[4]["reason"]
    [accepted] = [r for r in quarantine_rows(ctx) if r["outcome"] == "accepted"]
    assert accepted["decision"]["approver"] == "alice@contoso.com" and accepted["choice"] == "exclude"
    [(at, _)] = [(t, p) for t, n, p in ctx.calls if n == names.RING_DIRECT and p["ring"] == "ring0"]
    assert at == T0 + timedelta(hours=1)  # nothing started before the genuine decision


def test_a_halt_while_waiting_ends_the_rollout_before_ring0() -> None:
    events = {names.EV_HALT: [(T0 + timedelta(minutes=30), {"haltId": "h1", "by": "bob@contoso.com",
                                                            "reason": "incident"})]}
    ctx = FakeContext({"initiator": "system:maintenance-event"}, waiting_plan(active_read), events)
    out = ctx.run()
    assert out["state"] == "halted" and out["outcome"] == "incident", out
    assert calls(ctx, names.RING_DIRECT) == []


def test_wait_without_active_entries_or_in_a_dry_run_does_not_wait() -> None:
    nothing = waiting_plan(lambda p: {"entries": [], "exclusions": {}})
    ctx = FakeContext({"initiator": "system:maintenance-event"}, nothing, {names.EV_APPROVAL: [ring1_approval()]})
    assert ctx.run()["state"] == "completed"
    assert quarantine_rows(ctx) == [] and calls(ctx, names.RING_DIRECT)[0]["ring"] == "ring0"

    ctx = FakeContext({"initiator": "dave@contoso.com", "dryRun": True}, waiting_plan(active_read), {})
    assert ctx.run()["state"] == "dry-run-completed"
    assert any("a real run waits for a person's decision before ring ring0" in t for t in notes(ctx))


def test_the_waiting_status_stays_bounded_with_many_quarantined_patches() -> None:
    many = {"kbNumbersToExclude": [str(5000000 + i) for i in range(200)],
            "packageNameMasksToExclude": [f"pkg{i}=1.0.{i}" for i in range(200)]}
    entries = [{**ENTRY, "id": f"ro-{i:03d}:ring0", "at": f"2026-11-{i % 15 + 1:02d}T07:00:00Z"} for i in range(50)]
    ctx = FakeContext({"initiator": "system:maintenance-event"},
                      waiting_plan(lambda p: {"entries": entries, "exclusions": many}), {})
    assert ctx.run()["state"] == "halted"  # nobody decided: the timeout rejects
    shown = WaitingStatus(ctx).waiting["quarantine"]
    assert shown["entryCount"] == 50 and len(shown["entries"]) == 20 and shown["patchCount"] == 400
    assert all(len(v) == 20 for v in shown["exclusions"].values())
    assert len(json.dumps(WaitingStatus(ctx).doc)) < 10_000
