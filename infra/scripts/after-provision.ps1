# azd postprovision hook (Windows): see after-provision.sh. The maintenance configurations exist
# now; later provisions reference them by id and never PUT them again.
$ErrorActionPreference = 'Stop'

$created = (azd env get-value PATCHRINGS_CREATE_CONFIGURATIONS 2>$null)
if ($created -ne 'false') {
    Write-Host 'patchrings: maintenance configurations created; later provisions reference them by id (PATCHRINGS_CREATE_CONFIGURATIONS=false)'
    azd env set PATCHRINGS_CREATE_CONFIGURATIONS false
}
