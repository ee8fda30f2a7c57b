// A ring's dynamic scope: a subscription-level configuration assignment whose filter selects the
// VMs tagged with the ring's *open* value. Used by rings promoted with `retag`: the app moves
// VMs from the hold value to this value before the ring's T-40, and back at the end of a cycle.
// (Rings promoted with `enableConfiguration` get their assignment from the app itself.)

targetScope = 'subscription'

@description('Assignment name (unique in the subscription).')
param name string

@description('Resource id of the ring\'s maintenance configuration.')
param maintenanceConfigurationId string

@description('Tag name the rings share, e.g. patchRing.')
param tagName string

@description('Tag value that puts a VM in this ring\'s runs, e.g. ring1.')
param tagValue string

@description('Optional resource groups to narrow the scope to.')
param resourceGroups array = []

@description('Optional locations to narrow the scope to.')
param locations array = []

@description('Optional OS types (Windows, Linux) to narrow the scope to.')
param osTypes array = []

resource assignment 'Microsoft.Maintenance/configurationAssignments@2023-04-01' = {
  name: name
  properties: {
    maintenanceConfigurationId: maintenanceConfigurationId
    filter: {
      resourceTypes: [
        'Microsoft.Compute/virtualMachines'
      ]
      // Empty narrowing lists are left out (null): an explicit [] is not a documented "no limit".
      resourceGroups: empty(resourceGroups) ? null : resourceGroups
      locations: empty(locations) ? null : locations
      osTypes: empty(osTypes) ? null : osTypes
      tagSettings: {
        filterOperator: 'All'
        tags: {
          '${tagName}': [
            tagValue
          ]
        }
      }
    }
  }
}

output id string = assignment.id
