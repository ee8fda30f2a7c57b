"""The operator's command line over the HTTP API: ``python -m patchrings rollouts ...``.

Why a CLI over the HTTP API (and not over the Durable or ARM APIs): the API is where identity,
approval rules and the ledger are enforced, so a script can do exactly what a person may do and no
more. It runs on an operator's machine, not in the Function App: stdlib ``urllib`` for HTTP,
``azure-identity`` (already a runtime dependency of the app) only when ``--entra-scope`` asks for
an Entra ID token, and ``rich`` only if it is installed and output goes to a terminal (plain
aligned tables otherwise, so output piped to a file or ``grep`` is stable).

Modules: :mod:`.client` (HTTP, errors), :mod:`.render` (tables), :mod:`.commands` (argparse and
the ``rollouts`` verbs).
"""

from patchrings.cli.client import ApiClient, ApiError
from patchrings.cli.commands import add_rollouts_parser, run_rollouts

__all__ = ["ApiClient", "ApiError", "add_rollouts_parser", "run_rollouts"]
