# Take a scope away from PatchRings (Windows): see remove-scope.sh for why and in which order.
#   ./infra/scripts/remove-scope.ps1 /subscriptions/<id>/resourceGroups/<name>
param([Parameter(Mandatory = $true)][string]$Scope)
$ErrorActionPreference = 'Stop'

$principal = (azd env get-value AZURE_FUNCTION_APP_PRINCIPAL_ID)
$rolloutRole = (azd env get-value PATCHRINGS_ROLLOUT_ROLE_ID)
$fleetGuid = (azd env get-value PATCHRINGS_FLEET_ROLE_GUID 2>$null)
$subscription = $Scope.Split('/')[2]

$roles = @($rolloutRole.Split('/')[-1])
if ($fleetGuid) { $roles += $fleetGuid }
foreach ($role in $roles) {
    Write-Host "patchrings: deleting role assignments of role $role for $principal at $Scope"
    az role assignment delete --assignee-object-id $principal `
        --role "/subscriptions/$subscription/providers/Microsoft.Authorization/roleDefinitions/$role" `
        --scope $Scope
    if ($LASTEXITCODE -ne 0) { throw "az role assignment delete failed for $role at $Scope" }
}
Write-Host "patchrings: now remove $Scope from rolloutScopes / fleetSubscriptionIds in infra/main.parameters.json and run: azd provision"
