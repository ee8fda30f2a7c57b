"""Fault injection for the fail-closed guard on the local platform (issue 13.1, 13.12; 14.7).

The app runs unmodified on the local host against the ARM simulator and Azurite. No rollout is
started, so nobody authorises Ring 1's 12:00 run: its pre-event starts the guard, which must
cancel it. Ring 1's VMs carry the *open* tag (as a rollout that died mid-ring would leave them),
so a run that is not cancelled really patches them -- the test can see it.

Faults are injected at the cancel PUT (simulator request faults: 429 + Retry-After, 500/503,
dropped connection, 403) as bursts that outlast several attempts and as outages that outlast the
deadline, a slow answer that trips the attempt's real read timeout, and at the gate read (a small
fault proxy in front of the ledger's Table endpoint: dropped connections, 500/503 answers). After
each: the unauthorised run patched no VM. When the cancel cannot land at all (the PUT fails until
past T-10), the guard's status, the ledger and the error log say so.

Matrix (cancel PUT): {429, 5xx, drop, 403} x {burst then success, never lands} + slow answer.
A single failed attempt followed by success is not a case of its own: every burst case starts
with exactly that (its first attempt fails, a later one cancels) and asserts more. 500 and 503 are
one case (two 500s, then 503s): ``cancel_run`` maps both to the same retryable ``Failed``.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from patchrings.domain.events import instance_id_for
from tests.functional import platform_scenario as sc
from tests.functional.fault_platform import held_platforms, shared_azurite
from tests.functional.platform_driver import driver, ledger

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"
RUN = f"{sc.MC}/mc-ring1/providers/Microsoft.Maintenance/applyUpdates/20261116120000"
GUARD = "guard-" + instance_id_for(RUN, "pre") + "-" + RUN.rsplit("/", 1)[-1]  # one guard per (run, start)
CANCEL_BY = datetime(2026, 11, 16, 11, 50, tzinfo=UTC)  # T-10 of the 12:00 run
PUT = {"method": "PUT", "pathContains": "/applyUpdates/"}


# ---------------------------------------------------------------------- helpers
def open_ring1(faults: list[dict[str, Any]] | None = None, events: dict[str, Any] | None = None) -> dict[str, Any]:
    """The platform scenario with Ring 1's VMs left in the open dynamic scope."""
    doc = sc.scenario(faults=faults, events=events)
    for rg in doc["subscriptions"][0]["resourceGroups"]:
        for vm in rg.get("vms", []):
            if vm["tags"].get("patchRing") == "ring1-hold":
                vm["tags"]["patchRing"] = "ring1"
    return doc


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Azurite for the module; each platform gets its own ledger tables (fault_platform)."""
    yield from shared_azurite(tmp_path_factory)


@pytest.fixture
def held(azurite: str, tmp_path: Path) -> Iterator[Any]:
    """``held(scenario, settings=...)`` -> a started platform whose skip clock is held from before it starts."""
    yield from held_platforms(azurite, tmp_path, START)


def guard_outcome(p: Any) -> dict[str, Any]:
    """Run the clock until the guard finished; its output."""
    d = driver(p)
    d.until(lambda: d.runtime(GUARD) in ("Completed", "Failed"), timeout=240)
    status = d.status(GUARD)
    assert d.runtime(GUARD) == "Completed", getattr(status, "output", None)
    return status.output  # type: ignore[no-any-return]


def settle(p: Any) -> Any:
    """Run the clock until the 12:00 run is over (cancelled or finished)."""
    d = driver(p)
    d.until(lambda: (p.arm.run(RUN) is not None and p.arm.run(RUN).status in ("Cancelled", "Completed")),
            timeout=60)
    return p.arm.run(RUN)


def cancel_puts(p: Any) -> list[Any]:
    return [r for r in p.arm.recorder.find(method="PUT", path_contains="/applyUpdates/")
            if (r.body or {}).get("properties", {}).get("status") == "Cancel"]


def ring1_patched(p: Any) -> dict[str, set[str]]:
    return {name: set(p.arm.vm(name).installed) for name in sc.RING1 if p.arm.vm(name).installed}


def guard_events(p: Any) -> list[dict[str, Any]]:
    return [r for r in ledger(p).events(f"{sc.MC}/mc-ring1") if str(r.get("eventType", "")).startswith("guard:")]


def assert_cancelled_nothing_patched(p: Any, out: dict[str, Any]) -> None:
    run = settle(p)
    assert out["decision"] == "cancelled", out
    assert run.status == "Cancelled", run
    assert ring1_patched(p) == {}
    puts = cancel_puts(p)
    assert puts and all(parse(r.time) < CANCEL_BY for r in puts), puts
    # no GET before the PUT: the cancel goes straight out
    assert not p.arm.recorder.find(method="GET", path_contains="/applyUpdates/")
    assert [e["decision"] for e in guard_events(p)] == ["cancelled"]


def parse(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# ---------------------------------------------------------------------- baseline
def test_unauthorised_run_is_cancelled_without_faults(held: Any) -> None:
    p = held(open_ring1())
    out = guard_outcome(p)
    assert_cancelled_nothing_patched(p, out)
    assert len(cancel_puts(p)) == 1


def test_pre_event_at_t30_still_gets_the_run_cancelled(held: Any) -> None:
    p = held(open_ring1(events={"preEventLeadMinutes": 30},
                        faults=[{"type": "httpError", "status": 503, **PUT, "count": 4}]))
    out = guard_outcome(p)
    assert_cancelled_nothing_patched(p, out)
    assert out["decidedAt"] < "2026-11-16T11:50:00Z"
    assert len(cancel_puts(p)) == 5


# ---------------------------------------------------------------------- the cancel PUT, one fault at a time
FORBIDDEN = {"type": "httpError", "status": 403, "code": "AuthorizationFailed"}
# Each fault as a list of simulator faults tried in order (the 5xx case: two 500s, then 503s --
# both take the same path in ``cancel_run``, a retryable ``Failed``, so one case covers both).
FAULTS = [
    pytest.param([{"type": "httpError", "status": 429, "retryAfter": 30}], id="429-retry-after"),
    pytest.param([{"type": "httpError", "status": 500, "count": 2}, {"type": "httpError", "status": 503}], id="5xx"),
    pytest.param([{"type": "dropConnection"}], id="drop-connection"),
    pytest.param([FORBIDDEN], id="403"),
]
# The slow answer: the PUT is processed (the run is cancelled) but its answer comes after the
# attempt's read timeout, so the activity reports a failure and the guard tries again -- the
# dangerous case where the client does not know its write landed. The read timeout is the
# attempt's budget, ``min(time left until the cancel deadline, 60 s)`` (deadlines.cancel_attempt_budget
# -> clients.deadline_kwargs), in real seconds: the skip clock holds still while a request is in
# flight (faults.py). So the slow answer is put on the attempt of 11:49:35 (budget 25 s, and one
# more attempt fits at 11:49:40, ``CANCEL_LAST_TRY``): 503s until then, then one answer 27 real
# seconds late. Same path as a 70-second answer at an attempt with the full 60-second budget.
SLOW_AT = "2026-11-16T11:49:30Z"
SLOW = [{"type": "httpError", "status": 503, "until": SLOW_AT},
        {"type": "slowAnswer", "seconds": 27, "processFirst": True, "from": SLOW_AT, "count": 1}]


def test_a_cancel_answered_after_its_read_timeout_is_retried(held: Any) -> None:
    p = held(open_ring1(faults=[{**fault, **PUT} for fault in SLOW]))
    out = guard_outcome(p)
    assert_cancelled_nothing_patched(p, out)
    attempts = out["attempts"]
    slow = [a for a in attempts if parse(a["at"]) >= parse(SLOW_AT)]
    # the slow attempt timed out on the client (budget <= 30 s), the next one found the run cancelled
    assert [a["status"] for a in slow][:1] in (["Failed"], ["Timeout"]), attempts
    assert (CANCEL_BY - parse(slow[0]["at"])).total_seconds() <= 30, attempts
    assert slow[-1]["status"] == "Cancelled" and len(slow) == 2, attempts
    assert all(a["status"] == "Failed" for a in attempts if parse(a["at"]) < parse(SLOW_AT)), attempts


@pytest.mark.parametrize("fault", FAULTS)
def test_a_burst_that_outlasts_several_attempts(held: Any, fault: list[dict[str, Any]]) -> None:
    # failing from before the pre-event until 11:47 (3 minutes before T-10): many attempts fail
    window = {"from": "2026-11-16T11:00:00Z", "until": "2026-11-16T11:47:00Z"}
    p = held(open_ring1(faults=[{**f, **PUT, **window} for f in fault]))
    out = guard_outcome(p)
    assert_cancelled_nothing_patched(p, out)
    failed = [a for a in out["attempts"] if a["status"] != "Cancelled"]
    assert len(failed) >= 4, out["attempts"]
    if fault[0].get("retryAfter"):
        # waits were at least the server's Retry-After (but the last try is kept before the deadline)
        times = [parse(a["at"]) for a in out["attempts"]]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert all(g >= 30 for g in gaps), gaps


@pytest.mark.parametrize("fault", FAULTS)
def test_a_cancel_that_cannot_land_says_so_everywhere(held: Any, fault: list[dict[str, Any]],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="patchrings")
    window = {"from": "2026-11-16T11:00:00Z", "until": "2026-11-16T13:00:00Z"}
    p = held(open_ring1(faults=[{**f, **PUT, **window} for f in fault]))
    out = guard_outcome(p)
    assert out["decision"] == "cancel-failed", out
    assert "COULD NOT CANCEL" in out["alert"] and RUN.lower() in out["alert"].lower()
    # the guard kept trying until the deadline, and never past it
    attempts = [parse(a["at"]) for a in out["attempts"]]
    assert len(attempts) >= 8 and max(attempts) < CANCEL_BY
    assert max(attempts) >= parse("2026-11-16T11:49:00Z")
    # status, ledger and log
    d = driver(p)
    assert "COULD NOT CANCEL" in d.doc(GUARD)["alert"]
    events = guard_events(p)
    assert [e["decision"] for e in events] == ["cancel-failed"]
    assert str(events[0]["correlationId"]).lower() == RUN.lower()
    assert any(r.levelno >= logging.ERROR and "COULD NOT CANCEL" in r.getMessage()
               and RUN.lower() in r.getMessage().lower() for r in caplog.records)
    # (what the fail-closed guard exists to prevent then happens: the run patches Ring 1)
    run = settle(p)
    assert run.status == "Completed"


# ---------------------------------------------------------------------- the gate read
RETRY_AFTER_MS = 10


class FaultProxy:
    """A TCP proxy in front of Azurite whose new connections can be dropped or answered 5xx.

    ``mode`` is read for every new connection: ``pass`` forwards, ``drop`` closes at once,
    ``500`` / ``503`` answer one canned HTTP response and close.

    The 5xx answers carry ``retry-after-ms`` (which azure-core's RetryPolicy honours before its own
    exponential back-off): the Tables SDK's retries then sleep milliseconds instead of ~5 real
    seconds per activity attempt (about 55 s per case over the guard's READ/WRITE retries). The
    guard sees the same thing -- every attempt fails -- and no simulated time passes during the
    retries either way (the skip clock holds still while an activity runs).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.faulted = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _fault(self, conn: socket.socket, mode: str, *, received: bool = False) -> None:
        """Answer the request on ``conn`` as ``mode`` says (an error answer, or a dropped connection)."""
        self.faulted += 1
        try:
            if mode in ("500", "503"):
                if not received:
                    conn.recv(65536)
                body = b'{"odata.error":{"code":"ServerBusy","message":{"value":"injected"}}}'
                head = (f"HTTP/1.1 {mode} Injected\r\nContent-Type: application/json\r\n"
                        f"retry-after-ms: {RETRY_AFTER_MS}\r\n"
                        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n")
                conn.sendall(head.encode() + body)
        except OSError:
            pass
        finally:
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        mode = self.mode
        if mode != "pass":
            self._fault(conn, mode)
            return
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            conn.close()
            return

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    mode = self.mode
                    if src is conn and mode != "pass":
                        # a request on a connection opened before the fault (keep-alive: the
                        # app's one Table client reuses its pool) is faulted too
                        self._fault(conn, mode, received=True)
                        upstream.close()
                        return
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(conn, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self.server.close()


@pytest.fixture
def proxied_ledger(azurite: str) -> Iterator[tuple[FaultProxy, str]]:
    """The module's Azurite behind a :class:`FaultProxy` (the platform's own tables keep it apart)."""
    conn = azurite
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    endpoint = parts["TableEndpoint"]
    host_port = endpoint.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = FaultProxy(host, int(port))
    proxied = conn.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
    yield proxy, proxied
    proxy.close()


@pytest.mark.parametrize("mode", ["drop", "500", "503"])
def test_an_unreadable_gate_means_cancel(held: Any, proxied_ledger: tuple[FaultProxy, str], mode: str) -> None:
    proxy, connection = proxied_ledger
    p = held(open_ring1(), settings={"PATCHRINGS_LEDGER_CONNECTION": connection})
    d = driver(p)
    d.until(lambda: d.runtime(GUARD) is not None, timeout=60)  # pre-event handled (the trigger reads the ledger)
    proxy.mode = mode  # from now on the ledger is unreachable / failing
    d.until(lambda: d.runtime(GUARD) in ("Completed", "Failed"), timeout=60)
    out = d.status(GUARD).output
    proxy.mode = "pass"
    assert out["decision"] == "cancelled", out
    assert "gate could not be read" in out["gate"]["reason"]
    assert proxy.faulted > 0
    run = settle(p)
    assert run.status == "Cancelled" and ring1_patched(p) == {}


# ---------------------------------------------------------------------- redeploy drift (13.16, app side)
def authorise(p: Any, rollout_id: str = "ro-drift") -> None:
    """What a rollout writes when it authorises Ring 1's 12:00 run."""
    lg = ledger(p)
    lg.record_rollout(rollout_id, {"state": "running"})
    lg.record_ring_run(rollout_id, "ring1", RUN.lower(), {"state": "authorised", "authorised": True,
                                                          "configurationId": f"{sc.MC}/mc-ring1"})


def arm_clients(p: Any) -> Any:
    from patchrings.clients import AzureClients
    from patchrings.settings import Settings

    return AzureClients(Settings(arm_endpoint=p.arm.endpoint, arm_auth="static-token", arm_static_token=p.arm.token,
                                 arm_ca_bundle=str(p.arm.ca_path),
                                 ledger_connection=p.settings["PATCHRINGS_LEDGER_CONNECTION"]))


def test_an_authorised_run_whose_configuration_lost_its_pins_is_cancelled(held: Any) -> None:
    # the configuration installs by classification (what a redeploy of the Bicep re-sends)
    p = held(open_ring1())
    authorise(p)
    out = guard_outcome(p)
    assert out["gate"]["authorised"] is True
    assert out["decision"] == "cancelled" and "classificationsToInclude" in out["reason"], out
    run = settle(p)
    assert run.status == "Cancelled" and ring1_patched(p) == {}
    (event,) = guard_events(p)
    assert event["decision"] == "cancelled" and "classificationsToInclude" in event["reason"]


def test_an_authorised_run_with_its_pins_in_place_goes_ahead(held: Any) -> None:
    from activities.maintenance import pin_manifest_core

    p = held(open_ring1())
    clients = arm_clients(p)
    try:
        pinned = pin_manifest_core(clients, {"configurationId": f"{sc.MC}/mc-ring1", "manifest": {
            "windows": {"kbNumbers": [sc.KB_OLD]}, "linux": {"packages": [sc.OPENSSL]}}})
    finally:
        clients.close()
    assert pinned["changed"] is True
    authorise(p)
    out = guard_outcome(p)
    assert out["decision"] == "allowed", out
    assert cancel_puts(p) == []
    run = settle(p)
    assert run.status == "Completed"
    assert sc.KB_OLD in {k.upper().removeprefix("KB") for k in p.arm.vm("r1-web-1").installed}
    assert sc.KB_LATE not in {k.upper().removeprefix("KB") for k in p.arm.vm("r1-web-1").installed}
