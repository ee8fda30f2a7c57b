"""Which machines a ring's member rule selects: the one rule, pure (issue 11).

Why a module of its own: a ring's members are found in three places that must agree exactly --
Resource Graph rows when a ring is resolved (``activities.members``: the server-side KQL filter
may return a *superset*, every row is re-checked here), the live VM / Arc machine read just
before an install (``activities.compute``: Resource Graph is seconds stale, so a VM retagged out
of the ring a moment ago may still be listed; the pre-check re-applies this rule to the live
model and such a VM is not installed: ``left-ring``), and the compliance view / manifest diff
(same core). One rule, so a ring is the same set of machines everywhere.

The rule (unchanged from the subscription listing it replaces):

* **tag**: the tag *name* is case-insensitive (Azure tag names are), the *value* is not; a
  machine is selected when its value is the ring's ``value`` or its ``holdValue`` (where retag
  parks it);
* **scope**: the plan's ``resourceGroups`` (case-insensitive), ``locations`` (case- and
  space-insensitive: ``East US`` = ``eastus``) and ``osTypes`` (case-insensitive) narrow every
  member, tag-selected or configuration-selected; empty means any;
* **configuration**: a ring with a maintenance configuration also holds the configuration's
  members (assignments, dynamic scopes). Those are not decidable from one machine's model, so
  :meth:`MemberRule.left_because` only says a machine *left* the ring when the live model proves
  it: out of scope, or (for a ring selected by tag alone) its tag no longer selects it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LEFT_RING", "MemberRule", "norm_location", "tag_value"]

#: The install state of a machine the live pre-check found outside its ring: not installed, not
#: verified, not judged (no verdict: never passed, never counted against ``maxErrors``).
LEFT_RING = "left-ring"


def tag_value(tags: Mapping[str, Any] | None, name: str) -> str | None:
    """A tag's value; tag *names* are case-insensitive in Azure, values are not."""
    for key, value in (tags or {}).items():
        if str(key).lower() == name.lower():
            return None if value is None else str(value)
    return None


def norm_location(value: Any) -> str:
    """``East US`` -> ``eastus`` (how ARM spells a location in ids and lists)."""
    return str(value or "").replace(" ", "").lower()


@dataclass(frozen=True)
class MemberRule:
    """A ring's member rule (the plan's ``members`` block, as its document says it)."""

    tag_name: str | None = None
    tag_values: frozenset[str] = frozenset()
    resource_groups: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    os_types: frozenset[str] = frozenset()
    by_configuration: bool = False

    @classmethod
    def from_members(cls, doc: Mapping[str, Any] | None) -> MemberRule:
        """The rule of a ring's ``members`` document (``Ring.members.to_dict()``)."""
        doc = doc or {}
        tag = doc.get("tag") if isinstance(doc.get("tag"), Mapping) else None
        values = frozenset(str(v) for v in ((tag or {}).get("value"), (tag or {}).get("holdValue")) if v is not None)
        return cls(
            tag_name=str(tag["name"]) if tag and tag.get("name") else None,
            tag_values=values,
            resource_groups=frozenset(str(g).lower() for g in doc.get("resourceGroups") or ()),
            locations=frozenset(norm_location(loc) for loc in doc.get("locations") or ()),
            os_types=frozenset(str(o).lower() for o in doc.get("osTypes") or ()),
            by_configuration=bool(doc.get("maintenanceConfigurationId")),
        )

    def in_scope(self, *, resource_group: str | None, location: Any, os: Any) -> bool:
        """Do the plan's resource groups / locations / OS types allow this machine?"""
        if self.resource_groups and str(resource_group or "").lower() not in self.resource_groups:
            return False
        if self.locations and norm_location(location) not in self.locations:
            return False
        return not (self.os_types and str(os or "").lower() not in self.os_types)

    def tag_selects(self, tags: Mapping[str, Any] | None) -> bool:
        """Does the ring's tag selector (value or hold value) select a machine with these tags?"""
        return self.tag_name is not None and tag_value(tags, self.tag_name) in self.tag_values

    def left_because(self, *, resource_group: str | None, location: Any, os: Any,
                     tags: Mapping[str, Any] | None) -> str | None:
        """Why the live model proves a machine is no longer a member, or None when it may still be.

        Out of scope always proves it. The tag proves it only for a ring selected by tag alone
        (a configuration may hold the machine without the tag; that is not decidable here)."""
        if not self.in_scope(resource_group=resource_group, location=location, os=os):
            return (f"out of the ring's scope now (resource group {resource_group!r}, location {location!r}, "
                    f"OS {os!r})")
        if self.tag_name is not None and not self.by_configuration and not self.tag_selects(tags):
            now = tag_value(tags, self.tag_name)
            wanted = " or ".join(repr(v) for v in sorted(self.tag_values))
            return f"tag {self.tag_name!r} is {now!r} now, the ring selects {wanted}"
        return None
