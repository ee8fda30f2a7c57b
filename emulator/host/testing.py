"""Run a :class:`FunctionsHost` on a background thread's event loop, for synchronous test code.

Why: pytest tests (and the functional tests of the app) are easiest to write synchronously,
while the host is asyncio. ``HostThread`` owns a loop on a daemon thread, starts the host on
a free port and stops it cleanly. Anything async that must share the host's loop - notably
the SDK's ``DurableOrchestrationClient``, whose module-global aiohttp session is bound to the
loop it was first used on - goes through :meth:`HostThread.call`.

    with HostThread(app_dir, make_clock("skip")) as ht:
        client = ht.client()
        iid = ht.call(client.start_new("Hello", None, {"name": "Bob"}))
        status = ht.wait_for(iid)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from emulator.clock import Clock
from emulator.host.server import FunctionsHost

__all__ = ["HostThread"]

T = TypeVar("T")

_FINAL = ("Completed", "Failed", "Terminated", "Canceled")


class HostThread:
    """A FunctionsHost running on its own loop thread (context manager)."""

    def __init__(
        self,
        app_dir: Path | str,
        clock: Clock,
        *,
        settings: dict[str, str] | None = None,
        storage: str = ":memory:",
        function_key: str | None = "test-function-key",
        port: int = 0,
        **host_kwargs: Any,
    ) -> None:
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self.host = FunctionsHost(app_dir, clock, port=port, storage=storage, settings=settings,
                                  function_key=function_key, **host_kwargs)
        self._thread = threading.Thread(target=self._run, name="functions-host", daemon=True)
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HostThread:
        self._thread.start()
        self.call(self.host.start(), timeout=60)
        self._started = True
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            if self._started:
                self.call(self.host.stop(), timeout=120)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_closed() and not self._thread.is_alive():
            self.loop.close()
        self._started = False

    def __enter__(self) -> HostThread:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 120) -> T:
        """Run a coroutine on the host's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run_sync(self, fn: Any, *args: Any, timeout: float | None = 60) -> Any:
        """Run a plain function on the loop thread (to read engine state consistently)."""

        async def _wrapper() -> Any:
            return fn(*args)

        return self.call(_wrapper(), timeout=timeout)

    @property
    def base_url(self) -> str:
        return self.host.base_url

    @property
    def function_key(self) -> str:
        return self.host.function_key

    def client(self) -> Any:
        """A real ``DurableOrchestrationClient`` bound to this host (use it through :meth:`call`)."""
        from azure.durable_functions import DurableOrchestrationClient

        return DurableOrchestrationClient(self.host.client_binding_json())

    def status(self, instance_id: str, **flags: bool) -> Any:
        return self.call(self.client().get_status(instance_id, **flags))

    def wait_for(self, instance_id: str, *, statuses: tuple[str, ...] = _FINAL, timeout: float = 60.0,
                 **flags: bool) -> Any:
        """Poll (through the client, over HTTP) until the instance reaches one of ``statuses``.

        With a ``skip`` clock, virtual time keeps jumping while the host is idle, so day-long
        timers finish here in real milliseconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(instance_id, **flags)
            runtime = getattr(status.runtime_status, "value", None) if status else None
            if runtime in statuses:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"instance {instance_id} is {runtime} after {timeout}s "
                                   f"(simulated {self.clock.now().isoformat()})")
            time.sleep(0.05)  # leave the skip clock quiet periods to jump in

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        """The raw DTFx history the engine keeps for an instance (copied on the loop thread)."""
        import copy

        def _get() -> list[dict[str, Any]]:
            assert self.host.engine is not None
            inst = self.host.engine.get(instance_id)
            return copy.deepcopy(inst.history) if inst else []

        result: list[dict[str, Any]] = self.run_sync(_get)
        return result
