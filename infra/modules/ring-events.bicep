// The Event Grid wiring of one ring: a system topic on the ring's maintenance configuration
// (topic type Microsoft.Maintenance.MaintenanceConfigurations) and, once the app's code is
// deployed, a subscription that delivers exactly PreMaintenanceEvent and PostMaintenanceEvent
// to the app's Event Grid trigger. The subscription's shape is data (../event-subscriptions.json)
// so tests can check the filter without compiling Bicep.
//
// Deployed into the configuration's own resource group: a system topic lives in the source's
// subscription and region. Azure allows one system topic per source, so a configuration that
// already has one (e.g. created in the portal) must have it deleted or reused by hand.
//
// Delivery, two shapes (issue 13 item 17):
//   * App Service authentication off: endpoint type AzureFunction, the app's Event Grid trigger
//     (Event Grid calls the trigger's webhook with the extension's system key).
//   * authentication on: an AzureFunction destination cannot pass App Service authentication
//     (Event Grid authenticates AzureFunction deliveries with a key only). Microsoft's docs
//     ("Authenticate event delivery to event handlers", learn.microsoft.com/azure/event-grid/
//     security-authentication: "If you're using an Azure function protected by a Microsoft Entra
//     app, you need to use the generic webhook approach using the HTTP trigger") prescribe a
//     WebHook destination with azureActiveDirectoryApplicationIdOrUri / azureActiveDirectoryTenantId:
//     Event Grid then sends a bearer token for that app with every delivery, which Easy Auth
//     validates (audience = the app registration; authorization policy: Event Grid's application
//     id and service principal are allowed, see app-auth.bicep). The endpoint is the app's
//     HTTP-triggered POST /api/events (function level, so the URL carries a function key read with
//     listKeys at deployment; ARM returns only endpointBaseUrl afterwards). That endpoint answers
//     Event Grid's SubscriptionValidation handshake and takes the Event Grid schema.
// Both shapes are checked against the Microsoft.EventGrid 2022-06-15 ARM schema
// (tests/unit/infra/test_event_delivery.py, tests/unit/infra/schemas/arm-types.json).
//
// Either way Event Grid checks the endpoint when the subscription is created (the AzureFunction
// must exist; a WebHook must answer the validation handshake), so wireSubscription is false on
// the first provision and true once `azd deploy` has published the code (postdeploy hook).

@description('Ring name from the rollout plan (used in resource names).')
param ringName string

@description('Resource id of the ring\'s maintenance configuration.')
param maintenanceConfigurationId string

@description('Region of the maintenance configuration (the system topic must be in the same region).')
param location string

@description('Tags applied to the topic.')
param tags object

@description('Resource id of the Function App (…/providers/Microsoft.Web/sites/<name>).')
param functionAppId string

@description('Resource id of the storage account holding the dead-letter container.')
param deadLetterStorageAccountId string

@description('Subscription id of the dead-letter storage account (the app\'s).')
param deadLetterStorageSubscriptionId string

@description('Resource group of the dead-letter storage account (the app\'s).')
param deadLetterStorageResourceGroup string

@description('Name of the dead-letter storage account.')
param deadLetterStorageAccountName string

@description('Create the event subscription (the function must be deployed already).')
param wireSubscription bool

@description('Authenticated delivery when App Service authentication is on: {applicationIdOrUri, tenantId, hostName} (the Entra app Event Grid gets a token for, its tenant, the app\'s host name). Empty: AzureFunction delivery (authentication off).')
param entraDelivery object = {}

var events = loadJsonContent('../event-subscriptions.json')

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: take('evgt-patchrings-${ringName}-${uniqueString(maintenanceConfigurationId)}', 128)
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: maintenanceConfigurationId
    topicType: events.systemTopicType
  }
}

var authenticated = !empty(entraDelivery)

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (wireSubscription) {
  parent: topic
  name: events.subscriptionName
  properties: {
    destination: authenticated ? {
      endpointType: 'WebHook'
      properties: {
        // listKeys is evaluated only when this (conditional) subscription is deployed.
        endpointUrl: 'https://${entraDelivery.?hostName ?? ''}/${events.authenticatedDelivery.route}?code=${listKeys('${functionAppId}/host/default', '2024-04-01').functionKeys.default}'
        azureActiveDirectoryApplicationIdOrUri: entraDelivery.?applicationIdOrUri ?? ''
        azureActiveDirectoryTenantId: entraDelivery.?tenantId ?? ''
        maxEventsPerBatch: events.destination.maxEventsPerBatch
        preferredBatchSizeInKilobytes: events.destination.preferredBatchSizeInKilobytes
      }
    } : {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${events.functionName}'
        maxEventsPerBatch: events.destination.maxEventsPerBatch
        preferredBatchSizeInKilobytes: events.destination.preferredBatchSizeInKilobytes
      }
    }
    filter: {
      includedEventTypes: events.filter.includedEventTypes
      enableAdvancedFilteringOnArrays: events.filter.enableAdvancedFilteringOnArrays
    }
    eventDeliverySchema: events.eventDeliverySchema
    retryPolicy: {
      maxDeliveryAttempts: events.retryPolicy.maxDeliveryAttempts
      eventTimeToLiveInMinutes: events.retryPolicy.eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: events.deadLetterContainerName
        }
      }
    }
  }
  // Event Grid dead-letters with the topic identity: that identity's role on the container
  // must exist before the subscription can dead-letter anything (issue 13 item 17).
  dependsOn: [
    deadLetterWriter
  ]
}

// The topic's identity may write into the dead-letter container (and nowhere else).
module deadLetterWriter 'deadletter-role.bicep' = {
  name: take('patchrings-deadletter-${ringName}-${uniqueString(maintenanceConfigurationId)}', 64)
  scope: resourceGroup(deadLetterStorageSubscriptionId, deadLetterStorageResourceGroup)
  params: {
    storageAccountName: deadLetterStorageAccountName
    containerName: events.deadLetterContainerName
    principalId: topic.identity.principalId
  }
}

output systemTopicId string = topic.id
output principalId string = topic.identity.principalId
