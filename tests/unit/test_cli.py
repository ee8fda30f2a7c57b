"""``python -m patchrings rollouts ...``: arguments to API requests, answers to output and exit codes.

A recording fake of the transport (``ApiClient.request``) stands in for the app: every verb's
method, path, body and headers are checked, and the API's error bodies come back as the CLI's
message and exit code 1. The end-to-end run against the app on the local platform is
tests/functional/test_cli.py.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import types
from typing import Any

import pytest

from patchrings.__main__ import main
from patchrings.cli import commands
from patchrings.cli.client import ApiClient, ApiError, _api_error, normalize_base_url
from patchrings.cli.render import plain_table

pytestmark = pytest.mark.unit


class FakeApi(ApiClient):
    """Records requests; answers from a queue (an ApiError in the queue is raised)."""

    def __init__(self, *answers: Any, **kwargs: Any) -> None:
        super().__init__(kwargs.pop("url", "https://app.example.net/api/"), **kwargs)
        self.answers = list(answers)
        self.sent: list[tuple[str, str, Any, dict[str, str]]] = []

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self.sent.append((method, self.url(path), body, self.headers()))
        answer = self.answers.pop(0) if self.answers else {}
        if isinstance(answer, ApiError):
            raise answer
        return answer


def run(argv: list[str], api: FakeApi | None = None, env: dict[str, str] | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    """Run the CLI's main() with ``api`` as the client (or building one from argv/env)."""
    out, err = io.StringIO(), io.StringIO()
    real_run = commands.run_rollouts

    def run_with(args: Any, **_: Any) -> int:
        client: ApiClient | None = api
        if client is None:
            client = commands.client_from_args(args, env or {})
        return real_run(args, client=client, stdout=out, stderr=err)

    assert monkeypatch is not None
    monkeypatch.setattr("patchrings.__main__.run_rollouts", run_with)
    try:
        code = main(argv)
    except commands.UsageError as exc:
        err.write(f"error: {exc}\n")
        code = commands.EXIT_USAGE
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("argv", "method", "path", "body"), [
    (["list"], "GET", "/api/rollouts", None),
    (["show", "ro-1"], "GET", "/api/rollouts/ro-1", None),
    (["start"], "POST", "/api/rollouts", {"dryRun": False}),
    (["start", "--dry-run", "--reason", "why"], "POST", "/api/rollouts", {"dryRun": True, "reason": "why"}),
    (["dry-run"], "POST", "/api/rollouts", {"dryRun": True}),
    (["approve", "ro-1", "ring1", "--manifest", "abc", "--comment", "ok"], "POST",
     "/api/rollouts/ro-1/rings/ring1/approve", {"manifestHash": "abc", "comment": "ok"}),
    (["approve", "ro-1", "ring0", "--manifest", "q-1", "--release-quarantine", "ro-0:ring0", "ro-9:ring0"], "POST",
     "/api/rollouts/ro-1/rings/ring0/approve",
     {"manifestHash": "q-1", "releaseQuarantine": ["ro-0:ring0", "ro-9:ring0"]}),
    (["reject", "ro-1", "ring2", "--manifest", "abc"], "POST", "/api/rollouts/ro-1/rings/ring2/reject",
     {"manifestHash": "abc"}),
    (["halt", "ro-1", "--reason", "alerts"], "POST", "/api/rollouts/ro-1/halt", {"reason": "alerts"}),
    (["resume", "ro-1"], "POST", "/api/rollouts/ro-1/resume", {}),
    (["show", "ro 1?code=x"], "GET", "/api/rollouts/ro%201%3Fcode%3Dx", None),  # never changes the URL
])
def test_each_verb_is_one_api_request(monkeypatch: pytest.MonkeyPatch, argv: list[str], method: str, path: str,
                                      body: Any) -> None:
    api = FakeApi({"rollouts": []} if argv[0] == "list" else {"id": "ro-1"}, key="k1")
    code, _, err = run(["rollouts", *argv, "--json"], api, monkeypatch=monkeypatch)
    assert code == 0, err
    [(sent_method, url, sent_body, headers)] = api.sent
    assert (sent_method, url, sent_body) == (method, f"https://app.example.net{path}", body)
    assert headers["x-functions-key"] == "k1" and "Authorization" not in headers


def test_start_sends_the_plan_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "name": "small"}))
    api = FakeApi({"id": "ro-2", "dryRun": True, "statusUrl": "/api/rollouts/ro-2"})
    code, out, _ = run(["rollouts", "dry-run", "--plan", str(plan)], api, monkeypatch=monkeypatch)
    assert code == 0 and api.sent[0][2] == {"dryRun": True, "plan": {"version": 1, "name": "small"}}
    assert "started dry run ro-2" in out
    for content in ("not json", "[1]"):
        plan.write_text(content)
        code, _, err = run(["rollouts", "start", "--plan", str(plan)], FakeApi(), monkeypatch=monkeypatch)
        assert code == 2 and "--plan" in err
    code, _, err = run(["rollouts", "start", "--plan", str(tmp_path / "missing.json")], FakeApi(),
                       monkeypatch=monkeypatch)
    assert code == 2 and "missing.json" in err


def test_api_refusal_is_exit_1_with_the_apis_message(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"error": {"code": "ApprovalConflict", "field": "manifestHash",
                      "message": "the manifest hash differs from the pending one"}}
    refusal = _api_error(409, json.dumps(body).encode())
    code, out, err = run(["rollouts", "approve", "ro-1", "ring1", "--manifest", "x"], FakeApi(refusal),
                         monkeypatch=monkeypatch)
    assert (code, out) == (1, "")
    assert err.strip() == ("error: HTTP 409 ApprovalConflict: the manifest hash differs from the pending one "
                           "(field manifestHash)")
    code, out, _ = run(["rollouts", "approve", "ro-1", "ring1", "--manifest", "x", "--json"], FakeApi(refusal),
                       monkeypatch=monkeypatch)
    assert code == 1 and json.loads(out)["error"] == {"status": 409, **body["error"]}


def test_bodiless_401_and_unreachable_api_explain_themselves() -> None:
    err = _api_error(401, b"")
    assert err.status == 401 and err.code is None and "PATCHRINGS_API_KEY" in err.message
    client = ApiClient("http://127.0.0.1:9", timeout=5)  # discard port: nothing listens
    with pytest.raises(ApiError) as unreachable:
        client.list_rollouts()
    assert unreachable.value.status == 0 and "cannot reach http://127.0.0.1:9" in str(unreachable.value)


def test_url_and_key_from_environment_or_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    parser_args = argparse.Namespace
    client = commands.client_from_args(parser_args(), {"PATCHRINGS_API_URL": "https://a.example/api/",
                                                       "PATCHRINGS_API_KEY": "envkey"})
    assert client.base_url == "https://a.example" and client.key == "envkey"
    client = commands.client_from_args(parser_args(url="http://127.0.0.1:7071", key="flagkey", approver="bob@x"),
                                       {"PATCHRINGS_API_URL": "https://a.example", "PATCHRINGS_API_KEY": "envkey"})
    assert client.url("rollouts") == "http://127.0.0.1:7071/api/rollouts"
    assert client.headers()["x-functions-key"] == "flagkey" and client.headers()["X-PatchRings-Approver"] == "bob@x"
    with pytest.raises(commands.UsageError, match="PATCHRINGS_API_URL"):
        commands.client_from_args(parser_args(), {})
    with pytest.raises(commands.UsageError, match="http"):
        commands.client_from_args(parser_args(url="ftp://x"), {})
    code, _, err = run(["rollouts", "list"], env={}, monkeypatch=monkeypatch)
    assert code == 2 and "no API URL" in err
    assert normalize_base_url("https://app.azurewebsites.net/API") == "https://app.azurewebsites.net"


def test_options_before_or_after_the_verb() -> None:
    parser = argparse.ArgumentParser()
    commands.add_rollouts_parser(parser.add_subparsers(dest="command"))
    for argv in (["rollouts", "--as", "alice@contoso.com", "--json", "--url", "http://h", "halt", "ro-1"],
                 ["rollouts", "halt", "ro-1", "--as", "alice@contoso.com", "--json", "--url", "http://h"],
                 ["rollouts", "--url", "http://h", "halt", "--as", "alice@contoso.com", "ro-1", "--json"]):
        args = parser.parse_args(argv)
        assert (args.verb, args.id, args.approver, args.as_json, args.url) == (
            "halt", "ro-1", "alice@contoso.com", True, "http://h"), argv
    args = parser.parse_args(["rollouts", "list"])
    assert not hasattr(args, "url") and not getattr(args, "as_json", False)


def test_entra_scope_sends_a_bearer_token_from_azure_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    class FakeCredential:
        def get_token(self, scope: str) -> Any:
            asked.append(scope)
            return types.SimpleNamespace(token="eyJ.token")

    fake_identity = types.ModuleType("azure.identity")
    fake_identity.DefaultAzureCredential = FakeCredential  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.identity", fake_identity)
    namespace = argparse.Namespace
    client = commands.client_from_args(namespace(url="https://a.example", entra_scope="api://abc/.default"), {})
    assert asked == []  # no token until a request is made
    assert client.headers()["Authorization"] == "Bearer eyJ.token"
    assert client.headers()["Authorization"] == "Bearer eyJ.token" and asked == ["api://abc/.default"]

    class Failing:
        def get_token(self, scope: str) -> Any:
            raise RuntimeError("run az login")

    fake_identity.DefaultAzureCredential = Failing  # type: ignore[attr-defined]
    client = commands.client_from_args(namespace(url="https://a.example"),
                                       {"PATCHRINGS_ENTRA_SCOPE": "api://abc/.default"})
    with pytest.raises(ApiError) as failed:
        client.headers()
    assert str(failed.value) == "could not get an Entra ID token for api://abc/.default: run az login"


def test_human_output_tables_and_the_next_step(monkeypatch: pytest.MonkeyPatch) -> None:
    listing = {"rollouts": [{"id": "ro-1", "state": "waiting", "runtimeStatus": "Running", "currentRing": "ring1",
                             "waitingFor": {"what": "approval", "ring": "ring1", "until": "2026-11-17T06:00:00Z"},
                             "dryRun": False, "createdTime": "2026-11-16T06:00:00Z", "initiator": "dave@contoso.com"}]}
    code, out, _ = run(["rollouts", "list"], FakeApi(listing), monkeypatch=monkeypatch)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "STATE", "RUNTIME", "RING", "WAITING", "FOR", "DRY", "RUN",
                                               "CREATED", "INITIATOR"]
    assert "approval (ring1) until 2026-11-17T06:00:00Z" in lines[2] and lines[2].startswith("ro-1  ")
    status = {"id": "ro-1", "state": "waiting", "runtimeStatus": "Running",
              "waitingFor": {"what": "approval", "ring": "ring1", "manifestHash": "0545a0c2",
                             "approvers": ["alice@contoso.com"], "until": "2026-11-17T06:00:00Z"},
              "status": {"plan": {"name": "default", "hash": "458367ff"}, "initiator": "dave@contoso.com",
                         "rings": [{"name": "ring0", "patching": "direct", "phase": "promoted",
                                    "counts": {"succeeded": 3}, "gate": {"outcome": "pass"}, "opened": True},
                                   {"name": "ring1", "patching": "scheduled", "phase": "waiting", "counts": {}}],
                         "manifest": {"hash": "0545a0c2", "kbCount": 2},
                         "approvals": [{"decidedAt": "2026-11-16T07:00:00Z", "ring": "ring1", "verdict": "reject",
                                        "approver": "carol@contoso.com", "comment": "not yet"}]},
              "ledger": {"vmResults": {"ring0": [
                  {"vm": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/r0-web-1",
                   "verdict": {"outcome": "fail", "reasons": ["installation Failed: KB5048667 " + "x" * 200]}}]}}}
    code, out, _ = run(["rollouts", "show", "ro-1"], FakeApi(status), monkeypatch=monkeypatch)
    assert code == 0
    assert "python -m patchrings rollouts approve ro-1 ring1 --manifest 0545a0c2" in out
    assert any(line.split()[:5] == ["ring0", "direct", "promoted", "succeeded=3", "pass"] for line in out.splitlines())
    assert "carol@contoso.com" in out and "default 458367ff" in out
    [vm_row] = [line for line in out.splitlines() if line.startswith("ring0  r0-web-1")]
    assert vm_row.split()[2:5] == ["fail", "installation", "Failed:"] and len(vm_row) < 120
    code, out, _ = run(["rollouts", "show", "ro-1"], FakeApi({"id": "ro-1"}), monkeypatch=monkeypatch)
    assert code == 0 and "rollout ro-1" in out  # a sparse answer still renders


def test_show_renders_the_ring_views_manifest_and_approvals_of_the_api(monkeypatch: Any) -> None:
    vm_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/r0-web-1"
    status = {"id": "ro-1", "state": "running", "runtimeStatus": "Running", "status": {},
              "rings": [{"name": "ring0", "phase": "installing", "phaseText": "installing wave 2 of 3: polling",
                         "counts": {"vms": 9, "passed": 3, "failed": 0, "inconclusive": 0, "installing": 3,
                                    "verifying": 0, "notStarted": 3}, "gate": None,
                         "vms": [{"name": "r0-web-1", "id": vm_id, "outcome": "pass", "health": "healthy",
                                  "reasons": []}]}],
              "manifest": {"hash": "0545a0c2", "windows": [{"kb": "KB5044284", "title": "2026-11 Cumulative Update",
                                                            "classifications": ["Security"]}],
                           "linux": [{"package": "openssl=3.0.13-1", "classifications": []}],
                           "diff": {"rings": [{"ring": "ring1", "machines": 4, "assessed": 3, "wouldInstall": 2,
                                               "notInManifestCount": 1}]}},
              "approvals": [{"decidedAt": "2026-11-16T07:00:00Z", "ring": "ring1", "verdict": "approve",
                             "outcome": "accepted", "approver": "alice@contoso.com"}]}
    code, out, _ = run(["rollouts", "show", "ro-1"], FakeApi(status), monkeypatch=monkeypatch)
    lines = out.splitlines()
    assert code == 0
    [ring] = [line for line in lines if line.startswith("ring0  installing wave 2 of 3")]
    assert ring.split()[-7:] == ["9", "3", "0", "0", "3", "3", "-"]
    assert any(line.split()[:3] == ["KB5044284", "2026-11", "Cumulative"] and "Security" in line for line in lines)
    assert any(line.startswith("openssl=3.0.13-1") for line in lines)
    assert any(line.split() == ["ring1", "4", "3", "2", "1", "-"] for line in lines), out
    assert any(line.split()[:3] == ["ring0", "r0-web-1", "pass"] for line in lines)
    assert any(line.split()[:5] == ["2026-11-16T07:00:00Z", "ring1", "approve", "accepted", "alice@contoso.com"]
               for line in lines)


def test_show_of_a_dry_run_lists_what_each_ring_and_vm_would_install(monkeypatch: Any) -> None:
    # shaped as recorded from the demo platform (GET /api/rollouts/{dry run id}: output.rings[].vms[])
    def vm(name: str, os_name: str, patches: list[str]) -> dict[str, Any]:
        return {"vm": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}",
                "name": name, "os": os_name, "assessed": True, "availablePatchCount": len(patches) + 1,
                "wouldInstallCount": len(patches), "filteredCount": 1, "error": None,
                "wouldInstall": [{"patch": p, "key": p.split()[0]} for p in patches]}
    status = {"id": "ro-d", "state": "dry-run-completed", "runtimeStatus": "Completed",
              "status": {"dryRun": True, "rings": []},
              "rings": [{"name": "ring1", "phase": "assessed", "phaseText": "assessed (dry run)",
                         "counts": {"vms": 2, "passed": 0, "failed": 0, "inconclusive": 0, "notStarted": 2}}],
              "output": {"rings": [{"ring": "ring1", "patching": "scheduled", "vms": [
                  vm("r1-web-01", "Windows", ["KB5049001 2026-11 Out-of-band Update"]),
                  vm("r1-app-01", "Linux", [])]}]}}
    code, out, _ = run(["rollouts", "show", "ro-d"], FakeApi(status), monkeypatch=monkeypatch)
    lines = out.splitlines()
    assert code == 0
    assert any(line.split() == ["ring1", "scheduled", "2", "2", "1", "2", "0"] for line in lines), out
    assert any(line.split() == ["ring1", "r1-web-01", "Windows", "2", "1", "1", "KB5049001", "2026-11",
                                "Out-of-band", "Update"] for line in lines), out
    assert any(line.split() == ["ring1", "r1-app-01", "Linux", "1", "0", "1", "-"] for line in lines), out


def test_plain_table_aligns_columns() -> None:
    assert plain_table(("A", "LONGER"), [("xyz", None), (True, ["p", "q"])]).splitlines() == [
        "A    LONGER", "---  ------", "xyz  -", "yes  p, q"]


def test_validate_plan_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-plan", "plans/default.json"]) == 0
    assert capsys.readouterr().out.startswith("OK ")
