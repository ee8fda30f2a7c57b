"""``python -m emulator start``: run a function app locally, like ``func start``.

Why a CLI of its own: Core Tools cannot be installed here (its binary comes from an
unreachable CDN), so developers start the app with this command instead. It prints the
routes and the default function key the way ``func start`` does, streams one line per
function execution, then serves until Ctrl+C.

``--clock follow=URL`` runs the host on another process's clock (the local platform's time
authority, ``.../admin/clock``): this is how the platform runs the host as a separate process
that a crash drill can SIGKILL (``LocalPlatform(host_process=True)``). ``--ready-file`` writes
the host's URL, keys and durable client binding as JSON once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
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
    parser.add_argument("--clock", default="real",
                        help="real | skip | scale=N | follow=URL of a clock API (default real)")
    parser.add_argument("--start", default=None, help="simulated start instant (ISO-8601) for skip/scale")
    parser.add_argument("--storage", default=None,
                        help="SQLite file for durable state, or :memory: (default <app>/.local/durable.sqlite)")
    parser.add_argument("--function-key", default=None,
                        help="default function key (default: FUNCTIONS_KEY or generated)")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an app setting (repeatable; wins over local.settings.json)")
    parser.add_argument("--ready-file", default=None,
                        help="write {baseUrl, functionKey, masterKey, clientBinding} here once serving")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


async def _serve(host: FunctionsHost, ready_file: str | None = None) -> None:
    await host.start()
    if ready_file:
        info = {"baseUrl": host.base_url, "functionKey": host.function_key, "masterKey": host.master_key,
                "clientBinding": host.client_binding_json(), "pid": os.getpid()}
        tmp = Path(f"{ready_file}.tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        tmp.replace(ready_file)
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
    settings: dict[str, str] = {}
    for pair in args.setting:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            print(f"error: --setting {pair!r}: use NAME=VALUE", file=sys.stderr)
            return 2
        settings[name.strip()] = value
    try:
        clock = make_clock(args.clock, start=args.start)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: --clock {args.clock}: {exc}", file=sys.stderr)
        return 2
    host = FunctionsHost(app_dir, clock, port=args.port, storage=storage, function_key=args.function_key,
                         settings=settings)
    try:
        asyncio.run(_serve(host, args.ready_file))
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
