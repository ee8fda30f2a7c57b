"""A host killed with SIGKILL mid-rollout resumes from SQLite: no history lost, work done once.

Runs the CLI in a subprocess (``python -m emulator start``) so the kill is a real process kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from emulator.azurite import reserve_port

sys.path.insert(0, str(Path(__file__).parent))
from host_http import http

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[3]
APP = Path(__file__).parent / "apps" / "rollout"


DURABLE_KEY = "persistence-test-durabletask-key"  # the durabletask_extension system key


def launch(port: int, storage: Path, log: Path, out: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, ROLLOUT_LOG=str(log), PATCH_SECONDS="0.3", PYTHONPATH=str(REPO),
               FUNCTIONS_SYSTEM_KEY_DURABLETASK_EXTENSION=DURABLE_KEY)
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "start", "--app", str(APP), "--port", str(port),
         "--clock", "skip", "--start", "2025-03-01T00:00:00Z", "--storage", str(storage)],
        cwd=REPO, env=env, stdout=out.open("ab"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http("GET", f"http://127.0.0.1:{port}/")[0] == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"host exited early:\n{out.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"host did not come up:\n{out.read_text()}")


def status(port: int, iid: str, history: bool = False) -> dict[str, Any]:
    q = "?showHistory=true&showHistoryOutput=true" if history else ""
    code, _, body = http("GET", f"http://127.0.0.1:{port}/runtime/webhooks/durabletask/instances/{iid}"
                         f"{q or '?'}&code={DURABLE_KEY}")
    assert code in (200, 202), code
    return json.loads(body)


def poll(port: int, iid: str, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = status(port, iid)
        if predicate(st):
            return st
        assert time.monotonic() < deadline, f"timed out; last status {st}"
        time.sleep(0.02)


def test_sigkill_mid_rollout_resumes_without_losing_history(tmp_path: Path) -> None:
    # held until the end: the host is started again on this port after the SIGKILL
    port, holder = reserve_port()
    storage = tmp_path / "durable.sqlite"
    log, out = tmp_path / "side-effects.log", tmp_path / "host.out"
    proc = launch(port, storage, log, out)
    try:
        code, _, body = http("POST", f"http://127.0.0.1:{port}/api/start", body={"rings": 3, "vms": 3})
        assert code == 202
        iid = json.loads(body)["id"]
        poll(port, iid, lambda s: (s.get("customStatus") or {}).get("stage") == "approval")
        code, _, _ = http("POST", f"http://127.0.0.1:{port}/runtime/webhooks/durabletask/instances/{iid}"
                                  f"/raiseEvent/Approve?code={DURABLE_KEY}", body="alice")
        assert code == 202
        poll(port, iid, lambda s: s.get("customStatus") == {"ring": 1, "stage": "patching"})
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        before_restart = Counter(log.read_text().split())

        proc = launch(port, storage, log, out)
        final = poll(port, iid, lambda s: s["runtimeStatus"] in ("Completed", "Failed"))
        events = status(port, iid, history=True)["historyEvents"]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if holder is not None:
            holder.close()

    assert final["runtimeStatus"] == "Completed", out.read_text()[-3000:]
    printed = out.read_text()
    assert f"start: [POST] http://127.0.0.1:{port}/api/start" in printed  # routes, like func start
    assert "Default function key:" in printed
    assert "recovered 1 durable instance(s)" in printed
    expected = [f"patched {r}:{v}" for r in range(3) for v in range(3)]
    assert final["output"] == [*expected[:3], "approved:alice", *expected[3:]]
    # ring 0 finished before the kill: its side effects happened exactly once
    assert all(before_restart[f"0:{v}"] == 1 for v in range(3))
    # the kill really happened while ring 1 was being patched
    assert sum(before_restart[f"1:{v}"] for v in range(3)) < 3
    # every activity ran at least once; only the ones in flight at the kill may have run twice
    effects = Counter(log.read_text().split())
    assert set(effects) == {f"{r}:{v}" for r in range(3) for v in range(3)}
    assert sum(effects.values()) - 9 <= 3
    # the durable history records each activity result, the approval and the start exactly once
    kinds = Counter(e["EventType"] for e in events)
    assert kinds["ExecutionStarted"] == 1 and kinds["EventRaised"] == 1 and kinds["ExecutionCompleted"] == 1
    results = [e["Result"] for e in events if e["EventType"] == "TaskCompleted"]
    assert sorted(results) == sorted(expected)
    assert kinds["TimerFired"] == 3


def test_pending_timers_and_waits_survive_a_restart(tmp_path: Path) -> None:
    """Write-through state: a host stopped with a timer pending re-arms it on the next start."""
    from emulator.clock import make_clock
    from emulator.host.testing import HostThread

    basic = Path(__file__).parent / "apps" / "basic"
    storage = str(tmp_path / "durable.sqlite")
    clock = make_clock("skip", start="2025-01-01T00:00:00Z")
    with clock.hold(), HostThread(basic, clock, storage=storage) as first:
        client = first.client()
        sleeper = first.call(client.start_new("long_sleep", "sleeper", 2))
        waiter = first.call(client.start_new("approval", "waiter", {"hours": 48}))
        deadline = time.monotonic() + 30
        while not (len(first.history(sleeper)) >= 4 and len(first.history(waiter)) >= 4
                   and first.run_sync(lambda: first.host.engine.idle)):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    clock.close()

    clock = make_clock("skip", start="2025-01-01T00:00:00Z")
    hold = clock.hold()
    hold.__enter__()  # no time jump before the event is raised
    try:
        with HostThread(basic, clock, storage=storage) as second:
            client = second.client()
            second.call(client.raise_event(waiter, "Approval", "after restart"))
            hold.__exit__(None, None, None)
            assert second.wait_for(waiter).output["value"] == '"after restart"'
            assert second.wait_for(sleeper).output == 2 * 86400.0
            assert clock.now().isoformat() == "2025-01-03T00:00:00+00:00"
    finally:
        clock.close()
