"""Command line: ``python -m patchrings validate-plan FILE``.

Exists so a plan can be checked before it is deployed (CI, pre-commit, an operator's terminal)
with exactly the rules the app applies at start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from patchrings.domain.plan import load_plan_file
from patchrings.errors import PlanInvalid


def _validate_plan(path: str) -> int:
    try:
        plan = load_plan_file(path)
    except PlanInvalid as exc:
        print(f"{path}: INVALID ({len(exc.errors)} error(s))", file=sys.stderr)
        for line in exc.lines():
            print(line)
        return 1
    rings = ", ".join(f"{r.name} ({r.patching})" for r in plan.rings)
    print(f"OK {plan.hash} {plan.name}: {rings}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patchrings", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    vp = sub.add_parser("validate-plan", help="validate a rollout plan file; prints OK + hash or the errors")
    vp.add_argument("file")
    args = parser.parse_args(argv)
    if args.command == "validate-plan":
        return _validate_plan(args.file)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
