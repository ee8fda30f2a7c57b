"""ARM ids at the Azure edge: the strict ``applyUpdates`` run-id parser (issue 10).

Reading and comparing ids (``parse_resource_id``, ``same_arm_id``, ``subscription_of``...) is
pure and lives once in :mod:`patchrings.domain.arm_ids`; the names are re-exported here so the
gateway's callers keep one import. What stays here is the parser the cancel and the Resource
Graph queries need before any request is built from event data.
"""

from __future__ import annotations

import re

from patchrings.domain.arm_ids import ResourceId, parse_resource_id, same_arm_id, subscription_of

__all__ = ["ResourceId", "parse_apply_update_id", "parse_resource_id", "same_arm_id", "subscription_of"]


# A scheduled run of a maintenance configuration (the event's ``correlationId``, the cancel target):
# /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Maintenance/maintenanceConfigurations/{mc}
#   /providers/Microsoft.Maintenance/applyUpdates/{yyyyMMddHHmmss}
# ARM ids are case-insensitive, so the literal segments match in any case; the names are restricted
# to ARM's name characters so nothing (query, fragment, "..", "//", scheme, host) can ride along.
_NAME = r"[A-Za-z0-9._()\-]+"
_APPLY_UPDATE_ID = re.compile(
    r"(?P<config>/subscriptions/(?P<sub>[0-9A-Za-z-]{1,64})"
    rf"/resourceGroups/(?P<rg>{_NAME})"
    rf"/providers/Microsoft\.Maintenance/maintenanceConfigurations/(?P<mc>{_NAME}))"
    r"/providers/Microsoft\.Maintenance/applyUpdates/(?P<run>[0-9]{14})",
    re.IGNORECASE | re.ASCII,
)


def parse_apply_update_id(apply_update_id: str) -> tuple[str, str]:
    """Strictly parse a schedule run id into ``(maintenance configuration id, run name)``.

    Accepts only ``<maintenance configuration id>/providers/Microsoft.Maintenance/applyUpdates/<14 digits>``
    (literal segments case-insensitive, as ARM compares them). Anything else -- an absolute URL, a host,
    a query string, ``..``, empty or doubled segments, surrounding whitespace, a non-digit run name --
    raises ValueError naming the value. Callers build request URLs from the configured ARM endpoint plus
    this parsed path only, so event data can never choose where a request (and its token) goes.
    """
    if not isinstance(apply_update_id, str):
        raise ValueError(f"not an applyUpdates run id: {apply_update_id!r}")
    match = _APPLY_UPDATE_ID.fullmatch(apply_update_id)
    if not match or any(part in (".", "..") for part in apply_update_id.split("/")):
        raise ValueError(
            "not an applyUpdates run id (expected <maintenance configuration id>"
            f"/providers/Microsoft.Maintenance/applyUpdates/<yyyyMMddHHmmss>): {apply_update_id!r}"
        )
    return match.group("config"), match.group("run")
