// Durable Task Scheduler (managed Durable Functions backend) and its task hub.
// Deployed only when main.bicep's durableStorageProvider = 'DurableTaskScheduler'. The app's
// access (Durable Task Data Contributor) is granted by durable-task-role.bicep once the app
// exists: the app's settings need this module's endpoint, so the grant cannot live here.

@description('Region of the scheduler.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Scheduler name (3-64 letters, digits and hyphens).')
param schedulerName string

@description('Task hub name (the host.json hubName, via the TASKHUB_NAME app setting).')
param taskHubName string

@description('Consumption for pay-per-use, Dedicated for reserved throughput.')
@allowed([
  'Consumption'
  'Dedicated'
])
param skuName string = 'Consumption'

@description('Capacity units (Dedicated only).')
param skuCapacity int = 1

@description('IP ranges allowed to reach the scheduler. An empty list denies everything.')
param ipAllowlist array = [
  '0.0.0.0/0'
]

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: schedulerName
  location: location
  tags: tags
  properties: {
    ipAllowlist: ipAllowlist
    sku: skuName == 'Dedicated' ? {
      name: skuName
      capacity: skuCapacity
    } : {
      name: skuName
    }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

output schedulerId string = scheduler.id
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
