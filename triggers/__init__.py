"""HTTP API and Event Grid trigger blueprints (durable clients) of the PatchRings Function App."""
