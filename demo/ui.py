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

import re
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
    """The rollout document to render.

    ``GET /api/rollouts/{id}`` answers the rings, manifest, approvals and what it waits for at its
    top level (with per-ring phase texts, moving counts and per-VM rows); older answers only had
    them in the orchestration's custom status (``status``) or output.
    """
    if isinstance(view.get("rings"), list):
        return view
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
def _row(ring: str, entry: dict[str, Any]) -> dict[str, Any]:
    verdict = _dict(entry.get("verdict"))
    result = _dict(entry.get("result"))
    full_id = entry.get("id") or entry.get("vm") or verdict.get("vm") or ""
    install = entry.get("installStatus") or result.get("status") or entry.get("install") or entry.get("state")
    outcome = str(verdict.get("outcome") or entry.get("outcome") or "")
    if outcome == "not-started":  # the API's row for a VM its gate names as never started
        install, outcome = "not started", ""
    return {
        "ring": ring or str(entry.get("ring") or ""),
        "id": str(full_id),
        "name": str(entry.get("name") or verdict.get("name") or short_name(full_id)),
        "os": " ".join(x for x in (str(entry.get("os") or ""), "(arc)" if entry.get("kind") == "arc" else "") if x),
        "install": str(install or ""),
        "health": str(verdict.get("health") or entry.get("health") or ""),
        "outcome": outcome,
        "reasons": list(verdict.get("reasons") or entry.get("reasons") or []),
    }


def _gate_reasons(ring: dict[str, Any]) -> list[Any]:
    return list((ring.get("gate") or {}).get("reasons") or ring.get("gateReasons") or [])


def vm_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-VM rows: each ring's ``vms`` in the API's answer, else a ``vms`` list, else the ledger part.

    VMs a gate names as never started (error budget spent, skipped) get a row too, so the
    table and the counts include them.
    """
    doc = _status_doc(view)
    rings = [r for r in doc.get("rings", []) or [] if isinstance(r, dict)]
    entries: list[tuple[str, dict[str, Any]]] = []
    if any(isinstance(r.get("vms"), list) and r["vms"] for r in rings):
        entries = [(str(r.get("name")), e) for r in rings for e in r.get("vms") or [] if isinstance(e, dict)]
    elif isinstance(view.get("vms"), list):
        entries = [(str(e.get("ring") or ""), e) for e in view["vms"] if isinstance(e, dict)]
    else:
        by_ring = (view.get("ledger") or {}).get("vmResults") or {}
        if isinstance(by_ring, dict):
            entries = [(str(ring), e) for ring, items in by_ring.items() for e in (items or []) if isinstance(e, dict)]
    rows = [_row(ring, entry) for ring, entry in entries]
    seen = {(r["ring"], r["name"].lower()) for r in rows}
    for ring in rings:
        for reason in _gate_reasons(ring):
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
    """Per-ring figures, VMs not started included: total, passed, failed, unclear, not started.

    From the API's moving counts (``vms``, ``passed``, ``failed``, ``inconclusive``,
    ``notStarted``, ``skipped``...) when it has them; from older documents' counts
    (``install:ok``, ``health:unhealthy``...) and the gate's counts otherwise; and never fewer
    than the per-VM rows show (a VM a gate names as never started counts as not started).
    Unknown figures are ``""``; a total known only from the rows so far is ``"N+"``.
    """
    counts = ring.get("counts") or {}
    gate_counts = (ring.get("gate") or {}).get("counts") or {}
    mine = [r for r in rows or [] if r["ring"] == ring.get("name")]
    row_not_started = sum(1 for r in mine if r["install"] == "not started")
    row_count = {
        "passed": sum(1 for r in mine if r["outcome"].lower() == "pass"),
        "failed": sum(1 for r in mine if r["outcome"].lower() == "fail" or "fail" in r["install"].lower()
                      or r["health"].lower() == "unhealthy"),
        "inconclusive": sum(1 for r in mine if r["outcome"].lower() == "inconclusive"),
    }
    if "passed" in counts or "notStarted" in counts:  # the API's moving counts
        figures = {k: _int(counts.get(k)) or 0 for k in ("passed", "failed", "inconclusive")}
        not_started = (_int(counts.get("notStarted")) or 0) + (_int(counts.get("skipped")) or 0)
        in_flight = _int(counts.get("inFlight"))
        if in_flight is None:  # an older API: what the running wave does now
            in_flight = (_int(counts.get("installing")) or 0) + (_int(counts.get("verifying")) or 0)
        declared = _int(counts.get("vms"))
    elif counts or gate_counts:  # an older document: the orchestrator's raw counts and the gate's
        failed = _int(gate_counts.get("failed"))
        if failed is None:
            failed = (_int(counts.get("install:failed")) or 0) + (_int(counts.get("health:unhealthy")) or 0)
        passed = _int(gate_counts.get("passed"))
        if passed is None:
            passed = max((_int(counts.get("install:ok")) or 0) - (_int(counts.get("health:unhealthy")) or 0), 0)
        unclear = _int(gate_counts.get("inconclusive"))
        if unclear is None:
            unclear = (_int(counts.get("install:inconclusive")) or 0) + (_int(counts.get("health:unknown")) or 0)
        figures = {"passed": passed, "failed": failed, "inconclusive": unclear}
        not_started = _int(counts.get("skipped")) or 0
        in_flight = 0
        vms = _int(counts.get("vms"))
        declared = vms + not_started if vms is not None else _int(gate_counts.get("total"))
    elif mine:
        figures, not_started, in_flight, declared = dict(row_count), 0, 0, None
    else:
        members = _int(ring.get("members"))
        return {"total": members if members is not None else "", "passed": "", "failed": "", "inconclusive": "",
                "notStarted": ""}
    if declared is None and not mine and not (sum(figures.values()) + not_started + in_flight):
        members = _int(ring.get("members"))  # nothing known yet (a ring not resolved): blanks, not zeros
        return {"total": members if members is not None else "", "passed": "", "failed": "", "inconclusive": "",
                "notStarted": ""}
    for key, value in row_count.items():
        figures[key] = max(figures[key], value)
    not_started = max(not_started, row_not_started)
    candidates = [v for v in (declared, _int(ring.get("members")), _int(counts.get("members")),
                              sum(figures.values()) + not_started + in_flight, len(mine)) if v is not None]
    total: Any = max(candidates) if candidates else ""
    if declared is None and _int(ring.get("members")) is None and total == len(mine) > 0 and \
            str(ring.get("phase") or "") not in ("passed", "failed", "completed"):
        total = f"{len(mine)}+"  # only the rows written so far are known: at least that many
    return {"total": total, **figures, "notStarted": not_started}


def _style(phase: str | None) -> str:
    return PHASE_STYLE.get((phase or "").lower(), "white")


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)")


def phase_text(ring: dict[str, Any], width: int = 160) -> str:
    """What the ring is doing: the API's ``phaseText`` (wide) or a short form (narrow), else built.

    ``installing wave 1 of 3: waiting before the first health check until 2026-11-16 07:00Z`` at
    160 columns, ``installing wave 1/3 until 07:00Z`` at 80.
    """
    phase = str(ring.get("phase") or "")
    progress = _dict(ring.get("progress"))
    detail = ring.get("phaseDetail") or ring.get("detail")
    if isinstance(detail, dict):
        progress = {**detail, **progress}
        detail = detail.get("text") or detail.get("description")
    wave = _int(progress.get("wave")) if progress else _int(ring.get("wave"))
    waves = _int(progress.get("waves")) if progress else _int(ring.get("waves"))
    until = ring.get("until") or progress.get("until")
    full = ring.get("phaseText")
    if isinstance(full, str) and full and width >= NARROW:
        return _ISO.sub(lambda m: short_time(m.group(0)), full)
    text = phase.replace("-", " ")
    if isinstance(detail, str) and detail and width >= NARROW:
        text = detail if text in detail else f"{text}: {detail}"
    if wave is not None and "wave" not in text:
        text += (f" wave {wave}/{waves}" if waves and width < NARROW
                 else f" wave {wave}" + (f" of {waves}" if waves else ""))
    if until and "until" not in text:
        short = short_time(until)
        text += f" until {short[5:] if width < NARROW else short}"  # 11-17 09:55Z at 80 columns
    return text


# --------------------------------------------------------------------------- sections
def rings_table(view: dict[str, Any], width: int = 80) -> Table:
    doc = _status_doc(view)
    rows = vm_rows(view)
    wide = width >= NARROW
    columns = ["ring"] + (["patching"] if wide else []) + ["phase", "VMs", "passed", "failed", "unclear",
                                                          "not started", "gate"]
    table = _table("Rings", columns, phase={"ratio": 1, "overflow": "fold"})
    for ring in doc.get("rings", []) or []:
        counts = ring_counts(ring, rows)
        outcome = str((ring.get("gate") or {}).get("outcome") or "")
        cells: list[Any] = [str(ring.get("name"))]
        if wide:
            cells.append(str(ring.get("patching") or ""))
        cells += [
            Text(phase_text(ring, width), style=_style(ring.get("phase"))),
            str(counts["total"]),
            str(counts["passed"]),
            str(counts["failed"]),
            str(counts["inconclusive"]),
            str(counts["notStarted"]),
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


def _manifest_items(manifest: dict[str, Any], *keys: str, windows: bool = False) -> list[str]:
    """``KB5048667`` / ``curl=7.81.0-1ubuntu1.20`` labels from the first of ``keys`` the manifest has."""
    items: list[Any] = next((manifest[k] for k in keys if isinstance(manifest.get(k), list)), [])
    out: list[str] = []
    for item in items:
        if isinstance(item, dict):
            ident = str(item.get("kb") or item.get("kbId") or item.get("package") or item.get("name")
                        or item.get("id") or "")
            version = item.get("version")
            if version and "=" not in ident and not windows:
                ident = f"{ident}={version}"
        else:
            ident = str(item)
        out.append(f"KB{ident}" if windows and ident.isdigit() else ident)
    return out


def manifest_line(doc: dict[str, Any], width: int = 80) -> str:
    """``manifest 0545a0c241d8f8c9: 3 KBs (KB5048667, ...), 4 packages (curl=..., ...)``."""
    manifest = doc.get("manifest") or {}
    if not manifest:
        return ""
    kbs = _manifest_items(manifest, "windows", "windowsKbs", "kbs", windows=True)
    packages = _manifest_items(manifest, "linux", "linuxPackages", "packages")
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
        f"rollout [bold]{doc.get('rolloutId') or view.get('id') or '?'}[/]",
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
    if page_url and len(page_url) + len("operator page ") <= width - 4:
        parts.append(f"operator page {page_url}")  # only when it fits: a wrapped link cannot be clicked
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
        if ring and message.startswith(f"ring {ring} "):
            message = message[len(f"ring {ring} "):]  # the ring has its own column
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
_DECIDED = ("accepted", "rejected", "timed-out", "expired")


def _approvals(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The decision that counted, per ring: an accepted (or final) one over a merely submitted one.

    From the API's ``approvals`` (all of them, with ``outcome``), the ledger part, and an older
    status document's (which keeps only the newest few, marked ``accepted``).
    """
    items: list[dict[str, Any]] = []
    for source in ((view.get("ledger") or {}).get("approvals"), _status_doc(view).get("approvals"),
                   view.get("approvals")):
        items += [a for a in source or [] if isinstance(a, dict)] if isinstance(source, list) else []
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        ring = str(item.get("ring"))
        final = item.get("accepted") is True or item.get("outcome") in _DECIDED
        if final or ring not in found:  # a submitted one never hides the decision that counted
            found[ring] = item
    return found


def summary_table(view: dict[str, Any], width: int = 80) -> Group:
    """Per ring: VMs, passed, failed, not started, gate, who approved, simulated duration; then the manifest.

    (Unclear VMs too when the width allows; the rings table above always has them.)
    """
    doc = _status_doc(view)
    rows = vm_rows(view)
    approvals = _approvals(view)
    wide = width >= NARROW
    columns = ["ring", "VMs", "passed", "failed"] + (["unclear"] if wide else []) + ["not started", "gate",
                                                                                   "approved by", "took"]
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
            str(counts["passed"]),
            str(counts["failed"]),
            *([str(counts["inconclusive"])] if wide else []),
            str(counts["notStarted"]),
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
