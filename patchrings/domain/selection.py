"""Which of a machine's available patches an install WOULD install (issue 9): one rule set.

Why: the dry run, the manifest diff and the operator page all have to say what a ring is about to
install. Azure decides that on the machine from the ``installPatches`` parameters the app sends
(``orchestrators.verdicts.install_parameters``: Ring 0 = the ring's classifications, includes and
excludes plus the Windows ``maxPatchPublishDate`` frozen at the rollout's start; later rings =
``Manifest.install_parameters``: empty classifications plus the pinned KBs / ``name=version``
masks). This module applies those same parameters to an assessment's ``availablePatches`` (or
Resource Graph ``patchassessmentresources`` rows), so the listing is what the install would do.

Rules (Compute ``VirtualMachineInstallPatchesParameters``, ``WindowsParameters`` /
``LinuxParameters`` in the 2026-04-01 swagger; Update Manager's "classifications or includes"
semantics as in update-manager-domain.md §6 and the staged-patching runbook the manifest follows):

* **Excludes win**: Windows ``kbNumbersToExclude``, ``patchNameMasksToExclude`` (globs on the
  title) and ``excludeKbsRequiringReboot`` (the swagger: "Filters out Kbs that don't have an
  InstallationRebootBehavior of 'NeverReboots'", so ``CanRequestReboot`` and an unknown behaviour
  are filtered too; the local simulator applies the same rule); Linux
  ``packageNameMasksToExclude`` (``name`` globs; the version part of ``name=version`` is ignored
  as Azure's Linux patch extension ignores it: every version of the package is excluded).
* A patch is a **candidate** when its classification is in ``classificationsToInclude`` **or** an
  include names it (``kbNumbersToInclude`` / ``packageNameMasksToInclude``); with neither list
  given, every available patch is a candidate. Windows ``patchNameMasksToInclude`` narrows.
* Windows ``maxPatchPublishDate``: a patch published after it is not installed.
* Linux: one version per package, the newest candidate.
* Parameters ``None`` for an OS (the manifest pins nothing for it) install nothing.

Windows classifications come in two spellings: filters (``Security``, ``UpdateRollUp``) and the
Windows Update categories results carry (``Security Updates``, ``Update Rollups``); both match.

Pure: no azure imports, no I/O.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FILTER_REASONS",
    "MAX_LISTED",
    "Selection",
    "available_of",
    "install_parameters_by_os",
    "machine_listing",
    "normalize_patch",
    "patch_key",
    "patch_label",
    "projected_manifest",
    "ring_listing_summary",
    "select_patches",
]

#: why a patch is not installed (stable codes)
FILTER_REASONS = {
    "excluded": "excluded by kbNumbersToExclude / packageNameMasksToExclude / patchNameMasksToExclude",
    "requiresReboot": "requires a reboot and excludeKbsRequiringReboot is set",
    "classification": "its classification is not in classificationsToInclude and no include names it",
    "notIncluded": "not in the include list (patchNameMasksToInclude / the pinned manifest)",
    "publishedAfterCutoff": "published after maxPatchPublishDate (the rollout's start)",
    "olderVersion": "a newer selected version of the same package installs instead",
    "nothingPinned": "the manifest pins nothing for this OS, so this machine is not patched",
}

_WINDOWS_CLASSES = {
    "critical": "critical", "critical updates": "critical",
    "security": "security", "security updates": "security",
    "updaterollup": "updaterollup", "update rollups": "updaterollup", "update rollup": "updaterollup",
    "featurepack": "featurepack", "feature packs": "featurepack", "feature pack": "featurepack",
    "servicepack": "servicepack", "service packs": "servicepack", "service pack": "servicepack",
    "definition": "definition", "definition updates": "definition",
    "tools": "tools", "updates": "updates",
}
_KB_IN_NAME = re.compile(r"\s*\(KB\d+\)\s*$", re.IGNORECASE)


def _class_key(os_name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if os_name == "Windows":
        return _WINDOWS_CLASSES.get(text, text.replace(" ", ""))
    return text


def _os(os_name: Any) -> str:
    text = str(os_name or "").lower()
    return "Windows" if text.startswith("win") else "Linux"


def _kb(value: Any) -> str:
    return str(value or "").strip().upper().removeprefix("KB")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalize_patch(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One available patch from assessPatches (``VirtualMachineSoftwarePatchProperties``) or a
    Resource Graph ``patchassessmentresources`` softwarepatches row (its ``properties``) →
    ``{name, kbId, version, classifications, rebootBehavior, publishedDate}``."""
    props = doc.get("properties") if isinstance(doc.get("properties"), Mapping) else doc
    assert isinstance(props, Mapping)
    return {
        "name": props.get("name") or props.get("patchName"),
        "kbId": _kb(props.get("kbId")) or None,
        "version": props.get("version") or None,
        "classifications": [str(c) for c in props.get("classifications") or []],
        "rebootBehavior": props.get("rebootBehavior"),
        "publishedDate": props.get("publishedDate") or props.get("publishedDateTime"),
    }


def patch_key(os_name: str, patch: Mapping[str, Any]) -> str | None:
    """The manifest's identity of a patch: Windows KB number, Linux ``name=version``."""
    if _os(os_name) == "Windows":
        return _kb(patch.get("kbId")) or None
    name = str(patch.get("name") or "").strip()
    version = str(patch.get("version") or "").strip()
    return f"{name}={version}" if name and version else None


def patch_label(os_name: str, patch: Mapping[str, Any]) -> str:
    """Short display: ``KB5048667 2026-11 Cumulative Update`` / ``openssl=3.0.2``."""
    if _os(os_name) == "Windows":
        kb = _kb(patch.get("kbId"))
        title = _KB_IN_NAME.sub("", str(patch.get("name") or "")).strip()
        return f"KB{kb} {title}".strip() if kb else title
    return patch_key(os_name, patch) or str(patch.get("name") or "")


@dataclass
class Selection:
    """The outcome for one machine: what would install, what is filtered and why."""

    os: str
    would_install: list[dict[str, Any]] = field(default_factory=list)
    filtered: list[dict[str, Any]] = field(default_factory=list)  # patch + "reason" (code)

    @property
    def available(self) -> int:
        return len(self.would_install) + len(self.filtered)

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.filtered:
            out[f["reason"]] = out.get(f["reason"], 0) + 1
        return dict(sorted(out.items()))

    def would_install_keys(self) -> list[str]:
        return [k for k in (patch_key(self.os, p) for p in self.would_install) if k]


def _globs(masks: Iterable[str], text: str) -> bool:
    return any(fnmatch.fnmatchcase(text.lower(), str(m).strip().lower()) for m in masks)


def _title_match(masks: list[str], name: str) -> bool:
    return _globs(masks, name) or _globs(masks, _KB_IN_NAME.sub("", name))


#: architecture suffixes Azure's Linux patch extension strips before matching a mask
_ARCH_SUFFIXES = (".x86_64", ".noarch", ".i686")


def _package_match(masks: Iterable[str], name: str, version: str, *, versions: bool = True) -> bool:
    """The Linux patch extension's mask rule (Azure/LinuxPatchExtension ``PackageFilter``), so a
    dry run says what Azure will do: ``name`` or ``name=version``, case-sensitive globs, the name
    also tried without its architecture suffix, a mask with two ``=`` ignored. Versions are
    matched for includes only; an exclude's version is ignored (``versions=False``): Azure
    excludes every version of the package."""
    bare = next((name[: -len(s)] for s in _ARCH_SUFFIXES if name.endswith(s)), name)
    for mask in masks:
        parts = str(mask).split("=")
        if len(parts) > 2:
            continue
        name_mask = parts[0].strip()
        if not (fnmatch.fnmatchcase(name, name_mask) or fnmatch.fnmatchcase(bare, name_mask)):
            continue
        if versions and len(parts) == 2 and parts[1].strip() \
                and not fnmatch.fnmatchcase(version, parts[1].strip()):
            continue
        return True
    return False


def _version_key(version: str) -> tuple[Any, ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|[A-Za-z]+", version))


def select_patches(os_name: Any, available: Iterable[Mapping[str, Any]],
                   parameters: Mapping[str, Any] | None) -> Selection:
    """Apply ``installPatches`` ``parameters`` (the whole body; its ``windowsParameters`` or
    ``linuxParameters`` is used) to a machine's available patches."""
    os_ = _os(os_name)
    patches = [normalize_patch(p) for p in available]
    sel = Selection(os_)
    if parameters is None:
        sel.filtered = [{**p, "reason": "nothingPinned"} for p in patches]
        return sel
    if os_ == "Windows":
        _select_windows(sel, patches, dict(parameters.get("windowsParameters") or {}))
    else:
        _select_linux(sel, patches, dict(parameters.get("linuxParameters") or {}))
    return sel


def _select_windows(sel: Selection, patches: list[dict[str, Any]], p: dict[str, Any]) -> None:
    classes = {_class_key("Windows", c) for c in p.get("classificationsToInclude") or []}
    kb_in = {_kb(k) for k in p.get("kbNumbersToInclude") or []}
    kb_out = {_kb(k) for k in p.get("kbNumbersToExclude") or []}
    name_in = [str(m) for m in p.get("patchNameMasksToInclude") or []]
    name_out = [str(m) for m in p.get("patchNameMasksToExclude") or []]
    cutoff = _time(p.get("maxPatchPublishDate"))
    for patch in patches:
        kb = patch.get("kbId") or ""
        name = str(patch.get("name") or "")
        reason: str | None = None
        if kb in kb_out or (name_out and _title_match(name_out, name)):
            reason = "excluded"
        elif p.get("excludeKbsRequiringReboot") and str(patch.get("rebootBehavior") or "").lower() != "neverreboots":
            reason = "requiresReboot"
        else:
            by_class = any(_class_key("Windows", c) in classes for c in patch["classifications"])
            if not (by_class or kb in kb_in or (not classes and not kb_in)):
                reason = "classification" if classes else "notIncluded"
            elif name_in and not _title_match(name_in, name):
                reason = "notIncluded"
            elif cutoff is not None and (published := _time(patch.get("publishedDate"))) and published > cutoff:
                reason = "publishedAfterCutoff"
        if reason:
            sel.filtered.append({**patch, "reason": reason})
        else:
            sel.would_install.append(patch)


def _select_linux(sel: Selection, patches: list[dict[str, Any]], p: dict[str, Any]) -> None:
    classes = {_class_key("Linux", c) for c in p.get("classificationsToInclude") or []}
    pkg_in = [str(m) for m in p.get("packageNameMasksToInclude") or []]
    pkg_out = [str(m) for m in p.get("packageNameMasksToExclude") or []]
    candidates: list[dict[str, Any]] = []
    for patch in patches:
        name, version = str(patch.get("name") or ""), str(patch.get("version") or "")
        if _package_match(pkg_out, name, version, versions=False):
            sel.filtered.append({**patch, "reason": "excluded"})
            continue
        by_class = any(_class_key("Linux", c) in classes for c in patch["classifications"])
        if by_class or _package_match(pkg_in, name, version) or (not classes and not pkg_in):
            candidates.append(patch)
        else:
            sel.filtered.append({**patch, "reason": "classification" if classes else "notIncluded"})
    newest: dict[str, dict[str, Any]] = {}
    for patch in candidates:
        best = newest.get(str(patch.get("name")))
        if best is None or _version_key(str(patch.get("version") or "")) > _version_key(str(best.get("version") or "")):
            newest[str(patch.get("name"))] = patch
    for patch in candidates:
        if newest.get(str(patch.get("name"))) is patch:
            sel.would_install.append(patch)
        else:
            sel.filtered.append({**patch, "reason": "olderVersion"})


#: per-machine list caps in dry-run / diff outputs (orchestration payloads stay bounded)
MAX_LISTED = 20
MAX_WOULD_INSTALL = 50


def _shown(os_name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    out = {"patch": patch_label(os_name, patch), "key": patch_key(os_name, patch),
           "classifications": list(patch.get("classifications") or [])}
    if patch.get("publishedDate"):
        out["publishedDate"] = patch["publishedDate"]
    return out


def available_of(result: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``availablePatches`` of a ``VirtualMachineAssessPatchesResult`` (an old caller's ``patches``)."""
    doc = result or {}
    items = doc.get("availablePatches")
    if items is None:
        items = doc.get("patches")
    return [dict(p) for p in items or [] if isinstance(p, Mapping)]


def machine_listing(os_name: Any, available: Iterable[Mapping[str, Any]],
                    parameters: Mapping[str, Any] | None, *, max_filtered: int = MAX_LISTED,
                    max_install: int = MAX_WOULD_INSTALL) -> dict[str, Any]:
    """One machine's dry-run entry: what would install (the first ``max_install``; a machine
    rarely needs more), what is filtered (first ``max_filtered``, each with its reason code) and
    the full counts."""
    sel = select_patches(os_name, available, parameters)
    return {
        "availablePatchCount": sel.available,
        "wouldInstallCount": len(sel.would_install),
        "filteredCount": len(sel.filtered),
        "filteredByReason": sel.reasons(),
        "wouldInstall": [_shown(sel.os, p) for p in sel.would_install[:max_install]],
        "filtered": [{"patch": patch_label(sel.os, p), "reason": p["reason"]} for p in sel.filtered[:max_filtered]],
    }


def ring_listing_summary(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals of a ring's machine entries (:func:`machine_listing` plus ``assessed``/``error``) and
    the distinct patches the ring would install, each with how many machines would get it."""
    rows = list(entries)
    reasons: dict[str, int] = {}
    patches: dict[str, dict[str, Any]] = {}
    for row in rows:
        for code, n in (row.get("filteredByReason") or {}).items():
            reasons[code] = reasons.get(code, 0) + int(n)
        for p in row.get("wouldInstall") or []:
            key = str(p.get("key") or p.get("patch"))
            entry = patches.setdefault(key, {**p, "vms": 0})
            entry["vms"] += 1
    return {
        "vms": len(rows),
        "assessed": sum(1 for r in rows if r.get("assessed")),
        "availablePatches": sum(int(r.get("availablePatchCount") or 0) for r in rows),
        "wouldInstall": sum(int(r.get("wouldInstallCount") or 0) for r in rows),
        "filtered": sum(int(r.get("filteredCount") or 0) for r in rows),
        "filteredByReason": dict(sorted(reasons.items())),
        "errors": sum(1 for r in rows if r.get("error")),
        "patches": sorted(patches.values(), key=lambda p: str(p["patch"]).lower()),
    }


def install_parameters_by_os(base_install: Mapping[str, Any], *, cutoff: str | None = None,
                             manifest: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any] | None]:
    """installPatches parameters per OS, built as the rollout builds them
    (``orchestrators.verdicts.install_parameters``): with a ``manifest``, exactly its pin
    (``Manifest.install_parameters``: the ring's excludes kept, ``None`` = nothing pinned for
    that OS); otherwise the ring's own block, Windows frozen at ``cutoff`` (maxPatchPublishDate)."""
    from patchrings.domain.manifest import Manifest

    if manifest:
        pinned = Manifest.from_dict(manifest)
        return {os_name: pinned.install_parameters(os_name, base_install) for os_name in ("Windows", "Linux")}
    windows = {k: copy.deepcopy(v) for k, v in base_install.items() if k != "linuxParameters"}
    linux = {k: copy.deepcopy(v) for k, v in base_install.items() if k != "windowsParameters"}
    if cutoff:
        windows["windowsParameters"] = {**(base_install.get("windowsParameters") or {}), "maxPatchPublishDate": cutoff}
    return {"Windows": windows, "Linux": linux}


def projected_manifest(first_ring: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest Ring 0 would produce if every machine installed cleanly what its dry run
    lists (an upper bound), as a manifest dict: a dry run of a later ring given it as ``manifest``
    lists exactly what that pin would install there. ``cutoff`` is the dry run's."""
    from patchrings.domain.manifest import Manifest

    kbs: set[str] = set()
    packages: set[str] = set()
    details: dict[str, dict[str, Any]] = {}
    for vm in first_ring.get("vms") or []:
        os_name = _os(vm.get("os"))
        for p in vm.get("wouldInstall") or []:
            key = p.get("key")
            if not key:
                continue
            if os_name == "Windows":
                kbs.add(str(key))
                details.setdefault(f"KB{key}", {"title": str(p.get("patch") or ""),
                                                "classifications": list(p.get("classifications") or [])})
            else:
                packages.add(str(key))
                details.setdefault(str(key), {"classifications": list(p.get("classifications") or [])})
    return Manifest(tuple(sorted(kbs, key=lambda k: (len(k), k))), tuple(sorted(packages)),
                    cutoff=first_ring.get("cutoff"), details=details).to_dict()
