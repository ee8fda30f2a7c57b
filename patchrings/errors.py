"""The one error hierarchy of PatchRings, with stable machine-readable codes.

Every failure the app reports to a person or a caller (HTTP API, validate command, activity
results, orchestrator custom status) is a :class:`PatchRingsError`. The ``code`` is part of the
public contract: clients and tests match on it, so never rename one. ``http_status`` lets the HTTP
layer map errors without a lookup table, and ``to_dict`` gives the JSON error body
``{"error": {"code", "message", "field"?, "details"?}}`` used everywhere.
"""

from __future__ import annotations

from typing import Any


class PatchRingsError(Exception):
    """Base class: a message for people, a stable ``code`` for machines."""

    code: str = "PatchRingsError"
    http_status: int = 500

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe error body; ``field``/``details`` only when set."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class PlanInvalid(PatchRingsError):
    """The rollout plan failed validation; ``errors`` lists every ``{field, message}`` found.

    All problems are reported at once so an operator fixes a plan in one pass.
    """

    code = "PlanInvalid"
    http_status = 400

    def __init__(self, errors: list[dict[str, str]], *, source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        first = self.errors[0] if self.errors else {"field": "", "message": "invalid plan"}
        where = f" ({source})" if source else ""
        summary = f"rollout plan{where} is invalid: {len(self.errors)} error(s); first: "
        summary += f"{first.get('field') or '<root>'}: {first.get('message')}"
        super().__init__(summary, field=first.get("field") or None, details=self.errors)

    def lines(self) -> list[str]:
        """One ``field: message`` line per error, field first (the validate command's output)."""
        return [f"{e.get('field') or '<root>'}: {e.get('message')}" for e in self.errors]


class SettingsInvalid(PatchRingsError):
    """App settings are missing, unknown or malformed; raised at start so the app fails fast."""

    code = "SettingsInvalid"
    http_status = 500


class RequestInvalid(PatchRingsError):
    """An HTTP request body or parameter is malformed."""

    code = "RequestInvalid"
    http_status = 400


class NotFound(PatchRingsError):
    """A rollout, ring or other named thing does not exist."""

    code = "NotFound"
    http_status = 404


class ApprovalForbidden(PatchRingsError):
    """The caller may not decide this approval (not a listed approver, or the initiator)."""

    code = "ApprovalForbidden"
    http_status = 403


class ApprovalConflict(PatchRingsError):
    """The decision does not match what is pending (wrong ring or manifest, nothing pending)."""

    code = "ApprovalConflict"
    http_status = 409


class RolloutConflict(PatchRingsError):
    """The rollout is in a state that does not allow the request (already running, halted...)."""

    code = "RolloutConflict"
    http_status = 409


class EventRejected(PatchRingsError):
    """An incoming Event Grid delivery is malformed or not a maintenance event.

    400 because Event Grid does not retry 400s: a malformed event will never become valid.
    """

    code = "EventRejected"
    http_status = 400


__all__ = [
    "ApprovalConflict",
    "ApprovalForbidden",
    "EventRejected",
    "NotFound",
    "PatchRingsError",
    "PlanInvalid",
    "RequestInvalid",
    "RolloutConflict",
    "SettingsInvalid",
]


class ArmTargetRefused(PatchRingsError):
    """A request would leave the configured ARM endpoint (another host, scheme or port), or a
    run id is not ``<configuration id>/providers/Microsoft.Maintenance/applyUpdates/<14 digits>``.

    Nothing is sent: the app's ARM bearer token only ever goes to the configured endpoint.
    """

    code = "ArmTargetRefused"
    http_status = 400


__all__ += ["ArmTargetRefused"]


class PlanForbidden(PatchRingsError):
    """A plan sent with a request is not allowed: inline plans are off, or it would weaken the
    deployed plan (approvals, approvers, health, membership...); ``details`` lists every
    ``{field, message}``."""

    code = "PlanForbidden"
    http_status = 403


__all__ += ["PlanForbidden"]


class ResourceGraphIncomplete(PatchRingsError, RuntimeError):
    """A Resource Graph answer cannot be taken as the whole answer: a page without a ``data``
    list (or an empty / non-JSON body), ``resultTruncated`` for a query paged by ``$skipToken``,
    or fewer / more rows than the first page's ``totalRecords`` (twice in a row). The read
    failed: callers treat it as inconclusive, never as *fewer rows* (issue 11). A
    ``RuntimeError`` too, so every caller that already catches a failed read catches it."""

    code = "ResourceGraphIncomplete"
    http_status = 502


__all__ += ["ResourceGraphIncomplete"]
