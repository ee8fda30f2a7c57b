"""ARM error responses, shaped as each resource provider sends them.

Why: the SDKs turn an error body into ``HttpResponseError.error.code`` / ``.message``; the app's
retry and gate logic keys off those codes, so the simulator must send Azure's codes in Azure's
shapes (``{"error": {"code", "message", "target"?, "details"?}}`` for Compute ``CloudError``,
Maintenance ``MaintenanceError`` and the ARM front door alike; see azure-arm-contracts.md §8).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ArmError", "error_body"]


def error_body(
    code: str, message: str, *, target: str | None = None, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The ``{"error": {...}}`` body shared by CloudError and MaintenanceError."""
    error: dict[str, Any] = {"code": code, "message": message}
    if target:
        error["target"] = target
    if details:
        error["details"] = details
    return {"error": error}


class ArmError(Exception):
    """An error the simulator answers with: HTTP status, stable ARM ``code`` and a clear message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, target=self.target, details=self.details)

    # -- the common cases, with Azure's codes ------------------------------------------------
    @classmethod
    def not_found(cls, resource_type: str, name: str, resource_group: str | None = None) -> ArmError:
        where = f" under resource group '{resource_group}'" if resource_group else ""
        return cls(
            404,
            "ResourceNotFound",
            f"The Resource '{resource_type}/{name}'{where} was not found. "
            "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )

    @classmethod
    def bad_request(cls, message: str, *, code: str = "InvalidRequestContent", target: str | None = None) -> ArmError:
        return cls(400, code, message, target=target)
