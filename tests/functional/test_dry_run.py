"""The dry run on the local platform lists what each ring WOULD install (issue 9), and the
``manifest_diff`` activity reads the same machines' assessments from Resource Graph.

One platform, one scenario: the functional fleet plus patches every filter removes -- a Windows
Definition update and a Linux "Other" package (classification), a KB published after the
rollout's start (Windows ``maxPatchPublishDate``), an older openssl version (newest wins).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import driver, installs

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"
KB_DEF = "2267602"
OLD_OPENSSL = "openssl=3.0.2-0ubuntu1.9"


def scenario() -> dict[str, Any]:
    doc = sc.scenario()
    doc["catalog"]["windows"].append(
        {"kb": KB_DEF, "name": "Security Intelligence Update", "classification": "Definition",
         "published": "2026-11-14T00:00:00Z", "reboot": "NeverReboots", "minutes": 1})
    doc["catalog"]["linux"] += [
        {"package": "openssl", "version": "3.0.2-0ubuntu1.9", "classification": "Security",
         "published": "2026-10-01T10:00:00Z", "reboot": "NeverReboots", "minutes": 2},
        {"package": "vim", "version": "2:8.2.3995-1ubuntu2.21", "classification": "Other",
         "published": "2026-11-01T10:00:00Z", "reboot": "NeverReboots", "minutes": 1},
    ]
    return doc


@pytest.fixture
def platform(platform_factory: Any) -> Any:
    from emulator.clock import make_clock

    clock = make_clock("skip", start=START)
    with clock.hold():
        yield platform_factory(scenario=scenario(), clock=clock)


def test_dry_run_lists_what_each_ring_would_install(platform: Any) -> None:
    p = platform
    d = driver(p)
    rid = d.start(who="dave@contoso.com", dryRun=True)
    out = d.until_done(rid).output
    assert out["state"] == "dry-run-completed", out
    assert installs(p) == []
    rings = {r["ring"]: r for r in out["rings"]}
    ring0 = rings["ring0"]
    assert ring0["basis"] == "ring rules" and ring0["cutoff"] == START
    vms = {v["name"]: v for v in ring0["vms"]}
    assert sorted(vms) == sorted(sc.RING0)

    win = vms["r0-web-1"]
    assert win["assessed"] and win["error"] is None
    assert sorted(p["key"] for p in win["wouldInstall"]) == sorted([sc.KB_OLD, sc.KB_CRIT])
    assert (win["availablePatchCount"], win["wouldInstallCount"], win["filteredCount"]) == (4, 2, 2)
    assert win["filteredByReason"] == {"classification": 1, "publishedAfterCutoff": 1}
    assert {f["reason"] for f in win["filtered"] if sc.KB_LATE in f["patch"]} == {"publishedAfterCutoff"}
    assert any(p["patch"].startswith(f"KB{sc.KB_OLD} ") and p["classifications"] == ["Security Updates"]
               for p in win["wouldInstall"])

    lin = vms["r0-app-1"]
    assert [p["key"] for p in lin["wouldInstall"]] == [sc.OPENSSL]
    assert lin["filteredByReason"] == {"classification": 1, "olderVersion": 1}
    assert {f["patch"] for f in lin["filtered"]} == {OLD_OPENSSL, "vim=2:8.2.3995-1ubuntu2.21"}

    summary = ring0["summary"]
    assert (summary["vms"], summary["assessed"], summary["errors"]) == (3, 3, 0)
    assert (summary["availablePatches"], summary["wouldInstall"], summary["filtered"]) == (11, 5, 6)
    assert {p["key"]: p["vms"] for p in summary["patches"]} == {sc.KB_OLD: 2, sc.KB_CRIT: 2, sc.OPENSSL: 1}
    # later rings: the same rules, marked as an upper bound of what the manifest will pin
    assert rings["ring1"]["basis"].startswith("ring rules (upper bound")
    assert rings["ring1"]["summary"]["wouldInstall"] == 3

    # the status shows the summaries too (what the rollout records per ring)
    status = d.api("GET", f"/api/rollouts/{rid}")
    assert status.status == 200 and status.json["state"] == "dry-run-completed"
