"""The demo's live view (demo/ui.py) rendered at 80 and 160 columns over recorded status documents.

The documents in ``views/`` are ``GET /api/rollouts/{id}`` answers recorded from `make demo`:
``api-*`` the current API (rings with phase texts, moving counts and per-VM rows at the top level;
installing, awaiting approval, collecting Ring 1, completed, bad-patch halted), the others an
older answer that had only the orchestration's custom status and the ledger (the UI must still
render those), trimmed of per-patch lists. Rendering goes through rich's Console(record=True)
exactly as the terminal would get it.
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
API = ("api-installing", "api-awaiting-approval", "api-collecting", "api-completed", "api-bad-patch-halted",
       "api-bad-patch-counts")
OLD = ("happy-installing", "happy-awaiting-approval", "happy-completed", "bad-patch-halted")
NAMES = API + OLD


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
    for header in ("VMs", "passed", "failed", "unclear", "not started", "gate"):
        assert f" {header} " in f"{rings} ", rings
    summary = next(line for line in header_lines if "approved by" in line)
    assert re.search(r"\btook\b", summary), summary
    assert ("patching" in rings) == (width >= 100)


@pytest.mark.parametrize(("name", "not_started"), [("api-bad-patch-halted", ("r0-web-01", "r0-web-02")),
                                                  ("api-bad-patch-counts", ("r0-web-01", "r0-web-02")),
                                                  ("bad-patch-halted", ("r0-web-02", "r0-web-03"))])
def test_vm_counts_include_vms_not_started_and_the_halted_manifest_is_not_called_built(
        name: str, not_started: tuple[str, str]) -> None:
    """Ring 0 halted after 4 VMs: 3 passed, 1 failed, 2 never started, so 6 VMs, not 4 (older API
    answers said 0 not started and only the gate named them; ``api-bad-patch-counts``, recorded
    after the fix, has ``skipped: 2`` and a ``not-started`` row each)."""
    doc = load(name)
    out = render_text(name, 80)
    ring0 = next(line for line in out.splitlines() if line.startswith("ring0") and "failed" in line)
    assert ring0.split()[:7] == ["ring0", "failed", "6", "3", "1", "0", "2"], ring0
    for vm in not_started:
        assert re.search(rf"ring0\s+{vm}\s+not started", out), out
    summary = text_of(ui.summary_table(doc["view"], width=80), 80)
    assert re.search(r"^ring0\s+6\s+3\s+1\s+2\s+fail", summary, re.M), summary
    assert re.search(r"manifest [0-9a-f]{16}: from ring0, never pinned \(its gate did not pass\)\n", summary)
    assert summary.endswith("\n\n"), "a blank line after the summary, so what follows starts on its own line"


def test_counts_move_while_a_ring_installs() -> None:
    # the API's moving counts: 6 VMs, wave 1 of 3 verifying, 4 not started yet; later rings blank
    out = render_text("api-installing", 80)
    assert re.search(r"^ring0\s+installing wave\s+6\s+0\s+0\s+0\s+4\s*$", out, re.M), out
    assert re.search(r"^ring1\s+pending\s*$", out, re.M), out  # not resolved yet: blanks, not zeros
    wide = render_text("api-installing", 160)
    assert re.search(r"^ring0\s+direct\s+installing wave 1 of 3: verifying\s+6\s", wide, re.M), wide
    # an older document: only the ledger rows written so far, so "at least 2"
    old = render_text("happy-installing", 80)
    ring0 = next(line for line in old.splitlines() if line.startswith("ring0") and "installing" in line)
    assert ring0.split()[:4] == ["ring0", "installing", "2+", "2"], ring0


@pytest.mark.parametrize("name", ["api-awaiting-approval", "happy-awaiting-approval"])
def test_awaiting_approval_header_names_the_ring_deadline_manifest_contents_and_page(name: str) -> None:
    out = render_text(name, 80, page_url="http://127.0.0.1:7071/api/ui/rollouts/r1")
    assert "waiting for approval (ring1) until 2026-11-17 09:55Z" in out
    assert "manifest 0545a0c241d8f8c9: 3 KBs (KB5048667, KB5048685, KB5048710), 4" in out
    assert "curl=7.81.0-1ubuntu1.20" in out
    assert "operator page http://127.0.0.1:7071/api/ui/rollouts/r1" in out
    long_link = "http://127.0.0.1:7071/api/ui/rollouts/" + "x" * 60  # would wrap at 80: left out
    assert "operator page" not in render_text(name, 80, page_url=long_link)
    assert f"operator page {long_link}" in render_text(name, 160, page_url=long_link)
    assert re.search(r"^ring1\s+awaiting approval", out, re.M), out
    if name.startswith("api-"):  # the deadline is tomorrow: the short form keeps the date
        assert re.search(r"^\s+until 11-17\b", out, re.M), out


@pytest.mark.parametrize("name", ["api-completed", "happy-completed"])
def test_vm_table_shows_what_fits_problems_first(name: str) -> None:
    full = render_text(name, 80)
    assert len(re.findall(r"^ring\d\s+r\d-", full, re.M)) == 30  # no height: every VM
    short = render_text(name, 80, height=40)
    assert len(short.splitlines()) <= 40, short
    assert re.search(r"\.\.\. \d+ more VM\(s\), all finished and healthy", short)
    # a problem VM is shown even when it is last in the list
    doc = load(name)
    view = copy.deepcopy(doc["view"])
    if name.startswith("api-"):
        last = view["rings"][2]["vms"][-1]
        last.update(health="unhealthy", outcome="fail", reasons=["health: power state is stopped"])
    else:
        last = view["ledger"]["vmResults"]["ring2"][-1]
        last["verdict"].update(health="unhealthy", outcome="fail", reasons=["health: power state is stopped"])
    out = text_of(ui.render(view, doc["now"], width=80, height=30), 80)
    assert re.search(rf"ring2\s+{last['name']}\s+Succeeded\s+unhealthy\s+health: power state", out), out


@pytest.mark.parametrize("name", ["api-completed", "happy-completed"])
def test_approvers_of_both_rings_are_the_accepted_decisions(name: str) -> None:
    """The API lists submitted and accepted decisions; an older status kept only the last (the ledger all)."""
    doc = load(name)
    if name == "happy-completed":
        assert [a["ring"] for a in doc["view"]["status"]["approvals"]] == ["ring2"]
    else:
        assert [a["outcome"] for a in doc["view"]["approvals"]] == ["submitted", "accepted", "submitted", "accepted"]
    out = text_of(ui.summary_table(doc["view"], width=160), 160)
    assert re.search(r"^ring1\s.*demo-approver@contoso\.com", out, re.M), out
    assert re.search(r"^ring2\s.*demo-approver@contoso\.com", out, re.M), out
    narrow = text_of(ui.summary_table(doc["view"], width=80), 80)
    assert re.search(r"^ring1\s.*demo-approver@\.\.\.\s", narrow, re.M), narrow
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
    assert re.search(r"^ring0\s+installing wave\s+6\s.*\n\s+2/3\s", narrow, re.M), narrow  # short, wraps, never cut
    assert "KB5048667" in out and "curl=7.81.0-1ubuntu1.20" in out
    assert re.search(r"ring0\s+arc-db-01\s+\(arc\)\s+running", out), out  # Arc machines say so (os column)


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
    assert re.match(rf"2026-11-16 09:55Z\s+{kind}\s+ring1\s+waits for approval of 0545a0c2$", body[0].rstrip()), body[0]
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
