"""The operator page's server side (triggers/ui.py): who gets in, CSRF, assets, what the viewer may do.

The browser test (tests/functional/test_ui_browser.py) runs the page end to end with App Service
authentication emulated; these cover every access mode and refusal without a platform.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from patchrings import deps
from patchrings.domain.plan import load_plan_file
from patchrings.errors import ApprovalForbidden
from patchrings.settings import Settings
from triggers import http_api, ui
from triggers.identity import Caller

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
HOST = "http://127.0.0.1:7071"
OID = "0b7d6c4e-1111-4222-8333-944455556666"
AUTH_ON = Settings(platform_auth_enabled=True)
LOCAL = Settings(approver_header_fallback=True)
OFF = Settings()
IN_AZURE_WITH_FALLBACK = Settings(approver_header_fallback=True, hosted_in_azure=True)


def principal(upn: str) -> str:
    doc = {"auth_typ": "aad", "claims": [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": OID},
        {"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "val": upn}]}
    return base64.b64encode(json.dumps(doc).encode()).decode()


@pytest.fixture(autouse=True)
def demo_plan() -> Iterator[None]:
    deps.reset()
    deps.override(plan=load_plan_file(REPO / "demo" / "plan.json"), settings=LOCAL)
    yield
    deps.reset()


def use(settings: Settings) -> None:
    deps.override(settings=settings)


def request(path: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: Any = None,
            params: dict[str, str] | None = None, route: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(method=method, url=f"{HOST}{path}", headers=headers or {}, params=params or {},
                            route_params=route or {}, body=json.dumps(body).encode() if body is not None else b"")


def call(function: Any, req: func.HttpRequest, client: Any = None) -> func.HttpResponse:
    user = function._function.get_user_function()
    handler = getattr(user, "__wrapped__", user)
    result = handler(req, client) if "client" in handler.__code__.co_varnames else handler(req)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    assert isinstance(result, func.HttpResponse)
    return result


def body(resp: func.HttpResponse) -> Any:
    return json.loads(resp.get_body())


# ---------------------------------------------------------------------- who gets in
@pytest.mark.parametrize("settings", [OFF, IN_AZURE_WITH_FALLBACK], ids=["auth-off", "fallback-in-azure"])
def test_with_authentication_off_nothing_is_served(settings: Settings) -> None:
    use(settings)
    claims = {"X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com"), "X-PatchRings-Approver": "alice@contoso.com"}
    page = call(ui.ui_home, request("/api/ui", headers=claims))
    assert page.status_code == 403 and b"App Service authentication is off" in page.get_body()
    assert page.headers["Content-Security-Policy"] == ui.CSP
    asset = call(ui.ui_asset, request("/api/ui/assets/app.js", headers=claims, route={"name": "app.js"}))
    assert asset.status_code == 403
    me = call(ui.ui_me, request("/api/ui/me", headers=claims))
    assert me.status_code == 403 and body(me)["error"]["field"] == "X-MS-CLIENT-PRINCIPAL"
    data = call(ui.ui_rollouts, request("/api/ui/api/rollouts", headers=claims))
    assert data.status_code == 403


def test_with_app_service_authentication_a_signed_in_person_is_named_and_others_sent_to_sign_in() -> None:
    use(AUTH_ON)
    anonymous = call(ui.ui_rollout_page, request("/api/ui/rollouts/ro-1", route={"id": "ro-1"}))
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == "/.auth/login/aad?post_login_redirect_uri=/api/ui/rollouts/ro-1"
    # the local header means nothing once authentication is on
    claimed = call(ui.ui_me, request("/api/ui/me", headers={"X-PatchRings-Approver": "alice@contoso.com"}))
    assert claimed.status_code == 403
    assert body(claimed)["error"]["details"]["signIn"].startswith("/.auth/login/aad?post_login_redirect_uri=/api/ui")
    me = body(call(ui.ui_me, request("/api/ui/me", headers={"X-MS-CLIENT-PRINCIPAL": principal("carol@contoso.com")})))
    assert (me["name"], me["mode"], me["authenticated"]) == ("carol@contoso.com", ui.MODE_AUTH, True)
    assert me["approverOf"] == ["ring2"]
    assert me["signOut"] == "/.auth/logout?post_logout_redirect_uri=/api/ui"
    page = call(ui.ui_home, request("/api/ui", headers={"X-MS-CLIENT-PRINCIPAL": principal("carol@contoso.com")}))
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"


def test_locally_the_page_is_served_and_data_needs_a_name() -> None:
    use(LOCAL)
    page = call(ui.ui_home, request("/api/ui"))
    assert page.status_code == 200
    nameless = call(ui.ui_rollouts, request("/api/ui/api/rollouts"))
    assert nameless.status_code == 403 and body(nameless)["error"]["field"] == "X-PatchRings-Approver"
    me = body(call(ui.ui_me, request("/api/ui/me", headers={"X-PatchRings-Approver": "bob@contoso.com"})))
    assert (me["name"], me["mode"], me["authenticated"]) == ("bob@contoso.com", ui.MODE_LOCAL, False)
    assert me["approverOf"] == ["ring1"] and "not authenticated" in me["note"]


# ---------------------------------------------------------------------- CSRF
def decide_request(headers: dict[str, str]) -> func.HttpRequest:
    return request("/api/ui/api/rollouts/ro-1/rings/ring1/approve", method="POST",
                   headers={"X-PatchRings-Approver": "alice@contoso.com", **headers},
                   body={"manifestHash": "abc"}, route={"id": "ro-1", "ring": "ring1", "decision": "approve"})


@pytest.mark.parametrize(("headers", "field"), [
    ({"Content-Type": "application/json"}, "X-PatchRings-CSRF"),
    ({"Content-Type": "application/json", "X-PatchRings-CSRF": "yes"}, "X-PatchRings-CSRF"),
    ({"Content-Type": "text/plain", "X-PatchRings-CSRF": "1"}, "Content-Type"),
    ({"Content-Type": "application/json", "X-PatchRings-CSRF": "1", "Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site"),
    ({"Content-Type": "application/json", "X-PatchRings-CSRF": "1", "Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site"),
    ({"Content-Type": "application/json", "X-PatchRings-CSRF": "1", "Origin": "https://evil.example"}, "Origin"),
    ({"Content-Type": "application/json", "X-PatchRings-CSRF": "1", "Origin": "null"}, "Origin"),
])
def test_state_changing_routes_refuse_what_another_site_could_send(headers: dict[str, str], field: str) -> None:
    for function in (ui.ui_decide, ui.ui_halt, ui.ui_resume):
        resp = call(function, decide_request(headers), client=None)  # refused before the client is touched
        assert resp.status_code == 403, function
        assert body(resp)["error"]["field"] == field


def test_a_same_origin_request_from_the_page_passes_the_csrf_check() -> None:
    ui.check_csrf(decide_request({"Content-Type": "application/json; charset=utf-8", "X-PatchRings-CSRF": "1",
                                  "Origin": HOST, "Host": "127.0.0.1:7071", "Sec-Fetch-Site": "same-origin"}))
    # behind a proxy the public host name arrives in Host / X-Forwarded-Host
    ui.check_csrf(decide_request({"Content-Type": "application/json", "X-PatchRings-CSRF": "1",
                                  "Origin": "https://patchrings.azurewebsites.net",
                                  "X-Forwarded-Host": "patchrings.azurewebsites.net"}))


# ---------------------------------------------------------------------- assets
def test_assets_have_their_types_versions_and_security_headers() -> None:
    use(LOCAL)
    shell = call(ui.ui_rollout_page, request("/api/ui/rollouts/ro-1", route={"id": "ro-1"})).get_body().decode()
    types = (("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml"))
    for name, content_type in types:
        version = ui.asset(name).version  # type: ignore[union-attr]
        assert f"/api/ui/assets/{name}?v={version}" in shell
        fresh = call(ui.ui_asset, request(f"/api/ui/assets/{name}", params={"v": version}, route={"name": name}))
        assert fresh.status_code == 200 and fresh.headers["Content-Type"].startswith(content_type)
        assert fresh.headers["Cache-Control"] == ui.IMMUTABLE
        assert fresh.headers["X-Content-Type-Options"] == "nosniff"
        old = call(ui.ui_asset, request(f"/api/ui/assets/{name}", params={"v": "old"}, route={"name": name}))
        assert old.headers["Cache-Control"] == "no-cache"
        same = call(ui.ui_asset, request(f"/api/ui/assets/{name}", headers={"If-None-Match": old.headers["ETag"]},
                                         route={"name": name}))
        assert same.status_code == 304 and not same.get_body()
    for name in ("index.html", "../ui.py", "..%2Fui.py", "APP.JS", "missing.js", ".app.js"):
        missing = call(ui.ui_asset, request(f"/api/ui/assets/{name}", route={"name": name}))
        assert (missing.status_code, body(missing)["error"]["field"]) == (404, "name"), name


def test_the_shell_follows_the_route_prefix_and_has_no_inline_script_or_style() -> None:
    text = ui.shell("https://x.example/custom/ui/rollouts/ro-1")
    assert 'content="/custom/ui"' in text and "/custom/ui/assets/app.js?v=" in text
    assert "<script>" not in text and "style=" not in text and "<style" not in text
    assert "{{" not in text


# ---------------------------------------------------------------------- what the viewer may do
def status_doc(*, initiator: str = "dave@contoso.com", what: str = "approval", state: str = "waiting",
               runtime: str = "Running", ring: str = "ring1") -> dict[str, Any]:
    waiting = {"what": what, "ring": ring, "manifestHash": "abc",
               "approvers": ["alice@contoso.com", "bob@contoso.com", "demo-approver@contoso.com"]}
    return {"runtimeStatus": runtime, "state": state, "waitingFor": waiting,
            "status": {"initiator": initiator, "currentRing": ring, "waitingFor": waiting}}


def test_viewer_says_who_may_decide_and_why_not() -> None:
    alice = Caller("fallback-header", upn="alice@contoso.com")
    carol = Caller("fallback-header", upn="carol@contoso.com")
    seen = ui.viewer(alice, status_doc())
    assert (seen["mayApprove"], seen["mayReject"], seen["mayHalt"], seen["mayResume"]) == (True, True, True, False)
    own = ui.viewer(alice, status_doc(initiator="alice@contoso.com"))
    assert (own["mayApprove"], own["mayReject"]) == (False, True) and "another approver" in own["decideReason"]
    other = ui.viewer(carol, status_doc())
    assert (other["mayApprove"], other["mayReject"]) == (False, False) and "not an approver" in other["decideReason"]
    halted = status_doc(what="resume", state="halted")
    assert ui.viewer(alice, halted)["mayResume"] is True and ui.viewer(alice, halted)["mayHalt"] is False
    refused = ui.viewer(carol, halted)
    assert refused["mayResume"] is False and "only an approver" in refused["resumeReason"]
    done = ui.viewer(alice, status_doc(what="", runtime="Completed", state="completed"))
    assert not any(done[k] for k in ("mayApprove", "mayReject", "mayHalt", "mayResume"))


def test_the_ui_routes_reach_the_apis_own_handlers() -> None:
    """The UI hands reads and decisions to the API's own handlers (same rules, one place:
    triggers/rollout_views.py and triggers/decisions.py, which the API's routes call too), never to
    the API's registered route functions: for the same request both answer alike."""
    import ast
    from types import SimpleNamespace

    from orchestrators import names
    from tests.unit.app.fakes import FakeLedger
    from triggers import decisions, rollout_views

    tree = ast.parse(Path(ui.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {f"{node.module}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 for a in node.names}
    assert not any("http_api" in str(name) for name in imported)
    assert ui.list_view is http_api.list_view is rollout_views.list_view
    assert ui.status_view is http_api.status_view is rollout_views.status_view
    assert ui.decisions.decide is http_api.decide is decisions.decide
    assert ui.decisions.halt_or_resume is http_api.halt_or_resume is decisions.halt_or_resume

    ledger = FakeLedger()
    deps.override(ledger=ledger)
    waiting = {"what": "approval", "ring": "ring1", "approvers": ["bob@contoso.com"],
               "request": None, "pagePath": "/api/ui/rollouts/ro-1"}
    doc = {"state": "waiting", "currentRing": "ring1", "initiator": "dave@contoso.com", "waitingFor": waiting,
           "rings": [{"name": "ring0", "phase": "done"}, {"name": "ring1", "phase": "waiting"}]}
    running = SimpleNamespace(name="rollout_orchestrator", instance_id="ro-1", runtime_status="Running",
                              custom_status=doc, created_time="2026-11-16T06:00:00Z",
                              last_updated_time="2026-11-16T06:40:00Z", output=None)
    raised: list[tuple[str, str, Any]] = []

    async def get_status(instance_id: str) -> Any:
        return running if instance_id == "ro-1" else SimpleNamespace(runtime_status=None, custom_status=None)

    async def get_status_all() -> list[Any]:
        return [running]

    async def raise_event(instance_id: str, name: str, payload: Any) -> None:
        raised.append((instance_id, name, payload))

    client = SimpleNamespace(get_status=get_status, get_status_all=get_status_all, raise_event=raise_event)
    page = {"X-PatchRings-Approver": "carol@contoso.com", "X-PatchRings-CSRF": "1",
            "Content-Type": "application/json"}

    def both(api: Any, mine: Any, path: str, route: dict[str, str], method: str = "GET",
             payload: Any = None) -> tuple[func.HttpResponse, func.HttpResponse]:
        return (call(api, request(f"/api/{path}", method=method, headers=page, body=payload, route=route), client),
                call(mine, request(f"/api/ui/api/{path}", method=method, headers=page, body=payload, route=route),
                     client))

    api, mine = both(http_api.rollouts, ui.ui_rollouts, "rollouts", {})
    assert api.status_code == mine.status_code == 200
    assert [{k: v for k, v in item.items() if k != "pagePath"} for item in body(mine)["rollouts"]] == \
        body(api)["rollouts"]
    api, mine = both(http_api.rollout_status, ui.ui_rollout, "rollouts/ro-1", {"id": "ro-1"})
    assert api.status_code == mine.status_code == 200
    assert {k: v for k, v in body(mine).items() if k not in ("viewer", "pagePath")} == body(api)
    api, mine = both(http_api.rollout_status, ui.ui_rollout, "rollouts/ro-9", {"id": "ro-9"})
    assert api.status_code == mine.status_code == 404 and body(api) == body(mine)
    # carol approves nothing here: the same refusal, recorded once per request
    decide = {"id": "ro-1", "ring": "ring1", "decision": "approve"}
    api, mine = both(http_api.decide_ring, ui.ui_decide, "rollouts/ro-1/rings/ring1/approve", decide, "POST",
                     {"manifestHash": "abc"})
    assert api.status_code == mine.status_code == 403 and body(api) == body(mine)
    refused = [{k: v for k, v in row.items() if k != "decisionId"} for row in ledger.approvals("ro-1")]
    assert len(refused) == 2 and refused[0] == refused[1] and refused[0]["outcome"] == "refused"
    # a halt by anyone signed in: the same answer and the same event, ids aside (each route
    # against a rollout row that has no halt requested yet: a repeated halt is a 409, below)
    halt = request("/api/rollouts/ro-1/halt", method="POST", headers=page, body={}, route={"id": "ro-1"})
    api = call(http_api.halt_rollout, halt, client)
    deps.override(ledger=FakeLedger())
    mine = call(ui.ui_halt, request("/api/ui/api/rollouts/ro-1/halt", method="POST", headers=page, body={},
                                    route={"id": "ro-1"}), client)
    assert api.status_code == mine.status_code == 202
    assert {k: v for k, v in body(api).items() if k != "haltId"} == {k: v for k, v in body(mine).items()
                                                                      if k != "haltId"}
    assert [(r[0], r[1]) for r in raised] == [("ro-1", names.EV_HALT)] * 2
    assert {k: v for k, v in raised[0][2].items() if k != "haltId"} == {k: v for k, v in raised[1][2].items()
                                                                         if k != "haltId"}
    # halted but not taken yet: both routes tell a repeated halt alike, and raise nothing
    api, mine = both(http_api.halt_rollout, ui.ui_halt, "rollouts/ro-1/halt", {"id": "ro-1"}, "POST", {})
    assert api.status_code == mine.status_code == 409 and body(api) == body(mine)
    assert len(raised) == 2


def test_a_refusal_is_json_naming_the_field() -> None:
    resp = ui.error_response(ApprovalForbidden("no", field="X"))
    assert resp.status_code == 403 and body(resp)["error"]["field"] == "X"
    assert resp.headers["Cache-Control"] == "no-store"


def ui_functions() -> list[Any]:
    import azure.durable_functions as df

    app = df.DFApp()
    app.register_functions(ui.bp)
    return list(app.get_functions())


def test_every_ui_route_is_anonymous_at_the_functions_level_and_fails_closed_itself() -> None:
    """No function key in the browser: the routes are ANONYMOUS, so each must refuse on its own
    when App Service authentication is off, whatever the request claims (a new route that forgot
    the gate fails here)."""
    use(OFF)
    routes = {}
    for fn in ui_functions():
        trigger = fn.get_trigger()
        assert trigger.get_binding_name() == "httpTrigger"
        methods = sorted(str(getattr(m, "value", m)).upper() for m in trigger.methods or [])
        routes[trigger.route] = (methods, str(getattr(trigger.auth_level, "value", trigger.auth_level)).lower())
        params = {name: "x" for name in ("id", "ring", "decision", "name") if "{" + name + "}" in trigger.route}
        params["name"] = "app.js" if "name" in params else ""
        user = fn.get_user_function()
        handler = getattr(user, "__wrapped__", user)
        for method in methods:
            req = request("/api/" + trigger.route, method=method, route={k: v for k, v in params.items() if v},
                          body={"manifestHash": "abc"} if method == "POST" else None,
                          headers={"X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com"),
                                   "X-PatchRings-Approver": "alice@contoso.com", "X-PatchRings-CSRF": "1",
                                   "Content-Type": "application/json"})
            result = handler(req, None) if "client" in handler.__code__.co_varnames else handler(req)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            assert result.status_code == 403, (trigger.route, method)
            assert result.headers["Content-Security-Policy"] == ui.CSP
    assert routes == {
        "ui": (["GET"], "anonymous"),
        "ui/rollouts/{id}": (["GET"], "anonymous"),
        "ui/assets/{name}": (["GET"], "anonymous"),
        "ui/me": (["GET"], "anonymous"),
        "ui/api/rollouts": (["GET"], "anonymous"),
        "ui/api/rollouts/{id}": (["GET"], "anonymous"),
        "ui/api/rollouts/{id}/rings/{ring}/{decision}": (["POST"], "anonymous"),
        "ui/api/rollouts/{id}/halt": (["POST"], "anonymous"),
        "ui/api/rollouts/{id}/resume": (["POST"], "anonymous"),
    }


def test_text_colours_meet_wcag_aa_contrast() -> None:
    """Every text/background pair the style sheet uses is at least 4.5:1 (WCAG 2 AA, normal text)."""
    import re

    css = (REPO / "triggers" / "ui_assets" / "app.css").read_text()
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", css))

    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    def ratio(a: str, b: str) -> float:
        high, low = sorted((luminance(colours[a]), luminance(colours[b])), reverse=True)
        return (high + 0.05) / (low + 0.05)

    pairs = [("fg", "bg"), ("fg", "panel"), ("muted", "bg"), ("muted", "panel"), ("muted", "attention-bg"),
             ("link", "bg"), ("link", "panel"), ("ok-fg", "ok-bg"), ("bad-fg", "bad-bg"), ("warn-fg", "warn-bg"),
             ("info-fg", "info-bg"), ("idle-fg", "idle-bg"), ("on-button", "primary-bg"), ("on-button", "danger-bg"),
             ("bad-fg", "bg"), ("ok-fg", "bg")]
    low = {f"{a} on {b}": round(ratio(a, b), 2) for a, b in pairs if ratio(a, b) < 4.5}
    assert low == {}


# ---------------------------------------------------------------------- releasing a quarantine (issue 11)
ENTRY: dict[str, Any] = {
    "id": "ro-old:ring0", "planName": "demo", "rolloutId": "ro-old", "ring": "ring0", "kbs": ["5048667"],
    "packages": [], "source": "failed-patches", "failedVms": ["r0-web-1"], "manifestHash": "m1",
    "reason": "ring ring0 of rollout ro-old failed its gate", "by": "system:gate-failed",
    "at": "2026-11-15T07:20:00Z", "released": False, "internalColumn": "not shown"}


def quarantine_wait(ids: list[str]) -> dict[str, Any]:
    from patchrings.domain.approval import ApprovalPolicy, ApprovalRequest

    policy = ApprovalPolicy(mode="manual", approvers=("bob@contoso.com",))
    from datetime import UTC, datetime

    now = datetime(2026, 11, 16, 7, 20, tzinfo=UTC)
    request = ApprovalRequest.create("ro-1", "ring0", "q-0123456789ab", policy, now)
    return {"what": "approval", "kind": "quarantine", "ring": "ring0", "manifestHash": "q-0123456789ab",
            "approvers": ["bob@contoso.com"], "request": request.to_dict(),
            "quarantine": {"entries": ids, "entryCount": len(ids), "patchCount": 1}}


def quarantine_client(doc: dict[str, Any]) -> tuple[Any, list[tuple[str, str, Any]]]:
    from types import SimpleNamespace

    running = SimpleNamespace(name="rollout_orchestrator", instance_id="ro-1", runtime_status="Running",
                              custom_status=doc, created_time="2026-11-16T07:20:00Z",
                              last_updated_time="2026-11-16T07:20:00Z", output=None)
    raised: list[tuple[str, str, Any]] = []

    async def get_status(instance_id: str) -> Any:
        return running if instance_id == "ro-1" else SimpleNamespace(runtime_status=None, custom_status=None)

    async def raise_event(instance_id: str, name: str, payload: Any) -> None:
        raised.append((instance_id, name, payload))

    return SimpleNamespace(get_status=get_status, raise_event=raise_event), raised


def test_viewer_of_a_quarantine_decision_may_release_only_when_it_may_approve() -> None:
    waiting = quarantine_wait(["ro-old:ring0"])
    doc: dict[str, Any] = {"runtimeStatus": "Running", "state": "waiting", "waitingFor": waiting,
           "status": {"initiator": "dave@contoso.com", "waitingFor": waiting}}
    bob = ui.viewer(Caller("fallback-header", upn="bob@contoso.com"), doc)
    assert (bob["decisionKind"], bob["mayApprove"], bob["mayRelease"]) == ("quarantine", True, True)
    carol = ui.viewer(Caller("fallback-header", upn="carol@contoso.com"), doc)
    assert carol["mayRelease"] is False and "not an approver of ring0" in carol["decideReason"]
    own = ui.viewer(Caller("fallback-header", upn="bob@contoso.com"),
                    {**doc, "status": {**doc["status"], "initiator": "bob@contoso.com"}})
    assert (own["mayReject"], own["mayRelease"]) == (True, False) and "another approver" in own["decideReason"]
    ring = ui.viewer(Caller("fallback-header", upn="bob@contoso.com"), status_doc())
    assert "mayRelease" not in ring and "decisionKind" not in ring  # an ordinary ring approval


def test_quarantine_view_lists_the_entries_a_rollout_is_about_with_their_details() -> None:
    from tests.unit.app.fakes import FakeLedger

    ledger = FakeLedger()
    deps.override(ledger=ledger)
    newer = {**ENTRY, "id": "ro-mid:ring0", "rolloutId": "ro-mid", "at": "2026-11-15T19:00:00Z", "kbs": ["5049981"]}
    unrelated = {**ENTRY, "id": "ro-older:ring0", "rolloutId": "ro-older", "at": "2026-11-01T07:00:00Z",
                 "released": True, "releasedBy": "alice@contoso.com"}
    own = {**ENTRY, "id": "ro-1:ring0", "rolloutId": "ro-1", "at": "2026-11-16T09:00:00Z"}
    for row in (ENTRY, newer, unrelated, own):
        ledger.record_quarantine("demo", str(row["id"]), row)
    ledger.record_quarantine("other-plan", "ro-x:ring0", {**ENTRY, "id": "ro-x:ring0"})
    waiting = quarantine_wait(["ro-old:ring0", "ro-mid:ring0"])
    body = {"waitingFor": waiting, "status": {"plan": {"name": "demo"}, "waitingFor": waiting},
            "ledger": {"rollout": {"planName": "demo"}, "approvals": []}}

    view = ui.quarantine_view("ro-1", body)
    assert view is not None and view["planName"] == "demo" and view["decision"] == ["ro-old:ring0", "ro-mid:ring0"]
    # the decision's entries first, in its order; then what this rollout's own failed gate recorded
    assert [e["id"] for e in view["entries"]] == ["ro-old:ring0", "ro-mid:ring0", "ro-1:ring0"]
    first = view["entries"][0]
    assert (first["kbs"], first["reason"], first["rolloutId"], first["ring"], first["at"]) == (
        ["5048667"], ENTRY["reason"], "ro-old", "ring0", "2026-11-15T07:20:00Z")
    assert "internalColumn" not in first and set(first) <= set(ui.QUARANTINE_FIELDS)

    # after the decision: the entries it released (the ledger's Approvals row), as they are now
    ledger.release_quarantine("demo", "ro-old:ring0", by="bob@contoso.com", at="2026-11-16T07:30:00Z")
    decided = {"waitingFor": None, "status": {"plan": {"name": "demo"}},
               "ledger": {"rollout": {"planName": "demo"}, "approvals": [
                   {"decisionId": "d1", "kind": "quarantine", "outcome": "accepted", "choice": "release",
                    "quarantineEntries": ["ro-old:ring0", "ro-mid:ring0"], "releaseQuarantine": ["ro-old:ring0"]}]}}
    view = ui.quarantine_view("ro-1", decided)
    assert view is not None and view["decision"] == []
    shown = {e["id"]: e for e in view["entries"]}
    assert set(shown) == {"ro-old:ring0", "ro-mid:ring0", "ro-1:ring0"}
    assert (shown["ro-old:ring0"]["released"], shown["ro-old:ring0"]["releasedBy"]) == (True, "bob@contoso.com")
    assert shown["ro-mid:ring0"]["released"] is False

    # a rollout whose own gate failed shows the entry it recorded; one that never met a
    # quarantine shows nothing (and reads nothing, below); a ledger that cannot be read: said
    def gated(outcome: str) -> dict[str, Any]:
        return {"status": {"plan": {"name": "demo"}}, "ledger": {},
                "rings": [{"name": "ring0", "gate": {"outcome": outcome}}]}

    failed = gated("fail")
    view = ui.quarantine_view("ro-1", failed)
    assert view is not None and [e["id"] for e in view["entries"]] == ["ro-1:ring0"] and view["decision"] == []
    assert ui.quarantine_view("ro-2", failed) is None  # its gate failed, but it recorded nothing

    class Broken(FakeLedger):
        def quarantines(self, plan_name: str) -> list[dict[str, Any]]:
            raise ConnectionError("table service down")

    deps.override(ledger=Broken())
    assert ui.quarantine_view("ro-2", gated("pass")) is None  # not read at all: the broken ledger is never asked
    broken = ui.quarantine_view("ro-1", body)
    assert broken is not None and broken["entries"] == [] and "ConnectionError" in broken["error"]
    assert broken["decision"] == ["ro-old:ring0", "ro-mid:ring0"]  # the page still offers the ids


def test_approve_from_the_page_releases_the_ticked_entries_through_the_apis_handler() -> None:
    """The page's request is the CLI's (``releaseQuarantine`` on approve, bound to the ``q-``
    hash): the API's handler records it and raises it unchanged; the page's status document
    carries the entries' details and, afterwards, the release on the decision line."""
    from orchestrators import names
    from tests.unit.app.fakes import FakeLedger

    ledger = FakeLedger()
    deps.override(ledger=ledger, settings=LOCAL)
    ledger.record_quarantine("demo", "ro-old:ring0", ENTRY)
    ledger.record_rollout("ro-1", {"planName": "demo"})
    waiting = quarantine_wait(["ro-old:ring0"])
    doc = {"state": "waiting", "currentRing": "ring0", "initiator": "dave@contoso.com", "waitingFor": waiting,
           "plan": {"name": "demo"}, "rings": [{"name": "ring0", "phase": "awaiting-approval"}]}
    client, raised = quarantine_client(doc)
    page = {"X-PatchRings-Approver": "bob@contoso.com", "X-PatchRings-CSRF": "1", "Content-Type": "application/json"}

    seen = body(call(ui.ui_rollout, request("/api/ui/api/rollouts/ro-1", headers=page, route={"id": "ro-1"}), client))
    assert seen["viewer"]["mayRelease"] is True
    assert seen["quarantine"]["decision"] == ["ro-old:ring0"]
    assert seen["quarantine"]["entries"][0]["kbs"] == ["5048667"]

    route = {"id": "ro-1", "ring": "ring0", "decision": "approve"}
    sent = {"manifestHash": "q-0123456789ab", "comment": "vendor fixed it", "releaseQuarantine": ["ro-old:ring0"]}
    resp = call(ui.ui_decide, request("/api/ui/api/rollouts/ro-1/rings/ring0/approve", method="POST",
                                      headers=page, body=sent, route=route), client)
    assert resp.status_code == 202, body(resp)
    [(rollout, event, decision)] = raised
    assert (rollout, event) == ("ro-1", names.EV_APPROVAL)
    assert (decision["verdict"], decision["approver"], decision["manifestHash"], decision["releaseQuarantine"]) == (
        "approve", "bob@contoso.com", "q-0123456789ab", ["ro-old:ring0"])
    [row] = ledger.approvals("ro-1")
    assert (row["outcome"], row["releaseQuarantine"]) == ("submitted", ["ro-old:ring0"])
    # the decision line of the page's document names what it released (from the ledger's row)
    seen = body(call(ui.ui_rollout, request("/api/ui/api/rollouts/ro-1", headers=page, route={"id": "ro-1"}), client))
    [line] = seen["approvals"]
    assert (line["outcome"], line["releaseQuarantine"]) == ("submitted", ["ro-old:ring0"])

    # the API's rules hold on the page: a release goes with approve only
    reject = call(ui.ui_decide, request("/api/ui/api/rollouts/ro-1/rings/ring0/reject", method="POST", headers=page,
                                        body=sent, route={**route, "decision": "reject"}), client)
    assert (reject.status_code, body(reject)["error"]["field"]) == (400, "releaseQuarantine")
    assert len(raised) == 1


def test_a_repeated_halt_while_one_is_requested_is_a_409_naming_it_and_the_page_says_so() -> None:
    """Issue 9: a halt the rollout has not taken yet (it takes it when it next acts) answers a
    second halt 409 with a JSON body naming the pending halt, recorded as refused, no second
    event; a resume clears it, and the next halt is accepted again. The page's viewer offers no
    Halt button meanwhile and says why."""
    from orchestrators import names
    from tests.unit.app.fakes import FakeLedger

    ledger = FakeLedger()
    deps.override(ledger=ledger, settings=LOCAL)
    doc: dict[str, Any] = {"state": "installing", "currentRing": "ring0", "rings": []}
    client, raised = quarantine_client(doc)
    alice = {"X-PatchRings-Approver": "alice@contoso.com"}

    def halt(reason: str) -> func.HttpResponse:
        return call(http_api.halt_rollout, request("/api/rollouts/ro-1/halt", method="POST", headers=alice,
                                                   body={"reason": reason}, route={"id": "ro-1"}), client)

    assert halt("alerts in ring 0").status_code == 202
    again = halt("me too")
    assert again.status_code == 409
    error = body(again)["error"]
    assert (error["code"], error["field"]) == ("RolloutConflict", "id")
    assert "already requested (by alice@contoso.com: alerts in ring 0)" in error["message"]
    assert error["details"] == {"state": "installing", "runtimeStatus": "Running", "haltRequested": True,
                                "haltedBy": "alice@contoso.com", "haltReason": "alerts in ring 0"}
    assert [name for _, name, _ in raised] == [names.EV_HALT]
    rows = ledger.approvals("ro-1")
    assert [(r["verdict"], r["outcome"]) for r in rows] == [("halt", "submitted"), ("halt", "refused")]

    # the page: no Halt button while one is pending, and why
    seen = ui.viewer(Caller("fallback-header", upn="bob@contoso.com"),
                     {"runtimeStatus": "Running", "state": "installing", "status": doc,
                      "ledger": {"rollout": ledger.rollout("ro-1")}})
    assert seen["mayHalt"] is False and "already requested by alice@contoso.com" in seen["haltReason"]

    # the rollout takes it (halted), a resume clears the request, and a new halt is accepted
    doc["state"] = "halted"
    resumed = call(http_api.resume_rollout, request("/api/rollouts/ro-1/resume", method="POST", headers=alice,
                                                    body={}, route={"id": "ro-1"}), client)
    assert resumed.status_code == 202, body(resumed)
    doc["state"] = "installing"
    assert halt("again, for good").status_code == 202
    assert [name for _, name, _ in raised] == [names.EV_HALT, names.EV_RESUME, names.EV_HALT]


def test_with_releases_matches_decision_lines_by_id_only() -> None:
    """A ledger row or a decision line without an id must not lend its release to another."""
    body: dict[str, Any] = {
        "ledger": {"approvals": [{"kind": "quarantine", "choice": "release", "releaseQuarantine": ["r1:ring0"]},
                                 {"decisionId": "d2", "kind": "quarantine", "choice": "exclude"}]},
        "approvals": [{"id": None, "verdict": "approve"}, {"id": "d2", "verdict": "approve"}]}
    ui.with_releases(body)
    assert "releaseQuarantine" not in body["approvals"][0] and "choice" not in body["approvals"][0]
    assert body["approvals"][1]["choice"] == "exclude" and "releaseQuarantine" not in body["approvals"][1]
