// Assigns a (custom) role to the Function App identity on the resource group this module is
// deployed to. main.bicep loops it over the resource-group entries of rolloutScopes.

@description('GUID (name) of the role definition.')
param roleGuid string

@description('principalId of the Function App system-assigned identity.')
param principalId string

@description('Why the assignment exists (shown in the portal).')
param assignmentDescription string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleGuid)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}
