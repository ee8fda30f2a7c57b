"""Error bodies and codes, and the validate-plan command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from patchrings.__main__ import main
from patchrings.errors import (
    ApprovalConflict,
    ApprovalForbidden,
    EventRejected,
    NotFound,
    PatchRingsError,
    PlanInvalid,
    RequestInvalid,
    RolloutConflict,
    SettingsInvalid,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("cls", "code", "status"),
    [(RequestInvalid, "RequestInvalid", 400), (NotFound, "NotFound", 404),
     (ApprovalForbidden, "ApprovalForbidden", 403), (ApprovalConflict, "ApprovalConflict", 409),
     (RolloutConflict, "RolloutConflict", 409), (EventRejected, "EventRejected", 400),
     (SettingsInvalid, "SettingsInvalid", 500)],
)
def test_codes_and_statuses_are_stable(cls, code, status):
    err = cls("nope", field="x", details={"k": 1})
    assert isinstance(err, PatchRingsError)
    assert (err.code, err.http_status) == (code, status)
    assert err.to_dict() == {"error": {"code": code, "message": "nope", "field": "x", "details": {"k": 1}}}
    assert cls("plain").to_dict() == {"error": {"code": code, "message": "plain"}}


def test_plan_invalid_carries_every_error():
    err = PlanInvalid([{"field": "rings[0].name", "message": "bad"}, {"field": "version", "message": "must be 1"}])
    body = err.to_dict()["error"]
    assert body["code"] == "PlanInvalid" and body["field"] == "rings[0].name"
    assert body["details"][1] == {"field": "version", "message": "must be 1"}
    assert err.lines() == ["rings[0].name: bad", "version: must be 1"]


def test_validate_plan_ok(capsys):
    assert main(["validate-plan", str(REPO / "plans" / "default.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ") and "ring0 (direct)" in out


def test_validate_plan_errors_one_per_line_field_first(tmp_path, capsys):
    doc = json.loads((REPO / "plans" / "default.json").read_text())
    doc["rings"][1]["approval"]["timeout"] = "tomorrow"
    doc["rings"][0]["rate"]["maxErrors"] = "-5%"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    assert main(["validate-plan", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "rings[0].rate.maxErrors: must be a count >= 0 such as 2 or a percentage 0-100% such as \"10%\"",
        "rings[1].approval.timeout: must be an ISO-8601 duration such as PT30M or P1D "
        "(weeks, days, hours, minutes, seconds)",
    ]


def test_module_entry_point_exit_code(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "patchrings", "validate-plan", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "name: is required" in proc.stdout and "rings: is required" in proc.stdout
