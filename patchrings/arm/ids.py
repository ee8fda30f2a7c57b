"""ARM resource ids: parse and compare them the way ARM does (case-insensitively)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ResourceId", "parse_resource_id", "same_arm_id"]

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
