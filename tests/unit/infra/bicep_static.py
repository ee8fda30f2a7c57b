"""A light static reader for the repository's Bicep files.

Why: Bicep cannot be compiled on our machines (no bicep CLI, no internet), yet the mistakes that
break a deployment first are cheap to see in the text: a module called with a parameter it does
not declare, a required parameter not passed, an output read that a module does not produce, a
``loadJsonContent`` path that does not exist, a JSON field the Bicep reads that the JSON does not
have. This module extracts exactly those facts; it is not a Bicep parser and does not try to be.

SUPPORTED: ``param`` / ``var`` / ``output`` / ``module`` / ``resource`` declarations at the start
of a line; single-quoted strings (with ``\\'`` escapes) and ``//`` / ``/* */`` comments;
``loadJsonContent('...')`` bound to a ``var``; ``<module>.outputs.<name>`` references.
LIMITATIONS: multi-line ``'''`` strings are treated as ordinary strings; string interpolation is
not evaluated; a module's ``params`` block is read by brace matching only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BicepFile", "ModuleCall", "code_only", "json_path_exists", "load_bicep", "strip_comments"]

_PARAM = re.compile(r"^param\s+(\w+)\s+([\w\[\]?]+)(.*)$", re.MULTILINE)
_VAR = re.compile(r"^var\s+(\w+)\s*=", re.MULTILINE)
_OUTPUT = re.compile(r"^output\s+(\w+)\s+", re.MULTILINE)
_MODULE = re.compile(r"^module\s+(\w+)\s+'([^']+)'\s*=", re.MULTILINE)
_RESOURCE = re.compile(r"^resource\s+(\w+)\s+'([^']+)'", re.MULTILINE)
_TARGET_SCOPE = re.compile(r"^targetScope\s*=\s*'(\w+)'", re.MULTILINE)
_LOAD_JSON_VAR = re.compile(r"^var\s+(\w+)\s*=\s*loadJsonContent\('([^']+)'\)", re.MULTILINE)
_LOAD_JSON_ANY = re.compile(r"loadJsonContent\('([^']+)'\)")
_OUTPUT_REF = re.compile(r"\b(\w+)(?:\[\w+\])?\.outputs\.(\w+)")


def strip_comments(text: str) -> str:
    """``text`` with ``//`` and ``/* */`` comments blanked, strings left intact (offsets kept)."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == "'":
                in_string = False
            i += 1
            continue
        if ch == "'":
            in_string = True
            out.append(ch)
            i += 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def code_only(text: str) -> str:
    """Comment-free ``text`` with string literals blanked except their ``${...}`` interpolations,
    so identifiers are only found where Bicep evaluates them."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    depth = 0  # brace depth inside an interpolation
    while i < n:
        ch = text[i]
        if in_string and depth == 0:
            if ch == "\\" and i + 1 < n:
                out.append("  ")
                i += 2
                continue
            if ch == "'":
                in_string = False
                out.append(ch)
            elif text.startswith("${", i):
                depth = 1
                out.append("${")
                i += 2
                continue
            else:
                out.append("\n" if ch == "\n" else " ")
            i += 1
            continue
        if in_string:  # inside ${...}
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            out.append(ch)
            i += 1
            continue
        if ch == "'":
            in_string = True
        out.append(ch)
        i += 1
    return "".join(out)


def _block_after(text: str, start: int) -> str:
    """The ``{...}`` block whose opening brace is the first one at or after ``start``."""
    open_at = text.index("{", start)
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : j]
    raise ValueError(f"unbalanced braces after offset {start}")


def _top_level_keys(block: str) -> list[str]:
    """Keys (``name:``) at depth 0 of an object body."""
    keys: list[str] = []
    depth = 0
    for line in block.splitlines():
        stripped = line.strip()
        if depth == 0:
            found = re.match(r"^(\w+)\s*:", stripped)
            if found:
                keys.append(found.group(1))
        depth += line.count("{") + line.count("[") - line.count("}") - line.count("]")
    return keys


@dataclass
class ModuleCall:
    """One ``module`` declaration: its symbol, the file it points at and the params it passes."""

    symbol: str
    path: Path
    params: list[str]


@dataclass
class BicepFile:
    path: Path
    text: str
    target_scope: str
    params: dict[str, bool] = field(default_factory=dict)  # name -> has a default
    variables: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    modules: list[ModuleCall] = field(default_factory=list)
    resources: dict[str, str] = field(default_factory=dict)  # symbol -> type@api
    json_vars: dict[str, Path] = field(default_factory=dict)  # var -> loaded JSON file
    json_loads: list[Path] = field(default_factory=list)
    output_refs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def required_params(self) -> set[str]:
        return {name for name, has_default in self.params.items() if not has_default}

    def json_field_refs(self, var: str) -> set[str]:
        """Dotted field paths read from a ``loadJsonContent`` variable, e.g. ``filter.includedEventTypes``."""
        return set(re.findall(rf"(?<![\w.]){re.escape(var)}\.([A-Za-z_][\w.]*\w)", code_only(self.text)))

    def count(self, identifier: str) -> int:
        """How often ``identifier`` occurs as a whole word outside comments."""
        return len(re.findall(rf"(?<![\w.]){re.escape(identifier)}\b", code_only(self.text)))


def load_bicep(path: Path) -> BicepFile:
    text = strip_comments(path.read_text(encoding="utf-8"))
    scope = _TARGET_SCOPE.search(text)
    bicep = BicepFile(path=path, text=text, target_scope=scope.group(1) if scope else "resourceGroup")
    for found in _PARAM.finditer(text):
        rest = found.group(3)
        bicep.params[found.group(1)] = "=" in rest
    bicep.variables = _VAR.findall(text)
    bicep.outputs = _OUTPUT.findall(text)
    bicep.resources = {m.group(1): m.group(2) for m in _RESOURCE.finditer(text)}
    for found in _MODULE.finditer(text):
        body = _block_after(text, found.end())
        params_at = re.search(r"^\s*params\s*:\s*\{", body, re.MULTILINE)
        params = _top_level_keys(_block_after(body, params_at.start())) if params_at else []
        bicep.modules.append(ModuleCall(found.group(1), (path.parent / found.group(2)).resolve(), params))
    bicep.json_vars = {m.group(1): (path.parent / m.group(2)).resolve() for m in _LOAD_JSON_VAR.finditer(text)}
    bicep.json_loads = [(path.parent / p).resolve() for p in _LOAD_JSON_ANY.findall(text)]
    bicep.output_refs = _OUTPUT_REF.findall(text)
    return bicep


def json_path_exists(data: Any, dotted: str) -> bool:
    """True when ``a.b.c`` can be followed through nested objects of ``data``."""
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
