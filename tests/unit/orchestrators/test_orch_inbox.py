"""Event inbox: decoding, de-duplication, post-before-pre, run targeting."""

from __future__ import annotations

import json

import pytest

from orchestrators.inbox import EventInbox, decode_payload, event_from_payload
from patchrings.domain.arm_ids import same_arm_id
from patchrings.domain.timeutil import format_instant

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
    # issue 10: the inbox holds the domain's MaintenanceEvent (times are datetimes; an event
    # without a valid startDateTime is not a usable event: refused at the door, counted as rejected)
    long = event_from_payload(event("pre"))
    short = event_from_payload({"kind": "PRE", "correlationId": "c", "configurationId": MC,
                                "start": "2026-11-16T12:00:00Z"})
    assert long is not None and format_instant(long.cancellation_cutoff) == "2026-11-16T11:50:00Z"
    assert short is not None and short.kind == "pre" and format_instant(short.start) == "2026-11-16T12:00:00Z"
    assert short.configuration_id == MC
    assert event_from_payload({"kind": "PRE", "correlationId": "c", "configurationId": MC, "start": "x"}) is None
    assert event_from_payload({"kind": "other", "correlationId": "c", "configurationId": MC}) is None
    assert event_from_payload({"kind": "pre"}) is None


def test_round_trip_through_to_dict() -> None:
    original = event_from_payload(event("post"))
    assert original is not None
    again = event_from_payload(original.to_dict())
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
    assert taken is not None and format_instant(taken.start) == "2026-11-16T12:00:00Z"


def test_other_configurations_do_not_match() -> None:
    inbox = EventInbox()
    other = event("pre", maintenanceConfigurationId=MC.replace("ring1", "ring2"))
    inbox.offer(other)
    assert inbox.take_pre(MC) is None


def test_same_arm_id() -> None:
    assert same_arm_id("/A/b/", "/a/B")
    assert not same_arm_id(None, "/a")
    assert not same_arm_id("/a", "/b")


def test_take_pre_for_accepts_only_the_computed_run_and_refuses_the_rest() -> None:
    from datetime import UTC, datetime

    inbox = EventInbox()
    target = datetime(2026, 11, 17, 12, 0, tzinfo=UTC)
    following = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
    offered = [
        event("pre", "20990106120000", "2099-01-06T12:00:00Z"),  # plausible but not the computed run
        event("pre", "20261117120000", "2099-01-06T12:00:00Z"),  # real id, forged start
        event("pre", "20261116120000", "2026-11-16T12:00:00Z"),  # an older run: left for the guard
        event("pre", "20261118120000", "2026-11-18T12:00:00Z"),  # the next computed run: kept
        {**event("pre", "20261117120000", "2026-11-17T12:00:00Z"),
         "correlationId": "https://attacker.example/applyUpdates/20261117120000"},
        event("pre", "20261117120000", "2026-11-17T12:00:00Z"),  # the one
    ]
    assert all(inbox.offer(e) is not None for e in offered)  # forged start != duplicate of the real one
    match, refused = inbox.take_pre_for(MC, target, keep_start=following)
    assert match is not None and format_instant(match.start) == "2026-11-17T12:00:00Z"
    reasons = {e.run_name + "@" + format_instant(e.start): why for e, why in refused}
    assert len(refused) == 4
    assert "not the run the rollout computed" in reasons["20990106120000@2099-01-06T12:00:00Z"]
    assert "is not the start it claims" in reasons["20261117120000@2099-01-06T12:00:00Z"]
    assert "not a run of this maintenance configuration" in reasons["20261117120000@2026-11-17T12:00:00Z"]
    later, refused_later = inbox.take_pre_for(MC, following)
    assert later is not None and later.run_name == "20261118120000" and refused_later == []


def test_next_run_every_recurrence_form() -> None:
    from datetime import UTC, datetime

    from orchestrators.rollout import next_run

    after = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
    base = {"startDateTime": "2026-11-01 12:00", "duration": "03:55", "timeZone": "UTC"}
    cases = {
        "6Hours": "2026-11-16T12:00:00Z",
        "Day": "2026-11-16T12:00:00Z",
        "2Weeks Friday": "2026-11-27T12:00:00Z",
        "Month day-1": "2026-11-30T12:00:00Z",
        "Month Second Tuesday Offset2": "2026-12-10T12:00:00Z",
    }
    for recur, expected in cases.items():
        got = next_run({**base, "recurEvery": recur}, after)
        assert got is not None and got["runStart"] == expected, (recur, got)
    pacific = next_run({**base, "timeZone": "Pacific Standard Time", "recurEvery": "Day"}, after)
    assert pacific is not None and pacific["runStart"] == "2026-11-16T20:00:00Z"
    assert next_run({**base, "recurEvery": "Day", "expirationDateTime": "2026-11-02 00:00"}, after) is None
    assert next_run({"recurEvery": "Day"}, after) is None
