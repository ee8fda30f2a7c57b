"""Test app for HTTP routes/auth, Event Grid deliveries and admin invocation."""

import json

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

RECEIVED: list[dict] = []


@app.route(route="hello/{name}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']}", status_code=200)


@app.route(route="anon", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def anon(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"method": req.method, "q": req.params.get("q"), "body": req.get_body().decode()}),
        mimetype="application/json",
    )


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="items/{id:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"item {int(req.route_params['id'])}")


@app.route(route="items/special", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item_special(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("special")


@app.route(route="files/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.route_params.get("path") or "")


@app.route(route="nothing", auth_level=func.AuthLevel.ANONYMOUS)
def nothing(req: func.HttpRequest):  # "-> None" is refused by the worker (return annotation vs "http")
    return None


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["name"], None, json.loads(body) if body else None)
    return client.create_check_status_response(req, instance_id)


@app.event_grid_trigger(arg_name="event")
@app.durable_client_input(client_name="client")
async def on_event(event: func.EventGridEvent, client) -> None:
    await client.start_new("record_event", event.id.replace("/", "_"), {
        "id": event.id, "type": event.event_type, "subject": event.subject, "data": event.get_json(),
    })


@app.event_grid_trigger(arg_name="event")
def plain_event(event) -> None:
    kind = getattr(event, "event_type", None) or getattr(event, "type", None)
    RECEIVED.append({"id": event.id, "kind": kind, "cls": type(event).__name__})


@app.orchestration_trigger(context_name="context")
def record_event(context: df.DurableOrchestrationContext):
    value = context.get_input()
    echoed = yield context.call_activity("echo", value)
    return echoed


@app.activity_trigger(input_name="value")
def echo(value):
    return value
