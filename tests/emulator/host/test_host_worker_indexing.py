"""Indexing through the Python worker's own loader (issue 14.1).

The host runs every function through ``azure_functions_runtime.functions.Registry.add_indexed_function``
(the worker's function-loading code, PyPI ``azure-functions-runtime``), so it refuses exactly what
the worker refuses, and one refused function aborts the whole app (reference §7.1).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import make_clock
from emulator.host.indexing import IndexError_, index_app
from emulator.host.testing import HostThread

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[3]
APPS = Path(__file__).parent / "apps"
LEDGER = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
          "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;")


@pytest.fixture
def app_settings() -> Iterator[None]:
    """Valid PATCHRINGS_* settings that need no network (the app validates them at import)."""
    from patchrings import deps

    saved = {k: v for k, v in os.environ.items() if k.startswith("PATCHRINGS_")}
    for key in saved:
        del os.environ[key]
    os.environ["PATCHRINGS_LEDGER_CONNECTION"] = LEDGER
    deps.reset()
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("PATCHRINGS_")]:
            del os.environ[key]
        os.environ.update(saved)
        sys.modules.pop("function_app", None)
        deps.reset()


def _worker_index(app_file: Path) -> list[str]:
    """What the real worker loads: ``get_functions()`` then ``Registry.add_indexed_function`` for each."""
    from azure_functions_runtime.bindings import meta
    from azure_functions_runtime.functions import Registry

    meta.load_binding_registry()
    protos: Any = types.SimpleNamespace(BindingInfo=types.SimpleNamespace(
        out=1, inout=2, undefined=0, string=1, binary=2, stream=3, **{"in": 0}))
    sys.modules.pop("function_app", None)
    spec = importlib.util.spec_from_file_location("function_app", app_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    spec.loader.exec_module(module)
    registry = Registry()
    return [registry.add_indexed_function(fn, protos).name for fn in module.app.get_functions()]


def test_the_real_app_indexes_with_the_worker_code_and_the_host_serves_the_same_functions(
        app_settings: None) -> None:
    worker = _worker_index(REPO / "function_app.py")
    host = index_app(REPO)
    assert len(worker) >= 34  # 34 when issue 14 was filed; others may add functions
    assert sorted(worker) == sorted(e.name for e in host.functions.values())


def test_a_pep585_annotation_is_refused_with_the_workers_message_and_aborts_the_app() -> None:
    with pytest.raises(IndexError_) as err:
        index_app(APPS / "pep585")
    message = str(err.value)
    assert message.startswith("function 'pep585': the Python worker refuses it: FunctionLoadError: "
                              "cannot load the pep585 function: binding payload has invalid non-type "
                              "annotation dict[str, typing.Any]")
    assert "Worker failed to index functions" in message
    # the worker itself says the same
    from azure_functions_runtime.functions import FunctionLoadError

    with pytest.raises(FunctionLoadError, match="invalid non-type annotation dict"):
        _worker_index(APPS / "pep585" / "function_app.py")


def test_the_host_refuses_to_start_the_whole_app() -> None:
    clock = make_clock("skip")
    try:
        with pytest.raises(IndexError_, match="function 'pep585'"), HostThread(APPS / "pep585", clock):
            pass
    finally:
        clock.close()


def test_a_missing_worker_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure_functions_runtime.functions", None)
    with pytest.raises(IndexError_) as err:
        index_app(APPS / "basic")
    assert "pip install --no-deps --ignore-requires-python azure-functions-runtime==1.3.0" in str(err.value)
