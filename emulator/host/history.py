"""DTFx history events as the Python SDK reads them (protocol reference §2.4).

Why a module of its own: every event the host writes must carry the four base fields
(``EventType``, ``EventId``, ``IsPlayed``, ``Timestamp``) and the exact field names of the
Newtonsoft serialisation; building them in one place keeps the engine free of dict literals
and makes the history easy to assert on in tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Event = dict[str, Any]

EXECUTION_STARTED = 0
EXECUTION_COMPLETED = 1
EXECUTION_FAILED = 2
EXECUTION_TERMINATED = 3
TASK_SCHEDULED = 4
TASK_COMPLETED = 5
TASK_FAILED = 6
SUB_ORCHESTRATION_CREATED = 7
SUB_ORCHESTRATION_COMPLETED = 8
SUB_ORCHESTRATION_FAILED = 9
TIMER_CREATED = 10
TIMER_FIRED = 11
ORCHESTRATOR_STARTED = 12
ORCHESTRATOR_COMPLETED = 13
EVENT_SENT = 14
EVENT_RAISED = 15
CONTINUE_AS_NEW = 16
EXECUTION_SUSPENDED = 19
EXECUTION_RESUMED = 20

EVENT_NAMES = {
    0: "ExecutionStarted",
    1: "ExecutionCompleted",
    2: "ExecutionFailed",
    3: "ExecutionTerminated",
    4: "TaskScheduled",
    5: "TaskCompleted",
    6: "TaskFailed",
    7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted",
    9: "SubOrchestrationInstanceFailed",
    10: "TimerCreated",
    11: "TimerFired",
    12: "OrchestratorStarted",
    13: "OrchestratorCompleted",
    14: "EventSent",
    15: "EventRaised",
    16: "ContinueAsNew",
    17: "GenericEvent",
    18: "HistoryState",
    19: "ExecutionSuspended",
    20: "ExecutionResumed",
}

# OrchestrationStatus numbers used in ExecutionCompleted
STATUS_COMPLETED = 1
STATUS_FAILED = 3
STATUS_TERMINATED = 5


def fmt_ts(value: datetime) -> str:
    """History timestamp: UTC ISO with microseconds and ``Z`` (the SDK parses it with dateutil)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fmt_status_time(value: datetime) -> str:
    """Status payload time format ``yyyy-MM-ddTHH:mm:ssZ`` (StatusResponsePayload)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def event(event_type: int, now: datetime, *, event_id: int = -1, **fields: Any) -> Event:
    """One history event with the mandatory base fields first."""
    ev: Event = {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": fmt_ts(now)}
    ev.update(fields)
    return ev


def orchestrator_started(now: datetime) -> Event:
    return event(ORCHESTRATOR_STARTED, now)


def orchestrator_completed(now: datetime) -> Event:
    return event(ORCHESTRATOR_COMPLETED, now)


def execution_started(
    now: datetime,
    *,
    name: str,
    instance_id: str,
    execution_id: str,
    input_text: str | None,
    parent: dict[str, Any] | None = None,
    version: str = "",
) -> Event:
    return event(
        EXECUTION_STARTED,
        now,
        Name=name,
        Version=version,
        Input=input_text,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=parent,
        Tags=None,
        Correlation=None,
        ScheduledStartTime=None,
        Generation=0,
    )


def execution_completed(now: datetime, status: int, result: str | None, failure: dict[str, Any] | None = None) -> Event:
    return event(EXECUTION_COMPLETED, now, OrchestrationStatus=status, Result=result, FailureDetails=failure)


def execution_terminated(now: datetime, reason: str | None) -> Event:
    return event(EXECUTION_TERMINATED, now, Input=reason)


def task_scheduled(now: datetime, seq: int, name: str, input_text: str | None) -> Event:
    return event(TASK_SCHEDULED, now, event_id=seq, Name=name, Version="", Input=input_text, Tags=None)


def task_completed(now: datetime, seq: int, result: str | None) -> Event:
    return event(TASK_COMPLETED, now, TaskScheduledId=seq, Result=result)


def task_failed(now: datetime, seq: int, reason: str, details: str | None) -> Event:
    return event(
        TASK_FAILED, now, TaskScheduledId=seq, Reason=reason, Details=details, FailureDetails=None
    )


def sub_created(now: datetime, seq: int, name: str, instance_id: str, input_text: str | None, *,
                version: str = "") -> Event:
    return event(
        SUB_ORCHESTRATION_CREATED, now, event_id=seq, Name=name, Version=version, InstanceId=instance_id,
        Input=input_text,
    )


def sub_completed(now: datetime, seq: int, result: str | None) -> Event:
    return event(SUB_ORCHESTRATION_COMPLETED, now, TaskScheduledId=seq, Result=result)


def sub_failed(now: datetime, seq: int, reason: str, details: str | None) -> Event:
    return event(
        SUB_ORCHESTRATION_FAILED, now, TaskScheduledId=seq, Reason=reason, Details=details,
        FailureDetails=None,
    )


def timer_created(now: datetime, seq: int, fire_at: datetime) -> Event:
    return event(TIMER_CREATED, now, event_id=seq, FireAt=fmt_ts(fire_at))


def timer_fired(now: datetime, seq: int, fire_at: datetime) -> Event:
    return event(TIMER_FIRED, now, TimerId=seq, FireAt=fmt_ts(fire_at))


def event_raised(now: datetime, name: str, input_text: str | None) -> Event:
    return event(EVENT_RAISED, now, Name=name, Input=input_text)


def execution_suspended(now: datetime, reason: str | None) -> Event:
    return event(EXECUTION_SUSPENDED, now, Reason=reason)


def execution_resumed(now: datetime, reason: str | None) -> Event:
    return event(EXECUTION_RESUMED, now, Reason=reason)
