"""The api-versions each resource provider registers, and ARM's refusal of any other.

Why: ARM refuses an api-version the resource provider does not register for the resource type:
400 ``NoRegisteredProviderFound`` "No registered resource provider found for location '{location}'
and API version '{version}' for type '{type}'. The supported api-versions are '{list}'. The
supported locations are '{list}'." (azure-arm-contracts.md §1, corrected; the message shape as
ARM sends it, e.g. Azure/azure-cli#28496, Azure/azure-sdk-for-js#4097). ``Microsoft.Resources``
is ARM's own provider and answers 400 ``InvalidApiVersionParameter`` "The api-version '{version}'
is invalid. The supported versions are '{list}'." A simulator that accepted any version would let
an SDK upgrade (or a typo in a raw request) pass locally and fail in Azure.

The lists are the versions published in Azure/azure-rest-api-specs for each provider (Maintenance:
``specification/maintenance/.../Maintenance/readme.md`` tags plus the 2025-10-01-preview,
2025-11-01 and 2026-02-01-preview example folders; Compute: the ComputeRP stable versions through
2026-04-01; Resources: the versions with the Tags-at-scope API). They cover every version the
pinned SDKs send (requirements.txt: azure-mgmt-compute 39.0.0 → 2026-04-01, azure-mgmt-maintenance
2.1.0 → 2023-04-01, azure-mgmt-resource 26.0.0 → 2025-04-01), the app's cancel PUT
(2023-09-01-preview) and the contract examples (2024-11-01, 2025-11-01, 2026-04-01).
``tests/emulator/arm/test_api_versions.py`` checks the SDKs' defaults against these lists.

LIMITATIONS: a provider registers a version for all of its types here (real registrations differ
per type and region); the supported-locations list is the fleet's own locations.
"""

from __future__ import annotations

from emulator.arm.errors import ArmError

__all__ = ["REGISTERED", "check_api_version", "register_provider", "resource_type_of"]

_COMPUTE = [
    "2015-05-01-preview", "2015-06-15", "2016-03-30", "2016-04-30-preview", "2017-03-30", "2017-12-01",
    "2018-04-01", "2018-06-01", "2018-10-01", "2019-03-01", "2019-07-01", "2019-12-01", "2020-06-01",
    "2020-12-01", "2021-03-01", "2021-04-01", "2021-07-01", "2021-11-01", "2022-03-01", "2022-08-01",
    "2022-11-01", "2023-03-01", "2023-07-01", "2023-09-01", "2024-03-01", "2024-07-01", "2024-11-01",
    "2025-04-01", "2025-11-01", "2026-04-01",
]
_MAINTENANCE = [
    "2018-06-01-preview", "2020-04-01", "2020-07-01-preview", "2021-04-01-preview", "2021-05-01",
    "2021-09-01-preview", "2022-07-01-preview", "2022-11-01-preview", "2023-04-01", "2023-09-01-preview",
    "2023-10-01-preview", "2025-10-01-preview", "2025-11-01", "2026-02-01-preview",
]
_RESOURCES = [
    "2019-10-01", "2020-06-01", "2020-08-01", "2020-10-01", "2021-01-01", "2021-04-01", "2022-09-01",
    "2023-07-01", "2024-03-01", "2024-07-01", "2024-11-01", "2025-03-01", "2025-04-01",
]

REGISTERED: dict[str, list[str]] = {
    "Microsoft.Compute": _COMPUTE,
    "Microsoft.Maintenance": _MAINTENANCE,
    "Microsoft.Resources": _RESOURCES,
}

_TYPES = {
    "vm": ("Microsoft.Compute", "virtualMachines"),
    "compute": ("Microsoft.Compute", "locations/operations"),
    "tags": ("Microsoft.Resources", "tags"),
    "mc": ("Microsoft.Maintenance", "maintenanceConfigurations"),
    "ca": ("Microsoft.Maintenance", "configurationAssignments"),
    "au": ("Microsoft.Maintenance", "applyUpdates"),
}


def register_provider(route_prefix: str, provider: str, resource_type: str, versions: list[str]) -> None:
    """Register the api-versions of the routes named ``<route_prefix>.*`` (a handler module's own provider)."""
    REGISTERED.setdefault(provider, list(versions))
    _TYPES[route_prefix] = (provider, resource_type)


def resource_type_of(route_name: str) -> tuple[str, str] | None:
    """``vm.get`` → ("Microsoft.Compute", "virtualMachines"); None for a route nobody registered."""
    return _TYPES.get(route_name.split(".", 1)[0])


def check_api_version(route_name: str, api_version: str, *, location: str, locations: list[str]) -> None:
    """Raise ARM's 400 when ``api_version`` is not registered for the route's provider."""
    found = resource_type_of(route_name)
    if found is None or found[0] not in REGISTERED:
        return  # a route added without registering its provider: not checked rather than a 500
    provider, rtype = found
    versions = REGISTERED[provider]
    if api_version in versions:  # ARM compares exactly (a version is a case-sensitive token)
        return
    newest_first = ", ".join(sorted(versions, reverse=True))
    if provider == "Microsoft.Resources":
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{api_version}' is invalid. The supported versions are '{newest_first}'.",
        )
    raise ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location '{location}' and API version '{api_version}' "
        f"for type '{rtype}'. The supported api-versions are '{newest_first}'. The supported locations are "
        f"'{', '.join(locations)}'.",
    )
