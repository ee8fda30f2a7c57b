"""The local host refuses what Azure refuses (issue 14 items 2, 3, 5, 10, 11).

Each behaviour names the source it was taken from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_http import http

from emulator.clock import make_clock
from emulator.host.testing import HostThread

pytestmark = pytest.mark.emulator

APPS = Path(__file__).resolve().parent / "apps"
START = "2025-01-01T12:00:00Z"


@pytest.fixture(scope="module")
def parity() -> Iterator[HostThread]:
    clock = make_clock("skip", start=START)
    with HostThread(APPS / "parity", clock) as ht:
        yield ht
    clock.close()


def run(ht: HostThread, name: str, value: Any = None) -> Any:
    iid = ht.call(ht.client().start_new(name, None, value))
    return ht.wait_for(iid)


# ---------------------------------------------------------------- 14.2 custom status size
# Azure/azure-functions-durable-extension: OutOfProcOrchestrationShim.ScheduleDurableTaskEvents ->
# DurableOrchestrationContext.SetCustomStatus -> MessagePayloadDataConverter.Serialize(value, 16):
# (int)(UTF-16 bytes / 1024.0) > 16 throws ArgumentException, the orchestration fails.
# A JSON string of n characters is n + 2 UTF-16 code units: 8,701 chars = 17,406 bytes (16 KB
# truncated, accepted); 8,702 chars = 17,408 bytes = 17 KB (refused).

def test_custom_status_at_the_limit_is_accepted(parity: HostThread) -> None:
    status = run(parity, "big_status", "x" * 8701)
    assert status.runtime_status.value == "Completed"
    assert status.custom_status == "x" * 8701


def test_custom_status_is_measured_in_utf16_not_utf8(parity: HostThread) -> None:
    status = run(parity, "big_status", "€" * 8701)  # 26 KB in UTF-8, 17,406 bytes in UTF-16
    assert status.runtime_status.value == "Completed"


def test_custom_status_just_over_the_limit_fails_the_orchestration(parity: HostThread) -> None:
    status = run(parity, "big_status", "x" * 8702)
    assert status.runtime_status.value == "Failed"
    assert status.output == ("Orchestrator function 'big_status' failed: The UTF-16 size of the JSON-serialized "
                             "payload must not exceed 16 KB. The current payload size is 17 KB.")
    assert status.custom_status == "small"  # the oversized value was never stored
    history = parity.history(status.instance_id)
    assert sum(1 for e in history if e["EventType"] == 4) == 1  # the second activity was never scheduled


# ---------------------------------------------------------------- 14.3 retries
# Azure/durabletask src/DurableTask.Core/RetryInterceptor.cs (PR #661, "Fixed retry interceptor
# regression"): after the last failed attempt, CreateTimer(CurrentUtcDateTime, "Dummy timer for
# back-compat") -- a timer that fires at once -- then the last exception is thrown. The reference's
# "no extra timer" is not what DTFx does; the SDK 1.7 RetryAbleTask also waits for that timer.

def test_a_retried_task_fails_as_soon_as_the_last_attempt_fails(parity: HostThread) -> None:
    status = run(parity, "retry_twice")  # 2 attempts, 1 h apart
    assert status.runtime_status.value == "Completed"
    assert status.output["error"].startswith("Activity function 'always_fails' failed: RuntimeError")
    assert status.output["failedAt"].startswith("2025-01-01T13:00:00")  # not 14:00: no second interval
    hist = parity.history(status.instance_id)
    timers = [(e["EventId"], e["Timestamp"], e["FireAt"]) for e in hist if e["EventType"] == 10]
    assert [e["EventType"] for e in hist if e["EventType"] in (4, 6, 10, 11)] == [4, 6, 10, 11, 4, 6, 10, 11]
    assert timers[0] == (1, "2025-01-01T12:00:00.000000Z", "2025-01-01T13:00:00.000000Z")  # retry interval
    assert timers[1] == (3, "2025-01-01T13:00:00.000000Z", "2025-01-01T13:00:00.000000Z")  # fires at once


# ---------------------------------------------------------------- 14.3 terminate is asynchronous
# Azure/azure-functions-durable-extension DurableClient.TerminateAsync -> DTFx
# TaskHubClient.TerminateInstanceAsync: an ExecutionTerminated *message* is sent to the instance's
# queue; the status changes when the orchestration dispatcher processes it.

def test_terminate_returns_before_the_status_changes(parity: HostThread) -> None:
    client = parity.client()
    iid = parity.call(client.start_new("waits", None, None))
    parity.wait_for(iid, statuses=("Running",))
    engine = parity.host.engine
    assert engine is not None

    def terminate_and_read() -> str:  # one loop turn: the scheduler cannot run in between
        engine.terminate(iid, "enough")
        inst = engine.get(iid)
        assert inst is not None
        return inst.status

    assert parity.run_sync(terminate_and_read) == "Running"  # code relying on an immediate change sees this
    status = parity.wait_for(iid, show_history=True)
    assert status.runtime_status.value == "Terminated" and status.output == "enough"
    assert [e["EventType"] for e in status.historyEvents][-2:] == ["ExecutionTerminated", "ExecutionCompleted"]


def test_terminate_of_a_suspended_instance_is_processed(parity: HostThread) -> None:
    client = parity.client()
    iid = parity.call(client.start_new("waits", None, None))
    parity.wait_for(iid, statuses=("Running",))
    parity.call(client.suspend(iid, "pause"))
    parity.call(client.terminate(iid, "stop"))
    status = parity.wait_for(iid)
    assert status.runtime_status.value == "Terminated" and status.output == "stop"
    engine = parity.host.engine
    assert engine is not None and parity.run_sync(lambda: engine.idle)


# ---------------------------------------------------------------- 14.3 instance ids
# Azure/azure-functions-durable-extension DurableClient.StartNewAsync (MaxInstanceIdLength = 256,
# "must not start with @") -> HttpApiHandler: ArgumentException -> 400 "One or more of the
# arguments submitted is incorrect" with the exception's message.

@pytest.mark.parametrize(
    ("instance_id", "message"),
    [
        ("@entity", "instanceId (Parameter 'Orchestration instance ids must not start with @.')"),
        ("x" * 257, "Instance ID lengths must not exceed 256 characters."),
        ("a\x7fb", "instanceId (Parameter 'Orchestration instance ids must not contain /, \\, #, ?, "
                   "or control characters.')"),
    ],
)
def test_invalid_instance_ids_are_refused_by_the_client_api(parity: HostThread, instance_id: str,
                                                            message: str) -> None:
    with pytest.raises(Exception) as err:  # the SDK raises Exception(ExceptionMessage) on a 400
        parity.call(parity.client().start_new("waits", instance_id, None))
    assert str(err.value) == message
    assert parity.host.engine is not None and parity.host.engine.get(instance_id) is None


def test_an_instance_id_of_256_characters_is_accepted(parity: HostThread) -> None:
    iid = parity.call(parity.client().start_new("waits", "y" * 256, None))
    assert iid == "y" * 256
    parity.call(parity.client().terminate(iid, "done"))
    assert parity.wait_for(iid).runtime_status.value == "Terminated"


# ---------------------------------------------------------------- 14.5 orchestration versioning
# SDK 1.7: start_new(..., version=) sends ?version= on the start URL; call_sub_orchestrator(...,
# version=) puts "version" in the CallSubOrchestrator action; context.version reads
# ExecutionStarted.Version. host.json extensions.durableTask.defaultVersion applies to instances
# and sub-orchestrations started without one (Microsoft Learn "Orchestration versioning in Durable
# Functions"; microsoft/durabletask-java#240 for sub-orchestrations).

def _start(ht: HostThread, name: str, value: Any = None, version: str | None = None) -> Any:
    iid = ht.call(ht.client().start_new(name, None, value, version=version))
    return ht.wait_for(iid)


def test_version_on_start_and_on_sub_orchestrations(parity: HostThread) -> None:
    assert _start(parity, "versioned", None, "2.0").output == {"version": "2.0"}
    status = _start(parity, "versioned", {"child": True, "childVersion": "3.1"}, "1.0")
    assert status.output == {"version": "1.0", "child": {"version": "3.1"}}
    hist = parity.history(status.instance_id)
    started = next(e for e in hist if e["EventType"] == 0)
    created = next(e for e in hist if e["EventType"] == 7)
    assert started["Version"] == "1.0" and created["Version"] == "3.1"
    assert _start(parity, "versioned").output == {"version": ""}  # no defaultVersion: empty, as in Azure


def _app_copy(tmp_path: Path, host_json: str | None) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "function_app.py").write_text((APPS / "parity" / "function_app.py").read_text())
    if host_json is not None:
        (app / "host.json").write_text(host_json)
    return app


def test_default_version_from_host_json(tmp_path: Path, host_factory: Any) -> None:
    app = _app_copy(tmp_path, '{"version": "2.0", "extensions": {"durableTask": {"defaultVersion": "1.5"}}}')
    ht = host_factory(app)
    assert _start(ht, "versioned").output == {"version": "1.5"}
    status = _start(ht, "versioned", {"child": True}, "2.0")
    assert status.output == {"version": "2.0", "child": {"version": "1.5"}}


# ---------------------------------------------------------------- 14.5 host.json
# Azure/azure-functions-host HostJsonFileConfigurationSource: LoadHostConfig ("Unable to parse host
# configuration file '<path>'.") and InitializeHostConfig (required "version": "2.0").

@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"version": "2.0", ', "Unable to parse host configuration file '{path}'."),
        ("[]", "Unable to parse host configuration file '{path}'."),
        ('{"extensions": {}}', "The host.json file is missing the required 'version' property. "
                               "See https://aka.ms/functions-hostjson for steps to migrate the configuration file."),
        ('{"version": "3.0"}', "'3.0' is an invalid value for host.json 'version' property. We recommend you set "
                               "the 'version' property to '2.0'. This does not correspond to the function runtime "
                               "version, only to the schema version of the host.json file. See "
                               "https://aka.ms/functions-hostjson for more information on this configuration file."),
    ],
)
def test_a_bad_host_json_is_refused_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    from emulator.host.server import HostConfigError

    app = _app_copy(tmp_path, text)
    clock = make_clock("skip")
    try:
        with pytest.raises(HostConfigError) as err, HostThread(app, clock):
            pass
    finally:
        clock.close()
    assert str(err.value).startswith(message.format(path=app / "host.json"))
    assert str(app / "host.json") in str(err.value)
    assert err.value.code == "HOST_CONFIG"


def test_host_json_with_comments_or_empty_is_accepted(tmp_path: Path) -> None:
    from emulator.host.server import load_host_json

    app = _app_copy(tmp_path, '{\n  // a comment\n  "version": "2.0" /* and "another" */\n}')
    assert load_host_json(app) == {"version": "2.0"}
    (app / "host.json").write_text("{}")
    assert load_host_json(app) == {"version": "2.0"}


# ---------------------------------------------------------------- 14.5 route matching ignores case
# ASP.NET Core routing compares literal segments (the route prefix included) case-insensitively.

def test_route_prefix_and_routes_match_case_insensitively(parity: HostThread) -> None:
    for path in ("/api/HttpTrigger", "/API/HttpTrigger", "/Api/httptrigger"):
        status, _, body = http("GET", f"{parity.base_url}{path}")
        assert (status, body) == (200, b"hello"), path
    assert http("GET", f"{parity.base_url}/apix/HttpTrigger")[0] == 404


def test_a_custom_route_prefix_is_honoured_ignoring_case(tmp_path: Path, host_factory: Any) -> None:
    app = _app_copy(tmp_path, '{"version": "2.0", "extensions": {"http": {"routePrefix": "Fn"}}}')
    ht = host_factory(app)
    assert http("GET", f"{ht.base_url}/fn/HttpTrigger")[0] == 200
    assert http("GET", f"{ht.base_url}/api/HttpTrigger")[0] == 404


# ---------------------------------------------------------------- 14.10 keys
# Azure: /runtime/webhooks/{extension} is authorised at system level: the extension's system key
# (durabletask_extension, eventgrid_extension) or the master key, as code= or x-functions-key;
# 401 otherwise. The durable client binding's URLs carry the durabletask_extension key. The rpc
# endpoint (rpcBaseUrl, /durabletask/) is local to the worker on Azure and takes no key.

EVENT = {"id": "e1", "eventType": "Custom.Event", "subject": "s", "eventTime": "2025-01-01T12:00:00Z",
         "data": {}, "dataVersion": "1"}


def test_durable_webhooks_need_the_durabletask_system_key(parity: HostThread) -> None:
    iid = parity.call(parity.client().start_new("waits", None, None))
    base = f"{parity.base_url}/runtime/webhooks/durabletask/instances/{iid}"
    durable_key = parity.host.system_keys["durabletask_extension"]
    assert http("GET", base)[0] == 401
    assert http("GET", f"{base}?code={parity.function_key}")[0] == 401  # a function key is not enough
    assert http("GET", f"{base}?code=wrong")[0] == 401
    assert http("POST", f"{base}/raiseEvent/Go", body=1)[0] == 401
    assert http("GET", f"{parity.base_url}/runtime/webhooks/durabletask/instances")[0] == 401
    assert http("GET", f"{base}?code={durable_key}")[0] == 202
    assert http("GET", base, headers={"x-functions-key": durable_key})[0] == 202
    assert http("GET", f"{base}?code={parity.host.master_key}")[0] == 202
    assert http("GET", f"{parity.base_url}/durabletask/instances/{iid}")[0] == 202  # rpc: no key
    assert http("POST", f"{base}/raiseEvent/Go?code={durable_key}", body=1)[0] == 202
    assert parity.wait_for(iid).output == 1


def test_urls_handed_out_carry_the_system_key(parity: HostThread) -> None:
    import json

    binding = json.loads(parity.host.client_binding_json())
    durable_key = parity.host.system_keys["durabletask_extension"]
    assert binding["requiredQueryStringParameters"] == f"code={durable_key}"
    status, _, body = http("POST", f"{parity.base_url}/api/start/waits")
    assert status == 202
    links = json.loads(body)
    assert f"code={durable_key}" in links["statusQueryGetUri"]
    assert http("GET", links["statusQueryGetUri"])[0] == 202
    raise_url = links["sendEventPostUri"].replace("{eventName}", "Go")
    assert http("POST", raise_url, body="done")[0] == 202
    assert parity.wait_for(links["id"]).output == "done"


def test_eventgrid_webhook_needs_the_eventgrid_system_key(parity: HostThread) -> None:
    url = f"{parity.base_url}/runtime/webhooks/eventgrid?functionName=on_event"
    headers = {"aeg-event-type": "Notification"}
    assert http("POST", url, body=[EVENT], headers=headers)[0] == 401
    assert http("POST", f"{url}&code={parity.function_key}", body=[EVENT], headers=headers)[0] == 401
    assert http("OPTIONS", url, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})[0] == 401
    assert parity.host.eventgrid_url("on_event") == f"{url}&code={parity.host.system_keys['eventgrid_extension']}"
    assert http("POST", parity.host.eventgrid_url("on_event"), body=[EVENT], headers=headers)[0] == 202
    assert http("POST", f"{url}&code={parity.host.master_key}", body=[EVENT], headers=headers)[0] == 202


def test_system_keys_can_be_set_and_default_from_the_function_key(host_factory: Any) -> None:
    from emulator.host.server import system_key

    ht = host_factory("parity", function_key="fk", settings={
        "FUNCTIONS_SYSTEM_KEY_EVENTGRID_EXTENSION": "eg-key"})
    assert ht.host.system_keys == {"eventgrid_extension": "eg-key",
                                   "durabletask_extension": system_key("fk", "durabletask_extension")}
    assert ht.host.eventgrid_url("on_event").endswith("&code=eg-key")
    assert system_key("fk", "durabletask_extension") != "fk"


# ---------------------------------------------------------------- 14.11 clock routes + long-poll
# The shared clock's HTTP interface (emulator.clock_http) on the host, and a long-poll on instance
# status that suspends the caller's clock lease while it waits (Temporal's time-skipping server:
# skipping is locked by default and unlocked while a client waits for a result).

def _get_json(url: str) -> tuple[int, Any, dict[str, str]]:
    import json

    status, headers, body = http("GET", url)
    return status, json.loads(body) if body else None, headers


def test_the_clock_api_is_mounted_on_the_host(host_factory: Any) -> None:
    ht = host_factory("parity")
    status, state, _ = _get_json(f"{ht.base_url}/admin/clock")
    assert status == 200 and state["mode"] == "skip" and state["now"].startswith("2025-01-01T12:00:00")


def test_long_poll_lets_time_skip_only_while_the_lease_holder_waits(host_factory: Any) -> None:
    import json

    ht = host_factory("parity")
    status, _, body = http("POST", f"{ht.base_url}/admin/clock/lease", body={"ttlSeconds": 120, "holder": "test"})
    assert status == 200
    lease = json.loads(body)["leaseId"]
    iid = ht.call(ht.client().start_new("sleeps", None, None))
    first = ht.wait_for(iid, statuses=("Running",))
    after = first.last_updated_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    # holding the lease without handing it to the long-poll: time stands still, the wait times out
    code, held, _ = _get_json(f"{ht.base_url}/admin/instances/{iid}/wait?after={after}&timeout=0.5")
    assert code == 202 and held["runtimeStatus"] == "Running"
    assert ht.clock.now().isoformat().startswith("2025-01-01T12:00:00")
    # handing the lease to the long-poll: the clock jumps to the timer while it waits
    code, done, _ = _get_json(f"{ht.base_url}/admin/instances/{iid}/wait?after={after}&lease={lease}&timeout=60")
    assert code == 200 and done["runtimeStatus"] == "Completed" and done["output"] == "woke"
    assert done["lastUpdatedTime"] == "2025-01-01T13:00:00Z"
    assert set(done) >= {"name", "instanceId", "runtimeStatus", "input", "customStatus", "output",
                         "createdTime", "lastUpdatedTime"}
    # after the answer the lease blocks jumps again
    _, state, _ = _get_json(f"{ht.base_url}/admin/clock")
    mine = next(item for item in state["leases"] if item["leaseId"] == lease)
    assert mine["suspended"] is False and mine["blocking"] is True


def test_long_poll_answers_on_the_next_update(parity: HostThread) -> None:
    import concurrent.futures

    iid = parity.call(parity.client().start_new("waits", None, None))
    parity.wait_for(iid, statuses=("Running",))
    code, _, headers = _get_json(f"{parity.base_url}/admin/instances/{iid}/wait")  # no after: at once
    assert code == 202
    precise = headers["X-Last-Updated"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_get_json, f"{parity.base_url}/admin/instances/{iid}/wait?after={precise}&timeout=60")
        parity.call(parity.client().raise_event(iid, "Go", "now"))
        code, body, _ = waiting.result(timeout=90)
    assert body["runtimeStatus"] in ("Running", "Completed")  # the first update after `after`
    assert parity.wait_for(iid).output == '"now"'  # the Python client double-encodes event data


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [("timeout=61", 400, "timeout"), ("timeout=x", 400, "timeout"), ("after=yesterday", 400, "after")],
)
def test_long_poll_refuses_bad_input_naming_the_field(parity: HostThread, query: str, status: int,
                                                      field: str) -> None:
    iid = parity.call(parity.client().start_new("waits", None, None))
    code, body, _ = _get_json(f"{parity.base_url}/admin/instances/{iid}/wait?{query}")
    assert code == status and body["error"]["field"] == field


def test_long_poll_of_an_unknown_instance_is_404(parity: HostThread) -> None:
    code, body, _ = _get_json(f"{parity.base_url}/admin/instances/nope/wait?timeout=1")
    assert code == 404 and body["error"]["code"] == "InstanceNotFound"
