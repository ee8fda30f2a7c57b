// One ring's maintenance configuration (Guest OS patching, customer-managed schedule), created
// when the ring does not reference an existing one.
//
// Re-provisioning PUTs the whole configuration again, which would reset the include lists the
// app pins into it (kbNumbersToInclude / packageNameMasksToInclude) on promotion. After the
// first deployment, reference the created ids as existingMaintenanceConfigurationId instead
// (docs/deploy.md, "Pointing at existing maintenance configurations").

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
