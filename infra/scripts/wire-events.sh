#!/bin/sh
# azd postdeploy hook: wire each ring's Event Grid subscription once the app code exists.
#
# Why a second provision: the subscriptions deliver to the app's on_maintenance_event function
# (endpoint type AzureFunction), and Event Grid refuses to create such a subscription before that
# function has been deployed. The first `azd up` provisions with PATCHRINGS_WIRE_EVENTS=false,
# deploys the code, then this hook flips the flag and provisions again (idempotent: only the
# subscriptions are new; the maintenance configurations are referenced, not re-sent). Later runs
# see the flag already true and do nothing.
set -eu

wired="$(azd env get-value PATCHRINGS_WIRE_EVENTS 2>/dev/null || true)"
if [ "$wired" = "true" ]; then
    echo "patchrings: Event Grid subscriptions already wired (PATCHRINGS_WIRE_EVENTS=true)"
    exit 0
fi

echo "patchrings: app deployed; wiring the rings' Event Grid subscriptions (azd provision)"
# This provision must not re-send the maintenance configurations (the postprovision hook already
# turned creation off after the first provision; say it again in case that hook was skipped).
azd env set PATCHRINGS_CREATE_CONFIGURATIONS false
azd env set PATCHRINGS_WIRE_EVENTS true
azd provision --no-prompt
