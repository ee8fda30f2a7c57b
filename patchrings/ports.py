"""The activity cores' collaborators, as ``Protocol``s (issue 10).

The cores in ``activities/`` take their gateways as arguments (the entry points pass
``deps.clients()`` / ``deps.ledger()``; tests pass fakes or simulator-backed clients). These
protocols say what each core actually calls, so a core's signature tells which Azure service it
reaches and a fake only needs those methods:

* :class:`ComputeGateway`: VMs (Compute) and Arc-enabled servers (HybridCompute);
* :class:`MaintenanceGateway`: Maintenance configurations, assignments and the raw ARM request
  the applyUpdates cancel needs (no SDK operation for it);
* :class:`ResourceGraphGateway`: Resource Graph queries (scheduled-run results, assessments,
  Arc patch rows);
* :class:`TagsGateway`: the Tags API (Resources);
* :class:`InstallLedger` / :class:`LedgerStore`: the ledger rows the activities read and write.

:class:`patchrings.clients.AzureClients` and :class:`patchrings.ledger.Ledger` satisfy them
structurally (checked by mypy in :func:`_conformance`, never called). The SDK clients come back
as ``Any``: the cores use the SDK's operation groups, which a fake imitates only in part.
Pure typing: no ``azure`` imports at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

__all__ = [
    "ArmGateway",
    "ComputeGateway",
    "FleetGateway",
    "InstallLedger",
    "LedgerStore",
    "MachineGateway",
    "MaintenanceGateway",
    "ResourceGraphGateway",
    "RunGateway",
    "TagsGateway",
]


class ComputeGateway(Protocol):
    """VMs and Arc-enabled servers: ``ComputeManagementClient`` / ``HybridComputeManagementClient``
    per subscription."""

    def compute(self, subscription_id: str) -> Any: ...

    def hybrid_compute(self, subscription_id: str) -> Any: ...


class MaintenanceGateway(Protocol):
    """Maintenance configurations and assignments (``MaintenanceManagementClient`` per
    subscription) and one raw ARM request through its pipeline (the applyUpdates cancel)."""

    def maintenance(self, subscription_id: str) -> Any: ...

    def send_arm_request(self, method: str, path_or_url: str, api_version: str, json: Any = None, *,
                         budget_seconds: float | None = None) -> Any: ...


class ResourceGraphGateway(Protocol):
    """Resource Graph (``ResourceGraphClient``, tenant-wide)."""

    def resource_graph(self) -> Any: ...


class TagsGateway(Protocol):
    """The Tags API (``ResourceManagementClient`` per subscription)."""

    def resources(self, subscription_id: str) -> Any: ...


class MachineGateway(ComputeGateway, ResourceGraphGateway, Protocol):
    """Install, assess and health of VMs and Arc machines: an Arc machine's patch rows and
    agent state come from Resource Graph."""


class RunGateway(ComputeGateway, MaintenanceGateway, Protocol):
    """A scheduled run's per-machine results: instance views and applyUpdates records."""


class FleetGateway(RunGateway, ResourceGraphGateway, Protocol):
    """Ring membership and the views over it (members, manifest diff, compliance): machines,
    configuration assignments and Resource Graph."""


class ArmGateway(FleetGateway, TagsGateway, Protocol):
    """Everything the activities reach in Azure (what :class:`~patchrings.clients.AzureClients` is)."""


class InstallLedger(Protocol):
    """The once-only install claims (``Installs`` rows) of ``start_install`` / ``poll_install``."""

    def install(self, run_id: str, vm_id: str) -> dict[str, Any] | None: ...

    def record_install(self, run_id: str, vm_id: str, fields: Mapping[str, Any]) -> bool: ...

    def update_install(self, run_id: str, vm_id: str, fields: Mapping[str, Any]) -> bool: ...

    def delete_install(self, run_id: str, vm_id: str) -> None: ...


class LedgerStore(InstallLedger, Protocol):
    """The ledger rows the activities read and write (:class:`~patchrings.ledger.Ledger`)."""

    def record_rollout(self, rollout_id: str, fields: Mapping[str, Any]) -> bool: ...

    def rollout(self, rollout_id: str) -> dict[str, Any] | None: ...

    def record_ring_run(self, rollout_id: str, ring: str, run_id: str, fields: Mapping[str, Any]) -> bool: ...

    def ring_runs(self, rollout_id: str) -> list[dict[str, Any]]: ...

    def run_gates(self, run_id: str) -> list[dict[str, Any]]: ...

    def record_vm_results(self, rollout_id: str, ring: str, run_id: str,
                          results: Iterable[Mapping[str, Any]]) -> int: ...

    def vm_results(self, rollout_id: str, ring: str) -> list[dict[str, Any]]: ...

    def record_approval(self, rollout_id: str, decision_id: str, fields: Mapping[str, Any]) -> bool: ...

    def approvals(self, rollout_id: str) -> list[dict[str, Any]]: ...

    def record_event(self, configuration_id: str, event_type: str, event_id: str,
                     fields: Mapping[str, Any]) -> bool: ...

    def record_quarantine(self, plan_name: str, entry_id: str, fields: Mapping[str, Any]) -> bool: ...

    def quarantine(self, plan_name: str, entry_id: str) -> dict[str, Any] | None: ...

    def quarantines(self, plan_name: str) -> list[dict[str, Any]]: ...

    def release_quarantine(self, plan_name: str, entry_id: str, *, by: str, at: str | None,
                           reason: str | None = None) -> dict[str, Any] | None: ...

    def staged_results(self, run_id: str, plan_hash: str, wave: int, part: int) -> list[dict[str, Any]] | None: ...


if TYPE_CHECKING:  # mypy checks that the real gateways satisfy the protocols; nothing runs
    from patchrings.clients import AzureClients
    from patchrings.ledger import Ledger

    def _conformance(clients: AzureClients, ledger: Ledger) -> tuple[ArmGateway, LedgerStore]:
        return clients, ledger
