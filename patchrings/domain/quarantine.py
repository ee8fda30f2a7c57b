"""Remember a bad manifest across cycles (issue 11, "repeat harm"): the quarantine.

Why: a rollout halted by a failed gate ends its cycle, and the next morning's Ring 0 pre-event
starts a new rollout that would install the same bad patch on the same first wave again. A halt
caused by a **failed gate** (never a person's halt, never an inconclusive gate: an inconclusive
gate says nothing about the patches, only that something could not be observed) records the
patches that broke it as a quarantine entry of the plan; every later rollout of that plan excludes
them from its Ring 0 install (``kbNumbersToExclude`` / ``packageNameMasksToExclude`` of
``VirtualMachineInstallPatchesParameters``) until a person releases the entry. Later rings
install exactly the manifest Ring 0 built, so an excluded patch reaches no ring.

Which patches (:func:`suspects`), from the failed ring's per-VM ledger rows:

1. the patches the failed VMs' results name as failed (``result.failed``: ``KB<n>`` /
   ``name=version``, or the KB numbers of ``result.error.details``: ``target`` and ``Failed to
   install KB<n>`` messages, as ``installPatches`` reports them), when their rows carry them --
   e.g. a VM that retries only the patch that failed before installs nothing else, so rule 2
   would find nothing;
2. else the patches installed on the failed VMs; when a failed VM reports a failed patch it does
   not name (``failedPatchCount > 0``) or installed nothing, the failing patch is not in its own
   list, so everything the failed run installed on any VM of the ring is added (the failed run's
   manifest: over-broad, never too narrow);
3. else the manifest the rollout carried (a later ring's run installs exactly that);
4. nothing at all (the failure happened before anything was installed): no entry.

What the next rollout does about an active entry is the plan's choice (:class:`QuarantinePolicy`,
the plan's ``quarantine.onBadManifest``): ``exclude`` (the default) leaves the patches out of
Ring 0; ``wait`` holds the rollout before Ring 0 until a person decides (the approvers of the
plan's first manual ring, the timeout rejecting): proceed without the patches, release them
(Ring 0 installs as the plan says), or reject the rollout (nothing installed). The decision is
bound to the entries it was asked about (:func:`decision_token`), as a ring approval is bound to
its manifest.

Pure: no I/O, no clocks; the caller passes the platform's time.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from patchrings.domain.arm_ids import last_segment
from patchrings.domain.timeutil import format_duration, parse_duration

__all__ = [
    "EXCLUDE",
    "MAX_PATCHES",
    "WAIT",
    "QuarantinePolicy",
    "Suspects",
    "active",
    "decision_token",
    "entry_id",
    "exclusions",
    "new_entry",
    "parse_release",
    "suspects",
    "with_exclusions",
]

# An entry names at most this many patches (a row stays small; a ring installs far fewer).
MAX_PATCHES = 200
_KB = re.compile(r"^(?:KB)?(\d{4,10})$", re.IGNORECASE)
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_:~-]{0,200}=[A-Za-z0-9.+_:~*-]{1,200}$")


OnBadManifest = Literal["exclude", "wait"]
EXCLUDE: OnBadManifest = "exclude"
WAIT: OnBadManifest = "wait"


@dataclass(frozen=True)
class QuarantinePolicy:
    """The plan's ``quarantine`` block: what the next rollout does while entries are active.

    ``timeout``: how long a ``wait`` lasts (None: the first manual ring's approval timeout); it
    always rejects when it runs out (nothing quarantined is installed because nobody answered)."""

    on_bad_manifest: OnBadManifest = EXCLUDE
    timeout: timedelta | None = None

    @property
    def wait(self) -> bool:
        return self.on_bad_manifest == WAIT

    @property
    def is_default(self) -> bool:
        return self == QuarantinePolicy()

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> QuarantinePolicy:
        doc = doc or {}
        mode = WAIT if doc.get("onBadManifest") == WAIT else EXCLUDE
        timeout = doc.get("timeout")
        return cls(mode, parse_duration(timeout) if timeout else None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"onBadManifest": self.on_bad_manifest}
        if self.timeout is not None:
            out["timeout"] = format_duration(self.timeout)
        return out


def decision_token(entries: Iterable[Mapping[str, Any]]) -> str:
    """What a person's quarantine decision is bound to (the ``manifestHash`` of its approval
    request): the active entries' ids and patches, so a decision taken while looking at one set
    of entries never applies to another. ``q-`` + 12 hex digits of a sha256."""
    body = sorted((str(e.get("id") or ""), sorted(str(k) for k in _list(e.get("kbs"))),
                   sorted(str(p) for p in _list(e.get("packages")))) for e in entries if isinstance(e, Mapping))
    return "q-" + hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Suspects:
    """The patches blamed for a failed gate, and which rule found them."""

    kbs: tuple[str, ...]
    packages: tuple[str, ...]
    source: str  # failed-patches | failed-vms | ring-installed | manifest | none
    vms: tuple[str, ...]  # short names of the failed VMs (at most 50)

    @property
    def empty(self) -> bool:
        return not self.kbs and not self.packages


def _kb(token: str) -> str | None:
    match = _KB.match(token.strip())
    return match.group(1) if match else None


def _split(tokens: Iterable[Any]) -> tuple[set[str], set[str]]:
    """``KB<n>`` / ``<n>`` into KB numbers, ``name=version`` into package pins; others dropped."""
    kbs: set[str] = set()
    packages: set[str] = set()
    for raw in tokens:
        token = str(raw or "").strip()
        kb = _kb(token)
        if kb:
            kbs.add(kb)
        elif _PACKAGE.match(token):
            packages.add(token)
    return kbs, packages


def _result(row: Mapping[str, Any]) -> Mapping[str, Any]:
    result = row.get("result")
    return result if isinstance(result, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _failed(row: Mapping[str, Any]) -> bool:
    verdict = row.get("verdict")
    return isinstance(verdict, Mapping) and verdict.get("outcome") == "fail"


def _short(row: Mapping[str, Any]) -> str:
    return str(row.get("name") or last_segment(row.get("vm")))


def suspects(rows: Iterable[Mapping[str, Any]], manifest: Mapping[str, Any] | None = None) -> Suspects:
    """The patches to quarantine after a failed gate (rules in the module docstring).

    ``rows``: the failed ring run's per-VM ledger rows (``{vm, name?, result: {installed?,
    failed?, failedPatchCount?}, verdict: {outcome}}``); ``manifest``: the manifest the rollout
    carried (``{windows: {kbNumbers}, linux: {packages}}``) or None.
    """
    all_rows = [r for r in rows if isinstance(r, Mapping)]
    failed = sorted((r for r in all_rows if _failed(r)), key=lambda r: str(r.get("vm") or "").lower())
    vms = tuple(_short(r) for r in failed[:50])
    named: list[Any] = []
    for row in failed:
        result = _result(row)
        named += _list(result.get("failed")) + _list(result.get("failedPatches")) + _error_kbs(result)
    kbs, packages = _split(named)
    if kbs or packages:
        return _bounded(kbs, packages, "failed-patches", vms)
    own: list[Any] = []
    unnamed_failure = False
    for row in failed:
        result = _result(row)
        installed = _list(result.get("installed"))
        own += installed
        if not installed or _int(result.get("failedPatchCount")) > 0 or result.get("installedMore"):
            unnamed_failure = True
    kbs, packages = _split(own)
    source = "failed-vms"
    if failed and unnamed_failure:
        ring_wide: list[Any] = []
        for row in all_rows:
            ring_wide += _list(_result(row).get("installed"))
        more_kbs, more_packages = _split(ring_wide)
        if (more_kbs - kbs) or (more_packages - packages):
            source = "ring-installed"
        kbs |= more_kbs
        packages |= more_packages
    if kbs or packages:
        return _bounded(kbs, packages, source, vms)
    if manifest:
        windows = manifest.get("windows") if isinstance(manifest.get("windows"), Mapping) else {}
        linux = manifest.get("linux") if isinstance(manifest.get("linux"), Mapping) else {}
        assert isinstance(windows, Mapping) and isinstance(linux, Mapping)
        kbs, packages = _split(_list(windows.get("kbNumbers")) + _list(linux.get("packages")))
        if kbs or packages:
            return _bounded(kbs, packages, "manifest", vms)
    return Suspects((), (), "none", vms)


_KB_IN_TEXT = re.compile(r"\bKB(\d{4,10})\b", re.IGNORECASE)


def _error_kbs(result: Mapping[str, Any]) -> list[str]:
    """KB numbers an install's error names (``error.details[].target`` / ``message``, e.g.
    ``{"target": "KB5048667", "message": "Failed to install KB5048667."}``); at most 50."""
    error = result.get("error")
    if not isinstance(error, Mapping):
        return []
    found: list[str] = []
    for detail in _list(error.get("details"))[:50]:
        if not isinstance(detail, Mapping):
            continue
        for text in (detail.get("target"), detail.get("message")):
            found += [f"KB{kb}" for kb in _KB_IN_TEXT.findall(str(text or ""))]
    return found[:50]


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _bounded(kbs: set[str], packages: set[str], source: str, vms: tuple[str, ...]) -> Suspects:
    ordered_kbs = sorted(kbs, key=lambda k: (len(k), k))[:MAX_PATCHES]
    ordered_packages = sorted(packages)[: max(MAX_PATCHES - len(ordered_kbs), 0)]
    return Suspects(tuple(ordered_kbs), tuple(ordered_packages), source, vms)


def entry_id(rollout_id: str, ring: str) -> str:
    """One entry per (rollout, ring): a retried record lands on the same row."""
    return f"{rollout_id}:{ring}"


def new_entry(*, plan_name: str, plan_hash: str | None, rollout_id: str, ring: str, found: Suspects,
              reason: str, at: str, manifest_hash: str | None = None) -> dict[str, Any]:
    """The ledger row of a quarantine (who: the gate that failed; when: the platform's time)."""
    return {
        "id": entry_id(rollout_id, ring),
        "planName": plan_name,
        "planHash": plan_hash,
        "rolloutId": rollout_id,
        "ring": ring,
        "manifestHash": manifest_hash,
        "kbs": list(found.kbs),
        "packages": list(found.packages),
        "source": found.source,
        "failedVms": list(found.vms),
        "reason": reason[:500],
        "by": "system:gate-failed",
        "at": at,
        "released": False,
    }


def active(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Entries not released, oldest first (by their platform time, then id)."""
    kept = [dict(e) for e in entries if isinstance(e, Mapping) and not e.get("released")]
    return sorted(kept, key=lambda e: (str(e.get("at") or ""), str(e.get("id") or "")))


def exclusions(entries: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The union of the active entries' patches as install exclusions (sorted, de-duplicated):
    ``{"kbNumbersToExclude": [...], "packageNameMasksToExclude": ["name", ...]}``.

    A Linux entry blames ``name=version``, but the exclusion names the package only: Azure's Linux
    patch extension ignores the version part of an exclusion (Azure/LinuxPatchExtension
    ``PackageFilter``: "Package exclusions do not support version matching"), so every version of
    the package is held back until an approver releases the entry. Sending the name says exactly
    what Azure will do."""
    kbs: set[str] = set()
    packages: set[str] = set()
    for entry in active(entries):
        more_kbs, more_packages = _split(_list(entry.get("kbs")) + _list(entry.get("packages")))
        kbs |= more_kbs
        packages |= {p.split("=", 1)[0] for p in more_packages}
    return {"kbNumbersToExclude": sorted(kbs, key=lambda k: (len(k), k)),
            "packageNameMasksToExclude": sorted(packages)}


def with_exclusions(install: Mapping[str, Any], excluded: Mapping[str, list[str]]) -> dict[str, Any]:
    """A ring's effective ``install`` block with ``excluded`` added to its own exclude lists.

    The plan's own exclusions stay; KB numbers are compared without the ``KB`` prefix."""
    out = {k: v for k, v in install.items()}
    kbs = list(excluded.get("kbNumbersToExclude") or [])
    packages = list(excluded.get("packageNameMasksToExclude") or [])
    if kbs:
        windows = dict(out.get("windowsParameters") or {})
        existing = [str(k) for k in _list(windows.get("kbNumbersToExclude"))]
        have = {(_kb(k) or k).upper() for k in existing}
        windows["kbNumbersToExclude"] = existing + [k for k in kbs if k.upper() not in have]
        out["windowsParameters"] = windows
    if packages:
        linux = dict(out.get("linuxParameters") or {})
        existing = [str(m) for m in _list(linux.get("packageNameMasksToExclude"))]
        linux["packageNameMasksToExclude"] = existing + [m for m in packages if m not in existing]
        out["linuxParameters"] = linux
    return out


def parse_release(value: Any) -> tuple[list[str], str | None]:
    """A rollout input's ``releaseQuarantine``: a list of entry ids (strings, at most 100, each
    at most 600 characters). Returns (ids, None) or ([], why it is refused)."""
    if value is None:
        return [], None
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 600 for v in value):
        return [], "releaseQuarantine must be a list of quarantine entry ids (strings of 1-600 characters)"
    if len(value) > 100:
        return [], "releaseQuarantine names more than 100 entries"
    return list(dict.fromkeys(value)), None
