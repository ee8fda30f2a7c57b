"""``python -m bench [NAME ...]``: run the benchmarks and save their tables.

Benchmarks report *ratios taken within one run* (e.g. replay work per activity at fan-out
1,000 vs 100), because absolute timings on shared 2-core machines are noise. Nothing here is
asserted in the test suite.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    known = sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))
    # ``ring_scale`` and ``bench_ring_scale`` name the same benchmark
    names = [a if a.startswith("bench_") else f"bench_{a}" for a in argv] or known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}: {(module.__doc__ or '').strip().splitlines()[0]}")
        rows = module.run()
        (out_dir / f"{name}.json").write_text(json.dumps(rows, indent=2, default=str))
        print(f"   saved bench/results/{name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
