"""A Function App made of the real orchestrators and triggers plus in-memory fake activities.

Why: it exercises the orchestration logic (replay, timers, races, events) on the real local
host with a fleet the test controls exactly, independent of the ARM simulator and Azurite.
"""

import azure.durable_functions as df
import azure.functions as func

from orchestrators import dry_run, guard, ring_direct, ring_gate, rollout, run_results, verify, wave
from tests.functional.fakeapp import fleet
from triggers import eventgrid, http_api
from triggers import openapi as openapi_document

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for module in (rollout, ring_direct, ring_gate, run_results, wave, verify, guard, dry_run, fleet, eventgrid, http_api):
    app.register_functions(module.bp)
app.register_functions(openapi_document.bp)  # GET /api/openapi.json (every route needs a key)
