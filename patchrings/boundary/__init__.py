"""The typed durable boundary: one dataclass per activity / sub-orchestration input and output.

Why: orchestrators and activities exchange JSON through the Durable history; typing each side
with a dataclass (as Temporal's samples do) makes the contract readable and checked by mypy,
while :mod:`patchrings.boundary.codec` is the *one* place that turns those dataclasses into the
JSON the history stores and back. The JSON shapes are the activity contract in
docs/architecture.md; field names are the snake_case form of the JSON's camelCase keys.

Modules: ``codec`` (serialisation), ``activities`` (activity inputs/outputs),
``orchestrations`` (sub-orchestration inputs/outputs). Pure Python: no ``azure`` imports, so
orchestrators may import this package.
"""
