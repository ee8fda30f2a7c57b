"""ARM resource ids, the one pure module that reads and compares them (issue 10).

ARM compares ids case-insensitively and tolerates a trailing slash, and every layer needs the same
few facts from an id: is it the same resource, which subscription / resource group is it in, what
is its last name segment. Pure (no azure import: the domain stays free of the SDK), so the
orchestrators, the triggers, the activities and the ARM gateway all read ids the same way.
``patchrings.arm.ids`` keeps the strict ``applyUpdates`` run-id parser the gateway needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ResourceId",
    "last_segment",
    "normalize_arm_id",
    "parse_resource_id",
    "resource_group_of",
    "same_arm_id",
    "subscription_of",
]

_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)"
    r"(?:/resourceGroups/(?P<rg>[^/]+)"
    r"(?:/providers/(?P<provider>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?)?)?/?$",
    re.IGNORECASE,
)
_SUBSCRIPTION_IN_PATH = re.compile(r"/subscriptions/([^/?#]+)", re.IGNORECASE)
_RESOURCE_GROUP_IN_PATH = re.compile(r"/resourceGroups/([^/?#]+)", re.IGNORECASE)


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
    """ARM ids compare case-insensitively (surrounding blanks and a trailing slash ignored);
    a missing or empty id is never the same as anything."""
    if not a or not b:
        return False
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def normalize_arm_id(arm_id: str) -> str:
    """Lower-case, single leading slash, no trailing slash (the form ids are keyed and hashed by)."""
    return "/" + arm_id.strip().strip("/").lower()


def subscription_of(resource_id: str) -> str:
    """The subscription id in an ARM resource id or path (ValueError if there is none)."""
    match = _SUBSCRIPTION_IN_PATH.search(resource_id)
    if not match:
        raise ValueError(f"no /subscriptions/<id> segment in {resource_id!r}")
    return match.group(1)


def resource_group_of(resource_id: str) -> str | None:
    """The resource group named in an ARM id or path, or None for a subscription-level id."""
    match = _RESOURCE_GROUP_IN_PATH.search(resource_id)
    return match.group(1) if match else None


def last_segment(resource_id: str | None) -> str:
    """The last path segment of an id (a resource's name, a run's ``yyyyMMddHHmmss``); ``""`` if none."""
    text = str(resource_id or "")
    return text.rstrip("/").rsplit("/", 1)[-1] if text else ""
