"""The quarantine's pure rules (issue 11, repeat harm): what a failed gate blames, what the next
Ring 0 excludes, how a release is asked for."""

from __future__ import annotations

from typing import Any

import pytest

from patchrings.domain import quarantine as q

pytestmark = pytest.mark.unit

VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/"


def row(name: str, outcome: str, installed: list[str], **result: object) -> dict[str, object]:
    return {"vm": VM + name, "name": name, "verdict": {"outcome": outcome},
            "result": {"installed": installed, **result}}


def test_named_failed_patches_win() -> None:
    rows = [row("w1", "fail", ["KB5048685"], failed=["KB5048667"], failedPatchCount=1),
            row("w2", "pass", ["KB5048667", "KB5048685"]),
            row("l1", "fail", [], failed=["openssl=3.0.2-0ubuntu1.19", "not a patch!"])]
    found = q.suspects(rows)
    assert found.kbs == ("5048667",) and found.packages == ("openssl=3.0.2-0ubuntu1.19",)
    assert found.source == "failed-patches" and found.vms == ("l1", "w1")


def test_an_unnamed_failed_patch_blames_everything_the_ring_installed() -> None:
    # w1's failed KB is not in its own installed list: the ring's installed set covers it
    rows = [row("w1", "fail", ["KB5048685"], failedPatchCount=1), row("w2", "pass", ["KB5048667", "KB5048685"])]
    found = q.suspects(rows)
    assert found.kbs == ("5048667", "5048685") and found.source == "ring-installed"


def test_a_vm_unhealthy_after_a_good_install_blames_what_it_installed() -> None:
    rows = [row("w1", "fail", ["KB5048667"]), row("w2", "pass", ["KB5048685"]),
            row("l1", "fail", ["curl=7.81.0-1ubuntu1.20"])]
    found = q.suspects(rows)
    assert found.kbs == ("5048667",) and found.packages == ("curl=7.81.0-1ubuntu1.20",)
    assert found.source == "failed-vms"


def test_the_manifest_is_the_last_resort_and_nothing_installed_is_no_entry() -> None:
    manifest = {"windows": {"kbNumbers": ["5048667"]}, "linux": {"packages": ["openssl=3"]}}
    refused = [{"vm": VM + "w1", "verdict": {"outcome": "fail"}, "result": None}]
    assert q.suspects(refused, manifest).source == "manifest"
    assert q.suspects(refused, manifest).kbs == ("5048667",)
    none = q.suspects(refused)
    assert none.empty and none.source == "none" and none.vms == ("w1",)
    # passing VMs alone blame nothing
    assert q.suspects([row("w2", "pass", ["KB1234567"])]).empty


def test_entries_exclusions_and_release() -> None:
    found = q.suspects([row("w1", "fail", ["KB5048667", "openssl=3.0.2"])])
    entry = q.new_entry(plan_name="p", plan_hash="h", rollout_id="r1", ring="ring0", found=found,
                        reason="ring ring0 failed its gate", at="2026-11-16T07:00:00Z")
    assert entry["id"] == "r1:ring0" and entry["by"] == "system:gate-failed" and entry["released"] is False
    other = {**entry, "id": "r2:ring0", "kbs": ["KB5048667", "5000001"], "packages": [], "at": "2026-11-17T07:00:00Z"}
    released = {**entry, "id": "r0:ring0", "kbs": ["9999999"], "released": True}
    assert [e["id"] for e in q.active([other, released, entry])] == ["r1:ring0", "r2:ring0"]
    assert q.exclusions([other, released, entry]) == {"kbNumbersToExclude": ["5000001", "5048667"],
                                                      "packageNameMasksToExclude": ["openssl"]}


def test_with_exclusions_keeps_the_plans_own_excludes() -> None:
    install: dict[str, Any] = {"rebootSetting": "IfRequired",
               "windowsParameters": {"classificationsToInclude": ["Security"], "kbNumbersToExclude": ["KB5048667"]},
               "linuxParameters": {"classificationsToInclude": ["Security"]}}
    out = q.with_exclusions(install, {"kbNumbersToExclude": ["5048667", "5000001"],
                                      "packageNameMasksToExclude": ["openssl=3.0.2"]})
    assert out["windowsParameters"]["kbNumbersToExclude"] == ["KB5048667", "5000001"]
    assert out["windowsParameters"]["classificationsToInclude"] == ["Security"]
    assert out["linuxParameters"]["packageNameMasksToExclude"] == ["openssl=3.0.2"]
    assert "kbNumbersToExclude" not in install["linuxParameters"] and install["windowsParameters"][
        "kbNumbersToExclude"] == ["KB5048667"]  # the input is not changed
    assert q.with_exclusions(install, {"kbNumbersToExclude": [], "packageNameMasksToExclude": []}) == install


def test_parse_release() -> None:
    assert q.parse_release(None) == ([], None)
    assert q.parse_release(["r1:ring0", "r1:ring0"]) == (["r1:ring0"], None)
    assert q.parse_release("r1:ring0")[1] and q.parse_release([""])[1] and q.parse_release(["x"] * 101)[1]


def test_the_quarantine_policy_and_the_decision_token() -> None:
    from datetime import timedelta

    assert q.QuarantinePolicy.from_dict(None) == q.QuarantinePolicy() and q.QuarantinePolicy().is_default
    waiting = q.QuarantinePolicy.from_dict({"onBadManifest": "wait", "timeout": "P2D"})
    assert waiting.wait and waiting.timeout == timedelta(days=2)
    assert waiting.to_dict() == {"onBadManifest": "wait", "timeout": "P2D"}
    one = {"id": "ro-1:ring0", "kbs": ["5048667"], "packages": []}
    two = {"id": "ro-2:ring0", "kbs": [], "packages": ["openssl=3.0.2"]}
    token = q.decision_token([one, two])
    assert token.startswith("q-") and len(token) == 14
    assert q.decision_token([two, one]) == token  # order does not matter
    assert q.decision_token([one]) != token  # another set of entries is another decision
    assert q.decision_token([{**one, "kbs": ["5048668"]}, two]) != token


def test_the_kbs_an_install_error_names_are_failed_patches() -> None:
    # a VM that retries only the patch that failed before installs nothing: its error names it
    error = {"code": "PatchInstallationFailed", "message": "1 error/s reported on VM 'w1'.",
             "details": [{"code": "PatchInstallationFailed", "message": "Failed to install KB5048667.",
                          "target": "KB5048667"}, {"message": "see KB 12 or kb99999999999 (not KBs)"}]}
    rows = [row("w1", "fail", [], failedPatchCount=1, error=error), row("w2", "pass", [])]
    found = q.suspects(rows)
    assert found.kbs == ("5048667",) and found.source == "failed-patches"
    # a passing VM's error (none here) or a failed VM without details changes nothing
    assert q.suspects([row("w1", "fail", [], failedPatchCount=1, error={"code": "X"})]).empty
