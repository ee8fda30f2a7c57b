"""Durable activities: the app's side effects, one module per Azure service or concern.

Each module exports a ``df.Blueprint`` named ``bp`` (``function_app.py`` registers them) whose
activity functions are thin wrappers: they fetch the process-wide dependencies from
:func:`activities.deps.deps` and call a plain function that takes those dependencies as
arguments. Tests call the plain functions with fakes or simulator-backed clients.

Activity names and JSON shapes are the contract in docs/architecture.md ("Activity contract").
"""

MODULES = ("plan", "compute", "tags", "maintenance", "ledger")
