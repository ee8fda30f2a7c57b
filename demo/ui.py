"""Terminal rendering of a rollout's status document (rich).

Why rich: live-updating tables, colours and panels in any terminal, with a plain fallback
when output is not a TTY (CI logs), for free.

Everything here reads the rollout state document the orchestrator publishes as custom status
(``orchestrators/status.py``) plus the ledger-backed per-VM view of ``GET /api/rollouts/{id}``;
it never reaches into the app's internals.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

PHASE_STYLE = {
    "pending": "dim",
    "installing": "cyan",
    "verifying": "cyan",
    "awaiting-approval": "yellow",
    "waiting-approval": "yellow",
    "promoting": "magenta",
    "scheduled": "blue",
    "waiting-run": "blue",
    "passed": "green",
    "completed": "green",
    "failed": "red",
    "halted": "red",
    "cancelled": "red",
    "skipped": "dim",
}
OUTCOME_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def _status_doc(view: dict[str, Any]) -> dict[str, Any]:
    """The state document: the live custom status (kept after the end), else the final output."""
    for key in ("status", "customStatus", "output", "rollout"):
        inner = view.get(key)
        if isinstance(inner, dict) and "rings" in inner:
            return inner
    return view


def ring_counts(ring: dict[str, Any]) -> dict[str, Any]:
    """Per-ring figures from the orchestrator's counts (``vms``, ``install:ok``, ``health:unhealthy``...)."""
    counts = ring.get("counts") or {}
    gate_counts = (ring.get("gate") or {}).get("counts") or {}
    total = counts.get("vms", gate_counts.get("total", ""))
    return {
        "total": total,
        "installed": counts.get("install:ok", ""),
        "failed": counts.get("install:failed", ""),
        "unhealthy": counts.get("health:unhealthy", ""),
        "inconclusive": counts.get("install:inconclusive", 0) + counts.get("health:unknown", 0) if counts else "",
    }


def _style(phase: str | None) -> str:
    return PHASE_STYLE.get((phase or "").lower(), "white")


def rings_table(view: dict[str, Any]) -> Table:
    doc = _status_doc(view)
    table = Table(title="Rings", expand=True)
    for col in ("ring", "patching", "phase", "VMs", "installed", "failed", "unhealthy", "unclear", "gate"):
        table.add_column(col)
    for ring in doc.get("rings", []):
        counts = ring_counts(ring)
        gate = ring.get("gate") or {}
        outcome = gate.get("outcome") or ""
        table.add_row(
            str(ring.get("name")),
            str(ring.get("patching") or ""),
            Text(str(ring.get("phase") or ""), style=_style(ring.get("phase"))),
            str(counts["total"]),
            str(counts["installed"]),
            str(counts["failed"]),
            str(counts["unhealthy"]),
            str(counts["inconclusive"]),
            Text(outcome, style=OUTCOME_STYLE.get(outcome, "white")),
        )
    return table


def vm_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-VM rows from the ledger part of ``GET /api/rollouts/{id}``."""
    by_ring = (view.get("ledger") or {}).get("vmResults") or {}
    rows: list[dict[str, Any]] = []
    for ring, entries in by_ring.items() if isinstance(by_ring, dict) else []:
        for entry in entries or []:
            verdict = entry.get("verdict") or {}
            result = entry.get("result") or {}
            rows.append({
                "ring": ring,
                "name": entry.get("name"),
                "os": entry.get("os"),
                "install": result.get("status") or entry.get("state") or "",
                "health": verdict.get("health") or "",
                "reasons": verdict.get("reasons") or [],
            })
    return rows


def vms_table(view: dict[str, Any], limit: int = 40) -> Table | None:
    vms = vm_rows(view)
    if not vms:
        return None
    table = Table(title="VMs (latest state)", expand=True)
    for col in ("ring", "vm", "os", "install", "health", "detail"):
        table.add_column(col, overflow="fold")
    for vm in vms[-limit:]:
        install = str(vm.get("install") or vm.get("installStatus") or vm.get("status") or "")
        health = str(vm.get("health") or "")
        lowered = install.lower()
        install_style = "green" if lowered in ("succeeded", "ok") else "red" if "fail" in lowered else ""
        health_style = "green" if health.lower() == "healthy" else "red" if health.lower() == "unhealthy" else ""
        table.add_row(
            str(vm.get("ring") or ""),
            str(vm.get("name") or vm.get("vm") or ""),
            str(vm.get("os") or ""),
            Text(install, style=install_style),
            Text(health, style=health_style),
            "; ".join(str(r.get("reason", r)) if isinstance(r, dict) else str(r) for r in vm["reasons"])[:80],
        )
    return table


def gate_panel(view: dict[str, Any]) -> Panel | None:
    doc = _status_doc(view)
    lines: list[Text] = []
    for ring in doc.get("rings", []):
        gate = ring.get("gate")
        if not gate:
            continue
        outcome = gate.get("outcome", "")
        lines.append(Text(f"{ring.get('name')}: {outcome}", style=OUTCOME_STYLE.get(outcome, "white")))
        for reason in (gate.get("reasons") or [])[:6]:
            if isinstance(reason, dict):
                lines.append(Text(f"   - {reason.get('vm', '')}: {reason.get('reason', reason)}"))
            else:
                lines.append(Text(f"   - {reason}"))
    if not lines:
        return None
    return Panel(Group(*lines), title="Gate decisions")


def header(view: dict[str, Any], simulated_now: str) -> Panel:
    doc = _status_doc(view)
    manifest = doc.get("manifest") or {}
    waiting = doc.get("waitingFor") or {}
    parts = [
        f"rollout [bold]{doc.get('rolloutId', '?')}[/]  state [bold]{doc.get('state', '?')}[/]",
        f"simulated time {simulated_now}",
    ]
    if manifest:
        kbs = manifest.get("windowsCount", manifest.get("windows", ""))
        packages = manifest.get("linuxCount", manifest.get("linux", ""))
        parts.append(f"manifest {manifest.get('hash', '')} ({kbs} KBs, {packages} packages)")
    if waiting:
        parts.append(f"waiting for [yellow]{waiting.get('what')}[/] until {waiting.get('until')}")
    return Panel("\n".join(parts), title="PatchRings demo")


def render(view: dict[str, Any], simulated_now: str) -> Group:
    items: list[Any] = [header(view, simulated_now), rings_table(view)]
    gates = gate_panel(view)
    if gates is not None:
        items.append(gates)
    vms = vms_table(view)
    if vms is not None:
        items.append(vms)
    return Group(*items)


def summary_table(view: dict[str, Any]) -> Table:
    """Per ring: VMs, installed, failed, unhealthy, manifest, who approved, simulated durations."""
    doc = _status_doc(view)
    approvals = {a.get("ring"): a for a in doc.get("approvals", []) if isinstance(a, dict)}
    manifest = (doc.get("manifest") or {}).get("hash", "")
    table = Table(title="Rollout summary", expand=True)
    for col in ("ring", "VMs", "installed", "failed", "unhealthy", "gate", "manifest", "approved by", "duration"):
        table.add_column(col)
    for ring in doc.get("rings", []):
        counts = ring_counts(ring)
        gate = (ring.get("gate") or {}).get("outcome", "")
        approval = approvals.get(ring.get("name")) or {}
        who = approval.get("approver") or approval.get("by") or ""
        if approval and approval.get("decision", approval.get("verdict")) not in (None, "approve", "approved"):
            who = f"{who} ({approval.get('decision', approval.get('verdict'))})"
        table.add_row(
            str(ring.get("name")),
            str(counts["total"]),
            str(counts["installed"]),
            str(counts["failed"]),
            str(counts["unhealthy"]),
            Text(gate, style=OUTCOME_STYLE.get(gate, "white")),
            _manifest_cell(ring, doc, manifest),
            who,
            str(ring.get("duration") or _duration(ring) or "-"),
        )
    return table


def _manifest_cell(ring: dict[str, Any], doc: dict[str, Any], manifest: str) -> str:
    if ring.get("name") == (doc.get("rings") or [{}])[0].get("name"):
        return f"{manifest} (built)" if manifest else ""
    return manifest if ring.get("gate") or ring.get("opened") else "-"


def _duration(ring: dict[str, Any]) -> str:
    from datetime import datetime

    start, end = ring.get("startedAt"), ring.get("finishedAt")
    if not (start and end):
        return ""
    try:
        delta = datetime.fromisoformat(str(end).replace("Z", "+00:00")) - datetime.fromisoformat(
            str(start).replace("Z", "+00:00")
        )
    except ValueError:
        return ""
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m (simulated)"
