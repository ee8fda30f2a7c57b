"""Structured logs and Application Insights (patchrings/telemetry.py).

* a record logged inside an activity / orchestrator / HTTP invocation carries the rollout, with
  the functions instrumented exactly as ``telemetry.configure()`` does it at app start, and the
  instrumented functions still pass the real Python worker's indexing;
* no connection string: no exporter; a bogus one: start-up goes on (the real
  azure-monitor-opentelemetry refuses it, configure() logs and returns);
* ``extra={"rolloutId": ...}`` inside a bound context keeps working (no KeyError from makeRecord).
"""

from __future__ import annotations

import json
import logging
import sys
import types
from collections.abc import Iterator
from typing import Any, Dict  # noqa: UP035 -- the worker refuses PEP 585 annotations on entry points

import azure.durable_functions as df
import azure.functions as func
import pytest

from patchrings import telemetry

pytestmark = pytest.mark.unit
Payload = Dict[str, Any]  # noqa: UP006 -- as activities.Payload
log = logging.getLogger("patchrings.test.telemetry")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def capture() -> Iterator[Capture]:
    """A handler on the root logger, given the context filter the way configure() gives it."""
    handler = Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    telemetry.attach([handler])
    yield handler
    root.removeHandler(handler)
    log.setLevel(old_level)


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_state", {"instrumented": 0, "filtered": 0, "azureMonitor": False, "error": None})


def sample_blueprint() -> Any:
    bp = df.Blueprint()

    @bp.activity_trigger(input_name="payload")
    def start_install(payload: Payload) -> Dict[str, Any]:  # noqa: UP006
        log.info("installing %s", payload.get("vm"))
        return {"state": "started"}

    @bp.orchestration_trigger(context_name="context")
    def rollout_orchestrator(context: df.DurableOrchestrationContext) -> Any:
        log.info("orchestrating")
        return "done"
        yield  # a generator, as every orchestrator

    @bp.orchestration_trigger(context_name="context")
    def guard_orchestrator(context: df.DurableOrchestrationContext) -> Any:
        log.info("guarding")
        return "done"
        yield

    @bp.route(route="rollouts/{id}/rings/{ring}/approve", methods=["POST"])
    def approve(req: func.HttpRequest) -> func.HttpResponse:
        log.info("approving")
        return func.HttpResponse("ok")

    return bp


def app_with(bp: Any) -> Any:
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    return {str(f.get_function_name()): f for f in app.get_functions()}, app


def orchestration_body(instance: str, payload: Any) -> str:
    started = {"EventId": -1, "IsPlayed": False, "Timestamp": "2026-11-16T06:00:00Z"}
    return json.dumps({"history": [{"EventType": 12, **started},  # OrchestratorStarted, ExecutionStarted
                                   {"EventType": 0, "Input": json.dumps(payload), "Name": "o", "Version": "",
                                    **started}],
                       "input": json.dumps(payload), "instanceId": instance, "isReplaying": False,
                       "parentInstanceId": None})


def test_configure_instruments_the_imported_blueprints_and_records_carry_the_rollout(
        capture: Capture, fresh_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """As at app start: blueprint modules imported, then telemetry.configure(), then registration."""
    bp = sample_blueprint()
    monkeypatch.setitem(sys.modules, "activities.sample_for_test", types.SimpleNamespace(bp=bp))
    state = telemetry.configure(environ={})
    assert state["instrumented"] >= 3 and state["azureMonitor"] is False
    functions, _ = app_with(bp)

    functions["start_install"].get_user_function()({"rolloutId": "ro-1", "ring": "ring0", "vm": "r0-web-01"})
    functions["start_install"].get_user_function()(payload={"runId": "ro-2:ring0", "vm": "r0-web-02"})
    functions["rollout_orchestrator"].get_user_function()(orchestration_body("ro-3", {"plan": {}}))
    functions["rollout_orchestrator"].get_user_function()(
        types.SimpleNamespace(body=orchestration_body("ro-4:ring1:w0", {"ring": "ring1"})))
    functions["guard_orchestrator"].get_user_function()(orchestration_body("guard-ro-5-20261116", {}))
    # HTTP functions are not wrapped (the Durable client middleware is unwrapped by one level in
    # tests and tools); they bind explicitly when they want to: telemetry.bind(**http_fields(...))
    assert not hasattr(functions["approve"].get_user_function(), "__patchrings_log_context__")
    req = func.HttpRequest("POST", "http://h/api/rollouts/ro-6/rings/ring2/approve", body=b"{}",
                           route_params={"id": "ro-6", "ring": "ring2"})
    with telemetry.bind(function="approve", **telemetry.http_fields({"req": req})):
        functions["approve"].get_user_function()(req=req)
    log.info("outside any invocation")

    mine = [r for r in capture.records if r.name == log.name]
    seen = [(r.getMessage(), getattr(r, "rolloutId", None), getattr(r, "ring", None), getattr(r, "function", None))
            for r in mine]
    assert seen == [
        ("installing r0-web-01", "ro-1", "ring0", "start_install"),
        ("installing r0-web-02", "ro-2", None, "start_install"),
        ("orchestrating", "ro-3", None, "rollout_orchestrator"),
        ("orchestrating", "ro-4", "ring1", "rollout_orchestrator"),
        ("guarding", None, None, "guard_orchestrator"),  # a guard's instance id is not a rollout id
        ("approving", "ro-6", "ring2", "approve"),
        ("outside any invocation", None, None, None),
    ]
    assert getattr(mine[3], "instanceId", None) == "ro-4:ring1:w0"
    assert telemetry.current() == {}  # nothing leaks out of an invocation


def test_instrumented_functions_keep_their_signature_for_the_real_worker(fresh_state: None) -> None:
    from emulator.host.indexing import worker_validate

    bp = sample_blueprint()
    assert telemetry.instrument(bp) == 3  # the activity and the two orchestrators
    assert telemetry.instrument(bp) == 0  # idempotent
    functions, _ = app_with(bp)
    worker_validate(list(functions.values()))  # the Python worker's own indexing accepts them
    activity = functions["start_install"].get_user_function()
    assert list(__import__("inspect").signature(activity).parameters) == ["payload"]


async def _async_probe(req: func.HttpRequest) -> str:
    log.info("async")
    return str(telemetry.current().get("rolloutId"))


def test_async_functions_stay_coroutines(capture: Capture) -> None:
    import asyncio
    import inspect

    wrapped = telemetry._wrap(_async_probe, "probe", lambda a, k: telemetry.http_fields(k))
    assert inspect.iscoroutinefunction(wrapped)
    req = func.HttpRequest("GET", "http://h/api/rollouts/ro-7", body=b"", route_params={"id": "ro-7"})
    assert asyncio.run(wrapped(req=req)) == "ro-7"


def test_extra_with_the_same_name_keeps_its_value(capture: Capture) -> None:
    with telemetry.bind(rolloutId="ro-bound", ring="ring1"):
        log.info("explicit", extra={"rolloutId": "ro-extra"})  # makeRecord would raise if a factory set it
    record = capture.records[-1]
    assert (record.rolloutId, record.ring) == ("ro-extra", "ring1")  # type: ignore[attr-defined]


def test_key_value_lines() -> None:
    formatter = telemetry.KeyValueFormatter()
    record = logging.LogRecord("patchrings.activities.compute", logging.INFO, __file__, 1,
                               'installPatches started on %s "now"', ("r0-web-01",), None)
    record.created, record.msecs = 1763272800.25, 250.0  # 2025-11-16T06:00:00.250Z
    with telemetry.bind(rolloutId="ro-1", ring="ring0", function="start_install"):
        line = formatter.format(record)  # no filter on this path: the formatter reads the context
    assert line == ('time=2025-11-16T06:00:00.250Z level=INFO logger=patchrings.activities.compute rollout=ro-1 '
                    'ring=ring0 function=start_install msg="installPatches started on r0-web-01 \\"now\\""')


def test_no_connection_string_installs_no_exporter(fresh_state: None) -> None:
    from opentelemetry import _logs, trace

    called: list[Any] = []
    state = telemetry.configure(environ={}, configure_azure_monitor=lambda **kw: called.append(kw))
    assert called == [] and state["azureMonitor"] is False and state["error"] is None
    assert telemetry.configure(environ={"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "},
                               configure_azure_monitor=lambda **kw: called.append(kw))["azureMonitor"] is False
    assert called == []
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    assert type(_logs.get_logger_provider()).__name__ == "ProxyLoggerProvider"
    assert not [h for h in logging.getLogger("patchrings").handlers if "opentelemetry" in type(h).__module__]


def test_a_bogus_connection_string_does_not_stop_start_up(fresh_state: None, caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    """The real azure-monitor-opentelemetry refuses it (ValueError) before installing anything."""
    from opentelemetry import trace

    with caplog.at_level(logging.WARNING, logger="patchrings.telemetry"):
        state = telemetry.configure(environ={"APPLICATIONINSIGHTS_CONNECTION_STRING": "not-a-connection-string"})
    assert state["azureMonitor"] is False
    assert "Invalid connection string" in str(state["error"])
    assert "Application Insights not configured" in caplog.text
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("exporter exploded")

    state = telemetry.configure(environ={"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"},
                                configure_azure_monitor=broken)
    assert state["azureMonitor"] is False and "exporter exploded" in str(state["error"])


def test_with_a_connection_string_the_app_loggers_and_spans_are_exported(fresh_state: None) -> None:
    calls: list[dict[str, Any]] = []
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000"}
    state = telemetry.configure(environ=env, configure_azure_monitor=lambda **kw: calls.append(kw))
    assert state["azureMonitor"] is True
    assert len(calls) == 1
    assert calls[0]["connection_string"] == env["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    assert calls[0]["logger_name"] == "patchrings"
    telemetry.configure(environ=env, configure_azure_monitor=lambda **kw: calls.append(kw))
    assert len(calls) == 1  # once per process
    # the span processor stamps the bound fields on spans (ARM calls become dependencies with rolloutId)
    processor = calls[0]["span_processors"][0]
    stamped: dict[str, Any] = {}
    span = types.SimpleNamespace(set_attributes=stamped.update)
    with telemetry.bind(rolloutId="ro-9", ring="ring2", function="pin_manifest"):
        processor.on_start(span)
    assert stamped == {"rolloutId": "ro-9", "ring": "ring2", "function": "pin_manifest"}


def test_an_entry_point_can_bind_itself_with_the_activities_decorator(capture: Capture, fresh_state: None) -> None:
    from activities import with_log_context
    from emulator.host.indexing import worker_validate

    bp = df.Blueprint()

    @bp.activity_trigger(input_name="payload")
    @with_log_context
    def retag_vms(payload: Payload) -> Dict[str, Any]:  # noqa: UP006
        log.info("retagging")
        return {}

    assert telemetry.instrument(bp) == 0  # already bound by its decorator: not wrapped twice
    functions, _ = app_with(bp)
    worker_validate(list(functions.values()))
    functions["retag_vms"].get_user_function()(payload={"rolloutId": "ro-8", "ring": "ring1", "vmIds": []})
    record = [r for r in capture.records if r.name == log.name][-1]
    assert (record.rolloutId, record.ring, record.function) == ("ro-8", "ring1", "retag_vms")  # type: ignore[attr-defined]


def test_entra_ingestion_uses_the_managed_identity_as_the_host_is_told(fresh_state: None) -> None:
    """infra/ disables key ingestion (DisableLocalAuth) and sets Authorization=AAD for the host."""
    from azure.identity import ManagedIdentityCredential

    calls: list[dict[str, Any]] = []
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
           "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD"}
    assert telemetry.configure(environ=env, configure_azure_monitor=lambda **kw: calls.append(kw))["azureMonitor"]
    assert isinstance(calls[0]["credential"], ManagedIdentityCredential)
    assert telemetry._ingestion_credential({}) == {}
    client = "ClientId=11111111-2222-3333-4444-555555555555"
    auth = {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"Authorization=AAD;{client}"}
    user_assigned = telemetry._ingestion_credential(auth)
    assert isinstance(user_assigned["credential"], ManagedIdentityCredential)
