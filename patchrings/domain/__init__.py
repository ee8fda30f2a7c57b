"""Pure domain of PatchRings: plans, rate control, health, gates, manifests, events.

Nothing in here imports ``azure``, performs I/O (except ``plan.load_plan_file``)
or reads a clock: callers pass ``now``. That keeps every rollout decision
deterministic and replay-safe inside Durable orchestrators.
"""
