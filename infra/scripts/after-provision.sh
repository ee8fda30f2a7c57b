#!/bin/sh
# azd postprovision hook: the maintenance configurations exist now, so no later provision may
# declare them again.
#
# A deployment PUTs every resource it declares, whole. Declaring a ring's maintenance
# configuration on each `azd up` / `azd provision` (including the postdeploy hook's own provision)
# would wipe the include lists the app pins on promotion (kbNumbersToInclude /
# packageNameMasksToInclude) and reset the window. main.bicep declares the configurations only
# while createMaintenanceConfigurations is true (main.parameters.json: PATCHRINGS_CREATE_CONFIGURATIONS,
# default true for the very first provision); after a provision succeeded this hook turns it off
# for good. azd runs postprovision hooks only after a successful provision, so a failed first
# provision simply creates them on the next attempt.
set -eu

created="$(azd env get-value PATCHRINGS_CREATE_CONFIGURATIONS 2>/dev/null || true)"
if [ "$created" != "false" ]; then
    echo "patchrings: maintenance configurations created; later provisions reference them by id (PATCHRINGS_CREATE_CONFIGURATIONS=false)"
    azd env set PATCHRINGS_CREATE_CONFIGURATIONS false
fi
