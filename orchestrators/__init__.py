"""Durable orchestrators of the PatchRings Function App, one module per concern.

Every orchestrator module exports a ``df.Blueprint`` named ``bp``. Orchestrators are
deterministic: no I/O, no clocks other than ``context.current_utc_datetime``, no settings; side
effects go through activities called by the string names in :mod:`orchestrators.names`.

=================  ===========================================================================
module             what
=================  ===========================================================================
``rollout``        the rollout: rings in order, approvals, promotion, scheduled runs, halt/resume
``ring_direct``    a direct ring: waves under maxConcurrency, error budget, gate + manifest summary
``wave``           one wave: start installPatches per VM, poll with durable timers, verify
``verify``         the three health phases per VM (domain ``HealthTracker``) and verdicts
``run_results``    a scheduled run's per-VM results, verification and gate
``ring_gate``      open / close a ring's gate (retag or configuration assignment)
``guard``          fail-closed guard: cancels a gated ring's run nobody authorised
``dry_run``        resolve a ring's members and assess their patches, installing nothing
=================  ===========================================================================

Pure helpers (unit-tested without Durable): ``inbox`` (event de-duplication and matching),
``status`` (the rollout state document), ``verdicts`` (domain glue), ``plan_view``,
``timeutil``, ``names``.
"""
