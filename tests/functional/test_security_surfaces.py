"""The operator page renders hostile data as text, in a real browser (Debian's headless Chromium
driven by Playwright), and the local host's routing refuses path tricks on the UI routes.

Rendering: the page's own shell and script (``triggers/ui.py`` / ``triggers/ui_assets``) are
served to Chromium through Playwright's request interception, with status documents of the demo
(``tests/unit/demo/views/*.json``, the API's real shapes) in which every free-text value (VM names
and ids, tag-derived ring names, gate reasons, KB titles, packages, comments, approvers, halt
reasons, the viewer's name) carries HTML/JS, and links carry ``javascript:`` / other hosts. The
Content-Security-Policy is *left off* on purpose, so the check is the script's own rule
(``textContent``, never ``innerHTML``; links only to local paths), not CSP catching a mistake:
no injected element may exist, no handler may run, and the payload must be visible as text.

Routing: the fake-activity app on the real local host with the header fallback; ``..``,
encoded slashes and encoded ``?`` in ``/api/ui/assets/{name}`` and ``/api/ui/api/rollouts/{id}``
are 4xx and never serve a file or reach the durable client's URL.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.platform import http_call
from patchrings.settings import Settings
from tests.functional.test_ui_browser import browser  # noqa: F401  (headless Debian Chromium)
from triggers import ui

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
VIEWS = REPO / "tests" / "unit" / "demo" / "views"
ORIGIN = "https://patchrings.test"
PAYLOAD = "\"'><img src=x class=pwn onerror=\"window.__pwned=1\"><script>window.__pwned=2</script><b class=pwn>"
MARK = "<b class=pwn>"
HOSTILE_LINK = "javascript:window.__pwned=3"
# Values the page compares or switches on (left alone so every section is drawn); times stay
# parseable. Everything else is poisoned.
KEEP = {"state", "phase", "what", "runtimeStatus", "mode", "outcome", "health", "patching", "kind", "verdict",
        "installStatus", "rebootStatus", "status", "verdictOutcome", "decision", "basis", "install", "reboot"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def poison(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: poison(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [poison(v, key) for v in value]
    if isinstance(value, str) and key not in KEEP and not TIME.match(value):
        return value + PAYLOAD
    return value


def hostile_status(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(json.loads((VIEWS / f"{name}.json").read_text())["view"])
    doc["approvals"] = [{"approver": "bob@contoso.com", "comment": "ok", "decidedAt": "2026-11-16T09:00:00Z",
                         "manifestHash": "0545a0c241d8f8c9", "outcome": "refused", "ring": "ring1",
                         "verdict": "approve", "reason": "not an approver"}]
    doc["halted"] = {"by": "mallory", "reason": "halted", "at": "2026-11-16T09:00:00Z"}
    doc = poison(doc)
    doc["links"] = {"page": HOSTILE_LINK, "self": "//evil.example/x"}
    doc["pagePath"] = HOSTILE_LINK
    doc["viewer"] = {"name": "mallory" + PAYLOAD, "mode": "app-service-authentication", "mayApprove": True,
                     "mayReject": True, "decideReason": "because" + PAYLOAD, "mayHalt": True, "mayResume": True,
                     "resumeReason": "because" + PAYLOAD}
    return doc


ME = {"name": "mallory" + PAYLOAD, "upn": "mallory" + PAYLOAD, "oid": None, "tid": None,
      "source": "app-service-authentication", "mode": "app-service-authentication", "authenticated": True,
      "approverOf": ["ring1" + PAYLOAD], "signOut": HOSTILE_LINK}


def serve(context: Any, documents: dict[str, Any]) -> list[str]:
    """Answer every request of the context: the shell and assets from triggers/ui.py, JSON from
    ``documents`` (by path after /api/ui), nothing else (anything else is recorded and aborted)."""
    stray: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        path = url.split(ORIGIN, 1)[1].split("?", 1)[0] if url.startswith(ORIGIN) else None
        if path is None:
            stray.append(url)
            route.abort()
            return
        if path.startswith("/api/ui/assets/"):
            item = ui.asset(path.rsplit("/", 1)[1])
            assert item is not None, path
            route.fulfill(status=200, body=item.body, headers={"Content-Type": item.content_type})
        elif path in documents:
            route.fulfill(status=200, body=json.dumps(documents[path]),
                          headers={"Content-Type": "application/json"})
        elif path == "/api/ui" or path.startswith("/api/ui/rollouts/"):
            route.fulfill(status=200, body=ui.shell(url), headers={"Content-Type": "text/html; charset=utf-8"})
        else:
            stray.append(url)
            route.fulfill(status=404, body="{}", headers={"Content-Type": "application/json"})

    context.route("**/*", handle)
    return stray


INJECTED = """() => ({
  pwned: window.__pwned === undefined ? null : window.__pwned,
  injected: document.querySelectorAll('.pwn, img, iframe, object, embed, script:not([src])').length,
  handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => /^on/i.test(a.name))).length,
  links: [...document.querySelectorAll('a[href], form[action]')]
    .map(e => e.getAttribute('href') || e.getAttribute('action')),
  text: document.body.innerText,
})"""


def assert_rendered_as_text(page: Any) -> dict[str, Any]:
    from playwright.sync_api import expect

    expect(page.locator("main")).to_contain_text(MARK, timeout=60_000)
    expect(page.locator("#me")).to_contain_text(MARK, timeout=60_000)
    seen: dict[str, Any] = page.evaluate(INJECTED)
    assert seen["pwned"] is None, seen["pwned"]
    assert seen["injected"] == 0 and seen["handlers"] == 0
    for link in seen["links"]:
        assert link.startswith("#") or (link.startswith("/") and not link.startswith(("//", "/\\"))), link
    return seen


def test_hostile_data_is_rendered_as_text_never_markup_in_a_real_browser(browser: Any) -> None:  # noqa: F811
    rollout = "ro-hostile1"
    awaiting = hostile_status("api-awaiting-approval")
    halted = hostile_status("api-bad-patch-halted")
    completed = hostile_status("api-completed")
    listing = {"rollouts": [{"id": rollout, "pagePath": HOSTILE_LINK, "initiator": "eve" + PAYLOAD,
                             "state": "running", "runtimeStatus": "Running", "outcome": None,
                             "currentRing": "ring1" + PAYLOAD, "createdTime": "2026-11-16T06:00:00Z",
                             "lastUpdatedTime": "2026-11-16T06:00:00Z",
                             "waitingFor": {"what": "approval", "ring": "ring1" + PAYLOAD,
                                            "until": "2026-11-17T06:00:00Z"}}]}
    docs: dict[str, Any] = {"/api/ui/me": ME, "/api/ui/api/rollouts": listing}
    stray = serve(browser, docs)
    page = browser.new_page()
    page.goto(f"{ORIGIN}/api/ui")
    seen = assert_rendered_as_text(page)
    assert "#" in seen["links"]  # the hostile pagePath and sign-out link were neutralised

    for doc in (awaiting, halted, completed):
        docs[f"/api/ui/api/rollouts/{rollout}"] = doc
        page.goto(f"{ORIGIN}/api/ui/rollouts/{rollout}")
        seen = assert_rendered_as_text(page)
        # A VM name, a KB title and a gate reason of the document are on the page, as text.
        assert "Cumulative Update" in seen["text"] or "curl=" in seen["text"], seen["text"][:500]
    # The approve form was drawn from the hostile awaiting document: its comment box holds text only.
    docs[f"/api/ui/api/rollouts/{rollout}"] = awaiting
    page.goto(f"{ORIGIN}/api/ui/rollouts/{rollout}")
    assert_rendered_as_text(page)
    assert page.locator("textarea, input[type=text]").count() >= 1
    page.close()
    assert stray == [], stray  # the page asked nothing of any other host or path


# ---------------------------------------------------------------------- routing on the real host
@pytest.fixture(scope="module")
def app_host() -> Iterator[Any]:
    """The real Function App (``function_app.py``) on the local host, header fallback on; the UI
    routes need neither the ARM simulator nor Azurite to refuse."""
    from emulator.clock import make_clock
    from emulator.host.testing import HostThread
    from patchrings import deps
    from patchrings.domain.plan import load_plan_file

    deps.reset()
    deps.override(settings=Settings(approver_header_fallback=True), plan=load_plan_file(REPO / "demo" / "plan.json"))
    ht = HostThread(REPO, make_clock("skip", start="2026-11-16T06:00:00Z")).start()
    try:
        yield ht
    finally:
        ht.stop()
        ht.clock.close()
        deps.reset()


def test_the_real_app_serves_the_page_to_a_named_local_caller(app_host: Any) -> None:
    resp = http_call("GET", f"{app_host.base_url}/api/ui/assets/app.js")
    assert resp.status == 200 and b"localHref" in resp.raw
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("path", [
    "/api/ui/assets/..%2F..%2Ftriggers%2Fhttp_api.py",
    "/api/ui/assets/..%2fhost.json",
    "/api/ui/assets/%2e%2e%2flocal.settings.json",
    "/api/ui/assets/..%5Cui.py",
    "/api/ui/assets/app.js%00.css",
    "/api/ui/assets/index.html",
    "/api/ui/assets/../../host.json",
    "/api/ui/api/rollouts/ro-1%3Fx%3D1",
    "/api/ui/api/rollouts/..%2F..%2Fadmin",
    "/api/ui/api/rollouts/%40entity%40key",
    "/api/ui/api/rollouts/ro-1%23x",
])
def test_path_tricks_on_the_ui_routes_serve_nothing(app_host: Any, path: str) -> None:
    resp = http_call("GET", f"{app_host.base_url}{path}", headers={"X-PatchRings-Approver": "alice@contoso.com"})
    assert resp.status in (400, 404), (path, resp.status, resp.raw[:200])
    text = resp.raw.decode(errors="replace")
    for leak in ("import ", "extensionBundle", "AzureWebJobs", "<html", "function "):
        assert leak not in text, (path, leak)
    if resp.json and isinstance(resp.json.get("error"), dict):  # the app answered: it names the field
        assert resp.json["error"].get("field") in ("name", "id"), resp.json


def test_a_cross_origin_preflight_for_a_decision_is_not_granted(app_host: Any) -> None:
    """The CSRF header works only because no cross-origin page may send it: the host grants no
    CORS preflight (infra/ configures no CORS), so the browser never sends the POST."""
    resp = http_call("OPTIONS", f"{app_host.base_url}/api/ui/api/rollouts/ro-1/rings/ring1/approve",
                     headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                              "Access-Control-Request-Headers": "x-patchrings-csrf,content-type"})
    allowed = {k.lower(): v for k, v in resp.headers.items()}
    assert "access-control-allow-origin" not in allowed and "access-control-allow-headers" not in allowed, allowed
    # and a simple cross-site POST (no custom header) is refused before anything happens
    forged = http_call("POST", f"{app_host.base_url}/api/ui/api/rollouts/ro-1/rings/ring1/approve",
                       body={"manifestHash": "abc"},
                       headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
                                "X-PatchRings-Approver": "alice@contoso.com"})
    assert forged.status == 403 and forged.json["error"]["field"] == "X-PatchRings-CSRF", forged.json
    assert "access-control-allow-origin" not in {k.lower() for k in forged.headers}
