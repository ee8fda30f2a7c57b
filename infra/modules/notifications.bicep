// PatchRings notifications (issue 9): the Event Grid custom topic the app's `notify` activity
// publishes CloudEvents to (PatchRings.ApprovalWaiting, GateFailed, GateInconclusive,
// RolloutHalted, CancelFailed, RolloutCompleted; source /patchrings/rollouts/<id>).
// Teams route them to Teams, email or a ticket with event subscriptions on this topic (not created
// here: where notifications go is the operator's choice, see docs/deploy.md).
//
// * inputSchema CloudEventSchemaV1_0: the app publishes CloudEvents 1.0
//   (`application/cloudevents-batch+json`, azure-eventgrid's EventGridPublisherClient).
// * disableLocalAuth: true: no access keys or SAS tokens, Microsoft Entra ID only; the app's
//   managed identity gets "EventGrid Data Sender" on this topic (app-roles.bicep), the token
//   audience is https://eventgrid.azure.net.
// * The endpoint (https://<name>.<region>-1.eventgrid.azure.net/api/events) is an output: main.bicep
//   puts it in PATCHRINGS_NOTIFY_TOPIC_ENDPOINT.
// Checked against the Microsoft.EventGrid/topics 2022-06-15 ARM schema
// (tests/unit/infra/test_notifications_infra.py, tests/unit/infra/schemas/arm-types.json).

@description('Name of the custom topic (3-50 letters, digits and hyphens).')
@minLength(3)
@maxLength(50)
param topicName string

@description('Region of the topic (the app\'s).')
param location string

@description('Tags applied to the topic.')
param tags object

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: topicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output topicName string = topic.name
output topicId string = topic.id
output endpoint string = topic.properties.endpoint
