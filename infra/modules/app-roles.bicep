// Data-plane role assignments the Function App's identity needs on its own resources:
// the storage account (Functions host, Durable Azure Storage task hub, PatchRings ledger),
// Application Insights (Entra-authenticated telemetry) and the notifications topic (EventGrid
// Data Sender: publish only). Scoped to those resources, never wider.

@description('principalId of the Function App system-assigned identity.')
param principalId string

@description('Storage account name of the app.')
param storageAccountName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Name of the Event Grid custom topic the notify activity publishes to.')
param notifyTopicName string

var roles = loadJsonContent('../builtin-roles.json')

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource notifyTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: notifyTopicName
}

// Host: blob leases, host keys, and the Flex Consumption deployment package.
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageBlobDataOwner.id)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner.id)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Host and the Durable Azure Storage provider: control and work-item queues.
resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageQueueDataContributor.id)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor.id)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Durable history/instances tables *and* the PatchRings ledger tables (same account). One
// assignment serves both: ARM refuses a second assignment of the same role, principal and scope.
resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageTableDataContributor.id)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor.id)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher.id)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher.id)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The notify activity publishes CloudEvents to the topic (local auth is disabled on it: Entra only).
resource notifyTopicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(notifyTopic.id, principalId, roles.eventGridDataSender.id)
  scope: notifyTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender.id)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
