"""The operator page (issue 9): served by the Function App itself under ``/api/ui/``.

What it is: a small static page (``triggers/ui_assets/``: one HTML shell, one CSS file, one
vanilla-JS file; no framework, no build step, nothing fetched from the internet) over JSON routes
that call the HTTP API's own handlers (``triggers/rollout_views.py`` for the list and status
documents, ``triggers/decisions.py`` for decisions, halts and resumes; ``triggers/http_api.py``
routes to the same functions). Why not server-rendered htmx:
the JSON API is already the one source of truth (the CLI and the demo read the same shapes), a
second rendering of the status in Python would drift from it, and a static page keeps the
Content-Security-Policy strict (``script-src 'self'``, no inline script or style, no ``eval``).

Routes (all ``auth_level=ANONYMOUS`` at the Functions level; *this module* decides who gets in):

* ``GET ui`` and ``GET ui/rollouts/{id}``: the HTML shell (the script picks the view from the path);
* ``GET ui/assets/{name}``: ``app.js`` / ``app.css`` / ``favicon.svg`` with their content types,
  ``ETag`` and ``Cache-Control: private, max-age=31536000, immutable`` when asked for the
  version the shell names (``?v=<content hash>``), ``no-cache`` otherwise;
* ``GET ui/me``: who you are, where that came from, and the rings of the deployed plan you approve;
* ``GET ui/api/rollouts`` and ``GET ui/api/rollouts/{id}``: the API's list and status documents,
  the status with a ``viewer`` block (may you approve / reject the pending ring, halt, resume, and
  why not; ``mayRelease`` for a quarantine decision) and ``pagePath``; when the rollout waits on
  a quarantine decision, or honoured, decided on, released or recorded quarantine entries (issue
  11), a ``quarantine`` block (:func:`quarantine_view`: each entry's patches, why, from which
  rollout and ring, when, released by whom; ``decision``: the ids the pending decision may
  release), and each decision line carries the ledger row's ``kind`` / ``choice`` /
  ``releaseQuarantine``;
* ``POST ui/api/rollouts/{id}/rings/{ring}/approve|reject`` (``{"manifestHash", "comment"?,
  "releaseQuarantine"?}``: the ticked entries of a quarantine decision, as the CLI's
  ``--release-quarantine`` sends them),
  ``POST ui/api/rollouts/{id}/halt`` and ``.../resume`` (``{"reason"?}``): handed to the API's
  handlers (``triggers/decisions.py``) unchanged, so identity, approver, self-approval,
  stale-manifest (409) and ledger rules are exactly the API's. The page sends the manifest hash
  it *shows* (captured when the approval form was drawn), so a manifest that changed under the
  reader is refused, never approved blind.

Who gets in (``access``), decided on every request, fail closed:

1. **App Service authentication on** (``WEBSITE_AUTH_ENABLED=True``, the Azure set-up in
   ``infra/``): a person signs in with Entra ID; App Service strips client-sent
   ``X-MS-CLIENT-PRINCIPAL*`` headers and injects its own, which ``triggers/identity.py`` reads
   (oid/tid/UPN). No function key is ever handed to a browser: the UI routes are anonymous at the
   Functions level because the platform in front of them already authenticated the person.
   A request without a principal (an app configured to let unauthenticated requests through)
   is refused: pages redirect to ``/.auth/login/aad?post_login_redirect_uri=<page>``, JSON gets
   403 ``ApprovalForbidden`` naming ``X-MS-CLIENT-PRINCIPAL``. Reading needs a signed-in person;
   deciding needs the ring's approver (the API's rule).
2. **Local platform** (``PATCHRINGS_APPROVER_HEADER_FALLBACK=true``, authentication off, not
   hosted in Azure: ``Settings.header_fallback_allowed``): the page and its assets are served;
   the JSON routes need a name in ``X-PatchRings-Approver``, which the page sends from
   ``?as=<name>`` (kept in the tab's ``sessionStorage``) or from its "act as" form, and labels as
   *not authenticated*. The local host can also emulate App Service authentication exactly:
   start it with ``WEBSITE_AUTH_ENABLED=True`` and have the client send ``X-MS-CLIENT-PRINCIPAL``
   as App Service would (the browser test does this with Playwright's extra HTTP headers).
3. **Anything else** (authentication off in Azure, or locally without the fallback): every UI
   route answers 403 (the HTML says why), assets included. Nothing is readable anonymously.

In Azure (``infra/modules/app-auth.bicep``: ``requireAuthentication``, ``Return401``) a browser that
has not signed in gets App Service's 401 before the app sees it, so the link to hand people is
``https://<app>/.auth/login/aad?post_login_redirect_uri=/api/ui/rollouts/<id>`` (App Service's
login endpoint; after sign-in its session cookie carries every later request, and the app never
sees a token). For a browser session to name a plan approver written as a UPN, the app
registration must issue the ``upn`` optional claim in ID tokens (the v2.0 issuer leaves it out;
otherwise list approvers by object id or ``tid/oid``), and the authorization policy must admit
browser sessions of the app's own registration, not only CLI access tokens.

CSRF: App Service's session cookie travels with cross-site requests, so every state-changing
route requires (a) the custom header ``X-PatchRings-CSRF: 1`` (a cross-origin page cannot send it
without a CORS preflight, which this app never grants; an HTML form cannot send it at all),
(b) a JSON content type, (c) ``Origin``, when sent, equal to the request's own origin and (d)
``Sec-Fetch-Site``, when sent, ``same-origin``. Refusals are 403 ``ApprovalForbidden`` naming the
header, before anything is recorded or raised.

Every answer carries ``Content-Security-Policy`` (``default-src 'none'``; scripts, styles,
images and ``fetch`` only from this origin; no framing; no ``<base>``; forms only to self),
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``, ``X-Frame-Options: DENY``
and ``Cross-Origin-Opener-Policy: same-origin``; HTML and JSON are ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import azure.durable_functions as df
import azure.functions as func

from patchrings import deps, notifications
from patchrings.domain.approval import RELEASE_QUARANTINE
from patchrings.errors import ApprovalForbidden, NotFound, PatchRingsError
from triggers import decisions
from triggers.http_io import internal_error, route_id
from triggers.identity import FALLBACK_HEADER, PRINCIPAL_HEADER, Caller, caller_from_headers
from triggers.rollout_views import list_view, status_view

bp = df.Blueprint()
log = logging.getLogger("patchrings.triggers.ui")

ASSETS = Path(__file__).with_name("ui_assets")
SHELL = "index.html"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}
_BASE_PATH = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*/ui$", re.IGNORECASE)
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\.(js|css|svg)$")

CSRF_HEADER = "X-PatchRings-CSRF"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
NO_STORE = {"Cache-Control": "no-store"}
IMMUTABLE = "private, max-age=31536000, immutable"

MODE_AUTH = "app-service-authentication"
MODE_LOCAL = "local-header"
MODE_OFF = "off"


# ---------------------------------------------------------------------- responses
def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**SECURITY_HEADERS, **(extra or {})}


def json_response(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status,
                             headers=_headers({**NO_STORE, "Content-Type": "application/json; charset=utf-8"}))


def error_response(err: PatchRingsError) -> func.HttpResponse:
    status = err.http_status if 400 <= err.http_status < 600 else 500
    return json_response(err.to_dict(), status)


def secure(resp: func.HttpResponse) -> func.HttpResponse:
    """An answer built by the API's plumbing (``http_io.internal_error``) with the page's security
    and caching headers added."""
    headers = {k: v for k, v in resp.headers.items()}
    headers.update(_headers(NO_STORE))
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json; charset=utf-8"
    return func.HttpResponse(resp.get_body(), status_code=resp.status_code, headers=headers)


def _html(text: str, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(text, status_code=status,
                             headers=_headers({**NO_STORE, "Content-Type": CONTENT_TYPES[".html"]}))


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def _refusal_page(title: str, message: str, status: int = 403) -> func.HttpResponse:
    return _html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_escape(title)} - PatchRings</title></head><body><main>"
        f"<h1>{_escape(title)}</h1><p>{_escape(message)}</p></main></body></html>",
        status,
    )


# ---------------------------------------------------------------------- assets
@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # first 16 hex of the SHA-256 of the body


@lru_cache(maxsize=16)
def asset(name: str) -> Asset | None:
    """A file of ``ui_assets`` (None when the name is not a servable asset)."""
    if name != SHELL and not _ASSET_NAME.match(name):
        return None
    path = ASSETS / name
    if not path.is_file():
        return None
    body = path.read_bytes()
    return Asset(body, CONTENT_TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:16])


def ui_base(url: str) -> str:
    """The path the page lives under (``/api/ui``; the route prefix may differ), from a request URL."""
    path = urlsplit(url).path
    match = re.match(r"^(.*?/ui)(?:/|$)", path, re.IGNORECASE)
    base = match.group(1) if match else "/api/ui"
    # Only plain path segments: "//host/..." or odd characters would make the shell load its
    # script and data from another host and the sign-in/out links leave the app.
    return base if _BASE_PATH.match(base) else "/api/ui"


def shell(url: str) -> str:
    """The HTML shell with its base path and versioned asset URLs filled in."""
    doc = asset(SHELL)
    assert doc is not None, "triggers/ui_assets/index.html is missing"
    base = ui_base(url)
    text = doc.body.decode("utf-8").replace("{{BASE}}", _escape(base))
    for name in ("app.js", "app.css", "favicon.svg"):
        item = asset(name)
        version = item.version if item else "0"
        text = text.replace("{{" + name + "}}", f"{_escape(base)}/assets/{name}?v={version}")
    return text


def serve_asset(name: str, version: str | None, if_none_match: str | None) -> func.HttpResponse:
    item = asset(name)
    if item is None or name == SHELL:
        return error_response(NotFound(f"no asset {name[:64]!r}", field="name"))
    etag = f'"{item.version}"'
    cache = IMMUTABLE if version == item.version else "no-cache"
    headers = _headers({"Content-Type": item.content_type, "ETag": etag, "Cache-Control": cache})
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return func.HttpResponse(status_code=304, headers=headers)
    return func.HttpResponse(item.body, status_code=200, headers=headers)


# ---------------------------------------------------------------------- who gets in
def mode() -> str:
    settings = deps.settings()
    if settings.platform_auth_enabled:
        return MODE_AUTH
    if settings.header_fallback_allowed:
        return MODE_LOCAL
    return MODE_OFF


def login_path(page: str) -> str:
    return notifications.login_path(page)


def identify(req: func.HttpRequest) -> Caller:
    """The caller of a UI route, or :class:`ApprovalForbidden` (fail closed in every mode)."""
    current = mode()
    if current == MODE_OFF:
        raise ApprovalForbidden(
            "the operator page needs App Service authentication (WEBSITE_AUTH_ENABLED=True); "
            "it is off, so nothing is served", field=PRINCIPAL_HEADER)
    try:
        return caller_from_headers(dict(req.headers), deps.settings())
    except ApprovalForbidden as err:
        if current == MODE_LOCAL:
            raise ApprovalForbidden(
                f"local platform: name yourself with ?as=<name> on the page ({FALLBACK_HEADER})",
                field=FALLBACK_HEADER) from err
        raise ApprovalForbidden(
            "sign in first: " + err.message, field=PRINCIPAL_HEADER,
            details={"signIn": login_path(ui_base(req.url))}) from err


def page_gate(req: func.HttpRequest) -> func.HttpResponse | None:
    """None when the shell / an asset may be served; otherwise the refusal (or the sign-in redirect)."""
    current = mode()
    if current == MODE_LOCAL:
        return None
    if current == MODE_OFF:
        return _refusal_page(
            "App Service authentication is off",
            "The PatchRings operator page is served only to people signed in through App Service "
            "authentication (Entra ID). Turn it on for this app (see docs/deploy.md); the JSON API "
            "at /api/rollouts stays available to function-key holders.")
    try:
        caller_from_headers(dict(req.headers), deps.settings())
    except ApprovalForbidden:
        path = urlsplit(req.url).path or ui_base(req.url)
        return func.HttpResponse(status_code=302, headers=_headers({**NO_STORE, "Location": login_path(path)}))
    return None


def check_csrf(req: func.HttpRequest) -> None:
    """Refuse a state-changing request that a page of another origin could have made."""
    headers = {str(k).lower(): str(v) for k, v in req.headers.items()}
    if headers.get(CSRF_HEADER.lower()) != "1":
        raise ApprovalForbidden(f"{CSRF_HEADER}: 1 is required on state-changing requests from the page",
                                field=CSRF_HEADER)
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApprovalForbidden("the body must be sent as application/json", field="Content-Type")
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() != "same-origin":
        raise ApprovalForbidden(f"cross-origin request refused (Sec-Fetch-Site: {site[:40]})", field="Sec-Fetch-Site")
    origin = headers.get("origin")
    if origin is not None:
        allowed = {_origin_of(req.url)}
        for name in ("host", "x-forwarded-host", "x-original-host"):
            if headers.get(name):
                host = headers[name].split(",")[0].strip().lower()
                allowed |= {f"https://{host}", f"http://{host}"}
        if origin.strip().lower() not in allowed:
            raise ApprovalForbidden(f"cross-origin request refused (Origin: {origin[:100]})", field="Origin")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


# ---------------------------------------------------------------------- what the viewer may do
def viewer(who: Caller, doc: dict[str, Any]) -> dict[str, Any]:
    """What the page tells the reader about themselves for one rollout (the API decides anyway)."""
    raw = doc.get("status")
    status: dict[str, Any] = raw if isinstance(raw, dict) else {}
    waiting = doc.get("waitingFor") or status.get("waitingFor") or {}
    if not isinstance(waiting, dict):
        waiting = {}
    state = str(doc.get("state") or status.get("state") or "")
    active = str(doc.get("runtimeStatus") or "") in ("Running", "Pending", "ContinuedAsNew")
    initiator = status.get("initiator")
    out: dict[str, Any] = {**who.to_dict(), "mode": mode(), "mayApprove": False, "mayReject": False,
                           "decideReason": None, "mayHalt": False, "haltReason": None, "mayResume": False,
                           "resumeReason": None}
    if waiting.get("what") == "approval":
        approvers = [str(a) for a in waiting.get("approvers") or []]
        entry = who.matching_entry(approvers)
        if entry is None:
            out["decideReason"] = (f"you are not an approver of {waiting.get('ring')} "
                                   f"(approvers: {', '.join(approvers) or 'nobody'})")
        else:
            out["approverEntry"] = entry
            out["mayReject"] = True
            if initiator and who.matches(str(initiator)):
                out["decideReason"] = "you started this rollout: you may reject it, another approver must approve it"
            else:
                out["mayApprove"] = True
        if waiting.get("kind") == "quarantine":
            # a quarantine decision (issue 11): releasing entries goes with approve (the API's rule)
            out["decisionKind"] = "quarantine"
            out["mayRelease"] = out["mayApprove"]
    else:
        out["decideReason"] = "no approval is pending"
    requested = _dict(_dict(doc.get("ledger")).get("rollout"))
    if active and state != "halted" and requested.get("haltRequested") is True:
        # the API answers a second halt 409 until the rollout takes the first (or a resume)
        by = requested.get("haltedBy")
        out["haltReason"] = ("a halt is already requested" + (f" by {by}" if by else "")
                             + "; the rollout takes it when it next acts")
    elif active and state != "halted":
        out["mayHalt"] = True
    if active and state == "halted":
        ring = waiting.get("ring") or status.get("currentRing") or doc.get("currentRing")
        approvers = resume_approvers(ring)
        if not approvers or who.matching_entry(approvers):
            out["mayResume"] = True
        else:
            out["resumeReason"] = f"only an approver of {ring} may resume ({', '.join(approvers)})"
    return out


# ---------------------------------------------------------------------- the quarantine (issue 11)
# What the page shows of a quarantine entry (the ledger row's other columns stay in the ledger).
QUARANTINE_FIELDS = ("id", "rolloutId", "ring", "kbs", "packages", "source", "failedVms", "reason", "by", "at",
                     "manifestHash", "released", "releasedBy", "releasedAt", "releaseReason")
MAX_QUARANTINE_SHOWN = 50


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ids(value: Any) -> list[str]:
    return [str(v) for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def quarantine_ids(rollout_id: str, body: dict[str, Any]) -> tuple[list[str], set[str]]:
    """The quarantine entries a rollout's page is about: the ids its pending quarantine decision
    names (``waitingFor.quarantine.entries``; the checkboxes), and every id the rollout touched
    (honoured at its start, decided on, released)."""
    status = _dict(body.get("status"))
    waiting = _dict(body.get("waitingFor") or status.get("waitingFor"))
    deciding = _ids(_dict(waiting.get("quarantine")).get("entries")) if waiting.get("kind") == "quarantine" else []
    ledger = _dict(body.get("ledger"))
    touched = set(deciding) | set(_ids(_dict(_dict(ledger.get("rollout")).get("quarantine")).get("entries")))
    for raw in ledger.get("approvals") or []:
        row = _dict(raw)
        touched |= set(_ids(row.get("quarantineEntries"))) | set(_ids(row.get(RELEASE_QUARANTINE)))
    for raw in status.get("approvals") or []:
        touched |= set(_ids(_dict(raw).get(RELEASE_QUARANTINE)))
    return deciding, touched


def quarantine_view(rollout_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The quarantine entries of the rollout's plan that its page shows (issue 11), read from the
    ledger's Quarantine table: those its pending decision is about (``decision``: the ids the
    page offers to release), those it honoured, decided on or released, and those its own failed
    gate recorded; each with its patches, why, from which rollout and ring, when, and whether
    (by whom, when) it was released. None when the rollout has nothing to do with a quarantine."""
    deciding, touched = quarantine_ids(rollout_id, body)
    status = _dict(body.get("status"))
    failed_gate = any(_dict(_dict(r).get("gate")).get("outcome") == "fail"
                      for r in (body.get("rings") or status.get("rings") or []))
    if not deciding and not touched and not failed_gate:
        return None  # no quarantine to show, and none this rollout could have recorded: no read
    plan_name = (_dict(_dict(body.get("ledger")).get("rollout")).get("planName")
                 or _dict(status.get("plan")).get("name"))
    if not plan_name:
        return ({"decision": deciding, "entries": [], "error": "the rollout's plan is not known yet"}
                if deciding else None)
    try:
        rows = deps.ledger().quarantines(str(plan_name))
    except Exception as err:  # the status is still useful; the page says the details are missing
        log.warning("could not read the quarantine of plan %s: %s", plan_name, type(err).__name__)
        return ({"planName": plan_name, "decision": deciding, "entries": [],
                 "error": f"the ledger's quarantine could not be read ({type(err).__name__})"}
                if deciding or touched else None)
    mine = [r for r in rows if str(r.get("id")) in touched or r.get("rolloutId") == rollout_id]
    if not mine and not deciding:
        return None
    # the entries of the pending decision first (in its order), then the others, newest first
    order = {entry: i for i, entry in enumerate(deciding)}
    mine.sort(key=lambda r: str(r.get("at") or ""), reverse=True)
    mine.sort(key=lambda r: order.get(str(r.get("id")), len(order)))
    entries = [{k: r[k] for k in QUARANTINE_FIELDS if r.get(k) is not None} for r in mine[:MAX_QUARANTINE_SHOWN]]
    return {"planName": plan_name, "decision": deciding, "entries": entries,
            **({"entriesOmitted": len(mine) - MAX_QUARANTINE_SHOWN} if len(mine) > MAX_QUARANTINE_SHOWN else {})}


def with_releases(body: dict[str, Any]) -> None:
    """Each decision line (``approvals``, the API's flat view) with what the ledger's row of the
    same decision says about a quarantine: ``kind``, ``choice`` and the ``releaseQuarantine`` ids."""
    rows = {str(_dict(r)["decisionId"]): _dict(r) for r in _dict(body.get("ledger")).get("approvals") or []
            if _dict(r).get("decisionId")}  # a row without an id matches no line
    for item in body.get("approvals") or []:
        row = rows.get(str(_dict(item).get("id"))) if _dict(item).get("id") else None
        if not row:
            continue
        for key in ("kind", "choice", RELEASE_QUARANTINE):
            if row.get(key) is not None and key not in item:
                item[key] = row[key]


def resume_approvers(ring: Any) -> list[str]:
    """Who may resume at ``ring``: the API's rule (:func:`triggers.decisions.resume_approvers`: that
    ring's approvers, else the next manual ring's); ``[]`` when the deployed plan cannot be read."""
    try:
        return decisions.resume_approvers(ring)
    except PatchRingsError:
        return []


def approver_of(who: Caller) -> list[str]:
    """The rings of the deployed plan that name this caller as an approver."""
    try:
        plan = deps.plan()
    except PatchRingsError:
        return []
    return [r.name for r in plan.rings if r.approval.required and who.matching_entry(r.approval.approvers)]


def me(req: func.HttpRequest) -> dict[str, Any]:
    who = identify(req)
    current = mode()
    body: dict[str, Any] = {
        **who.to_dict(),
        "mode": current,
        "authenticated": current == MODE_AUTH,
        "approverOf": approver_of(who),
    }
    if current == MODE_AUTH:
        body["signOut"] = "/.auth/logout?post_logout_redirect_uri=" + quote(ui_base(req.url), safe="/")
    else:
        body["note"] = (f"local platform: the name comes from {FALLBACK_HEADER} and is not authenticated; "
                        "in Azure the page uses App Service authentication (Entra ID)")
    return body


async def ui_guarded(run: Any) -> func.HttpResponse:
    try:
        return await run()  # type: ignore[no-any-return]
    except PatchRingsError as err:
        return error_response(err)
    except Exception:
        return secure(internal_error(log))


# ---------------------------------------------------------------------- routes: pages and assets
@bp.function_name(name="ui_home")
@bp.route(route="ui", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ui_home(req: func.HttpRequest) -> func.HttpResponse:
    """The rollout list page."""
    return page_gate(req) or _html(shell(req.url))


@bp.function_name(name="ui_rollout_page")
@bp.route(route="ui/rollouts/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ui_rollout_page(req: func.HttpRequest) -> func.HttpResponse:
    """One rollout's page (the script loads its data from ``ui/api/rollouts/{id}``); an id the API
    would refuse gets a 400 page naming ``id`` (after the sign-in gate, so it reveals nothing)."""
    refused = page_gate(req)
    if refused is not None:
        return refused
    try:
        route_id(req)
    except PatchRingsError as err:
        return _refusal_page("Not a rollout id", f"{err.field}: {err.message}", 400)
    return _html(shell(req.url))


@bp.function_name(name="ui_asset")
@bp.route(route="ui/assets/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ui_asset(req: func.HttpRequest) -> func.HttpResponse:
    """The page's script, style sheet and icon."""
    refused = page_gate(req)
    if refused is not None:
        return refused
    return serve_asset(str(req.route_params.get("name", "")), req.params.get("v"), req.headers.get("If-None-Match"))


# ---------------------------------------------------------------------- routes: JSON
@bp.function_name(name="ui_me")
@bp.route(route="ui/me", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def ui_me(req: func.HttpRequest) -> func.HttpResponse:
    """Who you are, where that came from, and which rings you approve."""

    async def run() -> func.HttpResponse:
        return json_response(me(req))

    return await ui_guarded(run)


@bp.function_name(name="ui_rollouts")
@bp.route(route="ui/api/rollouts", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def ui_rollouts(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """``GET /api/rollouts`` for a signed-in person."""

    async def run() -> func.HttpResponse:
        identify(req)
        body = await list_view(req, client)
        base = ui_base(req.url)
        for item in body.get("rollouts") or []:
            if isinstance(item, dict) and item.get("id"):
                item.setdefault("pagePath", f"{base}/rollouts/{item['id']}")
        return json_response(body)

    return await ui_guarded(run)


@bp.function_name(name="ui_rollout")
@bp.route(route="ui/api/rollouts/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def ui_rollout(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """``GET /api/rollouts/{id}`` plus ``viewer`` (what you may do) for a signed-in person."""

    async def run() -> func.HttpResponse:
        who = identify(req)
        rollout_id = route_id(req)
        body = await status_view(req, rollout_id, client)
        body["viewer"] = viewer(who, body)
        quarantine = await asyncio.to_thread(quarantine_view, rollout_id, body)
        if quarantine is not None:
            body["quarantine"] = quarantine
        with_releases(body)
        body.setdefault("pagePath", f"{ui_base(req.url)}/rollouts/{rollout_id}")
        return json_response(body)

    return await ui_guarded(run)


@bp.function_name(name="ui_decide")
@bp.route(route="ui/api/rollouts/{id}/rings/{ring}/{decision}", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def ui_decide(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Approve or reject from the page: the API's own handler, after the CSRF and sign-in checks."""

    async def run() -> func.HttpResponse:
        check_csrf(req)
        identify(req)
        return json_response(await decisions.decide(req, client), 202)

    return await ui_guarded(run)


@bp.function_name(name="ui_halt")
@bp.route(route="ui/api/rollouts/{id}/halt", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def ui_halt(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Halt from the page (the API's handler)."""

    async def run() -> func.HttpResponse:
        check_csrf(req)
        identify(req)
        return json_response(await decisions.halt_or_resume(req, client, halt=True), 202)

    return await ui_guarded(run)


@bp.function_name(name="ui_resume")
@bp.route(route="ui/api/rollouts/{id}/resume", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def ui_resume(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Resume from the page (the API's handler)."""

    async def run() -> func.HttpResponse:
        check_csrf(req)
        identify(req)
        return json_response(await decisions.halt_or_resume(req, client, halt=False), 202)

    return await ui_guarded(run)
