// The PatchRings Function App on the Flex Consumption plan (Linux, Python 3.11) with a
// system-assigned managed identity. The identity is the app's only credential: it reaches the
// storage account (host, Durable task hub, ledger), Application Insights, the Durable Task
// Scheduler when chosen, and ARM through the PatchRings custom role.
//
// Flex Consumption takes the runtime from functionAppConfig.runtime; the classic settings
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE and
// WEBSITE_CONTENT* are not allowed on this plan and are therefore never set here.

@description('Region of the plan and the app (a region that offers Flex Consumption).')
param location string

@description('Tags applied to the plan; the app additionally gets azd-service-name.')
param tags object

@description('Function App name (globally unique: it is the *.azurewebsites.net host name).')
param functionAppName string

@description('Flex Consumption plan name.')
param planName string

@description('azd service name (azure.yaml services key) used to find the app on azd deploy.')
param serviceName string

@description('Storage account of the app (AzureWebJobsStorage, deployment package).')
param storageAccountName string

@description('Blob endpoint of the storage account, e.g. https://acct.blob.core.windows.net/.')
param blobEndpoint string

@description('Blob container the deployment package is uploaded to.')
param deploymentContainerName string

@description('App settings (name -> value), already merged by main.bicep.')
param appSettings object

@description('Upper bound of instances. Rollout work is I/O-bound and small; a low cap also bounds ARM call rates.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Python version of the Flex Consumption runtime.')
param pythonVersion string = '3.11'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
  }
}

output functionAppId string = site.id
output functionAppName string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
output storageAccountName string = storageAccountName
