"""The durable boundary's one codec: camelCase keys, absent optionals, instants, nesting."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from patchrings.boundary.codec import BoundaryInvalid, from_payload, json_key, to_payload


@dataclass(frozen=True)
class Vm:
    id: str
    os_type: str | None = None


@dataclass(frozen=True)
class Input:
    rollout_id: str
    ring: str
    started_at: datetime
    vms: list[Vm] = field(default_factory=list)
    run_id: str | None = None
    plan_doc: dict[str, Any] | None = field(default=None, metadata={"key": "plan"})
    carry: dict[str, Any] | None = field(default=None, metadata={"keep_none": True})


def test_round_trip_keeps_the_json_shape() -> None:
    doc: dict[str, Any] = {"rolloutId": "r1", "ring": "ring0", "startedAt": "2026-01-01T00:00:00Z",
           "vms": [{"id": "/a", "osType": "Linux"}, {"id": "/b"}], "plan": {"rings": []}, "carry": None}
    value = from_payload(Input, doc)
    assert value.started_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert value.vms == [Vm("/a", "Linux"), Vm("/b")]
    assert value.run_id is None
    assert to_payload(value) == doc


def test_optional_keys_are_absent_and_unknown_keys_ignored() -> None:
    value = from_payload(Input, {"rolloutId": "r", "ring": "x", "startedAt": "2026-01-01T01:00:00+01:00",
                                 "newerField": 1})
    assert value.started_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert to_payload(value) == {"rolloutId": "r", "ring": "x", "startedAt": "2026-01-01T00:00:00Z",
                                 "vms": [], "carry": None}


@pytest.mark.parametrize(("doc", "field_name"), [
    ({"ring": "x", "startedAt": "2026-01-01T00:00:00Z"}, "rolloutId"),
    ({"rolloutId": "r", "ring": "x", "startedAt": "yesterday"}, "startedAt"),
    ({"rolloutId": "r", "ring": "x", "startedAt": "2026-01-01T00:00:00Z", "vms": {"id": "a"}}, "vms"),
    ({"rolloutId": "r", "ring": "x", "startedAt": "2026-01-01T00:00:00Z", "vms": [{}]}, "vms[0].id"),
    ({"rolloutId": None, "ring": "x", "startedAt": "2026-01-01T00:00:00Z"}, "rolloutId"),
])
def test_a_bad_payload_names_its_field(doc: dict[str, Any], field_name: str) -> None:
    with pytest.raises(BoundaryInvalid) as caught:
        from_payload(Input, doc)
    assert caught.value.field == field_name
    assert caught.value.code == "BoundaryInvalid"


def test_not_an_object_is_refused() -> None:
    with pytest.raises(BoundaryInvalid):
        from_payload(Input, ["rolloutId"])


def test_json_key_rules() -> None:
    from dataclasses import fields

    keys = [json_key(f) for f in fields(Input)]
    assert keys == ["rolloutId", "ring", "startedAt", "vms", "runId", "plan", "carry"]


@dataclass(frozen=True)
class Open:
    rollout_id: str
    ring: str | None = None
    rest: dict[str, Any] = field(default_factory=dict, metadata={"rest": True})


def test_an_open_input_keeps_every_key_it_does_not_name_and_its_nulls() -> None:
    doc: dict[str, Any] = {"rolloutId": "r", "ring": None, "state": "running", "counts": {"pass": 1}}
    value = from_payload(Open, doc)
    assert value.rollout_id == "r" and value.ring is None
    assert value.rest == {"ring": None, "state": "running", "counts": {"pass": 1}}
    assert to_payload(value) == doc  # the JSON written back is the JSON read
    assert to_payload(Open("r", rest={"rolloutId": "other"})) == {"rolloutId": "r"}  # named keys win
