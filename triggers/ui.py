"""The operator page (issue 9): served by the Function App under ``/api/ui/``. Being built."""

import azure.durable_functions as df

bp = df.Blueprint()
