"""Retry policies for activity calls, one per kind of side effect.

Why a module of its own: every orchestrator must call ARM and ledger activities with a retry
policy fitted to what the activity does (issue 13 item 2), and the policies must agree across
the rollout, the ring/wave/verify sub-orchestrations and the guard. azure-functions-durable 1.7's
``RetryOptions`` carries only a first interval and an attempt count (no back-off coefficient is
sent), so each policy is the fixed interval the host waits between attempts and how many
attempts there are; DurableTask.Core fails the task as soon as the last attempt fails.

* ``READ`` -- idempotent reads (GETs, instance views, ledger reads): retry a few times, quickly.
* ``WRITE`` -- check-then-act writes whose re-run is harmless (retag merge, assignments, pins,
  ledger upserts): retry a little longer, they must land for the rollout to be consistent.
* ``CLOSE`` -- closing a gate / writing a final state from a ``finally`` path: retry longest,
  a failing rollout must never leave a gate open.
* installPatches is *not* here: its POST keeps its once-only ledger claim and is never retried
  by the host (the wave re-drives it only when the activity says nothing was sent).
* The guard's cancel is deadline-bound and loops in the guard itself (see ``orchestrators.guard``).
"""

from __future__ import annotations

import azure.durable_functions as df

__all__ = ["CLOSE", "READ", "WRITE"]

READ = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=5)
WRITE = df.RetryOptions(first_retry_interval_in_milliseconds=15_000, max_number_of_attempts=6)
CLOSE = df.RetryOptions(first_retry_interval_in_milliseconds=30_000, max_number_of_attempts=10)
