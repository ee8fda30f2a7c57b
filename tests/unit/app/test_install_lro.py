"""start/poll install over a scripted transport: one POST at most, one status check per poll,
no poller threads left behind, every refusal and ambiguity mapped."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError

from activities.compute import poll_install_core, start_install_core
from patchrings.clients import AzureClients
from patchrings.settings import Settings
from tests.unit.app.fakes import FakeLedger, ScriptedTransport

pytestmark = pytest.mark.unit

SUB = "11111111-2222-3333-4444-555555555555"
BASE = "https://127.0.0.1:8443"
VM = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
OPS = f"{BASE}/subscriptions/{SUB}/providers/Microsoft.Compute/locations/westeurope"
ACCEPTED = (202, {"Azure-AsyncOperation": f"{OPS}/operations/op1", "Location": f"{OPS}/operationResults/op1",
                  "Retry-After": "1"}, None)
RESULT = {"status": "Succeeded", "installationActivityId": "op1", "rebootStatus": "Completed",
          "maintenanceWindowExceeded": False, "installedPatchCount": 1, "failedPatchCount": 0,
          "pendingPatchCount": 0, "patches": [{"kbId": "5034123", "installationState": "Installed"}]}
START = "2026-11-16T06:00:00Z"


def view(summary: dict[str, Any] | None = None) -> Any:
    """The VM's instance view: as ``GET …/instanceView`` answers it, or inside the VM's model for
    ``GET …/vm1?$expand=instanceView`` (start_install's one read, issue 11)."""
    body: dict[str, Any] = {"statuses": [{"code": "PowerState/running"}]}
    if summary:
        body["patchStatus"] = {"lastPatchInstallationSummary": summary}

    def answer(request: Any) -> tuple[int, dict[str, str], Any]:
        if request.url.split("?")[0].lower().endswith("/instanceview"):
            return 200, {}, body
        return 200, {}, {"id": VM, "name": "vm1", "location": "westeurope", "tags": {},
                         "properties": {"storageProfile": {"osDisk": {"osType": "Windows"}}, "instanceView": body}}

    return answer


def make_clients(tmp_path: Path, script: list[tuple[str, str, Any]]) -> tuple[AzureClients, ScriptedTransport]:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    settings = Settings(arm_endpoint=BASE, arm_auth="static-token", arm_static_token="t", arm_ca_bundle=str(ca),
                        ledger_connection="AccountName=a;AccountKey=b")
    transport = ScriptedTransport(script)
    return AzureClients(settings, transport=transport), transport


def payload(**extra: Any) -> dict[str, Any]:
    return {"rolloutId": "r", "ring": "ring0", "runId": "run-1", "runStartedAt": START,
            "vm": {"id": VM, "name": "vm1", "os": "Windows"},
            "parameters": {"rebootSetting": "RebootIfRequired", "windowsParameters": {}}, **extra}


def methods(transport: ScriptedTransport) -> list[str]:
    return [f"{r.method} {r.url.split('?')[0].rsplit('/', 1)[-1]}" for r in transport.requests]


def poller_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_start" in t.name and t.is_alive()]


def test_start_then_one_status_check_per_poll(tmp_path: Path) -> None:
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", view()),
        ("POST", "/installPatches", ACCEPTED),
        ("GET", "/operationResults/op1", [(202, {"Location": f"{OPS}/operationResults/op1", "Retry-After": "1"}, None),
                                          (200, {}, RESULT)]),
    ])
    ledger = FakeLedger()
    started = start_install_core(clients, ledger, payload())
    assert started["state"] == "started" and started["token"]
    assert methods(transport) == ["GET vm1", "POST installPatches"]  # the VM with its instance view, one GET
    assert json.loads(transport.requests[1].content)["rebootSetting"] == "IfRequired"
    assert (ledger.install("run-1", VM) or {})["token"] == started["token"]

    transport.requests.clear()
    first = poll_install_core(clients, ledger, {"runId": "run-1", "vm": payload()["vm"], "token": started["token"]})
    assert first == {"done": False, "result": None, "error": None}
    assert methods(transport) == ["GET op1"]  # Location (operationResults): one GET per poll (issue 11)
    assert transport.requests[0].url.split("?")[0] == f"{OPS}/operationResults/op1"

    transport.requests.clear()
    second = poll_install_core(clients, ledger, {"runId": "run-1", "vm": payload()["vm"], "token": started["token"]})
    assert second["done"] is True and second["error"] is None
    assert second["result"]["installedPatchCount"] == 1
    # the poll that sees the install done carries its result: no second GET
    assert [r.url.split("?")[0] for r in transport.requests] == [f"{OPS}/operationResults/op1"]
    assert (ledger.install("run-1", VM) or {})["state"] == "done"
    assert poller_threads() == []


def test_failed_operation_is_done_with_its_error(tmp_path: Path) -> None:
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", view()),
        ("POST", "/installPatches", ACCEPTED),
        ("GET", "/operationResults/op1", (500, {}, {"error": {"code": "PatchInstallFailed", "message": "boom"}})),
        ("GET", "/operations/op1", (200, {}, {"status": "Failed",
                                              "error": {"code": "PatchInstallFailed", "message": "boom"}})),
    ])
    ledger = FakeLedger()
    token = start_install_core(clients, ledger, payload())["token"]
    transport.requests.clear()
    out = poll_install_core(clients, ledger, {"runId": "run-1", "vm": payload()["vm"], "token": token})
    assert out["done"] is True and out["result"] is None
    assert out["error"]["code"] == "PatchInstallFailed"
    # an error answer on Location is re-checked the Azure-AsyncOperation way, which tells a failed
    # operation (done) from a failed check (not done)
    assert [r.url.split("?")[0].rsplit("/", 2)[-2] for r in transport.requests][-2:] == ["operationResults",
                                                                                         "operations"]


def test_failed_status_check_is_not_done(tmp_path: Path) -> None:
    clients, _ = make_clients(tmp_path, [
        ("GET", "instanceView", view()),
        ("POST", "/installPatches", ACCEPTED),
        ("GET", "/operationResults/op1", (503, {}, {"error": {"code": "ServiceUnavailable", "message": "later"}})),
        ("GET", "/operations/op1", (503, {}, {"error": {"code": "ServiceUnavailable", "message": "later"}})),
    ])
    ledger = FakeLedger()
    token = start_install_core(clients, ledger, payload())["token"]
    out = poll_install_core(clients, ledger, {"runId": "run-1", "vm": payload()["vm"], "token": token})
    assert out["done"] is False
    assert out["error"]["retryable"] is True and out["error"]["status"] == 503


def test_existing_record_means_no_request_at_all(tmp_path: Path) -> None:
    clients, transport = make_clients(tmp_path, [])
    ledger = FakeLedger()
    ledger.record_install("run-1", VM.upper(), {"state": "started", "token": "tok"})
    assert start_install_core(clients, ledger, payload()) == {"state": "already-started", "token": "tok", "error": None}
    assert transport.requests == []


@pytest.mark.parametrize(
    ("summary", "state"),
    [
        ({"status": "InProgress", "startTime": "2026-11-16T05:00:00Z"}, "already-started"),
        ({"status": "Succeeded", "startTime": "2026-11-16T06:30:00.1234567Z"}, "already-done"),
    ],
)
def test_instance_view_shows_an_install_of_this_run(tmp_path: Path, summary: dict[str, Any], state: str) -> None:
    clients, transport = make_clients(tmp_path, [("GET", "instanceView", view(summary))])
    ledger = FakeLedger()
    assert start_install_core(clients, ledger, payload())["state"] == state
    assert methods(transport) == ["GET vm1"]
    assert ledger.install("run-1", VM) is not None


def test_old_finished_install_does_not_block(tmp_path: Path) -> None:
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", view({"status": "Succeeded", "startTime": "2026-10-01T00:00:00Z"})),
        ("POST", "/installPatches", ACCEPTED),
    ])
    assert start_install_core(clients, FakeLedger(), payload())["state"] == "started"
    assert methods(transport).count("POST installPatches") == 1


def test_conflict_is_refused_and_frees_the_claim(tmp_path: Path) -> None:
    clients, _ = make_clients(tmp_path, [
        ("GET", "instanceView", view()),
        ("POST", "/installPatches", (409, {}, {"error": {"code": "Conflict", "message": "busy"}})),
    ])
    ledger = FakeLedger()
    out = start_install_core(clients, ledger, payload())
    assert out["state"] == "refused" and out["error"]["code"] == "Conflict"
    assert ledger.install("run-1", VM) is None


def test_unreachable_arm_is_refused_and_frees_the_claim(tmp_path: Path) -> None:
    def refuse(request: Any) -> Any:
        raise ServiceRequestError("connection refused")

    clients, _ = make_clients(tmp_path, [("GET", "instanceView", view()), ("POST", "/installPatches", refuse)])
    ledger = FakeLedger()
    out = start_install_core(clients, ledger, payload())
    assert out["state"] == "refused" and out["error"]["retryable"] is True
    assert ledger.install("run-1", VM) is None


def test_ambiguous_failure_keeps_the_claim_and_never_reposts(tmp_path: Path) -> None:
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", view()),
        ("POST", "/installPatches", (500, {}, {"error": {"code": "InternalError", "message": "oops"}})),
    ])
    ledger = FakeLedger()
    out = start_install_core(clients, ledger, payload())
    assert out["state"] == "already-started" and out["token"] is None
    assert out["error"]["code"] == "InternalError"
    assert (ledger.install("run-1", VM) or {})["state"] == "unknown"
    # azure-core would resend a POST answered 500; the install POST must go out exactly once
    assert methods(transport).count("POST installPatches") == 1
    again = start_install_core(clients, ledger, payload())
    assert again["state"] == "already-started"
    assert methods(transport).count("POST installPatches") == 1  # the re-run sent nothing


def test_throttled_post_is_retried(tmp_path: Path) -> None:
    throttled = (429, {"Retry-After": "0"}, {"error": {"code": "TooManyRequests", "message": "slow down"}})
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", view()),
        ("POST", "/installPatches", [throttled, ACCEPTED]),
    ])
    assert start_install_core(clients, FakeLedger(), payload())["state"] == "started"
    assert methods(transport).count("POST installPatches") == 2


def test_tokenless_poll_uses_the_instance_view_of_this_run_only(tmp_path: Path) -> None:
    old = {"status": "Succeeded", "startTime": "2026-10-01T00:00:00Z", "installedPatchCount": 9}
    new = {"status": "Failed", "startTime": "2026-11-16T06:01:00Z", "installedPatchCount": 1, "failedPatchCount": 1}
    clients, _ = make_clients(tmp_path, [("GET", "instanceView", [view(old), view(new)])])
    ledger = FakeLedger()
    ledger.record_install("run-1", VM, {"state": "unknown", "runStartedAt": START})
    vm = payload()["vm"]
    waiting = poll_install_core(clients, ledger, {"runId": "run-1", "vm": vm, "token": None})
    assert waiting["done"] is False and waiting["error"]["code"] == "InstallNotObserved"
    done = poll_install_core(clients, ledger, {"runId": "run-1", "vm": vm, "token": None})
    assert done["done"] is True
    assert done["result"]["status"] == "Failed" and done["result"]["source"] == "instanceView"


class BrokenLedger(FakeLedger):
    """A ledger whose Table endpoint is down for the named operations."""

    def __init__(self, *broken: str) -> None:
        super().__init__()
        self.broken = set(broken)

    def __getattribute__(self, name: str) -> Any:
        if name in object.__getattribute__(self, "broken"):
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise ServiceRequestError("table endpoint unreachable")
            return fail
        return super().__getattribute__(name)


def test_unreadable_ledger_means_no_post(tmp_path: Path) -> None:
    clients, transport = make_clients(tmp_path, [])
    out = start_install_core(clients, BrokenLedger("install"), payload())
    assert out["state"] == "refused" and out["error"]["code"] == "LedgerUnavailable"
    assert transport.requests == []


def test_lost_token_write_still_reports_the_started_install(tmp_path: Path) -> None:
    script = [("GET", "instanceView", view()), ("POST", "/installPatches", ACCEPTED)]
    clients, transport = make_clients(tmp_path, script)
    ledger = BrokenLedger("update_install")
    out = start_install_core(clients, ledger, payload())
    assert out["state"] == "started" and out["token"]
    # the claim without a token still stops a re-run from posting again
    # (uncertain: the claim has no token; only an instance view showing nothing could ever
    # justify a re-send, and this VM shows the install)
    assert start_install_core(clients, ledger, payload()) == {"state": "already-started", "token": None, "error": None,
                                                              "uncertain": True}
    assert methods(transport).count("POST installPatches") == 1


def test_expired_operation_record_falls_back_to_the_instance_view(tmp_path: Path) -> None:
    finished = {"status": "Succeeded", "startTime": "2026-11-16T06:05:00Z", "installedPatchCount": 2}
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", [view(), view(finished)]),
        ("POST", "/installPatches", ACCEPTED),
        ("GET", "/operationResults/op1", (404, {}, {"error": {"code": "NotFound", "message": "expired"}})),
    ])
    ledger = FakeLedger()
    token = start_install_core(clients, ledger, payload())["token"]
    out = poll_install_core(clients, ledger, {"runId": "run-1", "vm": payload()["vm"], "token": token})
    assert out["done"] is True and out["result"]["source"] == "instanceView"
    assert out["result"]["installedPatchCount"] == 2
    assert methods(transport)[-2:] == ["GET op1", "GET instanceView"]


# ----------------------------------------------------------------------------- uncertain starts
LATER = "2026-11-16T06:20:00Z"  # past UNCERTAIN_START_GRACE (15 min) after a 06:00 claim
SOON = "2026-11-16T06:05:00Z"  # inside it


def tokenless_poll(clients: AzureClients, ledger: FakeLedger, now: str) -> dict[str, Any]:
    return poll_install_core(clients, ledger, {"runId": "run-1", "runStartedAt": START, "now": now,
                                               "vm": payload()["vm"], "token": None})


def test_claim_without_post_is_resent_once_after_the_grace(tmp_path: Path) -> None:
    # the activity died between its claim and its POST: a claim row, no token, nothing on the VM
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", view()),
        ("POST", "/installPatches", ACCEPTED),
    ])
    ledger = FakeLedger()
    ledger.record_install("run-1", VM, {"state": "posting", "claimedAt": START, "runStartedAt": START})
    rerun = start_install_core(clients, ledger, payload(now=START))
    assert rerun["state"] == "already-started" and rerun["uncertain"] is True
    assert tokenless_poll(clients, ledger, SOON).get("resend") is None  # still inside the grace
    asked = tokenless_poll(clients, ledger, LATER)
    assert asked["resend"] is True and asked["error"]["code"] == "InstallNotSent"
    # a resend request inside the grace is ignored by the activity itself
    assert start_install_core(clients, ledger, payload(now=SOON, resend=True))["state"] == "already-started"
    assert methods(transport).count("POST installPatches") == 0
    sent = start_install_core(clients, ledger, payload(now=LATER, resend=True))
    assert sent["state"] == "started" and sent["token"]
    assert (ledger.install("run-1", VM) or {})["resent"] is True
    # any further attempt, resend or not, sends nothing
    again = start_install_core(clients, ledger, payload(now=LATER, resend=True))
    assert again["state"] == "already-started" and again["token"] == sent["token"]
    assert methods(transport).count("POST installPatches") == 1


def test_a_500_that_was_applied_is_never_resent(tmp_path: Path) -> None:
    running = {"status": "InProgress", "startTime": "2026-11-16T06:00:30Z"}
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", [view(), view(running)]),
        ("POST", "/installPatches", (500, {}, {"error": {"code": "InternalError", "message": "oops"}})),
    ])
    ledger = FakeLedger()
    out = start_install_core(clients, ledger, payload(now=START))
    assert out["uncertain"] is True
    polled = tokenless_poll(clients, ledger, LATER)
    assert polled["done"] is False and "resend" not in polled  # the VM shows this run's install
    forced = start_install_core(clients, ledger, payload(now=LATER, resend=True))
    assert forced["state"] == "already-started"
    assert methods(transport).count("POST installPatches") == 1


def test_a_500_that_was_not_applied_is_resent_once(tmp_path: Path) -> None:
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", view({"status": "Succeeded", "startTime": "2026-10-01T00:00:00Z"})),
        ("POST", "/installPatches", [(500, {}, {"error": {"code": "InternalError", "message": "oops"}}), ACCEPTED]),
    ])
    ledger = FakeLedger()
    assert start_install_core(clients, ledger, payload(now=START))["uncertain"] is True
    assert tokenless_poll(clients, ledger, LATER)["resend"] is True
    assert start_install_core(clients, ledger, payload(now=LATER, resend=True))["state"] == "started"
    assert (ledger.install("run-1", VM) or {})["token"]
    assert start_install_core(clients, ledger, payload(now=LATER, resend=True))["state"] == "already-started"
    assert methods(transport).count("POST installPatches") == 2


def test_an_uncertain_resend_is_never_resent_again(tmp_path: Path) -> None:
    clients, transport = make_clients(tmp_path, [
        ("GET", "instanceView", view()),
        ("POST", "/installPatches", (503, {}, {"error": {"code": "ServiceUnavailable", "message": "later"}})),
    ])
    ledger = FakeLedger()
    start_install_core(clients, ledger, payload(now=START))
    resent = start_install_core(clients, ledger, payload(now=LATER, resend=True))
    assert resent["state"] == "already-started" and resent["uncertain"] is True
    assert "resend" not in tokenless_poll(clients, ledger, "2026-11-16T07:00:00Z")
    start_install_core(clients, ledger, payload(now="2026-11-16T07:00:00Z", resend=True))
    assert methods(transport).count("POST installPatches") == 2  # the first and the one re-send


def test_concurrent_resend_attempts_send_once(tmp_path: Path) -> None:
    clients, transport = make_clients(tmp_path, [("GET", "instanceView", view()),
                                                  ("POST", "/installPatches", ACCEPTED)])
    ledger = FakeLedger()
    ledger.record_install("run-1", VM, {"state": "posting", "claimedAt": START, "runStartedAt": START})
    # another attempt already holds the resend claim (it is between its claim and its POST)
    ledger.record_install("run-1", VM + "#resend", {"state": "posting", "claimedAt": LATER})
    out = start_install_core(clients, ledger, payload(now=LATER, resend=True))
    assert out["state"] == "already-started"
    assert methods(transport).count("POST installPatches") == 0
