"""The operator page in a real browser: Debian's headless Chromium driven by Playwright.

One scenario, the demo's (``demo/plan.json``, ``demo/scenarios/happy.yaml``), on the local
platform with App Service authentication emulated the way Azure does it: the host runs with
``WEBSITE_AUTH_ENABLED=True`` and the browser's requests carry ``X-MS-CLIENT-PRINCIPAL`` (what
Easy Auth injects after an Entra sign-in; Playwright adds it to every request). No function key
is given to the browser. The test opens the rollout list, then the rollout page: Ring 0's
results, the VM filter, the manifest; checks the page's security headers and that the UI's
decision routes refuse a forged cross-site POST and a stale manifest hash; approves Ring 1 from
the page with a comment, and watches Ring 1 promote: opened, patched by its maintenance run,
its gate passed, Ring 2 next (waiting on state: Playwright's ``expect``
and the platform's ``wait_for``, never sleeps).

Screenshots of the key pages (``docs/screenshots/ui-*.png``) are written when
``UI_SCREENSHOTS=<folder>`` is set:
``UI_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest -q tests/functional/test_ui_browser.py``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.platform import http_call

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEMO_START = "2026-11-16T06:00:00Z"
APPROVER = "alice@contoso.com"
TIMEOUT_MS = 60_000


def principal(upn: str, oid: str = "6f0f3b1e-34a5-4c55-9a6e-0b7d2f1c9a01",
              tid: str = "72f988bf-86f1-41af-91ab-2d7cd011db47") -> str:
    """``X-MS-CLIENT-PRINCIPAL`` as App Service authentication injects it (base64 JSON claims)."""
    doc = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": tid},
        {"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "val": upn},
        {"typ": "name", "val": upn.split("@", maxsplit=1)[0].title()},
    ]}
    return base64.b64encode(json.dumps(doc).encode()).decode()


# Every form control has a label (or is a button with text); every table header cell has a scope.
UNLABELLED = """() => [...document.querySelectorAll('input, textarea, select, button')]
  .filter(e => !(e.labels && e.labels.length) && !e.textContent.trim() && !e.getAttribute('aria-label'))
  .map(e => e.outerHTML)"""
HEADERS_WITHOUT_SCOPE = "() => document.querySelectorAll('th:not([scope])').length"


def no_redirect_get(url: str) -> tuple[int, str | None]:
    """Status and Location of a GET, without following a redirect."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=60)
    try:
        conn.request("GET", parts.path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Location")
    finally:
        conn.close()


def chromium_path() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.fail("Debian's chromium is missing at /usr/bin/chromium: run `make bootstrap` (it installs "
                    "chromium and chromium-driver with apt-get when running as root)")
    pytest.skip("Debian's chromium is not installed (/usr/bin/chromium) and we are not root to install it: "
                "`sudo apt-get install -y chromium chromium-driver`, then run again")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian Chromium with a fresh, empty profile (removed afterwards)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    profile = tempfile.mkdtemp(prefix="patchrings-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=executable, args=LAUNCH_ARGS, headless=True,
                viewport={"width": 1360, "height": 900},
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def shot(page: Any, name: str) -> None:
    folder = os.environ.get("UI_SCREENSHOTS")
    if folder:
        target = Path(folder) if Path(folder).is_absolute() else REPO / folder
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"ui-{name}.png"), full_page=True)


def test_approve_ring1_from_the_page_and_watch_it_promote(platform_factory: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    p = platform_factory(scenario=REPO / "demo" / "scenarios" / "happy.yaml", plan=REPO / "demo" / "plan.json",
                         start=DEMO_START, settings={"WEBSITE_AUTH_ENABLED": "True"})
    found: dict[str, Any] = {}

    def waiting_for_ring1() -> bool:
        items = p.api("GET", "/api/rollouts").json.get("rollouts") or []
        if not items:
            return False
        found["id"] = items[0]["id"]
        doc = p.api("GET", f"/api/rollouts/{found['id']}").json
        found["doc"] = doc
        waiting = doc.get("waitingFor") or {}
        return waiting.get("what") == "approval" and waiting.get("ring") == "ring1"

    p.wait_for(waiting_for_ring1, timeout=300)
    rid, shown_hash = found["id"], found["doc"]["waitingFor"]["manifestHash"]
    ui = f"{p.base_url}/api/ui"

    # Fail closed: no principal, no page and no data (the key-holding JSON API is separate).
    anonymous = http_call("GET", f"{ui}/api/rollouts/{rid}")
    assert anonymous.status == 403 and anonymous.json["error"]["field"] == "X-MS-CLIENT-PRINCIPAL"
    page_status, location = no_redirect_get(f"{ui}/rollouts/{rid}")
    assert (page_status, location) == (302, f"/.auth/login/aad?post_login_redirect_uri=/api/ui/rollouts/{rid}")

    page = browser.new_page()
    # What App Service authentication adds to every request of a signed-in browser.
    page.set_extra_http_headers({"X-MS-CLIENT-PRINCIPAL": principal(APPROVER)})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    # The list: who I am, the rollout waiting for ring1.
    response = page.goto(ui)
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert response.headers["cache-control"] == "no-store"
    expect(page.locator("#me-name")).to_have_text(APPROVER)
    expect(page.locator("#me")).to_contain_text("approver of ring1")
    row = page.locator("#rollouts tbody tr", has_text=rid)
    expect(row).to_contain_text("ring1")
    shot(page, "rollout-list")

    # The rollout page: Ring 0's results, the filter, the manifest, the pending approval.
    with page.expect_navigation():
        row.get_by_role("link", name=rid).click()
    assert page.url.endswith(f"/api/ui/rollouts/{rid}")
    expect(page.locator("#ring-ring0 .phase")).to_have_attribute("data-phase", "passed")
    expect(page.locator("#ring-ring0")).to_contain_text("Gate:")
    expect(page.locator("#ring-ring1 .phase")).to_have_attribute("data-phase", "awaiting-approval")
    ring0 = next(r for r in found["doc"]["rings"] if r["name"] == "ring0")
    names = [vm["name"] for vm in ring0["vms"]]
    web = [name for name in names if name.startswith("r0-web")]
    assert names and web
    expect(page.locator("#vm-table tbody tr")).to_have_count(len(names))
    expect(page.locator("#vm-table tbody tr[data-ring=ring0]")).to_have_count(len(names))
    for vm in ring0["vms"]:  # short names, the kind (vm / arc) and the full id one click away
        row = page.locator(f"#vm-table tbody tr[data-vm='{vm['name']}']")
        expect(row.locator("th .vmname")).to_have_attribute("title", vm["id"])
        expect(row.locator("td").nth(1)).to_have_text(vm.get("kind") or "vm")
    page.get_by_label("Filter machines").fill("r0-web")
    expect(page.locator("#vm-table tbody tr:visible")).to_have_count(len(web))
    expect(page.locator("#vm-count")).to_have_text(f"{len(web)} of {len(names)} machines match")
    page.get_by_label("Filter machines").fill("")
    expect(page.locator("#vm-table tbody tr:visible")).to_have_count(len(names))
    expect(page.locator("#manifest-hash")).to_have_text(shown_hash)
    expect(page.locator("#manifest-kbs")).to_contain_text("KB5048667")
    expect(page.locator("#manifest-packages")).to_contain_text("openssl")
    expect(page.locator("#shown-hash")).to_have_text(shown_hash)
    diff = (found["doc"].get("manifest") or {}).get("diff") or {}
    for entry in diff.get("rings") or []:  # what each later ring's machines would install vs the manifest
        if "machines" in entry:
            expect(page.locator(f"#manifest-diff .ring-diff[data-ring={entry['ring']}]")).to_contain_text(
                f"{entry['machines']} machine(s), {entry['assessed']} assessed")
    expect(page.locator("#may-decide")).to_have_text("You may approve or reject.")
    approve = page.get_by_role("button", name="Approve ring1")
    expect(approve).to_be_enabled()
    assert page.evaluate(UNLABELLED) == [] and page.evaluate(HEADERS_WITHOUT_SCOPE) == 0

    # The assets the page loaded: versioned, immutable, right types.
    js = http_call("GET", f"{ui}/assets/app.js?v=0", headers={"X-MS-CLIENT-PRINCIPAL": principal(APPROVER)})
    assert js.status == 200 and js.headers["Content-Type"].startswith("text/javascript")
    assert js.headers["Cache-Control"] == "no-cache"  # not the shell's version: revalidate
    version = page.locator("script[src*='app.js']").get_attribute("src").split("v=")[1]
    js = http_call("GET", f"{ui}/assets/app.js?v={version}", headers={"X-MS-CLIENT-PRINCIPAL": principal(APPROVER)})
    assert js.headers["Cache-Control"] == "private, max-age=31536000, immutable"

    # A cross-site page cannot decide: no CSRF header, or a foreign Origin, is refused before
    # anything is recorded; a stale manifest hash is refused by the API (409) and recorded.
    decide_url = f"{ui}/api/rollouts/{rid}/rings/ring1/approve"
    who = {"X-MS-CLIENT-PRINCIPAL": principal(APPROVER)}
    forged = http_call("POST", decide_url, body={"manifestHash": shown_hash}, headers=who)
    assert (forged.status, forged.json["error"]["field"]) == (403, "X-PatchRings-CSRF")
    foreign = http_call("POST", decide_url, body={"manifestHash": shown_hash},
                        headers={**who, "X-PatchRings-CSRF": "1", "Origin": "https://evil.example"})
    assert (foreign.status, foreign.json["error"]["field"]) == (403, "Origin")
    stale = http_call("POST", decide_url, body={"manifestHash": "0000000000000000"},
                      headers={**who, "X-PatchRings-CSRF": "1"})
    assert (stale.status, stale.json["error"]["field"]) == (409, "manifestHash")
    expect(page.locator("#decisions-ledger")).to_contain_text("refused")
    shot(page, "rollout-waiting-for-approval")

    # Approve from the page, with a comment; the decision carries the hash the page showed.
    comment = page.get_by_label("Comment (recorded with your decision)")
    comment.fill("Ring 0 clean; go")
    comment.press("Tab")  # keyboard only: the next stop is the approve button
    expect(approve).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#action-message")).to_contain_text(f"Approved ring1 (manifest {shown_hash}): submitted")

    # Ring 1 opens, its maintenance run patches it, its gate passes; Ring 2 then waits for approval.
    def ring2_waiting() -> bool:
        waiting = p.api("GET", f"/api/rollouts/{rid}").json.get("waitingFor") or {}
        return waiting.get("what") == "approval" and waiting.get("ring") == "ring2"

    p.wait_for(ring2_waiting, timeout=300)
    expect(page.locator("#ring-ring1 .phase")).to_have_attribute("data-phase", "passed")
    expect(page.locator("#ring-ring1")).to_contain_text("opened")
    expect(page.locator("#ring-ring2 .phase")).to_have_attribute("data-phase", "awaiting-approval")
    expect(page.locator("#vm-table tbody tr[data-ring=ring1]").first).to_be_attached()
    expect(page.get_by_role("button", name="Approve ring2")).to_be_enabled()
    mine = page.locator("#decisions-ledger tbody tr", has_text="Ring 0 clean; go")
    # one line per decision: the request the API recorded (submitted) folded into the rollout's acceptance
    expect(mine).to_have_count(1)
    accepted = mine.filter(has_text="accepted")
    expect(accepted).to_contain_text(APPROVER)
    expect(accepted).to_contain_text(shown_hash)
    shot(page, "rollout-after-promotion")

    approvals = p.api("GET", f"/api/rollouts/{rid}").json["approvals"]
    recorded = [a for a in approvals if a.get("comment") == "Ring 0 clean; go"]
    assert {(a["verdict"], a["approver"], a["manifestHash"]) for a in recorded} == {("approve", APPROVER, shown_hash)}
    assert [a["outcome"] for a in recorded] == ["accepted"]  # its submission folded in (one line per decision)
    assert recorded[0]["decidedAt"] and recorded[0]["decidedAt"].endswith("Z")  # the rollout's (platform) time
    ledger_rows = p.api("GET", f"/api/rollouts/{rid}").json["ledger"]["approvals"]  # everything stays in the ledger
    assert sorted(r.get("outcome") for r in ledger_rows if r.get("comment") == "Ring 0 clean; go" or (
        r.get("decision") or {}).get("comment") == "Ring 0 clean; go") == ["accepted", "submitted"]
    assert errors == []


def test_locally_the_page_names_you_from_as_and_the_act_as_form(platform_factory: Any, browser: Any) -> None:
    """The local platform (``make demo``): no App Service authentication, the page sends the name
    from ``?as=`` (or its "act as" form) as ``X-PatchRings-Approver``, says it is not
    authenticated, and an approval, a halt and a resume from the page are recorded under that name;
    a dry run's page lists what each ring's machines would install."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    p = platform_factory(scenario=REPO / "demo" / "scenarios" / "happy.yaml", plan=REPO / "demo" / "plan.json",
                         start=DEMO_START)
    page = browser.new_page()
    ui = f"{p.base_url}/api/ui"
    page.goto(f"{ui}?as=bob@contoso.com")
    expect(page.locator("#me-name")).to_have_text("bob@contoso.com")
    expect(page.locator("#me")).to_contain_text("local platform, not authenticated")
    expect(page.locator("#me")).to_contain_text("approver of ring1")
    expect(page.locator("#section-list")).to_contain_text("No rollouts yet.")
    page.get_by_label("Act as").fill("carol@contoso.com")
    page.get_by_role("button", name="Use").click()
    expect(page.locator("#me-name")).to_have_text("carol@contoso.com")
    expect(page.locator("#me")).to_contain_text("approver of ring2")
    assert "as=carol%40contoso.com" in page.url or "as=carol@contoso.com" in page.url

    # The demo's way to decide: the page sends the name it shows; the rollout appears in the list.
    page.get_by_label("Act as").fill("bob@contoso.com")
    page.get_by_role("button", name="Use").click()
    expect(page.locator("#me-name")).to_have_text("bob@contoso.com")
    found: dict[str, Any] = {}

    def waiting_for_ring1() -> bool:
        items = p.api("GET", "/api/rollouts").json.get("rollouts") or []
        found.update(items[0] if items else {})
        return (found.get("waitingFor") or {}).get("ring") == "ring1"

    p.wait_for(waiting_for_ring1, timeout=300)
    expect(page.get_by_role("link", name=found["id"])).to_be_visible()  # the list shows it
    page.goto(f"{ui}/rollouts/{found['id']}")
    shown = page.locator("#shown-hash")
    expect(shown).to_have_text(found["waitingFor"]["manifestHash"])
    page.get_by_role("button", name="Approve ring1").click()
    expect(page.locator("#action-message")).to_contain_text("submitted")
    rows = [a for a in p.api("GET", f"/api/rollouts/{found['id']}").json["approvals"] if a.get("approver")]
    # one line per decision: "submitted" until the rollout acts on it, then its "accepted" row
    assert [(a["approver"], a["manifestHash"]) for a in rows][:1] == [
        ("bob@contoso.com", found["waitingFor"]["manifestHash"])]
    assert rows[0]["outcome"] in ("submitted", "accepted"), rows

    # Halt, then resume, from the page (each recorded under the page's name): as alice, who
    # approves Ring 1 and Ring 2, so she may resume wherever the rollout halts.
    def state() -> str:
        return str(p.api("GET", f"/api/rollouts/{found['id']}").json.get("state"))

    page.get_by_label("Act as").fill("alice@contoso.com")
    page.get_by_role("button", name="Use").click()
    expect(page.locator("#me-name")).to_have_text("alice@contoso.com")
    page.get_by_label("Reason (recorded)").fill("checking a report")
    page.get_by_role("button", name="Halt rollout").click()
    expect(page.locator("#action-message")).to_contain_text("Halt requested")
    p.wait_for(lambda: state() == "halted", timeout=300)
    resume = page.get_by_role("button", name="Resume rollout")
    expect(resume).to_be_enabled()
    expect(page.get_by_role("button", name="Halt rollout")).to_have_count(0)
    page.get_by_label("Reason (recorded)").fill("the report was fine")
    resume.click()
    expect(page.locator("#action-message")).to_contain_text("Resume requested")
    p.wait_for(lambda: state() != "halted", timeout=300)
    ledger = page.locator("#decisions-ledger")
    expect(ledger.locator("tbody tr", has_text="checking a report")).to_contain_text("alice@contoso.com")
    expect(ledger.locator("tbody tr", has_text="the report was fine").first).to_contain_text("resume")

    # A dry run's page lists, per ring and machine, what would be installed.
    started = p.api("POST", "/api/rollouts", {"dryRun": True}, headers={"X-PatchRings-Approver": "bob@contoso.com"})
    assert started.status == 202, started
    dry_id = started.json["id"]
    p.wait_for(lambda: p.api("GET", f"/api/rollouts/{dry_id}").json.get("runtimeStatus") == "Completed", timeout=300)
    output = p.api("GET", f"/api/rollouts/{dry_id}").json["output"]
    page.goto(f"{ui}/rollouts/{dry_id}")
    for ring in output["rings"]:
        section = page.locator(f"#section-dryrun .dry-ring[data-ring={ring['ring']}]")
        expect(section.locator(".dry-vms tbody tr")).to_have_count(len(ring["vms"]))
        expect(section).to_contain_text(f"{ring['summary']['vms']} machine(s), {ring['summary']['assessed']} assessed")
    shot(page, "dry-run")

    # An unknown rollout: the API's 404, said out loud.
    page.goto(f"{ui}/rollouts/ro-missing")
    expect(page.get_by_role("alert")).to_contain_text("no rollout 'ro-missing'")


def _waiting_plan() -> dict[str, Any]:
    """The default plan with ``quarantine.onBadManifest: wait`` (issue 11): with an active entry
    the next rollout does not start Ring 0 until a person decides."""
    plan = json.loads((REPO / "plans" / "default.json").read_text())
    plan["quarantine"] = {"onBadManifest": "wait"}
    return plan  # type: ignore[no-any-return]


def test_release_a_quarantined_entry_from_the_page_by_keyboard(held: Any, browser: Any) -> None:
    """Issue 11 on the page: a failed gate quarantines the patch it blames; the next rollout waits
    for a person before Ring 0. The page lists the entry (patches, why, from which rollout and ring,
    when) with a labelled checkbox; a non-approver and the initiator are told why they cannot
    decide; an approver ticks the entry and approves with the keyboard; the request is the CLI's
    (``releaseQuarantine``, bound to the ``q-...`` hash the page shows); Ring 0 then installs the
    released patch (its vendor fixed it: the fault fires once), the rollout goes on to Ring 1, and
    the entry reads back released, by that approver, through the page's API and the ledger."""
    from playwright.sync_api import expect

    from tests.functional import platform_scenario as sc
    from tests.functional.platform_driver import driver, ledger

    expect.set_options(timeout=TIMEOUT_MS)
    fault = {"type": "patchFails", "patch": sc.KB_OLD, "vms": ["r0-web-1"], "times": 1}
    p = held(sc.scenario(faults=[fault]), plan=_waiting_plan())
    d = driver(p)

    # cycle 1: the bad patch fails on r0-web-1, Ring 0's gate fails, its patches are quarantined
    first = d.start(who="dave@contoso.com")
    assert d.until_done(first).output["state"] == "halted"
    lg = ledger(p)
    plan_name = str((lg.rollout(first) or {}).get("planName"))
    [entry] = lg.quarantines(plan_name)
    assert entry["released"] is False and sc.KB_OLD in entry["kbs"]

    # cycle 2 (started by bob, an approver): it waits for a person before Ring 0
    second = d.start(who="bob@contoso.com")
    waiting = d.until_waiting(second, "approval", "ring0")["waitingFor"]
    assert waiting["kind"] == "quarantine" and waiting["quarantine"]["entries"] == [entry["id"]]
    token = waiting["manifestHash"]
    ui = f"{p.base_url}/api/ui"
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    # carol approves ring2 only: she sees the entry and why she cannot decide
    page.goto(f"{ui}/rollouts/{second}?as=carol@contoso.com")
    expect(page.locator("#decision-title")).to_have_text("Quarantine decision before ring0")
    expect(page.locator("#shown-hash")).to_have_text(token)
    row = page.locator(f"#quarantine-entries tbody tr[data-entry='{entry['id']}']")
    expect(row).to_contain_text(f"KB{sc.KB_OLD}")
    expect(row).to_contain_text(first)  # from which rollout ...
    expect(row).to_contain_text("ring0")  # ... and ring
    expect(row).to_contain_text(str(entry["reason"])[:40])  # why
    expect(row.locator("time")).to_have_attribute("datetime", entry["at"])  # when
    expect(page.get_by_label(f"Release {entry['id']}")).to_be_disabled()
    expect(page.locator("#may-decide")).to_contain_text("not an approver of ring0")
    expect(page.get_by_role("button", name="Approve ring0")).to_be_disabled()
    # bob started the rollout: he may reject, never approve (nor release)
    page.get_by_label("Act as").fill("bob@contoso.com")
    page.get_by_role("button", name="Use").click()
    expect(page.locator("#me-name")).to_have_text("bob@contoso.com")
    expect(page.locator("#may-decide")).to_contain_text("you started this rollout")
    expect(page.get_by_role("button", name="Reject ring0")).to_be_enabled()
    expect(page.get_by_label(f"Release {entry['id']}")).to_be_disabled()

    # alice approves ring1: she ticks the entry with the keyboard and approves with Enter
    page.get_by_label("Act as").fill("alice@contoso.com")
    page.get_by_role("button", name="Use").click()
    expect(page.locator("#me-name")).to_have_text("alice@contoso.com")
    box = page.get_by_label(f"Release {entry['id']}")
    expect(box).to_be_enabled()
    expect(page.locator("#release-summary")).to_contain_text("Nothing ticked: approve installs ring0 without")
    box.focus()
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    expect(page.locator("#release-summary")).to_contain_text(f"Approve releases 1 of 1 entry ({entry['id']})")
    assert page.evaluate(UNLABELLED) == [] and page.evaluate(HEADERS_WITHOUT_SCOPE) == 0
    shot(page, "quarantine-decision")
    comment = page.get_by_label("Comment (recorded with your decision)")
    comment.fill("vendor fixed KB" + sc.KB_OLD)
    comment.press("Tab")
    approve = page.get_by_role("button", name="Approve ring0")
    expect(approve).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#action-message")).to_contain_text(
        f"Approved ring0 (decision {token}) releasing {entry['id']}: submitted")

    # the request the API recorded is the CLI's: approve, bound to the token, releasing the entry
    submitted = [r for r in lg.approvals(second) if r.get("outcome") == "submitted" and r.get("kind") != "halt"]
    assert [(r["verdict"], r["approver"], r["manifestHash"], r["releaseQuarantine"]) for r in submitted] == [
        ("approve", "alice@contoso.com", token, [entry["id"]])]

    # the rollout goes on: Ring 0 installs the released patch, passes, and Ring 1 waits
    after = d.until_waiting(second, "approval", "ring1")
    assert after["rings"][0]["gate"]["outcome"] == "pass", after["rings"][0]
    assert any(sc.KB_OLD in k for k in p.arm.vm("r0-web-1").installed)
    # the entry is gone from the quarantine: read back through the page's API and the ledger
    seen = d.api("GET", f"/api/ui/api/rollouts/{second}", who="alice@contoso.com").json
    [shown] = [e for e in seen["quarantine"]["entries"] if e["id"] == entry["id"]]
    assert (shown["released"], shown["releasedBy"]) == (True, "alice@contoso.com") and shown["releasedAt"]
    assert seen["quarantine"]["decision"] == []  # nothing left to decide
    assert [e for e in lg.quarantines(plan_name) if not e.get("released")] == []
    accepted = [a for a in seen["approvals"] if a.get("kind") == "quarantine" and a.get("outcome") == "accepted"]
    assert [(a["choice"], a["releaseQuarantine"]) for a in accepted] == [("release", [entry["id"]])]

    # the page says so: the entry released by alice, the decision's release in the decisions
    state = page.locator(f"#quarantine-state tbody tr[data-entry='{entry['id']}']")
    expect(state).to_contain_text("released by alice@contoso.com")
    expect(page.locator("#decisions-ledger tbody tr", has_text=f"released {entry['id']}").first).to_contain_text(
        "alice@contoso.com")
    expect(page.locator("#ring-ring1 .phase")).to_have_attribute("data-phase", "awaiting-approval")
    shot(page, "quarantine-released")
    assert errors == []
