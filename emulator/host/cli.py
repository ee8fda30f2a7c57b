"""``python -m emulator start``: run a function app locally, like ``func start``.

Why a CLI of its own: Core Tools cannot be installed here (its binary comes from an
unreachable CDN), so developers start the app with this command instead. It prints the
routes and the default function key the way ``func start`` does, then serves until Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from emulator.clock import make_clock
from emulator.host.indexing import IndexError_
from emulator.host.server import FunctionsHost

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator start",
        description="Run an Azure Functions (Python v2) + Durable Functions app locally.",
    )
    parser.add_argument("--app", default=".", help="app folder containing function_app.py (default: .)")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071; 0 picks a free one)")
    parser.add_argument("--clock", default="real", help="real | skip | scale=N (default real)")
    parser.add_argument("--start", default=None, help="simulated start instant (ISO-8601) for skip/scale")
    parser.add_argument("--storage", default=None,
                        help="SQLite file for durable state, or :memory: (default <app>/.local/durable.sqlite)")
    parser.add_argument("--function-key", default=None,
                        help="default function key (default: FUNCTIONS_KEY or generated)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


async def _serve(host: FunctionsHost) -> None:
    await host.start()
    print(f"\nFunctions host listening on {host.base_url}  (clock {host.clock.spec}, storage {host.storage})")
    print("\nFunctions:\n")
    for line in host.describe_routes():
        print(f"        {line}\n")
    print(f"Default function key: {host.function_key}")
    print("For detailed output, run with --verbose. Press Ctrl+C to stop.\n", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await host.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="[%(asctime)s] %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    app_dir = Path(args.app).resolve()
    storage = args.storage or str(app_dir / ".local" / "durable.sqlite")
    try:
        clock = make_clock(args.clock, start=args.start)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host = FunctionsHost(app_dir, clock, port=args.port, storage=storage, function_key=args.function_key)
    try:
        asyncio.run(_serve(host))
    except IndexError_ as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        clock.close()
    return 0
