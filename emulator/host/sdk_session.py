"""One aiohttp session per event loop for the Durable SDK's client (instead of one per process).

Why: ``azure.durable_functions.models.utils.http_utils`` keeps a module-global
``ClientSession`` (and an ``asyncio.Lock``), which is bound to the loop it was created on. In
Azure each worker process has one loop, so that is fine; in this emulator several hosts (each
on its own loop thread) can live in one pytest process, and a session created on one loop
fails on another. The host swaps the SDK's private ``_get_session`` / ``_handle_request_error``
for per-loop versions when it starts; request code, headers and parsing stay the SDK's own.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import aiohttp

__all__ = ["close_loop_session", "install"]

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)
_installed = False


async def _get_session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        # same settings as the SDK's own session
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=240, sock_connect=10, sock_read=None),
            connector=aiohttp.TCPConnector(limit=30, limit_per_host=30, enable_cleanup_closed=True),
        )
        _sessions[loop] = session
    return session


async def close_loop_session() -> None:
    """Close the running loop's session (host stop; the SDK's reset-on-error hook)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None and not session.closed:
        await session.close()


def install() -> None:
    """Patch the SDK's session accessors (idempotent)."""
    global _installed
    if _installed:
        return
    from azure.durable_functions.models.utils import http_utils

    module: Any = http_utils
    module._get_session = _get_session
    module._handle_request_error = close_loop_session
    _installed = True
