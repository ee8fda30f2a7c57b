"""The PatchRings Function App: composes the blueprints, nothing else.

Orchestrators (``orchestrators/``), activities (``activities/``) and the HTTP / Event Grid
triggers (``triggers/``) each export a ``df.Blueprint`` named ``bp``; this module registers them
on the one ``DFApp`` the Functions worker indexes. HTTP functions default to FUNCTION auth.

Before composing, the settings and the rollout plan are validated, so a missing, unknown or
malformed ``PATCHRINGS_*`` setting or an invalid plan stops the app at start (the worker reports
the error naming every offending setting / plan field) instead of failing the first request.
"""

import azure.durable_functions as df
import azure.functions as func

from activities import compute as compute_activities
from activities import health as health_activities
from activities import ledger as ledger_activities
from activities import maintenance as maintenance_activities
from activities import manifest_diff as manifest_diff_activities
from activities import members as members_activities
from activities import notify as notify_activities
from activities import plan as plan_activities
from activities import resource_graph as resource_graph_activities
from activities import run_results_stage as run_results_stage_activities
from activities import tags as tags_activities
from orchestrators import dry_run, guard, ring_direct, ring_gate, rollout, run_results, verify, wave
from patchrings import deps, telemetry
from triggers import compliance, eventgrid, http_api, ui
from triggers import openapi as openapi_document

telemetry.configure()  # structured logs; Application Insights when a connection string is set
# A fresh start: forget anything built before, then validate now: SettingsInvalid / PlanInvalid
# name every bad PATCHRINGS_* setting or plan field, and the app does not start.
deps.load()

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint_module in (
    rollout,
    ring_direct,
    ring_gate,
    run_results,
    wave,
    verify,
    guard,
    dry_run,
    compute_activities,
    members_activities,
    health_activities,
    tags_activities,
    maintenance_activities,
    ledger_activities,
    plan_activities,
    resource_graph_activities,
    notify_activities,
    manifest_diff_activities,
    run_results_stage_activities,
    eventgrid,
    http_api,
    openapi_document,
    ui,
    compliance,
):
    app.register_functions(blueprint_module.bp)
