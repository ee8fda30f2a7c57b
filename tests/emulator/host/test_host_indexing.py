"""Indexing like the Python worker: one FunctionRegister, blueprints, durable names, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.clock import make_clock
from emulator.host.cli import main as cli_main
from emulator.host.indexing import IndexError_, index_app
from emulator.host.testing import HostThread

pytestmark = pytest.mark.emulator

APPS = Path(__file__).parent / "apps"


def test_basic_app_is_indexed_with_blueprints_and_durable_names() -> None:
    index = index_app(APPS / "basic")
    assert index.activity("double") is not None and index.activity("DOUBLE").name == "double_impl"
    assert index.orchestrator("fanout").name == "fan_out_impl"  # orchestration= wins over the function name
    assert index.orchestrator("fan_out_impl") is None
    assert index.function("HTTP_START").client_name == "client"
    assert index.function("item").wants_context is True
    assert {f.name for f in index.http_functions} == {"http_start", "open_hello", "item"}


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("unsupported", "function 'on_queue': binding 'msg' of type 'queueTrigger' is not supported"),
        ("sync_client", "function 'start': a function with a durable client binding must be 'async def'"),
        ("two_apps", "more than one FunctionApp/DFApp"),
        ("bad_schedule", "function 'five_fields': timer schedule '*/5 * * * *' is not a 6-field NCRONTAB"),
    ],
)
def test_unsupported_apps_are_refused_at_start(app: str, message: str) -> None:
    clock = make_clock("skip")
    try:
        with pytest.raises(IndexError_, match=message.replace("*", r"\*")), HostThread(APPS / app, clock):
            pass
    finally:
        clock.close()


def test_cli_reports_refusals_with_a_stable_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = cli_main(["--app", str(APPS / "unsupported"), "--port", "0", "--clock", "skip",
                     "--storage", str(tmp_path / "db.sqlite")])
    assert code == 1
    assert "error [HOST_INDEX]: function 'on_queue'" in capsys.readouterr().err


def test_routes_are_described_like_func_start() -> None:
    clock = make_clock("skip")
    with HostThread(APPS / "triggers", clock) as ht:
        lines = ht.host.describe_routes()
    clock.close()
    assert f"hello: [GET] {ht.base_url}/api/hello/{{name}}" in lines
    assert any(line.startswith("on_event: eventGridTrigger") and "functionName=on_event" in line for line in lines)
    assert "record_event: orchestrationTrigger" in lines
