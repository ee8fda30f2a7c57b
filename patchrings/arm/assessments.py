"""Azure Resource Graph ``patchassessmentresources``: the latest assessment of many machines in
one paged query (issue 9, the manifest diff).

Why Resource Graph: every machine's last assessment (periodic or on demand) is a summary row
``<machine>/patchAssessmentResults/latest`` (``osType``, ``startDateTime``,
``lastModifiedDateTime``, ``errorDetails`` ...) plus one ``…/softwarePatches/<p>`` row per
available patch (``patchName``, ``kbId``, ``version``, ``classifications``,
``publishedDateTime`` (Windows only), ``rebootBehavior``), for Azure VMs and Arc machines alike
(arc-and-resource-graph.md §5.1, §5.4, §7(c)). Reading them is one query per ring, paged at 1,000
rows with ``$skipToken`` (§4.4), never one assessPatches or GET per machine. Rows are kept 7 days;
a machine without a row, or whose row is older than the caller's ``max_age``, is *not assessed*
(never assumed clean).

The query reads both row types at once (no join: the patch tables cannot be joined, §7), scoped
by the request's ``subscriptions`` and, when the ring's machines sit in few resource groups, by
``resourceGroup in~ (…)``; ring membership itself is applied here, in code. Pure: the caller sends
the query (:func:`patchrings.arm.resource_graph.query_all`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from patchrings.arm.resource_graph import kql_string

__all__ = ["MAX_GROUPS_IN_QUERY", "MachineAssessment", "assessment_query", "assessments_by_machine", "machine_of"]

#: above this many resource groups the query is scoped by subscription only
MAX_GROUPS_IN_QUERY = 100
_SEP = "/patchassessmentresults/"


def assessment_query(resource_groups: Iterable[str] = ()) -> str:
    """Summary and per-patch assessment rows (VMs and Arc machines), optionally in ``resource_groups``."""
    groups = sorted({g.lower() for g in resource_groups if g})
    where_rg = ""
    if groups and len(groups) <= MAX_GROUPS_IN_QUERY:
        where_rg = f"| where resourceGroup in~ ({', '.join(kql_string(g) for g in groups)})\n"
    return (
        "patchassessmentresources\n"
        "| where type endswith '/patchassessmentresults' or type endswith '/patchassessmentresults/softwarepatches'\n"
        f"{where_rg}"
        f"| extend machineId = tostring(split(tolower(id), '{_SEP}')[0])\n"
        "| project id, type, machineId, properties\n"
        "| order by id asc"
    )


def machine_of(row_id: str) -> str:
    """The machine id (lower-case) of an assessment row id."""
    return str(row_id).lower().split(_SEP)[0]


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class MachineAssessment:
    """One machine's latest assessment as Resource Graph holds it."""

    machine: str
    os: str | None = None
    at: datetime | None = None
    error: Any = None
    patches: list[dict[str, Any]] = field(default_factory=list)  # the softwarepatches rows' properties
    has_summary: bool = False

    def recent(self, now: datetime | None, max_age: timedelta) -> bool:
        """A summary row without errors, no older than ``max_age`` (when ``now`` is known)."""
        if not self.has_summary or self.error:
            return False
        if now is None:
            return True  # only the table's own 7-day retention bounds the age
        return self.at is not None and now - self.at <= max_age


def assessments_by_machine(rows: Iterable[Mapping[str, Any]]) -> dict[str, MachineAssessment]:
    """Rows of :func:`assessment_query` grouped by machine (lower-case id)."""
    out: dict[str, MachineAssessment] = {}
    for row in rows:
        row_id = str(row.get("id") or "")
        machine = str(row.get("machineId") or machine_of(row_id)).lower()
        if not machine:
            continue
        entry = out.setdefault(machine, MachineAssessment(machine))
        props = row.get("properties") if isinstance(row.get("properties"), Mapping) else {}
        assert isinstance(props, Mapping)
        kind = str(row.get("type") or "").lower()
        if kind.endswith("/softwarepatches") or "/softwarepatches/" in row_id.lower():
            entry.patches.append(dict(props))
        else:
            entry.has_summary = True
            entry.os = props.get("osType") or entry.os
            entry.at = _time(props.get("lastModifiedDateTime")) or _time(props.get("startDateTime"))
            entry.error = props.get("errorDetails") or None
    return out
