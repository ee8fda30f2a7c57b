"""Test app for the local host: one function per durable feature the host must support."""

import json
import threading
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
bp = df.Blueprint()

_attempts: dict[str, int] = {}
_lock = threading.Lock()


# ---------------------------------------------------------------- HTTP entry points
@app.route(route="orchestrators/{functionName}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["functionName"], None, payload)
    return client.create_check_status_response(req, instance_id)


@app.route(route="open/{name?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def open_hello(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name") or req.params.get("name") or "world"
    return func.HttpResponse(json.dumps({"hello": name}), mimetype="application/json")


@app.route(route="items/{id:int}", methods=["GET", "PUT"])
def item(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"id": int(req.route_params["id"]), "method": req.method, "fn": context.function_name}),
        mimetype="application/json",
    )


# ---------------------------------------------------------------- activities
@app.activity_trigger(input_name="name")
def hello(name: str) -> str:
    return f"Hello {name}"


@bp.activity_trigger(input_name="payload", activity="Double")
def double_impl(payload: int) -> int:
    return payload * 2


@app.activity_trigger(input_name="spec")
def flaky(spec: dict) -> str:
    """Fails ``spec['fail']`` times for ``spec['key']``, then succeeds."""
    with _lock:
        n = _attempts[spec["key"]] = _attempts.get(spec["key"], 0) + 1
    if n <= spec["fail"]:
        raise RuntimeError(f"{spec['key']} attempt {n} failed")
    return f"{spec['key'].split(':')[-1]} ok after {n}"


@app.activity_trigger(input_name="value")
async def async_echo(value):
    return {"echo": value}


# ---------------------------------------------------------------- orchestrators
@app.orchestration_trigger(context_name="context")
def hello_sequence(context: df.DurableOrchestrationContext):
    data = context.get_input() or {}
    out = []
    for name in data.get("names", ["Tokyo", "Seattle"]):
        out.append((yield context.call_activity("hello", name)))
    context.set_custom_status({"done": len(out)})
    return out


@app.orchestration_trigger(context_name="context", orchestration="FanOut")
def fan_out_impl(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("Double", i) for i in range(n)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def parallel_retries(context: df.DurableOrchestrationContext):
    token = context.get_input()
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=3)
    specs = [("a", 1), ("b", 2), ("c", 0), ("d", 99)]
    tasks = [context.call_activity_with_retry("flaky", opts, {"key": f"{token}:{k}", "fail": f})
             for k, f in specs]
    results = yield context.task_all(tasks[:3])
    try:
        results.append((yield tasks[3]))
    except Exception as exc:
        results.append(f"gave up: {exc}")
    return results


@app.orchestration_trigger(context_name="context")
def long_sleep(context: df.DurableOrchestrationContext):
    days = context.get_input()
    start = context.current_utc_datetime
    yield context.create_timer(start + timedelta(days=days))
    return (context.current_utc_datetime - start).total_seconds()


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    """Race an external event against a timeout; optionally forget to cancel the timer."""
    cfg = context.get_input() or {}
    timeout = context.create_timer(context.current_utc_datetime + timedelta(hours=cfg.get("hours", 24)))
    event = context.wait_for_external_event("Approval")
    winner = yield context.task_any([event, timeout])
    if winner == event:
        if cfg.get("cancel", True):
            timeout.cancel()
        value = event.result
        return {"decision": "event", "value": value, "type": type(value).__name__}
    return {"decision": "timeout"}


@app.orchestration_trigger(context_name="context")
def buffered_event(context: df.DurableOrchestrationContext):
    first = yield context.call_activity("hello", "early")
    value = yield context.wait_for_external_event("Go")
    return [first, value]


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext):
    value = context.get_input()
    if value == "fail":
        yield context.call_activity("flaky", {"key": f"{context.instance_id}:x", "fail": 99})
    doubled = yield context.call_activity("Double", value)
    return {"child": context.instance_id, "parent": context.parent_instance_id, "value": doubled}


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    a = yield context.call_activity("hello", "p")
    b = yield context.call_activity("hello", "q")
    c = yield context.call_activity("hello", "r")
    explicit = yield context.call_sub_orchestrator("child", 5, f"{context.instance_id}:explicit")
    implicit = yield context.call_sub_orchestrator("child", 7)
    try:
        yield context.call_sub_orchestrator("child", "fail")
        failed = None
    except Exception as exc:
        failed = str(exc)
    return {"greetings": [a, b, c], "explicit": explicit, "implicit": implicit, "failed": failed}


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    n = context.get_input() or 0
    if n < 3:
        yield context.create_timer(context.current_utc_datetime + timedelta(minutes=1))
        context.continue_as_new(n + 1)
        return None
    return {"final": n, "id": context.instance_id}


@app.orchestration_trigger(context_name="context")
def failing(context: df.DurableOrchestrationContext):
    yield context.call_activity("hello", "x")
    raise ValueError("orchestrator broke")


@app.orchestration_trigger(context_name="context")
def fail_fast(context: df.DurableOrchestrationContext):
    """task_all where one activity fails while a 1 h timer is still open (completion gating)."""
    timer = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    work = context.call_activity("flaky", {"key": f"{context.instance_id}:ff", "fail": 99})
    yield context.task_all([work, timer])
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def waits_forever(context: df.DurableOrchestrationContext):
    context.set_custom_status("waiting")
    value = yield context.wait_for_external_event("Never")
    return value


@app.orchestration_trigger(context_name="context")
def uses_async_activity(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("async_echo", context.get_input()))


app.register_functions(bp)


VERSION = {"v": 1}


@app.orchestration_trigger(context_name="context")
def changing(context: df.DurableOrchestrationContext):
    """Deliberately non-deterministic: the test flips VERSION while an instance is waiting."""
    if VERSION["v"] == 1:
        yield context.call_activity("hello", "v1")
    else:
        yield context.call_activity("Double", 1)
    yield context.wait_for_external_event("Next")
    return "done"


@app.orchestration_trigger(context_name="context")
def retry_child(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("flaky", context.get_input()))


@app.orchestration_trigger(context_name="context")
def sub_retry_parent(context: df.DurableOrchestrationContext):
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    spec = {"key": f"{context.instance_id}:c", "fail": 1}
    return (yield context.call_sub_orchestrator_with_retry("retry_child", opts, spec))


@app.orchestration_trigger(context_name="context")
def uses_call_http(context: df.DurableOrchestrationContext):
    return (yield context.call_http("GET", "http://127.0.0.1:9/unused"))
