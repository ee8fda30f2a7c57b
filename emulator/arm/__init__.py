"""The ARM fleet simulator: Compute, Maintenance, Tags and maintenance events, with faults.

Entry points: :class:`emulator.arm.server.ArmSimulator` (in process, on the shared clock),
``python -m emulator arm --scenario FILE`` (:mod:`emulator.arm.cli`), and
:func:`emulator.arm.routes.operation_action` (the RBAC action of a request). The scenario format
is documented in ``SCENARIOS.md`` next to this file.
"""
