"""A small fleet for the platform tests: the default plan's subscription, tags and configurations.

Why not ``emulator/arm/scenarios/sample.yaml``: the tests need a fleet whose every VM and patch is
known, so assertions can name them (what Ring 0 installed, what the manifest pins, what Ring 1's
run installed), and daily schedules so a whole three-ring cycle fits in two simulated days.
"""

from __future__ import annotations

import copy
from typing import Any

SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-patching"
MC = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Maintenance/maintenanceConfigurations"
VM = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines"

# Rollout starts at 06:00Z; Windows is pinned to patches published before that.
KB_OLD = "5048667"  # Security, published before the rollout
KB_CRIT = "5048685"  # Critical, published before the rollout
KB_LATE = "5049001"  # Security, published after the rollout started: never in the manifest
OPENSSL = "openssl=3.0.2-0ubuntu1.19"
CURL_LATE = "curl=7.81.0-1ubuntu1.20"  # published after the start; Linux has no date cutoff

RING0 = ["r0-web-1", "r0-web-2", "r0-app-1"]
RING1 = ["r1-web-1", "r1-app-1"]
RING2 = ["r2-web-1", "r2-app-1"]

_INSTALL = {
    "rebootSetting": "IfRequired",
    "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]},
    "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]},
}


def _vm(name: str, os_name: str, zone: str, ring_tag: str) -> dict[str, Any]:
    return {"name": name, "os": os_name, "zone": zone, "tags": {"patchRing": ring_tag}}


def scenario(*, faults: list[dict[str, Any]] | None = None, events: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "patchrings-functional",
        "seed": 7,
        "subscriptions": [
            {
                "id": SUB,
                "resourceGroups": [
                    {
                        "name": RG,
                        "location": "westeurope",
                        "vms": [
                            _vm("r0-web-1", "Windows", "1", "ring0"),
                            _vm("r0-web-2", "Windows", "2", "ring0"),
                            _vm("r0-app-1", "Linux", "3", "ring0"),
                            _vm("r1-web-1", "Windows", "1", "ring1-hold"),
                            _vm("r1-app-1", "Linux", "2", "ring1-hold"),
                            _vm("r2-web-1", "Windows", "1", "ring2"),
                            _vm("r2-app-1", "Linux", "3", "ring2"),
                        ],
                        "maintenanceConfigurations": [
                            {"name": "mc-ring1", "installPatches": copy.deepcopy(_INSTALL),
                             "window": {"startDateTime": "2026-11-01 12:00", "duration": "03:55", "timeZone": "UTC",
                                        "recurEvery": "Day", "expirationDateTime": None}},
                            {"name": "mc-ring2", "installPatches": copy.deepcopy(_INSTALL),
                             "window": {"startDateTime": "2026-11-01 18:00", "duration": "03:55", "timeZone": "UTC",
                                        "recurEvery": "Day", "expirationDateTime": None}},
                        ],
                    }
                ],
                "dynamicScopes": [
                    {"name": "ds-ring1", "maintenanceConfiguration": "mc-ring1",
                     "filter": {"resourceTypes": ["Microsoft.Compute/virtualMachines"], "locations": ["westeurope"],
                                "osTypes": ["Windows", "Linux"],
                                "tagSettings": {"tags": {"patchRing": ["ring1"]}, "filterOperator": "All"}}},
                ],
            }
        ],
        "catalog": {
            "windows": [
                {"kb": KB_OLD, "name": "2026-11 Cumulative Update", "classification": "Security",
                 "published": "2026-11-10T17:00:00Z", "reboot": "AlwaysRequiresReboot", "minutes": 30},
                {"kb": KB_CRIT, "name": "2026-11 Servicing Stack Update", "classification": "Critical",
                 "published": "2026-11-11T17:00:00Z", "reboot": "NeverReboots", "minutes": 10},
                {"kb": KB_LATE, "name": "2026-11 Out-of-band Update", "classification": "Security",
                 "published": "2026-11-16T09:00:00Z", "reboot": "NeverReboots", "minutes": 10},
            ],
            "linux": [
                {"package": "openssl", "version": "3.0.2-0ubuntu1.19", "classification": "Security",
                 "published": "2026-11-12T10:00:00Z", "reboot": "NeverReboots", "minutes": 2},
            ],
        },
        "eventSubscriptions": [
            {"name": "patchrings",
             "endpoint": "${FUNCTIONS_HOST}/runtime/webhooks/eventgrid?functionName=on_maintenance_event"
                         "&code=${EVENTGRID_KEY}",
             "schema": "EventGridSchema",
             "includedEventTypes": ["Microsoft.Maintenance.PreMaintenanceEvent",
                                    "Microsoft.Maintenance.PostMaintenanceEvent"]},
        ],
        "events": {"duplicateProbability": 0.0, "reorderMaxDelaySeconds": 0, **(events or {})},
        "faults": faults or [],
    }
    return doc


def vm_id(name: str) -> str:
    return f"{VM}/{name}"
