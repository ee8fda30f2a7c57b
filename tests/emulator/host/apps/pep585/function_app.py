"""An app the Python worker refuses: one activity annotated with a PEP 585 generic.

The other functions are fine; the worker still refuses the whole app (issue 14.1).
"""

from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.activity_trigger(input_name="payload")
def good(payload: dict) -> dict:
    return payload


@app.activity_trigger(input_name="payload")
def pep585(payload: dict[str, Any]) -> dict:
    return payload


@app.orchestration_trigger(context_name="context")
def orch(context: df.DurableOrchestrationContext):
    result = yield context.call_activity("good", {})
    return result
