"""Azure Resource Graph: the queries for a scheduled run's per-machine results, the pager, and
turning result rows into the ``VirtualMachineInstallPatchesResult`` shape the gate judges.

Why Resource Graph: a scheduled (maintenance-configuration) run's per-machine results live in
``patchinstallationresources`` -- one summary row per machine and run (status, counts,
``rebootStatus``, ``maintenanceWindowExceeded``; ``properties.maintenanceRunId`` = the run's
correlationId) and one ``…/softwarepatches`` row per patch (name, KB / version, classifications,
``installationState``). Instance views only hold the VM's *latest* install summary, without the
patch list or the reboot state (arc-and-resource-graph.md §5.2, §5.3, §5.6, §7(b);
update-manager-domain.md §7 "Per-run gate query").

How (§4.4, §7 pitfalls): two queries, no join (the patch tables are documented as "can't join"):
the run's summary rows by ``maintenanceRunId =~ correlationId``, then the per-patch rows of those
runs by run GUID (segment 10 of the lower-cased id) in ``in~`` batches of at most
:data:`RUN_BATCH`. Every query projects ``id``, sorts by it and pages with ``$top`` = 1000 and
``$skipToken``: one request per 1,000 rows, never one per machine. Literals are quoted with
:func:`kql_string`; ids that go into a query are validated first.

Ring members and cheap power states (issue 11: a few calls per VM at any subscription size):
:func:`members_query` is a ring's member rule as KQL on the ``resources`` table (VMs and Arc
machines): the resource groups exactly (``resourceGroup`` is lower-case in ARG, ``in~``), the tag
selector coarsely (``tostring(tags) contains <value>``: any key, case-insensitive substring, a
*superset* of the rule -- tag names are case-insensitive in Azure but ``tags['k']`` is not in KQL
-- and left out when a value is not plain text), locations and OS types not at all. Rows are
always re-checked client-side with :class:`patchrings.domain.membership.MemberRule`, so a coarse
query costs rows, never a wrong member. :func:`power_query` reads the power state of up to
:data:`IDS_PER_QUERY` VMs by id (``properties.extended.instanceView.powerState.code``).
:func:`member_wire` turns a projected row back into the REST shape ``vm_ref`` / ``arc_ref`` read.

ARG's quota is per principal (15 queries per 5 s in the docs' example, §4.5): :class:`QuotaGate`
(one per process, :data:`QUOTA`) reads ``x-ms-user-quota-remaining`` / ``-resets-after`` from
every answer and holds the next query until the window resets when none remain; a 429 (the SDK
does not retry one without ``Retry-After``) is waited out the same way. :func:`paced` wraps a
``send`` with it; a query that cannot start before the caller's deadline raises
:class:`QuotaDeferred` (the health batch answers *deferred*, never unknown or healthy). Every
query of the app takes the gate: the one SDK sender (``activities.resource_graph._sender``) is
paced; only the health batch and member resolution wrap the raw call themselves, with their
deadline.

Answers fail closed (:func:`query_all`, issue 11): a page without a ``data`` list, a truncated
answer or a row count short of ``totalRecords`` (after one re-read) raises
:class:`~patchrings.errors.ResourceGraphIncomplete`, never passes as fewer rows.

Pure except :func:`query_all` and :func:`paced`, which drive a caller-supplied ``send`` (the SDK call).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from azure.mgmt.core.tools import parse_resource_id as parse_arm_id

from patchrings.arm.errors import status_of
from patchrings.errors import ResourceGraphIncomplete

__all__ = [
    "IDS_PER_QUERY",
    "MAX_PAGE",
    "QUOTA",
    "RUN_BATCH",
    "QuotaDeferred",
    "QuotaGate",
    "assessment_query",
    "install_result",
    "is_machine_id",
    "kql_string",
    "machine_installs_query",
    "machine_of",
    "member_wire",
    "members_query",
    "paced",
    "patch_rows_query",
    "power_code",
    "power_query",
    "query_all",
    "run_of_patch_row",
    "summary_query",
]

MAX_PAGE = 1000  # ARG answers at most 1,000 rows per page (§4.4)
RUN_BATCH = 100  # run GUIDs per per-patch query (§7(b))
TERMINAL = frozenset({"succeeded", "failed", "completedwithwarnings"})
_GUIDISH = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def kql_string(value: str) -> str:
    """A KQL single-quoted string literal (backslash and quote escaped; control chars refused)."""
    if any(ord(c) < 0x20 for c in value):
        raise ValueError(f"refusing a control character in a query literal: {value[:80]!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def summary_query(correlation_id: str, machine_ids: Sequence[str] | None = None) -> str:
    """The run's summary rows (one per machine): id, machine id (lower-case), run GUID, properties;
    with ``machine_ids`` (at most :data:`MACHINE_BATCH`) only those machines' rows (a chunk's late
    rows re-queried without paging through the whole run, issue 11)."""
    only = f"| where machineId in~ ({_machine_literals(machine_ids)})\n" if machine_ids is not None else ""
    return (
        "patchinstallationresources\n"
        "| where type endswith '/patchinstallationresults'\n"
        f"| where tostring(properties.maintenanceRunId) =~ {kql_string(correlation_id)}\n"
        "| extend machineId = tostring(split(tolower(id), '/patchinstallationresults/')[0])\n"
        f"{only}"
        "| project id, machineId, run = name, properties\n"
        "| order by id asc"
    )


def patch_rows_query(run_ids: Sequence[str]) -> str:
    """Per-patch rows of the given runs (GUIDs, at most :data:`RUN_BATCH`)."""
    if not run_ids or len(run_ids) > RUN_BATCH:
        raise ValueError(f"1..{RUN_BATCH} run ids per query, got {len(run_ids)}")
    for run in run_ids:
        if not _GUIDISH.match(run):
            raise ValueError(f"not a run id: {run[:80]!r}")
    runs = ", ".join(kql_string(r) for r in run_ids)
    return (
        "patchinstallationresources\n"
        "| where type endswith '/patchinstallationresults/softwarepatches'\n"
        "| extend run = tostring(split(tolower(id), '/')[10])\n"
        f"| where run in~ ({runs})\n"
        "| project id, run, properties\n"
        "| order by id asc"
    )


MACHINE_BATCH = 100  # machine ids per ``in~`` list (§4.5: group ids into one query, not one per machine)
#: A VM or Arc machine id a query may name. Resource group names are what Azure allows: 1-90
#: letters or digits of any script (.NET ``Char.IsLetterOrDigit``: ``rg-café`` is a valid group),
#: ``_ ( ) - .``, not ending in a period; machine names letters / digits of any script, ``_ . -``.
#: The shape is checked so that only machine ids go into a query; safety comes from
#: :func:`kql_string`'s quoting, not from this pattern (issue 11: an ASCII-only pattern refused
#: valid ids, and one refused id failed its whole query).
_MACHINE_ID = re.compile(
    r"^/subscriptions/[0-9A-Za-z-]{1,64}/resourcegroups/[\w()\-.]{0,89}[\w()\-]/providers/"
    r"(microsoft\.compute/virtualmachines|microsoft\.hybridcompute/machines)/[\w.\-]{1,80}$",
    re.IGNORECASE,
)


def _machine_literals(machine_ids: Sequence[str]) -> str:
    if not machine_ids or len(machine_ids) > MACHINE_BATCH:
        raise ValueError(f"1..{MACHINE_BATCH} machine ids per query, got {len(machine_ids)}")
    for machine in machine_ids:
        if not _MACHINE_ID.match(str(machine)):
            raise ValueError(f"not a VM or Arc machine id: {str(machine)[:120]!r}")
    return ", ".join(kql_string(str(m).lower()) for m in machine_ids)


def machine_installs_query(machine_ids: Sequence[str]) -> str:
    """Every install summary row (any run, VMs or Arc) of the given machines (at most
    :data:`MACHINE_BATCH`): how an Arc machine's on-demand install is found in Resource Graph
    (its LRO result has no patch list; §2.6, §5.2). Rows are kept 30 days, so a machine has few."""
    return (
        "patchinstallationresources\n"
        "| where type endswith '/patchinstallationresults'\n"
        "| extend machineId = tostring(split(tolower(id), '/patchinstallationresults/')[0])\n"
        f"| where machineId in~ ({_machine_literals(machine_ids)})\n"
        "| project id, machineId, run = name, properties\n"
        "| order by id asc"
    )


def assessment_query(machine_ids: Sequence[str] | None = None) -> str:
    """The latest assessment summary of every machine (VMs and Arc) in the queried subscriptions
    (§7(c)): missing Critical / Security counts and when the machine was last assessed; with
    ``machine_ids`` (at most :data:`MACHINE_BATCH`) only those machines'."""
    only = f"| where machineId in~ ({_machine_literals(machine_ids)})\n" if machine_ids is not None else ""
    return (
        "patchassessmentresources\n"
        "| where type endswith '/patchassessmentresults'\n"
        "| extend machineId = tostring(split(tolower(id), '/patchassessmentresults/')[0])\n"
        f"{only}"
        "| project id, machineId, properties\n"
        "| order by id asc"
    )


def is_machine_id(value: str) -> bool:
    """Whether ``value`` is a VM or Arc machine id a query may name (:func:`summary_query`'s filter)."""
    return bool(_MACHINE_ID.match(str(value)))


def machine_of(row_id: str) -> str:
    """The machine id (lower-case) of a summary or per-patch row id."""
    low = str(row_id).lower()
    return low.split("/patchinstallationresults/")[0].split("/patchassessmentresults/")[0]


def run_of_patch_row(row_id: str) -> str:
    """The run GUID (lower-case) of a ``…/patchInstallationResults/<GUID>/softwarePatches/<p>`` id
    (the machine's first child resource name, as ``azure.mgmt.core.tools.parse_resource_id`` reads it)."""
    return str(parse_arm_id(str(row_id)).get("child_name_1") or "").lower()


Send = Callable[[str, list[str], "str | None"], "tuple[Mapping[str, Any], Mapping[str, str]]"]


def query_all(send: Send, query: str, subscriptions: list[str], *, max_pages: int = 1000,
              on_quota: Callable[[Mapping[str, str]], None] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Every row of ``query`` (objectArray), following ``$skipToken``; returns (rows, pages).

    ``send(query, subscriptions, skip_token)`` returns the page (a ``QueryResponse`` as a dict) and
    the response headers; ``on_quota(headers)`` is called between pages (back off on quota 0).

    Fails closed (:class:`~patchrings.errors.ResourceGraphIncomplete`, issue 11): member lists and
    results read from here are denominators, so a short answer must never pass as the whole one.
    A page whose ``data`` is not a list, a ``resultTruncated`` answer (every query here projects
    ``id`` and pages by ``$skipToken``, so ARG truncating it means rows were dropped, §4.4), or a
    row count that differs from the first page's ``totalRecords`` raise. Rows that change between
    page calls can shift pages (§4.4: a duplicate or a skipped row), so a count mismatch re-reads
    the query once from the start; a second mismatch raises. Pages that do not give
    ``totalRecords`` (older answers, some fakes) are checked for the rest only.
    """
    rows, pages, expected = _read_all(send, query, subscriptions, max_pages=max_pages, on_quota=on_quota)
    if expected is None or expected == len(rows):
        return rows, pages
    first = (len(rows), expected)
    rows, more, expected = _read_all(send, query, subscriptions, max_pages=max_pages, on_quota=on_quota)
    pages += more
    if expected is None or expected == len(rows):
        return rows, pages
    raise ResourceGraphIncomplete(
        f"Resource Graph answered {len(rows)} row(s) of totalRecords {expected} twice in a row "
        f"(first read: {first[0]} of {first[1]}); the answer is not complete", details={
            "reads": [{"rows": first[0], "totalRecords": first[1]}, {"rows": len(rows), "totalRecords": expected}]})


def _read_all(send: Send, query: str, subscriptions: list[str], *, max_pages: int,
              on_quota: Callable[[Mapping[str, str]], None] | None) -> tuple[list[dict[str, Any]], int, int | None]:
    """One paged read: (rows, pages, the first page's ``totalRecords`` or None when absent)."""
    rows: list[dict[str, Any]] = []
    token: str | None = None
    pages = 0
    expected: int | None = None
    while True:
        page, headers = send(query, subscriptions, token)
        pages += 1
        if not isinstance(page, Mapping):
            raise ResourceGraphIncomplete(f"Resource Graph answered a {type(page).__name__}, not a QueryResponse")
        data = page.get("data")
        if not isinstance(data, list):
            if isinstance(data, Mapping) and "columns" in data:
                raise ResourceGraphIncomplete("Resource Graph answered in table format; objectArray was expected")
            raise ResourceGraphIncomplete(
                f"Resource Graph page {pages} has no data list ({type(data).__name__}); the answer is not complete")
        if str(page.get("resultTruncated", "false")).lower() == "true":
            raise ResourceGraphIncomplete(
                f"Resource Graph truncated the answer (resultTruncated, totalRecords "
                f"{page.get('totalRecords')!r}, {len(rows) + len(data)} row(s) read): rows would be missing")
        if pages == 1 and page.get("totalRecords") is not None:
            try:
                expected = int(page["totalRecords"])
            except (TypeError, ValueError):
                raise ResourceGraphIncomplete(
                    f"Resource Graph totalRecords is not a number: {page.get('totalRecords')!r}") from None
        if any(not isinstance(r, dict) for r in data):
            raise ResourceGraphIncomplete("Resource Graph answered a row that is not an object (objectArray expected)")
        rows.extend(data)
        token = page.get("$skipToken") or page.get("skipToken") or page.get("skip_token")
        if not token:
            return rows, pages, expected
        if pages >= max_pages:
            raise ResourceGraphIncomplete(f"Resource Graph paging did not end after {max_pages} pages")
        if on_quota is not None:
            on_quota(headers)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _error(props: Mapping[str, Any]) -> dict[str, Any] | None:
    details = props.get("errorDetails")
    if not details:
        return None
    items = details if isinstance(details, list) else [details]
    items = [d if isinstance(d, Mapping) else {"message": str(d)} for d in items]
    first = items[0] if items else {}
    return {"code": first.get("code") or "PatchInstallationError",
            "message": f"{len(items)} error/s reported: {first.get('message') or ''}".strip(),
            "details": [dict(d) for d in items]}


def install_result(summary: Mapping[str, Any], patch_rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A summary row's ``properties`` plus its per-patch rows, in the
    ``VirtualMachineInstallPatchesResult`` shape (``source: resourceGraph``)."""
    props = summary.get("properties") if isinstance(summary.get("properties"), Mapping) else summary
    assert isinstance(props, Mapping)
    patches = []
    for row in sorted(patch_rows, key=lambda r: str(r.get("id", "")).lower()):
        p = row.get("properties") if isinstance(row.get("properties"), Mapping) else {}
        assert isinstance(p, Mapping)
        patches.append({
            "patchId": str(row.get("id", "")).rsplit("/", 1)[-1],
            "name": p.get("patchName"),
            "version": p.get("version"),
            "kbId": p.get("kbId"),
            "classifications": list(p.get("classifications") or []),
            "installationState": p.get("installationState"),
        })
    return {
        "status": props.get("status"),
        "installationActivityId": props.get("installationActivityId"),
        "rebootStatus": props.get("rebootStatus") or "Unknown",
        "maintenanceWindowExceeded": bool(props.get("maintenanceWindowExceeded")),
        "excludedPatchCount": _int(props.get("excludedPatchCount")),
        "notSelectedPatchCount": _int(props.get("notSelectedPatchCount")),
        "pendingPatchCount": _int(props.get("pendingPatchCount")),
        "installedPatchCount": _int(props.get("installedPatchCount")),
        "failedPatchCount": _int(props.get("failedPatchCount")),
        "patches": patches,
        "startDateTime": props.get("startDateTime"),
        "lastModifiedDateTime": props.get("lastModifiedDateTime"),
        "maintenanceRunId": props.get("maintenanceRunId"),
        "error": _error(props),
        "source": "resourceGraph",
    }


def is_terminal(summary: Mapping[str, Any]) -> bool:
    props = summary.get("properties") if isinstance(summary.get("properties"), Mapping) else summary
    return str((props or {}).get("status") or "").lower() in TERMINAL


# ------------------------------------------------------------------------------ resources (issue 11)
VM_TYPE = "microsoft.compute/virtualmachines"
ARC_TYPE = "microsoft.hybridcompute/machines"
#: VM ids per power-state query: 100 ids of ~150 characters keep the query text near 16 KB. No
#: documented limit on ARG's query text was found; the docs' guidance (§4.5) is to group ids into
#: ``in~`` lists rather than query per resource, and the app's other id lists use the same size.
IDS_PER_QUERY = MACHINE_BATCH
#: Tag values sent to ARG as a ``contains`` filter: plain text only, so the value appears verbatim
#: in ``tostring(tags)``'s JSON whatever the key's casing (anything else: no server-side tag filter).
_PLAIN = re.compile(r"^[A-Za-z0-9 _.:/@+=,-]{1,256}$")

_MEMBER_COLUMNS = (
    "| project id, name, type, location, resourceGroup, tags, zones,\n"
    "  osType = properties.storageProfile.osDisk.osType,\n"
    "  imageReference = properties.storageProfile.imageReference,\n"
    "  windowsPatchSettings = properties.osProfile.windowsConfiguration.patchSettings,\n"
    "  linuxPatchSettings = properties.osProfile.linuxConfiguration.patchSettings,\n"
    "  availabilitySet = properties.availabilitySet,\n"
    "  powerState = properties.extended.instanceView.powerState.code,\n"
    "  status = properties.status, lastStatusChange = properties.lastStatusChange,\n"
    "  osName = properties.osName, osVersion = properties.osVersion, osSku = properties.osSku,\n"
    "  machineOsType = properties.osType\n"
)


def members_query(*, tag_values: Iterable[str] | None = None, resource_groups: Iterable[str] = (),
                  ids: Iterable[str] = ()) -> str:
    """VMs and Arc machines that may be members (a superset; module doc), ordered by id.

    ``tag_values``: tag values of which a member carries one (the ring's value and hold value, its
    configuration's dynamic-scope values; None: no tag filter, e.g. a ring whose configuration
    alone selects members); a value that is not plain text drops the tag filter. ``ids``: machines
    that are members whatever their tags (resource-level assignments, at most
    :data:`IDS_PER_QUERY` x 2), or'ed with the tag filter. ``resource_groups``: the plan's
    resource groups (quoted with :func:`kql_string`).
    """
    lines = ["resources",
             f"| where type =~ '{VM_TYPE}' or type =~ '{ARC_TYPE}'"]
    groups = sorted({str(g).lower() for g in resource_groups})
    if groups:  # ARG's resourceGroup is lower-case; in~ is case-insensitive anyway
        lines.append(f"| where resourceGroup in~ ({', '.join(kql_string(g) for g in groups)})")
    values = sorted(set(tag_values)) if tag_values is not None else []
    if values and all(_PLAIN.match(v) for v in values):
        terms = [f"tostring(tags) contains {kql_string(v)}" for v in values]
        named = sorted({str(i).lower() for i in ids})
        for first in range(0, len(named), MACHINE_BATCH):
            terms.append(f"id in~ ({_machine_literals(named[first:first + MACHINE_BATCH])})")
        lines.append("| where " + " or ".join(terms))
    return "\n".join(lines) + "\n" + _MEMBER_COLUMNS + "| order by id asc"


def power_query(vm_ids: Sequence[str]) -> str:
    """The power state of the given VMs (at most :data:`IDS_PER_QUERY`), by id."""
    if not vm_ids or len(vm_ids) > IDS_PER_QUERY:
        raise ValueError(f"1..{IDS_PER_QUERY} VM ids per query, got {len(vm_ids)}")
    return (
        "resources\n"
        f"| where type =~ '{VM_TYPE}'\n"
        f"| where id in~ ({_machine_literals(vm_ids)})\n"
        "| project id, powerState = tostring(properties.extended.instanceView.powerState.code)\n"
        "| order by id asc"
    )


def _given(value: Any) -> Any:
    """A projected cell: KQL's ``tostring(null)`` is ``''``; both mean *not there*."""
    return None if value is None or value == "" else value


def member_wire(row: Mapping[str, Any]) -> dict[str, Any]:
    """A :func:`members_query` row in the REST shape of a VM GET (with its power state as an
    instance-view status) or of an Arc machine GET: what ``vm_ref`` / ``arc_ref`` read."""
    kind = str(row.get("type") or "").lower()
    out: dict[str, Any] = {"id": str(row.get("id")), "name": row.get("name"), "type": row.get("type"),
                           "location": row.get("location"), "tags": dict(row.get("tags") or {})}
    if row.get("zones"):
        out["zones"] = list(row["zones"])
    if kind == ARC_TYPE:
        out["properties"] = {key: _given(row.get(col)) for key, col in (
            ("status", "status"), ("lastStatusChange", "lastStatusChange"), ("osName", "osName"),
            ("osVersion", "osVersion"), ("osSku", "osSku"), ("osType", "machineOsType"))}
        return out
    props: dict[str, Any] = {"storageProfile": {"osDisk": {"osType": _given(row.get("osType"))}}}
    if isinstance(row.get("imageReference"), Mapping):
        props["storageProfile"]["imageReference"] = dict(row["imageReference"])
    for key, col in (("windowsConfiguration", "windowsPatchSettings"), ("linuxConfiguration", "linuxPatchSettings")):
        if isinstance(row.get(col), Mapping):
            props["osProfile"] = {key: {"patchSettings": dict(row[col])}}
            break
    if isinstance(row.get("availabilitySet"), Mapping):
        props["availabilitySet"] = dict(row["availabilitySet"])
    power = _given(row.get("powerState"))
    if power:
        props["instanceView"] = {"statuses": [{"code": str(power)}]}
    out["properties"] = props
    return out


def power_code(value: Any) -> str | None:
    """``PowerState/running`` -> ``running``; None when ARG has no power state for the VM."""
    text = str(_given(value) or "")
    if not text:
        return None
    return text.split("/", 1)[1] if text.lower().startswith("powerstate/") else text


class QuotaDeferred(RuntimeError):
    """A Resource Graph query could not start before the caller's deadline (quota exhausted)."""


def _hms(text: Any) -> float | None:
    try:
        h, m, s = (float(x) for x in str(text).split(":"))
    except (TypeError, ValueError):
        return None
    return max(h * 3600 + m * 60 + s, 0.0)


def _headers_of(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return dict(headers) if headers else {}


class QuotaGate:
    """ARG's per-principal quota as this process sees it (module doc).

    Two bounds, both waited for: this process starts at most ``limit`` queries per ``window``
    seconds (below the documented 15 per 5 s, so a burst of health batches never trips the quota
    before the first answer is in), and when an answer said ``x-ms-user-quota-remaining`` is 0
    (queries of the same principal elsewhere count too), nothing starts until its
    ``x-ms-user-quota-resets-after`` (plus ``margin``). A 429 counts as 0 remaining (its
    ``Retry-After``, else ``default_wait``). :meth:`acquire` waits for a slot unless the slot
    comes after ``deadline`` (False: the caller defers). ``queries``, ``throttled`` (429s seen) and
    ``waited`` (seconds slept) are the gate's cost, for logs and benchmarks. ``clock`` / ``sleep``
    are injectable for tests.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 limit: int = 12, window: float = 5.0, margin: float = 0.2, default_wait: float = 5.0) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"a quota gate needs limit >= 1 and window > 0, got {limit}, {window}")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.limit = limit
        self.window = window
        self.margin = margin
        self.default_wait = default_wait
        self._starts: deque[float] = deque()
        self._remaining: int | None = None
        self._reset_at = 0.0
        self.queries = 0
        self.throttled = 0
        self.waited = 0.0

    def now(self) -> float:
        """The gate's time base (deadlines given to :meth:`acquire` are on it)."""
        return self._clock()

    def observe(self, headers: Mapping[str, str], *, throttled: bool = False) -> None:
        lowered = {str(k).lower(): v for k, v in headers.items()}
        now = self._clock()
        resets = _hms(lowered.get("x-ms-user-quota-resets-after"))
        try:
            remaining: int | None = int(str(lowered.get("x-ms-user-quota-remaining")).strip())
        except (TypeError, ValueError):
            remaining = None
        with self._lock:
            if throttled:
                self.throttled += 1
                remaining = 0
                if resets is None:
                    retry = _hms(f"0:0:{lowered.get('retry-after')}") if lowered.get("retry-after") else None
                    resets = retry if retry is not None else self.default_wait
            if remaining is None:
                return
            self._remaining = remaining
            self._reset_at = now + (resets if resets is not None else self.default_wait)

    def _wait_for(self, now: float) -> float:
        """Seconds until a query may start (0: now); called under the lock."""
        while self._starts and self._starts[0] <= now - self.window:
            self._starts.popleft()
        wait = self._starts[0] + self.window - now if len(self._starts) >= self.limit else 0.0
        if self._remaining is not None and self._remaining <= 0 and now < self._reset_at:
            wait = max(wait, self._reset_at - now)
        return wait

    def acquire(self, deadline: float | None = None) -> bool:
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_for(now)
                if wait <= 0:
                    self._starts.append(now)
                    if self._remaining is not None:
                        self._remaining -= 1 if now < self._reset_at else 0
                    self.queries += 1
                    return True
                wait += self.margin
            if deadline is not None and now + wait > deadline:
                return False
            self._sleep(wait)
            with self._lock:
                self.waited += wait


#: The process's gate: the quota is per principal, and every activity of a worker shares its identity.
QUOTA = QuotaGate()


def paced(send: Send, gate: QuotaGate = QUOTA, *, deadline: float | None = None, attempts: int = 4) -> Send:
    """``send`` behind ``gate``: each query waits for the quota; a 429 is waited out and sent again
    (at most ``attempts`` times); :class:`QuotaDeferred` when the quota does not allow a query
    before ``deadline``."""

    def wrapped(query: str, subscriptions: list[str], token: str | None) -> tuple[Mapping[str, Any], Mapping[str, str]]:
        for attempt in range(attempts):
            if not gate.acquire(deadline):
                raise QuotaDeferred("Resource Graph quota: no query possible before the deadline")
            try:
                page, headers = send(query, subscriptions, token)
            except Exception as exc:
                if status_of(exc) != 429 or attempt + 1 == attempts:
                    raise
                gate.observe(_headers_of(exc), throttled=True)
                continue
            gate.observe(headers)
            return page, headers
        raise AssertionError("unreachable")

    return wrapped
