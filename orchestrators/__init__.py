"""Durable orchestrators of the PatchRings Function App, one module per concern.

Every module exports a ``df.Blueprint`` named ``bp``. Orchestrators are deterministic: no I/O,
no clocks other than ``context.current_utc_datetime``, no settings; side effects go through
activities called by the string names in :mod:`orchestrators.names`.
"""
