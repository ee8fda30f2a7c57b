"""The validated patch manifest: exactly what Ring 0 installed cleanly, pinned into later rings.

Maintenance configurations cannot take a date cutoff, so "the same patches in every ring" means
pinning an explicit list (update-manager-domain §6): Windows KB numbers in
``kbNumbersToInclude`` and Linux ``name=version`` masks in ``packageNameMasksToInclude``.

Built from Ring 0's ``installPatches`` results (``patches[]``, ``installationState == Installed``).
**Only VMs whose verdict is ``pass``** (installed cleanly *and* proved healthy) contribute
patches (issue 13 item 8); a VM with no verdict contributes nothing. Left out, conservatively,
and listed in ``excluded`` with the reason:

* a patch that **failed anywhere** in Ring 0 (``installationState == Failed`` on any VM);
* every patch installed on a VM that **broke health** or whose install failed — we cannot tell
  which of its patches did the damage, so none of them is promoted, even where it installed
  cleanly on another VM;
* a patch installed only on VMs that were **inconclusive** (or have no verdict): nothing proves
  it; it is not held against the patch when a passing VM installed it too.

``coverage`` lists the OS / image families of the passing VMs (:func:`vm_family`): a later
ring holding a family Ring 0 did not cover would be pinned to nothing (or to patches never
validated on it), so promotion refuses it unless the plan says otherwise
(:func:`uncovered_vms`).

``hash`` (short sha256 over the sorted Windows and Linux lists only) names the content, so two
rollouts that validated the same patches produce the same hash, and an approval bound to it
cannot be replayed for different content.

``details`` (issue 9) says what each entry is, so an approver reads more than a hash: keyed
``KB<n>`` for a Windows KB (``{"title", "classifications"}``, the title as the install result
names it) and ``name=version`` for a Linux package (``{"name", "version", "classifications"}``),
taken from the install results of the VMs that passed. :func:`manifest_lines` renders them.
The hash deliberately does **not** cover ``details`` (nor ``excluded``, ``sources``, ``cutoff``,
``coverage``): what gets pinned and installed is the KB and ``name=version`` lists alone, and
titles are Azure's descriptions of those; so a manifest's hash is the same whether or not its
details are known (older manifests, a re-read pin) and did not change with this addition.

Selection semantics matter here. Update Manager selects a patch when it matches the
classification list **or** an explicit include (the include lists add to the classifications;
with neither given, everything available is selected). So a pin must carry **empty**
``classificationsToInclude`` plus the include list — exactly what Microsoft field engineers'
staged-patching runbook writes (helderpinto/AzureUpdateManagerTools,
Create-StagedMaintenanceConfiguration.ps1), and what the local ARM simulator implements.

Empty lists are dangerous the other way round: no classifications and no includes means
*everything*. :func:`Manifest.install_parameters` therefore returns ``None`` for an OS with nothing
pinned (skip those VMs), and :func:`Manifest.configuration_patch` pins an impossible include
instead of an empty list (``NOTHING_KB`` / ``NOTHING_PACKAGE``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from patchrings.domain.gates import VmVerdict
from patchrings.domain.plan import normalize_reboot_setting, short_hash
from patchrings.domain.results import ci_get, installed_patches

#: pinned when an OS has no validated patches, so a maintenance configuration installs nothing
NOTHING_KB = "0000000"
NOTHING_PACKAGE = "patchrings-nothing-validated=0"


def normalize_kb(kb: Any) -> str | None:
    """``"KB5034123"`` / ``5034123`` → ``"5034123"`` (the form kbNumbersToInclude takes)."""
    if kb in (None, ""):
        return None
    text = str(kb).strip()
    if text.upper().startswith("KB"):
        text = text[2:]
    return text or None


def _os_of(item: Mapping[str, Any]) -> str:
    os_name = str(item.get("os") or item.get("osType") or "").lower()
    if os_name.startswith("win"):
        return "Windows"
    if os_name.startswith("lin"):
        return "Linux"
    return ""


def _linux_key(patch: Mapping[str, Any]) -> str | None:
    name = (patch.get("name") or "").strip()
    version = (patch.get("version") or "").strip()
    if not name or not version:
        return None
    return f"{name}={version}"


@dataclass(frozen=True)
class Manifest:
    """What later rings may install."""

    windows_kbs: tuple[str, ...] = ()
    linux_packages: tuple[str, ...] = ()
    excluded: tuple[dict[str, str], ...] = ()
    sources: tuple[str, ...] = ()
    cutoff: str | None = None
    coverage: tuple[str, ...] = ()
    #: ``KB<n>`` / ``name=version`` -> ``{title?, name?, version?, classifications}`` (not hashed)
    details: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    @property
    def content(self) -> dict[str, Any]:
        return {"windows": {"kbNumbers": list(self.windows_kbs)}, "linux": {"packages": list(self.linux_packages)}}

    @property
    def hash(self) -> str:
        return short_hash(self.content)

    @property
    def empty(self) -> bool:
        return not self.windows_kbs and not self.linux_packages

    def has(self, os_name: str) -> bool:
        return bool(self.windows_kbs if os_name.lower().startswith("win") else self.linux_packages)

    def to_dict(self) -> dict[str, Any]:
        out = self.content
        out["hash"] = self.hash
        out["excluded"] = [dict(e) for e in self.excluded]
        out["sources"] = list(self.sources)
        if self.cutoff:
            out["cutoff"] = self.cutoff
        out["coverage"] = list(self.coverage)
        out["details"] = {k: copy.deepcopy(dict(v)) for k, v in self.details.items()}
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Manifest:
        m = cls(
            windows_kbs=tuple(doc.get("windows", {}).get("kbNumbers", ())),
            linux_packages=tuple(doc.get("linux", {}).get("packages", ())),
            excluded=tuple(dict(e) for e in doc.get("excluded", ())),
            sources=tuple(doc.get("sources", ())),
            cutoff=doc.get("cutoff"),
            coverage=tuple(doc.get("coverage", ())),
            details={str(k): dict(v) for k, v in (doc.get("details") or {}).items() if isinstance(v, Mapping)}
            if isinstance(doc.get("details"), Mapping) else {},
        )
        if doc.get("hash") and doc["hash"] != m.hash:
            raise ValueError(f"manifest hash {doc['hash']} does not match its content ({m.hash})")
        return m

    def install_parameters(self, os_name: str, base_install: Mapping[str, Any]) -> dict[str, Any] | None:
        """``VirtualMachineInstallPatchesParameters`` installing exactly the manifest on one OS.

        Keeps the base's ``rebootSetting`` / ``maximumDuration`` and exclusions; classifications are
        emptied so the pin list alone decides (see module docstring). Returns ``None`` when nothing
        is pinned for that OS: the caller must not install (no includes would install everything).
        """
        params: dict[str, Any] = {
            "rebootSetting": normalize_reboot_setting(base_install.get("rebootSetting", "IfRequired")),
        }
        if base_install.get("maximumDuration"):
            params["maximumDuration"] = base_install["maximumDuration"]
        if os_name.lower().startswith("win"):
            if not self.windows_kbs:
                return None
            base = base_install.get("windowsParameters", {}) or {}
            wp: dict[str, Any] = {
                "classificationsToInclude": [],
                "kbNumbersToInclude": list(self.windows_kbs),
            }
            if base.get("kbNumbersToExclude"):
                wp["kbNumbersToExclude"] = list(base["kbNumbersToExclude"])
            if "excludeKbsRequiringReboot" in base:
                wp["excludeKbsRequiringReboot"] = bool(base["excludeKbsRequiringReboot"])
            params["windowsParameters"] = wp
        else:
            if not self.linux_packages:
                return None
            base = base_install.get("linuxParameters", {}) or {}
            lp: dict[str, Any] = {
                "classificationsToInclude": [],
                "packageNameMasksToInclude": list(self.linux_packages),
            }
            if base.get("packageNameMasksToExclude"):
                lp["packageNameMasksToExclude"] = list(base["packageNameMasksToExclude"])
            params["linuxParameters"] = lp
        return params

    def configuration_patch(self, existing_install_patches: Mapping[str, Any] | None) -> dict[str, Any]:
        """The maintenance configuration ``installPatches`` block with the manifest pinned.

        Keeps the existing reboot setting (normalised) and exclusions; empties classifications and
        replaces include lists. An OS with nothing validated gets an impossible include so it
        installs nothing.
        """
        existing = copy.deepcopy(dict(existing_install_patches or {}))
        out: dict[str, Any] = {k: v for k, v in existing.items() if k not in ("windowsParameters", "linuxParameters")}
        out["rebootSetting"] = normalize_reboot_setting(ci_get(existing, "rebootSetting") or "IfRequired")
        wexist = ci_get(existing, "windowsParameters") or {}
        lexist = ci_get(existing, "linuxParameters") or {}
        wp: dict[str, Any] = {
            "classificationsToInclude": [],
            "kbNumbersToInclude": list(self.windows_kbs) or [NOTHING_KB],
            "kbNumbersToExclude": list(ci_get(wexist, "kbNumbersToExclude") or []),
            "excludeKbsRequiringReboot": bool(ci_get(wexist, "excludeKbsRequiringReboot") or False),
        }
        lp: dict[str, Any] = {
            "classificationsToInclude": [],
            "packageNameMasksToInclude": list(self.linux_packages) or [NOTHING_PACKAGE],
            "packageNameMasksToExclude": list(ci_get(lexist, "packageNameMasksToExclude") or []),
        }
        out["windowsParameters"] = wp
        out["linuxParameters"] = lp
        return out

    def is_pinned_in(self, install_patches: Mapping[str, Any] | None) -> bool:
        """True when a configuration's ``installPatches`` already pins exactly this manifest."""
        if not install_patches:
            return False
        wp = ci_get(install_patches, "windowsParameters") or {}
        lp = ci_get(install_patches, "linuxParameters") or {}
        kbs = sorted(normalize_kb(k) or "" for k in (ci_get(wp, "kbNumbersToInclude") or []))
        pkgs = sorted(ci_get(lp, "packageNameMasksToInclude") or [])
        if ci_get(wp, "classificationsToInclude") or ci_get(lp, "classificationsToInclude"):
            return False  # classifications would add patches beyond the pin
        return kbs == sorted(list(self.windows_kbs) or [NOTHING_KB]) and pkgs == sorted(
            list(self.linux_packages) or [NOTHING_PACKAGE]
        )


@dataclass
class _Collect:
    kbs: set[str] = field(default_factory=set)
    pkgs: set[str] = field(default_factory=set)


def vm_family(os_name: Any, image: Any = None) -> str:
    """A VM's OS / image family: ``Windows`` or ``Linux``, plus ``/publisher:offer:sku`` when the
    image is known (``image`` is that string, as in ``VmRef.image``), compared case-insensitively."""
    family = _os_of({"os": os_name}) or str(os_name or "unknown OS")
    return f"{family}/{str(image).lower()}" if image else family


def build_manifest(
    install_results: Iterable[Mapping[str, Any]],
    verdicts: Iterable[VmVerdict | Mapping[str, Any]],
    *,
    cutoff: str | None = None,
) -> Manifest:
    """Build the manifest from ``[{vm, os, image?, result}]`` (``result`` a VirtualMachineInstallPatchesResult).

    ``verdicts`` (per VM) decide whose patches count: only VMs whose verdict is ``pass``. A VM
    that broke health or whose install failed poisons every patch it installed; an inconclusive
    VM (or one with no verdict) just does not count. A patch that failed on any VM is excluded.
    """
    by_vm: dict[str, VmVerdict] = {}
    for v in verdicts:
        vv = v if isinstance(v, VmVerdict) else VmVerdict.from_dict(v)
        by_vm[vv.vm.lower()] = vv
    good = _Collect()
    described: dict[str, dict[str, Any]] = {}  # key -> details, from passing VMs' installed patches
    suspect: dict[str, str] = {}  # key -> reason (excluded whatever other VMs say)
    unproven: dict[str, str] = {}  # key -> reason (excluded unless a passing VM installed it)
    sources: list[str] = []
    seen_sources: set[str] = set()  # O(1) membership: a 10,000-VM ring0 would scan the list per VM
    coverage: set[str] = set()
    for item in install_results:
        raw_vm = item.get("vm")
        vm = str(raw_vm.get("id")) if isinstance(raw_vm, Mapping) else str(raw_vm)
        os_name = _os_of(item) or (_os_of(raw_vm) if isinstance(raw_vm, Mapping) else "")
        result = item.get("result") or {}
        patches = installed_patches(result)
        if not os_name:
            os_name = "Windows" if any(p.get("kbId") for p in patches) else "Linux"
        verdict = by_vm.get(vm.lower())
        poisoned = _poison(verdict)
        counts = verdict is not None and verdict.outcome == "pass"
        for patch in patches:
            key = _patch_key(os_name, patch)
            if key is None:
                continue
            state = str(patch.get("installationState") or "").lower()
            if state == "failed":
                # Linux: a failed package is suspect in every version
                suspect[_family(key)] = f"failed to install on {vm}"
            elif state == "installed":
                if poisoned:
                    suspect.setdefault(key, f"installed on {vm}, which {poisoned}")
                elif counts:
                    (good.kbs if key.startswith("kb:") else good.pkgs).add(key)
                    described.setdefault(key, _details(key, patch))
                else:
                    unproven.setdefault(key, f"installed only on {vm}, which {_unproven(verdict)}")
        if counts and vm not in seen_sources:
            seen_sources.add(vm)
            sources.append(vm)
            coverage.add(vm_family(os_name, item.get("image")))

    def bad(key: str) -> bool:
        return key in suspect or _family(key) in suspect

    reasons = dict(suspect)
    for key, reason in unproven.items():
        if key not in good.kbs | good.pkgs and not bad(key):
            reasons[key] = reason
    excluded = tuple({"patch": _display(k), "reason": r} for k, r in sorted(reasons.items()))
    kbs = sorted((k[3:] for k in good.kbs if not bad(k)), key=lambda x: (len(x), x))
    pkgs = sorted(k[4:] for k in good.pkgs if not bad(k))
    details = {_detail_key(k): described[k] for k in sorted(described)
               if (k[3:] in kbs if k.startswith("kb:") else k[4:] in pkgs)}
    return Manifest(tuple(kbs), tuple(pkgs), excluded, tuple(sorted(sources, key=str.lower)), cutoff,
                    tuple(sorted(coverage)), details)


def _detail_key(key: str) -> str:
    return "KB" + key[3:] if key.startswith("kb:") else key[4:]


def _details(key: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    classes = [str(c) for c in patch.get("classifications") or []][:5]
    if key.startswith("kb:"):
        title = str(patch.get("name") or "").strip()[:200]
        return {"title": title or None, "classifications": classes}
    return {"name": str(patch.get("name") or "").strip(), "version": str(patch.get("version") or "").strip(),
            "classifications": classes}


def manifest_lines(manifest: Mapping[str, Any] | Manifest) -> list[str]:
    """One line per entry for prompts and pages: ``KB5048667 2026-11 Cumulative Update (KB5048667)
    [Security Updates]`` / ``openssl=3.0.2-0ubuntu1.19 [Security]`` (details when known)."""
    doc = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
    details = doc.get("details") if isinstance(doc.get("details"), Mapping) else {}
    assert isinstance(details, Mapping)
    lines = []
    for kb in (doc.get("windows") or {}).get("kbNumbers") or []:
        info = details.get(f"KB{normalize_kb(kb)}") or {}
        text = " ".join(x for x in (f"KB{normalize_kb(kb)}", info.get("title") or "") if x)
        classes = ", ".join(info.get("classifications") or [])
        lines.append(f"{text} [{classes}]" if classes else text)
    for package in (doc.get("linux") or {}).get("packages") or []:
        classes = ", ".join((details.get(str(package)) or {}).get("classifications") or [])
        lines.append(f"{package} [{classes}]" if classes else str(package))
    return lines


def _poison(verdict: VmVerdict | None) -> str | None:
    """Why nothing this VM installed may be promoted (it broke health / its install failed)."""
    if verdict is None:
        return None
    if verdict.broke_health:
        return "broke health"
    if verdict.install == "failed":
        return "install failed"
    return None


def _unproven(verdict: VmVerdict | None) -> str:
    if verdict is None:
        return "has no verdict"
    first = verdict.reasons[0] if verdict.reasons else verdict.outcome
    return f"was {verdict.outcome} ({first})"


def uncovered_vms(manifest: Mapping[str, Any] | Manifest, vms: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """VMs of a ring whose OS / image family Ring 0 did not cover (``{vm, family, reason}``).

    A ring holding such a VM must not be promoted unless the plan allows it: the manifest would
    pin it to nothing, or to patches never validated on that family (issue 13 item 7).
    """
    doc = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
    covered = {str(c).lower() for c in doc.get("coverage") or ()}
    out: list[dict[str, str]] = []
    for vm in vms:
        family = vm_family(vm.get("os"), vm.get("image"))
        if family.lower() in covered:
            continue
        out.append({"vm": str(vm.get("id")), "family": family,
                    "reason": f"{vm.get('name') or vm.get('id')} is {family}, which no VM that passed Ring 0 "
                              "covered: the manifest was never validated on it"})
    return out


def _family(key: str) -> str:
    """``pkg:openssl=3.0.2`` → ``pkg:openssl`` (all versions); KB keys are their own family."""
    return key.split("=", 1)[0] if key.startswith("pkg:") else key


def _patch_key(os_name: str, patch: Mapping[str, Any]) -> str | None:
    if os_name == "Windows":
        kb = normalize_kb(patch.get("kbId"))
        return f"kb:{kb}" if kb else None
    pkg = _linux_key(patch)
    return f"pkg:{pkg}" if pkg else None


def _display(key: str) -> str:
    if key.startswith("kb:"):
        return "KB" + key[3:]
    return key[4:] if "=" in key else key[4:] + " (all versions)"
