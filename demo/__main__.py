"""``python -m demo`` (``make demo``): a complete three-ring rollout on the local platform.

What it shows, through the real path only:

1. the ARM simulator's maintenance schedules fire PreMaintenanceEvent into the app's Event Grid
   trigger, which starts the rollout;
2. Ring 0 is patched directly (installPatches in waves) and verified (install results + health
   phases), and a manifest is built from what it installed cleanly;
3. the gate waits for a person (twice: Ring 1 and Ring 2): the demo prints the operator page's URL
   and a ready curl command, or approves itself as a named demo approver with ``--auto-approve``;
4. Ring 1 and Ring 2 are promoted (manifest pinned, gate opened) and patched by their own
   scheduled maintenance runs;
5. a summary table, and where the ledger and the logs are.

Time: the platform runs on a *paced skip clock*: simulated time jumps over idle stretches
(hours of maintenance schedule in a fraction of a second) but each jump is followed by a short
real pause so the progress is watchable. The demo drives time through the platform's clock
API (``/admin/clock``, the same calls a person makes with curl): it holds a clock *lease* for
the whole run (renewed every few seconds; if the demo dies the lease expires and time goes on)
and moves time with ``POST /admin/clock/advance``. While it waits for your approval it only
holds the lease, so the clock stands still and your curl approval wins the race against the
approval timeout. The whole run takes about two minutes of wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel

from demo import ui
from emulator.clock_http import ClockClient
from emulator.platform import LocalPlatform
from patchrings.telemetry import ContextFilter, KeyValueFormatter

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "demo" / "scenarios"
DEMO_START = "2026-11-16T06:00:00Z"
TERMINAL = {"completed", "failed", "halted", "dry-run-completed", "terminated"}
DEMO_APPROVER = "demo-approver@contoso.com"


class ClockLease:
    """A lease on the platform's clock API, renewed in the background until released.

    Why renewed: leases expire in real seconds so a crashed holder cannot freeze time; a short
    TTL kept alive by a heartbeat gives both (the demo's time stands still while it lives).
    """

    def __init__(self, clock: ClockClient, holder: str, ttl: float = 30.0) -> None:
        self.clock = clock
        self.ttl = ttl
        self.lease_id = clock.lease(ttl, holder)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="demo-clock-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.clock.renew(self.lease_id):
                    self.lease_id = self.clock.lease(self.ttl, "demo (renewed after expiry)")
            except OSError:
                continue

    def release(self) -> None:
        self._stop.set()
        try:
            self.clock.release(self.lease_id)
        except OSError:
            pass


def _doc(view: dict[str, Any]) -> dict[str, Any]:
    return ui._status_doc(view)


def _waiting_for_approval(view: dict[str, Any]) -> dict[str, Any] | None:
    waiting = _doc(view).get("waitingFor") or {}
    return waiting if str(waiting.get("what", "")).lower().startswith("approval") else None


def _is_terminal(view: dict[str, Any]) -> bool:
    doc = _doc(view)
    runtime = str(view.get("runtimeStatus", "")).lower()
    return str(doc.get("state", "")).lower() in TERMINAL or runtime in ("completed", "failed", "terminated")


def manifest_lines(view: dict[str, Any], limit: int = 8) -> list[str]:
    """What the approver signs, from the API's ``manifest``: KBs with their titles, packages as
    ``name=version`` (at most ``limit`` lines; the page and ``rollouts show`` list them all)."""
    manifest = view.get("manifest") if isinstance(view.get("manifest"), dict) else {}
    assert isinstance(manifest, dict)
    lines = [f"{w.get('kb')} {w.get('title') or ''}".rstrip() for w in manifest.get("windows") or []
             if isinstance(w, dict)]
    lines += [str(p.get("package")) for p in manifest.get("linux") or [] if isinstance(p, dict)]
    if len(lines) > limit:
        lines = [*lines[: limit - 1], f"... and {len(lines) - limit + 1} more (see the page)"]
    return lines


def page_url(platform: LocalPlatform, rollout_id: str) -> str:
    """The operator page of a rollout, served by the app itself (``triggers/ui.py``)."""
    return f"{platform.base_url}/api/ui/rollouts/{urllib.parse.quote(rollout_id, safe='')}"


def api_path(url: str) -> str:
    """``/api/...`` from an approval URL the API gives, relative (older apps) or absolute."""
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "") if parts.scheme else url


def fetch_events(platform: LocalPlatform) -> list[dict[str, Any]] | None:
    """The CloudEvents the app published to the local Event Grid topic, in publish order.

    ``GET {platform.eventgrid_url}/_sim/events`` -> ``{"events": [...]}``. None when the platform
    has no topic emulator or it does not answer: the demo shows what it can and goes on.
    """
    base = getattr(platform, "eventgrid_url", None)
    if not base:
        return None
    url = f"{str(base).rstrip('/')}/_sim/events"
    context: ssl.SSLContext | None = None
    if url.startswith("https:"):
        ca = next((str(c) for c in (getattr(platform, "eventgrid_ca", None),
                                    getattr(getattr(platform, "eventgrid", None), "ca_path", None)) if c), None)
        context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        if not ca and urllib.parse.urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1"):
            # the local emulator's own certificate; the demo only reads what it recorded
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as resp:
            body = json.loads(resp.read() or b"{}")
    except (OSError, ValueError):
        return None
    events = body.get("events") if isinstance(body, dict) else None
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else None


class DemoRun:
    """Drives one demo rollout and keeps the latest status view for rendering."""

    def __init__(self, platform: LocalPlatform, console: Console, pace: float,
                 lease: ClockLease | None = None) -> None:
        self.platform = platform
        self.console = console
        self.pace = pace
        self.clock = platform.clock_client()
        self.lease = lease
        self.view: dict[str, Any] = {}
        self.rollout_id: str | None = None
        self.ring_times: dict[str, list[Any]] = {}  # ring -> [first active, gate decided] (simulated)
        self.events: list[dict[str, Any]] | None = None

    def render(self, full: bool = False) -> Any:
        """The live view at the console's size; ``full``: every VM row (the last frame, kept on screen)."""
        width = self.console.width
        height = None if full or not self.console.is_terminal else self.console.height
        links = self.view.get("links")
        url = (links.get("page") if isinstance(links, dict) else None) or (
            page_url(self.platform, self.rollout_id) if self.rollout_id else None)
        # the last frame leaves the notifications to the section printed after the summary
        events = None if full else self.events
        return ui.render(self.view, self.now(), width=width, height=height, events=events, page_url=url)

    def now(self) -> str:
        return self.platform.clock.now().strftime("%a %Y-%m-%d %H:%M UTC")

    def find_rollout(self) -> str | None:
        result = self.platform.api("GET", "/api/rollouts")
        body = result.json
        items: list[Any] = []
        if isinstance(body, dict):
            items = body.get("rollouts", body.get("value", [])) or []
        elif isinstance(body, list):
            items = body
        for item in items:
            rid = item.get("rolloutId") or item.get("id") or item.get("instanceId")
            if rid:
                return str(rid)
        return None

    def refresh(self) -> dict[str, Any]:
        assert self.rollout_id
        result = self.platform.api("GET", f"/api/rollouts/{self.rollout_id}")
        if result.status < 400 and isinstance(result.json, dict):
            self.view = result.json
            self._track_times()
        self.events = fetch_events(self.platform)
        return self.view

    def _track_times(self) -> None:
        now = self.platform.clock.now()
        for ring in _doc(self.view).get("rings", []):
            times = self.ring_times.setdefault(str(ring.get("name")), [None, None])
            if times[0] is None and str(ring.get("phase", "pending")) != "pending":
                times[0] = now
            if times[1] is None and (ring.get("gate") or {}).get("outcome"):
                times[1] = now
        for ring in _doc(self.view).get("rings", []):
            start, end = self.ring_times[str(ring.get("name"))]
            if start and end:
                minutes = int((end - start).total_seconds() // 60)
                ring["duration"] = f"{minutes // 60}h{minutes % 60:02d}m"

    def decide(self, live: Live, auto_approve: bool) -> None:
        """Handle a pending approval: approve as the demo approver, or wait for a person."""
        waiting = _waiting_for_approval(self.view) or {}
        ring, manifest = waiting.get("ring"), waiting.get("manifestHash")
        path = api_path(str(waiting.get("approveUrl") or f"/api/rollouts/{self.rollout_id}/rings/{ring}/approve"))
        body = {"manifestHash": manifest, "comment": "approved from the demo"}
        if auto_approve:
            result = self.platform.api("POST", path, body, headers={"X-PatchRings-Approver": DEMO_APPROVER})
            live.console.print(
                f"[green]approved[/] {ring} (manifest {manifest}) as {DEMO_APPROVER}: HTTP {result.status}",
                soft_wrap=True,
            )
            # Time stands still (our lease): let the work the decision started finish, then look.
            for _ in range(50):
                self.clock.advance(untilIdle=True)
                pending = _waiting_for_approval(self.refresh()) or {}
                if (pending.get("ring"), pending.get("manifestHash")) != (ring, manifest):
                    break
            return
        approver = (waiting.get("approvers") or [DEMO_APPROVER])[0]
        url = f"{self.platform.base_url}{path}?code={self.platform.function_key}"
        curl = (
            f"curl -sS -X POST '{url}' -H 'Content-Type: application/json' "
            f"-H 'X-PatchRings-Approver: {approver}' -d '{json.dumps(body)}'"
        )
        page = f"{page_url(self.platform, str(self.rollout_id))}?as={urllib.parse.quote(str(approver))}"
        live.console.print(
            Panel(
                f"Ring [bold]{ring}[/] waits for approval of manifest [bold]{manifest}[/] "
                f"(until {ui.short_time(waiting.get('until'))}).\n"
                + "".join(f"  {escape(line)}\n" for line in manifest_lines(self.view)) +
                f"Approvers: {', '.join(waiting.get('approvers') or [])}\n"
                f"Decide on the operator page (first line below; locally ?as= names the approver you act "
                f"as) or from another terminal with the curl command (second line; reject: same URL "
                f"ending in /reject).\n"
                f"The simulated clock stands still while you decide: the demo holds clock lease "
                f"{self.lease.lease_id if self.lease else '-'} (see GET {self.platform.clock_url}).",
                title="Approval needed",
                border_style="yellow",
            )
        )
        # Outside the panel and never wrapped, so they can be clicked, copied and pasted whole.
        live.console.print(page, soft_wrap=True, markup=False, highlight=False, style="cyan")
        live.console.print(curl, soft_wrap=True, markup=False, highlight=False, style="cyan")
        while _waiting_for_approval(self.refresh()):
            live.update(self.render())
            time.sleep(1.0)

    def run(self, auto_approve: bool, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with Live(self.render(), console=self.console, refresh_per_second=4) as live:

            def show_and_check() -> bool:
                if self.rollout_id is None:
                    self.rollout_id = self.find_rollout()
                    if self.rollout_id is None:
                        live.update(Panel(f"simulated time {self.now()}: waiting for Ring 0's maintenance "
                                          "pre-event to start the rollout...", title="PatchRings demo"))
                        return False
                    live.console.print(f"Rollout {self.rollout_id} started. Operator page (look, approve, "
                                       f"reject): {page_url(self.platform, self.rollout_id)}",
                                       soft_wrap=True, highlight=False)
                self.refresh()
                live.update(self.render())
                return _is_terminal(self.view) or _waiting_for_approval(self.view) is not None

            while time.monotonic() < deadline:
                self.clock.advance_until(show_and_check, timeout=deadline - time.monotonic(), pace=self.pace)
                if _is_terminal(self.view):
                    break
                self.decide(live, auto_approve)
            self.refresh()
            live.update(self.render(full=True))
        if not self.console.is_terminal:
            self.console.line()  # rich's Live ends a non-terminal frame without a newline
        return self.view


def gated_configurations(plan_path: Path) -> list[str]:
    """Names of the maintenance configurations of the rings after Ring 0 (lower case)."""
    plan = json.loads(plan_path.read_text())
    names = []
    for ring in plan.get("rings", [])[1:]:
        mc = (ring.get("members") or {}).get("maintenanceConfigurationId")
        if mc:
            names.append(mc.rstrip("/").rsplit("/", 1)[-1].lower())
    return names


def follow_later_runs(platform: LocalPlatform, console: Console, configurations: list[str], pace: float) -> list[Any]:
    """After a halt, let simulated time run until each later ring's next run has come and gone.

    Why: "halted" is only half the story; the proof of fail-closed is what happens when Ring 1's
    and Ring 2's own maintenance schedules come up afterwards. Returns those runs.
    """
    halted_at = platform.clock.now()

    def later_runs() -> list[Any]:
        found: dict[str, Any] = {}
        for run in platform.arm.runs:
            name = run.config_name.lower()
            finished = run.status in ("Cancelled", "Completed") or run.end <= platform.clock.now()
            if name in configurations and run.start > halted_at and name not in found and finished:
                found[name] = run
        return list(found.values()) if len(found) == len(configurations) else []

    console.print(f"Following the later rings' schedules ({', '.join(configurations)}) after the halt...")
    return _advance_until(platform, later_runs, timeout=120, pace=pace / 4)


def _advance_until(platform: LocalPlatform, predicate: Callable[[], T], *, timeout: float, pace: float) -> T:
    """Move time through the clock API until ``predicate()`` holds."""
    return platform.clock_client().advance_until(predicate, timeout=timeout, pace=pace)  # type: ignore[no-any-return]


def explain(console: Console, platform: LocalPlatform, view: dict[str, Any], later: list[Any]) -> None:
    """Say plainly how it ended, with proof from the simulator's recorded ARM calls."""
    doc = _doc(view)
    state = str(doc.get("state", view.get("runtimeStatus", "?")))
    if str(view.get("runtimeStatus", "")).lower() in ("failed", "terminated"):
        # the orchestration itself ended abnormally: say so, whatever its last status document said
        state = f"{str(view['runtimeStatus']).lower()} ({str(view.get('output') or '')[:300]})"
    recorder = platform.arm.recorder
    installs = recorder.find(method="POST", path_contains="/installpatches")
    cancels = recorder.find(method="PUT", path_contains="/applyupdates/")
    console.print(ui.summary_table(view, width=console.width))
    cancelled = sorted({r.path.lower().split("/maintenanceconfigurations/", 1)[-1].split("/", 1)[0]
                        for r in cancels})
    console.print(f"Rollout ended: [bold]{state}[/]. installPatches calls sent by the app: {len(installs)}; "
                  f"maintenance runs cancelled: {len(cancels)}"
                  + (f" (of {', '.join(cancelled)})" if cancelled else "") + ".", soft_wrap=True)
    if state.lower() in ("halted", "failed"):
        halted = doc.get("halted") or {}
        ring0 = {vm.rsplit("/", 1)[-1].lower() for vm in (r.path.split("/installPatches")[0] for r in installs)}
        lines = [f"The rollout [red]halted[/]: {halted.get('reason') or doc.get('outcome') or 'a gate failed'}."]
        for run in later:
            how = f"[red]{run.status}[/]" if run.status == "Cancelled" else f"[yellow]{run.status}[/]"
            lines.append(f"  {run.config_name} run at {run.start:%a %H:%M} UTC: {how}"
                         + (f" ({run.cancel_reason})" if run.cancel_reason else "")
                         + f"; VMs patched by it: {len(run.plans)}")
        outside = sorted(name for name in ring0 if not name.startswith("r0-"))
        lines.extend(f"  {text}" for text in counts_lines(view))
        lines.append(f"installPatches reached only Ring 0 VMs ({len(ring0)}): "
                     + ("yes" if not outside else f"NO, also {', '.join(outside)}"))
        console.print(Panel("\n".join(lines), title="Halted: what happened to the later rings", border_style="red"))


def counts_lines(view: dict[str, Any]) -> list[str]:
    """``ring0: 6 VMs = 3 passed + 1 failed + 2 never started``, straight from the API's ring
    counts (which add up: vms = passed + failed + inconclusive + inFlight + skipped + notStarted)."""
    labels = (("passed", "passed"), ("failed", "failed"), ("inconclusive", "inconclusive"),
              ("inFlight", "in flight"), ("skipped", "never started"), ("notStarted", "not started"))
    lines = []
    for ring in view.get("rings") or []:
        counts = ring.get("counts") if isinstance(ring, dict) else None
        if not isinstance(counts, dict) or not isinstance(counts.get("vms"), int):
            continue
        parts = [f"{counts[k]} {label}" for k, label in labels if isinstance(counts.get(k), int) and counts[k]]
        lines.append(f"{ring.get('name')}: {counts['vms']} VMs = {' + '.join(parts) or '0'}")
    return lines


def show_notifications(console: Console, platform: LocalPlatform) -> None:
    """The "Notifications" section: what the app published to the (local) Event Grid topic."""
    events = fetch_events(platform)
    if events is None:
        console.print("Notifications: this platform has no local Event Grid topic to read them from.")
        return
    table = ui.notifications_table(events, width=console.width, limit=20)
    if table is None:
        console.print("Notifications: none were published.")
        return
    console.print(table)
    console.print(f"({len(events)} CloudEvent(s) recorded by the local Event Grid topic: "
                  f"GET {str(getattr(platform, 'eventgrid_url', '')).rstrip('/')}/_sim/events)", soft_wrap=True)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="happy", help="happy | bad-patch | path to a scenario file")
    parser.add_argument("--auto-approve", action="store_true", help=f"approve as {DEMO_APPROVER}")
    parser.add_argument("--pace", type=float, default=0.2, help="real seconds per simulated jump")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many real seconds")
    parser.add_argument("--keep-running", action="store_true",
                        help="after the end, keep the platform (page, API, topic) up until Ctrl-C")
    args = parser.parse_args(argv)
    # Ctrl-C and `kill` both end in the same clean shutdown (platform.stop() terminates Azurite,
    # which runs in its own session). SIGINT is reset explicitly: a shell that starts the demo
    # as a background job hands it an *ignored* SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)

    scenario = Path(args.scenario)
    if not scenario.exists():
        scenario = SCENARIOS / f"{args.scenario}.yaml"
    if not scenario.exists():
        print(f"unknown scenario {args.scenario!r}: use happy, bad-patch or a file path", file=sys.stderr)
        return 2
    state_dir = REPO / ".local" / "demo"
    shutil.rmtree(state_dir, ignore_errors=True)
    (state_dir / "logs").mkdir(parents=True)
    log_file = state_dir / "logs" / "platform.log"
    # key=value lines, each with the rollout / ring / function it belongs to (patchrings/telemetry.py)
    log_handler = logging.FileHandler(log_file, encoding="utf-8")
    log_handler.setFormatter(KeyValueFormatter())
    log_handler.addFilter(ContextFilter())
    logging.basicConfig(level=logging.INFO, handlers=[log_handler])
    plan = REPO / "demo" / "plan.json"
    settings = {"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true", "PATCHRINGS_PLAN_PATH": str(plan)}

    console = Console()
    console.print(f"Starting the local platform (scenario [bold]{scenario.stem}[/])...")
    platform = LocalPlatform(scenario, clock="skip", start=DEMO_START, state_dir=state_dir,
                             storage=str(state_dir / "durable.sqlite"), settings=settings, persist_ledger=True)
    started = time.monotonic()
    lease: ClockLease | None = None
    try:
        with platform:
            # The platform holds the clock while it starts; from here on the demo's lease on the
            # clock API keeps it still, and the demo (or you) move it explicitly.
            lease = ClockLease(platform.clock_client(), "demo")
            platform.release_hold()
            console.print(f"Functions host {platform.base_url} | ARM simulator {platform.arm.endpoint} | "
                          f"Azurite {platform.azurite.table_endpoint if platform.azurite else '-'} | "
                          f"clock API {platform.clock_url}")
            view = DemoRun(platform, console, args.pace, lease).run(args.auto_approve, args.timeout)
            later: list[Any] = []
            if str(_doc(view).get("state", "")).lower() in ("halted", "failed"):
                later = follow_later_runs(platform, console, gated_configurations(plan), args.pace)
            explain(console, platform, view, later)
            show_notifications(console, platform)
            lease.release()
            if args.keep_running:
                # look around afterwards: the page, the API, `python -m patchrings rollouts ...`
                console.print(f"Still serving (Ctrl-C to stop): page {page_url(platform, str(view.get('id') or ''))}\n"
                              f"CLI: PATCHRINGS_API_URL={platform.base_url} PATCHRINGS_API_KEY={platform.function_key}"
                              " python -m patchrings rollouts list", soft_wrap=True)
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: stopping the platform.[/]")
        return 130
    console.print(f"Wall time {time.monotonic() - started:.0f}s. Ledger (Azurite tables): {state_dir / 'azurite'}; "
                  f"durable state: {state_dir / 'durable.sqlite'}; logs: {log_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
