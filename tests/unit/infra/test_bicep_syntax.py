"""Syntax check of infra/*.bicep with pycep-parser, when it is installed.

Why: there is no Bicep compiler here, and the static reader in bicep_static.py does not see
syntax errors (a missing brace, a stray token). pycep-parser (a Python Bicep grammar) does, for
the Bicep it knows. It predates three constructs main.bicep uses: user-defined types (``type``
declarations, ``string[]?`` properties, ``ringSpec[]`` parameters) and loops with a condition
(``[for x in xs: if (c) {``). Those are rewritten to their older equivalents before parsing
(types to ``array``, the condition dropped); everything else is parsed as written.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.infra.bicep_static import BicepFile

pytestmark = pytest.mark.unit

pycep = pytest.importorskip("pycep", reason="pycep-parser not installed (pip install pycep-parser)")


def _downlevel(text: str) -> str:
    """Rewrite the constructs pycep-parser 0.7 lacks; leave everything else byte for byte."""
    text = re.sub(r"@description\([^\n]*\)\ntype \w+ = \{.*?\n\}\n", "", text, flags=re.DOTALL)
    text = re.sub(r"^(param \w+ )\w+\[\]", r"\1array", text, flags=re.MULTILINE)
    return re.sub(r"(\[for [^:\n]+: )if \(.*\) \{\n", r"\1{\n", text)


def test_every_bicep_file_parses(bicep_files: dict[str, BicepFile]) -> None:
    parser = pycep.BicepParser()
    failures = {}
    for name, bicep in bicep_files.items():
        source = bicep.path.read_text(encoding="utf-8")
        try:
            parser.parse(text=_downlevel(source))
        except Exception as exc:  # the parser raises lark errors of several kinds
            failures[name] = str(exc).splitlines()[0]
    assert failures == {}


def test_the_downlevel_rewrite_only_touches_what_pycep_lacks() -> None:
    source = (
        "@description('a ring')\ntype ringSpec = {\n  name: string\n  events: bool?\n}\n"
        "param rings ringSpec[] = []\n"
        "module m 'm.bicep' = [for (r, i) in rings: if (r.?events ?? true) {\n  name: 'm${i}'\n}]\n"
    )
    out = _downlevel(source)
    assert "type ringSpec" not in out
    assert "param rings array = []" in out
    assert "[for (r, i) in rings: {" in out and "name: 'm${i}'" in out
