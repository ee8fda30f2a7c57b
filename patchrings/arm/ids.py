"""ARM resource ids: parse and compare them the way ARM does (case-insensitively)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ResourceId", "parse_apply_update_id", "parse_resource_id", "same_arm_id"]

_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)"
    r"(?:/resourceGroups/(?P<rg>[^/]+)"
    r"(?:/providers/(?P<provider>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?)?)?/?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ResourceId:
    """The parts of ``/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}``."""

    id: str
    subscription: str
    resource_group: str | None
    provider: str | None
    type: str | None
    name: str | None
    rest: str | None

    @property
    def full_type(self) -> str:
        return f"{self.provider}/{self.type}"


def parse_resource_id(resource_id: str) -> ResourceId:
    """Parse an ARM id (ValueError naming the id when it is not one)."""
    match = _ID.match(resource_id.strip())
    if not match:
        raise ValueError(f"not an ARM resource id: {resource_id!r}")
    return ResourceId(
        id=resource_id.strip(),
        subscription=match.group("sub"),
        resource_group=match.group("rg"),
        provider=match.group("provider"),
        type=match.group("type"),
        name=match.group("name"),
        rest=match.group("rest"),
    )


def same_arm_id(a: str | None, b: str | None) -> bool:
    """ARM ids compare case-insensitively (and ignore a trailing slash)."""
    if a is None or b is None:
        return False
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


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
