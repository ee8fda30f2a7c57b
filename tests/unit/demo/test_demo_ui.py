"""The demo's live view (demo/ui.py) rendered at 80 and 160 columns over recorded status documents.

The documents in ``views/`` are ``GET /api/rollouts/{id}`` answers recorded from `make demo`
(happy: while Ring 0 installs, while Ring 1 waits for approval, at the end; bad-patch: halted),
trimmed of per-patch lists. Rendering goes through rich's Console(record=True) exactly as the
terminal would get it.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from demo import ui

pytestmark = pytest.mark.unit
VIEWS = Path(__file__).parent / "views"
NAMES = ("happy-installing", "happy-awaiting-approval", "happy-completed", "bad-patch-halted")


def load(name: str) -> dict[str, Any]:
    return json.loads((VIEWS / f"{name}.json").read_text())  # type: ignore[no-any-return]


def text_of(renderable: Any, width: int) -> str:
    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def render_text(name: str, width: int, height: int | None = None, **kwargs: Any) -> str:
    doc = load(name)
    return text_of(ui.render(doc["view"], doc["now"], width=width, height=height, **kwargs), width)


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("name", NAMES)
def test_every_view_fits_the_width_with_whole_headers_and_short_names(name: str, width: int) -> None:
    doc = load(name)
    out = text_of(ui.render(doc["view"], doc["now"], width=width), width) + text_of(
        ui.summary_table(doc["view"], width=width), width)
    assert max(len(line) for line in out.splitlines()) <= width
    assert "/subscriptions/" not in out  # short VM names, never full ARM ids
    assert "(built)" not in out
    header_lines = [line for line in out.splitlines() if line.startswith("ring ")]
    assert header_lines, out
    for line in header_lines:  # every table header is whole: no ellipsis, no folded header word
        assert "…" not in line and "..." not in line, line
    rings = next(line for line in header_lines if "phase" in line)
    for header in ("VMs", "patched", "failed", "unhealthy", "unclear", "gate"):
        assert f" {header} " in f"{rings} ", rings
    summary = next(line for line in header_lines if "approved by" in line)
    assert re.search(r"\btook\b", summary), summary
    assert ("patching" in rings) == (width >= 100)


def test_vm_counts_include_vms_not_started_and_the_halted_manifest_is_not_called_built() -> None:
    doc = load("bad-patch-halted")
    out = render_text("bad-patch-halted", 80)
    ring0 = next(line for line in out.splitlines() if line.startswith("ring0") and "failed" in line)
    assert ring0.split()[:6] == ["ring0", "failed", "6", "4", "0", "1"], ring0  # 6 VMs: 4 patched + 2 not started
    for vm in ("r0-web-02", "r0-web-03"):
        assert re.search(rf"ring0\s+{vm}\s+not started", out), out
    summary = text_of(ui.summary_table(doc["view"], width=80), 80)
    assert re.search(r"^ring0\s+6\s+4\s+0\s+1\s+fail", summary, re.M), summary
    assert "manifest 363dda6977f8ba95: from ring0, never pinned (its gate did not pass)\n" in summary
    assert summary.endswith("\n\n"), "a blank line after the summary, so what follows starts on its own line"


def test_counts_move_while_a_ring_installs_from_the_ledger_rows() -> None:
    out = render_text("happy-installing", 80)
    ring0 = next(line for line in out.splitlines() if line.startswith("ring0") and "installing" in line)
    # the two VMs of wave 1 so far; the ring's size is not published yet, so "at least 2"
    assert ring0.split()[:4] == ["ring0", "installing", "2+", "2"], ring0


def test_awaiting_approval_header_names_the_ring_deadline_manifest_contents_and_page() -> None:
    out = render_text("happy-awaiting-approval", 80, page_url="http://127.0.0.1:7071/api/ui/rollouts/r1")
    assert "waiting for approval (ring1) until 2026-11-17 09:55Z" in out
    assert "manifest 0545a0c241d8f8c9: 3 KBs (KB5048667, KB5048685, KB5048710), 4" in out
    assert "curl=7.81.0-1ubuntu1.20" in out
    assert "operator page http://127.0.0.1:7071/api/ui/rollouts/r1" in out
    assert re.search(r"^ring1\s+awaiting approval", out, re.M), out


def test_vm_table_shows_what_fits_problems_first() -> None:
    full = render_text("happy-completed", 80)
    assert len(re.findall(r"^ring\d\s+r\d-", full, re.M)) == 30  # no height: every VM
    short = render_text("happy-completed", 80, height=40)
    assert len(short.splitlines()) <= 40, short
    assert re.search(r"\.\.\. \d+ more VM\(s\), all finished and healthy", short)
    # a problem VM is shown even when it is last in the list
    doc = load("happy-completed")
    view = copy.deepcopy(doc["view"])
    last = view["ledger"]["vmResults"]["ring2"][-1]
    last["verdict"].update(health="unhealthy", outcome="fail", reasons=["health: power state is stopped"])
    out = text_of(ui.render(view, doc["now"], width=80, height=30), 80)
    assert re.search(rf"ring2\s+{last['name']}\s+Succeeded\s+unhealthy\s+health: power state", out), out


def test_approvers_of_both_rings_come_from_the_ledger_when_the_status_keeps_only_the_last() -> None:
    doc = load("happy-completed")
    assert [a["ring"] for a in doc["view"]["status"]["approvals"]] == ["ring2"]
    out = text_of(ui.summary_table(doc["view"], width=160), 160)
    assert re.search(r"^ring1\s.*demo-approver@contoso\.com", out, re.M), out
    assert re.search(r"^ring2\s.*demo-approver@contoso\.com", out, re.M), out
    narrow = text_of(ui.summary_table(doc["view"], width=80), 80)
    assert re.search(r"^ring1\s.*demo-approver@\.\.\.\s+3h31m", narrow, re.M), narrow
    assert "pinned to ring1, ring2" in narrow


def test_richer_documents_render_too() -> None:
    """Fields the status document is gaining (phase details, manifest entries as objects, vms list)."""
    doc = load("happy-awaiting-approval")
    view = copy.deepcopy(doc["view"])
    status = view["status"]
    status["rings"][0].update(phase="installing", phaseDetail={"wave": 2, "waves": 3}, counts={})
    status["rings"][2].update(phase="stay-healthy", until="2026-11-16T12:30:00Z", members=14)
    status["manifest"]["windowsKbs"] = [{"kbId": "5048667", "title": "2024-12 Cumulative Update",
                                         "classifications": ["Security"]}]
    status["manifest"]["linuxPackages"] = [{"name": "curl", "version": "7.81.0-1ubuntu1.20"}]
    view["vms"] = [{"ring": "ring0", "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridCompute/"
                    "machines/arc-db-01", "name": "arc-db-01", "kind": "arc", "install": "running"}]
    out = text_of(ui.render(view, doc["now"], width=160), 160)
    assert re.search(r"^ring0\s+direct\s+installing wave 2 of 3\s", out, re.M), out
    assert re.search(r"^ring2\s+scheduled\s+stay healthy until 2026-11-16 12:30Z\s+14\s", out, re.M), out
    narrow = text_of(ui.render(view, doc["now"], width=80), 80)
    assert re.search(r"^ring0\s+installing wave 2\s+6\s.*\n\s+of 3\s", narrow, re.M), narrow  # wraps, never cut
    assert "KB5048667" in out and "curl=7.81.0-1ubuntu1.20" in out
    assert re.search(r"ring0\s+arc-db-01\s+running", out), out


EVENTS = [
    {"specversion": "1.0", "type": "PatchRings.ApprovalWaiting", "source": "/patchrings/rollouts/r1",
     "subject": "rings/ring1", "id": "e1", "time": "2026-11-16T09:55:22Z",
     "data": {"kind": "approval-waiting", "ring": "ring1", "rolloutId": "r1",
              "message": "ring ring1 of rollout r1 waits for approval of 0545a0c2"}},
    {"specversion": "1.0", "type": "PatchRings.RolloutCompleted", "source": "/patchrings/rollouts/r1",
     "subject": "rollout", "id": "e2", "time": "2026-11-16T19:27:04.123+00:00",
     "data": {"kind": "rollout-completed", "ring": None, "rolloutId": "r1",
              "message": "rollout r1 ended completed: passed " + "x" * 200}},
]


@pytest.mark.parametrize("width", [80, 160])
def test_notifications_one_line_each_with_time_type_and_ring(width: int) -> None:
    out = text_of(ui.notifications_table(EVENTS, width=width), width)
    lines = out.splitlines()
    assert lines[0].startswith("Notifications")
    assert max(len(line) for line in lines) <= width
    body = [line for line in lines if line.startswith("2026-")]
    assert len(body) == 2, out  # one line each, long messages cut, not wrapped
    kind = "PatchRings.ApprovalWaiting" if width >= 100 else "ApprovalWaiting"
    assert re.match(rf"2026-11-16 09:55Z\s+{kind}\s+ring1\s+ring ring1 waits for approval", body[0]), body[0]
    assert re.match(r"2026-11-16 19:27Z\s+\S*RolloutCompleted\s+-\s+rollout ended completed", body[1]), body[1]
    assert ui.notifications_table([], width=width) is None


def test_live_view_includes_the_notifications_section() -> None:
    assert "ApprovalWaiting" in render_text("happy-awaiting-approval", 80, events=EVENTS)
    assert "Notifications" not in render_text("happy-awaiting-approval", 80)


class _Topic(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"events": EVENTS} if self.path == "/_sim/events" else {}).encode()
        self.send_response(200 if self.path == "/_sim/events" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_demo_reads_the_local_topic_and_tolerates_its_absence() -> None:
    from demo.__main__ import api_path, fetch_events

    server = HTTPServer(("127.0.0.1", 0), _Topic)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        platform = type("P", (), {"eventgrid_url": f"http://127.0.0.1:{server.server_port}/"})()
        assert fetch_events(platform) == EVENTS  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()
    assert fetch_events(type("Old", (), {})()) is None  # type: ignore[arg-type]  # no topic emulator
    gone = type("P", (), {"eventgrid_url": f"http://127.0.0.1:{server.server_port}"})()
    assert fetch_events(gone) is None  # type: ignore[arg-type]  # not answering
    path = "/api/rollouts/r1/rings/ring1/approve"
    assert api_path(f"http://127.0.0.1:7071{path}") == path  # the API's absolute approveUrl
    assert api_path(path) == path
