// Lets one ring's system topic identity write undeliverable events into the dead-letter
// container, and nothing else: the assignment is scoped to that one container.

@description('Storage account holding the dead-letter container.')
param storageAccountName string

@description('Dead-letter container name.')
param containerName string

@description('principalId of the ring\'s system topic identity.')
param principalId string

var roles = loadJsonContent('../builtin-roles.json')

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

resource writer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, principalId, roles.storageBlobDataContributor.id)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor.id)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
