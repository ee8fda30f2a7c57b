"""Scenario loading/validation, the shipped sample fleet, and ``python -m emulator arm``."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from emulator.arm.cli import main as cli_main
from emulator.arm.scenario import ScenarioError, load_scenario
from emulator.arm.server import ArmSimulator
from emulator.clock import make_clock
from tests.emulator.arm.conftest import base_scenario

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "emulator" / "arm" / "scenarios" / "sample.yaml"


def test_schema_errors_name_the_location():
    bad = base_scenario()
    bad["subscriptions"][0]["resourceGroups"][0]["vms"][1]["os"] = "Win"
    bad["subscriptions"][0]["resourceGroups"][0]["vms"][0]["tagz"] = {}
    bad["faults"] = [{"type": "explode"}, {"type": "httpError", "status": 418}]
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    text = str(info.value)
    assert "subscriptions[0].resourceGroups[0].vms[1].os: 'Win' is not one of ['Windows', 'Linux']" in text
    assert "subscriptions[0].resourceGroups[0].vms[0]: Additional properties are not allowed ('tagz'" in text
    assert "faults[0]: unknown fault type 'explode'" in text
    assert "faults[1]" in text


def test_variables_and_files(tmp_path):
    scenario = {
        "subscriptions": [{"id": "${SUB:-s1}"}],
        "eventSubscriptions": [
            {"name": "x", "endpoint": "${FUNCTIONS_HOST}/runtime/webhooks/eventgrid?code=${FUNCTIONS_KEY:-}"}
        ],
    }
    loaded = load_scenario(scenario, {"FUNCTIONS_HOST": "http://127.0.0.1:7071"})
    assert loaded["subscriptions"][0]["id"] == "s1"
    assert loaded["eventSubscriptions"][0]["endpoint"] == "http://127.0.0.1:7071/runtime/webhooks/eventgrid?code="
    with pytest.raises(ScenarioError, match=r"variable \$\{FUNCTIONS_HOST\} is not defined"):
        load_scenario(scenario, {})
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"subscriptions": []}))
    with pytest.raises(ScenarioError, match="should be non-empty"):
        load_scenario(path)
    path.write_text("{not json")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_scenario(path)


def test_semantic_errors(tmp_path):
    dup = base_scenario()
    dup["subscriptions"][0]["resourceGroups"][1]["vms"] = [{"name": "WIN-01", "os": "Windows"}]
    with pytest.raises(ScenarioError, match="used twice"):
        ArmSimulator(dup, make_clock("real"), state_dir=tmp_path)
    unknown = base_scenario()
    unknown["subscriptions"][0]["dynamicScopes"][0]["maintenanceConfiguration"] = "mc-nope"
    with pytest.raises(ScenarioError, match="unknown maintenance configuration 'mc-nope'"):
        ArmSimulator(unknown, make_clock("real"), state_dir=tmp_path)
    window = base_scenario()
    window["subscriptions"][0]["resourceGroups"][1]["maintenanceConfigurations"][0]["window"]["recurEvery"] = "Often"
    with pytest.raises(ScenarioError, match=r"mc-ring0.*recurEvery"):
        ArmSimulator(window, make_clock("real"), state_dir=tmp_path)


def test_sample_fleet_one_week(arm_factory, receiver):
    running = arm_factory(
        SAMPLE, variables={"FUNCTIONS_HOST": receiver.url.replace("/events", ""), "EVENTGRID_KEY": "abc"}
    )
    sim = running.sim
    assert len(sim.fleet.vms) == 29
    rings = {}
    for vm in sim.fleet.vms.values():
        rings.setdefault(vm.tags["patchRing"], []).append(vm.name)
    assert set(rings) == {"ring0", "ring1", "ring2", "hold"}
    assert {vm.os for vm in sim.fleet.vms.values()} == {"Windows", "Linux"}
    assert {vm.zone for vm in sim.fleet.vms.values()} == {"1", "2", "3", None}
    assert {vm.name for vm in sim.fleet.vms.values() if vm.availability_set} == {"sql-01", "sql-02", "sql-03", "sql-04"}
    endpoint = sim.events.subscriptions[0].endpoint
    assert endpoint.endswith("/runtime/webhooks/eventgrid?functionName=on_maintenance_event&code=abc")
    running.advance_to(datetime(2026, 11, 23, 6, 0, tzinfo=UTC))
    by_config = {r.config_name: r for r in sim.runs}
    assert set(by_config) == {"mc-ring0", "mc-ring1", "mc-ring2"}
    # W. Europe 21:00 is 20:00Z in November
    assert by_config["mc-ring0"].start == datetime(2026, 11, 17, 20, 0, tzinfo=UTC)
    assert by_config["mc-ring2"].start == datetime(2026, 11, 21, 20, 0, tzinfo=UTC)
    for ring, config in (("ring0", "mc-ring0"), ("ring1", "mc-ring1"), ("ring2", "mc-ring2")):
        assert sorted(v.rsplit("/", 1)[1] for v in by_config[config].vm_ids) == sorted(rings[ring])
    for name in rings["hold"]:
        assert sim.vm(name).install_count == 0
    # the SQL out-of-band update leaves the SQL servers unhealthy after it lands
    assert sim.vm("sql-01").health == "Unhealthy"
    assert sim.vm("web-01").health == "Healthy"


def test_fire_run_through_the_control_api(arm):
    context = ssl.create_default_context(cafile=str(arm.sim.ca_path))
    request = urllib.request.Request(
        arm.sim.endpoint + "/_sim/maintenanceConfigurations/mc-ring0/fire",
        data=json.dumps({"inMinutes": 45}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context) as response:
        correlation = json.loads(response.read())["correlationId"]
    assert correlation.endswith("/applyupdates/20261116064500")
    arm.advance_until(lambda: arm.sim.run(correlation) and arm.sim.run(correlation).status == "Completed")
    with urllib.request.urlopen(arm.sim.endpoint + "/_sim/runs", context=context) as response:
        runs = json.loads(response.read())
    assert runs[0]["correlationId"] == correlation and runs[0]["resultStatus"] == "Succeeded"
    assert arm.now() < datetime(2026, 11, 16, 9, 0, tzinfo=UTC) + timedelta(hours=1)


def test_cli_bad_scenario_exit_code(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("subscriptions: []\n")
    assert cli_main(["--scenario", str(path), "--state-dir", str(tmp_path)]) == 2
    assert "invalid scenario" in capsys.readouterr().err


def test_cli_serves_until_interrupted(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "arm",
            "--scenario",
            str(SAMPLE),
            "--state-dir",
            str(tmp_path),
            "--start",
            "2026-11-16T06:00:00Z",
            "--clock",
            "scale=1",
            "--var",
            "FUNCTIONS_HOST=http://127.0.0.1:9",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        lines = {}
        assert process.stdout is not None
        while "bearer token" not in lines:
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else "no output"
            key, _, value = line.partition(":")
            lines[key.strip().lower()] = value.strip()
        endpoint = lines["arm simulator endpoint"]
        config = json.loads(Path(lines["client configuration"]).read_text())
        assert config["PATCHRINGS_ARM_ENDPOINT"] == endpoint
        assert config["PATCHRINGS_ARM_CA_BUNDLE"] == lines["ca bundle"]
        context = ssl.create_default_context(cafile=lines["ca bundle"])
        with urllib.request.urlopen(endpoint + "/_sim/fleet", context=context) as response:
            fleet = json.loads(response.read())
        assert len(fleet["vms"]) == 29 and fleet["time"].startswith("2026-11-16T06:00")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


def test_timeline_scripts_vm_changes(arm_factory):
    running = arm_factory(
        base_scenario(
            timeline=[
                {"at": "2026-11-16T07:00:00Z", "vms": ["win-*"], "health": "Unhealthy", "tags": {"patchRing": None}},
                {"at": "2026-11-16T08:00:00Z", "vms": ["lin-02"], "powerState": "deallocated", "vmAgent": "NotReady"},
            ]
        )
    )
    sim = running.sim
    running.advance_to(datetime(2026, 11, 16, 7, 30, tzinfo=UTC))
    assert sim.vm("win-01").health == "Unhealthy" and sim.vm("win-02").tags == {}
    assert sim.vm("lin-01").health == "Healthy" and sim.vm("lin-02").power_state == "running"
    running.advance_to(datetime(2026, 11, 16, 8, 0, tzinfo=UTC))
    assert sim.vm("lin-02").power_state == "deallocated" and not sim.vm("lin-02").vm_agent_ready
