"""Security suite: who may call, who may decide, and what hostile input gets (issue 13, items 3, 9-13, 15).

Runs the real triggers and orchestrators on the local host (fake-activity app: the fleet and the
ledger are in memory, so every refused action is visible), plus the full platform for hostile
correlationIds (real activities, the ARM simulator, Azurite, and an "attacker" listener on
127.0.0.1 that must never be contacted). Tests wait on state, never on wall time.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import make_clock
from emulator.host.testing import HostThread
from emulator.platform import HttpResult, http_call
from patchrings import deps
from patchrings.domain.plan import load_plan, load_plan_file
from patchrings.settings import Settings
from tests.functional.fakeapp import fleet
from tests.functional.fakeapp.driver import Driver, correlation_id, maintenance_event

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "fakeapp"
START = "2026-11-16T06:00:00Z"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BOB_OID = "0b7d6c4e-1111-4222-8333-944455556666"
ALICE_OID = "1c8e7d5f-2222-4333-9444-a55566667777"
EASY_AUTH = Settings(platform_auth_enabled=True)
LOCAL = Settings(approver_header_fallback=True)


def default_plan(**ring_changes: dict[str, Any]) -> dict[str, Any]:
    plan = load_plan_file(REPO / "plans" / "default.json").to_dict()
    plan.pop("hash", None)
    for ring in plan["rings"]:
        ring.update(ring_changes.get(ring["name"], {}))
    return plan


def principal(**claims: str) -> dict[str, str]:
    """The X-MS-CLIENT-PRINCIPAL header App Service authentication would inject."""
    types = {"oid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
             "tid": "http://schemas.microsoft.com/identity/claims/tenantid",
             "upn": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"}
    doc = {"auth_typ": "aad", "claims": [{"typ": types.get(k, k), "val": v} for k, v in claims.items()]}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(doc).encode()).decode()}


class Secure:
    """One fake-app host with chosen settings; HTTP helpers that send exactly the headers given."""

    def __init__(self, ht: HostThread, f: fleet.Fleet) -> None:
        self.ht = ht
        self.fleet = f
        self.d = Driver(ht)
        self.key = {"x-functions-key": ht.function_key}

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             *, key: bool = True) -> Any:
        return http_call(method, f"{self.ht.base_url}{path}", body=body,
                         headers={**(self.key if key else {}), **(headers or {})})

    def instances(self) -> list[Any]:
        return list(self.ht.call(self.ht.client().get_status_all()))

    def deliver(self, *events: dict[str, Any]) -> int:
        """An Event Grid delivery to the webhook with its system key, as Event Grid sends it."""
        url = self.ht.host.eventgrid_url("on_maintenance_event")
        return http_call("POST", url, body=list(events), headers={"aeg-event-type": "Notification"}).status

    def rollouts(self) -> list[str]:
        return [s.instance_id for s in self.instances() if s.name == "rollout_orchestrator"]


@pytest.fixture
def secure() -> Iterator[Any]:
    hosts: list[HostThread] = []

    def start(settings: Settings = LOCAL, plan: dict[str, Any] | None = None) -> Secure:
        plan = plan or default_plan()
        f = fleet.reset(load_plan(plan).to_dict())
        vms = (("r0-win-1", "Windows", "1", "ring0"), ("r0-lnx-1", "Linux", "2", "ring0"),
               ("r1-win-1", "Windows", "1", "ring1-hold"), ("r2-lnx-1", "Linux", "3", "ring2"))
        for name, os_name, zone, tag in vms:
            f.add(name, os_name, zone, tag)
        ht = HostThread(APP, make_clock("skip", start=START)).start()
        hosts.append(ht)
        deps.override(settings=settings, plan=load_plan(plan), ledger=f)
        return Secure(ht, f)

    yield start
    for ht in hosts:
        ht.stop()
        ht.clock.close()
    deps.reset()


# ---------------------------------------------------------------------- keys
def test_every_route_without_a_key_is_401(secure: Any) -> None:
    s = secure()
    routes = s.ht.host.triggers.routes
    assert len(routes) >= 6
    checked = 0
    for route in routes:
        path = "/api/" + (route.template.replace("{id}", "ro-x").replace("{ring}", "ring1")
                          .replace("{decision}", "approve"))
        for method in sorted(route.methods or {"GET", "POST"}):
            for headers in ({}, {"x-functions-key": "wrong"}):
                result = s.call(method, path, {"manifestHash": "x"} if method == "POST" else None, headers, key=False)
                assert result.status == 401, (method, path, headers, result)
                checked += 1
    assert checked >= 14
    assert s.instances() == [] and s.fleet.approvals_ == []


def test_extension_webhooks_need_their_system_key_not_a_function_key(secure: Any) -> None:
    """Azure: the Durable Task API and the Event Grid webhook take their extension's system key
    (or the master key); a function key is not enough (learn.microsoft.com function-keys-how-to)."""
    s = secure()
    base = s.ht.base_url
    for method, path in (("GET", "/runtime/webhooks/durabletask/instances"),
                         ("POST", "/runtime/webhooks/durabletask/instances/ro-x/raiseEvent/ApprovalDecision"),
                         ("POST", "/runtime/webhooks/durabletask/orchestrators/rollout_orchestrator"),
                         ("POST", "/runtime/webhooks/eventgrid?functionName=on_maintenance_event")):
        joiner = "&" if "?" in path else "?"
        for url in (f"{base}{path}", f"{base}{path}{joiner}code={s.ht.function_key}"):
            assert http_call(method, url, body={}).status == 401, (method, url)
    assert s.instances() == []


def test_admin_invocation_needs_the_master_key(secure: Any) -> None:
    s = secure()
    event = json.dumps([maintenance_event("pre", "mc-ring1", "2026-11-17T12:00:00Z")])
    result = http_call("POST", f"{s.ht.base_url}/admin/functions/on_maintenance_event", body={"input": event},
                       headers={"x-functions-key": s.ht.function_key})
    assert result.status == 401
    assert s.instances() == []


# ---------------------------------------------------------------------- identity
def test_forged_principal_is_not_trusted_without_app_service_authentication(secure: Any) -> None:
    s = secure(Settings())  # the default Azure deployment: authentication off, no fallback
    with s.d.clock.hold():
        rid = s.d.start(who="ignored@contoso.com")
        doc = s.d.until_waiting(rid, "approval", "ring1")
        body = {"manifestHash": doc["waitingFor"]["manifestHash"]}
        url = f"/api/rollouts/{rid}/rings/ring1/approve"
        forged = s.call("POST", url, body, {**principal(upn="bob@contoso.com", oid=BOB_OID, tid=TID),
                                            "X-MS-CLIENT-PRINCIPAL-NAME": "bob@contoso.com"})
        fallback = s.call("POST", url, body, {"X-PatchRings-Approver": "bob@contoso.com"})
        halt = s.call("POST", f"/api/rollouts/{rid}/halt", {}, principal(upn="bob@contoso.com"))
        assert s.d.doc(rid)["waitingFor"]["what"] == "approval"
    for result in (forged, fallback, halt):
        assert result.status == 403, result
        assert result.json["error"]["field"] == "X-MS-CLIENT-PRINCIPAL"
    rows = s.fleet.approvals(rid)
    assert [(r["verdict"], r["outcome"], r.get("authenticated")) for r in rows] == [
        ("approve", "refused", False), ("approve", "refused", False), ("halt", "refused", False)]
    assert rows[0]["claimedBy"] == "bob@contoso.com"
    assert s.fleet.called("ledger_record_approval") == []  # nothing reached the rollout


def test_easy_auth_principal_approves_by_object_id_never_by_display_name(secure: Any) -> None:
    plan = default_plan(ring1={"approval": {"mode": "manual", "approvers": [f"{TID}/{BOB_OID}", ALICE_OID],
                                            "timeout": "P1D", "onTimeout": "reject"}})
    s = secure(EASY_AUTH, plan)
    with s.d.clock.hold():
        started = s.call("POST", "/api/rollouts", {}, principal(upn="alice@contoso.com", oid=ALICE_OID, tid=TID))
        assert started.status == 202, started
        rid = started.json["id"]
        doc = s.d.until_waiting(rid, "approval", "ring1")
        body = {"manifestHash": doc["waitingFor"]["manifestHash"]}
        url = f"/api/rollouts/{rid}/rings/ring1/approve"
        by_name = s.call("POST", url, body, principal(name="Bob", preferred_username="bob@contoso.com"))
        wrong_tenant = s.call("POST", url, body, principal(oid=BOB_OID, tid="11111111-2222-4333-8444-555555555555"))
        self_approval = s.call("POST", url, body, principal(oid=ALICE_OID, tid=TID, upn="alice@contoso.com"))
        fallback = s.call("POST", url, body, {"X-PatchRings-Approver": f"{TID}/{BOB_OID}"})
        ok = s.call("POST", url, body, principal(oid=BOB_OID, tid=TID, name="Robert"))
        s.d.until_waiting(rid, "pre-maintenance event", "ring1")
    assert started.json["initiator"] == "alice@contoso.com"
    assert (by_name.status, by_name.json["error"]["field"]) == (403, "X-MS-CLIENT-PRINCIPAL")
    assert (wrong_tenant.status, wrong_tenant.json["error"]["field"]) == (403, "approver")
    assert self_approval.status == 403 and "started this rollout" in self_approval.json["error"]["message"]
    assert fallback.status == 403
    assert ok.status == 202, ok
    assert ok.json["decision"]["approver"] == f"{TID}/{BOB_OID}"
    assert ok.json["decision"]["principal"]["oid"] == BOB_OID
    rows = s.fleet.approvals(rid)
    assert [r["outcome"] for r in rows] == ["refused"] * 4 + ["submitted"]
    submitted = rows[-1]
    for key in ("decisionId", "approver", "ring", "manifestHash", "verdict", "comment", "outcome"):
        assert key in submitted, key
    # the HTTP trigger cannot read the platform's clock: the rollout stamps the decision's time
    assert "decidedAt" not in submitted and "at" not in submitted


# ---------------------------------------------------------------------- resume and halt
def test_resume_needs_an_approver_of_the_ring_and_is_recorded_before_it_is_raised(secure: Any) -> None:
    s = secure()
    with s.d.clock.hold():
        rid = s.d.start(who="dave@contoso.com")
        s.d.until_waiting(rid, "approval", "ring1")
        nobody = s.call("POST", f"/api/rollouts/{rid}/halt", {"reason": "incident"})
        halted = s.call("POST", f"/api/rollouts/{rid}/halt", {"reason": "incident"},
                        {"X-PatchRings-Approver": "dave@contoso.com"})
        s.d.until(lambda: s.d.doc(rid).get("state") == "halted")
        key_only = s.call("POST", f"/api/rollouts/{rid}/resume", {})
        outsider = s.call("POST", f"/api/rollouts/{rid}/resume", {}, {"X-PatchRings-Approver": "carol@contoso.com"})
        resumed = s.call("POST", f"/api/rollouts/{rid}/resume", {"reason": "fixed"},
                         {"X-PatchRings-Approver": "Bob@Contoso.com"})
        s.d.until(lambda: s.d.doc(rid).get("state") != "halted")
    assert nobody.status == 403 and halted.status == 202, (nobody, halted)
    assert halted.json["by"] == "dave@contoso.com"
    assert key_only.status == 403 and key_only.json["error"]["field"] == "X-MS-CLIENT-PRINCIPAL"
    assert outsider.status == 403 and outsider.json["error"]["field"] == "approver"  # carol approves ring2 only
    assert resumed.status == 202, resumed
    resume_id = resumed.json["resumeId"]
    assert resumed.json["ring"] == "ring1" and resumed.json["approver"] == "bob@contoso.com"
    rows = {r["decisionId"]: r for r in s.fleet.approvals(rid)}
    row = rows[resume_id]
    assert (row["verdict"], row["outcome"], row["by"], row["approver"], row["ring"]) == (
        "resume", "submitted", "Bob@Contoso.com", "bob@contoso.com", "ring1")
    assert [r["outcome"] for r in rows.values() if r["verdict"] == "resume"].count("refused") == 2
    assert s.fleet.rollouts_[rid]["haltedBy"] == "dave@contoso.com"


# ---------------------------------------------------------------------- inline plans
def test_inline_plans_are_refused_and_start_nothing(secure: Any) -> None:
    s = secure()
    weak = default_plan(ring1={"approval": {"mode": "none"}}, ring2={"approval": {"mode": "none"}})
    mine = default_plan(ring1={"approval": {"mode": "manual", "approvers": ["mallory@contoso.com"]}})
    with s.d.clock.hold():
        off = s.call("POST", "/api/rollouts", {"plan": default_plan()}, {"X-PatchRings-Approver": "dave@contoso.com"})
        deps.override(settings=Settings(approver_header_fallback=True, inline_plans=True))
        weakened = s.call("POST", "/api/rollouts", {"plan": weak})
        own = s.call("POST", "/api/rollouts", {"plan": mine})
        on_timeout = s.call("POST", "/api/rollouts", {"plan": default_plan(
            ring1={"approval": {"mode": "manual", "approvers": ["alice@contoso.com"], "onTimeout": "approve"}})})
        direct = s.call("POST", "/api/rollouts", {"plan": default_plan(ring0={"members": {
            "tag": {"name": "patchRing", "value": "ring2"}, "subscriptions": [fleet.SUB]}})})
        invalid = s.call("POST", "/api/rollouts", {"plan": {"rings": []}})
        assert s.instances() == []
        narrower = s.call("POST", "/api/rollouts", {"plan": default_plan(
            ring1={"approval": {"mode": "manual", "approvers": ["bob@contoso.com"]}})})
    assert (off.status, off.json["error"]["code"], off.json["error"]["field"]) == (403, "PlanForbidden", "plan")
    assert (weakened.status, weakened.json["error"]["field"]) == (403, "plan.rings[1].approval.mode")
    assert {d["field"] for d in weakened.json["error"]["details"]} == {
        "plan.rings[1].approval.mode", "plan.rings[2].approval.mode"}
    assert (own.status, own.json["error"]["field"]) == (403, "plan.rings[1].approval.approvers")
    assert (on_timeout.status, on_timeout.json["error"]["field"]) == (403, "plan.rings[1].approval.onTimeout")
    assert (direct.status, direct.json["error"]["field"]) == (403, "plan.rings[0].members")
    assert (invalid.status, invalid.json["error"]["code"]) == (400, "PlanInvalid")
    assert narrower.status == 202, narrower


# ---------------------------------------------------------------------- webhooks around the API
def test_a_decision_raised_through_the_durable_webhook_does_not_approve(secure: Any) -> None:
    """DEPENDS ON the rollout orchestrator's side of issue 13.13 (engineer D2a): a raised
    ApprovalDecision counts only when it matches a ``submitted`` Approvals row by decisionId."""
    s = secure()
    with s.d.clock.hold():
        rid = s.d.start(who="dave@contoso.com")
        doc = s.d.until_waiting(rid, "approval", "ring1")
        forged = {"decisionId": "forged-1", "approver": "bob@contoso.com", "ring": "ring1",
                  "manifestHash": doc["waitingFor"]["manifestHash"], "verdict": "approve", "comment": "",
                  "decidedAt": START}
        url = (f"{s.ht.base_url}/runtime/webhooks/durabletask/instances/{rid}/raiseEvent/ApprovalDecision"
               f"?code={s.ht.host.master_key}")
        raised = http_call("POST", url, body=forged)
        assert raised.status == 202, raised
        # Either the forged decision is taken (ring1 opens) or the approval times out (rejected).
        s.d.until(lambda: (s.d.doc(rid).get("waitingFor") or {}).get("what") != "approval"
                  or s.d.runtime(rid) in ("Completed", "Failed", "Terminated"))
    assert (s.d.doc(rid).get("waitingFor") or {}).get("what") != "pre-maintenance event"
    assert s.fleet.called("retag_vms") == [] or all(p["value"] != "ring1" for p in s.fleet.called("retag_vms"))
    assert all(p["decision"]["approver"] != "bob@contoso.com" for p in s.fleet.called("ledger_record_approval"))


# ---------------------------------------------------------------------- hostile input
class Attacker:
    """A listener on 127.0.0.1 that records every request it gets (it must get none)."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(f"GET {self.path} {self.headers.get('Authorization')}")
                self.send_response(200)
                self.end_headers()

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.hits = hits
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hostile_events(attacker: str) -> list[dict[str, Any]]:
    good = correlation_id("mc-ring1", "2026-11-17T12:00:00Z")
    config = f"{fleet.MC}/mc-ring1"
    ids = [
        f"{attacker}/subscriptions/x/providers/Microsoft.Maintenance/applyUpdates/20261117120000",
        attacker.replace("http:", "https:") + good,
        f"{good}?api-version=2023-04-01&next={attacker}",
        f"{good}#{attacker}",
        f"{config}/providers/Microsoft.Maintenance/applyUpdates/../../../../{attacker}",
        f"{config}/providers/Microsoft.Maintenance/applyUpdates/2026111712",  # not 14 digits
        f"//{attacker.split('//')[1]}{good}",
        correlation_id("mc-ring2", "2026-11-17T12:00:00Z"),  # another configuration's run
        good + "/" + "A" * 2048,  # over 1 KiB
        "%2F%3F%3D" * 200,
    ]
    events = []
    for cid in ids:
        event = maintenance_event("pre", "mc-ring1", "2026-11-17T12:00:00Z")
        event["data"]["correlationId"] = cid
        event["id"] = cid
        events.append(event)
    return events


def test_hostile_correlation_ids_are_acknowledged_and_start_nothing(secure: Any) -> None:
    s = secure()
    attacker = Attacker()
    try:
        with s.d.clock.hold():
            statuses = [s.deliver(event) for event in hostile_events(attacker.url)]
            # a well-formed run of a planned configuration still starts its guard
            assert s.deliver(maintenance_event("pre", "mc-ring1", "2026-11-17T12:00:00Z")) == 202
            s.d.until(lambda: any(i.name == "guard_orchestrator" and i.runtime_status.value == "Completed"
                                  for i in s.instances()))
    finally:
        attacker.close()
    assert all(200 <= status < 300 for status in statuses), statuses
    started = [i.instance_id for i in s.instances()]
    assert len(started) == 1 and started[0].startswith("guard-mw-pre-mc-ring1-"), started
    assert attacker.hits == []
    assert [e["correlationId"] for e in s.fleet.events_] == [correlation_id("mc-ring1", "2026-11-17T12:00:00Z")]
    assert [p["correlationId"] for p in s.fleet.called("cancel_run")] == [
        correlation_id("mc-ring1", "2026-11-17T12:00:00Z")]


def test_a_direct_ring_from_a_configuration_has_its_own_runs_guarded(secure: Any) -> None:
    plan = default_plan(ring0={"members": {"tag": {"name": "patchRing", "value": "ring0"},
                                           "maintenanceConfigurationId": f"{fleet.MC}/mc-ring0",
                                           "subscriptions": [fleet.SUB]}})
    s = secure(LOCAL, plan)
    with s.d.clock.hold():
        assert s.deliver(maintenance_event("pre", "mc-ring0", "2026-11-17T12:00:00Z")) == 202
        s.d.until(lambda: any(i.name == "guard_orchestrator" and i.runtime_status.value == "Completed"
                              for i in s.instances()))
    guard = next(i for i in s.instances() if i.name == "guard_orchestrator")
    assert guard.output["decision"] == "cancelled", guard.output
    assert [p["correlationId"] for p in s.fleet.called("cancel_run")] == [
        correlation_id("mc-ring0", "2026-11-17T12:00:00Z")]


def raw_call(method: str, url: str, data: bytes, headers: dict[str, str]) -> HttpResult:
    """Send bytes as they are (``http_call`` would JSON-encode them)."""
    req = urllib.request.Request(url, data=data, method=method, headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return HttpResult(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        return HttpResult(err.code, dict(err.headers), err.read())


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/rollouts", "[" * 5000 + "]" * 5000, "body"),
        ("POST", "/api/rollouts", '{"reason": ' + "[" * 200 + "]" * 200 + "}", "body"),
        ("POST", "/api/plans/validate", '{"plan":' * 3000 + "1" + "}" * 3000, "body"),
        ("GET", "/api/rollouts/ro-1%3Fcode%3Dx%26a%3D", None, "id"),
        ("GET", "/api/rollouts/@rollout@x", None, "id"),
        ("GET", "/api/rollouts/" + "a" * 300, None, "id"),
        ("POST", "/api/rollouts/ro-1%3Fx%3D1/halt", {}, "id"),
        ("POST", "/api/rollouts/ro-1/rings/ring%3F1/approve", {"manifestHash": "x"}, "ring"),
        ("POST", "/api/rollouts/ro-1/resume", {"reason": 5}, "reason"),
    ],
)
def test_malformed_requests_get_4xx_naming_the_field(secure: Any, method: str, path: str, body: Any,
                                                     field: str) -> None:
    s = secure()
    raw = body if isinstance(body, str) else None
    if raw is not None:
        result = raw_call(method, f"{s.ht.base_url}{path}", raw.encode(), s.key)
    else:
        result = s.call(method, path, body, {"X-PatchRings-Approver": "bob@contoso.com"})
    assert 400 <= result.status < 500, result
    assert result.json["error"]["field"] == field, result
    assert s.instances() == []


def test_hostile_correlation_ids_on_the_platform_reach_no_other_host(platform: Any) -> None:
    """The real app (real activities, ARM simulator, Azurite): hostile correlationIds are
    acknowledged, start nothing, and no request reaches the attacker or mentions it in ARM."""
    from tests.functional.platform_driver import driver

    d = driver(platform)
    attacker = Attacker()
    url = platform.host.eventgrid_url("on_maintenance_event")
    try:
        statuses = [http_call("POST", url, body=[event], headers={"aeg-event-type": "Notification"}).status
                    for event in hostile_events(attacker.url)]
        instances = platform.loop.call(d.ht.client().get_status_all())
    finally:
        attacker.close()
    assert all(200 <= status < 300 for status in statuses), statuses
    assert [i.instance_id for i in instances] == []
    assert attacker.hits == []
    port = attacker.url.rsplit(":", 1)[1]
    assert platform.arm.recorder.find(path_contains=port) == []
    assert platform.arm.recorder.find(path_contains="applyUpdates") == []

    # The ledger itself holds an over-long key (a 2 KiB id) on one row instead of failing every
    # redelivery: Azure Table keys hold 1 KiB, Azurite refuses more than 512 characters.
    from tests.functional.platform_driver import ledger

    book = ledger(platform)
    huge = correlation_id("mc-ring1", "2026-11-17T12:00:00Z") + "/" + "%2F?#" * 400
    config = f"{fleet.MC}/mc-ring1" + "/x" * 300
    assert book.record_event(config, "Microsoft.Maintenance.PreMaintenanceEvent", huge, {"kind": "pre"}) is True
    assert book.record_event(config, "Microsoft.Maintenance.PreMaintenanceEvent", huge, {"kind": "pre"}) is False
    row = book.event(config, "Microsoft.Maintenance.PreMaintenanceEvent", huge)
    assert row is not None and row["eventId"] == huge
    assert [r["eventId"] for r in book.events(config)] == [huge]
    assert book.record_approval("ro-" + "x" * 600, "d" * 600, {"outcome": "refused"}) is True
    assert [r["decisionId"] for r in book.approvals("ro-" + "x" * 600)] == ["d" * 600]


# ---------------------------------------------------------------------- POST /api/events (WebHook + Entra)
def test_events_endpoint_handshakes_and_routes_like_the_trigger(secure: Any) -> None:
    """The HTTP endpoint a WebHook destination reaches when App Service authentication is on."""
    s = secure()
    from tests.contracts import EVENTGRID_EXAMPLES

    validation = json.loads((EVENTGRID_EXAMPLES / "SubscriptionValidationEvent.eventgrid-schema.json").read_text())
    run = correlation_id("mc-ring1", "2026-11-17T12:00:00Z")
    attacker = Attacker()
    try:
        with s.d.clock.hold():
            no_key = s.call("POST", "/api/events", validation, {"aeg-event-type": "SubscriptionValidation"}, key=False)
            shake = s.call("POST", "/api/events", validation, {"aeg-event-type": "SubscriptionValidation"})
            forged = [{**validation[0], "data": {"validationCode": "x\r\nSet-Cookie: a=b",
                                                "validationUrl": attacker.url}}]
            bad_shake = s.call("POST", "/api/events", forged, {"aeg-event-type": "SubscriptionValidation"})
            options = http_call("OPTIONS", f"{s.ht.base_url}/api/events",
                                headers={**s.key, "WebHook-Request-Origin": "eventgrid.azure.net"})
            junk = [s.call("POST", "/api/events", body, {"aeg-event-type": "Notification"})
                    for body in ([1, "x", None], {"eventType": "Microsoft.Storage.BlobCreated", "data": {}},
                                 hostile_events(attacker.url))]
            not_json = raw_call("POST", f"{s.ht.base_url}/api/events", b"{" * 4000, s.key)
            good = s.call("POST", "/api/events", [maintenance_event("pre", "mc-ring1", "2026-11-17T12:00:00Z")] * 2,
                          {"aeg-event-type": "Notification"})
            s.d.until(lambda: any(i.name == "guard_orchestrator" and i.runtime_status.value == "Completed"
                                  for i in s.instances()))
    finally:
        attacker.close()
    assert no_key.status == 401
    assert (shake.status, shake.json) == (200, {"validationResponse": validation[0]["data"]["validationCode"]})
    assert bad_shake.status == 400 and attacker.hits == []  # the validationUrl is never fetched
    assert options.status == 200 and options.headers.get("WebHook-Allowed-Origin") == "eventgrid.azure.net"
    assert [r.status for r in junk] == [200, 200, 200], junk
    assert not_json.status == 400
    assert good.status == 200 and good.json["results"] == ["routed", "routed"]
    assert [i.instance_id.split("-mc-")[0] for i in s.instances()] == ["guard-mw-pre"]
    assert [p["correlationId"] for p in s.fleet.called("cancel_run")] == [run]
    assert [e["correlationId"] for e in s.fleet.events_] == [run]


def test_guards_follow_the_ring_shape(secure: Any) -> None:
    """Every pre-event of every planned configuration gets a guard: Ring 0's (direct: its
    pre-event also starts the rollout), a later direct ring's, and a gated scheduled ring's."""
    plan = default_plan(
        ring0={"members": {"tag": {"name": "patchRing", "value": "ring0"},
                           "maintenanceConfigurationId": f"{fleet.MC}/mc-ring0", "subscriptions": [fleet.SUB]}},
        ring1={"patching": "direct", "open": {"mode": "none"},
               "members": {"tag": {"name": "patchRing", "value": "ring1"},
                           "maintenanceConfigurationId": f"{fleet.MC}/mc-ring1", "subscriptions": [fleet.SUB]}})
    s = secure(LOCAL, plan)
    when = "2026-11-20T12:00:00Z"
    with s.d.clock.hold():
        for configuration in ("mc-ring0", "mc-ring1", "mc-ring2"):
            assert s.deliver(maintenance_event("pre", configuration, when)) == 202
        guards = sorted(i.instance_id.split("-2026")[0] for i in s.instances() if i.name == "guard_orchestrator")
        rollouts = [i.instance_id for i in s.instances() if i.name == "rollout_orchestrator"]
    assert guards == ["guard-mw-pre-mc-ring0", "guard-mw-pre-mc-ring1", "guard-mw-pre-mc-ring2"], guards
    assert len(rollouts) == 1 and rollouts[0].startswith("mw-pre-mc-ring0-")


def test_easy_auth_setting_reaches_the_app_on_the_platform(platform_factory: Any) -> None:
    """WEBSITE_AUTH_ENABLED=True set as App Service sets it (an environment variable of the host):
    the principal header identifies the caller, the local fallback header no longer does."""
    p = platform_factory(settings={"WEBSITE_AUTH_ENABLED": "True"})
    started = p.api("POST", "/api/rollouts", {"dryRun": True}, headers=principal(upn="dave@contoso.com"))
    assert started.status == 202 and started.json["initiator"] == "dave@contoso.com", started
    rid = started.json["id"]
    url = f"/api/rollouts/{rid}/rings/ring1/approve"
    body = {"manifestHash": "0000"}
    fallback = p.api("POST", url, body, headers={"X-PatchRings-Approver": "bob@contoso.com"})
    outsider = p.api("POST", url, body, headers=principal(upn="mallory@contoso.com"))
    bob = p.api("POST", url, body, headers=principal(upn="bob@contoso.com"))
    assert (fallback.status, fallback.json["error"]["field"]) == (403, "X-MS-CLIENT-PRINCIPAL")
    assert (outsider.status, outsider.json["error"]["field"]) == (403, "approver")
    assert bob.status == 409, bob  # identified and an approver; nothing is pending in a dry run
    from tests.functional.platform_driver import ledger

    rows = ledger(p).approvals(rid)
    assert sorted(r["outcome"] for r in rows) == ["refused"] * 3


def test_a_forged_pre_event_for_a_real_run_takes_neither_its_guard_nor_its_delivery(secure: Any) -> None:
    """A pre-event with a real run's correlationId but another start (issue 13 item 14): far from
    the run name it is refused outright; near it, it gets a guard of its own (which can only
    cancel), and the real pre-event still starts the real run's guard and is recorded."""
    s = secure()
    real = maintenance_event("pre", "mc-ring1", "2026-11-17T12:00:00Z")
    far = json.loads(json.dumps(real))
    far["data"]["startDateTime"] = "2099-01-01T12:00:00Z"
    near = json.loads(json.dumps(real))
    near["data"]["startDateTime"] = "2026-11-17T15:00:00Z"
    with s.d.clock.hold():
        assert s.deliver(far) == 202
        assert [i.instance_id for i in s.instances()] == []  # refused: no guard waits until 2099
        assert s.deliver(near) == 202
        assert s.deliver(real) == 202
        s.d.until(lambda: len([i for i in s.instances() if i.name == "guard_orchestrator"]) == 2)
    guards = sorted(i.instance_id for i in s.instances() if i.name == "guard_orchestrator")
    assert [g.rsplit("-", 1)[-1] for g in guards] == ["20261117120000", "20261117150000"], guards
    starts = sorted(e["startDateTime"] for e in s.fleet.events_)
    assert starts == ["2026-11-17T12:00:00Z", "2026-11-17T15:00:00Z"]  # the real one was not taken as seen
