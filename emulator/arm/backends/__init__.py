"""The simulator's provider backends (moto-style): state and lifecycle per ARM provider, below the
thin HTTP handlers.

Layers, each importing only the ones below it (``tests/emulator/arm/test_import_direction.py``):

1. :mod:`emulator.arm.server` -- the HTTP app: the request pipeline (auth, RBAC, api-versions,
   throttling, fault injection, recording) and the wiring; :mod:`emulator.arm.cli` starts it;
2. handlers -- :mod:`emulator.arm.compute`, :mod:`~emulator.arm.hybridcompute`,
   :mod:`~emulator.arm.maintenance`, :mod:`~emulator.arm.resourcegraph`, :mod:`~emulator.arm.tags`,
   :mod:`~emulator.arm.control` (``/_sim``): a :class:`~emulator.arm.calls.Call` in, a
   :class:`~emulator.arm.calls.Reply` out; each receives its backend, never the server;
3. backends -- this package: :class:`Core` (scenario, clock, fleet, faults, events, ids, background
   tasks) and one backend per provider, with methods named after the SDK operations
   (``ComputeBackend.begin_install_patches``, ``MaintenanceBackend.cancel_run``, ...);
4. state and models -- :mod:`~emulator.arm.fleet`, :mod:`~emulator.arm.patching`,
   :mod:`~emulator.arm.schedule` with its own :mod:`~emulator.arm.recurrence`,
   :mod:`~emulator.arm.events`, :mod:`~emulator.arm.faults`, :mod:`~emulator.arm.kql`.

The simulator never imports the app (``patchrings``, ``activities``, ``orchestrators``, ``triggers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from emulator.arm.backends.compute import ComputeBackend
from emulator.arm.backends.control import ControlBackend
from emulator.arm.backends.core import Core
from emulator.arm.backends.hybridcompute import HybridComputeBackend
from emulator.arm.backends.maintenance import MaintenanceBackend
from emulator.arm.backends.resourcegraph import ResourceGraphBackend
from emulator.arm.backends.tags import TagsBackend
from emulator.arm.recorder import Recorder

__all__ = [
    "Backends",
    "ComputeBackend",
    "ControlBackend",
    "Core",
    "HasBackends",
    "HybridComputeBackend",
    "MaintenanceBackend",
    "ResourceGraphBackend",
    "TagsBackend",
]


@dataclass
class Backends:
    """Every backend of one simulator, built on one :class:`Core` (see :meth:`build`)."""

    core: Core
    compute: ComputeBackend
    hybridcompute: HybridComputeBackend
    maintenance: MaintenanceBackend
    resourcegraph: ResourceGraphBackend
    tags: TagsBackend
    control: ControlBackend

    @classmethod
    def build(cls, core: Core, recorder: Recorder) -> Backends:
        hybridcompute = HybridComputeBackend(core)  # Arc faults at start, right after the fleet's
        compute = ComputeBackend(core)
        maintenance = MaintenanceBackend(core)
        resourcegraph = ResourceGraphBackend(
            core, compute=compute, hybridcompute=hybridcompute, maintenance=maintenance
        )
        return cls(
            core=core,
            compute=compute,
            hybridcompute=hybridcompute,
            maintenance=maintenance,
            resourcegraph=resourcegraph,
            tags=TagsBackend(core),
            control=ControlBackend(core, maintenance=maintenance, recorder=recorder),
        )


class HasBackends(Protocol):
    """Anything that carries a simulator's backends (the :class:`~emulator.arm.server.ArmSimulator`)."""

    @property
    def backends(self) -> Backends: ...
