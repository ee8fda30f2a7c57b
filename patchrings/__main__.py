"""Command line: ``python -m patchrings validate-plan FILE`` and ``python -m patchrings rollouts ...``.

``validate-plan`` exists so a plan can be checked before it is deployed (CI, pre-commit, an
operator's terminal) with exactly the rules the app applies at start. ``rollouts
list|show|start|dry-run|approve|reject|halt|resume`` drives a deployed app over its HTTP API
(``patchrings/cli``; URL and key from ``PATCHRINGS_API_URL`` / ``PATCHRINGS_API_KEY`` or flags).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from patchrings.cli import add_rollouts_parser, run_rollouts


def _validate_plan(path: str) -> int:
    # Imported here: ``rollouts`` needs only the standard library on an operator's machine.
    from patchrings.domain.plan import load_plan_file
    from patchrings.errors import PlanInvalid

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
    parser = argparse.ArgumentParser(prog="python -m patchrings", description=__doc__.splitlines()[0],
                                     epilog="python -m patchrings rollouts --help: the HTTP API commands")
    sub = parser.add_subparsers(dest="command", required=True)
    vp = sub.add_parser("validate-plan", help="validate a rollout plan file; prints OK + hash or the errors")
    vp.add_argument("file")
    add_rollouts_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "validate-plan":
        return _validate_plan(args.file)
    if args.command == "rollouts":
        return run_rollouts(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
