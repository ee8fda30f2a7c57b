"""Fakes for the activity cores' unit tests: a scripted HTTP transport and an in-memory ledger."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import requests
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse

Responder = Callable[[Any], tuple[int, dict[str, str], Any]]


class ScriptedTransport(HttpTransport):  # type: ignore[misc]
    """Answers each request with the first responder whose (method, url substring) matches.

    ``script`` is a list of ``(method, needle, responder_or_tuple)``; a tuple entry is used for
    every matching request, a list of tuples is consumed one per request. Every request is kept
    in ``requests`` so tests assert on exactly what was sent.
    """

    def __init__(self, script: list[tuple[str, str, Any]]) -> None:
        self.script = script
        self.requests: list[Any] = []

    def __enter__(self) -> ScriptedTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def open(self) -> None:
        return None

    def sleep(self, duration: float) -> None:
        """Retry back-off and LRO delays cost no real time in unit tests."""
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.requests.append(request)
        for method, needle, scripted in self.script:
            if request.method == method and needle.lower() in request.url.lower():
                answer = scripted
                if isinstance(scripted, list):
                    answer = scripted.pop(0) if len(scripted) > 1 else scripted[0]
                status, headers, body = answer(request) if callable(answer) else answer
                return _response(request, status, headers, body)
        raise AssertionError(f"unscripted request {request.method} {request.url}")


def _response(request: Any, status: int, headers: dict[str, str], body: Any) -> Any:
    raw = requests.Response()
    raw.status_code = status
    raw._content = b"" if body is None else json.dumps(body).encode()
    raw.raw = io.BytesIO(raw._content)
    raw.headers["Content-Type"] = "application/json"
    raw.headers.update(headers)
    raw.url = request.url
    return RestRequestsTransportResponse(request=request, internal_response=raw)


class FakeLedger:
    """What the activity cores use of :class:`patchrings.ledger.Ledger`, in memory: it satisfies
    :class:`patchrings.ports.LedgerStore` structurally (tests/unit/activities/test_ports.py)."""

    def __init__(self) -> None:
        self.installs: dict[tuple[str, str], dict[str, Any]] = {}
        self.rollouts: dict[str, dict[str, Any]] = {}
        self.runs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.approval_rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.vm_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.event_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.quarantine_rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.staged: dict[tuple[str, str, int, int], list[dict[str, Any]]] = {}

    def install(self, run_id: str, vm_id: str) -> dict[str, Any] | None:
        row = self.installs.get((run_id, vm_id.lower()))
        return dict(row) if row else None

    def record_install(self, run_id: str, vm_id: str, fields: Mapping[str, Any]) -> bool:
        key = (run_id, vm_id.lower())
        if key in self.installs:
            return False
        self.installs[key] = {k: v for k, v in fields.items() if v is not None}
        return True

    def update_install(self, run_id: str, vm_id: str, fields: Mapping[str, Any]) -> bool:
        self.installs.setdefault((run_id, vm_id.lower()), {}).update({k: v for k, v in fields.items() if v is not None})
        return True

    def delete_install(self, run_id: str, vm_id: str) -> None:
        self.installs.pop((run_id, vm_id.lower()), None)

    def record_rollout(self, rollout_id: str, fields: Mapping[str, Any]) -> bool:
        self.rollouts.setdefault(rollout_id, {"rolloutId": rollout_id}).update(fields)
        return True

    def rollout(self, rollout_id: str) -> dict[str, Any] | None:
        return self.rollouts.get(rollout_id)

    def record_ring_run(self, rollout_id: str, ring: str, run_id: str, fields: Mapping[str, Any]) -> bool:
        row = self.runs.setdefault((rollout_id, ring, run_id), {"rolloutId": rollout_id, "ring": ring, "runId": run_id})
        row.update(fields)
        return True

    def ring_runs(self, rollout_id: str) -> list[dict[str, Any]]:
        return [r for (rid, _, _), r in self.runs.items() if rid == rollout_id]

    def run_gates(self, run_id: str) -> list[dict[str, Any]]:
        return [r for (_, _, run), r in self.runs.items() if run.lower() == run_id.lower() and "authorised" in r]

    def record_approval(self, rollout_id: str, decision_id: str, fields: Mapping[str, Any]) -> bool:
        key = (rollout_id, decision_id)
        if key in self.approval_rows:
            return False
        self.approval_rows[key] = {**fields, "rolloutId": rollout_id, "decisionId": decision_id}
        return True

    def approvals(self, rollout_id: str) -> list[dict[str, Any]]:
        """In the order recorded, as the real ledger returns them (storage timestamps)."""
        return [r for (rid, _), r in self.approval_rows.items() if rid == rollout_id]

    def vm_results(self, rollout_id: str, ring: str) -> list[dict[str, Any]]:
        return [r for (rid, rg, _), r in self.vm_rows.items() if rid == rollout_id and rg == ring]

    def record_vm_results(self, rollout_id: str, ring: str, run_id: str,
                          results: Iterable[Mapping[str, Any]]) -> int:
        rows = list(results)
        for result in rows:
            row = self.vm_rows.setdefault((rollout_id, ring, str(result["vm"]).lower()), {})
            row.update({**result, "runId": run_id})
        return len(rows)

    def record_event(self, configuration_id: str, event_type: str, event_id: str,
                     fields: Mapping[str, Any]) -> bool:
        key = (configuration_id.lower(), event_type, event_id.lower())
        if key in self.event_rows:
            return False
        self.event_rows[key] = {**fields, "configurationId": configuration_id, "eventType": event_type,
                                "eventId": event_id}
        return True

    def record_quarantine(self, plan_name: str, entry_id: str, fields: Mapping[str, Any]) -> bool:
        key = (plan_name.lower(), entry_id)
        if key in self.quarantine_rows:
            return False
        self.quarantine_rows[key] = dict(fields)
        return True

    def quarantine(self, plan_name: str, entry_id: str) -> dict[str, Any] | None:
        row = self.quarantine_rows.get((plan_name.lower(), entry_id))
        return dict(row) if row is not None else None

    def quarantines(self, plan_name: str) -> list[dict[str, Any]]:
        rows = [dict(r) for (plan, _), r in self.quarantine_rows.items() if plan == plan_name.lower()]
        return sorted(rows, key=lambda r: (str(r.get("at") or ""), str(r.get("id") or "")))

    def release_quarantine(self, plan_name: str, entry_id: str, *, by: str, at: str | None,
                           reason: str | None = None) -> dict[str, Any] | None:
        row = self.quarantine_rows.get((plan_name.lower(), entry_id))
        if row is None:
            return None
        if not row.get("released"):
            row.update({k: v for k, v in {"released": True, "releasedBy": by, "releasedAt": at,
                                          "releaseReason": reason}.items() if v is not None})
        return dict(row)

    def staged_results(self, run_id: str, plan_hash: str, wave: int, part: int) -> list[dict[str, Any]] | None:
        rows = self.staged.get((run_id, plan_hash, wave, part))
        return [dict(r) for r in rows] if rows is not None else None
