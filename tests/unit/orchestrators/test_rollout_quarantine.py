"""The rollout remembers a bad manifest (issue 11, repeat harm): a failed gate records what it
blames; the next rollout reads the plan's quarantine before Ring 0 and excludes it there only;
an unreadable quarantine installs nothing; a person's release rides in the rollout input.

Stepped with the fake context of ``test_rollout_notify`` (virtual clock, scripted answers)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators import names
from tests.unit.orchestrators.test_rollout_notify import FakeContext, handler, plan

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
