"""`make demo` end to end: the real demo command, both scenarios, judged by what it prints.

Why a subprocess: the demo configures logging, owns `.local/demo/` and must leave no process
behind; running it exactly as `make demo` does is the only honest check of that.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional
REPO = Path(__file__).resolve().parents[2]


def run_demo(*args: str, columns: int = 200) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    proc = subprocess.run(
        [sys.executable, "-m", "demo", "--auto-approve", "--pace", "0", "--timeout", "400", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_happy_demo_patches_three_rings_with_approvals() -> None:
    out = run_demo()
    assert "Rollout ended: completed" in out
    # Ring 0 is the only ring installed on demand: its 6 VMs, once each.
    assert "installPatches calls sent by the app: 6;" in out
    assert len(re.findall(r"approved ring[12] .* HTTP 202", out)) == 2
    assert "HTTP 409" not in out
    # Ring 0 is patched on demand, so its configuration's own scheduled run is unauthorised and
    # the guard cancels it; no run of a promoted ring is cancelled.
    cancelled = re.search(r"maintenance runs cancelled: (\d+)(?: \(of ([^)]*)\))?", out)
    assert cancelled, out[-2000:]
    assert "mc-ring1" not in (cancelled.group(2) or "") and "mc-ring2" not in (cancelled.group(2) or ""), out[-2000:]
    # the operator page is announced as soon as the rollout exists; tables end with a newline
    assert re.search(r"^Rollout \S+ started\. Operator page \(look, approve, reject\): "
                     r"http://127\.0\.0\.1:\d+/api/ui/rollouts/\S+$", out, re.M), out[:3000]
    assert re.search(r"^Rollout summary", out, re.M), out[-3000:]
    assert re.search(r"^manifest [0-9a-f]+: from ring0, pinned to ring1, ring2$", out, re.M), out[-3000:]
    # the Notifications section: what the app published to the local Event Grid topic, one line each
    assert re.search(r"^Notifications", out, re.M), out[-3000:]
    if "PatchRings.ApprovalWaiting" in out:
        waiting = re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\dZ\s+PatchRings\.ApprovalWaiting\s+(ring\d)\s", out, re.M)
        assert waiting == ["ring1", "ring2"], out[-3000:]


def test_bad_patch_demo_halts_and_shows_later_runs_cancelled() -> None:
    out = run_demo("--scenario", "bad-patch", columns=80)
    assert "Rollout ended: halted" in out
    # at 80 columns: whole headers, short VM names, Ring 0's 6 VMs counted (2 never started), no "(built)"
    summary = out.split("Rollout summary", 1)[1].split("\nRollout ended", 1)[0]
    assert max(len(line) for line in summary.splitlines()) <= 80, summary
    assert re.search(r"^ring\s+VMs\s+passed\s+failed\s+not started\s+gate\s+approved by\s+took\s*$", summary, re.M)
    assert re.search(r"^ring0\s+6\s+3\s+1\s+2\s+fail\s", summary, re.M), summary
    assert "(built)" not in out and "never pinned (its gate did not pass)" in summary
    assert len(re.findall(r"^ring0\s+r0-\S+\s+not started", out, re.M)) == 2, out[-4000:]
    # the API's own counts (GET /api/rollouts/{id}, printed as they are) add up, never-started VMs included
    assert "ring0: 6 VMs = 3 passed + 1 failed + 2 never started" in out, out[-3000:]
    assert "/subscriptions/" not in out.split("Rollout summary", 1)[0].rsplit("PatchRings demo", 1)[-1]
    # structured logs: key=value lines; every line an activity or orchestrator of the rollout wrote names it
    rollout = re.search(r"^Rollout (\S+) started\.", out, re.M)
    assert rollout, out[:2000]
    lines = (REPO / ".local" / "demo" / "logs" / "platform.log").read_text(encoding="utf-8").splitlines()
    assert lines and all(line.startswith("time=") and " level=" in line and " msg=" in line for line in lines)
    app_lines = [line for line in lines if re.search(r" function=(start_install|wave_orchestrator|rollout_orchestrator)"
                                                     r" ", line)]
    assert any("function=start_install" in line for line in app_lines), "\n".join(lines[-50:])
    assert any("function=wave_orchestrator" in line for line in app_lines), "\n".join(lines[-50:])
    assert all(f"rollout={rollout.group(1)} " in line for line in app_lines), [
        line for line in app_lines if f"rollout={rollout.group(1)} " not in line][:3]
    assert re.search(r"mc-ring1 run at .*: Cancelled", out), out[-2000:]
    assert re.search(r"mc-ring2 run at .*: Cancelled", out), out[-2000:]
    assert "VMs patched by it: 0" in out
    assert re.search(r"installPatches reached only Ring 0 VMs \(\d+\): yes", out)
    assert not re.search(r"approved ring\d", out)  # nothing to approve once Ring 0's gate failed


def test_demo_waits_for_a_person_and_the_printed_command_approves() -> None:
    """Without --auto-approve the demo prints a ready curl command; running it moves the rollout on."""
    import shlex
    import threading

    from emulator.platform import http_call

    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo", "--pace", "0", "--timeout", "400"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    timer = threading.Timer(600, proc.kill)
    timer.start()
    lines: list[str] = []
    approvals: list[int] = []
    pages: list[int] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if re.match(r"http://127\.0\.0\.1:\d+/api/ui/rollouts/\S+\?as=alice%40contoso\.com$", line.strip()):
                pages.append(http_call("GET", line.strip()).status)  # the printed page link answers
            if not line.startswith("curl -sS -X POST "):
                continue
            argv = shlex.split(line)  # the command exactly as a person would paste it
            url = argv[argv.index("-X") + 2]
            headers = dict(h.split(": ", 1) for h in (argv[i + 1] for i, a in enumerate(argv) if a == "-H"))
            body = json.loads(argv[argv.index("-d") + 1])
            approvals.append(http_call("POST", url, body=body, headers=headers).status)
        assert proc.wait(timeout=60) == 0, "".join(lines)[-3000:]
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    assert approvals == [202, 202], out[-3000:]
    assert pages == [200, 200], out[-3000:]  # the operator page, printed for each of the two approvals
    assert "Rollout ended: completed" in out
    assert "alice@contoso.com" in out.split("Rollout summary", 1)[1]
    # the prompt shows what is signed: KBs with their titles and packages as name=version
    prompt = out.split("Approval needed", 1)[1].split("curl -sS", 1)[0]
    assert "KB5048667 2026-11 Cumulative Update for Windows Server 2022" in prompt, prompt
    assert "openssl=3.0.2-0ubuntu1.19" in prompt, prompt


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupting_the_demo_stops_everything(sig: str) -> None:
    """Ctrl-C or `kill` while waiting for approval: exit 130 and no Azurite left listening."""
    import signal
    import socket

    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo", "--pace", "0", "--timeout", "400"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("curl -sS -X POST "):
                proc.send_signal(getattr(signal, sig))
                break
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + rest
    assert proc.returncode == 130, out[-2000:]
    assert "Interrupted: stopping the platform." in out
    port = re.search(r"Azurite http://127\.0\.0\.1:(\d+)", out)
    assert port, out[:2000]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(port.group(1))), timeout=2):
        pass


def test_local_settings_sample_matches_the_simulator_defaults(tmp_path: Path) -> None:
    """local.settings.sample.json works with the simulator as docs/local-platform.md starts it."""
    import shutil

    from emulator.arm.server import ArmSimulator
    from emulator.azurite import ACCOUNT_KEY
    from emulator.clock import make_clock
    from emulator.platform import LoopThread

    sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    docs = (REPO / "docs" / "local-platform.md").read_text()
    assert "--port 8443" in docs and "--state-dir .local/arm" in docs
    assert sample["PATCHRINGS_ARM_ENDPOINT"] == "https://127.0.0.1:8443"
    assert sample["PATCHRINGS_ARM_CA_BUNDLE"] == ".local/arm/ca.pem"
    assert sample["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1" in sample["PATCHRINGS_LEDGER_CONNECTION"]
    assert f"AccountKey={ACCOUNT_KEY}" in sample["PATCHRINGS_LEDGER_CONNECTION"]
    # the simulator started as the docs say (port aside: 8443 may be taken here) writes the same
    clock = make_clock("real")
    loop = LoopThread("settings-check")
    sim = ArmSimulator(REPO / "emulator" / "arm" / "scenarios" / "sample.yaml", clock,
                       state_dir=tmp_path / ".local" / "arm", variables={"FUNCTIONS_HOST": "http://127.0.0.1:7071"})
    try:
        loop.call(sim.start())
        settings = sim.client_settings
        assert settings["PATCHRINGS_ARM_STATIC_TOKEN"] == sample["PATCHRINGS_ARM_STATIC_TOKEN"]
        assert settings["PATCHRINGS_ARM_AUTH"] == sample["PATCHRINGS_ARM_AUTH"]
        assert Path(settings["PATCHRINGS_ARM_CA_BUNDLE"]) == tmp_path / sample["PATCHRINGS_ARM_CA_BUNDLE"]
    finally:
        loop.call(sim.stop())
        loop.close()
        clock.close()
    shutil.copy(REPO / "local.settings.sample.json", tmp_path / "local.settings.json")
    shutil.copytree(REPO / "plans", tmp_path / "plans")  # the app folder as func start sees it
    check = subprocess.run([sys.executable, "-m", "patchrings.settings", "--check"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(REPO)},
                           capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_platform_cli_passes_plan_and_settings_and_streams_function_runs(tmp_path: Path) -> None:
    """`python -m emulator platform --plan --setting`: the app gets them; runs stream like func start."""
    import signal

    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "platform", "--scenario", str(REPO / "demo/scenarios/happy.yaml"),
         "--clock", "skip", "--start", "2026-11-16T06:00:00Z", "--plan", str(REPO / "demo/plan.json"),
         "--setting", "PATCHRINGS_APPROVER_HEADER_FALLBACK=true", "--port", "0",
         "--state-dir", str(tmp_path / "state")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            # the Ring 0 pre-event reaches the app, which starts the rollout from the demo plan
            if re.search(r"Executed eventGridTrigger 'on_maintenance_event' .*: Succeeded", line):
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + rest
    assert "Setting        : PATCHRINGS_PLAN_PATH=" + str(REPO / "demo/plan.json") in out, out[-3000:]
    assert "Setting        : PATCHRINGS_APPROVER_HEADER_FALLBACK=true" in out
    assert "Clock API      : http://127.0.0.1:" in out
    assert re.search(r"^\[\d{4}-\d\d-\d\dT[\d:]+\] Executed eventGridTrigger 'on_maintenance_event'", out, re.M), out
    assert re.search(r"Executed orchestrator 'rollout_orchestrator' \(instance=", out), out[-3000:]
