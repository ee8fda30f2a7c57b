"""Readable tables for the CLI: ``rich`` when it is installed and stdout is a terminal, else plain.

Why the fallback: the CLI runs on operators' machines where ``rich`` may be missing (it is a dev
dependency of this repository, not a runtime one), and plain aligned text is what scripts and
``grep`` want when output is piped.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) or "-"
    return str(value)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; a header line and a rule."""
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(widths[i]) for i, v in enumerate(values)).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(row) for row in text_rows)
    return "\n".join(out)


def _rich_console(stream: TextIO) -> Any | None:
    if not getattr(stream, "isatty", lambda: False)():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream)


def print_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[Any]],
                stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    console = _rich_console(out)
    if console is not None:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for header in headers:
            table.add_column(header)
        for row in rows:
            table.add_row(*(cell(v) for v in row))
        console.print(table)
        return
    if title:
        print(title, file=out)
    print(plain_table(headers, rows), file=out)
    print(file=out)


def print_fields(title: str | None, fields: Sequence[tuple[str, Any]], stream: TextIO | None = None) -> None:
    """``name: value`` lines, names aligned."""
    out = stream or sys.stdout
    if title:
        print(title, file=out)
    width = max((len(name) for name, _ in fields), default=0)
    for name, value in fields:
        print(f"  {name.ljust(width)}  {cell(value)}", file=out)
    print(file=out)
