"""The cores' collaborators (patchrings/ports.py): the real gateways and the test fakes have
every method each protocol names, with the same parameters (mypy checks the real ones too:
``patchrings.ports._conformance``)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from patchrings import ports
from patchrings.clients import AzureClients
from patchrings.ledger import Ledger
from tests.unit.app.fakes import FakeLedger

pytestmark = pytest.mark.unit

GATEWAYS = [ports.ComputeGateway, ports.MaintenanceGateway, ports.ResourceGraphGateway, ports.TagsGateway,
            ports.RunGateway, ports.MachineGateway, ports.FleetGateway, ports.ArmGateway]
LEDGERS = [ports.InstallLedger, ports.LedgerStore]


def members(protocol: type) -> dict[str, Any]:
    """The methods a protocol names (its own and its bases')."""
    out: dict[str, Any] = {}
    for klass in reversed(protocol.__mro__):
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        out.update({name: value for name, value in vars(klass).items()
                    if callable(value) and not name.startswith("_")})
    return out


def parameters(fn: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("protocol", GATEWAYS, ids=lambda p: p.__name__)
def test_azure_clients_satisfy_every_gateway(protocol: type) -> None:
    wanted = members(protocol)
    assert wanted
    for name, method in wanted.items():
        assert parameters(getattr(AzureClients, name)) == parameters(method), name


@pytest.mark.parametrize("implementation", [Ledger, FakeLedger], ids=lambda c: c.__name__)
@pytest.mark.parametrize("protocol", LEDGERS, ids=lambda p: p.__name__)
def test_the_ledger_and_its_fake_satisfy_the_ledger_protocols(protocol: type, implementation: type) -> None:
    for name, method in members(protocol).items():
        assert parameters(getattr(implementation, name)) == parameters(method), (implementation.__name__, name)


def test_the_arm_gateway_is_everything_the_activities_reach() -> None:
    assert set(members(ports.ArmGateway)) == {"compute", "hybrid_compute", "maintenance", "send_arm_request",
                                              "resource_graph", "resources"}
