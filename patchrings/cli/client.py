"""A small JSON client of the PatchRings HTTP API (stdlib only).

Why stdlib: the CLI must run wherever an operator has Python, with nothing else to install for
the function-key case. Errors come back as :class:`ApiError` carrying the API's own error body
(``{"error": {code, message, field?, details?}}``), so the CLI prints the API's message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

APPROVER_HEADER = "X-PatchRings-Approver"


class ApiError(Exception):
    """A request the API refused (status >= 400) or that never got an answer (status 0)."""

    def __init__(self, status: int, message: str, *, code: str | None = None, field: str | None = None,
                 details: Any = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.field = field
        self.details = details
        self.body = body

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        code = f"{self.code}: " if self.code else ""
        status = f"HTTP {self.status} " if self.status else ""
        return f"{status}{code}{self.message}{where}"


def normalize_base_url(url: str) -> str:
    """``https://app.azurewebsites.net`` from that URL with or without ``/api`` and a trailing ``/``."""
    text = url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    path = parts.path
    if path.lower().endswith("/api"):
        path = path[: -len("/api")]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class ApiClient:
    """Calls ``<base>/api/...`` with the function key and, when given, an Entra ID bearer token.

    ``token`` is a callable so a token is fetched only when a request is made (and refreshed by
    azure-identity's own cache); ``approver`` sends ``X-PatchRings-Approver`` (local platform only).
    """

    def __init__(self, base_url: str, *, key: str | None = None, token: Callable[[], str] | None = None,
                 approver: str | None = None, timeout: float = 60) -> None:
        self.base_url = normalize_base_url(base_url)
        self.key = key
        self.token = token
        self.approver = approver
        self.timeout = timeout

    def url(self, path: str) -> str:
        return f"{self.base_url}/api/{path.lstrip('/')}"

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "patchrings-cli"}
        if self.key:
            headers["x-functions-key"] = self.key
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token()}"
        if self.approver:
            headers[APPROVER_HEADER] = self.approver
        return headers

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer of a 2xx, else :class:`ApiError`."""
        data = None if body is None else json.dumps(body).encode()
        headers = self.headers()
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return _decode(resp.read())
        except urllib.error.HTTPError as err:
            raise _api_error(err.code, err.read()) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise ApiError(0, f"cannot reach {self.base_url}: {reason}") from None

    # ------------------------------------------------------------------ the API's operations
    def list_rollouts(self) -> Any:
        return self.request("GET", "rollouts")

    def get_rollout(self, rollout_id: str) -> Any:
        return self.request("GET", f"rollouts/{_segment(rollout_id)}")

    def start(self, *, dry_run: bool = False, plan: dict[str, Any] | None = None,
              reason: str | None = None) -> Any:
        body: dict[str, Any] = {"dryRun": dry_run}
        if plan is not None:
            body["plan"] = plan
        if reason:
            body["reason"] = reason
        return self.request("POST", "rollouts", body)

    def decide(self, rollout_id: str, ring: str, verdict: str, manifest_hash: str,
               comment: str | None = None, *, release_quarantine: list[str] | None = None) -> Any:
        body: dict[str, Any] = {"manifestHash": manifest_hash}
        if comment:
            body["comment"] = comment
        if release_quarantine:
            body["releaseQuarantine"] = list(release_quarantine)
        return self.request("POST", f"rollouts/{_segment(rollout_id)}/rings/{_segment(ring)}/{verdict}", body)

    def halt(self, rollout_id: str, reason: str | None = None) -> Any:
        return self.request("POST", f"rollouts/{_segment(rollout_id)}/halt", {"reason": reason} if reason else {})

    def resume(self, rollout_id: str, reason: str | None = None) -> Any:
        return self.request("POST", f"rollouts/{_segment(rollout_id)}/resume", {"reason": reason} if reason else {})


def _segment(value: str) -> str:
    """A route segment, percent-encoded (the API refuses what its id rules do not allow: 400)."""
    return urllib.parse.quote(value, safe="")


def _decode(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _api_error(status: int, raw: bytes) -> ApiError:
    body = _decode(raw)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return ApiError(status, str(error.get("message") or "request refused"), code=error.get("code"),
                        field=error.get("field"), details=error.get("details"), body=body)
    default = {401: "unauthorized: no function key or a wrong one (PATCHRINGS_API_KEY / --key), or, when App "
                    "Service authentication protects the app, no valid Entra ID token (--entra-scope)",
               403: "forbidden", 404: "not found"}.get(status, "request failed")
    text = body if isinstance(body, str) and body.strip() else default
    return ApiError(status, str(text)[:500], body=body)
