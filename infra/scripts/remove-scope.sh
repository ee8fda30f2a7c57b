#!/bin/sh
# Take a scope (a resource group or subscription) away from PatchRings, in the only order Azure
# accepts.
#
#   infra/scripts/remove-scope.sh /subscriptions/<id>/resourceGroups/<name>   # a rolloutScopes entry
#   infra/scripts/remove-scope.sh /subscriptions/<id>                         # a fleetSubscriptionIds entry
#
# Why a script: the custom roles list their assignable scopes, and Azure refuses to take a scope
# out of a role definition while a role assignment of that role exists at that scope (as it
# refuses to delete a role that still has assignments: RoleDefinitionHasAssignments). An
# incremental deployment never deletes the assignment whose module entry disappeared, so simply
# editing main.parameters.json and provisioning fails. The order is:
#   1. delete the app identity's PatchRings role assignments at the scope (this script);
#   2. remove the scope from rolloutScopes / fleetSubscriptionIds in infra/main.parameters.json;
#   3. azd provision (updates the roles' assignable scopes).
# Before removing a fleet subscription, make sure no rollout is running and that no ring's
# dynamic-scope assignment (patchrings-<ring>) is left in it (docs/deploy.md section 9).
set -eu

scope="${1:?usage: remove-scope.sh <scope id>}"
principal="$(azd env get-value AZURE_FUNCTION_APP_PRINCIPAL_ID)"
rollout_role="$(azd env get-value PATCHRINGS_ROLLOUT_ROLE_ID)"
fleet_guid="$(azd env get-value PATCHRINGS_FLEET_ROLE_GUID 2>/dev/null || true)"

subscription="$(echo "$scope" | cut -d/ -f3)"
roles="${rollout_role##*/}"
if [ -n "$fleet_guid" ]; then
    roles="$roles $fleet_guid"
fi

for role in $roles; do
    echo "patchrings: deleting role assignments of role $role for $principal at $scope"
    az role assignment delete --assignee-object-id "$principal" \
        --role "/subscriptions/$subscription/providers/Microsoft.Authorization/roleDefinitions/$role" \
        --scope "$scope"
done

echo "patchrings: now remove $scope from rolloutScopes / fleetSubscriptionIds in infra/main.parameters.json and run: azd provision"
