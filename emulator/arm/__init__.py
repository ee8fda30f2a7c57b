"""The ARM fleet simulator: Compute, HybridCompute (Arc), Maintenance, Tags, Resource Graph and
maintenance events, with faults.

Entry points: :class:`emulator.arm.server.ArmSimulator` (in process, on the shared clock),
``python -m emulator arm --scenario FILE`` (:mod:`emulator.arm.cli`), and
:func:`emulator.arm.routes.operation_action` (the RBAC action of a request). The scenario format
is documented in ``SCENARIOS.md`` next to this file. Layout (moto-style): the server wires thin
handlers per provider, each above its backend in :mod:`emulator.arm.backends`; see that package.
"""
