"""The patch world: which patches an install selects, how long it takes, and what it reports.

Why: the app's gates read ``VirtualMachineInstallPatchesResult`` / ``lastPatchInstallationSummary``
and pin exactly what Ring 0 installed; so selection has to honour every installPatches parameter
the way Update Manager does, and results must be shaped exactly like the Compute spec.

SUPPORTED
* Windows: ``classificationsToInclude``, ``kbNumbersToInclude`` / ``kbNumbersToExclude``,
  ``excludeKbsRequiringReboot``, ``maxPatchPublishDate``, ``patchNameMasksToInclude`` /
  ``patchNameMasksToExclude`` (fnmatch globs on the patch title). Filters use the swagger's
  ``classificationsToInclude`` values (``Critical``, ``Security``, ``UpdateRollUp``/``UpdateRollup``,
  ``FeaturePack``, ``ServicePack``, ``Definition``, ``Tools``, ``Updates``); results carry the
  Windows Update category names as in the official examples (``Security Updates``,
  ``Critical Updates``, ``Update Rollups``, ``Definition Updates``, ...).
* Linux: ``classificationsToInclude``, ``packageNameMasksToInclude`` / ``packageNameMasksToExclude``
  as the Linux patch extension reads them (``PackageFilter``): case-sensitive globs, ``name=version``
  pins versions in *includes* only; an exclude's version part is ignored (every version of the
  package is excluded); a mask with two ``=`` is ignored. The Compute swagger's description
  "Format: packageName_packageVersion" is not what the extension parses.
* ``rebootSetting`` (``IfRequired``/``Never``/``Always`` and the service spellings),
  ``maximumDuration`` / the schedule's window: the last 10 min (Windows) / 15 min (Linux) are kept
  for the reboot; patches that do not fit stay ``Pending`` and ``maintenanceWindowExceeded`` is true.
* Faults decided by :class:`emulator.arm.faults.Faults`: failing patches, failed reboots, slow
  installs, unhealthy-after-patch.

Selection rules (our reading of the docs): a patch is a candidate when it matches the
classification list *or* an explicit include (KB number / package mask); with neither given,
every available patch is a candidate; an include list without classifications selects only the
listed patches (that is how a pinned manifest is expressed). Excludes win over includes and
produce ``Excluded``; candidates filtered out produce ``NotSelected``. Patches install in catalog
order, critical/security first.

Status: any failed patch or failed reboot → ``Failed``; pending patches left by the window →
``CompletedWithWarnings``; otherwise ``Succeeded``.

LIMITATIONS: no dependency resolution between packages, no superseded KBs, one version per
Linux package is installed per run (the newest selected one).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from emulator.arm.fleet import (
    Patch,
    Vm,
    normalize_reboot_setting,
    stable_uuid,
    windows_category_name,
    windows_classification_key,
)

__all__ = ["InstallPlan", "assessment_result", "parse_iso_duration", "plan_install", "select_patches"]

WINDOWS_REBOOT_RESERVE = timedelta(minutes=10)
LINUX_REBOOT_RESERVE = timedelta(minutes=15)
_DURATION_RE = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def parse_iso_duration(text: str) -> timedelta:
    """``PT4H`` / ``PT3H30M`` / ``P1DT2H`` → timedelta; raises ValueError on anything else."""
    match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match or text.strip().upper() in ("P", "PT"):
        raise ValueError(f"maximumDuration: {text!r} is not an ISO 8601 duration such as PT4H")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def _globs_match(masks: list[str], text: str) -> bool:
    return any(fnmatch.fnmatchcase(text.lower(), m.lower()) for m in masks)


#: architecture suffixes the Linux patch extension strips before matching a mask (PackageFilter)
_ARCH_SUFFIXES = (".x86_64", ".noarch", ".i686")


def _package_mask_match(masks: list[str], patch: Patch, *, versions: bool = True) -> bool:
    """Azure's Linux patch extension's rule (Azure/LinuxPatchExtension
    ``core/src/core_logic/PackageFilter.py``): a mask is ``name`` or ``name=version``, both parts
    case-sensitive ``fnmatch`` globs, the name also tried without its architecture suffix; a mask
    with more than one ``=`` is ignored. Version matching applies to *inclusions* only: an
    exclusion ``name=version`` excludes every version of ``name`` (the extension logs "Package
    exclusions do not support version matching"), so ``versions=False`` for excludes."""
    for mask in masks:
        parts = str(mask).split("=")
        if len(parts) > 2:
            continue
        name_mask = parts[0].strip()
        version_mask = parts[1].strip() if len(parts) == 2 else ""
        name = patch.package
        bare = next((name[: -len(s)] for s in _ARCH_SUFFIXES if name.endswith(s)), name)
        if not (fnmatch.fnmatchcase(name, name_mask) or fnmatch.fnmatchcase(bare, name_mask)):
            continue
        if versions and version_mask and not fnmatch.fnmatchcase(patch.version, version_mask):
            continue
        return True
    return False


def _kb(value: str) -> str:
    return str(value).strip().upper().removeprefix("KB")


def select_patches(vm: Vm, available: list[Patch], parameters: dict[str, Any]) -> list[tuple[Patch, str]]:
    """Each available patch with ``Selected``, ``Excluded`` or ``NotSelected``."""
    out: list[tuple[Patch, str]] = []
    if vm.os == "Windows":
        p = parameters.get("windowsParameters") or {}
        classes = {windows_classification_key(c) for c in p.get("classificationsToInclude") or []}
        kb_in = {_kb(k) for k in p.get("kbNumbersToInclude") or []}
        kb_out = {_kb(k) for k in p.get("kbNumbersToExclude") or []}
        max_date = p.get("maxPatchPublishDate")
        cutoff = datetime.fromisoformat(str(max_date).replace("Z", "+00:00")) if max_date else None
        if cutoff is not None and cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)
        name_in = list(p.get("patchNameMasksToInclude") or [])
        name_out = list(p.get("patchNameMasksToExclude") or [])
        for patch in available:
            if patch.kb_id in kb_out or _globs_match(name_out, patch.name):
                out.append((patch, "Excluded"))
                continue
            # Compute 2026-04-01 WindowsParameters: "Filters out Kbs that don't have an
            # InstallationRebootBehavior of 'NeverReboots' when this is set to true."
            if p.get("excludeKbsRequiringReboot") and patch.reboot_behavior != "NeverReboots":
                out.append((patch, "Excluded"))
                continue
            by_class = bool(classes) and any(windows_classification_key(c) in classes for c in patch.classifications)
            candidate = by_class or patch.kb_id in kb_in or (not classes and not kb_in)
            if name_in and not _globs_match(name_in, patch.name):
                candidate = False
            if cutoff is not None and patch.published > cutoff:
                candidate = False
            out.append((patch, "Selected" if candidate else "NotSelected"))
    else:
        p = parameters.get("linuxParameters") or {}
        classes = {c.lower() for c in p.get("classificationsToInclude") or []}
        pkg_in = list(p.get("packageNameMasksToInclude") or [])
        pkg_out = list(p.get("packageNameMasksToExclude") or [])
        chosen: dict[str, Patch] = {}
        states: dict[str, str] = {}
        for patch in available:
            if _package_mask_match(pkg_out, patch, versions=False):
                states[patch.key] = "Excluded"
                continue
            by_class = bool(classes) and any(c.lower() in classes for c in patch.classifications)
            candidate = by_class or _package_mask_match(pkg_in, patch) or (not classes and not pkg_in)
            states[patch.key] = "Selected" if candidate else "NotSelected"
            if candidate:
                best = chosen.get(patch.package)
                if best is None or patch.published > best.published:
                    chosen[patch.package] = patch
        for patch in available:
            state = states[patch.key]
            if state == "Selected" and chosen.get(patch.package) is not patch:
                state = "NotSelected"
            out.append((patch, state))
    order = {"Selected": 0, "Excluded": 1, "NotSelected": 1}
    return sorted(out, key=lambda item: (order[item[1]], not item[0].critical_or_security))


@dataclass
class InstallPlan:
    """A decided install: per-patch outcomes and timing; applied to the VM at ``end``."""

    vm_id: str
    activity_id: str
    start: datetime
    end: datetime
    patches: list[tuple[Patch, str]]  # final installationState per patch
    reboot_status: str
    window_exceeded: bool
    status: str
    error: dict[str, Any] | None
    becomes_unhealthy: bool = False
    recover_after_minutes: float | None = None
    maintenance_run_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def installed_keys(self) -> list[str]:
        return [p.key for p, state in self.patches if state == "Installed"]

    def result(self) -> dict[str, Any]:
        """``VirtualMachineInstallPatchesResult``."""
        return {
            "status": self.status,
            "installationActivityId": self.activity_id,
            "rebootStatus": self.reboot_status,
            "maintenanceWindowExceeded": self.window_exceeded,
            "excludedPatchCount": self.counts["Excluded"],
            "notSelectedPatchCount": self.counts["NotSelected"],
            "pendingPatchCount": self.counts["Pending"],
            "installedPatchCount": self.counts["Installed"],
            "failedPatchCount": self.counts["Failed"],
            "patches": [_detail(patch, state) for patch, state in self.patches],
            "startDateTime": _iso(self.start),
            "error": self.error,
        }

    def summary(self, *, in_progress: bool = False, now: datetime | None = None) -> dict[str, Any]:
        """``LastPatchInstallationSummary`` for the instance view."""
        if in_progress:
            return {
                "status": "InProgress",
                "installationActivityId": self.activity_id,
                "maintenanceWindowExceeded": False,
                "notSelectedPatchCount": 0,
                "excludedPatchCount": 0,
                "pendingPatchCount": 0,
                "installedPatchCount": 0,
                "failedPatchCount": 0,
                "startTime": _iso(self.start),
                "lastModifiedTime": _iso(now or self.start),
                "error": None,
            }
        return {
            "status": self.status,
            "installationActivityId": self.activity_id,
            "maintenanceWindowExceeded": self.window_exceeded,
            "notSelectedPatchCount": self.counts["NotSelected"],
            "excludedPatchCount": self.counts["Excluded"],
            "pendingPatchCount": self.counts["Pending"],
            "installedPatchCount": self.counts["Installed"],
            "failedPatchCount": self.counts["Failed"],
            "startTime": _iso(self.start),
            "lastModifiedTime": _iso(self.end),
            "error": self.error,
        }


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _result_classifications(patch: Patch) -> list[str]:
    """Results name Windows Update categories (``Security Updates``); Linux keeps its own names."""
    if patch.os == "Windows":
        return [windows_category_name(c) for c in patch.classifications]
    return list(patch.classifications)


def _detail(patch: Patch, state: str) -> dict[str, Any]:
    """``PatchInstallationDetail``."""
    return {
        "patchId": patch.patch_id,
        "name": patch.name if patch.os == "Linux" else f"{patch.name} (KB{patch.kb_id})",
        "version": patch.version,
        "kbId": patch.kb_id,
        "classifications": _result_classifications(patch),
        "installationState": state,
    }


def plan_install(
    vm: Vm,
    available: list[Patch],
    parameters: dict[str, Any],
    *,
    start: datetime,
    activity_id: str,
    duration_limit: timedelta | None,
    fails: set[str],
    slow_factor: float = 1.0,
    reboot_fails: bool = False,
    unhealthy_patches: set[str] | None = None,
    unhealthy_any: bool = False,
    reboot_minutes: float = 5.0,
    maintenance_run_id: str | None = None,
    recover_after_minutes: float | None = None,
) -> InstallPlan:
    """Decide an install: which patches install, fail or stay pending, and when it ends.

    ``fails`` holds patch keys (``KB…`` / ``pkg=ver``, or bare package names / KB numbers) that
    fail on this VM; ``duration_limit`` is maximumDuration (direct) or the window length (scheduled).
    """
    reboot_setting = normalize_reboot_setting(parameters.get("rebootSetting") or "IfRequired") or "IfRequired"
    reserve = WINDOWS_REBOOT_RESERVE if vm.os == "Windows" else LINUX_REBOOT_RESERVE
    budget = (duration_limit - reserve) if duration_limit is not None else None
    elapsed = timedelta(0)
    outcomes: list[tuple[Patch, str]] = []
    window_exceeded = False
    failed_names: list[str] = []
    fail_keys = {f.lower() for f in fails}
    for patch, selection in select_patches(vm, available, parameters):
        if selection != "Selected":
            outcomes.append((patch, selection))
            continue
        needed = timedelta(minutes=patch.minutes * slow_factor)
        if budget is not None and elapsed + needed > budget:
            window_exceeded = True
            outcomes.append((patch, "Pending"))
            continue
        elapsed += needed
        identifiers = {patch.key.lower(), patch.kb_id.lower(), patch.package.lower(), f"kb{patch.kb_id}".lower()}
        if identifiers & fail_keys:
            outcomes.append((patch, "Failed"))
            failed_names.append(patch.key)
        else:
            outcomes.append((patch, "Installed"))
    installed = [p for p, s in outcomes if s == "Installed"]
    needs_reboot = any(p.needs_reboot for p in installed)
    if reboot_setting == "Always" or (reboot_setting == "IfRequired" and needs_reboot):
        reboot_status = "Failed" if reboot_fails else "Completed"
        elapsed += timedelta(minutes=reboot_minutes)
    elif needs_reboot:
        reboot_status = "Required"
    else:
        reboot_status = "NotNeeded"
    counts = {s: 0 for s in ("Installed", "Failed", "Pending", "Excluded", "NotSelected")}
    for _, state in outcomes:
        counts[state] += 1
    error: dict[str, Any] | None = None
    if failed_names or reboot_status == "Failed":
        status = "Failed"
        details = [
            {"code": "PatchInstallationFailed", "target": name, "message": f"Failed to install {name}."}
            for name in failed_names
        ]
        if reboot_status == "Failed":
            details.append({"code": "RebootFailed", "message": "The VM did not come back after the reboot."})
        error = {
            "code": "PatchInstallationFailed" if failed_names else "RebootFailed",
            "message": f"{len(details)} error/s reported on VM '{vm.name}'.",
            "details": details,
        }
    elif window_exceeded:
        status = "CompletedWithWarnings"
    else:
        status = "Succeeded"
    unhealthy = unhealthy_patches or set()
    becomes_unhealthy = bool(installed) and (
        unhealthy_any or any({p.key.lower(), p.kb_id.lower(), p.package.lower()} & unhealthy for p in installed)
    )
    end = start + max(elapsed, timedelta(minutes=1))
    return InstallPlan(
        vm_id=vm.id,
        activity_id=activity_id,
        start=start,
        end=end,
        patches=outcomes,
        reboot_status=reboot_status,
        window_exceeded=window_exceeded,
        status=status,
        error=error,
        becomes_unhealthy=becomes_unhealthy,
        recover_after_minutes=recover_after_minutes if becomes_unhealthy else None,
        maintenance_run_id=maintenance_run_id,
        counts=counts,
    )


def assessment_result(vm: Vm, available: list[Patch], *, start: datetime, activity_id: str) -> dict[str, Any]:
    """``VirtualMachineAssessPatchesResult`` for the VM's current state."""
    critical = sum(1 for p in available if p.critical_or_security)
    return {
        "status": "Succeeded",
        "assessmentActivityId": activity_id,
        "rebootPending": False,
        "criticalAndSecurityPatchCount": critical,
        "otherPatchCount": len(available) - critical,
        "startDateTime": _iso(start),
        "availablePatches": [
            {
                "patchId": p.patch_id,
                "name": p.name if p.os == "Linux" else f"{p.name} (KB{p.kb_id})",
                "version": p.version,
                "kbId": p.kb_id,
                "classifications": _result_classifications(p),
                "rebootBehavior": p.reboot_behavior,
                "activityId": activity_id,
                "publishedDate": _iso(p.published),
                "lastModifiedDateTime": _iso(p.published),
                "assessmentState": "Available",
            }
            for p in available
        ],
        "error": None,
    }


def activity_id(*parts: str) -> str:
    return stable_uuid("activity", *parts)
