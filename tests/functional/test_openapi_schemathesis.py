"""Schemathesis against the running app on the local platform: the API does what its document says.

The real app (``function_app.py``) runs on the local Functions host with the ARM simulator and
Azurite (skip clock, held: time does not move, so a rollout a generated request starts stays
put). Schemathesis generates requests for every operation of ``triggers/openapi.json``, valid
ones and invalid ones (negative mode: wrong types, missing fields, ids outside the pattern),
derandomized and bounded so it finishes in well under 90 s on 2 cores; the function key is
injected into every request. Each response must:

* not be a 5xx (``not_a_server_error``);
* have a documented status code, a documented Content-Type and documented headers, and a body
  that matches the documented schema (``status_code_conformance``, ``content_type_conformance``,
  ``response_headers_conformance``, ``response_schema_conformance``).

Not enabled: schemathesis's ``negative_data_rejection`` / ``positive_data_acceptance``, which
assume a request that matches the document is accepted; here a valid decision for a rollout that
does not exist is rightly a 404, and a body the document cannot constrain (a plan) is a 400.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emulator.platform import LocalPlatform, http_call
from tests.conftest import DEFAULT_START, SAMPLE_SCENARIO

# schemathesis 4.32's own strategies draw from `random` (a HypothesisDeprecationWarning, not ours).
pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = json.loads((REPO / "triggers" / "openapi.json").read_text())
EXAMPLES = 50
APPROVER = "X-PatchRings-Approver"
INITIATOR = "dave@contoso.com"  # per operation and generation mode; ten operations
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]

SEEN: defaultdict[str, Counter[int]] = defaultdict(Counter)
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(SAMPLE_SCENARIO, clock="skip", start=DEFAULT_START,
                             state_dir=tmp_path_factory.mktemp("schemathesis"),
                             settings={"PATCHRINGS_APPROVER_HEADER_FALLBACK": "true"})
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


def test_the_served_document_is_the_shipped_one(app: LocalPlatform) -> None:
    result = app.api("GET", "/api/openapi.json")
    assert result.status == 200 and result.headers.get("Content-Type", "").startswith("application/json")
    assert result.json["servers"] == [{"url": app.base_url, "description": "this Function App"}]
    assert {**result.json, "servers": DOCUMENT["servers"]} == DOCUMENT
    assert http_call("GET", f"{app.base_url}/api/openapi.json").status == 401


@pytest.fixture(scope="module")
def live(app: LocalPlatform) -> str:
    """A running rollout (not a dry run): a share of the generated requests target it."""
    started = app.api("POST", "/api/rollouts", {"reason": "schemathesis"}, headers={APPROVER: INITIATOR})
    assert started.status == 202, started
    return str(started.json["id"])


def aim_at_live_rollout(case: Any, live_id: str) -> None:
    """Every third request with an ``id`` targets the live rollout, as a plan approver, the initiator or
    nobody in turn, so halt / resume / decide reach their 202 and 409 answers, not only 400 and 404.
    Deterministic: chosen by a hash of what was generated."""
    params = case.path_parameters or {}
    if "id" not in params:
        return
    pick = zlib.crc32(json.dumps([case.method, params, case.body], default=str, sort_keys=True).encode())
    if pick % 3:
        return
    case.path_parameters = {**params, "id": live_id}
    who = (None, INITIATOR, "alice@contoso.com", "carol@contoso.com")[(pick // 3) % 4]
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != APPROVER.lower()}
    case.headers = {**headers, APPROVER: who} if who else headers


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: Any, app: LocalPlatform, live: str) -> None:
    aim_at_live_rollout(case, live)
    response = case.call_and_validate(base_url=app.base_url, headers={"x-functions-key": app.function_key},
                                      checks=CHECKS, timeout=60)
    SEEN[f"{case.method.upper()} {case.path}"][response.status_code] += 1



def test_every_operation_was_exercised_with_answers_of_each_kind() -> None:
    """Guards the run itself: every operation got generated requests, and the answers cover the
    documented outcomes a request without a live rollout can reach (runs after the generated tests)."""
    if not SEEN:
        pytest.skip("run together with test_every_operation_answers_as_documented")
    for path, item in DOCUMENT["paths"].items():
        for method in item:
            if method in ("get", "post", "options"):
                assert sum(SEEN[f"{method.upper()} {path}"].values()) >= EXAMPLES, (method, path, SEEN)
    for operation, counts in sorted(SEEN.items()):  # shown with -s / on failure
        print(f"{operation}: {dict(sorted(counts.items()))}")
    statuses = Counter[int]()
    for counts in SEEN.values():
        statuses.update(counts)
    assert {200, 202, 400, 401, 403, 404, 409} <= set(statuses), statuses
    assert SEEN["POST /api/plans/validate"][200] >= 1 and SEEN["POST /api/rollouts"][202] >= 1, SEEN
    assert SEEN["POST /api/rollouts/{id}/halt"][202] >= 1 and SEEN["GET /api/rollouts/{id}"][200] >= 1, SEEN
