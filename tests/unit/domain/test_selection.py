"""What an install would select from a machine's available patches (issue 9): a table of cases."""

from __future__ import annotations

from typing import Any

import pytest

from patchrings.domain.manifest import Manifest
from patchrings.domain.selection import normalize_patch, patch_key, patch_label, select_patches

pytestmark = pytest.mark.unit


def win(kb: str, cls: str = "Security Updates", published: str = "2026-11-10T17:00:00Z",
        reboot: str = "NeverReboots", name: str | None = None) -> dict[str, Any]:
    return {"patchId": f"p{kb}", "name": f"{name or 'Update'} (KB{kb})", "kbId": kb, "classifications": [cls],
            "rebootBehavior": reboot, "publishedDate": published, "assessmentState": "Available"}


def lin(name: str, version: str, cls: str = "Security") -> dict[str, Any]:
    return {"patchId": f"{name}_{version}", "name": name, "version": version, "classifications": [cls]}


WIN = [win("1", "Security Updates"), win("2", "Critical Updates"), win("3", "Definition Updates"),
       win("4", "Security Updates", published="2026-11-16T09:00:00Z"),
       win("5", "Update Rollups", reboot="AlwaysRequiresReboot", name="Monthly Rollup")]
LIN = [lin("openssl", "3.0.2-0ubuntu1.19"), lin("openssl", "3.0.2-0ubuntu1.9"), lin("curl", "7.81.0", "Other"),
       lin("libc6", "2.35", "Critical")]
CS = ["Critical", "Security"]


@pytest.mark.parametrize(
    ("label", "os_name", "available", "params", "installs", "reasons"),
    [
        ("win: classifications", "Windows", WIN, {"windowsParameters": {"classificationsToInclude": CS}},
         ["1", "2", "4"], {"classification": 2}),
        ("win: publish cutoff", "Windows", WIN,
         {"windowsParameters": {"classificationsToInclude": CS, "maxPatchPublishDate": "2026-11-16T06:00:00Z"}},
         ["1", "2"], {"classification": 2, "publishedAfterCutoff": 1}),
        ("win: include adds to classifications", "Windows", WIN,
         {"windowsParameters": {"classificationsToInclude": ["Security"], "kbNumbersToInclude": ["KB3"]}},
         ["1", "3", "4"], {"classification": 2}),
        ("win: exclude wins over include", "Windows", WIN,
         {"windowsParameters": {"classificationsToInclude": CS, "kbNumbersToInclude": ["2"],
                                "kbNumbersToExclude": ["KB2", "4"]}},
         ["1"], {"classification": 2, "excluded": 2}),
        ("win: pin only (manifest)", "Windows", WIN,
         {"windowsParameters": {"classificationsToInclude": [], "kbNumbersToInclude": ["1", "5"]}},
         ["1", "5"], {"notIncluded": 3}),
        ("win: reboot exclusion", "Windows", WIN,
         {"windowsParameters": {"classificationsToInclude": ["UpdateRollUp"], "excludeKbsRequiringReboot": True}},
         [], {"classification": 4, "requiresReboot": 1}),
        ("win: reboot exclusion keeps only NeverReboots (swagger)", "Windows",
         [win("6", reboot="CanRequestReboot"), {**win("7"), "rebootBehavior": None}, win("8")],
         {"windowsParameters": {"excludeKbsRequiringReboot": True}}, ["8"], {"requiresReboot": 2}),
        ("win: nothing given = everything", "Windows", WIN, {"windowsParameters": {}},
         ["1", "2", "3", "4", "5"], {}),
        ("win: name masks", "Windows", WIN,
         {"windowsParameters": {"patchNameMasksToInclude": ["Monthly*"], "patchNameMasksToExclude": ["*KB4*"]}},
         ["5"], {"excluded": 1, "notIncluded": 3}),
        ("win: both classification spellings", "Windows", [win("7", "Update Rollups"), win("8", "UpdateRollUp")],
         {"windowsParameters": {"classificationsToInclude": ["UpdateRollup"]}}, ["7", "8"], {}),
        ("win: nothing pinned", "Windows", WIN, None, [], {"nothingPinned": 5}),
        ("lin: classifications, newest version", "Linux", LIN,
         {"linuxParameters": {"classificationsToInclude": CS}},
         ["openssl=3.0.2-0ubuntu1.19", "libc6=2.35"], {"classification": 1, "olderVersion": 1}),
        ("lin: pinned name=version (older)", "Linux", LIN,
         {"linuxParameters": {"classificationsToInclude": [],
                              "packageNameMasksToInclude": ["openssl=3.0.2-0ubuntu1.9"]}},
         ["openssl=3.0.2-0ubuntu1.9"], {"notIncluded": 3}),
        ("lin: exclude by name glob", "Linux", LIN,
         {"linuxParameters": {"classificationsToInclude": CS, "packageNameMasksToExclude": ["open*"]}},
         ["libc6=2.35"], {"classification": 1, "excluded": 2}),
        # Azure's Linux patch extension (PackageFilter) ignores the version of an exclusion:
        # every version of the package is excluded, not only the one named
        ("lin: exclude name=version excludes every version", "Linux", LIN,
         {"linuxParameters": {"classificationsToInclude": CS,
                              "packageNameMasksToExclude": ["openssl=3.0.2-0ubuntu1.9"]}},
         ["libc6=2.35"], {"classification": 1, "excluded": 2}),
        ("lin: masks are case-sensitive", "Linux", LIN,
         {"linuxParameters": {"classificationsToInclude": [], "packageNameMasksToInclude": ["OpenSSL"]}},
         [], {"notIncluded": 4}),
        ("lin: arch suffix stripped, two '=' ignored", "Linux",
         [lin("zlib.x86_64", "1.3"), lin("curl", "8.0")],
         {"linuxParameters": {"classificationsToInclude": [],
                              "packageNameMasksToInclude": ["zlib=1.3", "curl=8.0=x"]}},
         ["zlib.x86_64=1.3"], {"notIncluded": 1}),
        ("lin: include by mask besides classes", "Linux", LIN,
         {"linuxParameters": {"classificationsToInclude": ["Critical"], "packageNameMasksToInclude": ["curl"]}},
         ["curl=7.81.0", "libc6=2.35"], {"classification": 2}),
        ("lin: no publish cutoff on Linux", "Linux", [lin("zlib", "1.3")],
         {"linuxParameters": {"classificationsToInclude": CS},
          "windowsParameters": {"maxPatchPublishDate": "2000-01-01T00:00:00Z"}}, ["zlib=1.3"], {}),
    ],
)
def test_selection_table(label: str, os_name: str, available: list[dict[str, Any]], params: Any,
                         installs: list[str], reasons: dict[str, int]) -> None:
    sel = select_patches(os_name, available, params)
    assert sorted(sel.would_install_keys()) == sorted(installs), label
    assert sel.reasons() == reasons, label
    assert sel.available == len(available)


def test_manifest_install_parameters_select_exactly_the_manifest() -> None:
    """The pin the later rings get (Manifest.install_parameters) selects the manifest and nothing else."""
    m = Manifest(windows_kbs=("1", "2"), linux_packages=("openssl=3.0.2-0ubuntu1.19",))
    base = {"windowsParameters": {"classificationsToInclude": CS, "kbNumbersToExclude": ["2"]},
            "linuxParameters": {"classificationsToInclude": CS}}
    def keys(os_name: str, available: list[dict[str, Any]], params: Any) -> list[str]:
        return select_patches(os_name, available, params).would_install_keys()

    assert keys("Windows", WIN, m.install_parameters("Windows", base)) == ["1"]
    assert keys("Linux", LIN, m.install_parameters("Linux", base)) == ["openssl=3.0.2-0ubuntu1.19"]
    assert keys("Linux", LIN, Manifest(windows_kbs=("1",)).install_parameters("Linux", base)) == []


def test_resource_graph_rows_normalize_like_assessment_results() -> None:
    row = {"id": "x/softwarePatches/p1", "properties": {
        "patchName": "2026-11 Cumulative Update (KB5048667)", "kbId": "5048667",
        "classifications": ["Security Updates"], "publishedDateTime": "2026-11-10T17:00:00Z",
        "rebootBehavior": "AlwaysRequiresReboot"}}
    p = normalize_patch(row)
    assert p["kbId"] == "5048667" and p["publishedDate"] == "2026-11-10T17:00:00Z"
    assert patch_key("Windows", p) == "5048667"
    assert patch_label("Windows", p) == "KB5048667 2026-11 Cumulative Update"
    assert patch_label("Linux", lin("openssl", "3.0.2")) == "openssl=3.0.2"


def test_machine_listing_counts_everything_and_lists_a_bounded_part() -> None:
    from patchrings.domain.selection import machine_listing, ring_listing_summary

    many = [win(str(1000 + i)) for i in range(60)] + [win(str(2000 + i), "Definition Updates") for i in range(30)]
    row = machine_listing("Windows", many, {"windowsParameters": {"classificationsToInclude": CS}})
    assert (row["availablePatchCount"], row["wouldInstallCount"], row["filteredCount"]) == (90, 60, 30)
    assert len(row["wouldInstall"]) == 50 and len(row["filtered"]) == 20
    assert row["filtered"][0] == {"patch": "KB2000 Update", "reason": "classification"}
    total = ring_listing_summary([{**row, "assessed": True}, {"assessed": False, "error": {"code": "X"}}])
    assert (total["vms"], total["assessed"], total["errors"], total["wouldInstall"]) == (2, 1, 1, 60)


def test_projected_manifest_from_ring0_dry_run_pins_what_ring0_would_install() -> None:
    from patchrings.domain.selection import install_parameters_by_os, machine_listing, projected_manifest

    params = install_parameters_by_os({"windowsParameters": {"classificationsToInclude": CS},
                                       "linuxParameters": {"classificationsToInclude": CS}},
                                      cutoff="2026-11-16T06:00:00Z")
    ring0 = {"cutoff": "2026-11-16T06:00:00Z", "vms": [
        {"os": "Windows", **machine_listing("Windows", WIN, params["Windows"])},
        {"os": "Linux", **machine_listing("Linux", LIN, params["Linux"])}]}
    m = projected_manifest(ring0)
    assert m["windows"]["kbNumbers"] == ["1", "2"] and m["cutoff"] == "2026-11-16T06:00:00Z"
    assert m["linux"]["packages"] == ["libc6=2.35", "openssl=3.0.2-0ubuntu1.19"]
    assert m["details"]["KB1"]["title"] == "KB1 Update" and Manifest.from_dict(m).hash == m["hash"]
    pinned = install_parameters_by_os({}, manifest=m)
    assert select_patches("Windows", WIN, pinned["Windows"]).would_install_keys() == ["1", "2"]
