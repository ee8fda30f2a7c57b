"""Maintenance event parsing against every contracts example, casing, and instance ids."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from patchrings.domain.events import MaintenanceEvent, instance_id_for, parse_maintenance_event
from patchrings.errors import EventRejected
from tests.contracts import EVENTGRID_EXAMPLES

pytestmark = pytest.mark.unit

EXAMPLES = EVENTGRID_EXAMPLES
MAINT = sorted(EXAMPLES.glob("*MaintenanceEvent.*.json"))
CORR = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/testrg/providers/"
        "Microsoft.Maintenance/maintenanceConfigurations/contosomaintenanceconfiguration/providers/"
        "microsoft.maintenance/applyupdates/20230509150000")


def load(name):
    return json.loads((EXAMPLES / name).read_text())


def pascal(value):
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal(v) for v in value]
    return value


def test_there_are_four_contract_examples():
    assert len(MAINT) == 4


@pytest.mark.parametrize("path", MAINT, ids=lambda p: p.name)
def test_every_contract_example_parses(path):
    raw = json.loads(path.read_text())
    ev = parse_maintenance_event(raw)
    assert ev.kind == ("pre" if path.name.startswith("Pre") else "post")
    assert ev.schema == ("cloudevents" if "cloudevents" in path.name else "eventgrid")
    assert ev.correlation_id == CORR
    assert ev.configuration_id.endswith("/maintenanceConfigurations/contosomaintenanceconfiguration")
    assert ev.start == datetime(2023, 5, 9, 15, 0, tzinfo=UTC)
    assert ev.end == datetime(2023, 5, 9, 18, 55, tzinfo=UTC)
    assert ev.resource_subscription_ids == ("subscription guid 1", "subscription guid 2")
    assert ev.subject == "contosomaintenanceconfiguration"
    if ev.kind == "pre":
        assert ev.cancellation_cutoff == datetime(2023, 5, 9, 14, 59, tzinfo=UTC)
        assert ev.status is None
    else:
        assert ev.cancellation_cutoff is None
        assert ev.status == "Succeeded"
    assert ev.event_time is not None and ev.event_time.microsecond == 371747
    assert MaintenanceEvent.from_dict(ev.to_dict()) == ev
    assert json.loads(json.dumps(ev.to_dict())) == ev.to_dict()


@pytest.mark.parametrize("path", MAINT, ids=lambda p: p.name)
def test_pascal_case_keys_parse_the_same(path):
    raw = json.loads(path.read_text())
    assert parse_maintenance_event(pascal(raw)) == parse_maintenance_event(raw)


def test_upper_case_keys_and_single_object_and_string_subscription_ids():
    raw = load("PreMaintenanceEvent.eventgrid-schema.json")[0]
    raw = {k.upper(): v for k, v in raw.items()}
    raw["DATA"] = {k.upper(): v for k, v in raw["DATA"].items()}
    raw["DATA"]["RESOURCESUBSCRIPTIONIDS"] = "sub-a, sub-b"
    ev = parse_maintenance_event(raw)
    assert ev.kind == "pre" and ev.resource_subscription_ids == ("sub-a", "sub-b")


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda e: e.update(eventType="Microsoft.Storage.BlobCreated"), "not a maintenance event"),
        (lambda e: e.pop("eventType"), "no type"),
        (lambda e: e.pop("data"), "no data"),
        (lambda e: (e["data"].pop("correlationId"), e.pop("id")), "correlationId is required"),
        (lambda e: e["data"].pop("startDateTime"), "startDateTime is required"),
        (lambda e: e["data"].update(startDateTime="yesterday"), "not an ISO-8601 timestamp"),
        (lambda e: (e["data"].pop("maintenanceConfigurationId"), e.pop("topic")), "maintenanceConfigurationId"),
        (lambda e: e["data"].update(maintenanceConfigurationId="/subscriptions/x/resourceGroups/y"),
         "not a maintenance configuration id"),
        # hostile input (issue 13.15): rejected (acknowledged by the trigger), never a crash
        (lambda e: e["data"].update(correlationId=CORR + "/" + "a" * 1100), "longer than 512"),
        (lambda e: e["data"].update(maintenanceConfigurationId="/maintenanceConfigurations/" + "m" * 600),
         "longer than 512"),
        (lambda e: e["data"].update(startDateTime=["2026-11-17T12:00:00Z"]), "not an ISO-8601 timestamp"),
        (lambda e: e["data"].update(startDateTime={"at": 1}), "not an ISO-8601 timestamp"),
    ],
)
def test_malformed_events_are_rejected_with_a_reason(mutate, fragment):
    raw = load("PreMaintenanceEvent.eventgrid-schema.json")[0]
    mutate(raw)
    with pytest.raises(EventRejected) as exc:
        parse_maintenance_event(raw)
    assert fragment in exc.value.message
    assert exc.value.to_dict()["error"]["code"] == "EventRejected"


def test_validation_event_and_bad_shapes_are_rejected():
    with pytest.raises(EventRejected, match="not a maintenance event"):
        parse_maintenance_event(load("SubscriptionValidationEvent.eventgrid-schema.json"))
    with pytest.raises(EventRejected, match="exactly one event"):
        parse_maintenance_event([])
    with pytest.raises(EventRejected, match="JSON object"):
        parse_maintenance_event("text")


def test_instance_ids_are_deterministic_case_insensitive_and_slash_free():
    pre_eg = parse_maintenance_event(load("PreMaintenanceEvent.eventgrid-schema.json"))
    pre_ce = parse_maintenance_event(load("PreMaintenanceEvent.cloudevents-schema.json"))
    post = parse_maintenance_event(load("PostMaintenanceEvent.eventgrid-schema.json"))
    iid = instance_id_for(pre_eg)
    assert iid == instance_id_for(pre_ce)
    assert iid == instance_id_for(CORR.upper(), "pre")
    assert iid != instance_id_for(post)
    assert instance_id_for(post) == instance_id_for(CORR, "post")
    assert iid.startswith("mw-pre-contosomaintenanceconfiguration-20230509150000-")
    assert re.fullmatch(r"[a-z0-9-]{1,100}", iid)
    other = CORR.replace("20230509150000", "20230510150000")
    assert instance_id_for(other, "pre") != iid
    with pytest.raises(ValueError):
        instance_id_for(CORR)


def test_deeply_nested_or_oddly_typed_fields_never_crash_the_parser():
    raw = load("PreMaintenanceEvent.eventgrid-schema.json")[0]
    nested: object = "x"
    for _ in range(5000):
        nested = {"k": [nested]}
    raw["data"]["extra"] = nested
    raw["subject"] = {"not": "a string"}
    raw["eventTime"] = ["garbage"]
    raw["data"]["status"] = "S" * 1000
    raw["data"]["endDateTime"] = None
    ev = parse_maintenance_event(raw)
    assert ev.kind == "pre" and ev.event_time is None
    assert ev.subject == "{'not': 'a string'}" and len(ev.status or "") == 100


def test_arm_ids_one_module() -> None:
    from patchrings.domain import arm_ids

    mc = "/subscriptions/S-1/resourceGroups/RG/providers/Microsoft.Maintenance/maintenanceConfigurations/mc"
    assert arm_ids.same_arm_id(mc.upper() + "/", " " + mc)
    assert not arm_ids.same_arm_id("", "")
    assert not arm_ids.same_arm_id(None, mc)
    assert arm_ids.subscription_of(mc) == "S-1"
    assert arm_ids.subscription_of("https://m/subscriptions/abc/providers/x?api-version=1") == "abc"
    with pytest.raises(ValueError):
        arm_ids.subscription_of("/resourceGroups/rg")
    assert arm_ids.resource_group_of(mc) == "RG"
    assert arm_ids.resource_group_of("/subscriptions/s") is None
    assert arm_ids.last_segment(mc + "/") == "mc"
    assert arm_ids.last_segment(None) == ""
    assert arm_ids.normalize_arm_id(" /A/B/ ") == "/a/b"
    parsed = arm_ids.parse_resource_id(mc)
    assert (parsed.subscription, parsed.resource_group, parsed.name) == ("S-1", "RG", "mc")
    assert parsed.full_type == "Microsoft.Maintenance/maintenanceConfigurations"
    with pytest.raises(ValueError):
        arm_ids.parse_resource_id("not-an-id")
