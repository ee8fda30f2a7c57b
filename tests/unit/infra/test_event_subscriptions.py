"""The Event Grid wiring: exactly PreMaintenanceEvent and PostMaintenanceEvent reach the app.

Why: a missing type means a ring's gate never runs (AUM then patches the ring unchecked, since a
failed or absent pre-event handler does not cancel a run); an extra type would start rollouts
from events the app does not understand. The subscription's shape is data
(infra/event-subscriptions.json) that the Bicep loads, so it is checked here.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.contracts import EVENTGRID_EXAMPLES
from tests.unit.infra.bicep_static import BicepFile, load_json
from tests.unit.infra.conftest import INFRA, REPO

pytestmark = pytest.mark.unit

DATA = load_json(INFRA / "event-subscriptions.json")
EXPECTED_TYPES = {
    "Microsoft.Maintenance.PreMaintenanceEvent",
    "Microsoft.Maintenance.PostMaintenanceEvent",
}


def test_the_filter_is_exactly_the_two_maintenance_events() -> None:
    types = DATA["filter"]["includedEventTypes"]
    assert len(types) == len(set(types)) == 2
    assert set(types) == EXPECTED_TYPES
    # Nothing else narrows or widens the filter behind the types' back.
    assert set(DATA["filter"]) <= {"includedEventTypes", "enableAdvancedFilteringOnArrays"}


def test_the_types_match_the_published_event_samples() -> None:
    examples = EVENTGRID_EXAMPLES
    published = set()
    for path in examples.glob("*MaintenanceEvent.*.json"):
        for event in json.loads(path.read_text(encoding="utf-8")):
            published.add(event.get("eventType") or event.get("type"))
    assert published == EXPECTED_TYPES


def test_the_topic_is_a_maintenance_configuration_system_topic() -> None:
    assert DATA["systemTopicType"] == "Microsoft.Maintenance.MaintenanceConfigurations"


def test_delivery_settings_are_within_event_grid_limits() -> None:
    retry = DATA["retryPolicy"]
    assert 1 <= retry["maxDeliveryAttempts"] <= 30
    assert 1 <= retry["eventTimeToLiveInMinutes"] <= 1440
    # Deliveries carry one event each (contracts §10.1); the trigger handles one at a time.
    assert DATA["destination"]["maxEventsPerBatch"] == 1
    assert 1 <= DATA["destination"]["preferredBatchSizeInKilobytes"] <= 1024
    # The trigger binds func.EventGridEvent, which is the Event Grid schema.
    assert DATA["eventDeliverySchema"] == "EventGridSchema"


def test_the_dead_letter_container_name_is_valid() -> None:
    name = DATA["deadLetterContainerName"]
    assert re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", name), name


def test_the_target_function_is_the_apps_event_grid_trigger() -> None:
    name = DATA["functionName"]
    assert name == "on_maintenance_event"  # the name docs/architecture.md's platform section uses
    sources = [p for d in ("triggers", ".") for p in (REPO / d).glob("*.py")]
    defined = [p for p in sources if re.search(rf"\b{name}\b", p.read_text(encoding="utf-8"))]
    if not any((REPO / "triggers").glob("*.py")):
        pytest.skip("triggers/ not written yet")
    assert defined, f"no trigger module defines {name}; Event Grid would deliver to a missing function"


def test_ring_events_bicep_takes_the_subscription_from_the_data(bicep_files: dict[str, BicepFile]) -> None:
    ring_events = bicep_files["modules/ring-events.bicep"].text
    assert "includedEventTypes: events.filter.includedEventTypes" in ring_events
    assert "topicType: events.systemTopicType" in ring_events
    assert "events.functionName" in ring_events
    # No event type is hard-coded in any Bicep file: the JSON is the single source.
    for name, bicep in bicep_files.items():
        assert "Microsoft.Maintenance.PreMaintenanceEvent" not in bicep.text, name
        assert "Microsoft.Maintenance.PostMaintenanceEvent" not in bicep.text, name


def test_delivery_goes_to_the_function_with_retry_and_identity_dead_lettering(
    bicep_files: dict[str, BicepFile],
) -> None:
    ring_events = bicep_files["modules/ring-events.bicep"].text
    assert re.search(r"endpointType:\s*'AzureFunction'", ring_events)
    assert "retryPolicy:" in ring_events
    assert "deadLetterWithResourceIdentity:" in ring_events
    assert re.search(r"endpointType:\s*'StorageBlob'", ring_events)
    assert "deadLetterDestination:" in ring_events and "deadLetterWithResourceIdentity" in ring_events
    # The topic's identity is what writes dead letters, so the topic must have one.
    assert re.search(r"identity:\s*\{\s*type:\s*'SystemAssigned'", ring_events)


def test_every_ring_with_events_gets_a_topic(bicep_files: dict[str, BicepFile]) -> None:
    main = bicep_files["main.bicep"].text
    assert re.search(r"module ringEvents 'modules/ring-events\.bicep' = \[for \(ring, i\) in rings:", main)
    assert "wireSubscription: wireEventSubscriptions" in main
    assert "deadLetterContainerName: eventsData.deadLetterContainerName" in main
