"""Pure domain of PatchRings: plans, rate control, health, gates, manifests, events.

Nothing in here imports ``azure``, performs I/O (except ``plan.load_plan_file`` and reading the
packaged ``plan.schema.json`` once) or reads a clock: callers pass ``now``. That keeps every
rollout decision deterministic and replay-safe inside Durable orchestrators. Every type that
crosses the durable boundary has ``to_dict()`` / ``from_dict()`` producing JSON-safe dicts.

Modules (import from them directly):

* ``plan``       -- ``load_plan``, ``load_plan_file``, ``validate_plan``, ``Plan`` (``ring``,
  ``ring_for_configuration``, ``next_ring``, ``hash``, ``to_dict``), ``Ring``, ``Members``.
* ``rate``       -- ``Threshold``, ``RateControl``, ``plan_waves``, ``ErrorBudget``.
* ``health``     -- ``HealthPolicy``, ``InstallRules``, ``HttpProbe``, ``HealthSample``,
  ``evaluate_sample``, ``HealthTracker`` / ``HealthState`` (wait → elastic → stay healthy).
* ``results``    -- ``classify_install`` (one VM's installPatches result → ok/failed/inconclusive).
* ``gates``      -- ``vm_verdict``, ``VmVerdict``, ``decide_gate``, ``GateDecision``.
* ``manifest``   -- ``build_manifest``, ``Manifest`` (``hash``, ``install_parameters``,
  ``configuration_patch``, ``is_pinned_in``).
* ``events``     -- ``parse_maintenance_event``, ``MaintenanceEvent``, ``instance_id_for``.
* ``deadlines``  -- ``t40``, ``cancel_deadline``, ``decision_deadline``, ``promotion_target``.
* ``approval``   -- ``ApprovalPolicy``, ``ApprovalRequest``, ``ApprovalDecision``,
  ``check_decision``, ``timeout_decision``, ``principal_from_headers``.
* ``recurrence`` -- maintenance-window occurrences (``parse_window``, ``next_occurrence``).
* ``timeutil``   -- exact ISO-8601 durations and UTC instants.
"""
