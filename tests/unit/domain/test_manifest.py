"""The manifest from Ring 0: content, exclusions, hash stability, install/config pinning."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patchrings.domain.gates import VmVerdict
from patchrings.domain.manifest import NOTHING_KB, NOTHING_PACKAGE, Manifest, build_manifest, uncovered_vms, vm_family
from tests.contracts import CONTRACTS as SHARED_CONTRACTS

pytestmark = pytest.mark.unit

CONTRACTS = SHARED_CONTRACTS


def patch(state="Installed", kb=None, name=None, version=""):
    return {"patchId": f"id-{kb or name}", "name": name or f"Update KB{kb}", "version": version, "kbId": kb,
            "classifications": ["Security"], "installationState": state}


WIN1 = {"vm": "vmW1", "os": "Windows", "result": {"status": "Succeeded", "patches": [
    patch(kb="5034123"), patch(kb="KB5034441"), patch(state="NotSelected", kb="999")]}}
WIN2 = {"vm": "vmW2", "os": "Windows", "result": {"status": "Failed", "patches": [
    patch(kb="5034123"), patch(state="Failed", kb="5034441")]}}
LIN1 = {"vm": "vmL1", "os": "Linux", "result": {"status": "Succeeded", "patches": [
    patch(name="openssl", version="3.0.2-0ubuntu1.15"), patch(name="libc6", version="2.35-0ubuntu3.6")]}}
LIN2 = {"vm": "vmL2", "os": "Linux", "result": {"status": "Succeeded", "patches": [
    patch(name="curl", version="7.81.0-1ubuntu1.16")]}}


def build(items, **kw):
    """The manifest with each VM judged by its result's status: Succeeded passes, anything else fails."""
    verdicts = [VmVerdict(i["vm"], "ok" if (i["result"] or {}).get("status") == "Succeeded" else "failed", "healthy")
                for i in items]
    return build_manifest(items, verdicts, **kw)


def test_manifest_holds_installed_kbs_and_name_version_pairs():
    m = build([WIN1, LIN1])
    assert m.windows_kbs == ("5034123", "5034441")
    assert m.linux_packages == ("libc6=2.35-0ubuntu3.6", "openssl=3.0.2-0ubuntu1.15")
    assert m.sources == ("vmL1", "vmW1")


def test_patch_that_failed_anywhere_is_excluded():
    m = build([WIN1, WIN2])  # vmW2's install failed: it also poisons what it installed
    assert m.windows_kbs == ()
    assert {"patch": "KB5034441", "reason": "failed to install on vmW2"} in m.excluded
    assert {"patch": "KB5034123", "reason": "installed on vmW2, which install failed"} in m.excluded
    inconclusive = build_manifest([WIN1, WIN2], [VmVerdict("vmW1", "ok", "healthy"),
                                                VmVerdict("vmW2", "inconclusive", "unknown")])
    assert inconclusive.windows_kbs == ("5034123",)  # a failed patch is excluded whoever reported it
    assert {"patch": "KB5034441", "reason": "failed to install on vmW2"} in inconclusive.excluded


def test_everything_from_a_vm_that_broke_health_is_excluded():
    verdicts = [VmVerdict("vmL2", "ok", "unhealthy", ("health: stopped",)), VmVerdict("vmL1", "ok", "healthy")]
    m = build_manifest([LIN1, LIN2], verdicts)  # explicit verdicts
    assert m.linux_packages == ("libc6=2.35-0ubuntu3.6", "openssl=3.0.2-0ubuntu1.15")
    assert m.excluded == ({"patch": "curl=7.81.0-1ubuntu1.16", "reason": "installed on vmL2, which broke health"},)
    assert "vmL2" not in m.sources


def test_failed_linux_package_is_excluded_in_every_version():
    other = {"vm": "vmL3", "os": "Linux", "result": {"patches": [patch("Failed", name="openssl", version="3.0.9")]}}
    m = build([LIN1, other])
    assert m.linux_packages == ("libc6=2.35-0ubuntu3.6",)
    assert m.excluded[0]["patch"] == "openssl (all versions)"


def test_hash_names_content_only_and_is_order_independent():
    a = build([WIN1, LIN1, LIN2])
    b = build([LIN2, LIN1, WIN1], cutoff="2026-11-16T06:00:00Z")
    assert a.hash == b.hash and len(a.hash) == 16
    assert build([WIN1, LIN1]).hash != a.hash
    # pinned value: canonical JSON of the sorted lists must not drift between releases
    assert Manifest(("5034123",), ("curl=7.81.0",)).hash == "47a7590f1d8f526a"


def test_round_trip_and_tamper_detection():
    m = build([WIN1, WIN2, LIN1], cutoff="2026-11-16T06:00:00Z")
    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Manifest.from_dict(d) == m
    d["windows"]["kbNumbers"].append("1234567")
    with pytest.raises(ValueError, match="does not match"):
        Manifest.from_dict(d)


def test_install_parameters_pin_exactly_the_manifest():
    m = build([WIN1, LIN1])
    base = {"rebootSetting": "RebootIfRequired", "maximumDuration": "PT2H",
            "windowsParameters": {"classificationsToInclude": ["Critical"], "kbNumbersToExclude": ["111"]}}
    w = m.install_parameters("Windows", base)
    assert w == {"rebootSetting": "IfRequired", "maximumDuration": "PT2H",
                 "windowsParameters": {"classificationsToInclude": [],  # includes add to classifications
                                       "kbNumbersToInclude": ["5034123", "5034441"], "kbNumbersToExclude": ["111"]}}
    lin = m.install_parameters("Linux", base)
    assert lin["linuxParameters"]["packageNameMasksToInclude"] == list(m.linux_packages)
    assert "windowsParameters" not in lin
    assert "maxPatchPublishDate" not in json.dumps(w)


def test_install_parameters_refuse_an_empty_pin():
    m = build([LIN1])
    assert m.install_parameters("Windows", {"rebootSetting": "IfRequired"}) is None


def test_configuration_patch_pins_into_installPatches_and_detects_pinned():
    cfg = json.loads((CONTRACTS / "maintenance/examples/2025-11-01/"
                      "MaintenanceConfigurations_GetForResource_GuestOSPatchLinux.json").read_text())
    existing = cfg["responses"]["200"]["body"]["properties"]["installPatches"]
    m = build([LIN1])
    block = m.configuration_patch(existing)
    assert block["linuxParameters"]["packageNameMasksToInclude"] == list(m.linux_packages)
    assert block["windowsParameters"]["kbNumbersToInclude"] == [NOTHING_KB]
    assert block["rebootSetting"] in ("IfRequired", "Never", "Always")
    assert block["linuxParameters"]["classificationsToInclude"] == []
    assert block["windowsParameters"]["classificationsToInclude"] == []
    assert m.is_pinned_in(block)
    widened = json.loads(json.dumps(block))
    widened["linuxParameters"]["classificationsToInclude"] = ["Security"]
    assert not m.is_pinned_in(widened)  # a classification would install more than the pin
    assert not m.is_pinned_in(existing)
    assert not build([WIN1]).is_pinned_in(block)


def test_empty_manifest_pins_nothing_instead_of_everything():
    m = Manifest()
    block = m.configuration_patch({"rebootSetting": "NeverReboot"})
    assert m.empty
    assert block["rebootSetting"] == "Never"
    assert block["linuxParameters"]["packageNameMasksToInclude"] == [NOTHING_PACKAGE]


def test_contract_install_result_builds_a_manifest():
    doc = json.loads((CONTRACTS / "compute/examples/2025-11-01/VirtualMachine_InstallPatches.json").read_text())
    body = doc["responses"]["200"]["body"]
    m = build([{"vm": "myVM", "os": "Windows", "result": body}])
    installed = sorted(p["kbId"] for p in body["patches"] if p["installationState"] == "Installed" and p["kbId"])
    assert sorted(m.windows_kbs) == installed
    assert m.windows_kbs


# ----------------------------------------------------------------------------- issue 13 items 7 and 8
def test_only_passing_vms_patches_count():
    unsure = VmVerdict("vmW1", "inconclusive", "healthy", ("install: reboot state not reported",))
    m = build_manifest([WIN1], [unsure])
    assert m.windows_kbs == () and m.sources == () and m.coverage == ()
    why = "installed only on vmW1, which was inconclusive (install: reboot state not reported)"
    assert {"patch": "KB5034123", "reason": why} in m.excluded
    unhealthy_unknown = VmVerdict("vmW1", "ok", "unknown", ("health: verification did not finish",))
    assert build_manifest([WIN1], [unhealthy_unknown]).windows_kbs == ()
    assert build_manifest([WIN1], []).windows_kbs == ()  # no verdict: nothing counts
    # an inconclusive VM does not hold a patch back that a passing VM installed cleanly
    other = {"vm": "vmW3", "os": "Windows", "result": {"status": "Succeeded", "patches": [patch(kb="5034123")]}}
    both = build_manifest([WIN1, other], [unsure, VmVerdict("vmW3", "ok", "healthy")])
    assert both.windows_kbs == ("5034123",) and both.sources == ("vmW3",)
    assert [e["patch"] for e in both.excluded] == ["KB5034441"]


def test_a_passing_vm_with_an_instance_view_result_contributes_no_patches():
    summary = {"vm": "vmW1", "os": "Windows",
               "result": {"status": "Succeeded", "patches": [], "source": "instanceView"}}
    m = build_manifest([summary], [VmVerdict("vmW1", "inconclusive", "healthy")])
    assert m.empty and m.sources == ()


def test_coverage_names_the_families_ring0_validated_and_later_rings_outside_it_are_refused():
    win = {**WIN1, "image": "MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition"}
    lin = {**LIN1, "image": "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2"}
    m = build([win, lin])
    assert m.coverage == (vm_family("Linux", lin["image"]), vm_family("Windows", win["image"]))
    assert Manifest.from_dict(m.to_dict()) == m and m.to_dict()["coverage"]
    ring1: list[dict[str, Any]] = [
        {"id": "w", "name": "w", "os": "Windows", "image": str(win["image"]).upper()},  # same family, any case
        {"id": "r", "name": "r", "os": "Linux", "image": "RedHat:RHEL:9-lvm-gen2"},  # never validated
        {"id": "n", "name": "n", "os": "Linux", "image": None},  # unknown image: not proven covered
    ]
    gaps = uncovered_vms(m.to_dict(), ring1)
    assert [g["vm"] for g in gaps] == ["r", "n"]
    assert "Linux/redhat:rhel:9-lvm-gen2" in gaps[0]["reason"] and "no VM that passed Ring 0" in gaps[0]["reason"]
    windows_only = build([win])
    assert [g["vm"] for g in uncovered_vms(windows_only, ring1)] == ["r", "n"]
    linux_vm = {"id": "l", "os": "Linux", "image": lin["image"]}
    assert uncovered_vms(windows_only, [linux_vm])[0]["family"].startswith("Linux")


def test_manifest_describes_each_entry_and_the_hash_ignores_descriptions():
    """Issue 9: titles and classifications per KB, name=version per package; same hash as without them."""
    from patchrings.domain.manifest import manifest_lines

    m = build([WIN1, LIN1, {**WIN2, "vm": "vmW3"}])  # vmW3 failed: none of its KBs is described
    d = m.to_dict()
    assert m.windows_kbs == () and m.linux_packages == ("libc6=2.35-0ubuntu3.6", "openssl=3.0.2-0ubuntu1.15")
    assert d["details"] == {
        "libc6=2.35-0ubuntu3.6": {"name": "libc6", "version": "2.35-0ubuntu3.6", "classifications": ["Security"]},
        "openssl=3.0.2-0ubuntu1.15": {"name": "openssl", "version": "3.0.2-0ubuntu1.15",
                                      "classifications": ["Security"]},
    }
    bare = Manifest(m.windows_kbs, m.linux_packages)
    assert bare.hash == m.hash  # details are not hashed: the pinned lists alone name the content
    assert Manifest.from_dict(d) == m and Manifest.from_dict(d).details == d["details"]
    assert manifest_lines(bare) == ["libc6=2.35-0ubuntu3.6", "openssl=3.0.2-0ubuntu1.15"]
    w = build([WIN1]).to_dict()
    assert w["details"]["KB5034441"] == {"title": "Update KBKB5034441", "classifications": ["Security"]}
    assert manifest_lines(w) == ["KB5034123 Update KB5034123 [Security]", "KB5034441 Update KBKB5034441 [Security]"]
