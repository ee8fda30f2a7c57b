"""``python -m emulator arm``: run the ARM fleet simulator on its own.

Why: demos and manual exploration (``az rest``, the SDKs, a browser on ``/_sim/fleet``) need the
simulator without the Functions host; tests use the in-process fixture instead. Prints the
endpoint, the CA bundle path and the client configuration path, then serves until interrupted.
``skip`` time only makes sense with the host in the same process (``python -m emulator start``);
standalone, ``real`` (default) or ``scale=N`` are the useful clocks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

from emulator.arm.scenario import ScenarioError
from emulator.arm.server import ArmSimulator
from emulator.clock import make_clock

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator arm", description="HTTPS Azure Resource Manager fleet simulator"
    )
    parser.add_argument("--scenario", required=True, type=Path, help="scenario file (.yaml/.yml/.json)")
    parser.add_argument("--port", type=int, default=0, help="HTTPS port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--health-port", type=int, default=0, help="plain-HTTP port for per-VM health endpoints")
    parser.add_argument("--clock", default="real", help="real | skip | scale=N (default: real)")
    parser.add_argument("--start", default=None, help="simulated start time, ISO 8601 (default: now)")
    parser.add_argument("--state-dir", type=Path, default=None, help="where the CA and client-config.json go")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="scenario variable, e.g. FUNCTIONS_HOST=http://127.0.0.1:7071 (repeatable)",
    )
    return parser


def _variables(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--var expects NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


async def _serve(sim: ArmSimulator, ready: asyncio.Event | None = None) -> None:
    await sim.start()
    print(f"ARM simulator endpoint: {sim.endpoint}")
    print(f"CA bundle:              {sim.ca_path}")
    print(f"client configuration:   {sim.client_config_path}")
    print(f"VM health endpoints:    {sim.health_url_template}")
    print(f"bearer token:           {sim.token}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        clock = make_clock(args.clock, start=args.start)
        state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="patchrings-arm-"))
        sim = ArmSimulator(
            args.scenario,
            clock,
            port=args.port,
            state_dir=state_dir,
            variables=_variables(args.var),
            health_port=args.health_port,
        )
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(sim))
    except KeyboardInterrupt:
        pass
    finally:
        clock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
