"""A rollout-like workload for the crash/restart test: fan-out activities, soak timers, an approval."""

import json
import os
import time
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="start", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new("rollout", None, json.loads(req.get_body() or b"null"))
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def rollout(context: df.DurableOrchestrationContext):
    cfg = context.get_input()
    results = []
    for ring in range(cfg["rings"]):
        context.set_custom_status({"ring": ring, "stage": "patching"})
        batch = yield context.task_all(
            [context.call_activity("patch", {"ring": ring, "vm": vm}) for vm in range(cfg["vms"])]
        )
        results.extend(batch)
        context.set_custom_status({"ring": ring, "stage": "soaking"})
        yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
        if ring == 0:
            context.set_custom_status({"ring": ring, "stage": "approval"})
            approval = yield context.wait_for_external_event("Approve")
            results.append(f"approved:{approval}")
    return results


@app.activity_trigger(input_name="work")
def patch(work: dict) -> str:
    """A side effect (a line in a log file) that takes a little real time."""
    time.sleep(float(os.environ.get("PATCH_SECONDS", "0.3")))
    with open(os.environ["ROLLOUT_LOG"], "a", encoding="utf-8") as fh:
        fh.write(f"{work['ring']}:{work['vm']}\n")
    return f"patched {work['ring']}:{work['vm']}"
