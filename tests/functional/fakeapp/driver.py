"""Drives the fake-activity app on the local host: HTTP API, Event Grid deliveries, the clock.

Tests hold the skip clock for their whole body and move time only through :meth:`Driver.until`,
so an approval timeout can never fire while the test is still preparing its click.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from emulator.platform import HttpResult, http_call
from tests.functional.fakeapp import fleet

PRE = "Microsoft.Maintenance.PreMaintenanceEvent"
POST = "Microsoft.Maintenance.PostMaintenanceEvent"


def correlation_id(configuration: str, start: str) -> str:
    run = datetime.fromisoformat(start.replace("Z", "+00:00")).strftime("%Y%m%d%H%M%S")
    return f"{fleet.MC}/{configuration}/providers/Microsoft.Maintenance/applyUpdates/{run}"


def maintenance_event(kind: str, configuration: str, start: str, *, status: str = "Succeeded",
                      cloud: bool = False, pascal: bool = False) -> dict[str, Any]:
    """A pre/post event as AUM sends it (Event Grid or CloudEvents schema)."""
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    cid = correlation_id(configuration, start)
    data: dict[str, Any] = {
        "correlationId": cid,
        "maintenanceConfigurationId": f"{fleet.MC}/{configuration}",
        "startDateTime": start,
        "endDateTime": (begin + timedelta(hours=3, minutes=55)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resourceSubscriptionIds": [fleet.SUB],
    }
    if kind == "pre":
        data["cancellationCutOffDateTime"] = (begin - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        data["status"] = status
    if pascal:
        data = {k[0].upper() + k[1:]: v for k, v in data.items()}
    event_type = PRE if kind == "pre" else POST
    if cloud:
        return {"specversion": "1.0", "id": cid, "source": f"{fleet.MC}/{configuration}", "type": event_type,
                "subject": configuration, "time": start, "data": data}
    return {"id": cid, "topic": f"{fleet.MC}/{configuration}", "subject": configuration, "eventType": event_type,
            "eventTime": start, "data": data, "dataVersion": "1.0", "metadataVersion": "1"}


class Driver:
    def __init__(self, ht: Any) -> None:
        self.ht = ht
        self.clock = ht.clock

    # ------------------------------------------------------------------ HTTP
    def api(self, method: str, path: str, body: Any = None, *, who: str | None = None) -> HttpResult:
        headers = {"x-functions-key": self.ht.function_key}
        if who:
            headers["X-PatchRings-Approver"] = who
        return http_call(method, f"{self.ht.base_url}{path}", body=body, headers=headers)

    def start(self, *, who: str = "dave@contoso.com", **body: Any) -> str:
        result = self.api("POST", "/api/rollouts", body, who=who)
        assert result.status == 202, result
        return str(result.json["id"])

    def decide(self, rollout_id: str, ring: str, verdict: str, manifest_hash: str, who: str,
               comment: str = "") -> HttpResult:
        return self.api("POST", f"/api/rollouts/{rollout_id}/rings/{ring}/{verdict}",
                        {"manifestHash": manifest_hash, "comment": comment}, who=who)

    def deliver(self, *events: dict[str, Any]) -> int:
        host = getattr(self.ht, "host", None) or getattr(getattr(self.ht, "platform", None), "host", None)
        url = (host.eventgrid_url("on_maintenance_event") if host is not None and hasattr(host, "eventgrid_url")
               else f"{self.ht.base_url}/runtime/webhooks/eventgrid?functionName=on_maintenance_event")
        result = http_call("POST", url, body=list(events), headers={"aeg-event-type": "Notification"})
        return result.status

    # ------------------------------------------------------------------ state
    def status(self, instance_id: str) -> Any:
        return self.ht.status(instance_id)

    def doc(self, instance_id: str) -> dict[str, Any]:
        status = self.status(instance_id)
        value = getattr(status, "custom_status", None) if status else None
        if isinstance(value, str):
            value = json.loads(value)
        return value or {}

    def runtime(self, instance_id: str) -> str | None:
        status = self.status(instance_id)
        return getattr(status.runtime_status, "value", None) if status else None

    def until(self, predicate: Callable[[], Any], timeout: float = 90) -> Any:
        # Clock.advance_until re-reads the predicate once idle before each jump, so a state
        # reached while settling ("waiting for approval") is seen before its timer can fire.
        return self.clock.advance_until(predicate, timeout=timeout)

    def until_waiting(self, instance_id: str, what: str, ring: str | None = None) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            doc = self.doc(instance_id)
            waiting = doc.get("waitingFor") or {}
            if waiting.get("what") == what and (ring is None or waiting.get("ring") == ring):
                return doc
            if self.runtime(instance_id) in ("Completed", "Failed", "Terminated"):
                raise AssertionError(f"rollout ended while expecting {what}: {json.dumps(doc, indent=1)[:3000]}")
            return None

        return self.until(check)  # type: ignore[no-any-return]

    def until_done(self, instance_id: str) -> Any:
        self.until(lambda: self.runtime(instance_id) in ("Completed", "Failed", "Terminated"))
        return self.status(instance_id)
