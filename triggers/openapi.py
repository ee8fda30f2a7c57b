"""``GET /api/openapi.json``: the OpenAPI 3.1 description of the HTTP API.

Why it is a file and not generated: the document is a contract people and tools read
(``docs/openapi.json`` links to it), so it is written and reviewed as one JSON document,
``triggers/openapi.json``, kept true by tests instead of derived from code: a unit test validates
it (openapi-spec-validator) and checks it names every HTTP route the app registers, and a
schemathesis run against the app on the local platform checks every answer against it
(``tests/functional/test_openapi_schemathesis.py``). It lives next to this module, not under
``docs/`` (``.funcignore`` leaves ``docs/`` out of the deployment package); ``docs/openapi.json``
is a symlink to it, so there is one source.

The route is FUNCTION level like the rest of the API. ``servers`` is set to the origin the
document was fetched from, so a client (``schemathesis.openapi.from_url``, the CLI, Swagger UI)
can use it as is.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()

DOCUMENT = Path(__file__).with_name("openapi.json")


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI document as shipped with the app."""
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def served_document(url: str | None) -> dict[str, Any]:
    """The document with ``servers`` naming the origin of ``url`` (unchanged when it has none)."""
    doc = copy.deepcopy(document())
    parts = urlsplit(url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        doc["servers"] = [{"url": f"{parts.scheme}://{parts.netloc}", "description": "this Function App"}]
    return doc


@bp.function_name(name="openapi_document")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    """The API's OpenAPI 3.1 document."""
    return func.HttpResponse(json.dumps(served_document(req.url), indent=1), status_code=200,
                             mimetype="application/json", headers={"Cache-Control": "no-cache"})
