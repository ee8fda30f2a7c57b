"""The request/response values passed between the HTTP layer and the resource handlers.

Why: handlers stay free of aiohttp so they can be unit-tested and reasoned about as
"ARM operation in, ARM answer out"; the server turns a :class:`Reply` into an HTTP response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Call", "Reply"]


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    identity: str
    api_version: str
    base_url: str

    def require_body(self) -> dict[str, Any]:
        from emulator.arm.errors import ArmError

        if not isinstance(self.body, dict):
            raise ArmError.bad_request(
                "The request content was invalid and could not be deserialized: a JSON object body is required."
            )
        return self.body


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
