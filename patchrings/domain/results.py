"""Judging one VM's installation result against the plan's installation rules.

Input is a ``VirtualMachineInstallPatchesResult`` as a dict (on-demand installPatches), or the
instance view's ``lastPatchInstallationSummary`` (scheduled runs) — same fields except
``startTime`` vs ``startDateTime`` and no ``patches``. Keys are read case-insensitively.

Rules, in order (the first *failure* wins over any *inconclusive* signal):

* ``failed`` — status ``Failed``; ``failedPatchCount > 0``; ``rebootStatus == Failed``;
  ``maintenanceWindowExceeded`` (unless ``allowMaintenanceWindowExceeded``); ``rebootStatus ==
  Required`` when ``requireRebootCompleted`` (the patch is not active until the reboot).
* ``inconclusive`` — no result, status ``InProgress``/``Unknown``/``NotStarted`` (still running or
  unreadable); ``CompletedWithWarnings`` unless ``allowWarnings``; ``pendingPatchCount > 0`` with a
  success status unless ``allowPending`` (signals disagree); an ``error`` on a success status;
  ``rebootStatus == Started`` when a completed reboot is required; **no patch detail** (issue 13
  item 7): a result without a ``patches`` list (the instance view's summary, marked ``source:
  instanceView``) cannot say what was installed, so it never passes; **no reboot state**
  (``rebootStatus`` missing or ``Unknown``) when ``requireRebootCompleted``.
* ``ok`` — otherwise.

Scheduled runs' per-VM results come from Resource Graph (``patchinstallationresources``,
``activities/resource_graph.py``), which carries the patches and the reboot state. Only when a
machine's rows are still missing after the re-queries does ``orchestrators/run_results`` fall back
to the instance view; such a result is inconclusive (never a pass) and the reason says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from patchrings.domain.health import InstallRules

InstallOutcome = Literal["ok", "failed", "inconclusive"]

#: How long after an *uncertain* installPatches start (a claim with no POST behind it, or a POST
#: answered 5xx / with its answer lost) the VM must show nothing of this run before the POST is
#: taken as never sent and sent again (issue 13 item 4). Why 15 minutes: an accepted POST makes
#: the platform mark the VM's patch operation InProgress when the guest agent picks up the goal
#: state, normally within a minute or two; 15 minutes is several times that, so an applied POST
#: is always visible by then. Waiting longer only delays a canary; re-sending too early could
#: double-install. It is well inside the default 2 h maximumDuration + 30 min wave deadline.
UNCERTAIN_START_GRACE = timedelta(minutes=15)


#: Install polling (issue 11). An install is looked at first at its *expected* duration (a
#: duration learned from earlier waves of the ring, else a quarter of ``maximumDuration``), then
#: with backing-off gaps (``base``, 2 x base, 4 x base ... each at most :data:`INSTALL_POLL_CAP`:
#: an install that ends between two polls is seen at most 8 minutes late), instead of every
#: ``base`` from the start: a 60-minute install costs 6 status checks without a learned duration
#: (not 31) and 1 with one. There is no early look: a quick failure is seen at the expected
#: duration, which only delays a verdict the gate would give anyway (nothing else is installed
#: meanwhile: the wave waits for all its installs).
INSTALL_POLL_CAP = timedelta(minutes=8)
#: The expected duration when nothing was learned: a quarter of ``maximumDuration``, at most this.
DEFAULT_EXPECTED_INSTALL = timedelta(minutes=30)


def expected_install_duration(maximum: timedelta | None, learned: timedelta | None = None) -> timedelta:
    """How long an install is expected to take: a learned figure (e.g. the longest install of
    the ring's previous wave on that OS) when there is one, else ``min(maximumDuration / 4, 30
    min)``; never more than ``maximumDuration``."""
    if learned is not None and learned > timedelta(0):
        return min(learned, maximum) if maximum else learned
    if maximum is not None and maximum > timedelta(0):
        return min(maximum / 4, DEFAULT_EXPECTED_INSTALL)
    return DEFAULT_EXPECTED_INSTALL


def next_install_poll(started: datetime, now: datetime, expected: timedelta,
                      base: timedelta = timedelta(minutes=2)) -> datetime:
    """The first instant of the install's poll schedule after ``now`` (pure: replay-safe).

    Schedule, as offsets from ``started``: ``expected``, then ``expected + base``, ``+ 2 base``,
    ``+ 4 base`` ..., gaps capped at :data:`INSTALL_POLL_CAP`."""
    base = max(base, timedelta(seconds=1))
    at = started + max(expected, timedelta(seconds=1))
    gap = base
    while at <= now:
        at += gap
        gap = min(gap * 2, INSTALL_POLL_CAP)
    return at


def ci_get(doc: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    """Case-insensitive key lookup (Azure payload casing varies by source)."""
    if not doc:
        return default
    if key in doc:
        return doc[key]
    low = key.lower()
    for k, v in doc.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return default


def _int(doc: Mapping[str, Any], key: str) -> int:
    value = ci_get(doc, key, 0)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _error_text(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, Mapping):
        code = ci_get(error, "code")
        msg = ci_get(error, "message")
        details = ci_get(error, "details") or []
        text = ": ".join(str(x) for x in (code, msg) if x) or "error"
        if details and isinstance(details, list) and isinstance(details[0], Mapping):
            inner = ci_get(details[0], "message")
            if inner:
                text += f" ({inner})"
        return text
    return str(error)


@dataclass(frozen=True)
class InstallVerdict:
    outcome: InstallOutcome
    reasons: tuple[str, ...]
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reasons": list(self.reasons), "counts": dict(self.counts)}


def classify_install(result: Mapping[str, Any] | None, rules: InstallRules | None = None) -> InstallVerdict:
    """Classify one VM's install result as ok / failed / inconclusive, with reasons."""
    rules = rules or InstallRules()
    if not result:
        return InstallVerdict("inconclusive", ("no installation result could be read",), {})
    status = str(ci_get(result, "status") or "Unknown")
    st = status.lower()
    # lastPatchInstallationSummary (scheduled runs) has no rebootStatus: absent = not judged
    reboot = str(ci_get(result, "rebootStatus") or "NotReported")
    rb = reboot.lower()
    mwx = bool(ci_get(result, "maintenanceWindowExceeded", False))
    counts = {
        "installed": _int(result, "installedPatchCount"),
        "failed": _int(result, "failedPatchCount"),
        "pending": _int(result, "pendingPatchCount"),
        "excluded": _int(result, "excludedPatchCount"),
        "notSelected": _int(result, "notSelectedPatchCount"),
    }
    error = _error_text(ci_get(result, "error"))
    failed: list[str] = []
    unsure: list[str] = []

    if st == "failed":
        failed.append("installation status Failed" + (f": {error}" if error else ""))
    if counts["failed"] > 0:
        failed.append(f"{counts['failed']} patch(es) failed to install")
    if rb == "failed":
        failed.append("reboot failed")
    if mwx and not rules.allow_maintenance_window_exceeded:
        failed.append("maintenance window exceeded before all patches were installed")
    if rules.require_reboot_completed and rb == "required":
        failed.append("reboot required but not performed (rebootStatus Required)")

    if st in ("inprogress", "notstarted"):
        unsure.append(f"installation still {status}")
    elif st == "unknown" or st not in ("succeeded", "failed", "completedwithwarnings"):
        unsure.append(f"installation status {status} cannot be judged")
    if st == "completedwithwarnings" and not rules.allow_warnings:
        unsure.append("installation completed with warnings")
    if st in ("succeeded", "completedwithwarnings") and counts["pending"] > 0 and not rules.allow_pending:
        unsure.append(f"status {status} but {counts['pending']} patch(es) still pending")
    if st in ("succeeded", "completedwithwarnings") and error:
        unsure.append(f"status {status} but an error was reported: {error}")
    if rules.require_reboot_completed and rb == "started" and st != "failed":
        unsure.append(f"reboot status {reboot}: cannot confirm the reboot completed")
    if st in ("succeeded", "completedwithwarnings"):
        unsure.extend(_detail_gaps(result, rb, rules))

    if failed:
        return InstallVerdict("failed", tuple(failed + unsure), counts)
    if unsure:
        return InstallVerdict("inconclusive", tuple(unsure), counts)
    return InstallVerdict("ok", (), counts)


NO_PATCH_DETAIL = (
    "no per-patch detail: the result was read from the VM's instance view (lastPatchInstallationSummary), "
    "which lists neither the patches installed nor the reboot state; per-patch results of scheduled runs "
    "are in Resource Graph (patchinstallationresources), whose rows for this machine had not appeared "
    "after the re-queries"
)


def has_patch_detail(result: Mapping[str, Any] | None) -> bool:
    """Does a result say *what* was installed (a ``patches`` list, not an instance-view summary)?"""
    if not result or str(ci_get(result, "source") or "").lower() == "instanceview":
        return False
    return isinstance(ci_get(result, "patches"), list)


def _detail_gaps(result: Mapping[str, Any], reboot: str, rules: InstallRules) -> list[str]:
    """Why a successful-looking result still cannot be judged: missing patch / reboot detail.

    The ``patches`` count is deliberately not checked against ``installedPatchCount``: the
    Compute spec's own example (VirtualMachine_InstallPatches.json, 2025-11-01) reports 3
    installed and lists one, so a mismatch is not evidence of anything.
    """
    gaps: list[str] = []
    if not has_patch_detail(result):
        gaps.append(NO_PATCH_DETAIL)
    if rules.require_reboot_completed and reboot in ("notreported", "unknown", ""):
        gaps.append("reboot state not reported: requireRebootCompleted cannot be confirmed")
    return gaps


def installed_patches(result: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The ``patches[]`` entries of a result, with keys normalised to the documented camelCase."""
    out: list[dict[str, Any]] = []
    for p in ci_get(result, "patches") or []:
        if isinstance(p, Mapping):
            out.append(
                {
                    "patchId": ci_get(p, "patchId"),
                    "name": ci_get(p, "name"),
                    "version": ci_get(p, "version"),
                    "kbId": ci_get(p, "kbId"),
                    "classifications": list(ci_get(p, "classifications") or []),
                    "installationState": ci_get(p, "installationState"),
                }
            )
    return out
