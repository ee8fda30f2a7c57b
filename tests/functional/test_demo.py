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


def run_demo(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
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
    assert "maintenance runs cancelled: 0" in out


def test_bad_patch_demo_halts_and_shows_later_runs_cancelled() -> None:
    out = run_demo("--scenario", "bad-patch")
    assert "Rollout ended: halted" in out
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
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not line.startswith("curl -X POST "):
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
    assert "Rollout ended: completed" in out
    assert "alice@contoso.com" in out.split("Rollout summary", 1)[1]


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
            if line.startswith("curl -X POST "):
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
