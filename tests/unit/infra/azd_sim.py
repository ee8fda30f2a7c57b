"""Runs the azd hook scripts against a fake ``azd`` (and ``az``) and resolves main.parameters.json like azd.

Why: what a provision sends depends on the azd environment at the moment ``azd provision`` runs
(``${NAME=default}`` in main.parameters.json), which the hook scripts change. Running the real
scripts with a fake ``azd`` on PATH records every ``azd env set`` and, for each ``azd provision``,
the environment it would have used, so a test can evaluate main.bicep for exactly that provision.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

from tests.unit.infra.conftest import INFRA, REPO

__all__ = ["FakeAzd", "resolve_parameters"]

_FAKE = r"""#!/bin/sh
# fake {prog}: state in $FAKE_AZD_STATE (JSON, written by impl.py)
exec "$FAKE_AZD_PYTHON" "$FAKE_AZD_IMPL" {prog} "$@"
"""

_IMPL = r"""
import json, os, sys
path = os.environ["FAKE_AZD_STATE"]
state = json.load(open(path))
prog, args = sys.argv[1], sys.argv[2:]
if prog == "az":
    state["calls"].append(["az", args])
elif args[:2] == ["env", "get-value"]:
    value = state["env"].get(args[2])
    if value is None:
        sys.stderr.write("ERROR: key not found\n")
        sys.exit(1)
    print(value)
elif args[:2] == ["env", "set"]:
    state["env"][args[2]] = args[3]
    state["calls"].append(["env set", args[2], args[3]])
elif args[:1] == ["provision"]:
    state["calls"].append(["provision", dict(state["env"])])
else:
    sys.stderr.write("fake azd: unsupported " + " ".join(args) + "\n")
    sys.exit(2)
json.dump(state, open(path, "w"))
"""


class FakeAzd:
    """A directory with a fake ``azd`` and its state (the azd environment and the calls made)."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None):
        self.dir = tmp
        self.state = tmp / "state.json"
        self.state.write_text(json.dumps({"env": dict(env or {}), "calls": []}), encoding="utf-8")
        (tmp / "impl.py").write_text(_IMPL, encoding="utf-8")
        for prog in ("azd", "az"):
            fake = tmp / prog
            fake.write_text(_FAKE.replace("{prog}", prog), encoding="utf-8")
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    def run_hook(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        shell = shutil.which("sh") or "/bin/sh"
        env = {**os.environ, "PATH": f"{self.dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "FAKE_AZD_STATE": str(self.state), "FAKE_AZD_IMPL": str(self.dir / "impl.py"),
               "FAKE_AZD_PYTHON": shutil.which("python3") or "python3"}
        return subprocess.run([shell, str(REPO / script), *args], cwd=REPO, env=env, capture_output=True, text=True,
                              check=True, timeout=60)

    @property
    def env(self) -> dict[str, str]:
        return dict(json.loads(self.state.read_text(encoding="utf-8"))["env"])

    @property
    def calls(self) -> list[list[Any]]:
        return list(json.loads(self.state.read_text(encoding="utf-8"))["calls"])

    @property
    def provisions(self) -> list[dict[str, str]]:
        calls = json.loads(self.state.read_text(encoding="utf-8"))["calls"]
        return [call[1] for call in calls if call[0] == "provision"]


_SUBST = re.compile(r"\$\{(\w+)(?:=([^}]*))?\}")


def resolve_parameters(env: dict[str, str]) -> dict[str, Any]:
    """main.parameters.json with ``${NAME}`` / ``${NAME=default}`` replaced as azd does, then
    typed as ARM types the values of bool parameters (azd passes "true"/"false" strings)."""
    raw = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]

    def subst(value: Any) -> Any:
        if isinstance(value, str):
            whole = _SUBST.fullmatch(value)
            text = _SUBST.sub(lambda m: env.get(m.group(1), m.group(2) or ""), value)
            if whole and text in ("true", "false"):
                return text == "true"
            return text
        if isinstance(value, list):
            return [subst(v) for v in value]
        if isinstance(value, dict):
            return {k: subst(v) for k, v in value.items()}
        return value

    return {name: subst(spec["value"]) for name, spec in raw.items()}
