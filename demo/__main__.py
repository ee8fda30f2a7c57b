"""``python -m demo`` (``make demo``): a complete three-ring rollout on the local platform.

What it shows, through the real path only:

1. the ARM simulator's maintenance schedules fire PreMaintenanceEvent into the app's Event Grid
   trigger, which starts the rollout;
2. Ring 0 is patched directly (installPatches in waves) and verified (install results + health
   phases), and a manifest is built from what it installed cleanly;
3. the gate waits for a person: the demo prints the approval URL and a ready curl command, or
   approves itself as a named demo approver with ``--auto-approve``;
4. Ring 1 and Ring 2 are promoted (manifest pinned, gate opened) and patched by their own
   scheduled maintenance runs;
5. a summary table, and where the ledger and the logs are.

Time: the platform runs on a *paced skip clock*: simulated time jumps over idle stretches
(hours of maintenance schedule in a fraction of a second) but each jump is followed by a short
real pause so the progress is watchable; the clock stands still while it waits for your
approval. The whole run takes about two minutes of wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel

from demo import ui
from emulator.platform import LocalPlatform

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "demo" / "scenarios"
DEMO_START = "2026-11-16T06:00:00Z"
TERMINAL = {"completed", "failed", "halted", "dry-run-completed", "terminated"}
DEMO_APPROVER = "demo-approver@contoso.com"


def _doc(view: dict[str, Any]) -> dict[str, Any]:
    return ui._status_doc(view)


def _waiting_for_approval(view: dict[str, Any]) -> dict[str, Any] | None:
    waiting = _doc(view).get("waitingFor") or {}
    return waiting if str(waiting.get("what", "")).lower().startswith("approval") else None


def _is_terminal(view: dict[str, Any]) -> bool:
    doc = _doc(view)
    runtime = str(view.get("runtimeStatus", "")).lower()
    return str(doc.get("state", "")).lower() in TERMINAL or runtime in ("completed", "failed", "terminated")


class DemoRun:
    """Drives one demo rollout and keeps the latest status view for rendering."""

    def __init__(self, platform: LocalPlatform, console: Console, pace: float) -> None:
        self.platform = platform
        self.console = console
        self.pace = pace
        self.view: dict[str, Any] = {}
        self.rollout_id: str | None = None

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
        return self.view

    def decide(self, live: Live, auto_approve: bool) -> None:
        """Handle a pending approval: approve as the demo approver, or wait for a person."""
        waiting = _waiting_for_approval(self.view) or {}
        ring, manifest = waiting.get("ring"), waiting.get("manifestHash")
        path = waiting.get("approveUrl") or f"/api/rollouts/{self.rollout_id}/rings/{ring}/approve"
        body = {"manifestHash": manifest, "comment": "approved from the demo"}
        if auto_approve:
            result = self.platform.api("POST", path, body, headers={"X-PatchRings-Approver": DEMO_APPROVER})
            live.console.print(
                f"[green]approved[/] {ring} (manifest {manifest}) as {DEMO_APPROVER}: HTTP {result.status}"
            )
            return
        approver = (waiting.get("approvers") or [DEMO_APPROVER])[0]
        url = f"{self.platform.base_url}{path}?code={self.platform.function_key}"
        curl = (
            f"curl -X POST '{url}' -H 'Content-Type: application/json' "
            f"-H 'X-PatchRings-Approver: {approver}' -d '{json.dumps(body)}'"
        )
        live.console.print(
            Panel(
                f"Ring [bold]{ring}[/] waits for approval of manifest [bold]{manifest}[/] "
                f"(until {waiting.get('until')}).\nApprovers: {', '.join(waiting.get('approvers') or [])}\n\n"
                f"Approve from another terminal:\n[cyan]{curl}[/]\n\n"
                f"(reject: same URL with /reject). The simulated clock is paused while you decide.",
                title="Approval needed",
                border_style="yellow",
            )
        )
        while _waiting_for_approval(self.refresh()):
            live.update(ui.render(self.view, self.now()))
            time.sleep(1.0)

    def run(self, auto_approve: bool, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with Live(ui.render({}, self.now()), console=self.console, refresh_per_second=4) as live:

            def show_and_check() -> bool:
                if self.rollout_id is None:
                    self.rollout_id = self.find_rollout()
                    if self.rollout_id is None:
                        live.update(Panel(f"simulated time {self.now()}: waiting for Ring 0's maintenance "
                                          "pre-event to start the rollout...", title="PatchRings demo"))
                        return False
                self.refresh()
                live.update(ui.render(self.view, self.now()))
                return _is_terminal(self.view) or _waiting_for_approval(self.view) is not None

            while time.monotonic() < deadline:
                self.platform.wait_for(show_and_check, timeout=deadline - time.monotonic(), pace=self.pace)
                if _is_terminal(self.view):
                    break
                self.decide(live, auto_approve)
            live.update(ui.render(self.refresh(), self.now()))
        return self.view


def explain(console: Console, platform: LocalPlatform, view: dict[str, Any]) -> None:
    """Say plainly how it ended, with proof from the simulator's recorded ARM calls."""
    doc = _doc(view)
    state = str(doc.get("state", view.get("runtimeStatus", "?")))
    recorder = platform.arm.recorder
    installs = recorder.find(method="POST", path_contains="/installpatches")
    cancels = recorder.find(method="PUT", path_contains="/applyupdates/")
    console.print(ui.summary_table(view))
    console.print(f"Rollout ended: [bold]{state}[/]. installPatches calls sent by the app: {len(installs)}; "
                  f"maintenance runs cancelled: {len(cancels)}.")
    if state.lower() in ("halted", "failed"):
        halted = doc.get("halted") or {}
        console.print(Panel(
            f"The rollout [red]halted[/]: {halted.get('reason') or doc.get('outcome') or 'a gate failed'}.\n"
            "Later rings were never opened; their scheduled maintenance runs were cancelled "
            "(fail closed), so no VM outside Ring 0 received the bad patch.",
            title="Halted", border_style="red"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="happy", help="happy | bad-patch | path to a scenario file")
    parser.add_argument("--auto-approve", action="store_true", help=f"approve as {DEMO_APPROVER}")
    parser.add_argument("--pace", type=float, default=0.12, help="real seconds per simulated jump")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many real seconds")
    args = parser.parse_args(argv)

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
    logging.basicConfig(level=logging.INFO, filename=log_file,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = REPO / "demo" / "plan.json"
    settings = {"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true"}
    if plan.exists():
        settings["PATCHRINGS_PLAN_PATH"] = str(plan)

    console = Console()
    console.print(f"Starting the local platform (scenario [bold]{scenario.stem}[/])...")
    platform = LocalPlatform(scenario, clock="skip", start=DEMO_START, state_dir=state_dir,
                             storage=str(state_dir / "durable.sqlite"), settings=settings, persist_ledger=True)
    started = time.monotonic()
    try:
        with platform, platform.clock.hold():
            console.print(f"Functions host {platform.base_url} | ARM simulator {platform.arm.endpoint} | "
                          f"Azurite {platform.azurite.table_endpoint if platform.azurite else '-'}")
            view = DemoRun(platform, console, args.pace).run(args.auto_approve, args.timeout)
            explain(console, platform, view)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: stopping the platform.[/]")
        return 130
    console.print(f"Wall time {time.monotonic() - started:.0f}s. Ledger (Azurite tables): {state_dir / 'azurite'}; "
                  f"durable state: {state_dir / 'durable.sqlite'}; logs: {log_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
