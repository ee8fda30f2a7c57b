"""Property-based fuzz of the HTTP API and the Event Grid trigger on the local host (issue 13.15).

Thousands of generated requests (derandomized: the same inputs on every run) against the real
triggers and orchestrators (fake-activity app, in-memory ledger), on one host:

Surfaces: POST /api/rollouts, the approve/reject route, halt/resume/status, POST
/api/plans/validate, the Event Grid trigger's webhook and POST /api/events (WebHook delivery).

* no response is a 5xx (malformed input is the caller's fault: 4xx JSON naming the field; an
  Event Grid delivery that does not belong is acknowledged);
* no orchestration is started by malformed input (the only instance is the rollout the test
  starts itself), and no generated decision approves it;
* the host is healthy after: it lists rollouts and a real approval still goes through.
"""

from __future__ import annotations

import base64
import json
import re
import string
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.clock import make_clock
from emulator.host.testing import HostThread
from patchrings import deps
from patchrings.domain.plan import load_plan, load_plan_file
from patchrings.settings import Settings
from tests.functional.fakeapp import fleet
from tests.functional.fakeapp.driver import Driver, maintenance_event

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "fakeapp"
START = "2026-11-16T06:00:00Z"
EXAMPLES = 600  # per fuzzed surface; six surfaces -> 3600 inputs
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
# An applyUpdates run id exactly as AUM writes it (an independent oracle, not the app's parser).
VALID_RUN = re.compile(
    r"/subscriptions/[0-9a-f-]{36}/resourceGroups/[A-Za-z0-9._()-]+/providers/Microsoft\.Maintenance/"
    r"maintenanceConfigurations/[A-Za-z0-9._()-]+/providers/Microsoft\.Maintenance/applyUpdates/[0-9]{14}",
    re.IGNORECASE,
)


class Target:
    def __init__(self, ht: HostThread) -> None:
        self.ht = ht
        self.key = {"x-functions-key": ht.function_key}
        self.statuses: Counter[int] = Counter()
        self.server_errors: list[str] = []
        self.sent = 0

    def send(self, method: str, path: str, data: bytes | None, headers: dict[str, str] | None = None) -> int:
        req = urllib.request.Request(f"{self.ht.base_url}{path}", data=data, method=method,
                                     headers={**self.key, "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        self.sent += 1
        self.statuses[status] += 1
        if status >= 500:
            sent = data[:200] if data else b""
            self.server_errors.append(f"{method} {path[:200]} {sent!r} -> {status} {body[:300]!r}")
        return status

    def instances(self) -> list[Any]:
        return list(self.ht.call(self.ht.client().get_status_all()))


@pytest.fixture
def target() -> Iterator[Target]:
    plan = load_plan_file(REPO / "plans" / "default.json")
    f = fleet.reset(plan.to_dict())
    for name, os_name, zone, tag in (("r0-win-1", "Windows", "1", "ring0"), ("r1-win-1", "Windows", "1", "ring1-hold")):
        f.add(name, os_name, zone, tag)
    ht = HostThread(APP, make_clock("skip", start=START)).start()
    deps.override(settings=Settings(approver_header_fallback=True), plan=load_plan(plan.to_dict()), ledger=f)
    try:
        yield Target(ht)
    finally:
        ht.stop()
        ht.clock.close()
        deps.reset()


# ---------------------------------------------------------------------- strategies
json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
nasty_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.sampled_from([
    "@rollout@x", "ro-1?code=x", "ro-1#frag", "../..", "%3F%3D", "a" * 300, "", " ", "ro-1/../../admin",
    "https://127.0.0.1:1/x", "\u0000", "\ud7ff", "ro-" + "9" * 254,
])
route_ids = nasty_text.map(lambda s: urllib.parse.quote(s, safe="")) | st.from_regex(r"[A-Za-z0-9._:-]{1,300}",
                                                                                    fullmatch=True)
deep = st.integers(60, 3000).map(lambda n: ("[" * n + "]" * n).encode())
raw_bodies = st.binary(max_size=200) | deep | json_values.map(lambda v: json.dumps(v).encode())


def principal_values() -> st.SearchStrategy[str]:
    docs = st.fixed_dictionaries({"claims": st.lists(st.fixed_dictionaries(
        {"typ": st.sampled_from(["upn", "oid", "tid", "name", "preferred_username", "x"]), "val": json_values}),
        max_size=4)}) | json_values
    return docs.map(lambda d: base64.b64encode(json.dumps(d).encode()).decode()) | st.text(max_size=60)


identity_headers = st.fixed_dictionaries({}, optional={
    "X-MS-CLIENT-PRINCIPAL": principal_values(),
    "X-MS-CLIENT-PRINCIPAL-NAME": st.text(string.printable, max_size=40),
    "X-PatchRings-Approver": st.text(string.ascii_letters + "@.-", max_size=40),
}).map(lambda h: {k: v for k, v in h.items() if all(32 <= ord(c) < 127 for c in v) and v.strip() == v})

# Start bodies that are malformed on purpose: at least one field with a wrong type, or an
# unknown field, so a 202 from POST /api/rollouts would be a bug.
bad_start = st.one_of(
    st.fixed_dictionaries({"dryRun": json_values.filter(lambda v: not isinstance(v, bool))}),
    st.fixed_dictionaries({"reason": json_values.filter(lambda v: v is not None and not isinstance(v, str))}),
    st.fixed_dictionaries({"plan": json_values}),
    st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k not in ("dryRun", "plan", "reason")),
                    json_values, min_size=1, max_size=3),
).map(lambda d: json.dumps(d).encode()) | raw_bodies.filter(lambda b: b.strip() not in (b"", b"{}"))


def is_valid_run(value: Any) -> bool:
    """A run id once surrounding whitespace is trimmed (the parser trims; nothing else is lenient)."""
    return isinstance(value, str) and bool(VALID_RUN.fullmatch(value.strip()))


@st.composite
def hostile_events(draw: st.DrawFn) -> bytes:
    """A maintenance event whose publisher-controlled part is hostile: a broken correlationId,
    fields of any type, data that is not an object, an event type that does not belong.

    The envelope (id, topic, eventTime, dataVersion...) keeps valid types: Event Grid writes it
    itself, and the Functions worker decodes it before any app code runs.
    """
    kind = draw(st.sampled_from(["pre", "post"]))
    cloud = draw(st.booleans())
    event = maintenance_event(kind, draw(st.sampled_from(["mc-ring1", "mc-ring2", "mc-x"])), "2026-11-17T12:00:00Z",
                              cloud=cloud, pascal=draw(st.booleans()))
    event["id"] = draw(st.uuids()).hex  # data.correlationId falls back to the event id: never a run id here
    data = event["data"]
    cid_key = next(k for k in data if k.lower() == "correlationid")
    data[cid_key] = draw(json_values.filter(lambda v: not is_valid_run(v))
                         | nasty_text.filter(lambda v: not is_valid_run(v))
                         | st.builds(lambda tail: data[cid_key] + tail, nasty_text)
                         .filter(lambda v: not is_valid_run(v)))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*data.keys(), "status", "x"]))
        data[key] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        event["data"] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        event["type" if cloud else "eventType"] = draw(st.text(string.printable, max_size=60))
    if draw(st.booleans()):
        event["subject"] = draw(st.text(string.printable, max_size=600))
    return json.dumps([event] if draw(st.booleans()) or not cloud else event).encode()


# ---------------------------------------------------------------------- the run
def test_fuzz_api_and_event_grid_never_5xx_and_start_nothing(target: Target) -> None:
    d = Driver(target.ht)
    with d.clock.hold():
        rid = d.start(who="dave@contoso.com")
        doc = d.until_waiting(rid, "approval", "ring1")
        good_hash = doc["waitingFor"]["manifestHash"]
        ids = st.just(rid) | route_ids
        # the webhook with its system key (eventgrid_extension), as Event Grid is configured
        events_path = target.ht.host.eventgrid_url("on_maintenance_event").removeprefix(target.ht.base_url)

        @FUZZ
        @given(body=bad_start, headers=identity_headers)
        def start(body: bytes, headers: dict[str, str]) -> None:
            assert target.send("POST", "/api/rollouts", body, headers) != 202

        @FUZZ
        @given(method=st.sampled_from(["GET", "POST"]), rollout=ids, ring=route_ids | st.just("ring1"),
               verdict=st.sampled_from(["approve", "reject", "APPROVE", "x"]), body=raw_bodies | json_values.map(
                   lambda v: json.dumps({"manifestHash": v, "comment": v}).encode()), headers=identity_headers)
        def decide(method: str, rollout: str, ring: str, verdict: str, body: bytes, headers: dict[str, str]) -> None:
            status = target.send(method, f"/api/rollouts/{rollout}/rings/{ring}/{verdict}", body, headers)
            assert status != 202 or verdict.lower() == "reject" or rollout != rid

        @FUZZ
        @given(rollout=ids, action=st.sampled_from(["halt", "resume", ""]), body=raw_bodies, headers=identity_headers)
        def steer(rollout: str, action: str, body: bytes, headers: dict[str, str]) -> None:
            if action == "halt" and rollout == rid:
                action = "resume"  # halting the live rollout is legitimate; not what this fuzzes
            target.send("POST" if action else "GET", f"/api/rollouts/{rollout}" + (f"/{action}" if action else ""),
                        body if action else None, headers)

        @FUZZ
        @given(body=raw_bodies | json_values.map(lambda v: json.dumps({"plan": v}).encode()))
        def validate(body: bytes) -> None:
            target.send("POST", "/api/plans/validate", body)

        @FUZZ
        @given(body=hostile_events())
        def events(body: bytes) -> None:
            status = target.send("POST", events_path, body, {"aeg-event-type": "Notification"})
            assert status < 500

        @FUZZ
        @given(body=hostile_events() | raw_bodies, kind=st.sampled_from(["Notification", "SubscriptionValidation"]))
        def webhook(body: bytes, kind: str) -> None:
            status = target.send("POST", "/api/events", body, {"aeg-event-type": kind})
            assert status < 500

        for surface in (start, decide, steer, validate, events, webhook):
            surface()

        instances = target.instances()
        still = d.doc(rid)
        health = d.api("GET", "/api/rollouts")
        ok = d.decide(rid, "ring1", "approve", good_hash, "bob@contoso.com")
        d.until_waiting(rid, "pre-maintenance event", "ring1")

    assert target.server_errors == [], target.server_errors[:5]
    assert target.sent >= 6 * EXAMPLES // 2, target.sent  # hypothesis may stop early on a small space
    assert target.statuses[401] == 0, "every generated request carries a valid key: 401s fuzz nothing"
    # Only the test's own rollout and its sub-orchestrations (ids "<rollout>:<ring>...") exist.
    strangers = [i.instance_id for i in instances if i.instance_id.split(":")[0] != rid]
    assert strangers == [], strangers[:10]
    print(f"fuzz: {target.sent} requests, statuses {dict(sorted(target.statuses.items()))}")
    assert (still.get("waitingFor") or {}).get("what") == "approval" or still.get("state") == "halted"
    assert fleet.FLEET.called("ledger_record_approval") == [] or all(
        p["decision"]["approver"] == "bob@contoso.com" for p in fleet.FLEET.called("ledger_record_approval"))
    assert health.status == 200 and [r["id"] for r in health.json["rollouts"]] == [rid]
    assert ok.status == 202, ok
