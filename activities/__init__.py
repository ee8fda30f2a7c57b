"""Durable activities: the app's side effects, one module per Azure service or concern.

Each module exports a ``df.Blueprint`` named ``bp`` (``function_app.py`` registers them) whose
activity functions are thin wrappers: they fetch the process-wide dependencies from
:mod:`patchrings.deps` and call a plain ``*_core`` function that takes those dependencies
as arguments. Tests call the cores with fakes or simulator-backed clients.

Activity names and JSON shapes are the contract in docs/architecture.md ("Activity contract").
Additions to it (all optional for callers, all additive for readers):

* ``VmRef`` also carries ``scheduleIssue``: why the VM would not follow a maintenance schedule
  (``patchMode`` / ``bypassPlatformSafetyChecksOnUserSchedule``), or null.
* ``start_install`` accepts ``runStartedAt`` (ISO UTC): the reference for "an install on the VM
  belongs to this run" (fallback: the Windows ``maxPatchPublishDate``). ``refused`` errors carry
  ``retryable`` (true for throttling, a down ledger or an unreachable ARM: nothing was sent).
  ``already-started``/``already-done`` may come with ``token: null``; ``poll_install`` then
  follows the install through the instance view (result ``source: "instanceView"``, no
  ``patches``), answering ``done: false`` with ``error.code = InstallNotObserved`` while only an
  older install is visible.
* ``poll_install`` / ``poll_assess``: ``done: false`` may carry a (retryable) ``error`` when the
  status check itself failed; ``done: true`` with ``result: null`` and ``error`` when the
  operation failed.
* ``retag_vms`` ``failed`` entries are ``{"vm", "error"}``.
* ``set_ring_assignment`` accepts ``vmIds`` (resource-level assignments for rings without a
  tag selector) and answers ``{"changed", "assignments": [ids changed]}``; it refuses to create
  a subscription-wide dynamic scope.
* ``pin_manifest`` answers ``manifestHash`` when it wrote.
* ``cancel_run`` PUTs the cancel straight away (no read first). Given ``budgetSeconds`` it makes
  one attempt bounded by that budget; with ``report: true`` a transient failure is returned as
  ``{"status": "Failed", "retryable", "retryAfter", "httpStatus", "code"}`` (the guard retries with
  durable timers until its deadline); an id that is not a schedule run id is ``Refused`` and
  nothing is sent. Without ``report`` an unknown outcome raises.
* ``start_install`` accepts optional ``probes`` and answers ``baseline`` (the VM's health before the
  install, from the instance view it reads anyway) on ``started``; ``verify`` takes ``baselines``
  so a VM healthy before patching and unhealthy in two samples after fails at once.
* ``check_vm_health_batch`` (``activities/health.py``): ``{checks: [{vm, full}], probes}`` →
  ``{samples}``; cheap samples (``partial: true``) come from one statusOnly list per subscription.
* ``collect_run_results_arg`` (``activities/resource_graph.py``): a scheduled run's per-VM results
  from Resource Graph, with patches and reboot state; ``collect_run_results`` is the fallback.
* ``collect_run_results`` entries are the wave's ``VmInstall`` shape ``{vm, name, os, state,
  result, error}`` with ``state`` ``done|running|missing|unreadable``, plus ``applyUpdate``.
* Logs: every activity invocation runs with its input's ``rolloutId`` / ``ring`` (or the rollout
  part of its ``runId``) bound as the log context, so each log line carries the rollout
  (``patchrings/telemetry.py``: ``telemetry.configure()`` instruments the blueprints; an entry
  point can also say so itself with ``@with_log_context`` under its ``activity_trigger``). An
  activity whose input names no rollout logs without one: pass ``rolloutId`` in its input.
* ``ledger_read_gate``: ``{correlationId, ring?}`` → ``{"authorised", "reason", "rolloutId"}``
  (the guard's fail-closed question), or ``{rolloutId, ring, manifestHash}`` → the accepted
  approval bound to exactly that (see :mod:`activities.ledger`).
"""

from typing import Any, Dict  # noqa: UP035 -- typing.Dict on purpose, see Payload

from patchrings.telemetry import activity_context as with_log_context

# The annotation every activity entry point uses for its input. It must be ``typing.Dict``, not
# ``dict[str, Any]``: the Python worker's ``validate_function_params`` refuses PEP 585 aliases
# (``types.GenericAlias`` is neither a ``type`` nor a typing generic) with "invalid non-type
# annotation", and one refused function stops the whole app from indexing in Azure.
Payload = Dict[str, Any]  # noqa: UP006 -- the worker refuses dict[str, Any]; see above

MODULES = ("plan", "compute", "tags", "maintenance", "ledger")

__all__ = ["MODULES", "Payload", "with_log_context"]
