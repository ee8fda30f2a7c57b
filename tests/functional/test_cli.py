"""The CLI drives a rollout of the real app on the local platform (host + ARM simulator + Azurite).

``python -m patchrings rollouts`` starts a rollout, shows it, is refused (wrong manifest, not an
approver: exit 1 with the API's code), approves Ring 1 as a plan approver with ``--as`` (the local
``X-PatchRings-Approver`` fallback the platform enables), halts, resumes, halts again, and lists — and the rollout moves
on because of it (it then waits for Ring 2's approval). Time moves only through the platform's
clock while the test waits on the rollout's state; the CLI's JSON answers are checked against the
OpenAPI document too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from patchrings.cli import add_rollouts_parser, run_rollouts
from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import driver, ledger

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
START = "2026-11-16T06:00:00Z"
OPENAPI = json.loads((REPO / "triggers" / "openapi.json").read_text())


def documented(schema_name: str, value: Any) -> None:
    """``value`` matches ``components.schemas[schema_name]`` of the OpenAPI document."""
    schema = {**OPENAPI, "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)


def cli(platform: Any, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_rollouts_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["rollouts", *argv, "--url", platform.base_url, "--key", platform.function_key])
    out, err = io.StringIO(), io.StringIO()
    return run_rollouts(args, stdout=out, stderr=err), out.getvalue(), err.getvalue()


@pytest.fixture
def held(platform_factory: Any) -> Any:
    from emulator.clock import make_clock

    clock = make_clock("skip", start=START)
    hold = clock.hold()
    hold.__enter__()
    try:
        yield platform_factory(scenario=sc.scenario(), clock=clock)
    finally:
        hold.__exit__(None, None, None)


def test_cli_starts_shows_approves_and_halts_a_rollout(held: Any) -> None:
    p = held
    d = driver(p)
    code, out, err = cli(p, "start", "--as", "dave@contoso.com", "--reason", "november", "--json")
    assert code == 0, err
    started = json.loads(out)
    documented("StartAccepted", started)
    rid = started["id"]
    assert started["initiator"] == "dave@contoso.com"

    d.until_waiting(rid, "approval", "ring1")
    code, out, err = cli(p, "show", rid, "--json")
    assert code == 0, err
    shown = json.loads(out)
    documented("Rollout", shown)
    manifest = shown["waitingFor"]["manifestHash"]
    code, human, _ = cli(p, "show", rid)
    assert code == 0 and f"rollouts approve {rid} ring1 --manifest {manifest}" in human
    # each ring says what it does now, and its VMs (all three of Ring 0, none left to start)
    [ring0] = [line.split() for line in human.splitlines() if line.startswith("ring0  ")][:1]
    assert ring0[-7:-5] == ["3", "3"] and ring0[-2:] == ["0", "pass"], human
    assert any(line.startswith("ring1  waiting for approval until ") for line in human.splitlines()), human
    assert any(line.split()[:2] == ["ring0", "r0-web-1"] for line in human.splitlines()), human  # per-VM rows

    # Refusals: exit 1 with the API's code and message; nothing approved.
    code, out, err = cli(p, "approve", rid, "ring1", "--manifest", "0" * 16, "--as", "alice@contoso.com")
    assert (code, out) == (1, "") and err.startswith("error: HTTP 409 ApprovalConflict: "), err
    code, out, err = cli(p, "approve", rid, "ring1", "--manifest", manifest, "--as", "eve@contoso.com", "--json")
    assert code == 1 and json.loads(out)["error"]["code"] == "ApprovalForbidden", out
    code, _, err = cli(p, "approve", rid, "ring1", "--manifest", manifest)  # no identity at all
    assert code == 1 and "ApprovalForbidden" in err

    code, out, err = cli(p, "approve", rid, "ring1", "--manifest", manifest, "--comment", "ring 0 clean",
                         "--as", "alice@contoso.com", "--json")
    assert code == 0, err
    decision = json.loads(out)
    documented("DecisionAccepted", decision)
    assert decision["decision"]["approver"] == "alice@contoso.com"
    assert decision["decision"]["manifestHash"] == manifest
    d.until_waiting(rid, "approval", "ring2")  # the approval opened Ring 1 and the rollout moved on
    submitted = [a for a in ledger(p).approvals(rid) if a.get("outcome") == "submitted"]
    assert [(a["approver"], a["verdict"], a["ring"]) for a in submitted] == [
        ("alice@contoso.com", "approve", "ring1")], submitted

    code, out, err = cli(p, "halt", rid, "--reason", "alerts in ring 1", "--as", "carol@contoso.com")
    assert code == 0 and out.startswith(f"halt of {rid} requested by carol@contoso.com"), (out, err)
    d.until(lambda: d.doc(rid).get("state") == "halted")
    code, out, err = cli(p, "halt", rid, "--as", "carol@contoso.com")
    assert code == 1 and "RolloutConflict" in err and "already halted" in err
    code, _, err = cli(p, "resume", rid, "--as", "dave@contoso.com")  # not an approver of ring2
    assert code == 1 and "HTTP 403 ApprovalForbidden" in err
    code, out, err = cli(p, "resume", rid, "--reason", "false alarm", "--as", "carol@contoso.com", "--json")
    assert code == 0, err
    documented("ResumeAccepted", json.loads(out))
    d.until(lambda: d.doc(rid).get("state") != "halted")
    code, out, err = cli(p, "halt", rid, "--reason", "for good", "--as", "carol@contoso.com", "--json")
    assert code == 0, err
    documented("HaltAccepted", json.loads(out))
    d.until(lambda: d.doc(rid).get("state") == "halted")

    # The module entry point, configured from the environment as an operator would.
    env = {**os.environ, "PATCHRINGS_API_URL": f"{p.base_url}/api", "PATCHRINGS_API_KEY": p.function_key}
    done = subprocess.run([sys.executable, "-m", "patchrings", "rollouts", "list"], check=False, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [row] = [line for line in done.stdout.splitlines() if line.startswith(rid)]
    assert row.split()[1:3] == ["halted", "Running"], done.stdout
    env["PATCHRINGS_API_KEY"] = "wrong"
    refused = subprocess.run([sys.executable, "-m", "patchrings", "rollouts", "show", rid], check=False, cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr, refused


def test_rollouts_commands_need_only_the_standard_library() -> None:
    """On an operator's machine ``python -m patchrings rollouts`` imports nothing outside the
    standard library (azure-identity only with --entra-scope, rich only on a terminal)."""
    probe = ("import sys\nfrom patchrings.__main__ import main\n"
             "code = main(['rollouts', 'list', '--url', 'http://127.0.0.1:9'])\n"
             "third = sorted({m.split('.')[0] for m in sys.modules} & {'jsonschema', 'dateutil', 'azure', 'rich',"
             " 'tzlocal', 'aiohttp', 'requests'})\n"
             "print(code, third)")
    done = subprocess.run([sys.executable, "-c", probe], check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "1 []", (done.stdout, done.stderr)
    assert "cannot reach http://127.0.0.1:9" in done.stderr
