// Assigns a (custom) role to the Function App identity on the subscription this module is
// deployed to. main.bicep uses it for subscription entries of rolloutScopes and for the
// dynamic-scope role.

targetScope = 'subscription'

@description('GUID (name) of the role definition.')
param roleGuid string

@description('principalId of the Function App system-assigned identity.')
param principalId string

@description('Why the assignment exists (shown in the portal).')
param assignmentDescription string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleGuid)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}
