"""Durable activities: the app's side effects, one module per Azure service or concern.

Each module exports a ``df.Blueprint`` named ``bp`` (``function_app.py`` registers them) whose
activity functions are thin wrappers: they fetch the process-wide dependencies from
:mod:`patchrings.deps` and call a plain ``*_core`` function that takes those dependencies
as arguments. Tests call the cores with fakes or simulator-backed clients.

Activity names are in ``orchestrators/names.py``; their inputs (and the outputs orchestrators
read) are the dataclasses of :mod:`patchrings.boundary.activities`, read once by each entry point;
the JSON shapes are the contract in docs/architecture.md ("Activity contract", and its
"Activity contract: additions" for everything added since). The cores' collaborators are the
protocols of :mod:`patchrings.ports`.
"""

from typing import Any, Dict  # noqa: UP035 -- typing.Dict on purpose, see Payload

from patchrings.telemetry import activity_context as with_log_context

# The annotation every activity entry point uses for its input. It must be ``typing.Dict``, not
# ``dict[str, Any]``: the Python worker's ``validate_function_params`` refuses PEP 585 aliases
# (``types.GenericAlias`` is neither a ``type`` nor a typing generic) with "invalid non-type
# annotation", and one refused function stops the whole app from indexing in Azure.
Payload = Dict[str, Any]  # noqa: UP006 -- the worker refuses dict[str, Any]; see above

__all__ = ["Payload", "with_log_context"]
