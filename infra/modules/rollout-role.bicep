// The PatchRings custom roles, defined from ../role-actions.json:
// * the rollout role (every ARM action the activities perform), assignable at rolloutScopes
//   (the resource groups holding the ring VMs and maintenance configurations);
// * the fleet reader role (subscription-level lists of VMs and maintenance assignments, plus
//   dynamic-scope writes when allowed), assignable at the subscriptions in fleetSubscriptionIds
//   and defined only when there are any.
// Role names are tenant-wide, so they carry the environment name.

targetScope = 'subscription'

@description('Suffix that makes the role names unique in the tenant (the azd environment name).')
param nameSuffix string

@description('Scopes the rollout role may be assigned at (subscriptions or resource groups).')
param assignableScopes array

@description('Subscription ids where the fleet reader role is assigned; empty = no such role.')
param fleetSubscriptionIds array

@description('Include the dynamic-scope assignment writes in the fleet reader role (rings opened with enableConfiguration).')
param allowDynamicScopeWrites bool

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

resource fleetRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (!empty(fleetSubscriptionIds)) {
  name: guid(tenant().tenantId, 'patchrings-fleet-role', nameSuffix)
  properties: {
    roleName: '${role.subscriptionScope.roleName} (${nameSuffix})'
    description: role.subscriptionScope.description
    type: 'CustomRole'
    permissions: [
      {
        actions: concat(role.subscriptionScope.actions, allowDynamicScopeWrites ? role.subscriptionScope.dynamicScopeActions : [])
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [for id in fleetSubscriptionIds: '/subscriptions/${id}']
  }
}

// The role definition GUIDs (resource names). Assignments rebuild the full id in their own
// subscription with subscriptionResourceId(), which is how ARM expects custom roles referenced.
output rolloutRoleGuid string = rolloutRole.name
output fleetRoleGuid string = empty(fleetSubscriptionIds) ? '' : fleetRole.name
