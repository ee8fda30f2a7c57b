"""Terminal rendering of a rollout's status document (rich).

Why rich: live-updating tables, colours and panels in any terminal, with a plain fallback
when output is not a TTY (CI logs), for free.

Everything here reads the rollout state document the orchestrator publishes as custom status
(``orchestrators/status.py``) plus the ledger-backed per-VM view of ``GET /api/rollouts/{id}``
and, for the "Notifications" section, the CloudEvents the local Event Grid topic recorded; it
never reaches into the app's internals. The documents grow over time (per-ring phase details,
moving counts, manifest contents): every reader here takes what is there and tolerates what is
missing.

Width: every table is built for the console's width. Headers are never cut (each column is at
least as wide as its header; columns that do not fit at 80 columns are left out, not squeezed),
VMs are shown by their short name, and the VM table shows as many rows as the live view has room
for, problems first, with a "... N more" line for the rest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

PHASE_STYLE = {
    "pending": "dim",
    "installing": "cyan",
    "verifying": "cyan",
    "collecting": "cyan",
    "collecting-and-verifying": "cyan",
    "polling": "cyan",
    "stay-healthy": "cyan",
    "awaiting-approval": "yellow",
    "waiting-approval": "yellow",
    "waiting-for-approval": "yellow",
    "promoting": "magenta",
    "promoted": "magenta",
    "run-authorised": "blue",
    "scheduled": "blue",
    "waiting-run": "blue",
    "waiting-for-run": "blue",
    "passed": "green",
    "completed": "green",
    "failed": "red",
    "halted": "red",
    "cancelled": "red",
    "skipped": "dim",
}
OUTCOME_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
NARROW = 100  # below this many columns the optional columns (patching, os, ...) are left out


def _status_doc(view: dict[str, Any]) -> dict[str, Any]:
    """The state document: the live custom status (kept after the end), else the final output."""
    for key in ("status", "customStatus", "output", "rollout"):
        inner = view.get(key)
        if isinstance(inner, dict) and "rings" in inner:
            return inner
    return view


def short_name(vm: Any) -> str:
    """``r0-web-01`` from a full ARM id (VM or Arc machine), or the name as given."""
    text = str(vm or "")
    return text.rstrip("/").rsplit("/", 1)[-1] if "/" in text else text


def short_time(value: Any) -> str:
    """``2026-11-16 09:55Z`` from an RFC 3339 time (any offset, any precision); else the text."""
    text = str(value or "")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.utcoffset() is not None:
        moment = moment - moment.utcoffset()  # type: ignore[operator]
    return moment.strftime("%Y-%m-%d %H:%MZ")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _table(title: str | None, columns: list[str], **kwargs: Any) -> Table:
    """A compact table whose headers are never cut: each column is at least its header's width."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, expand=False, title_justify="left",
                  title_style="bold", pad_edge=False)
    for col in columns:
        table.add_column(col, min_width=len(col), **kwargs.get(col, {}))
    return table


def _fitted(title: str, columns: list[str], rows: list[list[Any]], width: int) -> Table:
    """A table whose last column takes what is left of the line, cut with an ellipsis.

    The other columns are as wide as their widest cell (never cut, never wrapped); when less
    than the last column's header is left, the last column is left out.
    """
    fixed = columns[:-1]
    widths = [max([len(col)] + [len(str(row[i])) for row in rows]) for i, col in enumerate(fixed)]
    spare = width - sum(widths) - 3 * len(fixed)
    table = _table(title, [])
    for col, col_width in zip(fixed, widths, strict=True):
        table.add_column(col, min_width=col_width, no_wrap=True)
    keep_last = spare >= len(columns[-1])
    if keep_last:
        table.add_column(columns[-1], max_width=spare, no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(row if keep_last else row[:-1]))
    return table


# --------------------------------------------------------------------------- per-VM rows
def vm_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-VM rows: the API's ``vms`` list if it has one, else the ledger part of the view.

    VMs a gate names as never started (error budget spent, skipped) get a row too, so the
    table and the counts include them.
    """
    rows: list[dict[str, Any]] = []
    api_rows = view.get("vms")
    entries: list[tuple[str, dict[str, Any]]] = []
    if isinstance(api_rows, list):
        entries = [(str(e.get("ring") or ""), e) for e in api_rows if isinstance(e, dict)]
    else:
        by_ring = (view.get("ledger") or {}).get("vmResults") or {}
        if isinstance(by_ring, dict):
            entries = [(str(ring), e) for ring, items in by_ring.items() for e in (items or []) if isinstance(e, dict)]
    for ring, entry in entries:
        verdict = _dict(entry.get("verdict"))
        result = _dict(entry.get("result"))
        full_id = entry.get("id") or entry.get("vm") or verdict.get("vm") or ""
        rows.append({
            "ring": ring or str(entry.get("ring") or ""),
            "id": str(full_id),
            "name": str(entry.get("name") or verdict.get("name") or short_name(full_id)),
            "os": str(entry.get("os") or ""),
            "install": str(result.get("status") or entry.get("install") or entry.get("state") or ""),
            "health": str(verdict.get("health") or entry.get("health") or ""),
            "outcome": str(verdict.get("outcome") or entry.get("outcome") or ""),
            "reasons": list(verdict.get("reasons") or entry.get("reasons") or []),
        })
    seen = {(r["ring"], r["name"].lower()) for r in rows}
    for ring in _status_doc(view).get("rings", []) or []:
        for reason in ((ring.get("gate") or {}).get("reasons") or []):
            if not isinstance(reason, dict):
                continue
            text = str(reason.get("reason", ""))
            name = short_name(reason.get("vm"))
            key = (str(ring.get("name")), name.lower())
            if text.startswith("not started") and name and key not in seen:
                seen.add(key)
                rows.append({"ring": key[0], "id": str(reason.get("vm")), "name": name, "os": "",
                             "install": "not started", "health": "", "outcome": "", "reasons": [text]})
    return rows


def ring_counts(ring: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per-ring figures, VMs not started included.

    From the orchestrator's counts (``vms``, ``install:ok``, ``health:unhealthy``, ``skipped``...)
    when it has published them; while a ring runs and its counts are still empty, from the per-VM
    rows the ledger already has (they move as waves finish); the ring's member count otherwise.
    """
    counts = ring.get("counts") or {}
    gate_counts = (ring.get("gate") or {}).get("counts") or {}
    mine = [r for r in rows or [] if r["ring"] == ring.get("name")]
    members = next((v for v in (_int(ring.get("members")), _int(counts.get("members")), _int(counts.get("total")))
                    if v is not None), None)
    vms = _int(counts.get("vms"))
    started = vms if vms is not None else _int(gate_counts.get("total"))
    total_candidates = [v for v in (members, (started or 0) + (_int(counts.get("skipped")) or 0)
                                    if started is not None else None, len(mine) or None) if v is not None]
    total: Any = max(total_candidates) if total_candidates else ""
    if total_candidates == [len(mine)] and str(ring.get("phase") or "") not in ("passed", "failed", "completed"):
        total = f"{len(mine)}+"  # only the rows written so far are known: at least that many
    if counts.get("install:ok") is not None or vms is not None:
        installed: Any = counts.get("install:ok", 0)
        failed: Any = counts.get("install:failed", 0)
        unhealthy: Any = counts.get("health:unhealthy", 0)
        unclear: Any = (counts.get("install:inconclusive", 0) or 0) + (counts.get("health:unknown", 0) or 0)
    elif mine:
        installed = sum(1 for r in mine if r["install"].lower() in ("succeeded", "ok"))
        failed = sum(1 for r in mine if "fail" in r["install"].lower())
        unhealthy = sum(1 for r in mine if r["health"].lower() == "unhealthy")
        unclear = sum(1 for r in mine if r["outcome"].lower() == "inconclusive")
    else:
        installed = failed = unhealthy = unclear = ""
    return {"total": total, "installed": installed, "failed": failed, "unhealthy": unhealthy,
            "inconclusive": unclear}


def _style(phase: str | None) -> str:
    return PHASE_STYLE.get((phase or "").lower(), "white")


def phase_text(ring: dict[str, Any]) -> str:
    """``installing wave 2 of 3``, ``awaiting approval until 2026-11-17 09:55Z``... from what is there."""
    phase = str(ring.get("phase") or "")
    text = phase.replace("-", " ")
    detail = ring.get("phaseDetail") or ring.get("detail")
    if isinstance(detail, dict):
        wave, waves = _int(detail.get("wave")), _int(detail.get("waves"))
        until = detail.get("until")
        detail = detail.get("text") or detail.get("description")
    else:
        wave, waves, until = _int(ring.get("wave")), _int(ring.get("waves")), ring.get("until")
    if isinstance(detail, str) and detail:
        text = detail if phase.replace("-", " ") in detail else f"{text}: {detail}"
    elif wave is not None and "wave" not in text:
        text += f" wave {wave}" + (f" of {waves}" if waves else "")
    if until and "until" not in text:
        text += f" until {short_time(until)}"
    return text


# --------------------------------------------------------------------------- sections
def rings_table(view: dict[str, Any], width: int = 80) -> Table:
    doc = _status_doc(view)
    rows = vm_rows(view)
    wide = width >= NARROW
    columns = ["ring"] + (["patching"] if wide else []) + ["phase", "VMs", "patched", "failed", "unhealthy",
                                                          "unclear", "gate"]
    table = _table("Rings", columns, phase={"ratio": 1, "overflow": "fold"})
    for ring in doc.get("rings", []) or []:
        counts = ring_counts(ring, rows)
        outcome = str((ring.get("gate") or {}).get("outcome") or "")
        cells: list[Any] = [str(ring.get("name"))]
        if wide:
            cells.append(str(ring.get("patching") or ""))
        cells += [
            Text(phase_text(ring), style=_style(ring.get("phase"))),
            str(counts["total"]),
            str(counts["installed"]),
            str(counts["failed"]),
            str(counts["unhealthy"]),
            str(counts["inconclusive"]),
            Text(outcome, style=OUTCOME_STYLE.get(outcome, "white")),
        ]
        table.add_row(*cells)
    return table


def _row_rank(row: dict[str, Any]) -> int:
    """Problems first, then VMs still in progress, then the finished and healthy."""
    install, health = row["install"].lower(), row["health"].lower()
    if "fail" in install or health == "unhealthy" or row["outcome"].lower() in ("fail", "inconclusive"):
        return 0
    if install == "not started":
        return 1
    if install not in ("succeeded", "ok") or not health:
        return 2
    return 3


def vms_table(view: dict[str, Any], limit: int = 40, width: int = 80) -> RenderableType | None:
    """The per-VM table: as many rows as ``limit`` allows, problems first, then a '... N more' line."""
    rows = vm_rows(view)
    if not rows:
        return None
    wide = width >= NARROW
    ordered = sorted(enumerate(rows), key=lambda item: (_row_rank(item[1]), item[0]))
    shown = [vm for _, vm in sorted(ordered[: max(limit, 1)], key=lambda item: item[0])]  # ring order
    columns = ["ring", "vm"] + (["os"] if wide else []) + ["install", "health", "detail"]
    cells: list[list[Any]] = []
    for vm in shown:
        install, health = vm["install"], vm["health"]
        lowered = install.lower()
        install_style = ("green" if lowered in ("succeeded", "ok") else "red" if "fail" in lowered
                         else "dim" if lowered == "not started" else "")
        health_style = "green" if health.lower() == "healthy" else "red" if health.lower() == "unhealthy" else ""
        detail = "; ".join(str(r.get("reason", r)) if isinstance(r, dict) else str(r) for r in vm["reasons"])
        row: list[Any] = [vm["ring"], vm["name"]] + ([vm["os"]] if wide else [])
        cells.append([*row, Text(install, style=install_style), Text(health, style=health_style), detail])
    table = _fitted("VMs", columns, cells, width)
    hidden = len(rows) - len(shown)
    if hidden <= 0:
        return table
    return Group(table, Text(f"... {hidden} more VM(s), all finished and healthy"
                             if all(_row_rank(vm) == 3 for _, vm in ordered[len(shown):])
                             else f"... {hidden} more VM(s)", style="dim"))


def gate_panel(view: dict[str, Any], width: int = 80) -> Panel | None:
    doc = _status_doc(view)
    lines: list[Text] = []
    for ring in doc.get("rings", []) or []:
        gate = ring.get("gate")
        if not gate:
            continue
        outcome = str(gate.get("outcome", ""))
        summary = gate.get("summary")
        lines.append(Text(f"{ring.get('name')}: {outcome}" + (f" - {summary}" if summary else ""),
                          style=OUTCOME_STYLE.get(outcome, "white")))
        by_vm: dict[str, list[str]] = {}
        for reason in (gate.get("reasons") or []):
            if isinstance(reason, dict):
                by_vm.setdefault(short_name(reason.get("vm")), []).append(str(reason.get("reason", reason)))
            else:
                by_vm.setdefault("", []).append(str(reason))
        for vm, reasons in list(by_vm.items())[:6]:
            lines.append(Text(f"  - {vm + ': ' if vm else ''}{'; '.join(reasons)}"))
        if len(by_vm) > 6:
            lines.append(Text(f"  ... {len(by_vm) - 6} more VM(s)", style="dim"))
    if not lines:
        return None
    return Panel(Group(*lines), title="Gate decisions", box=box.ROUNDED)


def _manifest_items(manifest: dict[str, Any], key: str, fallback: str) -> list[str]:
    items = manifest.get(key) or manifest.get(fallback) or []
    out: list[str] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            ident = item.get("kbId") or item.get("kb") or item.get("name") or item.get("id") or ""
            version = item.get("version")
            label = f"KB{ident}" if key == "windowsKbs" and str(ident).isdigit() else str(ident)
            out.append(f"{label}={version}" if version and key != "windowsKbs" else label)
        else:
            out.append(f"KB{item}" if key == "windowsKbs" and str(item).isdigit() else str(item))
    return out


def manifest_line(doc: dict[str, Any], width: int = 80) -> str:
    """``manifest 0545a0c241d8f8c9: 3 KBs (KB5048667, ...), 4 packages (curl=..., ...)``."""
    manifest = doc.get("manifest") or {}
    if not manifest:
        return ""
    kbs = _manifest_items(manifest, "windowsKbs", "kbs")
    packages = _manifest_items(manifest, "linuxPackages", "packages")
    n_kbs = manifest.get("windowsCount", len(kbs))
    n_packages = manifest.get("linuxCount", len(packages))
    budget = 3 if width < NARROW else 8

    def listed(items: list[str], count: Any) -> str:
        if not items:
            return ""
        more = (count if isinstance(count, int) else len(items)) - min(len(items), budget)
        return " (" + ", ".join(items[:budget]) + (f", +{more}" if more > 0 else "") + ")"

    return (f"manifest {manifest.get('hash', '')}: {n_kbs} KBs{listed(kbs, n_kbs)}, "
            f"{n_packages} packages{listed(packages, n_packages)}")


def header(view: dict[str, Any], simulated_now: str, width: int = 80, page_url: str | None = None) -> Panel:
    doc = _status_doc(view)
    waiting = doc.get("waitingFor") or view.get("waitingFor") or {}
    parts = [
        f"rollout [bold]{doc.get('rolloutId', view.get('id', '?'))}[/]",
        f"state [bold]{doc.get('state', '?')}[/]   simulated time {simulated_now}",
    ]
    line = manifest_line(doc, width)
    if line:
        parts.append(line.replace("[", "\\["))
    if waiting:
        what = waiting.get("what")
        ring = f" ({waiting.get('ring')})" if waiting.get("ring") else ""
        until = f" until {short_time(waiting.get('until'))}" if waiting.get("until") else ""
        parts.append(f"waiting for [yellow]{what}[/]{ring}{until}")
    if page_url:
        parts.append(f"operator page {page_url}")
    return Panel("\n".join(parts), title="PatchRings demo", box=box.ROUNDED)


def notifications_table(events: list[dict[str, Any]] | None, width: int = 80, limit: int = 10) -> Table | None:
    """One line per CloudEvent the app published: time, type, ring, message (newest last)."""
    if not events:
        return None
    rows: list[list[Any]] = []
    for event in events[-limit:]:
        data = _dict(event.get("data"))
        subject = str(event.get("subject") or "")
        ring = data.get("ring") or (subject.split("/", 1)[1] if subject.startswith("rings/") else "")
        kind = str(event.get("type") or data.get("kind") or "")
        if width < NARROW:
            kind = kind.removeprefix("PatchRings.")
        message = str(data.get("message") or data.get("summary") or "")
        rollout = str(data.get("rolloutId") or "")
        if rollout:  # one line each: the rollout is the one on screen, its long id says nothing here
            message = message.replace(f" of rollout {rollout}", "").replace(f"rollout {rollout}", "rollout")
        rows.append([short_time(event.get("time") or data.get("time")), kind, str(ring or "-"), message])
    table = _fitted("Notifications", ["time", "type", "ring", "message"], rows, width)
    return table


def render(view: dict[str, Any], simulated_now: str, *, width: int = 80, height: int | None = None,
           events: list[dict[str, Any]] | None = None, page_url: str | None = None) -> Group:
    """The live view. ``height`` (the terminal's) bounds the VM table to what fits; None: all rows."""
    items: list[Any] = [header(view, simulated_now, width, page_url), rings_table(view, width)]
    gates = gate_panel(view, width)
    if gates is not None:
        items.append(gates)
    notes = notifications_table(events, width, limit=5 if height else 10)
    if notes is not None:
        items.append(notes)
    limit = 1000
    if height:
        doc = _status_doc(view)
        used = 7 + 4 + len(doc.get("rings") or [])  # header panel, rings table
        if gates is not None:
            used += 2 + sum(1 + min(6, len((r.get("gate") or {}).get("reasons") or []))
                            for r in doc.get("rings") or [] if r.get("gate"))
        if notes is not None:
            used += 4 + min(5, len(events or []))
        limit = max(3, height - used - 5)
    vms = vms_table(view, limit=limit, width=width)
    if vms is not None:
        items.append(vms)
    return Group(*items)


# --------------------------------------------------------------------------- the end
def _approvals(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Accepted decisions per ring: the status document keeps only the newest few, the ledger all."""
    found: dict[str, dict[str, Any]] = {}
    ledger = (view.get("ledger") or {}).get("approvals") or []
    for item in ledger if isinstance(ledger, list) else []:
        if isinstance(item, dict) and item.get("outcome") in ("accepted", "rejected", "timed-out", "expired"):
            found[str(item.get("ring"))] = item
    for item in _status_doc(view).get("approvals", []) or []:
        if isinstance(item, dict) and (item.get("accepted") or str(item.get("ring")) not in found):
            found[str(item.get("ring"))] = item
    return found


def summary_table(view: dict[str, Any], width: int = 80) -> Group:
    """Per ring: VMs, patched, failed, unhealthy, gate, who approved, simulated duration; then the manifest."""
    doc = _status_doc(view)
    rows = vm_rows(view)
    approvals = _approvals(view)
    columns = ["ring", "VMs", "patched", "failed", "unhealthy", "gate", "approved by", "took"]
    table = _table("Rollout summary", columns, **{"approved by": {"overflow": "fold"}})
    # what is left of the line for the approver once the other columns have their width
    room = width - 3 * (len(columns) - 1) - sum(len(c) for c in columns if c != "approved by") - 2
    for ring in doc.get("rings", []) or []:
        counts = ring_counts(ring, rows)
        gate = str((ring.get("gate") or {}).get("outcome", ""))
        approval = approvals.get(str(ring.get("name"))) or {}
        who = str(approval.get("approver") or approval.get("by") or "")
        verdict = approval.get("verdict", approval.get("decision"))
        if approval and verdict not in (None, "approve", "approved") and isinstance(verdict, str):
            who = f"{who} ({verdict})"
        if len(who) > room and "@" in who:
            who = who.split("@", 1)[0] + "@..."  # alice@... rather than a name broken over two lines
        table.add_row(
            str(ring.get("name")),
            str(counts["total"]),
            str(counts["installed"]),
            str(counts["failed"]),
            str(counts["unhealthy"]),
            Text(gate, style=OUTCOME_STYLE.get(gate, "white")),
            who or "-",
            str(ring.get("duration") or _duration(ring) or "-"),
        )
    return Group(table, Text(_manifest_fate(doc)), Text(""))


def _manifest_fate(doc: dict[str, Any]) -> str:
    """What became of the manifest: built from Ring 0, pinned to which rings, or not used."""
    manifest = (doc.get("manifest") or {}).get("hash")
    rings = doc.get("rings") or []
    if not manifest or not rings:
        return "manifest: none was built" if rings else ""
    first = rings[0]
    if ((first.get("gate") or {}).get("outcome")) not in (None, "pass"):
        return f"manifest {manifest}: from {first.get('name')}, never pinned (its gate did not pass)"
    pinned = [str(r.get("name")) for r in rings[1:] if r.get("opened") or (r.get("gate") or {}).get("outcome")]
    return (f"manifest {manifest}: from {first.get('name')}"
            + (f", pinned to {', '.join(pinned)}" if pinned else ", not pinned to any ring yet"))


def _duration(ring: dict[str, Any]) -> str:
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
