"""The manifest against what a later ring's machines would install (issue 9): pure.

For one later ring, given each member machine's latest assessment (available patches, or *not
assessed*), the ring's install block and the manifest Ring 0 validated:

* ``wouldInstall``: assessed machines the pin would patch (at least one manifest entry selected
  by ``Manifest.install_parameters`` with the ring's excludes), and ``wouldInstallPatches`` the
  (machine, patch) pairs;
* ``notInManifest``: what the ring's own rules (classifications, includes/excludes, Windows
  publish cutoff = the manifest's ``cutoff``) would select on its machines but the manifest does
  not hold -- patches Ring 0 did not prove, so the pin will not install them (a later Linux
  version of a pinned package shows up here too);
* ``inManifestNotApplicable``: manifest entries no assessed machine of the ring would install
  (not available there -- already installed or not applicable -- or excluded by the ring).

Both lists are short entries (``{"patch", "machines"}`` / ``{"patch", "reason"}``), at most
:data:`~patchrings.domain.selection.MAX_LISTED`, with their full counts beside them. A machine
without a recent assessment is counted as not assessed and never assumed clean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from patchrings.domain.manifest import Manifest, manifest_lines, normalize_kb
from patchrings.domain.selection import (
    MAX_LISTED,
    install_parameters_by_os,
    patch_key,
    patch_label,
    select_patches,
)

__all__ = ["ring_diff"]


def _os(value: Any) -> str:
    return "Windows" if str(value or "").lower().startswith("win") else "Linux"


def ring_diff(ring: str, machines: Iterable[Mapping[str, Any]], assessments: Mapping[str, Mapping[str, Any]],
              manifest: Mapping[str, Any], base_install: Mapping[str, Any]) -> dict[str, Any]:
    """One ring's diff. ``machines`` are VmRefs (``id``, ``name``, ``os``); ``assessments`` maps a
    lower-case machine id to ``{"assessed": bool, "os"?: str, "available": [patch...]}``."""
    pinned = Manifest.from_dict(manifest)
    pin = install_parameters_by_os(base_install, manifest=manifest)
    own = install_parameters_by_os(base_install, cutoff=pinned.cutoff)
    manifest_keys = {("Windows", kb) for kb in pinned.windows_kbs} | {("Linux", p) for p in pinned.linux_packages}
    members = list(machines)
    assessed = 0
    would = 0
    pairs = 0
    not_assessed: list[str] = []
    missing: dict[tuple[str, str], dict[str, Any]] = {}
    used: set[tuple[str, str]] = set()
    seen_os: set[str] = set()
    for vm in members:
        doc = assessments.get(str(vm.get("id")).lower()) or {}
        if not doc.get("assessed"):
            not_assessed.append(str(vm.get("name") or vm.get("id")))
            continue
        assessed += 1
        os_name = _os(vm.get("os") or doc.get("os"))
        seen_os.add(os_name)
        available = list(doc.get("available") or [])
        chosen = select_patches(os_name, available, pin.get(os_name))
        if chosen.would_install:
            would += 1
            pairs += len(chosen.would_install)
        used |= {(os_name, k) for k in chosen.would_install_keys()}
        for patch in select_patches(os_name, available, own.get(os_name)).would_install:
            key = patch_key(os_name, patch)
            if key is None or (os_name, key) in manifest_keys:
                continue
            entry = missing.setdefault((os_name, key), {"patch": patch_label(os_name, patch), "machines": 0})
            entry["machines"] += 1
    lines = dict(zip([("Windows", kb) for kb in pinned.windows_kbs] + [("Linux", p) for p in pinned.linux_packages],
                     manifest_lines(pinned), strict=True))
    unused = []
    for entry_key in sorted(manifest_keys - used, key=lambda k: (k[0], len(k[1]), k[1])):
        os_of, ident = entry_key
        reason = ("no assessed machine of this OS in the ring" if os_of not in seen_os
                  else "no assessed machine of the ring would install it (not available there, or excluded)")
        unused.append({"patch": lines.get(entry_key) or (f"KB{normalize_kb(ident)}" if os_of == "Windows" else ident),
                       "reason": reason})
    ranked = sorted(missing.values(), key=lambda e: (-e["machines"], str(e["patch"]).lower()))
    return {
        "ring": ring,
        "machines": len(members),
        "assessed": assessed,
        "notAssessed": len(not_assessed),
        "notAssessedMachines": sorted(not_assessed, key=str.lower)[:MAX_LISTED],
        "wouldInstall": would,
        "wouldInstallPatches": pairs,
        "notInManifest": ranked[:MAX_LISTED],
        "notInManifestCount": len(ranked),
        "inManifestNotApplicable": unused[:MAX_LISTED],
        "inManifestNotApplicableCount": len(unused),
    }
