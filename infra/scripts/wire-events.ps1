# azd postdeploy hook (Windows): see wire-events.sh for why the events are wired after deploy.
$ErrorActionPreference = 'Stop'

$wired = (azd env get-value PATCHRINGS_WIRE_EVENTS 2>$null)
if ($wired -eq 'true') {
    Write-Host 'patchrings: Event Grid subscriptions already wired (PATCHRINGS_WIRE_EVENTS=true)'
    exit 0
}

Write-Host 'patchrings: app deployed; wiring the rings'' Event Grid subscriptions (azd provision)'
# Never re-send the maintenance configurations from this provision (see after-provision.sh).
azd env set PATCHRINGS_CREATE_CONFIGURATIONS false
azd env set PATCHRINGS_WIRE_EVENTS true
azd provision --no-prompt
