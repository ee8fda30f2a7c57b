"""Event inbox: decoding, de-duplication, post-before-pre, run targeting."""

from __future__ import annotations

import json

import pytest

from orchestrators.inbox import EventInbox, RunEvent, decode_payload, same_arm_id

pytestmark = pytest.mark.unit

MC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc-ring1"


def event(kind: str, run: str = "20261116120000", start: str = "2026-11-16T12:00:00Z", **extra: str) -> dict:
    return {
        "kind": kind,
        "correlationId": f"{MC}/providers/Microsoft.Maintenance/applyUpdates/{run}",
        "maintenanceConfigurationId": MC,
        "startDateTime": start,
        "endDateTime": "2026-11-16T15:55:00Z",
        "cancellationCutOffDateTime": "2026-11-16T11:50:00Z" if kind == "pre" else None,
        "status": "Succeeded" if kind == "post" else None,
        **extra,
    }


def test_decode_accepts_dicts_json_text_and_double_encoded_text() -> None:
    doc = event("pre")
    assert decode_payload(doc) == doc
    assert decode_payload(json.dumps(doc)) == doc
    assert decode_payload(json.dumps(json.dumps(doc))) == doc
    assert decode_payload("not json") is None
    assert decode_payload(json.dumps([1, 2])) is None


def test_run_event_reads_domain_and_short_keys() -> None:
    long = RunEvent.from_payload(event("pre"))
    short = RunEvent.from_payload({"kind": "PRE", "correlationId": "c", "configurationId": MC, "start": "x"})
    assert long is not None and long.cancellation_cutoff == "2026-11-16T11:50:00Z"
    assert short is not None and short.kind == "pre" and short.start == "x"
    assert RunEvent.from_payload({"kind": "other", "correlationId": "c", "configurationId": MC}) is None
    assert RunEvent.from_payload({"kind": "pre"}) is None


def test_round_trip_through_to_dict() -> None:
    original = RunEvent.from_payload(event("post"))
    assert original is not None
    again = RunEvent.from_payload(original.to_dict())
    assert again is not None
    assert (again.kind, again.correlation_id, again.configuration_id, again.status) == (
        "post", original.correlation_id, MC, "Succeeded")


def test_duplicates_are_counted_once_case_insensitively() -> None:
    inbox = EventInbox()
    assert inbox.offer(event("pre")) is not None
    upper = event("pre")
    upper["correlationId"] = upper["correlationId"].upper()
    assert inbox.offer(upper) is None
    assert inbox.offer(json.dumps(event("pre"))) is None
    assert inbox.duplicates == 2
    assert inbox.offer("garbage") is None and inbox.rejected == 1


def test_post_before_pre_is_kept_for_its_run() -> None:
    inbox = EventInbox()
    inbox.offer(event("post"))
    assert inbox.take_pre(MC) is None
    inbox.offer(event("pre"))
    pre = inbox.take_pre(MC.upper())
    assert pre is not None and pre.kind == "pre"
    post = inbox.take_post(pre.correlation_id)
    assert post is not None and post.status == "Succeeded"
    assert inbox.take_post(pre.correlation_id) is None


def test_runs_before_the_target_are_left_for_the_guard() -> None:
    inbox = EventInbox()
    inbox.offer(event("pre", run="20261115120000", start="2026-11-15T12:00:00Z"))
    assert inbox.take_pre(MC, not_before="2026-11-16T12:00:00Z") is None
    inbox.offer(event("pre"))
    taken = inbox.take_pre(MC, not_before="2026-11-16T12:00:00Z")
    assert taken is not None and taken.start == "2026-11-16T12:00:00Z"


def test_other_configurations_do_not_match() -> None:
    inbox = EventInbox()
    other = event("pre", maintenanceConfigurationId=MC.replace("ring1", "ring2"))
    inbox.offer(other)
    assert inbox.take_pre(MC) is None


def test_same_arm_id() -> None:
    assert same_arm_id("/A/b/", "/a/B")
    assert not same_arm_id(None, "/a")
    assert not same_arm_id("/a", "/b")
