"""Adversarial review of the second-wave surfaces (issues 9 and 13): the operator page's routes,
its login link, its assets, its script's rendering rules, ``releaseQuarantine`` on POST
/api/rollouts, GET /api/compliance's parameters and the 500 answer.

Each test is one hostile caller's attempt and the refusal it must get (4xx JSON naming the
field, a local-only redirect, safe rendering). No platform: the triggers' own handlers with a
durable client that fails the test if it is touched when it must not be. The page in a real
browser with hostile data: tests/functional/test_security_surfaces.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from patchrings import deps, notifications
from patchrings.domain.plan import load_plan_file
from patchrings.settings import Settings
from triggers import compliance, http_api, http_io, ui

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
HOST = "http://127.0.0.1:7071"
OID = "0b7d6c4e-1111-4222-8333-944455556666"
AUTH_ON = Settings(platform_auth_enabled=True)
LOCAL = Settings(approver_header_fallback=True)
OFF = Settings()
IN_AZURE_WITH_FALLBACK = Settings(approver_header_fallback=True, hosted_in_azure=True)
CSRF_OK = {"X-PatchRings-CSRF": "1", "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin",
           "Origin": HOST}


def principal(upn: str) -> str:
    doc = {"auth_typ": "aad", "claims": [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": OID},
        {"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "val": upn}]}
    return base64.b64encode(json.dumps(doc).encode()).decode()


class Untouchable:
    """A durable client that must not be used: any attribute read fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the durable client was used ({name}) by a request that must be refused first")


class Ledger:
    """Records refusals (the API appends every refused decision to the Approvals table)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def record_approval(self, rollout_id: str, decision_id: str, fields: dict[str, Any]) -> None:
        self.rows.append({"rolloutId": rollout_id, "id": decision_id, **fields})


@pytest.fixture(autouse=True)
def demo_plan() -> Iterator[Ledger]:
    ledger = Ledger()
    deps.reset()
    deps.override(plan=load_plan_file(REPO / "demo" / "plan.json"), settings=LOCAL, ledger=ledger)
    yield ledger
    deps.reset()


def request(path: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: Any = None,
            raw: bytes | None = None, params: dict[str, str] | None = None,
            route: dict[str, str] | None = None, url: str | None = None) -> func.HttpRequest:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return func.HttpRequest(method=method, url=url or f"{HOST}{path}", headers=headers or {},
                            params=params or {}, route_params=route or {}, body=data)


def call(function: Any, req: func.HttpRequest, client: Any = None) -> func.HttpResponse:
    user = function._function.get_user_function()
    handler = getattr(user, "__wrapped__", user)
    result = handler(req, client) if "client" in handler.__code__.co_varnames else handler(req)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    assert isinstance(result, func.HttpResponse)
    return result


def error(resp: func.HttpResponse) -> dict[str, Any]:
    doc = json.loads(resp.get_body())
    assert isinstance(doc.get("error"), dict), doc
    return doc["error"]  # type: ignore[no-any-return]


def assert_page_headers(resp: func.HttpResponse, *, cacheable: bool = False) -> None:
    h = {k.lower(): v for k, v in resp.headers.items()}
    csp = h.get("content-security-policy", "")
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'",
                      "form-action 'self'"):
        assert directive in csp, (directive, csp)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert h.get("x-content-type-options") == "nosniff"
    assert h.get("x-frame-options") == "DENY"
    assert h.get("referrer-policy") == "same-origin"
    if not cacheable:
        assert h.get("cache-control") == "no-store", h


# ---------------------------------------------------------------------- open redirects
HOSTILE_TARGETS = ["//evil.example/x", "/\\evil.example", "https://evil.example/", "javascript:alert(1)",
                   "evil.example", "/api/ui\r\nSet-Cookie: a=b", "", "/" + "a" * 5000]


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_the_login_link_only_ever_returns_to_a_path_on_this_app(target: str) -> None:
    link = notifications.login_path(target)
    assert link == "/.auth/login/aad?post_login_redirect_uri=/api/ui", link
    assert notifications.person_link("https://app.example", target, sign_in=True) is None


def test_a_local_target_is_kept_and_percent_encoded() -> None:
    link = notifications.login_path("/api/ui/rollouts/ro-1?as=x#frag")
    assert link == "/.auth/login/aad?post_login_redirect_uri=/api/ui/rollouts/ro-1%3Fas%3Dx%23frag"
    assert notifications.person_link("https://app.example", "/api/ui/rollouts/ro-1", sign_in=True) == (
        "https://app.example/.auth/login/aad?post_login_redirect_uri=/api/ui/rollouts/ro-1")


def test_the_sign_in_redirect_of_a_protocol_relative_request_path_stays_on_the_app() -> None:
    deps.override(settings=AUTH_ON)
    req = request("", url=f"{HOST}//evil.example/api/ui/rollouts/ro-1", route={"id": "ro-1"})
    resp = call(ui.ui_rollout_page, req)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location == "/.auth/login/aad?post_login_redirect_uri=/api/ui", location
    assert_page_headers(resp)


# ---------------------------------------------------------------------- assets and route ids
@pytest.mark.parametrize("name", ["../ui.py", "..%2Fui.py", "..\\ui.py", "app.js/../../ui.py", "index.html",
                                  ".env", "APP.JS", "app.js\x00.css", "a" * 70 + ".js", "ui.py", "", "app.js%00",
                                  "/etc/passwd", "app.css.map"])
def test_asset_names_outside_the_three_files_are_404_naming_the_field(name: str) -> None:
    resp = call(ui.ui_asset, request(f"/api/ui/assets/{name}", route={"name": name}))
    assert resp.status_code == 404, name
    assert error(resp)["field"] == "name"
    assert_page_headers(resp)
    assert b"def " not in resp.get_body() and b"<html" not in resp.get_body()


@pytest.mark.parametrize("rid", ["ro-1?x=1", "../ro-1", "ro 1", "%2e%2e", "a" * 300, "<script>alert(1)</script>",
                                 "", "ro-1/raiseEvent/ApprovalDecision", "ro-1#x", "@entity@key"])
def test_odd_rollout_ids_on_the_pages_json_route_are_400_naming_id_and_reach_no_durable_url(rid: str) -> None:
    resp = call(ui.ui_rollout, request("/api/ui/api/rollouts/x", headers={"X-PatchRings-Approver": "alice@contoso.com"},
                                       route={"id": rid}), Untouchable())
    assert resp.status_code == 400, rid
    assert error(resp)["field"] == "id"
    assert_page_headers(resp)


@pytest.mark.parametrize("rid", ["<script>alert(1)</script>", "ro-1?x", "../x", "a" * 300, '"><b>'])
def test_the_rollout_page_for_an_odd_id_is_a_400_page_that_escapes_it(rid: str) -> None:
    resp = call(ui.ui_rollout_page, request("/api/ui/rollouts/x", route={"id": rid}))
    assert resp.status_code == 400
    text = resp.get_body().decode()
    assert "<script>alert" not in text and "<b>" not in text and "id:" in text
    assert_page_headers(resp)


@pytest.mark.parametrize("path", ["//evil.example/api/ui", "/\\evil.example/api/ui/rollouts/ro-1",
                                  "/api/%2F%2Fevil.example/ui", "/a b/ui", "/api/ui"])
def test_the_pages_base_path_never_names_another_host(path: str) -> None:
    assert ui.ui_base(HOST + path) == "/api/ui"
    resp = call(ui.ui_home, request("", url=HOST + path))
    text = resp.get_body().decode()
    assert 'src="/api/ui/assets/app.js?v=' in text and "evil" not in text
    me = call(ui.ui_me, request("", url=HOST + path, headers={"X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com")}))
    assert me.status_code == 403  # the local default settings: no App Service authentication
    deps.override(settings=AUTH_ON)
    me = call(ui.ui_me, request("", url=HOST + path, headers={"X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com")}))
    assert json.loads(me.get_body())["signOut"] == "/.auth/logout?post_logout_redirect_uri=/api/ui"


def test_the_shell_escapes_what_the_request_url_puts_in_it() -> None:
    hostile = '/api"><script>alert(1)</script>/ui/rollouts/x'
    resp = call(ui.ui_rollout_page, request("", url=HOST + hostile, route={"id": "ro-1"}))
    assert resp.status_code == 200
    text = resp.get_body().decode()
    assert "<script>alert" not in text and "alert(1)" not in text  # the odd base is not used at all
    assert len(re.findall(r"<script\b", text)) == 1  # the app's own script tag, nothing else
    assert_page_headers(resp)


# ---------------------------------------------------------------------- identity and CSRF through the page
@pytest.mark.parametrize("settings", [OFF, IN_AZURE_WITH_FALLBACK], ids=["auth-off", "fallback-in-azure"])
def test_a_forged_principal_cannot_decide_through_the_page(settings: Settings, demo_plan: Ledger) -> None:
    deps.override(settings=settings)
    forged = {**CSRF_OK, "X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com"),
              "X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com", "X-PatchRings-Approver": "alice@contoso.com"}
    req = request("/api/ui/api/rollouts/ro-1/rings/ring1/approve", method="POST", headers=forged,
                  body={"manifestHash": "abc"}, route={"id": "ro-1", "ring": "ring1", "decision": "approve"})
    resp = call(ui.ui_decide, req, Untouchable())
    assert resp.status_code == 403
    assert error(resp)["field"] == "X-MS-CLIENT-PRINCIPAL"
    assert_page_headers(resp)
    assert not [r for r in demo_plan.rows if r.get("outcome") == "submitted"]


def test_a_signed_in_non_approver_is_refused_and_the_refusal_is_recorded(demo_plan: Ledger) -> None:
    deps.override(settings=AUTH_ON)

    class Client:
        async def get_status(self, instance_id: str, *a: Any, **k: Any) -> Any:
            class Status:
                runtime_status = type("R", (), {"value": "Running", "name": "Running"})()
                custom_status = {"waitingFor": {"what": "approval", "ring": "ring1",
                                                "approvers": ["alice@contoso.com"]}}
                instance_id = "ro-1"
                name = "rollout_orchestrator"
            return Status()

        async def raise_event(self, *a: Any, **k: Any) -> None:
            raise AssertionError("a non-approver's decision was raised")

    req = request("/api/ui/api/rollouts/ro-1/rings/ring1/approve", method="POST",
                  headers={**CSRF_OK, "X-MS-CLIENT-PRINCIPAL": principal("mallory@contoso.com")},
                  body={"manifestHash": "abc"}, route={"id": "ro-1", "ring": "ring1", "decision": "approve"})
    resp = call(ui.ui_decide, req, Client())
    assert resp.status_code == 403, resp.get_body()
    assert [r["outcome"] for r in demo_plan.rows] == ["refused"]


@pytest.mark.parametrize("ring, decision, field", [
    ("ring1%3F", "approve", "ring"), ("../ring1", "approve", "ring"), ("<b>", "approve", "ring"),
    ("r" * 64, "approve", "ring"),
    ("ring1", "approve/../halt", "decision"), ("ring1", "APPROVE%00", "decision"), ("ring1", "promote", "decision"),
])
def test_odd_ring_or_decision_in_the_route_is_refused_naming_it(ring: str, decision: str, field: str) -> None:
    req = request("/api/ui/api/rollouts/ro-1/rings/x/y", method="POST",
                  headers={**CSRF_OK, "X-PatchRings-Approver": "alice@contoso.com"}, body={"manifestHash": "abc"},
                  route={"id": "ro-1", "ring": ring, "decision": decision})
    resp = call(ui.ui_decide, req, Untouchable())
    assert resp.status_code in (400, 404) and error(resp)["field"] == field


@pytest.mark.parametrize("raw, field", [
    (b"[" * 200 + b"]" * 200, "body"),
    (b"{" + b'"a":{' * 100 + b"}" * 101, "body"),
    (b"x" * (1024 * 1024 + 1), "body"),
    (b"not json", "body"),
    (b'"a string"', "body"),
    (b"", "body"),
    (json.dumps({"manifestHash": 7}).encode(), "manifestHash"),
    (json.dumps({"manifestHash": "a" * 300}).encode(), "manifestHash"),
    (json.dumps({"manifestHash": "abc", "comment": "c" * 5000}).encode(), "comment"),
    (json.dumps({"manifestHash": "abc", "comment": ["<b>x</b>"]}).encode(), "comment"),
    (json.dumps({"manifestHash": "abc", "acceptInconclusive": "vm"}).encode(), "acceptInconclusive"),
])
def test_malformed_or_oversized_decision_bodies_from_the_page_are_400_naming_the_field(
        raw: bytes, field: str, demo_plan: Ledger) -> None:
    req = request("/api/ui/api/rollouts/ro-1/rings/ring1/approve", method="POST",
                  headers={**CSRF_OK, "X-PatchRings-Approver": "alice@contoso.com"}, raw=raw,
                  route={"id": "ro-1", "ring": "ring1", "decision": "approve"})
    resp = call(ui.ui_decide, req, Untouchable())
    assert resp.status_code == 400, resp.get_body()[:200]
    assert error(resp)["field"] == field
    assert_page_headers(resp)
    assert [r["outcome"] for r in demo_plan.rows] == ["refused"]


@pytest.mark.parametrize("headers, field", [
    ({"Content-Type": "text/plain"}, "X-PatchRings-CSRF"),  # an HTML form / no-cors fetch
    ({**CSRF_OK, "Content-Type": "application/x-www-form-urlencoded"}, "Content-Type"),
    ({**CSRF_OK, "Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site"),
    ({**CSRF_OK, "Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site"),
    ({**CSRF_OK, "Origin": "https://evil.example"}, "Origin"),
    ({**CSRF_OK, "Origin": "null"}, "Origin"),
])
def test_a_cross_site_page_cannot_halt_or_resume(headers: dict[str, str], field: str, demo_plan: Ledger) -> None:
    for route in (ui.ui_halt, ui.ui_resume):
        req = request("/api/ui/api/rollouts/ro-1/halt", method="POST",
                      headers={**headers, "X-PatchRings-Approver": "alice@contoso.com"},
                      body={"reason": "x"}, route={"id": "ro-1"})
        resp = call(route, req, Untouchable())
        assert resp.status_code == 403 and error(resp)["field"] == field
        assert_page_headers(resp)
    assert demo_plan.rows == []


# ---------------------------------------------------------------------- response headers
def test_every_kind_of_page_answer_carries_the_security_headers() -> None:
    deps.override(settings=LOCAL)
    shell = call(ui.ui_home, request("/api/ui"))
    assert_page_headers(shell)
    js = call(ui.ui_asset, request("/api/ui/assets/app.js", route={"name": "app.js"}))
    assert_page_headers(js, cacheable=True)
    assert js.headers["Content-Type"].startswith("text/javascript")
    etag = js.headers["ETag"]
    not_modified = call(ui.ui_asset, request("/api/ui/assets/app.js", route={"name": "app.js"},
                                             headers={"If-None-Match": etag}))
    assert not_modified.status_code == 304
    assert_page_headers(not_modified, cacheable=True)
    svg = call(ui.ui_asset, request("/api/ui/assets/favicon.svg", route={"name": "favicon.svg"}))
    assert svg.headers["Content-Type"] == "image/svg+xml" and b"<script" not in svg.get_body().lower()
    nobody = call(ui.ui_me, request("/api/ui/me"))
    assert nobody.status_code == 403
    assert_page_headers(nobody)
    deps.override(settings=OFF)
    refusal = call(ui.ui_home, request("/api/ui"))
    assert refusal.status_code == 403 and refusal.headers["Content-Type"].startswith("text/html")
    assert_page_headers(refusal)


def test_an_unexpected_failure_answers_500_without_its_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(who: Any) -> list[str]:
        raise RuntimeError("DefaultEndpointsProtocol=https;AccountKey=SECRETKEY==")

    monkeypatch.setattr(ui, "approver_of", boom)
    resp = call(ui.ui_me, request("/api/ui/me", headers={"X-PatchRings-Approver": "alice@contoso.com"}))
    assert resp.status_code == 500
    err = error(resp)
    assert err["code"] == "InternalError" and err["details"]["reference"]
    assert b"SECRETKEY" not in resp.get_body() and b"RuntimeError" not in resp.get_body()
    assert_page_headers(resp)


# ---------------------------------------------------------------------- the script renders text only
APP_JS = (REPO / "triggers" / "ui_assets" / "app.js").read_text(encoding="utf-8")


def test_the_script_never_turns_data_into_markup_or_code() -> None:
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", APP_JS, flags=re.S)  # comments may mention what is banned
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                   "createContextualFragment", "DOMParser", "srcdoc", ".href =", "location.assign",
                   "location.replace", "window.open"):
        assert banned not in code, banned
    assert not re.search(r"setTimeout\(\s*['\"]", code) and not re.search(r"setInterval\(\s*['\"]", code)
    # Every link is built by h(), whose URL attributes go through localHref.
    assert re.search(r"URL_ATTRS\[k\]\)\s*el\.setAttribute\(k, localHref\(v\)\)", code)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is part of the local platform (Azurite)")
def test_links_from_data_only_ever_point_at_this_app() -> None:
    match = re.search(r"function localHref\(v\) \{.*?\n  \}", APP_JS, flags=re.S)
    assert match, "app.js has no localHref"
    cases = ["javascript:alert(1)", "JavaScript:alert(1)", "//evil.example/x", "/\\evil.example", "https://evil.example",
             "data:text/html,<script>alert(1)</script>", "/api/ui\n//evil", " /api/ui", "/api/ui/rollouts/ro-1",
             "/.auth/login/aad?post_login_redirect_uri=/api/ui"]
    script = match.group(0) + "\nconsole.log(JSON.stringify(" + json.dumps(cases) + ".map(localHref)));"
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(out) == ["#"] * 8 + cases[8:]


# ---------------------------------------------------------------------- releaseQuarantine
def start(body: Any, headers: dict[str, str] | None = None, client: Any = None) -> func.HttpResponse:
    req = request("/api/rollouts", method="POST", headers=headers or {}, body=body)
    return call(http_api.rollouts, req, client or Untouchable())


@pytest.mark.parametrize("ids", [["../../x"], ["ro-1:ring0/../x"], ["ro-1:ring0#x"], ["ro-1:ring0?x"], ["<script>"],
                                 ["ro-1\x00:ring0"], ["ro 1:ring0"], [" ro-1:ring0"], ["ro-1:ring0\\x"]])
def test_hostile_quarantine_ids_are_400_naming_release_quarantine(ids: list[str]) -> None:
    resp = start({"releaseQuarantine": ids}, {"X-PatchRings-Approver": "alice@contoso.com"})
    assert resp.status_code == 400 and error(resp)["field"] == "releaseQuarantine"


@pytest.mark.parametrize("value", ["ro-1:ring0", [1], [""], ["a" * 601], ["r"] * 101, {"ro-1:ring0": True}])
def test_malformed_release_lists_are_400(value: Any) -> None:
    resp = start({"releaseQuarantine": value}, {"X-PatchRings-Approver": "alice@contoso.com"})
    assert resp.status_code == 400 and error(resp)["field"] == "releaseQuarantine"


def test_a_dry_run_releases_nothing() -> None:
    resp = start({"dryRun": True, "releaseQuarantine": ["ro-1:ring0"]}, {"X-PatchRings-Approver": "alice@contoso.com"})
    assert resp.status_code == 400 and error(resp)["field"] == "releaseQuarantine"


@pytest.mark.parametrize("headers, field", [
    ({}, "X-MS-CLIENT-PRINCIPAL"),  # a key holder without a principal
    ({"X-PatchRings-Approver": "mallory@contoso.com"}, "releaseQuarantine"),  # not an approver
    ({"X-PatchRings-Approver": "carol@contoso.com"}, "releaseQuarantine"),  # approver of ring2 only
])
def test_only_an_approver_of_the_first_manual_ring_releases_and_is_refused_before_any_state_is_read(
        headers: dict[str, str], field: str) -> None:
    resp = start({"releaseQuarantine": ["ro-1:ring0"]}, headers)
    assert resp.status_code == 403, resp.get_body()
    assert error(resp)["field"] == field


def test_a_forged_principal_cannot_release_when_authentication_is_off() -> None:
    deps.override(settings=IN_AZURE_WITH_FALLBACK)
    forged = {"X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com"), "X-PatchRings-Approver": "alice@contoso.com"}
    resp = start({"releaseQuarantine": ["ro-1:ring0"]}, forged)
    assert resp.status_code == 403 and error(resp)["field"] == "X-MS-CLIENT-PRINCIPAL"


# ---------------------------------------------------------------------- compliance parameters
@pytest.mark.parametrize("params, field", [
    ({"ring": "<script>"}, "ring"), ({"ring": "ring0/../x"}, "ring"), ({"staleAfterHours": "0"}, "staleAfterHours"),
    ({"staleAfterHours": "1e9"}, "staleAfterHours"), ({"staleAfterHours": "169"}, "staleAfterHours"),
    ({"asOf": "2026-11-16"}, "asOf"), ({"asOf": "2026-11-16T06:00:00+01:00"}, "asOf"),
    ({"asOf": "x" * 5000 + "TZ"}, "asOf"), ({"$filter": "x"}, "$filter"),
])
def test_compliance_refuses_bad_parameters_naming_them(params: dict[str, str], field: str) -> None:
    resp = call(compliance.compliance, request("/api/compliance", params=params))
    assert 400 <= resp.status_code < 500, resp.get_body()
    assert error(resp)["field"] == field
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Content-Type-Options"] == "nosniff"


def test_api_answers_are_never_cached_or_sniffed() -> None:
    for resp in (http_io.json_response({"a": 1}), http_io.json_response({}, 202, {"Location": "/x"}),
                 start({"releaseQuarantine": "x"})):
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.mimetype == "application/json"


# ---------------------------------------------------------------------- the header fallback in Azure
@pytest.mark.parametrize("hosted", [{"WEBSITE_INSTANCE_ID": "abc123"}, {"WEBSITE_SITE_NAME": "func-pr"},
                                    {"WEBSITE_AUTH_ENABLED": "True"}])
def test_the_header_fallback_turned_on_in_azure_names_nobody_on_the_page(hosted: dict[str, str],
                                                                         tmp_path: Path) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "default.json").write_text("{}")
    env = {"PATCHRINGS_LEDGER_ACCOUNT_URL": "https://a.table.core.windows.net",
           "PATCHRINGS_APPROVER_HEADER_FALLBACK": "true", **hosted}
    settings = Settings.from_env(env, app_dir=tmp_path)
    assert settings.approver_header_fallback and not settings.header_fallback_allowed
    deps.override(settings=settings)
    resp = call(ui.ui_me, request("/api/ui/me", headers={"X-PatchRings-Approver": "alice@contoso.com"}))
    assert resp.status_code == 403 and error(resp)["field"] == "X-MS-CLIENT-PRINCIPAL"
    release = start({"releaseQuarantine": ["ro-1:ring0"]}, {"X-PatchRings-Approver": "alice@contoso.com"})
    assert release.status_code == 403 and error(release)["field"] == "X-MS-CLIENT-PRINCIPAL"
