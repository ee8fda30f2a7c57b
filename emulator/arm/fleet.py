"""The simulated Azure state: VMs, the patch catalog, maintenance configurations, assignments.

Why a separate model: the REST handlers, the schedule engine, the control API and the health
listener all read and change the same world; keeping it in plain dataclasses (no HTTP, no clock)
makes each of those small and lets tests inspect state directly. Resource ids are stored with the
casing they were created with and looked up case-insensitively (contracts §9).

Azure Arc-enabled servers (``Microsoft.HybridCompute/machines``, issue 12) are :class:`Vm` objects
with ``kind == "arc"``: they share the patch world, faults, health endpoints, tags, configuration
assignments and scheduled runs with VMs, and differ in their id, their agent ``status``
(``Connected`` / ``Disconnected`` / ``Expired`` / ``Error`` / ``AwaitingConnection``) instead of a
power state and VM agent, and in having no patch-orchestration prerequisite for schedules
(arc-and-resource-graph.md §3.2). They live in :attr:`Fleet.machines`, not :attr:`Fleet.vms`, so
Compute handlers and VM-only code never see them; :meth:`Fleet.vm` (by id), :meth:`Fleet.vm_by_name`
and :meth:`Fleet.assigned_vms` cover both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulator.arm.recurrence import Window, parse_window
from emulator.arm.scenario import ScenarioError

__all__ = [
    "Assignment",
    "Fleet",
    "MaintenanceConfiguration",
    "Patch",
    "Vm",
    "normalize_reboot_setting",
    "windows_category_name",
    "windows_classification_key",
    "windows_filter_name",
]

_NS = uuid.UUID("6f0e3c1e-6b1a-4a43-9a53-0d2b5b3f1c11")
_REBOOT_ALIASES = {
    "ifrequired": "IfRequired",
    "rebootifrequired": "IfRequired",
    "never": "Never",
    "neverreboot": "Never",
    "always": "Always",
    "alwaysreboot": "Always",
}
_SERVICE_REBOOT = {"IfRequired": "RebootIfRequired", "Never": "NeverReboot", "Always": "AlwaysReboot"}


def normalize_reboot_setting(value: object, *, style: str = "request") -> str | None:
    """``IfRequired``/``RebootIfRequired`` etc. → the request form, or the service form if asked."""
    if value is None:
        return None
    canonical = _REBOOT_ALIASES.get(str(value).lower())
    if canonical is None:
        raise ValueError(f"rebootSetting: {value!r} is not one of IfRequired, Never, Always")
    return _SERVICE_REBOOT[canonical] if style == "service" else canonical


# Windows classifications have two spellings (Compute 2026-04-01 / Maintenance 2025-11-01 swagger and
# the official VirtualMachine_AssessPatches / _InstallPatches examples): the *filters*
# (classificationsToInclude: VMGuestPatchClassificationWindows = Critical, Security, UpdateRollUp,
# FeaturePack, ServicePack, Definition, Tools, Updates; the Maintenance spec spells UpdateRollup)
# and the Windows Update category names the *results* carry ("Security Updates", "Update Rollups",
# "Definition Updates", ...). The catalog stores the filter spelling; results show the category.
_WINDOWS_CATEGORY = {
    "critical": ("Critical", "Critical Updates"),
    "security": ("Security", "Security Updates"),
    "updaterollup": ("UpdateRollUp", "Update Rollups"),
    "featurepack": ("FeaturePack", "Feature Packs"),
    "servicepack": ("ServicePack", "Service Packs"),
    "definition": ("Definition", "Definition Updates"),
    "tools": ("Tools", "Tools"),
    "updates": ("Updates", "Updates"),
}
_WINDOWS_BY_CATEGORY = {category.lower(): key for key, (_, category) in _WINDOWS_CATEGORY.items()}


def windows_classification_key(name: str) -> str:
    """Either spelling (``Security`` / ``Security Updates`` / ``UpdateRollup``) → the filter key, lower case."""
    lowered = str(name).strip().lower()
    return _WINDOWS_BY_CATEGORY.get(lowered, lowered)


def windows_filter_name(name: str) -> str:
    """The ``classificationsToInclude`` spelling of a Windows classification (unknown names unchanged)."""
    entry = _WINDOWS_CATEGORY.get(windows_classification_key(name))
    return entry[0] if entry else str(name)


def windows_category_name(name: str) -> str:
    """The Windows Update category a result shows (``Security`` → ``Security Updates``)."""
    entry = _WINDOWS_CATEGORY.get(windows_classification_key(name))
    return entry[1] if entry else str(name)


def stable_uuid(*parts: str) -> str:
    """A deterministic GUID for ids that Azure generates (vmId, patchId, objectId)."""
    return str(uuid.uuid5(_NS, "/".join(parts).lower()))


def _parse_date(text: str | None) -> datetime:
    if not text:
        return datetime(2026, 1, 1, tzinfo=UTC)
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Patch:
    """One catalog entry: a Windows KB or a Linux package version."""

    os: str
    name: str
    classifications: list[str]
    published: datetime
    reboot_behavior: str
    minutes: float
    kb_id: str = ""  # Windows, digits only
    package: str = ""  # Linux
    version: str = ""

    @property
    def key(self) -> str:
        """How VMs list installed patches: ``KB5034123`` or ``openssl=3.0.2-0ubuntu1.15``."""
        return f"KB{self.kb_id}" if self.os == "Windows" else f"{self.package}={self.version}"

    @property
    def patch_id(self) -> str:
        return stable_uuid("patch", self.key)

    @property
    def needs_reboot(self) -> bool:
        return self.reboot_behavior in ("AlwaysRequiresReboot", "CanRequestReboot")

    @property
    def critical_or_security(self) -> bool:
        return any(c.lower() in ("critical", "security") for c in self.classifications)


@dataclass
class Vm:
    """A virtual machine and its simulated guest state."""

    subscription: str
    resource_group: str
    name: str
    os: str
    location: str
    zone: str | None = None
    availability_set: str | None = None
    size: str = "Standard_D2s_v5"
    image: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    power_state: str = "running"
    vm_agent_ready: bool = True
    health: str = "Healthy"
    app_health_extension: bool = True
    patch_mode: str = "AutomaticByPlatform"
    bypass_platform_safety_checks: bool = True
    installed: set[str] = field(default_factory=set)
    last_installation: dict[str, Any] | None = None
    last_assessment: dict[str, Any] | None = None
    busy_operation: str | None = None  # id of the install/assess operation or run in progress
    install_count: int = 0
    update_domain: int = 0  # within its availability set (0 outside one)
    fault_domain: int = 0
    kind: str = "vm"  # "vm" (Microsoft.Compute/virtualMachines) | "arc" (Microsoft.HybridCompute/machines)
    # Arc-enabled servers only (arc-and-resource-graph.md §2.3)
    agent_status: str = "Connected"  # Connected | Disconnected | Expired | Error | AwaitingConnection
    last_status_change: datetime | None = None
    os_name: str = ""
    os_sku: str = ""
    os_version: str = ""
    agent_version: str = "1.50.02869.2000"
    arc_kind: str | None = None  # the resource's ARM ``kind`` (AWS, GCP, VMware, ...), if any
    # extra simulated minutes before this machine's Resource Graph rows appear (late rows)
    resource_graph_lag_minutes: float = 0.0

    @property
    def is_arc(self) -> bool:
        return self.kind == "arc"

    @property
    def resource_type(self) -> str:
        return "Microsoft.HybridCompute/machines" if self.is_arc else "Microsoft.Compute/virtualMachines"

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{self.resource_type}/{self.name}"
        )

    @property
    def patchable(self) -> bool:
        """Can an install reach the machine now (VM running with a ready agent / Arc agent Connected)?"""
        if self.is_arc:
            return self.agent_status == "Connected"
        return self.power_state == "running" and self.vm_agent_ready

    def set_agent_status(self, status: str, now: datetime) -> None:
        """An Arc agent's status changes; ``lastStatusChange`` moves only on a real transition."""
        if status != self.agent_status:
            self.agent_status = status
            self.last_status_change = now

    @property
    def vm_id(self) -> str:
        return stable_uuid("vm", self.id)

    @property
    def availability_set_id(self) -> str | None:
        if not self.availability_set:
            return None
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/availabilitySets/{self.availability_set}"
        )


@dataclass
class MaintenanceConfiguration:
    subscription: str
    resource_group: str
    name: str
    location: str
    properties: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    generation: int = 0  # bumped on every write, so the schedule engine restarts

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourcegroups/{self.resource_group}"
            f"/providers/Microsoft.Maintenance/maintenanceConfigurations/{self.name}"
        )

    @property
    def window(self) -> Window:
        return parse_window(self.properties.get("maintenanceWindow") or {})

    @property
    def scope(self) -> str:
        return str(self.properties.get("maintenanceScope") or "")

    @property
    def install_patches(self) -> dict[str, Any]:
        return dict(self.properties.get("installPatches") or {})


@dataclass
class Assignment:
    """A configuration assignment at resource, resource-group or subscription (dynamic) scope."""

    id: str
    name: str
    scope_id: str  # the resource id, resource group id or subscription id
    configuration_id: str
    filter: dict[str, Any] | None = None
    location: str = ""

    @property
    def is_dynamic(self) -> bool:
        return self.filter is not None


class Fleet:
    """The whole simulated world; ids are looked up case-insensitively."""

    def __init__(self) -> None:
        self.subscriptions: list[str] = []
        self.resource_groups: dict[str, tuple[str, str, str]] = {}  # lower id -> (sub, name, location)
        self.vms: dict[str, Vm] = {}  # lower id -> Vm (Microsoft.Compute/virtualMachines only)
        self.machines: dict[str, Vm] = {}  # lower id -> Arc-enabled server (kind "arc")
        self.catalog: list[Patch] = []
        self.configurations: dict[str, MaintenanceConfiguration] = {}  # lower id -> config
        self.assignments: dict[str, Assignment] = {}  # lower id -> assignment
        self.tags_by_scope: dict[str, dict[str, str]] = {}  # tags of non-VM scopes

    # -- lookups -------------------------------------------------------------------------------
    def vm(self, vm_id: str) -> Vm | None:
        """A VM or an Arc machine by resource id (case-insensitive)."""
        key = vm_id.lower().rstrip("/")
        return self.vms.get(key) or self.machines.get(key)

    def all_machines(self) -> list[Vm]:
        """VMs and Arc machines together."""
        return [*self.vms.values(), *self.machines.values()]

    def find_machine(self, sub: str, rg: str, name: str) -> Vm | None:
        """An Arc-enabled server by subscription, resource group and name."""
        return self.machines.get(
            f"/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.hybridcompute/machines/{name}".lower()
        )

    def vm_by_name(self, name: str) -> Vm | None:
        """A VM or an Arc machine by name (names are unique across both)."""
        for vm in self.all_machines():
            if vm.name.lower() == name.lower():
                return vm
        return None

    def find_vm(self, sub: str, rg: str, name: str) -> Vm | None:
        return self.vms.get(
            f"/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.compute/virtualmachines/{name}".lower()
        )

    def has_subscription(self, sub: str) -> bool:
        return any(s.lower() == sub.lower() for s in self.subscriptions)

    def has_resource_group(self, sub: str, rg: str) -> bool:
        return f"/subscriptions/{sub}/resourcegroups/{rg}".lower() in self.resource_groups

    def configuration(self, config_id: str) -> MaintenanceConfiguration | None:
        return self.configurations.get(config_id.lower().rstrip("/"))

    def configuration_by_name(self, name: str) -> MaintenanceConfiguration | None:
        if name.startswith("/"):
            return self.configuration(name)
        for config in self.configurations.values():
            if config.name.lower() == name.lower():
                return config
        return None

    def patches_for(self, os_type: str) -> list[Patch]:
        return [p for p in self.catalog if p.os == os_type]

    def available_patches(self, vm: Vm) -> list[Patch]:
        """Catalog patches for the VM's OS that it does not have yet (Linux: by exact version)."""
        installed = {k.lower() for k in vm.installed}
        return [p for p in self.patches_for(vm.os) if p.key.lower() not in installed]

    # -- scope evaluation ----------------------------------------------------------------------
    def assigned_vms(self, config_id: str) -> list[Vm]:
        """VMs and Arc machines in the configuration's scope now: resource-level assignments plus dynamic scopes."""
        wanted = config_id.lower()
        chosen: dict[str, Vm] = {}
        everything = {**self.vms, **self.machines}
        for assignment in self.assignments.values():
            if assignment.configuration_id.lower() != wanted:
                continue
            if assignment.is_dynamic:
                for vm in everything.values():
                    if _in_dynamic_scope(vm, assignment):
                        chosen[vm.id.lower()] = vm
            else:
                scope = assignment.scope_id.lower()
                for vm_key, vm in everything.items():
                    if vm_key == scope or vm_key.startswith(scope + "/providers/"):
                        chosen[vm_key] = vm
        return sorted(chosen.values(), key=lambda v: v.id.lower())

    # -- building from a scenario --------------------------------------------------------------
    @classmethod
    def from_scenario(cls, scenario: dict[str, Any], *, now: datetime) -> Fleet:
        fleet = cls()
        for entry in scenario.get("catalog", {}).get("windows", []):
            kb = str(entry["kb"]).upper().removeprefix("KB")
            given = entry.get("classifications") or [entry.get("classification", "Security")]
            classes = [windows_filter_name(c) for c in given]
            fleet.catalog.append(
                Patch(
                    os="Windows",
                    name=entry["name"],
                    classifications=list(classes),
                    published=_parse_date(entry.get("published")),
                    reboot_behavior=entry.get("reboot", "CanRequestReboot"),
                    minutes=float(entry.get("minutes", 10)),
                    kb_id=kb,
                )
            )
        for entry in scenario.get("catalog", {}).get("linux", []):
            fleet.catalog.append(
                Patch(
                    os="Linux",
                    name=entry["package"],
                    classifications=[entry.get("classification", "Other")],
                    published=_parse_date(entry.get("published")),
                    reboot_behavior=entry.get("reboot", "NeverReboots"),
                    minutes=float(entry.get("minutes", 1)),
                    package=entry["package"],
                    version=str(entry["version"]),
                )
            )
        seen_names: dict[str, str] = {}
        pending_assignments: list[tuple[Vm, str]] = []
        for sub_entry in scenario["subscriptions"]:
            sub = sub_entry["id"]
            fleet.subscriptions.append(sub)
            for rg_entry in sub_entry.get("resourceGroups", []):
                rg = rg_entry["name"]
                rg_location = rg_entry.get("location", "westeurope")
                fleet.resource_groups[f"/subscriptions/{sub}/resourcegroups/{rg}".lower()] = (sub, rg, rg_location)
                for vm_entry in rg_entry.get("vms", []):
                    name = vm_entry["name"]
                    if name.lower() in seen_names:
                        raise ScenarioError(
                            f"VM name {name!r} is used twice ({seen_names[name.lower()]} and {sub}/{rg}); "
                            "names must be unique so health URLs and selectors are unambiguous"
                        )
                    seen_names[name.lower()] = f"{sub}/{rg}"
                    vm = Vm(
                        subscription=sub,
                        resource_group=rg,
                        name=name,
                        os=vm_entry["os"],
                        location=vm_entry.get("location", rg_location),
                        zone=vm_entry.get("zone"),
                        availability_set=vm_entry.get("availabilitySet"),
                        size=vm_entry.get("size", "Standard_D2s_v5"),
                        image=vm_entry.get("image", ""),
                        tags=dict(vm_entry.get("tags", {})),
                        power_state=vm_entry.get("powerState", "running"),
                        vm_agent_ready=vm_entry.get("vmAgent", "Ready") == "Ready",
                        health=vm_entry.get("health", "Healthy"),
                        app_health_extension=vm_entry.get("applicationHealthExtension", True),
                        patch_mode=vm_entry.get("patchMode", "AutomaticByPlatform"),
                        bypass_platform_safety_checks=vm_entry.get("bypassPlatformSafetyChecksOnUserSchedule", True),
                        installed={_patch_key(k) for k in vm_entry.get("installedPatches", [])},
                    )
                    vm.resource_graph_lag_minutes = float(vm_entry.get("resourceGraphLagMinutes", 0))
                    fleet.vms[vm.id.lower()] = vm
                    pending_assignments += [(vm, mc) for mc in vm_entry.get("maintenanceConfigurations", [])]
                for arc_entry in rg_entry.get("arcMachines", []):
                    name = arc_entry["name"]
                    if name.lower() in seen_names:
                        raise ScenarioError(
                            f"machine name {name!r} is used twice ({seen_names[name.lower()]} and {sub}/{rg}); "
                            "VM and Arc machine names must be unique so health URLs and selectors are unambiguous"
                        )
                    seen_names[name.lower()] = f"{sub}/{rg}"
                    machine = _arc_machine(arc_entry, sub, rg, rg_location, now)
                    fleet.machines[machine.id.lower()] = machine
                    pending_assignments += [(machine, mc) for mc in arc_entry.get("maintenanceConfigurations", [])]
                for mc_entry in rg_entry.get("maintenanceConfigurations", []):
                    properties: dict[str, Any] = {
                        "namespace": "Microsoft.Maintenance",
                        "visibility": "Custom",
                        "maintenanceScope": "InGuestPatch",
                        "maintenanceWindow": dict(mc_entry["window"]),
                        "extensionProperties": {"InGuestPatchMode": "User"},
                    }
                    if mc_entry.get("installPatches"):
                        properties["installPatches"] = mc_entry["installPatches"]
                    config = MaintenanceConfiguration(
                        subscription=sub,
                        resource_group=rg,
                        name=mc_entry["name"],
                        location=mc_entry.get("location", rg_location),
                        properties=properties,
                        tags=dict(mc_entry.get("tags", {})),
                        created=now,
                    )
                    try:
                        config.window  # noqa: B018 - validates the window early with a clear message
                    except ValueError as exc:
                        raise ScenarioError(f"maintenance configuration {config.name!r}: {exc}") from None
                    fleet.configurations[config.id.lower()] = config
        sets: dict[str, list[Vm]] = {}
        for vm in fleet.vms.values():
            if vm.availability_set_id:
                sets.setdefault(vm.availability_set_id.lower(), []).append(vm)
        for members in sets.values():
            for index, vm in enumerate(sorted(members, key=lambda v: v.name.lower())):
                vm.update_domain, vm.fault_domain = index % 5, index % 2
        for vm, mc_name in pending_assignments:
            assigned = fleet.configuration_by_name(mc_name)
            if assigned is None:
                raise ScenarioError(f"VM {vm.name!r}: unknown maintenance configuration {mc_name!r}")
            assignment_id = f"{vm.id}/providers/Microsoft.Maintenance/configurationAssignments/{assigned.name}"
            fleet.assignments[assignment_id.lower()] = Assignment(
                id=assignment_id, name=assigned.name, scope_id=vm.id, configuration_id=assigned.id, location=vm.location
            )
        for sub_entry in scenario["subscriptions"]:
            for scope in sub_entry.get("dynamicScopes", []):
                target = fleet.configuration_by_name(scope["maintenanceConfiguration"])
                if target is None:
                    raise ScenarioError(
                        f"dynamic scope {scope['name']!r}: unknown maintenance configuration "
                        f"{scope['maintenanceConfiguration']!r}"
                    )
                sub = sub_entry["id"]
                assignment_id = (
                    f"/subscriptions/{sub}/providers/Microsoft.Maintenance/configurationAssignments/{scope['name']}"
                )
                fleet.assignments[assignment_id.lower()] = Assignment(
                    id=assignment_id,
                    name=scope["name"],
                    scope_id=f"/subscriptions/{sub}",
                    configuration_id=target.id,
                    filter=dict(scope["filter"]),
                )
        return fleet


def _patch_key(text: str) -> str:
    text = str(text).strip()
    if text.upper().startswith("KB") or text.isdigit():
        return "KB" + text.upper().removeprefix("KB")
    return text


_ARC_OS = {
    "Windows": ("windows", "10.0.20348.2849", "Windows Server 2022 Datacenter"),
    "Linux": ("linux", "5.15.0-1075-azure", "Ubuntu 22.04.5 LTS"),
}


def _arc_machine(entry: dict[str, Any], sub: str, rg: str, rg_location: str, now: datetime) -> Vm:
    """An Arc-enabled server from a scenario's ``arcMachines`` entry (SCENARIOS.md)."""
    os_type = entry["os"]
    default_name, default_version, default_sku = _ARC_OS[os_type]
    changed = entry.get("lastStatusChange")
    return Vm(
        subscription=sub,
        resource_group=rg,
        name=entry["name"],
        os=os_type,
        location=entry.get("location", rg_location),
        tags=dict(entry.get("tags", {})),
        health=entry.get("health", "Healthy"),
        app_health_extension=False,
        patch_mode=entry.get("patchMode", "AutomaticByPlatform"),
        installed={_patch_key(k) for k in entry.get("installedPatches", [])},
        kind="arc",
        agent_status=entry.get("status", "Connected"),
        last_status_change=_parse_date(changed) if changed else now,
        os_name=entry.get("osName", default_name),
        os_sku=entry.get("osSku", default_sku),
        os_version=entry.get("osVersion", default_version),
        agent_version=entry.get("agentVersion", "1.50.02869.2000"),
        arc_kind=entry.get("kind"),
        resource_graph_lag_minutes=float(entry.get("resourceGraphLagMinutes", 0)),
    )


def _in_dynamic_scope(vm: Vm, assignment: Assignment) -> bool:
    """Evaluate a subscription-level dynamic scope filter against a VM or Arc machine (all criteria AND-ed).

    ``resourceTypes`` selects VMs with ``Microsoft.Compute/virtualMachines`` and Arc machines with
    ``Microsoft.HybridCompute/machines`` (arc-and-resource-graph.md §3.3); without it, both.
    """
    flt = assignment.filter or {}
    if not vm.id.lower().startswith(assignment.scope_id.lower() + "/"):
        return False
    types = [t.lower() for t in flt.get("resourceTypes") or []]
    if types and vm.resource_type.lower() not in types:
        return False
    groups = [g.lower() for g in flt.get("resourceGroups") or []]
    if groups and vm.resource_group.lower() not in groups:
        return False
    os_types = [o.lower() for o in flt.get("osTypes") or []]
    if os_types and vm.os.lower() not in os_types:
        return False
    locations = [loc.lower().replace(" ", "") for loc in flt.get("locations") or []]
    if locations and vm.location.lower().replace(" ", "") not in locations:
        return False
    tag_settings = flt.get("tagSettings") or {}
    wanted = tag_settings.get("tags") or {}
    if wanted:
        vm_tags = {k.lower(): v for k, v in vm.tags.items()}

        def matches(name: str, values: list[str]) -> bool:
            actual = vm_tags.get(name.lower())
            if actual is None:
                return False
            return not values or actual in values

        results = [matches(name, list(values or [])) for name, values in wanted.items()]
        operator = str(tag_settings.get("filterOperator") or "Any").lower()
        if not (all(results) if operator == "all" else any(results)):
            return False
    return True
