// Grants the Function App identity Durable Task Data Contributor on its Durable Task Scheduler.
// Without it the Durable extension's gRPC calls get 403 PermissionDenied.

@description('Existing scheduler name.')
param schedulerName string

@description('principalId of the Function App system-assigned identity.')
param principalId string

var roles = loadJsonContent('../builtin-roles.json')

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' existing = {
  name: schedulerName
}

resource dataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(scheduler.id, principalId, roles.durableTaskDataContributor.id)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.durableTaskDataContributor.id)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
