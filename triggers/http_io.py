"""JSON answers and checked request input, shared by the HTTP API and the operator page.

Why a module of its own: the API (``triggers/http_api.py``), the operator page's JSON routes
(``triggers/ui.py``), the compliance route and the shared handlers behind them
(``triggers/rollout_views.py``, ``triggers/decisions.py``) answer in the same JSON and read
requests by the same rules; here those rules are written once, so no route module imports
another's route functions.

* Answers: every API answer is JSON with ``Cache-Control: no-store`` and ``nosniff``; a
  :class:`PatchRingsError` becomes ``{"error": {code, message, field?, details?}}`` with the status
  its class names; anything unexpected is a 500 that names only a reference (the detail goes to
  the log).
* Hostile input gets 4xx, never 500: route ids are checked (strict charset, at most 256
  characters, no leading ``@``) before they reach the durable client's URLs; bodies are bounded
  in size (1 MiB) and nesting depth (64).
* The caller: ``triggers/identity.py`` reads who is asking; :func:`claimed_name` is what an
  unauthenticated request *claimed* to be (recorded on refusals, never trusted).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func

from patchrings import deps
from patchrings.errors import ApprovalForbidden, PatchRingsError, RequestInvalid
from triggers.identity import FALLBACK_HEADER, Caller, caller_from_headers

log = logging.getLogger("patchrings.triggers.http")

# ---------------------------------------------------------------------- JSON answers
# Every API answer: data about rollouts, approvers and machines is never stored by a browser or
# a proxy, and never sniffed as anything but JSON.
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype="application/json",
        headers={**API_HEADERS, **(headers or {})},
    )


def error_response(err: PatchRingsError) -> func.HttpResponse:
    status = err.http_status if 400 <= err.http_status < 600 else 500
    return json_response(err.to_dict(), status)


async def guarded(handler: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run a handler; turn domain errors into their JSON error, anything else into a 500."""
    try:
        return await handler()
    except PatchRingsError as err:
        return error_response(err)
    except Exception:  # an unexpected failure still answers JSON
        return internal_error(log)


def internal_error(logger: logging.Logger) -> func.HttpResponse:
    """A 500 that says nothing about the failure (an SDK error can carry URLs, account names or
    response bodies): the detail goes to the log under a reference the answer names."""
    ref = uuid.uuid4().hex[:12]
    logger.exception("request failed (reference %s)", ref)
    return json_response({"error": {"code": "InternalError", "message": f"internal error (reference {ref}); "
                                    "the app's log has the detail", "details": {"reference": ref}}}, 500)


# ---------------------------------------------------------------------- checked input
MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ID = 256
# Instance ids the API accepts in a route: what the app itself creates (``ro-<hex>``,
# ``mw-pre-...``) and a little more; never ``@`` (entity ids), ``/``, ``?``, ``#``, ``%`` or
# spaces, which would change the durable client's request URL.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$")
_RING = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when JSON ``value`` nests deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_body(req: func.HttpRequest, *, required: bool = False) -> dict[str, Any]:
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestInvalid(f"the body is larger than {MAX_BODY_BYTES} bytes", field="body")
    if not raw.strip():
        if required:
            raise RequestInvalid("a JSON object body is required", field="body")
        return {}
    try:
        body = json.loads(raw)
    except RecursionError as err:
        raise RequestInvalid(f"the body nests deeper than {MAX_DEPTH} levels", field="body") from err
    except ValueError as err:
        raise RequestInvalid(f"the body is not valid JSON: {err}", field="body") from err
    if not isinstance(body, dict):
        raise RequestInvalid("the body must be a JSON object", field="body")
    if depth_exceeds(body, MAX_DEPTH):
        raise RequestInvalid(f"the body nests deeper than {MAX_DEPTH} levels", field="body")
    return body


def route_id(req: func.HttpRequest, name: str = "id") -> str:
    """A route's instance id, checked before it reaches any durable URL (400 naming it)."""
    value = req.route_params.get(name, "")
    if not isinstance(value, str) or not _ID.match(value):
        raise RequestInvalid(
            f"{name} must be 1-{MAX_ID} letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
            field=name,
        )
    return value


def route_ring(req: func.HttpRequest) -> str:
    value = req.route_params.get("ring", "")
    if not isinstance(value, str) or not _RING.match(value):
        raise RequestInvalid("ring must be a ring name (1-63 letters, digits, '-' or '_')", field="ring")
    return value


def optional_text(body: dict[str, Any], name: str, limit: int = 4096) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestInvalid(f"{name} must be a string", field=name)
    if len(value) > limit:
        raise RequestInvalid(f"{name} is longer than {limit} characters", field=name)
    return value


# ---------------------------------------------------------------------- the caller
def caller(req: func.HttpRequest, *, required: bool) -> Caller | None:
    """The authenticated caller (``triggers/identity.py``), or None when not required."""
    try:
        return caller_from_headers(dict(req.headers), deps.settings())
    except ApprovalForbidden:
        if required:
            raise
        return None


def claimed_name(req: func.HttpRequest) -> str | None:
    """What an unauthenticated request *claimed* to be (recorded on refusals, never trusted)."""
    for header in ("X-MS-CLIENT-PRINCIPAL-NAME", FALLBACK_HEADER):
        value = req.headers.get(header)
        if value:
            return str(value)[:256]
    return None
