// One ring's maintenance configuration (Guest OS patching, customer-managed schedule).
//
// Deployed ONLY by the deployment that creates it (main.bicep: createMaintenanceConfigurations /
// the ring's createConfiguration). A deployment PUTs a declared resource whole, so declaring it
// again would wipe the include lists the app pins on promotion (kbNumbersToInclude /
// packageNameMasksToInclude: the next ring would install every Critical and Security patch
// instead of the validated manifest) and reset the window. After that first deployment the ring
// references the configuration by id and this module is not deployed at all
// (tests/unit/infra/test_configurations_once.py).
//
// maintenanceWindow.startDateTime is a fixed value (main.bicep maintenanceStartDateTime), never
// derived from utcNow(): the maintenance API accepts "the current date or a future date" at
// creation (MaintenanceWindow.startDateTime, Microsoft.Maintenance 2023-04-01).

@description('Maintenance configuration name.')
param name string

@description('Region of the configuration (the VMs it patches may be anywhere in its scope).')
param location string

@description('Tags applied to the configuration.')
param tags object

@description('maintenanceWindow: startDateTime and expirationDateTime as "yyyy-MM-dd HH:mm", duration "HH:mm" (at most 03:55), timeZone (Windows zone name or UTC), recurEvery (e.g. "Month Second Tuesday Offset2").')
param maintenanceWindow object

@description('installPatches: rebootSetting (IfRequired | Never | Always), windowsParameters, linuxParameters.')
param installPatches object

resource configuration 'Microsoft.Maintenance/maintenanceConfigurations@2023-04-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    namespace: 'Microsoft.Maintenance'
    maintenanceScope: 'InGuestPatch'
    visibility: 'Custom'
    extensionProperties: {
      InGuestPatchMode: 'User'
    }
    maintenanceWindow: maintenanceWindow
    installPatches: installPatches
  }
}

output id string = configuration.id
output location string = configuration.location
