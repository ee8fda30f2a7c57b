"""``python -m emulator start|arm|...``: entry point of the local platform."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: python -m emulator {start,arm,platform} [options]   (use -h on a command for its options)\n"
        "  start     the Functions + Durable host for the app folder (like `func start`);\n"
        "            --clock follow=URL runs it on another process's clock API\n"
        "  arm       the ARM fleet simulator for a scenario\n"
        "  platform  both on a shared clock, plus Azurite and the clock API (/admin/clock);\n"
        "            --plan, --setting NAME=VALUE, --verbose, --host-process (see docs/local-platform.md)"
    )
    if not args or args[0] in ("-h", "--help"):
        print(usage)
        return 0
    command, rest = args[0], args[1:]
    if command == "start":
        from emulator.host.cli import main as host_main

        return host_main(rest)
    if command == "arm":
        from emulator.arm.cli import main as arm_main

        return arm_main(rest)
    if command == "platform":
        from emulator.platform import main as platform_main

        return platform_main(rest)
    print(f"unknown command {command!r}\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
