"""A Resource Graph ``resources`` table for unit tests: rows shaped as Azure publishes them, the
query evaluated by the simulator's KQL engine (``emulator.arm.kql``, pure: the same compiler the
ARM simulator runs), ``$top`` / ``$skipToken`` paging and the per-principal quota with its headers.

Used two ways: ``send`` is a :data:`patchrings.arm.resource_graph.Send` (activity cores take it
directly), ``responder`` answers the SDK's POST through ``tests.unit.app.fakes.ScriptedTransport``.
Not a mock of the app's code: the queries the app writes are compiled and run, so a query that
KQL rejects, or that filters out a member, fails the test.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from emulator.arm.kql import compile_query, to_json_value

COLUMNS = ["id", "name", "type", "tenantId", "kind", "location", "resourceGroup", "subscriptionId", "managedBy",
           "sku", "plan", "properties", "tags", "identity", "zones", "extendedLocation"]
_DISPLAY = {"running": "VM running", "stopped": "VM stopped", "deallocated": "VM deallocated"}


def arg_row(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The ``resources`` row of a VM / Arc machine GET body: standard columns, ``type`` and
    ``resourceGroup`` lower-case, ``properties`` the GET's, plus (VMs) the power state under
    ``properties.extended.instanceView.powerState`` (and no ``instanceView``, as in Azure)."""
    rid = str(resource["id"])
    parts = rid.split("/")
    props = copy.deepcopy(dict(resource.get("properties") or {}))
    view = props.pop("instanceView", None)
    kind = "microsoft.hybridcompute/machines" if "/microsoft.hybridcompute/" in rid.lower() \
        else "microsoft.compute/virtualmachines"
    if kind.endswith("virtualmachines"):
        code = next((s["code"] for s in (view or {}).get("statuses") or []
                     if str(s.get("code", "")).lower().startswith("powerstate/")), None)
        if code:
            state = code.split("/", 1)[1]
            props["extended"] = {"instanceView": {"powerState": {
                "code": code, "level": "Info", "displayStatus": _DISPLAY.get(state, state)}}}
    return {"id": rid, "name": resource.get("name") or parts[-1], "type": kind, "tenantId": "t", "kind": "",
            "location": resource.get("location"), "resourceGroup": parts[4].lower(), "subscriptionId": parts[2],
            "managedBy": "", "sku": None, "plan": None, "properties": props, "tags": resource.get("tags") or {},
            "identity": None, "zones": resource.get("zones"), "extendedLocation": None}


class Throttled(Exception):
    """What the SDK raises for a 429 without Retry-After (it does not retry one)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__("RateLimiting")
        self.status_code = 429
        self.response = type("Response", (), {"headers": dict(headers), "status_code": 429})()


class FakeGraph:
    """The ``resources`` table over ``resources`` (GET bodies), paged at ``$top``=1000.

    ``quota`` queries per ``window`` seconds of ``clock`` (None: no quota); beyond it a query is
    answered 429 (``Throttled``) without Retry-After. ``queries`` keeps every query text sent.
    """

    def __init__(self, resources: Iterable[Mapping[str, Any]] = (), *, quota: int | None = None,
                 window: float = 5.0, clock: Callable[[], float] | None = None, page: int = 1000) -> None:
        self.rows = [arg_row(r) for r in resources]
        self.quota = quota
        self.window = window
        self.clock = clock or (lambda: 0.0)
        self.page = page
        self.queries: list[str] = []
        self.throttled = 0
        self._window_start: float | None = None
        self._used = 0

    def _quota_headers(self) -> dict[str, str]:
        now = self.clock()
        if self._window_start is None or now >= self._window_start + self.window:
            self._window_start, self._used = now, 0
        left = self._window_start + self.window - now
        remaining = max((self.quota if self.quota is not None else 15) - self._used, 0)
        return {"x-ms-user-quota-remaining": str(remaining),
                "x-ms-user-quota-resets-after": f"00:00:{left:06.3f}"}

    def send(self, query: str, subscriptions: list[str], token: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        headers = self._quota_headers()
        if self.quota is not None and self._used >= self.quota:
            self.throttled += 1
            raise Throttled(headers)
        self._used += 1
        headers = self._quota_headers()
        self.queries.append(query)
        compiled = compile_query(query, {"resources": COLUMNS})
        wanted = {s.lower() for s in subscriptions}
        rows = sorted((r for r in self.rows if not wanted or r["subscriptionId"].lower() in wanted),
                      key=lambda r: str(r["id"]).lower())
        result = compiled.run(rows, datetime(2026, 11, 16, 6, 0, tzinfo=UTC))
        offset = int(token or 0)
        chunk = result[offset:offset + self.page]
        answer: dict[str, Any] = {"totalRecords": len(result), "count": len(chunk), "resultTruncated": "false",
                                  "facets": [], "data": [{c: to_json_value(r.get(c)) for c in compiled.columns}
                                                         for r in chunk]}
        if offset + len(chunk) < len(result):
            answer["$skipToken"] = str(offset + len(chunk))
        return answer, headers

    def responder(self, request: Any) -> tuple[int, dict[str, str], Any]:
        """The SDK's ``POST …/providers/Microsoft.ResourceGraph/resources`` (ScriptedTransport)."""
        raw = request.body
        body = json.loads(raw.getvalue() if hasattr(raw, "getvalue") else raw)
        options = body.get("options") or {}
        try:
            page, headers = self.send(body["query"], list(body.get("subscriptions") or []), options.get("$skipToken"))
        except Throttled as exc:
            return 429, dict(exc.response.headers), {"error": {"code": "RateLimiting", "message": "throttled"}}
        return 200, headers, page
