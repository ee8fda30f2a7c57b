"""Durable orchestrators of the PatchRings Function App, one module per concern.

Every orchestrator module exports a ``df.Blueprint`` named ``bp``. Orchestrators are
deterministic: no I/O, no clocks other than ``context.current_utc_datetime``, no settings; side
effects go through activities called by the string names in :mod:`orchestrators.names`.

=================  ===========================================================================
module             what
=================  ===========================================================================
``rollout``        the rollout: rings in order, approvals, promotion, scheduled runs, halt/resume
                   (its steps in ``rollout_base`` / ``_quarantine`` / ``_planner`` /
                   ``_approvals`` / ``_gates`` / ``_scheduled``; its waits in ``waits``)
``ring_direct``    a direct ring: waves under maxConcurrency, error budget, gate + manifest summary
``wave``           one wave: start installPatches per VM, poll with durable timers, verify
``verify``         the three health phases per VM (domain ``HealthTracker``) and verdicts
``run_results``    a scheduled run's per-VM results, verification and gate
``ring_gate``      open / close a ring's gate (retag or configuration assignment)
``guard``          fail-closed guard: cancels a gated ring's run nobody authorised
``dry_run``        resolve a ring's members and assess their patches, installing nothing
=================  ===========================================================================

Rules every orchestrator here follows: ARM and ledger activities are called with a retry policy
from ``retries`` (READ / WRITE / CLOSE; installPatches keeps its once-only claim); the rollout
closes its gates and writes its final state on every way out; no durable timer is longer than
5 days (``waits.Waits.timer``: SDK 1.7 splits longer ones and cannot cancel the pieces); custom status
is published through ``status.bounded`` (at most 10 KB as UTF-16).

Pure helpers (unit-tested without Durable): ``inbox`` (event de-duplication and matching),
``status`` (the rollout state document), ``verdicts`` (domain glue), ``names``. Time is read and
written with ``patchrings.domain.timeutil``, the plan through ``patchrings.domain.plan.Plan``.
"""
