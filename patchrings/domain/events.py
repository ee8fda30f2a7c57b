"""Azure Update Manager pre/post maintenance events: parsing and idempotency keys.

Accepts the Event Grid schema and CloudEvents 1.0, a single event or a one-element delivery array,
and reads keys case-insensitively at every level (Microsoft's own samples use both
``correlationId`` and ``CorrelationId``). ``resourceSubscriptionIds`` may be a string (documented)
or an array (the example). Anything else — another event type, a subscription-validation event,
a missing correlation id or start time — raises :class:`EventRejected` with what was wrong.

Instance ids: Event Grid delivers at least once and in any order, so the orchestration instance id
is derived from the run's ``correlationId`` (lower-cased: ARM ids are case-insensitive) plus the
event kind. Durable instance ids may not contain ``/``, so the id is a readable prefix (kind,
configuration name, run timestamp) plus a hash of the full correlation id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from patchrings.domain.arm_ids import last_segment, normalize_arm_id
from patchrings.domain.timeutil import format_instant, parse_instant
from patchrings.errors import EventRejected

EventKind = Literal["pre", "post"]
EventSchema = Literal["eventgrid", "cloudevents"]

PRE_EVENT = "Microsoft.Maintenance.PreMaintenanceEvent"
POST_EVENT = "Microsoft.Maintenance.PostMaintenanceEvent"
_KINDS: dict[str, EventKind] = {PRE_EVENT.lower(): "pre", POST_EVENT.lower(): "post"}
#: ``cancel_run`` answers after which a scheduled run will not patch (the rollout and the guard
#: both decide "cancelled" on these; anything else -- TooLate, Refused, Failed -- it may patch).
CANCELLED_RUN_STATUSES = ("Cancelled", "AlreadyCancelled", "NotFound")
#: Longest correlation / configuration id accepted: ARM ids are far shorter, and the ledger keys
#: and durable instance ids built from them must stay well inside Azure Table's 1 KiB key limit.
MAX_ID_LENGTH = 512


#: How deep :func:`lower_keys` goes; an event's fields sit at depth 2 (``data.x``). Deeper values
#: are kept as delivered, so a hostile, deeply nested delivery can never exhaust the stack.
MAX_KEY_DEPTH = 8


def lower_keys(value: Any, _depth: int = 0) -> Any:
    """Lower-case every mapping key down to :data:`MAX_KEY_DEPTH` levels (values untouched)."""
    if _depth >= MAX_KEY_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {str(k).lower(): lower_keys(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v, _depth + 1) for v in value]
    return value


@dataclass(frozen=True)
class MaintenanceEvent:
    """A parsed pre or post maintenance event."""

    kind: EventKind
    correlation_id: str
    configuration_id: str
    start: datetime
    end: datetime | None
    cancellation_cutoff: datetime | None
    status: str | None
    resource_subscription_ids: tuple[str, ...]
    event_id: str
    event_time: datetime | None
    subject: str | None
    schema: EventSchema

    @property
    def event_type(self) -> str:
        return PRE_EVENT if self.kind == "pre" else POST_EVENT

    @property
    def configuration_name(self) -> str:
        return last_segment(self.configuration_id)

    @property
    def run_name(self) -> str:
        """The run name at the end of the correlationId (``.../applyUpdates/<yyyyMMddHHmmss>``)."""
        return last_segment(self.correlation_id)

    @property
    def run_key(self) -> str:
        """The correlation id normalised for comparisons and ledger keys."""
        return normalize_arm_id(self.correlation_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "eventType": self.event_type,
            "correlationId": self.correlation_id,
            "maintenanceConfigurationId": self.configuration_id,
            "startDateTime": format_instant(self.start),
            "endDateTime": format_instant(self.end) if self.end else None,
            "cancellationCutOffDateTime": format_instant(self.cancellation_cutoff)
            if self.cancellation_cutoff
            else None,
            "status": self.status,
            "resourceSubscriptionIds": list(self.resource_subscription_ids),
            "eventId": self.event_id,
            "eventTime": format_instant(self.event_time) if self.event_time else None,
            "subject": self.subject,
            "schema": self.schema,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> MaintenanceEvent:
        """Inverse of :meth:`to_dict` (for orchestrator inputs)."""
        d = lower_keys(doc)

        def ts(key: str) -> datetime | None:
            return parse_instant(d[key]) if d.get(key) else None

        start = ts("startdatetime")
        if start is None:
            raise EventRejected("startDateTime is required", field="startDateTime")
        return cls(
            kind=d["kind"],
            correlation_id=d["correlationid"],
            configuration_id=d["maintenanceconfigurationid"],
            start=start,
            end=ts("enddatetime"),
            cancellation_cutoff=ts("cancellationcutoffdatetime"),
            status=d.get("status"),
            resource_subscription_ids=tuple(d.get("resourcesubscriptionids") or ()),
            event_id=d.get("eventid") or d["correlationid"],
            event_time=ts("eventtime"),
            subject=d.get("subject"),
            schema=d.get("schema", "eventgrid"),
        )


def _time(data: Mapping[str, Any], key: str, label: str, *, required: bool) -> datetime | None:
    raw = data.get(key)
    if raw in (None, ""):
        if required:
            raise EventRejected(f"data.{label} is required", field=f"data.{label}")
        return None
    try:
        return parse_instant(raw)
    except (ValueError, OverflowError, TypeError) as exc:
        raise EventRejected(f"data.{label} is not an ISO-8601 timestamp: {raw!r}", field=f"data.{label}") from exc


def parse_maintenance_event(raw: Any) -> MaintenanceEvent:
    """Parse one Event Grid / CloudEvents maintenance event (or a one-element array of one)."""
    if isinstance(raw, list):
        if len(raw) != 1:
            raise EventRejected(f"expected exactly one event per delivery, got {len(raw)}")
        raw = raw[0]
    if not isinstance(raw, Mapping):
        raise EventRejected("an event must be a JSON object")
    env = lower_keys(raw)
    if "specversion" in env:
        schema: EventSchema = "cloudevents"
        event_type = env.get("type")
        source = env.get("source")
        event_time_raw = env.get("time")
    else:
        schema = "eventgrid"
        event_type = env.get("eventtype")
        source = env.get("topic")
        event_time_raw = env.get("eventtime")
    if not isinstance(event_type, str) or not event_type:
        raise EventRejected("event has no type (eventType / type)", field="eventType")
    kind = _KINDS.get(event_type.lower())
    if kind is None:
        raise EventRejected(
            f"not a maintenance event: {event_type} (expected {PRE_EVENT} or {POST_EVENT})",
            field="eventType",
            details={"eventType": event_type},
        )
    data = env.get("data")
    if not isinstance(data, Mapping):
        raise EventRejected("event has no data object", field="data")
    correlation_id = data.get("correlationid") or env.get("id")
    if not isinstance(correlation_id, str) or not correlation_id.strip():
        raise EventRejected("data.correlationId is required", field="data.correlationId")
    if len(correlation_id) > MAX_ID_LENGTH:
        raise EventRejected(f"data.correlationId is longer than {MAX_ID_LENGTH} characters",
                            field="data.correlationId")
    configuration_id = data.get("maintenanceconfigurationid") or source
    if not isinstance(configuration_id, str) or not configuration_id.strip():
        raise EventRejected("data.maintenanceConfigurationId is required", field="data.maintenanceConfigurationId")
    if len(configuration_id) > MAX_ID_LENGTH:
        raise EventRejected(f"data.maintenanceConfigurationId is longer than {MAX_ID_LENGTH} characters",
                            field="data.maintenanceConfigurationId")
    if "/maintenanceconfigurations/" not in configuration_id.lower():
        raise EventRejected(
            f"data.maintenanceConfigurationId is not a maintenance configuration id: {configuration_id}",
            field="data.maintenanceConfigurationId",
        )
    start = _time(data, "startdatetime", "startDateTime", required=True)
    assert start is not None
    subs = data.get("resourcesubscriptionids")
    if isinstance(subs, str):
        sub_ids = tuple(s.strip() for s in re.split(r"[,;]", subs) if s.strip())
    elif isinstance(subs, list):
        sub_ids = tuple(str(s) for s in subs)
    else:
        sub_ids = ()
    event_time: datetime | None = None
    if event_time_raw:
        try:
            event_time = parse_instant(event_time_raw)
        except (ValueError, OverflowError, TypeError):
            event_time = None
    status = data.get("status")
    return MaintenanceEvent(
        kind=kind,
        correlation_id=correlation_id.strip(),
        configuration_id=configuration_id.strip(),
        start=start,
        end=_time(data, "enddatetime", "endDateTime", required=False),
        cancellation_cutoff=_time(data, "cancellationcutoffdatetime", "cancellationCutOffDateTime", required=False)
        if kind == "pre"
        else None,
        status=str(status)[:100] if status is not None else None,
        resource_subscription_ids=sub_ids[:100],
        event_id=str(env.get("id") or correlation_id)[:MAX_ID_LENGTH],
        event_time=event_time,
        subject=str(env["subject"])[:MAX_ID_LENGTH] if env.get("subject") is not None else None,
        schema=schema,
    )


_SAFE = re.compile(r"[^a-z0-9]+")


def run_hash(correlation_id: str) -> str:
    """Stable short hash of a run's correlation id (case-insensitive)."""
    return hashlib.sha256(normalize_arm_id(correlation_id).encode("utf-8")).hexdigest()[:20]


def instance_id_for(event: MaintenanceEvent | str, kind: EventKind | None = None) -> str:
    """Deterministic Durable instance id for a maintenance run's pre or post handling.

    ``mw-<kind>-<configuration name>-<run timestamp>-<hash>``, only ``[a-z0-9-]``, ≤ 100 chars.
    The same run delivered twice, in any casing or schema, maps to the same id.
    """
    if isinstance(event, MaintenanceEvent):
        correlation_id = event.correlation_id
        kind = kind or event.kind
    else:
        correlation_id = event
        if kind is None:
            raise ValueError("kind is required when passing a correlation id")
    norm = normalize_arm_id(correlation_id)
    parts = norm.strip("/").split("/")
    readable = ""
    try:
        mc_idx = parts.index("maintenanceconfigurations")
        readable = parts[mc_idx + 1]
        if parts[-2] == "applyupdates":
            readable += "-" + parts[-1]
    except (ValueError, IndexError):
        readable = ""
    readable = _SAFE.sub("-", readable).strip("-")[:50]
    prefix = f"mw-{kind}-" + (readable + "-" if readable else "")
    return prefix + run_hash(correlation_id)
