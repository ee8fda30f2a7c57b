"""Durable names that cross the orchestration boundary, in one place.

Why: orchestrators call activities and sub-orchestrators by **string** name (a decorated function
object would schedule its Python name, which differs when a decorator renames it), and the
triggers raise events by name. A typo in any of these only shows up at run time, so every name
lives here once and is imported by both sides.
"""

from __future__ import annotations

# Orchestrators (registered by the blueprints in this package).
ROLLOUT = "rollout_orchestrator"
RING_DIRECT = "ring_direct_orchestrator"
WAVE = "wave_orchestrator"
VERIFY = "verify_orchestrator"
GUARD = "guard_orchestrator"
DRY_RUN_RING = "dry_run_ring_orchestrator"
RUN_RESULTS = "run_results_orchestrator"
RING_GATE = "ring_gate_orchestrator"

# Activities (docs/architecture.md "Activity contract").
LOAD_PLAN = "load_plan"
RESOLVE_MEMBERS = "resolve_ring_members"
PLAN_RING_WAVES = "plan_ring_waves"  # a direct ring's members and waves into the ledger, counts back (issue 11)
RING_COVERAGE = "ring_coverage"  # a ring's machines Ring 0 did not cover: counts + the first 100 (issue 11)
READ_WAVE_MEMBERS = "read_wave_members"  # one slice (<= 100 VMs) of a planned wave from the ledger (issue 11)
START_INSTALL = "start_install"
POLL_INSTALL = "poll_install"
START_ASSESS = "start_assess"
POLL_ASSESS = "poll_assess"
CHECK_HEALTH = "check_vm_health"
RETAG = "retag_vms"
SET_ASSIGNMENT = "set_ring_assignment"
PIN_MANIFEST = "pin_manifest"
GET_CONFIGURATION = "get_configuration"
CANCEL_RUN = "cancel_run"
COLLECT_RESULTS = "collect_run_results"
COLLECT_RESULTS_ARG = "collect_run_results_arg"  # Resource Graph (activities/resource_graph.py)
LEDGER_ROLLOUT = "ledger_record_rollout"
LEDGER_RING_RUN = "ledger_record_ring_run"
LEDGER_VM_RESULTS = "ledger_record_vm_results"
LEDGER_APPROVAL = "ledger_record_approval"
LEDGER_EVENT = "ledger_record_event"
LEDGER_READ_GATE = "ledger_read_gate"
LEDGER_CHECK_DECISION = "ledger_check_decision"
LEDGER_RECORD_QUARANTINE = "ledger_record_quarantine"  # patches a failed gate blames (issue 11)
LEDGER_READ_QUARANTINE = "ledger_read_quarantine"  # what the next Ring 0 excludes; releases
NOTIFY = "notify"
MANIFEST_DIFF = "manifest_diff"  # later rings' assessments vs Ring 0's manifest (activities/manifest_diff.py)

# External events raised into a rollout instance.
EV_APPROVAL = "ApprovalDecision"
EV_MAINTENANCE = "MaintenanceEvent"
EV_HALT = "Halt"
EV_RESUME = "Resume"
CHECK_HEALTH_BATCH = "check_vm_health_batch"  # many VMs per call, full or cheap samples (issue 11)
STAGE_RUN_RESULTS = "stage_run_results"  # a run's Resource Graph rows once per ring, per slice (issue 11)
READ_STAGED_RESULTS = "read_staged_results"  # one slice's staged rows from the ledger (issue 11)
