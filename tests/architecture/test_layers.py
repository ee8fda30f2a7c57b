"""Which layer may import which (issue 10, "Guards as code"; the picture in docs/architecture.md).

The contracts live in pyproject.toml (``[tool.importlinter]``) and ``make lint`` runs them with
``lint-imports``; this module runs the same contracts under pytest, checks ``function_app.py``
(a single module, which import-linter cannot take as a root package), and keeps the contracts
and docs/architecture.md naming the same rules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTRACT_IDS = {
    "domain-is-pure",
    "orchestrators-speak-the-domain",
    "app-never-imports-emulator",
    "emulator-stands-apart",
}


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def test_the_contracts_are_the_issues() -> None:
    contracts = {c["id"]: c for c in _contracts()}
    assert set(contracts) == CONTRACT_IDS
    assert all(c["type"] == "forbidden" for c in contracts.values())
    domain = contracts["domain-is-pure"]
    assert domain["source_modules"] == ["patchrings.domain"]
    assert {"azure", "patchrings.arm", "patchrings.clients", "patchrings.ledger", "activities", "triggers",
            "orchestrators"} <= set(domain["forbidden_modules"])  # type: ignore[arg-type]
    orchestrators = contracts["orchestrators-speak-the-domain"]
    assert orchestrators["source_modules"] == ["orchestrators"]
    assert {"patchrings.arm", "patchrings.clients", "patchrings.ledger", "activities",
            "triggers"} <= set(orchestrators["forbidden_modules"])  # type: ignore[arg-type]
    if (REPO / "patchrings" / "deps.py").exists():
        assert "patchrings.deps" in orchestrators["forbidden_modules"]  # type: ignore[operator]
    app = contracts["app-never-imports-emulator"]
    assert set(app["source_modules"]) == {"patchrings", "orchestrators", "activities", "triggers"}  # type: ignore[arg-type]
    assert app["forbidden_modules"] == ["emulator"]
    emulator = contracts["emulator-stands-apart"]
    assert emulator["source_modules"] == ["emulator"]
    assert set(emulator["forbidden_modules"]) == {"patchrings", "activities", "orchestrators", "triggers"}  # type: ignore[arg-type]


def test_the_contracts_are_kept() -> None:
    pytest.importorskip("importlinter.cli", reason="import-linter is in requirements-dev.txt: make bootstrap")
    # In a child process: lint-imports configures logging with dictConfig, which would disable the
    # loggers of the modules this test process already imported (and break later caplog tests).
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def test_function_app_composes_and_never_imports_the_emulator() -> None:
    imports = _imported_modules(REPO / "function_app.py")
    assert imports, "function_app.py imports its blueprints"
    emulator = [f"function_app.py:{line}: {name}" for line, name in imports if name.split(".")[0] == "emulator"]
    assert not emulator, emulator
    allowed_roots = {"__future__", "azure", "logging", "typing", "orchestrators", "activities", "triggers",
                     "patchrings"}
    others = [f"function_app.py:{line}: {name}" for line, name in imports if name.split(".")[0] not in allowed_roots]
    assert not others, f"function_app.py only composes blueprints: {others}"


def test_docs_draw_the_same_contracts() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text()
    missing = sorted(cid for cid in CONTRACT_IDS if f"`{cid}`" not in doc)
    assert not missing, f"docs/architecture.md does not name the import contracts {missing}"
