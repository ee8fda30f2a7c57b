"""Orchestrations on the local host, driven through the real DurableOrchestrationClient over HTTP."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from emulator.host import history as h
from emulator.host.testing import HostThread

pytestmark = pytest.mark.emulator


def run(ht: HostThread, name: str, value: Any = None, instance_id: str | None = None) -> Any:
    iid = ht.call(ht.client().start_new(name, instance_id, value))
    return ht.wait_for(iid, show_history=True, show_history_output=True)


def types(history: list[dict[str, Any]]) -> list[str]:
    return [h.EVENT_NAMES[e["EventType"]] for e in history]


def test_sequence_returns_results_and_custom_status(basic: HostThread) -> None:
    status = run(basic, "hello_sequence", {"names": ["A", "B"]})
    assert status.runtime_status.value == "Completed"
    assert status.output == ["Hello A", "Hello B"]
    assert status.custom_status == {"done": 2}
    hist = basic.history(status.instance_id)
    assert types(hist)[:4] == ["OrchestratorStarted", "ExecutionStarted", "TaskScheduled", "OrchestratorCompleted"]
    scheduled = [e for e in hist if e["EventType"] == h.TASK_SCHEDULED]
    assert [(e["EventId"], e["Name"], e["Input"]) for e in scheduled] == [(0, "hello", '"A"'), (1, "hello", '"B"')]
    completed = [e for e in hist if e["EventType"] == h.TASK_COMPLETED]
    assert [(e["TaskScheduledId"], e["Result"]) for e in completed] == [(0, '"Hello A"'), (1, '"Hello B"')]
    assert hist[-1]["EventType"] == h.ORCHESTRATOR_COMPLETED
    assert hist[-2]["EventType"] == h.EXECUTION_COMPLETED and hist[-2]["Result"] == '["Hello A", "Hello B"]'
    assert all(e["IsPlayed"] for e in hist)
    friendly = [e["EventType"] for e in status.historyEvents]
    assert friendly == ["ExecutionStarted", "TaskCompleted", "TaskCompleted", "ExecutionCompleted"]
    assert status.historyEvents[1]["FunctionName"] == "hello"


def test_fan_out_is_batched_into_two_episodes(basic: HostThread) -> None:
    status = run(basic, "fanout", 200)  # durable names are case-insensitive; "FanOut" in the app
    assert status.runtime_status.value == "Completed"
    assert status.output == sum(2 * i for i in range(200))
    hist = basic.history(status.instance_id)
    assert types(hist).count("OrchestratorStarted") == 2
    assert sorted(e["EventId"] for e in hist if e["EventType"] == h.TASK_SCHEDULED) == list(range(200))
    assert basic.host.engine is not None and basic.host.engine.stats["duplicate_completions"] == 0


def test_four_parallel_retrying_activities(basic: HostThread) -> None:
    status = run(basic, "parallel_retries", "pr1")
    out = status.output
    assert out[:3] == ["a ok after 2", "b ok after 3", "c ok after 1"]
    assert out[3].startswith("gave up: Activity function 'flaky' failed: RuntimeError: pr1:d attempt 3 failed")
    assert basic.host.engine is not None and basic.host.engine.stats["duplicate_completions"] == 0
    hist = basic.history(status.instance_id)
    # ids: 4 first attempts (0-3), then one retry timer per failure and one new attempt per timer
    ids = [e["EventId"] for e in hist if e["EventType"] in (h.TASK_SCHEDULED, h.TIMER_CREATED)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    failures = [e for e in hist if e["EventType"] == h.TASK_FAILED]
    timers = [e for e in hist if e["EventType"] == h.TIMER_CREATED]
    assert len(failures) == 1 + 2 + 3  # a once, b twice, d three times
    assert len(timers) == len(failures)  # a timer after every failure (after the last: fires at once)
    fired = [e for e in hist if e["EventType"] == h.TIMER_FIRED]
    assert len(fired) == len(timers)


def test_retry_history_matches_the_dtfx_sequence(basic: HostThread) -> None:
    status = run(basic, "fail_fast")  # not retrying; used below only as a contrast
    assert status.runtime_status.value == "Failed"
    status = run(basic, "parallel_retries", "pr2")
    hist = basic.history(status.instance_id)
    d_ids = {e["EventId"] for e in hist if e["EventType"] == h.TASK_SCHEDULED
             and json.loads(e["Input"])["key"].endswith(":d")}
    seq = [(h.EVENT_NAMES[e["EventType"]], e.get("EventId") if e["EventType"] in (4, 10) else
            e.get("TaskScheduledId", e.get("TimerId"))) for e in hist if e["EventType"] in (4, 6, 10, 11)]
    d_events = []
    timer_ids: set[int] = set()
    for kind, ident in seq:
        if kind in ("TaskScheduled", "TaskFailed") and ident in d_ids:
            d_events.append(kind)
        elif kind == "TimerCreated" and d_events and d_events[-1] == "TaskFailed":
            d_events.append(kind)
            timer_ids.add(ident)
        elif kind == "TimerFired" and ident in timer_ids:
            d_events.append(kind)
    assert d_events == ["TaskScheduled", "TaskFailed", "TimerCreated", "TimerFired"] * 3


def test_ten_day_timer_is_split_into_long_timer_chunks(basic: HostThread) -> None:
    status = run(basic, "long_sleep", 10)
    assert status.output == timedelta(days=10).total_seconds()
    hist = basic.history(status.instance_id)
    created = [h.parse_ts(e["FireAt"]) for e in hist if e["EventType"] == h.TIMER_CREATED]
    start = h.parse_ts(hist[0]["Timestamp"])
    steps = [b - a for a, b in zip([start, *created], created, strict=False)]
    # SDK 1.7.0 with maximumShortTimerDuration 6 d / longRunningTimerIntervalDuration 3 d:
    # 3 d chunks while more than 6 d remain, then the rest in one timer
    assert steps == [timedelta(days=3), timedelta(days=3), timedelta(days=4)]


def test_external_event_is_double_encoded_by_the_python_client(basic: HostThread) -> None:
    client = basic.client()
    # Held: the skip clock must not fire the 24 h timeout while the test is about to raise.
    with basic.clock.hold():
        iid = basic.call(client.start_new("approval", None, {"hours": 24}))
        basic.wait_for(iid, statuses=("Running",))
        basic.call(client.raise_event(iid, "Approval", {"ok": True}))
        status = basic.wait_for(iid)
    assert status.output == {"decision": "event", "value": '{"ok": true}', "type": "str"}
    hist = basic.history(iid)
    assert [e["Input"] for e in hist if e["EventType"] == h.EVENT_RAISED] == ['"{\\"ok\\": true}"']


def test_raw_json_event_arrives_as_an_object(basic: HostThread) -> None:
    import urllib.request

    with basic.clock.hold():  # no timeout may fire before the event is raised
        iid = basic.call(basic.client().start_new("approval", None, {"hours": 24}))
        basic.wait_for(iid, statuses=("Running",))
        req = urllib.request.Request(
            f"{basic.base_url}/runtime/webhooks/durabletask/instances/{iid}/raiseEvent/Approval"
            f"?code={basic.host.system_keys['durabletask_extension']}",
            data=b'{"ok": true}', headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 202
        assert basic.wait_for(iid).output == {"decision": "event", "value": {"ok": True}, "type": "dict"}


def test_timeout_wins_when_no_event_arrives(basic: HostThread) -> None:
    status = run(basic, "approval", {"hours": 24})
    assert status.output == {"decision": "timeout"}
    hist = basic.history(status.instance_id)
    fired = [e for e in hist if e["EventType"] == h.TIMER_FIRED]
    assert len(fired) == 1
    assert h.parse_ts(fired[0]["Timestamp"]) - h.parse_ts(hist[0]["Timestamp"]) == timedelta(hours=24)


def until(predicate: Any, timeout: float = 30.0) -> None:
    """Poll in real time (use inside ``clock.hold()`` so virtual time cannot move meanwhile)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_forgotten_timer_keeps_the_instance_running_until_it_fires(basic: HostThread) -> None:
    client = basic.client()
    with basic.clock.hold():  # no time jumps while we look
        iid = basic.call(client.start_new("approval", None, {"hours": 24, "cancel": False}))
        basic.call(client.raise_event(iid, "Approval", "yes"))
        until(lambda: any(e["EventType"] == h.EVENT_RAISED for e in basic.history(iid))
              and basic.run_sync(lambda: basic.host.engine.idle))
        status = basic.status(iid)
        assert status.runtime_status.value == "Running"  # done, but the 24 h timer is still open
        assert status.output is None
    status = basic.wait_for(iid)
    assert status.runtime_status.value == "Completed"
    assert status.output["decision"] == "event"
    hist = basic.history(iid)
    assert h.parse_ts(hist[-1]["Timestamp"]) - h.parse_ts(hist[0]["Timestamp"]) == timedelta(hours=24)


def test_events_raised_before_the_wait_are_buffered(basic: HostThread) -> None:
    client = basic.client()
    with basic.clock.hold():
        iid = basic.call(client.start_new("buffered_event", None, None))
        basic.call(client.raise_event(iid, "Go", "now"))
    assert basic.wait_for(iid).output == ["Hello early", '"now"']


def test_sub_orchestrations_ids_results_and_failures(basic: HostThread) -> None:
    status = run(basic, "parent", None, "par-1")
    out = status.output
    hist = basic.history("par-1")
    execution_id = hist[1]["OrchestrationInstance"]["ExecutionId"]
    assert out["greetings"] == ["Hello p", "Hello q", "Hello r"]
    assert out["explicit"] == {"child": "par-1:explicit", "parent": "par-1", "value": 10}
    assert out["implicit"] == {"child": f"{execution_id}:4", "parent": "par-1", "value": 14}
    assert out["failed"].startswith(
        "Orchestrator function 'child' failed: Activity function 'flaky' failed: RuntimeError:")
    created = [(e["EventId"], e["InstanceId"]) for e in hist if e["EventType"] == h.SUB_ORCHESTRATION_CREATED]
    assert created == [(3, "par-1:explicit"), (4, f"{execution_id}:4"), (5, f"{execution_id}:5")]
    child = basic.status(f"{execution_id}:5")
    assert child.runtime_status.value == "Failed"


def test_continue_as_new_restarts_with_fresh_history(basic: HostThread) -> None:
    status = run(basic, "counter", 0, "ctr-1")
    assert status.output == {"final": 3, "id": "ctr-1"}
    hist = basic.history("ctr-1")
    assert types(hist).count("ExecutionStarted") == 1
    assert hist[1]["Input"] == '"3"'


def test_orchestrator_exception_fails_with_the_real_message(basic: HostThread) -> None:
    status = run(basic, "failing")
    assert status.runtime_status.value == "Failed"
    assert status.output == "Orchestrator function 'failing' failed: orchestrator broke"


def test_failure_is_held_until_open_timer_fires(basic: HostThread) -> None:
    status = run(basic, "fail_fast")
    assert status.runtime_status.value == "Failed"
    assert status.output.startswith("Orchestrator function 'fail_fast' failed: Activity function 'flaky' failed:")
    hist = basic.history(status.instance_id)
    fired = [e for e in hist if e["EventType"] == h.TIMER_FIRED]
    assert len(fired) == 1  # the 1 h timer fired before the failure was recorded
    assert hist[-2]["EventType"] == h.EXECUTION_COMPLETED and hist[-2]["OrchestrationStatus"] == 3


def test_async_activity_is_awaited(basic: HostThread) -> None:
    assert run(basic, "uses_async_activity", [1, 2]).output == {"echo": [1, 2]}


def test_terminate_suspend_resume_and_purge(basic: HostThread) -> None:
    client = basic.client()
    iid = basic.call(client.start_new("waits_forever", None, None))
    basic.wait_for(iid, statuses=("Running",))
    assert basic.status(iid).custom_status == "waiting"
    basic.call(client.suspend(iid, "pause"))
    assert basic.status(iid).runtime_status.value == "Suspended"
    basic.call(client.raise_event(iid, "Never", 1))  # buffered while suspended
    basic.call(client.resume(iid, "go"))
    assert basic.wait_for(iid).output == "1"
    iid2 = basic.call(client.start_new("waits_forever", None, None))
    basic.wait_for(iid2, statuses=("Running",))
    basic.call(client.terminate(iid2, "enough"))
    status = basic.wait_for(iid2)
    assert status.runtime_status.value == "Terminated" and status.output == "enough"
    result = basic.call(client.purge_instance_history(iid2))
    assert result.instances_deleted == 1
    assert not basic.status(iid2)  # purged: 404, empty status


def test_unknown_instance_is_404_with_empty_body(basic: HostThread) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{basic.base_url}/durabletask/instances/nope")
    assert err.value.code == 404 and err.value.read() == b""
    assert not basic.status("nope")


def test_unknown_orchestrator_is_rejected(basic: HostThread) -> None:
    with pytest.raises(Exception, match="doesn't exist"):
        basic.call(basic.client().start_new("no_such_orchestrator", None, None))


def test_status_queries(basic: HostThread) -> None:
    client = basic.client()
    iid = basic.call(client.start_new("hello_sequence", "query-me-1", {"names": ["Q"]}))
    basic.wait_for(iid)
    everything = basic.call(client.get_status_all())
    assert "query-me-1" in {s.instance_id for s in everything}
    from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

    done = basic.call(client.get_status_by(runtime_status=[OrchestrationRuntimeStatus.Completed]))
    assert "query-me-1" in {s.instance_id for s in done}
    running = basic.call(client.get_status_by(runtime_status=[OrchestrationRuntimeStatus.Pending]))
    assert "query-me-1" not in {s.instance_id for s in running}
    with_input = basic.status(iid, show_input=True)
    assert json.loads(with_input.input_) == {"names": ["Q"]}


def test_changed_orchestrator_code_is_reported_as_non_determinism(basic: HostThread) -> None:
    entry = basic.host.index.orchestrator("changing")
    version = entry.user_function.orchestrator_function.__globals__["VERSION"]
    client = basic.client()
    try:
        with basic.clock.hold():
            iid = basic.call(client.start_new("changing", None, None))
            until(lambda: len([e for e in basic.history(iid) if e["EventType"] == h.TASK_COMPLETED]) == 1
                  and basic.run_sync(lambda: basic.host.engine.idle))
            version["v"] = 2
            basic.call(client.raise_event(iid, "Next", None))
        status = basic.wait_for(iid)
    finally:
        version["v"] = 1
    assert status.runtime_status.value == "Failed"
    assert status.output.startswith("Orchestrator function 'changing' failed: Non-Deterministic workflow detected:")
    assert "CallActivity 'hello'" in status.output and "CallActivity 'Double'" in status.output


def test_sub_orchestration_with_retry(basic: HostThread) -> None:
    status = run(basic, "sub_retry_parent", None, "subretry-1")
    assert status.runtime_status.value == "Completed"
    assert status.output == "c ok after 2"
    hist = basic.history("subretry-1")
    execution_id = hist[1]["OrchestrationInstance"]["ExecutionId"]
    seq = [(h.EVENT_NAMES[e["EventType"]], e["EventId"] if e["EventType"] in (7, 10) else
            e.get("TaskScheduledId", e.get("TimerId"))) for e in hist if e["EventType"] in (7, 8, 9, 10, 11)]
    assert seq == [("SubOrchestrationInstanceCreated", 0), ("SubOrchestrationInstanceFailed", 0),
                   ("TimerCreated", 1), ("TimerFired", 1),
                   ("SubOrchestrationInstanceCreated", 2), ("SubOrchestrationInstanceCompleted", 2)]
    assert basic.status(f"{execution_id}:0").runtime_status.value == "Failed"
    assert basic.status(f"{execution_id}:2").runtime_status.value == "Completed"


def test_restart_with_a_new_instance_id(basic: HostThread) -> None:
    client = basic.client()
    iid = basic.call(client.start_new("hello_sequence", None, {"names": ["R"]}))
    basic.wait_for(iid)
    new_id = basic.call(client.restart(iid))
    assert new_id != iid
    assert basic.wait_for(new_id).output == ["Hello R"]


def test_one_log_line_per_function_execution(basic: HostThread, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="emulator.host"):
        status = run(basic, "hello_sequence", {"names": ["L"]}, "logged-1")
    lines = [r.getMessage() for r in caplog.records if r.name == "emulator.host"]
    activity = [m for m in lines if m.startswith("Executed activity 'hello' (instance=logged-1, task=0)")]
    episodes = [m for m in lines if m.startswith("Executed orchestrator 'hello_sequence' (instance=logged-1,")]
    assert len(activity) == 1 and activity[0].endswith(": Succeeded") and "ms" in activity[0]
    assert len(episodes) == 2 and episodes[-1].endswith(": Completed")
    assert status.output == ["Hello L"]


def test_purge_by_filters(host_factory) -> None:
    from datetime import UTC, datetime

    from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

    ht = host_factory()
    client = ht.client()
    ids = [ht.call(client.start_new("hello_sequence", f"purge-{i}", {"names": [str(i)]})) for i in range(3)]
    for iid in ids:
        ht.wait_for(iid)
    since = datetime(2020, 1, 1, tzinfo=UTC)
    completed = [OrchestrationRuntimeStatus.Completed]
    listed = ht.call(client.get_status_by(created_time_from=since, runtime_status=completed))
    assert {s.instance_id for s in listed} == set(ids)
    result = ht.call(client.purge_instance_history_by(created_time_from=since,
                                                      runtime_status=[OrchestrationRuntimeStatus.Completed]))
    assert result.instances_deleted == 3
    assert ht.call(client.get_status_all()) == []


def test_unsupported_actions_fail_the_instance_clearly(basic: HostThread) -> None:
    status = run(basic, "uses_call_http")
    assert status.runtime_status.value == "Failed"
    assert "CallHttp" in status.output or "actionType 8" in status.output
    assert "not supported by the local host" in status.output


def test_scale_clock_runs_timers_faster_than_real_time(host_factory) -> None:
    import time

    ht = host_factory(clock="scale=36000")  # 10 simulated hours per real second
    started = time.monotonic()
    status = run(ht, "approval", {"hours": 1})
    assert status.output == {"decision": "timeout"}
    assert time.monotonic() - started < 30
    hist = ht.history(status.instance_id)
    elapsed = h.parse_ts(hist[-1]["Timestamp"]) - h.parse_ts(hist[0]["Timestamp"])
    assert timedelta(hours=1) <= elapsed < timedelta(hours=3)


def test_orchestrator_cpu_is_counted_per_instance_and_in_total(basic: HostThread) -> None:
    """Issue 11 (replay CPU): every episode's orchestrator CPU time is added to its instance and
    to the engine's total; the bench reads both."""
    engine = basic.host.engine
    assert engine is not None
    before = basic.run_sync(lambda: engine.stats["orchestrator_cpu_seconds"])
    status = run(basic, "fanout", 300)
    assert status.runtime_status.value == "Completed"

    def read() -> tuple[float, float, int]:
        inst = engine.instances[status.instance_id]
        return inst.cpu_seconds, engine.stats["orchestrator_cpu_seconds"], inst.episodes

    cpu, total, episodes = basic.run_sync(read)
    assert episodes >= 2 and cpu > 0  # replaying a 300-task fan-out is not free
    assert total - before >= cpu - 1e-9  # float sums: the total also holds this instance's episodes


def test_cpu_timed_counts_this_threads_cpu_not_its_sleep() -> None:
    from emulator.host.replay import cpu_timed

    def burn(seconds: float) -> str:
        began = time.thread_time()
        while time.thread_time() - began < seconds:
            pass
        return "burnt"

    assert cpu_timed(burn, 0.02)[0] == "burnt" and cpu_timed(burn, 0.02)[1] >= 0.02
    value, cpu = cpu_timed(time.sleep, 0.2)
    assert value is None and cpu < 0.1  # asleep, the thread uses (almost) no CPU
