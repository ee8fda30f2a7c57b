"""The manifest from Ring 0: content, exclusions, hash stability, install/config pinning."""

from __future__ import annotations

import json

import pytest

from patchrings.domain.gates import VmVerdict
from patchrings.domain.manifest import NOTHING_KB, NOTHING_PACKAGE, Manifest, build_manifest
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


def test_manifest_holds_installed_kbs_and_name_version_pairs():
    m = build_manifest([WIN1, LIN1])
    assert m.windows_kbs == ("5034123", "5034441")
    assert m.linux_packages == ("libc6=2.35-0ubuntu3.6", "openssl=3.0.2-0ubuntu1.15")
    assert m.sources == ("vmL1", "vmW1")


def test_patch_that_failed_anywhere_is_excluded():
    m = build_manifest([WIN1, WIN2])
    assert m.windows_kbs == ("5034123",)
    assert {"patch": "KB5034441", "reason": "failed to install on vmW2"} in m.excluded


def test_everything_from_a_vm_that_broke_health_is_excluded():
    verdicts = [VmVerdict("vmL2", "ok", "unhealthy", ("health: stopped",)), VmVerdict("vmL1", "ok", "healthy")]
    m = build_manifest([LIN1, LIN2], verdicts)
    assert m.linux_packages == ("libc6=2.35-0ubuntu3.6", "openssl=3.0.2-0ubuntu1.15")
    assert m.excluded == ({"patch": "curl=7.81.0-1ubuntu1.16", "reason": "installed on vmL2, which broke health"},)
    assert "vmL2" not in m.sources


def test_failed_linux_package_is_excluded_in_every_version():
    other = {"vm": "vmL3", "os": "Linux", "result": {"patches": [patch("Failed", name="openssl", version="3.0.9")]}}
    m = build_manifest([LIN1, other])
    assert m.linux_packages == ("libc6=2.35-0ubuntu3.6",)
    assert m.excluded[0]["patch"] == "openssl (all versions)"


def test_hash_names_content_only_and_is_order_independent():
    a = build_manifest([WIN1, LIN1, LIN2])
    b = build_manifest([LIN2, LIN1, WIN1], cutoff="2026-11-16T06:00:00Z")
    assert a.hash == b.hash and len(a.hash) == 16
    assert build_manifest([WIN1, LIN1]).hash != a.hash
    # pinned value: canonical JSON of the sorted lists must not drift between releases
    assert Manifest(("5034123",), ("curl=7.81.0",)).hash == "47a7590f1d8f526a"


def test_round_trip_and_tamper_detection():
    m = build_manifest([WIN1, WIN2, LIN1], cutoff="2026-11-16T06:00:00Z")
    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Manifest.from_dict(d) == m
    d["windows"]["kbNumbers"].append("1234567")
    with pytest.raises(ValueError, match="does not match"):
        Manifest.from_dict(d)


def test_install_parameters_pin_exactly_the_manifest():
    m = build_manifest([WIN1, LIN1])
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
    m = build_manifest([LIN1])
    assert m.install_parameters("Windows", {"rebootSetting": "IfRequired"}) is None


def test_configuration_patch_pins_into_installPatches_and_detects_pinned():
    cfg = json.loads((CONTRACTS / "maintenance/examples/2025-11-01/"
                      "MaintenanceConfigurations_GetForResource_GuestOSPatchLinux.json").read_text())
    existing = cfg["responses"]["200"]["body"]["properties"]["installPatches"]
    m = build_manifest([LIN1])
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
    assert not build_manifest([WIN1]).is_pinned_in(block)


def test_empty_manifest_pins_nothing_instead_of_everything():
    m = Manifest()
    block = m.configuration_patch({"rebootSetting": "NeverReboot"})
    assert m.empty
    assert block["rebootSetting"] == "Never"
    assert block["linuxParameters"]["packageNameMasksToInclude"] == [NOTHING_PACKAGE]


def test_contract_install_result_builds_a_manifest():
    doc = json.loads((CONTRACTS / "compute/examples/2025-11-01/VirtualMachine_InstallPatches.json").read_text())
    body = doc["responses"]["200"]["body"]
    m = build_manifest([{"vm": "myVM", "os": "Windows", "result": body}])
    installed = sorted(p["kbId"] for p in body["patches"] if p["installationState"] == "Installed" and p["kbId"])
    assert sorted(m.windows_kbs) == installed
    assert m.windows_kbs
