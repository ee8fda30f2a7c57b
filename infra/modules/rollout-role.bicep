// The PatchRings custom roles, defined from ../role-actions.json:
// * the rollout role (every ARM action the activities perform), assignable at rolloutScopes;
// * the dynamic-scope role (only subscription-level maintenance assignments), assignable at the
//   subscriptions listed in dynamicScopeSubscriptionIds, defined only when there are any.
// Role names are tenant-wide, so they carry the environment name.

targetScope = 'subscription'

@description('Suffix that makes the role names unique in the tenant (the azd environment name).')
param nameSuffix string

@description('Scopes the rollout role may be assigned at (subscriptions or resource groups).')
param assignableScopes array

@description('Subscription ids where the dynamic-scope role is assigned; empty = no such role.')
param dynamicScopeSubscriptionIds array

var role = loadJsonContent('../role-actions.json')

resource rolloutRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(tenant().tenantId, 'patchrings-rollout-role', nameSuffix)
  properties: {
    roleName: '${role.roleName} (${nameSuffix})'
    description: role.description
    type: 'CustomRole'
    permissions: [
      {
        actions: role.actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource dynamicScopeRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (!empty(dynamicScopeSubscriptionIds)) {
  name: guid(tenant().tenantId, 'patchrings-dynamic-scope-role', nameSuffix)
  properties: {
    roleName: '${role.subscriptionScope.roleName} (${nameSuffix})'
    description: role.subscriptionScope.description
    type: 'CustomRole'
    permissions: [
      {
        actions: role.subscriptionScope.actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [for id in dynamicScopeSubscriptionIds: '/subscriptions/${id}']
  }
}

// The role definition GUIDs (resource names). Assignments rebuild the full id in their own
// subscription with subscriptionResourceId(), which is how ARM expects custom roles referenced.
output rolloutRoleGuid string = rolloutRole.name
output dynamicScopeRoleGuid string = empty(dynamicScopeSubscriptionIds) ? '' : dynamicScopeRole.name
