"""Route table of the ARM simulator: path patterns, operation names and RBAC actions.

Why one table: request dispatch, the recorder's ``action`` field, the role-map check (403
AuthorizationFailed) and the infrastructure tests' least-privilege comparison must all agree on
which ARM RBAC action a request needs. ARM paths are case-insensitive (contracts §9), so every
pattern is matched with ``re.IGNORECASE`` while captured names keep the caller's casing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ROUTES", "Route", "match_route", "operation_action"]

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<rg>[^/]+)"
_VMS = _RG + r"/providers/microsoft\.compute/virtualmachines"
_VM = _VMS + r"/(?P<vm>[^/]+)"
_OPS = _SUB + r"/providers/microsoft\.compute/locations/(?P<location>[^/]+)"
_MNT = r"/providers/microsoft\.maintenance"
_RES = _RG + r"/providers/(?P<provider>[^/]+)/(?P<rtype>[^/]+)/(?P<rname>[^/]+)"
_ARCS = _RG + r"/providers/microsoft\.hybridcompute/machines"
_ARC = _ARCS + r"/(?P<machine>[^/]+)"


@dataclass(frozen=True)
class Route:
    """One supported operation: ``name`` is the handler key, ``action`` the RBAC action it needs."""

    method: str
    pattern: re.Pattern[str]
    name: str
    action: str


def _r(method: str, pattern: str, name: str, action: str) -> Route:
    return Route(method, re.compile(f"^{pattern}/?$", re.IGNORECASE), name, action)


_C = "Microsoft.Compute/virtualMachines"
_M = "Microsoft.Maintenance"
_H = "Microsoft.HybridCompute"
ROUTES: list[Route] = [
    # Compute
    _r("GET", _VMS, "vm.list", f"{_C}/read"),
    _r("GET", _SUB + r"/providers/microsoft\.compute/virtualmachines", "vm.list_all", f"{_C}/read"),
    _r("GET", _VM, "vm.get", f"{_C}/read"),
    _r("PATCH", _VM, "vm.update", f"{_C}/write"),
    _r("GET", _VM + r"/instanceview", "vm.instance_view", f"{_C}/instanceView/read"),
    _r("POST", _VM + r"/installpatches", "vm.install_patches", f"{_C}/installPatches/action"),
    _r("POST", _VM + r"/assesspatches", "vm.assess_patches", f"{_C}/assessPatches/action"),
    _r(
        "GET",
        _OPS + r"/operations/(?P<op>[^/]+)",
        "compute.operation_status",
        "Microsoft.Compute/locations/operations/read",
    ),
    _r(
        "GET",
        _OPS + r"/operationresults/(?P<op>[^/]+)",
        "compute.operation_result",
        "Microsoft.Compute/locations/operations/read",
    ),
    # HybridCompute: Azure Arc-enabled servers (emulator/arm/hybridcompute.py)
    _r("GET", _ARCS, "hc.list", f"{_H}/machines/read"),
    _r("GET", _SUB + r"/providers/microsoft\.hybridcompute/machines", "hc.list_all", f"{_H}/machines/read"),
    _r("GET", _ARC, "hc.get", f"{_H}/machines/read"),
    _r("PATCH", _ARC, "hc.update", f"{_H}/machines/write"),
    _r("GET", _ARC + r"/extensions", "hc.extensions", f"{_H}/machines/extensions/read"),
    _r("POST", _ARC + r"/installpatches", "hc.install_patches", f"{_H}/machines/installPatches/action"),
    _r("POST", _ARC + r"/assesspatches", "hc.assess_patches", f"{_H}/machines/assessPatches/action"),
    _r(
        "GET",
        _SUB + r"/providers/microsoft\.hybridcompute/locations/(?P<location>[^/]+)"
        r"/updatecenteroperationresults/(?P<op>[^/]+)",
        "hc.operation_result",
        f"{_H}/locations/updateCenterOperationResults/read",
    ),
    # Tags at any scope
    _r(
        "GET",
        r"(?P<scope>/subscriptions/.+?)/providers/microsoft\.resources/tags/default",
        "tags.get",
        "Microsoft.Resources/tags/read",
    ),
    _r(
        "PUT",
        r"(?P<scope>/subscriptions/.+?)/providers/microsoft\.resources/tags/default",
        "tags.put",
        "Microsoft.Resources/tags/write",
    ),
    _r(
        "PATCH",
        r"(?P<scope>/subscriptions/.+?)/providers/microsoft\.resources/tags/default",
        "tags.patch",
        "Microsoft.Resources/tags/write",
    ),
    _r(
        "DELETE",
        r"(?P<scope>/subscriptions/.+?)/providers/microsoft\.resources/tags/default",
        "tags.delete",
        "Microsoft.Resources/tags/delete",
    ),
    # Maintenance configurations
    _r("GET", _SUB + _MNT + r"/maintenanceconfigurations", "mc.list", f"{_M}/maintenanceConfigurations/read"),
    _r("GET", _RG + _MNT + r"/maintenanceconfigurations", "mc.list_rg", f"{_M}/maintenanceConfigurations/read"),
    _r(
        "GET",
        _RG + _MNT + r"/maintenanceconfigurations/(?P<mc>[^/]+)",
        "mc.get",
        f"{_M}/maintenanceConfigurations/read",
    ),
    _r(
        "PUT",
        _RG + _MNT + r"/maintenanceconfigurations/(?P<mc>[^/]+)",
        "mc.put",
        f"{_M}/maintenanceConfigurations/write",
    ),
    _r(
        "PATCH",
        _RG + _MNT + r"/maintenanceconfigurations/(?P<mc>[^/]+)",
        "mc.patch",
        f"{_M}/maintenanceConfigurations/write",
    ),
    _r(
        "DELETE",
        _RG + _MNT + r"/maintenanceconfigurations/(?P<mc>[^/]+)",
        "mc.delete",
        f"{_M}/maintenanceConfigurations/delete",
    ),
    # Configuration assignments: subscription (dynamic scope), resource group, resource
    _r("GET", _SUB + _MNT + r"/configurationassignments", "ca.list_sub", f"{_M}/configurationAssignments/read"),
    _r(
        "GET",
        _SUB + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.get_sub",
        f"{_M}/configurationAssignments/read",
    ),
    _r(
        "PUT",
        _SUB + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.put_sub",
        f"{_M}/configurationAssignments/write",
    ),
    _r(
        "PATCH",
        _SUB + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.put_sub",
        f"{_M}/configurationAssignments/write",
    ),
    _r(
        "DELETE",
        _SUB + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.delete_sub",
        f"{_M}/configurationAssignments/delete",
    ),
    _r(
        "GET",
        _RG + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.get_rg",
        f"{_M}/configurationAssignments/read",
    ),
    _r(
        "PUT",
        _RG + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.put_rg",
        f"{_M}/configurationAssignments/write",
    ),
    _r(
        "PATCH",
        _RG + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.put_rg",
        f"{_M}/configurationAssignments/write",
    ),
    _r(
        "DELETE",
        _RG + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.delete_rg",
        f"{_M}/configurationAssignments/delete",
    ),
    _r("GET", _RES + _MNT + r"/configurationassignments", "ca.list_res", f"{_M}/configurationAssignments/read"),
    _r(
        "GET",
        _RES + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.get_res",
        f"{_M}/configurationAssignments/read",
    ),
    _r(
        "PUT",
        _RES + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.put_res",
        f"{_M}/configurationAssignments/write",
    ),
    _r(
        "DELETE",
        _RES + _MNT + r"/configurationassignments/(?P<ca>[^/]+)",
        "ca.delete_res",
        f"{_M}/configurationAssignments/delete",
    ),
    # applyUpdates (run records, on-demand "default", cancel on a run's correlationId)
    _r("GET", _SUB + _MNT + r"/applyupdates", "au.list_sub", f"{_M}/applyUpdates/read"),
    _r("GET", _RG + _MNT + r"/applyupdates", "au.list_rg", f"{_M}/applyUpdates/read"),
    _r("GET", _RES + _MNT + r"/applyupdates/(?P<au>[^/]+)", "au.get", f"{_M}/applyUpdates/read"),
    _r("PUT", _RES + _MNT + r"/applyupdates/(?P<au>[^/]+)", "au.put", f"{_M}/applyUpdates/write"),
    # Azure Resource Graph query (emulator/arm/resourcegraph.py)
    _r("POST", r"/providers/microsoft\.resourcegraph/resources", "arg.resources",
       "Microsoft.ResourceGraph/resources/read"),
]


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for ``method path`` and its captured path parameters, or None."""
    method = method.upper()
    for route in ROUTES:
        if route.method != method:
            continue
        found = route.pattern.match(path)
        if found:
            return route, {k: v for k, v in found.groupdict().items() if v is not None}
    return None


def operation_action(method: str, path: str) -> str:
    """The ARM RBAC action a request needs, e.g. ``Microsoft.Resources/tags/write``.

    ``path`` may carry a query string. Raises ``ValueError`` for requests the simulator does not
    support (so a test comparing actions to a role definition cannot silently miss one).
    """
    found = match_route(method, path.split("?", 1)[0])
    if found is None:
        raise ValueError(f"no ARM operation for {method.upper()} {path}")
    return found[0].action
