"""The host process's command line as the local platform builds it (crash drills run the host so)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.host.cli import build_parser
from emulator.platform import host_arguments

pytestmark = pytest.mark.emulator


def test_a_function_key_starting_with_a_dash_reaches_the_host(tmp_path: Path) -> None:
    """``secrets.token_urlsafe`` keys start with ``-`` one time in 64: passed as a separate argument,
    argparse took it for an option and the host process exited with 2 ("expected one argument")."""
    argv = host_arguments(app_dir=tmp_path, port=7071, storage=str(tmp_path / "d.sqlite"), function_key="-k3y_-",
                          clock="follow=http://127.0.0.1:1/", ready_file=tmp_path / "ready.json",
                          settings={"A": "1", "B": "x=-y"})
    args = build_parser().parse_args(argv)
    assert args.function_key == "-k3y_-"
    assert (args.app, args.port, args.storage) == (str(tmp_path), 7071, str(tmp_path / "d.sqlite"))
    assert args.clock == "follow=http://127.0.0.1:1/" and args.ready_file == str(tmp_path / "ready.json")
    assert args.setting == ["A=1", "B=x=-y"]
