// PatchRings: everything the ring-gated patch rollout app needs in Azure, in one resource group
// deployment (`azd up`, or `az deployment group create -f infra/main.bicep`).
//
//   * Function App on Flex Consumption (Python 3.11), system-assigned identity, no keys:
//     its storage (host, Durable task hub, ledger), Application Insights and, when chosen, the
//     Durable Task Scheduler are all reached with that identity.
//   * Each ring's maintenance configuration (created here or referenced by id), an Event Grid
//     system topic on it and a subscription delivering exactly the pre/post maintenance events
//     to the app's Event Grid trigger, with retry and a dead-letter container.
//   * Least privilege: a custom role holding exactly the ARM actions the activities perform
//     (role-actions.json), assigned at the resource groups the rollout plan touches, plus a
//     narrow fleet-reader role on the fleet's subscriptions (subscription-level VM and
//     assignment lists, and dynamic-scope writes for rings opened by assignment).
//
// Data the tests check lives in JSON next to this file and is loaded with loadJsonContent:
// app-settings.json, role-actions.json, event-subscriptions.json, builtin-roles.json.
// infra/README.md explains each parameter; docs/deploy.md walks through a deployment.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

@description('A ring\'s dynamic scope: VMs of the subscription tagged <tagName>=<tagValue> join the ring\'s scheduled runs. Only for rings promoted with `retag` (the app moves VMs between the hold value and tagValue); tagName/tagValue must be the plan ring\'s members.tag name/value.')
type dynamicScopeSpec = {
  @description('Subscription whose VMs the scope selects; defaults to this deployment\'s subscription.')
  subscriptionId: string?

  @description('Tag name the rollout plan\'s members.tag.name uses, e.g. patchRing.')
  tagName: string

  @description('Tag value that opens the ring (members.tag.value), e.g. ring1.')
  tagValue: string

  @description('Optional resource groups to narrow the scope to.')
  resourceGroups: string[]?

  @description('Optional locations to narrow the scope to.')
  locations: string[]?

  @description('Optional OS types (Windows, Linux) to narrow the scope to.')
  osTypes: string[]?
}

@description('One ring of the rollout plan, as far as Azure resources are concerned.')
type ringSpec = {
  @description('Ring name as the rollout plan names it (ring0, ring1, ...). Used in resource names.')
  name: string

  @description('Resource id of an existing maintenance configuration. Absent or empty: the configuration is the one named by maintenanceConfigurationName / resourceGroupName, created by this template only when createMaintenanceConfigurations (or createConfiguration) is true.')
  existingMaintenanceConfigurationId: string?

  @description('Create this ring\'s configuration in this deployment whatever createMaintenanceConfigurations says (adding a ring after the first deployment). Remove it again once the configuration exists: every deployment that creates a configuration PUTs it whole.')
  createConfiguration: bool?

  @description('Name of the configuration created here (when no existing id). Defaults to mc-patchrings-<ring>-<token>. The rollout plan\'s members.maintenanceConfigurationId must name the same configuration.')
  maintenanceConfigurationName: string?

  @description('Existing resource group (this subscription) for a created configuration and its system topic. Defaults to this deployment\'s resource group.')
  resourceGroupName: string?

  @description('Region of the maintenance configuration (existing or created). Defaults to location.')
  location: string?

  @description('maintenanceWindow of a created configuration (startDateTime, duration, timeZone, recurEvery, expirationDateTime); fields not given come from the default window and startDateTime from maintenanceStartDateTime (e.g. give only recurEvery).')
  maintenanceWindow: object?

  @description('installPatches of a created configuration (rebootSetting, windowsParameters, linuxParameters).')
  installPatches: object?

  @description('Wire this ring\'s pre/post maintenance events to the app (default true).')
  events: bool?

  @description('Create a dynamic scope for this ring. Only for a ring whose plan open.mode is retag (the deployment fails otherwise: on an enableConfiguration ring the app creates and removes the assignment itself, and a standing one would leave the ring open for good). Named as the app looks it up: the plan\'s open.assignmentName, or patchrings-<ring>.')
  dynamicScope: dynamicScopeSpec?
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name: makes resource names unique and names the custom roles.')
param environmentName string

@description('Region of the app and its resources (one that offers Flex Consumption).')
param location string = resourceGroup().location

@description('Durable Functions backend: AzureStorage (default, the app\'s storage account) or DurableTaskScheduler (managed backend for large fleets / high throughput).')
@allowed([
  'AzureStorage'
  'DurableTaskScheduler'
])
param durableStorageProvider string = 'AzureStorage'

@description('Durable Task Scheduler SKU (only with durableStorageProvider = DurableTaskScheduler).')
@allowed([
  'Consumption'
  'Dedicated'
])
param durableTaskSchedulerSku string = 'Consumption'

@description('Durable task hub name; overrides host.json extensions.durableTask.hubName in Azure.')
@minLength(3)
@maxLength(45)
param taskHubName string = 'patchrings'

@description('The rings that have a maintenance configuration (scheduled rings, and Ring 0 when its pre-event starts the rollout).')
param rings ringSpec[] = [
  {
    name: 'ring1'
  }
  {
    name: 'ring2'
  }
]

@description('Scopes the app acts on: the resource groups of the ring VMs and of existing maintenance configurations ("/subscriptions/<id>/resourceGroups/<name>"; a whole subscription "/subscriptions/<id>" also works but grants more). The PatchRings rollout role is assigned at each; the resource groups of configurations created here are added.')
param rolloutScopes string[] = []

@description('Subscriptions of the fleet (the plan\'s members.subscriptions): the app lists VMs and maintenance assignments there at subscription level, so it gets the narrow fleet-reader role on each.')
param fleetSubscriptionIds string[] = [
  subscription().subscriptionId
]

@description('Let the app write subscription-level dynamic-scope assignments (rings whose open.mode is enableConfiguration). False keeps the fleet-reader role read-only.')
param allowDynamicScopeWrites bool = true

@description('Create the Event Grid subscriptions. Must be false until the app code (its on_maintenance_event function) is deployed; azure.yaml\'s postdeploy hook re-provisions with true.')
param wireEventSubscriptions bool = false

@description('Client id of the Entra app registration for App Service authentication (Easy Auth). Required when any ring of the deployed plan (plans/default.json) has manual approval: the app trusts the caller\'s principal only with authentication on, so without it nobody could approve. The deployment fails with a message naming those rings otherwise.')
param authClientId string = ''

@description('With authentication on: comma-separated object ids (oid) of the users and service principals allowed to call the API (approvers, operators). This or authAllowedGroupIds must name someone, otherwise every principal of the tenant could call the API (the deployment fails). azd: PATCHRINGS_AUTH_ALLOWED_PRINCIPAL_IDS.')
param authAllowedPrincipalIds string = ''

@description('With authentication on: comma-separated object ids of Entra groups whose members may call the API (tokens must carry the groups claim). azd: PATCHRINGS_AUTH_ALLOWED_GROUP_IDS.')
param authAllowedGroupIds string = ''

@description('With authentication on: client (application) ids whose tokens are accepted (appid / azp claim). Default: the Azure CLI. Event Grid\'s application is added when rings deliver events.')
param authAllowedClientApplications array = [
  '04b07795-8ddb-461a-bbee-02f9e1bf7b46'
]

@description('With authentication on and ring events: object id of the "Azure Event Grid" service principal in this tenant (az ad sp show --id 4962773b-9cdb-44cf-a8bf-237846a00ab7 --query id -o tsv); the authorization policy lets it deliver events.')
param eventGridPrincipalId string = ''

@description('Function App name; empty = generated.')
param functionAppName string = ''

@description('Storage account name; empty = generated.')
param storageAccountName string = ''

// Flex Consumption's bounds for maximumInstanceCount, from Microsoft's "Event-driven scaling in
// Azure Functions" (articles/azure-functions/event-driven-scaling.md, ms.date 08/03/2026, Limit
// scale-out): "Currently the lowest maximum instance count value is 1, and the highest supported
// maximum instance count value is 1000". (The preview-era page, ms.date 05/12/2024, said 40; the
// current page wins. Validated here as well as in the module, so a bad value fails before any
// resource is touched.)
@description('Upper bound of Function App instances (Flex Consumption: 1-1000). Rollout work is I/O-bound and small; a low cap also bounds ARM call rates.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Tags added to every resource.')
param tags object = {}

@description('Create the maintenance configurations of rings without existingMaintenanceConfigurationId. True only for the deployment that first creates them: a deployment that declares a configuration PUTs it whole, which would wipe the include lists the app pins on promotion (kbNumbersToInclude / packageNameMasksToInclude) and reset its window. With false (the default) every ring references its configuration by id and no configuration is sent. azd: PATCHRINGS_CREATE_CONFIGURATIONS (default true), which the postprovision hook sets to false after the first successful provision.')
param createMaintenanceConfigurations bool = false

@description('First start of the created configurations, "yyyy-MM-dd HH:mm" in their time zone (UTC unless the ring says otherwise); Azure accepts today or a later date when the configuration is created. A fixed value, never the deployment time: required when a configuration is created without its own maintenanceWindow.startDateTime. azd: PATCHRINGS_MAINTENANCE_START.')
param maintenanceStartDateTime string = ''

// ---------------------------------------------------------------------------------------------
// Names and data
// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, { 'azd-env-name': environmentName })
var serviceName = 'patchrings'
var appName = !empty(functionAppName) ? functionAppName : 'func-patchrings-${resourceToken}'
var stName = !empty(storageAccountName) ? storageAccountName : 'stpr${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var useDurableTaskScheduler = durableStorageProvider == 'DurableTaskScheduler'

var appSettingsData = loadJsonContent('app-settings.json')
var eventsData = loadJsonContent('event-subscriptions.json')

// The rollout plan the app loads: app-settings.json sets PATCHRINGS_PLAN_PATH to plans/default.json
// (checked by tests/unit/infra/test_auth_required.py), the package ships that file, and this
// template reads the same file at build time to derive what the deployment must enforce.
var deployedPlan = loadJsonContent('../plans/default.json')

// Rings whose approval is manual, resolved as the plan loader does: a ring's own approval block
// replaces defaults.approval, which replaces the built-in {mode: none}.
var manualApprovalRings = map(filter(deployedPlan.rings, planRing => (contains(planRing, 'approval') ? (planRing.approval.?mode ?? 'none') : (deployedPlan.?defaults.?approval.?mode ?? 'none')) == 'manual'), planRing => planRing.name)

var manualApprovalRingList = join(manualApprovalRings, ', ')

// App Service authentication: on with authClientId; required whenever a ring's approval is manual
// (issue 13 item 10): the app trusts X-MS-CLIENT-PRINCIPAL only when App Service authentication is
// enabled (WEBSITE_AUTH_ENABLED), so a plan with manual approvals cannot run without it.
var authEnabled = !empty(authClientId) ? true : (empty(manualApprovalRings) ? false : fail('App Service authentication is required: plans/default.json has manual approval on ring(s) ${manualApprovalRingList}, and approvers are identified only by the principal App Service authentication forwards. Set authClientId (azd: PATCHRINGS_AUTH_CLIENT_ID) to the Entra app registration of the API (docs/deploy.md section 7).'))

// Rings that deliver events to the app (with authentication on, through Entra-authenticated webhooks).
var ringsWithEvents = filter(rings, ring => ring.?events ?? true)
var authenticatedEvents = authEnabled && !empty(ringsWithEvents)

// Authorization policy (defaultAuthorizationPolicy): not every principal of the tenant may call.
var allowedPrincipalList = filter(map(split(authAllowedPrincipalIds, ','), id => trim(id)), id => !empty(id))
var allowedGroupList = filter(map(split(authAllowedGroupIds, ','), id => trim(id)), id => !empty(id))
var authPrincipalIds = !authEnabled ? [] : union(allowedPrincipalList, authenticatedEvents ? [
  empty(eventGridPrincipalId) ? fail('eventGridPrincipalId is required: with App Service authentication on, Event Grid delivers ring events with an Entra token and the authorization policy must allow its service principal (az ad sp show --id ${eventsData.authenticatedDelivery.eventGridApplicationId} --query id -o tsv; azd: PATCHRINGS_EVENTGRID_PRINCIPAL_ID).') : eventGridPrincipalId
] : [])
var authPolicyHasCallers = !authEnabled || !empty(allowedPrincipalList) || !empty(allowedGroupList) ? true : fail('With App Service authentication on, authAllowedPrincipalIds or authAllowedGroupIds must name who may call the API (azd: PATCHRINGS_AUTH_ALLOWED_PRINCIPAL_IDS): otherwise every principal of the tenant could.')
var authClientApplications = !authEnabled ? [] : union(authAllowedClientApplications, authenticatedEvents ? [
  eventsData.authenticatedDelivery.eventGridApplicationId
] : [])

// Window of a created maintenance configuration when its ring gives none: monthly, the Thursday
// after Patch Tuesday, 3 h 55 min (the Guest-scope maximum), from maintenanceStartDateTime. No
// utcNow(): a start computed from the deployment time would move on every deployment.
var defaultMaintenanceWindow = {
  expirationDateTime: '9999-12-31 23:59'
  duration: '03:55'
  timeZone: 'UTC'
  recurEvery: 'Month Second Tuesday Offset2'
}

var defaultInstallPatches = {
  rebootSetting: 'IfRequired'
  windowsParameters: {
    classificationsToInclude: [
      'Critical'
      'Security'
    ]
  }
  linuxParameters: {
    classificationsToInclude: [
      'Critical'
      'Security'
    ]
  }
}

// Maintenance configuration id of every ring: the existing one, or the one created below (its id
// is known before creation, which keeps module scopes computable at the start of the deployment).
var ringConfigurationNames = [for ring in rings: ring.?maintenanceConfigurationName ?? 'mc-patchrings-${ring.name}-${resourceToken}']
var ringConfigurationGroups = [for ring in rings: ring.?resourceGroupName ?? resourceGroup().name]
// The deployed plan's rings by name, to check ring specs against the plan the app runs.
var planRingsByName = toObject(deployedPlan.rings, planRing => planRing.name)

// The dynamic scope a ring spec declares, checked against the plan (issue 13 item 17): only a
// retag ring may have one (an enableConfiguration ring's assignment is the app's gate: the app
// creates it to open the ring and deletes it to close it, so a standing one declared here would
// keep the ring open for good), it selects the plan's open tag value, and it carries the name the
// app looks up (activities/plan.py assignment_name: open.assignmentName or patchrings-<ring>).
var ringDynamicScopeErrors = [for ring in rings: ring.?dynamicScope == null ? '' : !contains(planRingsByName, ring.name) ? 'Ring ${ring.name} declares a dynamicScope but plans/default.json has no ring ${ring.name}.' : (planRingsByName[ring.name].?open.?mode ?? 'none') != 'retag' ? 'Ring ${ring.name} declares a dynamicScope, but its open.mode in plans/default.json is not retag: the app opens and closes such a ring by creating and deleting the assignment itself, and a standing dynamic scope would leave it open for good. Remove dynamicScope from the ring.' : (ring.?dynamicScope.?tagName ?? '') != (planRingsByName[ring.name].?members.?tag.?name ?? '') || (ring.?dynamicScope.?tagValue ?? '') != (planRingsByName[ring.name].?members.?tag.?value ?? '') ? 'Ring ${ring.name}: dynamicScope must select the plan ring\'s members.tag name and (open) value.' : '']
var ringDynamicScopeNames = [for (ring, i) in rings: ring.?dynamicScope == null ? '' : !empty(ringDynamicScopeErrors[i]) ? fail(ringDynamicScopeErrors[i]) : planRingsByName[ring.name].?open.?assignmentName ?? 'patchrings-${ring.name}']

// Which configurations this deployment creates (declares and so PUTs whole). See
// createMaintenanceConfigurations: after the first deployment this is false for every ring.
var ringCreatesConfiguration = [for ring in rings: empty(ring.?existingMaintenanceConfigurationId ?? '') && (ring.?createConfiguration ?? createMaintenanceConfigurations)]
// The window each created configuration gets. Only rings that create one are computed (ARM
// evaluates variables eagerly, and fail() must not fire for a ring that creates nothing).
var ringMaintenanceWindows = [for (ring, i) in rings: ringCreatesConfiguration[i] ? union(defaultMaintenanceWindow, ring.?maintenanceWindow ?? {}, {
  startDateTime: ring.?maintenanceWindow.?startDateTime ?? (empty(maintenanceStartDateTime) ? fail('maintenanceStartDateTime is required to create ring ${ring.name}\'s maintenance configuration: a fixed "yyyy-MM-dd HH:mm", today or later (azd: PATCHRINGS_MAINTENANCE_START). Or give the ring maintenanceWindow.startDateTime, or reference its existing configuration.') : maintenanceStartDateTime)
}) : {}]
var ringConfigurationIds = [for (ring, i) in rings: empty(ring.?existingMaintenanceConfigurationId ?? '') ? resourceId(ringConfigurationGroups[i], 'Microsoft.Maintenance/maintenanceConfigurations', ringConfigurationNames[i]) : ring.?existingMaintenanceConfigurationId ?? '']

// Configurations created here are edited (pinned manifests) and their runs cancelled by the app,
// so their resource groups join the rollout scopes.
var createdConfigurationScopes = [for (ring, i) in rings: empty(ring.?existingMaintenanceConfigurationId ?? '') ? '/subscriptions/${subscription().subscriptionId}/resourceGroups/${ringConfigurationGroups[i]}' : '']
var effectiveRolloutScopes = union(rolloutScopes, filter(createdConfigurationScopes, scope => !empty(scope)))
var rolloutResourceGroupScopes = filter(effectiveRolloutScopes, scope => length(split(scope, '/')) == 5)
var rolloutSubscriptionScopes = filter(effectiveRolloutScopes, scope => length(split(scope, '/')) == 3)

// ---------------------------------------------------------------------------------------------
// Monitoring and storage
// ---------------------------------------------------------------------------------------------

module monitoring 'modules/monitoring.bicep' = {
  name: 'patchrings-monitoring'
  params: {
    location: location
    tags: allTags
    logAnalyticsName: 'log-patchrings-${resourceToken}'
    applicationInsightsName: 'appi-patchrings-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'patchrings-storage'
  params: {
    location: location
    tags: allTags
    storageAccountName: stName
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: eventsData.deadLetterContainerName
  }
}

module durableTaskScheduler 'modules/durable-task-scheduler.bicep' = if (useDurableTaskScheduler) {
  name: 'patchrings-dts'
  params: {
    location: location
    tags: allTags
    schedulerName: 'dts-patchrings-${resourceToken}'
    taskHubName: taskHubName
    skuName: durableTaskSchedulerSku
  }
}

// Notifications: the Event Grid custom topic the notify activity publishes CloudEvents to
// (Entra only; the app gets EventGrid Data Sender on it in app-roles.bicep).
module notifications 'modules/notifications.bicep' = {
  name: 'patchrings-notifications'
  params: {
    location: location
    tags: allTags
    topicName: 'evgt-patchrings-${resourceToken}'
  }
}

// ---------------------------------------------------------------------------------------------
// App settings: host (identity-based storage, telemetry), Durable backend, PatchRings
// ---------------------------------------------------------------------------------------------

var hostSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
  AzureFunctionsJobHost__extensions__durableTask__hubName: taskHubName
}

// host.json keeps the Azure Storage provider; these app settings override it in Azure when the
// Durable Task Scheduler is chosen (AzureFunctionsJobHost__<path> overrides host.json <path>).
var durableTaskSchedulerSettings = useDurableTaskScheduler ? {
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTaskScheduler.outputs.endpoint};Authentication=ManagedIdentity'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
} : {}

// The keys here must be exactly app-settings.json's computedByBicep keys (checked by tests).
var computedPatchRingsSettings = {
  PATCHRINGS_LEDGER_ACCOUNT_URL: 'https://${storage.outputs.storageAccountName}.table.${environment().suffixes.storage}'
  PATCHRINGS_NOTIFY_TOPIC_ENDPOINT: notifications.outputs.endpoint
}

var appSettings = union(hostSettings, durableTaskSchedulerSettings, appSettingsData.settings, computedPatchRingsSettings)

// ---------------------------------------------------------------------------------------------
// Function App, its data-plane roles and authentication
// ---------------------------------------------------------------------------------------------

module app 'modules/function-app.bicep' = {
  name: 'patchrings-app'
  params: {
    location: location
    tags: allTags
    functionAppName: appName
    planName: 'plan-patchrings-${resourceToken}'
    serviceName: serviceName
    storageAccountName: storage.outputs.storageAccountName
    blobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    appSettings: appSettings
    maximumInstanceCount: maximumInstanceCount
  }
}

module appRoles 'modules/app-roles.bicep' = {
  name: 'patchrings-app-roles'
  params: {
    principalId: app.outputs.principalId
    storageAccountName: storage.outputs.storageAccountName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    notifyTopicName: notifications.outputs.topicName
  }
}

module durableTaskRole 'modules/durable-task-role.bicep' = if (useDurableTaskScheduler) {
  name: 'patchrings-dts-role'
  params: {
    schedulerName: 'dts-patchrings-${resourceToken}'
    principalId: app.outputs.principalId
  }
  dependsOn: [
    durableTaskScheduler
  ]
}

module appAuth 'modules/app-auth.bicep' = if (authEnabled && authPolicyHasCallers) {
  name: 'patchrings-app-auth'
  params: {
    functionAppName: app.outputs.functionAppName
    clientId: authClientId
    allowedPrincipalIds: authPrincipalIds
    allowedGroupIds: allowedGroupList
    allowedApplications: authClientApplications
  }
}

// How Event Grid reaches the app: with authentication on, an Entra-authenticated WebHook to the
// app's HTTP endpoint (ring-events.bicep); otherwise the AzureFunction destination.
var entraDelivery = authenticatedEvents ? {
  applicationIdOrUri: 'api://${authClientId}'
  tenantId: tenant().tenantId
  hostName: app.outputs.defaultHostName
} : {}

// ---------------------------------------------------------------------------------------------
// Rings: maintenance configurations, dynamic scopes, event wiring
// ---------------------------------------------------------------------------------------------

module ringConfigurations 'modules/maintenance-configuration.bicep' = [for (ring, i) in rings: if (ringCreatesConfiguration[i]) {
  name: take('patchrings-mc-${ring.name}-${resourceToken}', 64)
  scope: resourceGroup(ringConfigurationGroups[i])
  params: {
    name: ringConfigurationNames[i]
    location: ring.?location ?? location
    tags: allTags
    maintenanceWindow: ringMaintenanceWindows[i]
    installPatches: ring.?installPatches ?? defaultInstallPatches
  }
}]

module ringDynamicScopes 'modules/dynamic-scope.bicep' = [for (ring, i) in rings: if (ring.?dynamicScope != null) {
  name: take('patchrings-scope-${ring.name}-${resourceToken}', 64)
  scope: subscription(ring.?dynamicScope.?subscriptionId ?? subscription().subscriptionId)
  params: {
    name: ringDynamicScopeNames[i]
    maintenanceConfigurationId: ringConfigurationIds[i]
    tagName: ring.?dynamicScope.?tagName ?? ''
    tagValue: ring.?dynamicScope.?tagValue ?? ''
    resourceGroups: ring.?dynamicScope.?resourceGroups ?? []
    locations: ring.?dynamicScope.?locations ?? []
    osTypes: ring.?dynamicScope.?osTypes ?? []
  }
  dependsOn: [
    ringConfigurations
  ]
}]

module ringEvents 'modules/ring-events.bicep' = [for (ring, i) in rings: if (ring.?events ?? true) {
  name: take('patchrings-events-${ring.name}-${resourceToken}', 64)
  scope: resourceGroup(split(ringConfigurationIds[i], '/')[2], split(ringConfigurationIds[i], '/')[4])
  params: {
    ringName: ring.name
    maintenanceConfigurationId: ringConfigurationIds[i]
    location: ring.?location ?? location
    tags: allTags
    functionAppId: app.outputs.functionAppId
    deadLetterStorageAccountId: storage.outputs.storageAccountId
    deadLetterStorageResourceGroup: resourceGroup().name
    deadLetterStorageSubscriptionId: subscription().subscriptionId
    deadLetterStorageAccountName: storage.outputs.storageAccountName
    wireSubscription: wireEventSubscriptions
    entraDelivery: entraDelivery
  }
  dependsOn: [
    ringConfigurations
    // With authentication on, the policy must allow Event Grid before it validates the webhook.
    appAuth
  ]
}]

// ---------------------------------------------------------------------------------------------
// Least privilege on ARM: the custom roles and their assignments
// ---------------------------------------------------------------------------------------------

module rolloutRoles 'modules/rollout-role.bicep' = {
  name: 'patchrings-roles-${resourceToken}'
  scope: subscription()
  params: {
    // Role names and ids are tenant-wide: the token keeps two environments of the same name in
    // different subscriptions or resource groups apart.
    nameSuffix: '${environmentName}-${take(resourceToken, 6)}'
    // A role definition needs at least one assignable scope; with no rollout scopes the role is
    // defined on this resource group only and assigned nowhere.
    assignableScopes: empty(effectiveRolloutScopes) ? [
      resourceGroup().id
    ] : effectiveRolloutScopes
    fleetSubscriptionIds: fleetSubscriptionIds
    allowDynamicScopeWrites: allowDynamicScopeWrites
  }
}

module rolloutRoleOnResourceGroups 'modules/role-assignment-rg.bicep' = [for scope in rolloutResourceGroupScopes: {
  name: 'patchrings-role-${uniqueString(scope, resourceToken)}'
  scope: resourceGroup(split(scope, '/')[2], split(scope, '/')[4])
  params: {
    roleGuid: rolloutRoles.outputs.rolloutRoleGuid
    principalId: app.outputs.principalId
    assignmentDescription: 'PatchRings (${environmentName}): ring-gated patch rollouts on this resource group.'
  }
}]

module rolloutRoleOnSubscriptions 'modules/role-assignment-sub.bicep' = [for scope in rolloutSubscriptionScopes: {
  name: 'patchrings-role-${uniqueString(scope, resourceToken)}'
  scope: subscription(split(scope, '/')[2])
  params: {
    roleGuid: rolloutRoles.outputs.rolloutRoleGuid
    principalId: app.outputs.principalId
    assignmentDescription: 'PatchRings (${environmentName}): ring-gated patch rollouts on this subscription.'
  }
}]

module fleetRoleOnSubscriptions 'modules/role-assignment-sub.bicep' = [for subscriptionId in fleetSubscriptionIds: {
  name: 'patchrings-fleet-${uniqueString(subscriptionId, resourceToken)}'
  scope: subscription(subscriptionId)
  params: {
    roleGuid: rolloutRoles.outputs.fleetRoleGuid
    principalId: app.outputs.principalId
    assignmentDescription: 'PatchRings (${environmentName}): lists the fleet\'s VMs and maintenance assignments${allowDynamicScopeWrites ? ' and opens rings by dynamic-scope assignments' : ''}.'
  }
}]

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment: `azd env get-values`)
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output AZURE_FUNCTION_APP_URL string = 'https://${app.outputs.defaultHostName}'
output AZURE_FUNCTION_APP_PRINCIPAL_ID string = app.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.storageAccountName
output PATCHRINGS_NOTIFY_TOPIC_ID string = notifications.outputs.topicId
output PATCHRINGS_NOTIFY_TOPIC_ENDPOINT string = notifications.outputs.endpoint
output PATCHRINGS_DURABLE_STORAGE_PROVIDER string = durableStorageProvider
output PATCHRINGS_RING_NAMES array = [for ring in rings: ring.name]
output PATCHRINGS_RING_CONFIGURATION_IDS array = ringConfigurationIds
output PATCHRINGS_ROLLOUT_SCOPES array = effectiveRolloutScopes
output PATCHRINGS_ROLLOUT_ROLE_ID string = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', rolloutRoles.outputs.rolloutRoleGuid)
output PATCHRINGS_FLEET_ROLE_GUID string = rolloutRoles.outputs.fleetRoleGuid
output PATCHRINGS_DYNAMIC_SCOPE_NAMES array = filter(ringDynamicScopeNames, scopeName => !empty(scopeName))
output PATCHRINGS_EVENTS_WIRED bool = wireEventSubscriptions
output PATCHRINGS_AUTH_ENABLED bool = authEnabled
output PATCHRINGS_MANUAL_APPROVAL_RINGS array = manualApprovalRings
output PATCHRINGS_CONFIGURATIONS_CREATED bool = contains(ringCreatesConfiguration, true)
