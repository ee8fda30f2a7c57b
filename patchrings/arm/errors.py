"""Turn SDK exceptions into the JSON-safe ``error`` dicts activities return.

Why: activity outputs cross the durable boundary as JSON, and the orchestrator decides on
``code`` and ``retryable`` -- never on exception types it cannot see.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

__all__ = ["error_info", "is_transient", "retry_after_seconds", "status_of"]

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an SDK error, if it has one."""
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """True for throttling, server errors and connection failures (worth retrying later)."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    status = status_of(exc)
    return status in _TRANSIENT_STATUS


def error_info(exc: BaseException, *, code: str | None = None) -> dict[str, Any]:
    """``{"code", "message", "status", "retryable"}`` for any exception (ARM code when known)."""
    arm_code = None
    message = str(exc)
    if isinstance(exc, HttpResponseError):
        error = getattr(exc, "error", None)
        arm_code = getattr(error, "code", None)
        arm_message = getattr(error, "message", None)
        if arm_message:
            message = str(arm_message)
    elif isinstance(exc, AzureError):
        message = exc.message or message
    status = status_of(exc)
    return {
        "code": code or arm_code or type(exc).__name__,
        "message": message.splitlines()[0][:1000] if message else type(exc).__name__,
        "status": status,
        "retryable": is_transient(exc),
    }


# The longest Retry-After honoured (a broken header must not park a caller for hours).
MAX_RETRY_AFTER_SECONDS = 600


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a 429/503 asks the caller to wait: ``retry-after-ms`` / ``x-ms-retry-after-ms`` or
    ``Retry-After`` (delta-seconds; an HTTP date is ignored), capped; None when absent or bad."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            seconds = float(value.strip()) / scale
        except ValueError:
            continue
        if seconds >= 0:
            return min(seconds, float(MAX_RETRY_AFTER_SECONDS))
    return None
