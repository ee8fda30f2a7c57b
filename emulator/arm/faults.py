"""Scenario-driven faults, seeded and deterministic.

Why: the app's value is in how it reacts when patching goes wrong; each failure mode must be
reproducible run after run, so every random decision is drawn from ``Random(f"{seed}/{fault}/{key}")``
(independent of request order) and every fault may be limited with ``times`` / ``count``.

SUPPORTED fault types (scenario ``faults:``; selectors ``vms`` (name globs), ``tags``, ``os``,
``probability``, ``times``; the machine selectors match Arc-enabled servers
(``Microsoft.HybridCompute/machines``) as well as VMs):

* ``patchFails`` (``patch``: KB number / ``KB…`` / package name / ``pkg=ver``) -- the patch ends
  ``Failed``, the result status is ``Failed`` with a ``PatchInstallationFailed`` error;
* ``unhealthyAfterPatch`` (optional ``patch``, ``recoverAfterMinutes``) -- the install succeeds but
  afterwards the VM's Application Health extension reports Unhealthy and its HTTP health endpoint
  answers 503 (until it recovers, if ``recoverAfterMinutes`` is given);
* ``rebootFails`` -- ``rebootStatus: Failed`` and status ``Failed``;
* ``operationFails`` (``operation``, ``code``, ``message``) -- the installPatches/assessPatches LRO
  itself ends ``Failed`` (the SDK poller raises ``HttpResponseError`` with that code);
* ``slowInstall`` (``factor``) -- every patch takes ``factor`` times longer (window overruns);
* ``vmAgentNotReady`` / ``deallocated`` -- applied to the VM state at start (on an Arc-enabled
  server: its agent starts ``Disconnected``);
* request faults, with the selectors ``action`` (RBAC action glob, e.g.
  ``Microsoft.Maintenance/applyUpdates/write``), ``method``, ``pathContains``, ``after`` (let N
  matching requests pass first), ``count``, ``probability``, ``from`` / ``until``:

  * ``httpError`` (``status``, ``retryAfter``, ``code``, ``message``) -- the request is refused with
    that status and ARM's body for it: **429** (``Retry-After``; Compute's ``OperationNotAllowed`` +
    ``TooManyRequests`` detail on Compute routes, ``TooManyRequests`` elsewhere), **500**
    ``InternalServerError``, **502** ``BadGateway``, **503** ``ServiceUnavailable``, **403**
    ``AuthorizationFailed`` with ARM's message naming the calling identity, its object id, the
    action and the scope (as when a role assignment is removed mid-run), **404**
    ``ResourceNotFound`` (``NotFound`` on Maintenance routes; meaningful for GET/PUT/POST on one
    resource, e.g. a VM deleted mid-run), **409** ``Conflict`` (meaningful on writes: a concurrent
    operation on the resource). Nothing behind the refusal happens;
  * ``dropConnection`` -- the connection is closed without a response; nothing happens;
  * ``slowAnswer`` (``seconds``, ``simulatedSeconds``, ``processFirst``) -- the answer is late.
    ``seconds`` (default 5 when neither is given, at most 120) are **real** seconds: the request
    is held, inside the clock's busy section, so under the ``skip`` clock simulated time does not
    move meanwhile while an app-side client timeout (azure-core ``read_timeout``, an activity's
    own budget -- both measured in real seconds) trips exactly as it would in Azure. Holding the
    clock is deliberate: a delay in simulated time alone is skipped instantly under ``skip`` and
    could never trip a real-seconds timeout. ``simulatedSeconds`` additionally moves simulated time
    on before the answer (the request leaves the busy section while it waits on the clock), for
    logic that reads the clock (deadlines). ``processFirst`` (default true) applies the request
    first and delays only the answer -- the dangerous case, where a client that timed out does not
    know its write landed; false delays before processing (a client that gave up caused nothing,
    provided it does not retry);
* ``eventDeliveryError`` (``status``, ``count``, ``eventType``) -- the simulated Event Grid sees the
  webhook answer ``status`` instead of delivering (exercises retries).

Install-time and request faults take an optional ``from`` / ``until`` window of simulated time
(ISO 8601), e.g. an ARM outage from 20:05 to 20:20; ``vmAgentNotReady`` / ``deallocated`` apply at
start (change them later through the control API).

Faults can be added and removed while the simulator runs, so a test can inject one at a precise
point: ``POST /_sim/faults`` (a fault object, validated like the scenario's; answers its ``index``),
``GET /_sim/faults`` (each with ``matched`` / ``triggered`` counts), ``DELETE /_sim/faults/{index}``
and ``DELETE /_sim/faults``; in process ``ArmSimulator.add_fault`` / ``remove_fault`` /
``clear_faults``. Indices are stable (a removed fault's index is never reused), so seeded
decisions of the remaining faults do not change.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emulator.arm.fleet import Fleet, Vm
from emulator.clock import parse_instant

__all__ = ["MAX_SLOW_SECONDS", "REQUEST_KINDS", "Faults", "RequestFault"]


REQUEST_KINDS = ("httpError", "dropConnection", "slowAnswer")
MAX_SLOW_SECONDS = 120.0


@dataclass(frozen=True)
class RequestFault:
    index: int
    kind: str  # "httpError" | "dropConnection" | "slowAnswer"
    status: int
    retry_after: int | None
    code: str | None
    message: str | None = None
    seconds: float = 0.0  # slowAnswer: real seconds
    simulated_seconds: float = 0.0  # slowAnswer: simulated seconds
    process_first: bool = True  # slowAnswer: handle the request, then delay the answer


class Faults:
    def __init__(self, faults: list[dict[str, Any]], seed: int, now: Callable[[], datetime] | None = None) -> None:
        self._faults: dict[int, dict[str, Any]] = dict(enumerate(faults))
        self._next = len(self._faults)
        self._seed = seed
        self._now = now or (lambda: datetime.now(UTC))
        self._triggered: dict[int, int] = {}
        self._matched: dict[int, int] = {}

    # -- run-time changes -----------------------------------------------------------------------
    def add(self, fault: dict[str, Any]) -> int:
        """Add a (validated) fault; returns its stable index."""
        index = self._next
        self._next += 1
        self._faults[index] = dict(fault)
        return index

    def remove(self, index: int) -> bool:
        return self._faults.pop(index, None) is not None

    def clear(self) -> int:
        removed = len(self._faults)
        self._faults.clear()
        return removed

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "index": index,
                "fault": dict(fault),
                "matched": self._matched.get(index, 0),
                "triggered": self._triggered.get(index, 0),
            }
            for index, fault in sorted(self._faults.items())
        ]

    # -- VM-level -------------------------------------------------------------------------------
    def _chance(self, index: int, key: str, probability: float) -> bool:
        if probability >= 1:
            return True
        return random.Random(f"{self._seed}/{index}/{key}").random() < probability

    def _active(self, fault: dict[str, Any]) -> bool:
        """Within the fault's optional ``from``/``until`` window of simulated time."""
        if not fault.get("from") and not fault.get("until"):
            return True
        now = self._now()
        if fault.get("from") and now < parse_instant(fault["from"]):
            return False
        return not (fault.get("until") and now >= parse_instant(fault["until"]))

    def _vm_matches(self, index: int, fault: dict[str, Any], vm: Vm) -> bool:
        if not self._active(fault):
            return False
        globs = fault.get("vms")
        if globs and not any(fnmatch.fnmatchcase(vm.name.lower(), g.lower()) for g in globs):
            return False
        for name, value in (fault.get("tags") or {}).items():
            actual = {k.lower(): v for k, v in vm.tags.items()}.get(name.lower())
            if actual != value:
                return False
        if fault.get("os") and fault["os"] != vm.os:
            return False
        if not self._chance(index, vm.name.lower(), float(fault.get("probability", 1.0))):
            return False
        times = fault.get("times")
        return not (times is not None and self._triggered.get(index, 0) >= times)

    def _take(self, kind: str, vm: Vm) -> list[dict[str, Any]]:
        hits = []
        for index, fault in list(self._faults.items()):
            if fault["type"] == kind and self._vm_matches(index, fault, vm):
                self._triggered[index] = self._triggered.get(index, 0) + 1
                hits.append(fault)
        return hits

    def apply_initial(self, fleet: Fleet) -> None:
        """Apply state faults (agent not ready, deallocated) to the fleet."""
        for vm in fleet.vms.values():
            if self._take("vmAgentNotReady", vm):
                vm.vm_agent_ready = False
            if self._take("deallocated", vm):
                vm.power_state = "deallocated"

    def for_install(self, vm: Vm) -> dict[str, Any]:
        """Faults for one install on ``vm``: keyword arguments for ``plan_install``."""
        fails = {str(f.get("patch", "")) for f in self._take("patchFails", vm) if f.get("patch")}
        unhealthy = self._take("unhealthyAfterPatch", vm)
        slow = 1.0
        for fault in self._take("slowInstall", vm):
            slow *= float(fault.get("factor", 4.0))
        recover = [float(f["recoverAfterMinutes"]) for f in unhealthy if f.get("recoverAfterMinutes")]
        return {
            "recover_after_minutes": min(recover) if recover else None,
            "fails": fails,
            "reboot_fails": bool(self._take("rebootFails", vm)),
            "slow_factor": slow,
            "unhealthy_patches": {str(f["patch"]).lower() for f in unhealthy if f.get("patch")},
            "unhealthy_any": any(not f.get("patch") for f in unhealthy),
        }

    def operation_failure(self, vm: Vm, operation: str) -> dict[str, str] | None:
        """An ``operationFails`` fault for this LRO on ``vm``: the ApiError it ends with, or None."""
        for index, fault in list(self._faults.items()):
            if fault["type"] != "operationFails":
                continue
            if fault.get("operation") and fault["operation"] != operation:
                continue
            if self._vm_matches(index, fault, vm):
                self._triggered[index] = self._triggered.get(index, 0) + 1
                return {
                    "code": fault.get("code", "InternalExecutionError"),
                    "message": fault.get("message", f"The {operation} operation failed on VM '{vm.name}'."),
                }
        return None

    # -- request-level --------------------------------------------------------------------------
    def for_request(self, method: str, path: str, action: str | None) -> RequestFault | None:
        for index, fault in list(self._faults.items()):
            if fault["type"] not in REQUEST_KINDS:
                continue
            if not self._active(fault):
                continue
            if fault.get("method") and fault["method"].upper() != method.upper():
                continue
            if fault.get("pathContains") and fault["pathContains"].lower() not in path.lower():
                continue
            if fault.get("action") and not fnmatch.fnmatchcase((action or "").lower(), fault["action"].lower()):
                continue
            seen = self._matched.get(index, 0)
            self._matched[index] = seen + 1
            if seen < int(fault.get("after", 0)):
                continue
            count = fault.get("count")
            if count is not None and self._triggered.get(index, 0) >= count:
                continue
            if not self._chance(index, f"req{seen}", float(fault.get("probability", 1.0))):
                continue
            self._triggered[index] = self._triggered.get(index, 0) + 1
            seconds = fault.get("seconds")
            simulated = float(fault.get("simulatedSeconds", 0) or 0)
            if seconds is None:
                seconds = 0.0 if simulated else 5.0
            return RequestFault(
                index=index,
                kind=fault["type"],
                status=int(fault.get("status", 0)),
                retry_after=fault.get("retryAfter"),
                code=fault.get("code"),
                message=fault.get("message"),
                seconds=min(float(seconds), MAX_SLOW_SECONDS),
                simulated_seconds=simulated,
                process_first=bool(fault.get("processFirst", True)),
            )
        return None

    def for_delivery(self, event_type: str) -> int | None:
        """A status the webhook "answers" instead of the real delivery, or None."""
        for index, fault in list(self._faults.items()):
            if fault["type"] != "eventDeliveryError":
                continue
            if fault.get("eventType") and fault["eventType"].lower() not in event_type.lower():
                continue
            count = fault.get("count")
            if count is not None and self._triggered.get(index, 0) >= count:
                continue
            self._triggered[index] = self._triggered.get(index, 0) + 1
            return int(fault["status"])
        return None
