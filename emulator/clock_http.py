"""HTTP interface of the shared virtual clock (issue 14 item 11) -- mounted by the Functions host
and by the ARM simulator.

PLACEHOLDER while it is being written: the signature below is the contract the host and the
simulator mount; the routes are added by the clock work (``GET /admin/clock``,
``POST /admin/clock/lease``, ``DELETE /admin/clock/lease/{id}``, ``POST /admin/clock/advance``).
"""

from __future__ import annotations

from aiohttp import web

from emulator.clock import Clock

__all__ = ["add_clock_routes"]


def add_clock_routes(app: web.Application, clock: Clock, *, prefix: str = "/admin/clock") -> None:
    """Register the clock routes on ``app`` (no-op until the clock API lands)."""
    del app, clock, prefix
