"""Test app for the Azure-parity checks of the local host (issue 14 items 2, 3, 5, 10, 11)."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.activity_trigger(input_name="value")
def echo(value):
    return value


@app.activity_trigger(input_name="value")
def always_fails(value):
    raise RuntimeError(f"attempt failed: {value}")


@app.orchestration_trigger(context_name="context")
def big_status(context: df.DurableOrchestrationContext):
    """Sets the custom status given as input, then schedules one activity."""
    context.set_custom_status("small")
    yield context.call_activity("echo", 1)
    context.set_custom_status(context.get_input())
    yield context.call_activity("echo", 2)
    return "done"


@app.orchestration_trigger(context_name="context")
def retry_twice(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=3_600_000, max_number_of_attempts=2)
    try:
        yield context.call_activity_with_retry("always_fails", options, "x")
    except Exception as exc:  # the last attempt's failure
        return {"failedAt": context.current_utc_datetime.isoformat(), "error": str(exc)[:60]}
    return "unexpected"


@app.orchestration_trigger(context_name="context")
def waits(context: df.DurableOrchestrationContext):
    value = yield context.wait_for_external_event("Go")
    return value


@app.orchestration_trigger(context_name="context")
def versioned(context: df.DurableOrchestrationContext):
    """Returns its own version and, when asked (input {"child": true, "childVersion": ...}), its child's."""
    spec = context.get_input() or {}
    if spec.get("child"):
        child = yield context.call_sub_orchestrator("versioned", None, version=spec.get("childVersion"))
        return {"version": context.version, "child": child}
    return {"version": context.version}


@app.route(route="HttpTrigger", methods=["GET"])
def http_trigger(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], None, None)
    return client.create_check_status_response(req, instance_id)


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    return None


@app.orchestration_trigger(context_name="context")
def sleeps(context: df.DurableOrchestrationContext):
    """One durable timer an hour ahead."""
    from datetime import timedelta

    yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    return "woke"
