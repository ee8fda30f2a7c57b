"""Links handed to people go through App Service's login endpoint when its authentication is on
(issue 9 item: in Azure App Service answers a browser not signed in with 401, ``Return401``), and
are the plain page otherwise; decided by settings only (``WEBSITE_AUTH_ENABLED``)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from patchrings import deps
from patchrings.domain.plan import load_plan_file
from patchrings.notifications import build_cloud_event, person_link, webhook_body
from patchrings.settings import Settings
from tests.unit.app.fakes import FakeLedger
from tests.unit.app.test_http_status import HOST, REPO, RID, FakeClient, call, request, status
from triggers import http_api, rollout_views

pytestmark = pytest.mark.unit

PAGE = f"/api/ui/rollouts/{RID}"
LOGIN = f"{HOST}/.auth/login/aad?post_login_redirect_uri=/api/ui/rollouts/{RID}"


def test_person_link_is_the_login_form_only_when_signing_in() -> None:
    assert person_link(HOST, PAGE) == f"{HOST}{PAGE}"
    assert person_link(HOST, PAGE, sign_in=True) == LOGIN
    # the path is one query value: its own query / fragment characters are encoded
    assert person_link(HOST, "/api/ui/rollouts/a?b=c#d", sign_in=True) == (
        f"{HOST}/.auth/login/aad?post_login_redirect_uri=/api/ui/rollouts/a%3Fb%3Dc%23d")
    assert person_link(None, PAGE, sign_in=True) is None and person_link(HOST, "//evil", sign_in=True) is None


def test_the_notification_page_link_signs_in_and_the_approve_route_stays_plain() -> None:
    payload = {"kind": "approval-waiting", "id": "e1", "rolloutId": RID, "ring": "ring1", "severity": "info",
               "message": "approval waiting", "data": {"pagePath": PAGE, "deadline": "2026-11-17T06:00:00Z",
                                                       "approvePath": f"/api/rollouts/{RID}/rings/ring1/approve"}}
    plain = build_cloud_event(payload, link_base=HOST)["data"]
    assert plain["pageUrl"] == f"{HOST}{PAGE}"
    signed = build_cloud_event(payload, link_base=HOST, sign_in=True)
    assert signed["data"]["pageUrl"] == LOGIN
    assert signed["data"]["approveUrl"] == f"{HOST}/api/rollouts/{RID}/rings/ring1/approve"
    assert f"Open: {LOGIN}" in webhook_body(signed)["text"]


@pytest.fixture(params=[False, True], ids=["auth-off", "app-service-auth"])
def auth(request: pytest.FixtureRequest) -> Iterator[bool]:
    deps.reset()
    deps.override(plan=load_plan_file(REPO / "demo" / "plan.json"), ledger=FakeLedger(),
                  settings=Settings(approver_header_fallback=True, platform_auth_enabled=request.param))
    yield bool(request.param)
    deps.reset()


def test_the_api_page_links_follow_the_setting(auth: bool) -> None:
    page = LOGIN if auth else f"{HOST}{PAGE}"
    waiting = {"what": "approval", "until": "2026-11-17T06:00:00Z", "ring": "ring1", "pagePath": PAGE,
               "approveUrl": f"/api/rollouts/{RID}/rings/ring1/approve"}
    doc = {"state": "waiting", "rings": [], "waitingFor": waiting}
    client = FakeClient({RID: status("rollout_orchestrator", "Running", doc)})
    _, view = call(http_api.rollout_status, request(f"/api/rollouts/{RID}"), client)
    assert view["links"] == {"self": f"{HOST}/api/rollouts/{RID}", "page": page}
    assert view["waitingFor"]["pageUrl"] == page
    assert view["waitingFor"]["approveUrl"] == f"{HOST}/api/rollouts/{RID}/rings/ring1/approve"

    async def listing() -> list[object]:
        return [status("rollout_orchestrator", "Running", doc)]

    _, listed = call(http_api.rollouts, request("/api/rollouts", route={}), SimpleNamespace(get_status_all=listing))
    assert listed["rollouts"][0]["waitingFor"]["pageUrl"] == page


def test_approvals_show_one_line_per_decision_with_the_rollouts_time() -> None:
    # recorded from the happy demo's ledger: the API's "submitted" row (no time: the HTTP side has
    # no platform clock), then the rollout's "accepted" row for the same request
    submitted = {"decisionId": "78c2", "approver": "demo-approver@contoso.com", "ring": "ring1",
                 "manifestHash": "0545a0c241d8f8c9", "verdict": "approve", "comment": "ok", "outcome": "submitted"}
    accepted = {"ring": "ring1", "manifestHash": "0545a0c241d8f8c9", "outcome": "accepted",
                "at": "2026-11-16T09:55:22Z", "approver": "demo-approver@contoso.com", "verdict": "approve",
                "decision": {"approver": "demo-approver@contoso.com", "comment": "ok", "ring": "ring1",
                             "decidedAt": "2026-11-16T09:55:22Z", "manifestHash": "0545a0c241d8f8c9",
                             "verdict": "approve"}, "decisionId": "3519"}
    pending = {**submitted, "decisionId": "8a97", "ring": "ring2"}
    view = rollout_views.approvals_view([submitted, accepted, pending])
    assert [(a["ring"], a["outcome"], a["decidedAt"]) for a in view] == [
        ("ring1", "accepted", "2026-11-16T09:55:22Z"), ("ring2", "submitted", None)]


def test_the_webhook_approval_prompt_lists_what_is_signed_when_the_event_carries_it() -> None:
    payload = {"kind": "approval-waiting", "id": "e2", "rolloutId": RID, "ring": "ring1", "severity": "warning",
               "message": "waits for approval of manifest 0545a0c241d8f8c9",
               "data": {"manifestHash": "0545a0c241d8f8c9", "pagePath": PAGE,
                        "manifest": {"windows": [{"kb": "KB5048667", "title": "2026-11 Cumulative Update"}],
                                     "linux": [{"package": "openssl=3.0.2-0ubuntu1.19"}]}}}
    text = webhook_body(build_cloud_event(payload, link_base=HOST))["text"]
    assert "Manifest: KB5048667 2026-11 Cumulative Update; openssl=3.0.2-0ubuntu1.19" in text, text
    # the status document's summary shape too
    summary = {**payload, "data": {"manifest": {"windowsKbs": ["5048667"], "linuxPackages": ["curl=7.81"]}}}
    assert "Manifest: KB5048667; curl=7.81" in webhook_body(build_cloud_event(summary))["text"]
