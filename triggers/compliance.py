"""``GET /api/compliance`` (issue 12): missing Critical/Security patches per ring. Being built."""

import azure.durable_functions as df

bp = df.Blueprint()
