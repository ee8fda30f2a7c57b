"""Azure Resource Graph on the ARM simulator: ``POST /providers/Microsoft.ResourceGraph/resources``.

Why: Update Manager reports the per-machine results of a *scheduled* run in Resource Graph
(``patchinstallationresources``), not in any ARM resource the app could GET: the summary row per
machine and run (status, counts, ``rebootStatus``, ``maintenanceWindowExceeded``,
``maintenanceRunId``) and one ``softwarepatches`` row per patch. The app's scheduled-ring gate
reads them (``activities/resource_graph.py``); this module serves them from the simulator's own
record of each run (:class:`emulator.arm.schedule.Run` and its per-VM
:class:`~emulator.arm.patching.InstallPlan`), shaped as documented in
``/work/shared/reference/arc-and-resource-graph.md`` §4 and §5.

SUPPORTED

* api-versions 2019-04-01, 2020-04-01-preview, 2021-03-01 (azure-mgmt-resourcegraph 8.0.1's
  default), 2021-06-01-preview, 2022-10-01, 2024-04-01; others get ARM's 400.
* ``QueryRequest``: ``query`` (required), ``subscriptions`` (rows filtered by subscription;
  ``managementGroups`` alone = every subscription; both together → 400), ``options.$top``
  (1..1000, else 400; default page 100), ``$skip``, ``$skipToken``, ``resultFormat``
  (``objectArray`` default, ``table`` with column types). ``facets`` are answered ``[]``.
* ``QueryResponse``: ``totalRecords``, ``count``, ``resultTruncated`` as the *string*
  ``"true"``/``"false"``, ``$skipToken`` only while more rows exist and the query has no
  ``take``/``limit``/``top`` and projects ``id`` (§4.4), ``facets: []``, ``data``.
* Tables ``patchinstallationresources`` (summary rows ``…/patchinstallationresults`` with
  ``id = <vm>/patchInstallationResults/<installationActivityId>``, per-patch rows
  ``…/patchinstallationresults/softwarepatches`` with ``id = <summary id>/softwarePatches/<patchId>``,
  so segment 10 of ``split(id, '/')`` is the run GUID as in the documented samples) and
  ``patchassessmentresources`` (``…/patchAssessmentResults/latest`` and its ``softwarePatches`` from
  each VM's last assessPatches). Arc-enabled servers' rows have the same shapes under
  ``microsoft.hybridcompute/machines/patchinstallationresults[/softwarepatches]`` and
  ``…/patchassessmentresults[/softwarepatches]`` (§5.1), so ``type endswith
  '/patchinstallationresults'`` returns VMs and Arc machines together. Rows come from scheduled
  runs (``startedBy: Platform``, ``maintenanceRunId`` = the run) **and from direct installs**
  (``installPatches`` on a VM or an Arc machine: ``startedBy: User``, ``maintenanceRunId`` null;
  the ``startedBy`` enum of §5.2 implies user-started installs are reported). An Arc machine's
  per-patch data exists only here (its LRO result has no list, §2.6). An operation that failed as
  a whole (``operationFails``, an Arc agent not Connected) installed nothing and writes no row.
  Standard columns ``id, name, type, tenantId, kind, location,
  resourceGroup, subscriptionId, managedBy, sku, plan, properties, tags, identity, zones,
  extendedLocation``; ``type`` and ``resourceGroup`` lower-case, ``id`` in its original casing;
  ``properties.maintenanceRunId`` = the run's correlationId (the community-observed join key, §5.6).
* Table ``resources``: one row per VM (``microsoft.compute/virtualmachines``) and per Arc-enabled
  server (``microsoft.hybridcompute/machines``), with the standard columns. ``properties`` is the
  resource's ARM GET ``properties`` from the provider's own serialiser (``ComputeBackend.vm_body``,
  ``HybridComputeBackend.machine_body``), so the two cannot drift; a VM's also carries
  ``properties.extended.instanceView`` ``{computerName, osName, osVersion, hyperVGeneration,
  powerState: {code: "PowerState/running" | "PowerState/stopped" | "PowerState/deallocated", level:
  "Info", displayStatus: "VM running" | …}}`` as ARG publishes it. ARG has no application health:
  a VM that turned unhealthy after a patch (``unhealthyAfterPatch``) still shows
  ``PowerState/running``; only its instance view's ``vmHealth`` / extension substatus say otherwise.
  ``tags`` keep each key's casing as written (MicrosoftDocs/azure-docs#57888: Azure treats tag names
  case-insensitively but keeps the casing it was given) and KQL's ``tags['k']`` is a case-sensitive
  member access, so ``tags['patchRing']`` misses a machine tagged ``PatchRing``; a query that must
  match any casing lower-cases the bag: ``parse_json(tolower(tostring(tags)))['patchring']``.
* **Staleness of ``resources``**: each row is the resource as it was ``resourcesLagSeconds`` (default
  60) simulated seconds ago, plus the machine's ``resourceGraphLagMinutes``: tag writes (any API),
  power-state and agent-status changes (control API, timeline, faults), creation and deletion all
  lag; a deleted machine's row stays until the lag has passed. Sources: ARG is kept current by ARM's
  change notifications plus a periodic full scan for missed ones (learn.microsoft.com, "Overview of
  Azure Resource Graph", *How Resource Graph is kept current*); its stated goal is 95 % of changes
  within 1 minute (doc author in MicrosoftDocs/azure-docs#19879, quoted in lawrencegripper/azbrowse#40;
  "95 % under 30 s, no upper bound" per an Azure engineer in Azure/azure-dev#540), and support has
  answered "up to 30 hours" for new or deleted resources (ansible-collections/azure#1994). The
  default takes the slower goal for *every* change; a machine's own lag models the tail. Changes
  are stamped when they happen (each machine's class and tag dict are swapped for watching ones, see
  the backend); a machine added or removed at run time (the simulator has no VM PUT/DELETE) is
  stamped when a query first sees it. State per machine is a short list of versions pruned beyond
  the lag; a query walks each list once.
* The KQL subset of :mod:`emulator.arm.kql`; anything else → 400 ``BadRequest`` with details
  ``InvalidQuery`` + ``ParserFailure`` / ``UnknownFunction`` (§4.6).
* **Propagation delay**: a machine's rows appear ``propagationMinutes`` (default 3) simulated
  minutes after its install or assessment ends, plus the machine's own ``resourceGraphLagMinutes``
  (scenario, VMs and Arc machines: "late rows" for one machine); **retention** 30 days
  (installations) / 7 days (assessments).
* Quota as Azure enforces it (§4.5): per principal, 15 queries (each page counts) per 5 s window by
  default; the next one is a 429 ``RateLimiting`` with ``Retry-After`` = the seconds until a unit frees
  (unless ``retryAfterOn429`` is false). Headers ``x-ms-user-quota-remaining`` /
  ``x-ms-user-quota-resets-after`` on every answer. A query leaves the window when the window has
  passed in simulated *or* real time (as :mod:`emulator.arm.throttle` refills): under the skip clock
  the SDK's ``Retry-After`` sleep is real time. ``enforceQuota: false`` is an explicit opt-out
  (headers only) for a scenario about something else.

Configuration: the scenario's ``resourceGraph`` object (``propagationMinutes``,
``resourcesLagSeconds``, ``retentionDays``, ``assessmentRetentionDays``, ``quota``, ``quotaWindowSeconds``,
``enforceQuota``, ``retryAfterOn429``; ``initialAssessment``: every machine that can be reached
has a periodic assessment from an hour before the simulator's start, so compliance views have
data; ``assessAfterInstall``: every install (direct or scheduled) ends with an assessment that
replaces the machine's ``…/latest`` rows, as a run "starts and ends with an assessment" (§3.5) --
both default false so existing scenarios keep their rows; validated by the scenario schema), or at run time with
:func:`configure` (tests).

The rows, the query engine, paging and the quota live in
:class:`emulator.arm.backends.resourcegraph.ResourceGraphBackend`; this module is the thin HTTP
layer above it, plus the module-level helpers tests use (:func:`options_for`, :func:`configure`).

LIMITATIONS: no ``maintenanceresources`` / ``resourcecontainers`` or other tables (a query on them
is a 400, never an empty answer); ``resources`` holds only VMs and Arc machines (no disks, NICs,
resource groups), has no ``systemData`` and models one lag for every kind of change (in Azure a
change ARM is not notified of, e.g. a guest shutdown, may wait for the next full scan); no
``InProgress`` rows while an install runs; rows
are computed at query time from the run records, so a ``$skipToken`` resumes against the current
data (as in Azure, changes between pages can shift rows); no facets, no management-group
hierarchy.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from emulator.arm import apiversions
from emulator.arm.backends import HasBackends
from emulator.arm.backends.resourcegraph import COLUMNS, TABLES, ResourceGraphBackend, ResourceGraphOptions
from emulator.arm.calls import Call, Reply

if TYPE_CHECKING:
    from emulator.arm.fleet import Vm
    from emulator.arm.patching import InstallPlan

__all__ = [
    "API_VERSIONS",
    "COLUMNS",
    "HANDLERS",
    "TABLES",
    "ResourceGraphOptions",
    "assess_after_install",
    "configure",
    "initial_assessments",
    "options_for",
    "table_rows",
]

API_VERSIONS = ["2019-04-01", "2020-04-01-preview", "2021-03-01", "2021-06-01-preview", "2022-10-01", "2024-04-01"]
# The api-version check for the routes named "arg.*" (ARM's 400 for any other version).
apiversions.register_provider("arg", "Microsoft.ResourceGraph", "resources", API_VERSIONS)

Owner = HasBackends | ResourceGraphBackend


def _backend(owner: Owner) -> ResourceGraphBackend:
    """The Resource Graph backend of a simulator (anything with ``backends``) or the backend itself."""
    return owner if isinstance(owner, ResourceGraphBackend) else owner.backends.resourcegraph


def options_for(owner: Owner) -> ResourceGraphOptions:
    """The simulator's Resource Graph options (from the scenario's ``resourceGraph``)."""
    return _backend(owner).options


def configure(owner: Owner, **changes: Any) -> ResourceGraphOptions:
    """Change options at run time, e.g. ``configure(sim, propagation=timedelta(minutes=20))``."""
    return _backend(owner).configure(**changes)


def initial_assessments(owner: Owner) -> None:
    """``initialAssessment``: give every reachable machine a periodic assessment from an hour ago."""
    _backend(owner).initial_assessments()


def assess_after_install(owner: Owner, vm: Vm, plan: InstallPlan) -> None:
    """``assessAfterInstall``: the install's closing assessment replaces the machine's ``…/latest`` rows."""
    _backend(owner).assess_after_install(vm, plan)


def table_rows(owner: Owner, table: str, now: datetime) -> list[dict[str, Any]]:
    """Every row of ``table`` visible at ``now`` (propagation delay and retention applied)."""
    return _backend(owner).table_rows(table, now)


def query_resources(backend: ResourceGraphBackend, call: Call) -> Reply:
    answer, headers = backend.resources(call.require_body(), call.identity)
    return Reply(200, answer, headers)


HANDLERS = {"arg.resources": query_resources}
