"""``python -m emulator.eventgrid``: the local Event Grid topic on its own (for ``func start``).

Serves ``https://127.0.0.1:PORT/api/events`` with its CA in ``STATE_DIR/ca.pem`` and prints the
app settings that point the app at it. ``--token`` (repeatable) is a bearer token it accepts
(e.g. the simulator's, ``PATCHRINGS_ARM_STATIC_TOKEN``); ``--sas-key`` enables ``aeg-sas-key``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from emulator.eventgrid.server import EventGridTopic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.eventgrid", description=__doc__)
    parser.add_argument("--port", type=int, default=8444, help="HTTPS port (default 8444; 0: any)")
    parser.add_argument("--state-dir", type=Path, default=Path(".local/eventgrid"), help="where ca.pem goes")
    parser.add_argument("--token", action="append", default=[], help="a bearer token to accept (repeatable)")
    parser.add_argument("--sas-key", default=None, help="accept this aeg-sas-key too")
    args = parser.parse_args(argv)
    if not args.token and not args.sas_key:
        parser.error("give at least one --token or --sas-key")

    async def run() -> None:
        topic = EventGridTopic(state_dir=args.state_dir, port=args.port, tokens=args.token, sas_key=args.sas_key)
        await topic.start()
        print(json.dumps({"PATCHRINGS_NOTIFY_TOPIC_ENDPOINT": topic.endpoint,
                          "PATCHRINGS_NOTIFY_TOPIC_CA_BUNDLE": str(topic.ca_path)}, indent=2))
        print(f"published events: GET {topic.url}/_sim/events (curl --cacert {topic.ca_path})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await topic.stop()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
