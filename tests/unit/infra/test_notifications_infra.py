"""The notifications topic in infra/: an Event Grid custom topic taking CloudEvents 1.0 with local
auth disabled, the app identity as EventGrid Data Sender on it (and nowhere wider), and its
endpoint in PATCHRINGS_NOTIFY_TOPIC_ENDPOINT."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.infra.bicep_static import BicepFile, load_json
from tests.unit.infra.conftest import INFRA

pytestmark = pytest.mark.unit

TOPIC = "Microsoft.EventGrid/topics@2022-06-15"
# learn.microsoft.com/azure/role-based-access-control/built-in-roles: "EventGrid Data Sender -
# Allows send access to event grid events." d5a91429-5739-47e2-a06b-3470a27159e7
EVENTGRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"


def _topic_body() -> Any:
    pytest.importorskip("pycep", reason="pycep-parser not installed")
    from tests.unit.infra.arm_schema import declared_resources

    (body,) = [b for f, _, t, b in declared_resources() if f == "modules/notifications.bicep" and t == TOPIC]
    return body


def test_the_topic_takes_cloud_events_with_entra_only_and_matches_the_arm_schema() -> None:
    from tests.unit.infra.arm_schema import ARM_TYPES, check_body

    body = _topic_body()
    properties = body["properties"]
    assert properties["inputSchema"] == "CloudEventSchemaV1_0"
    assert properties["disableLocalAuth"] is True
    schema = ARM_TYPES["resources"][TOPIC]["body"]
    assert check_body(body, schema) == []
    input_schema = schema["properties"]["properties"]["properties"]["inputSchema"]
    assert "CloudEventSchemaV1_0" in (input_schema.get("enum") or input_schema.get("knownValues"))
    # the checker would catch a misspelt property or setting the read-only endpoint
    assert check_body({**body, "properties": {**properties, "disableLocalAuthentication": True}}, schema) != []
    assert check_body({**body, "properties": {**properties, "endpoint": "https://x"}}, schema) != []


def test_the_app_identity_is_data_sender_on_the_topic_only(bicep_files: dict[str, BicepFile]) -> None:
    roles = load_json(INFRA / "builtin-roles.json")
    assert roles["eventGridDataSender"]["id"] == EVENTGRID_DATA_SENDER
    text = bicep_files["modules/app-roles.bicep"].text
    block = re.search(r"resource notifyTopicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = \{(.*?)^\}",
                      text, re.MULTILINE | re.DOTALL)
    assert block, "app-roles.bicep must assign EventGrid Data Sender on the notifications topic"
    assignment = block.group(1)
    assert "scope: notifyTopic\n" in assignment
    assert "roles.eventGridDataSender.id" in assignment and "principalId: principalId" in assignment
    assert re.search(r"resource notifyTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = \{"
                     r"\s*name: notifyTopicName", text)
    # no other file hands out the sender role (e.g. at resource-group scope)
    others = [name for name, b in bicep_files.items()
              if "eventGridDataSender" in b.text and name != "modules/app-roles.bicep"]
    assert others == []


def test_main_wires_the_topic_endpoint_and_name(bicep_files: dict[str, BicepFile]) -> None:
    main = bicep_files["main.bicep"].text
    assert re.search(r"^module notifications 'modules/notifications.bicep' = \{", main, re.MULTILINE)
    assert "  PATCHRINGS_NOTIFY_TOPIC_ENDPOINT: notifications.outputs.endpoint\n" in main
    assert "    notifyTopicName: notifications.outputs.topicName\n" in main
    settings = load_json(INFRA / "app-settings.json")
    assert "PATCHRINGS_NOTIFY_TOPIC_ENDPOINT" in settings["computedByBicep"]
    assert "PATCHRINGS_NOTIFY_TOPIC_CA_BUNDLE" in settings["localOnly"]
    module = bicep_files["modules/notifications.bicep"].text
    assert "output endpoint string = topic.properties.endpoint" in module
