"""Plan validation: every error names its field and says what is allowed; valid plans round-trip."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

import pytest

from patchrings.domain.plan import load_plan, load_plan_file, validate_plan
from patchrings.errors import NotFound, PlanInvalid

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
DEFAULT = REPO / "plans" / "default.json"
MC1 = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-patching/providers/"
    "Microsoft.Maintenance/maintenanceConfigurations/mc-ring1"
)


def base() -> dict:
    return json.loads(DEFAULT.read_text())


def errors_of(doc: dict) -> dict[str, str]:
    return {e["field"]: e["message"] for e in validate_plan(doc)}


def test_default_plan_loads_with_three_rings_in_order():
    plan = load_plan_file(DEFAULT)
    assert plan.ring_names == ["ring0", "ring1", "ring2"]
    r0, r1, r2 = plan.rings
    assert (r0.patching, r0.open_mode, r0.members.tag.value) == ("direct", "none", "ring0")
    assert (r1.patching, r1.open_mode, r1.members.tag.hold_value) == ("scheduled", "retag", "ring1-hold")
    assert (r2.patching, r2.open_mode) == ("scheduled", "enableConfiguration")
    assert r1.approval.required and "alice@contoso.com" in r1.approval.approvers
    assert r1.approval.timeout == timedelta(days=1) and r1.approval.on_timeout == "reject"
    assert not r0.approval.required
    assert plan.promotion.t40_margin == timedelta(minutes=5)


def test_default_plan_configurations_match_the_sample_scenario_ids():
    plan = load_plan_file(DEFAULT)
    for ring, mc in (("ring1", "mc-ring1"), ("ring2", "mc-ring2")):
        cid = plan.ring(ring).configuration_id
        assert cid.split("/")[2] == "00000000-0000-0000-0000-000000000001"
        assert cid.split("/")[4] == "rg-patching"
        assert cid.endswith("/" + mc)


def test_ring_overrides_merge_over_defaults():
    plan = load_plan_file(DEFAULT)
    r0, r1 = plan.ring("ring0"), plan.ring("ring1")
    assert r0.rate.to_dict() == {"maxConcurrency": 2, "maxErrors": 0}
    assert r1.rate.to_dict() == {"maxConcurrency": "50%", "maxErrors": 0}  # from defaults
    assert r0.health.wait == timedelta(minutes=5)
    assert r0.install["rebootSetting"] == "IfRequired"


def test_deep_merge_keeps_default_keys_a_ring_does_not_override():
    doc = base()
    doc["rings"][0]["health"] = {"phases": {"waitDuration": "PT1M"}}
    plan = load_plan(doc)
    h = plan.ring("ring0").health
    assert h.wait == timedelta(minutes=1)
    assert h.elastic == timedelta(minutes=30)  # kept from defaults


def test_to_dict_round_trips_and_hash_is_stable():
    plan = load_plan_file(DEFAULT)
    d = plan.to_dict()
    assert json.loads(json.dumps(d)) == d  # JSON-safe
    again = load_plan(d)
    assert again == plan
    assert again.hash == plan.hash == d["hash"]
    assert len(plan.hash) == 16


def test_hash_changes_with_content():
    doc = base()
    doc["rings"][0]["rate"]["maxConcurrency"] = 3
    assert load_plan(doc).hash != load_plan(base()).hash


def test_lookup_helpers():
    plan = load_plan_file(DEFAULT)
    assert plan.ring("RING1").name == "ring1"
    assert plan.next_ring("ring0").name == "ring1"
    assert plan.next_ring("ring2") is None
    assert plan.previous_ring("ring1").name == "ring0"
    upper = MC1.upper()
    assert plan.ring_for_configuration(upper).name == "ring1"
    assert plan.ring_for_configuration(MC1 + "/") .name == "ring1"
    assert plan.ring_for_configuration(MC1.replace("mc-ring1", "mc-other")) is None
    with pytest.raises(NotFound) as exc:
        plan.ring("ring9")
    assert "ring0, ring1, ring2" in exc.value.message


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [
        (lambda d: d["rings"][1]["approval"].update(timeout="1 day"), "rings[1].approval.timeout",
         "ISO-8601 duration such as PT30M"),
        (lambda d: d["rings"][0]["rate"].update(maxConcurrency="0%"), "rings[0].rate.maxConcurrency",
         "percentage 1-100%"),
        (lambda d: d["rings"][0]["rate"].update(maxConcurrency="150%"), "rings[0].rate.maxConcurrency",
         "percentage 1-100%"),
        (lambda d: d["rings"][0]["rate"].update(maxErrors=-1), "rings[0].rate.maxErrors", "count >= 0"),
        (lambda d: d["rings"][0].update(patching="manual"), "rings[0].patching",
         "must be one of: direct, scheduled"),
        (lambda d: d["rings"][0].update(colour="red"), "rings[0].colour", "unknown field"),
        (lambda d: d["rings"][0].pop("members"), "rings[0].members", "is required"),
        (lambda d: d.update(version=2), "version", "must be 1"),
        (lambda d: d["rings"][2]["approval"].update(onTimeout="escalate"), "rings[2].approval.onTimeout",
         "reject, approve"),
        (lambda d: d["rings"][1]["members"].update(maintenanceConfigurationId="mc-ring1"),
         "rings[1].members.maintenanceConfigurationId", "maintenance configuration resource id"),
        (lambda d: d["defaults"]["install"].update(rebootSetting="Sometimes"), "defaults.install.rebootSetting",
         "IfRequired"),
        (lambda d: d["rings"][0].update(name="ring 0"), "rings[0].name", "letters, digits"),
        (lambda d: d["defaults"]["health"]["checks"].update(powerState="yes"),
         "defaults.health.checks.powerState", "true or false"),
        (lambda d: d.update(rings=[]), "rings", "at least 1"),
    ],
)
def test_schema_errors_name_the_field_and_what_is_allowed(mutate, field, fragment):
    doc = base()
    mutate(doc)
    errs = errors_of(doc)
    assert field in errs, errs
    assert fragment in errs[field]


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [
        (lambda d: d["rings"][2].update(name="RING1"), "rings[2].name", "duplicate ring name"),
        (lambda d: d["rings"][1]["members"].pop("maintenanceConfigurationId"),
         "rings[1].members.maintenanceConfigurationId", "required for a scheduled ring"),
        (lambda d: d["rings"][1]["members"]["tag"].pop("holdValue"), "rings[1].members.tag.holdValue",
         "required when open.mode is retag"),
        (lambda d: d["rings"][1]["members"]["tag"].update(holdValue="ring1"), "rings[1].members.tag.holdValue",
         "must differ"),
        (lambda d: d["rings"][1]["members"].pop("tag"), "rings[1].members.tag", "required when open.mode is retag"),
        (lambda d: d["rings"][1]["approval"].update(approvers=[]), "rings[1].approval.approvers",
         "at least one approver"),
        (lambda d: d["rings"][1]["approval"].update(approvers=["a@x.com", "A@X.com"]),
         "rings[1].approval.approvers", "same approver twice"),
        (lambda d: d["rings"][2]["members"].update(maintenanceConfigurationId=MC1),
         "rings[2].members.maintenanceConfigurationId", "already used by rings[1]"),
        (lambda d: d["rings"][0].update(open={"mode": "retag"}), "rings[0].open.mode",
         "only applies to scheduled rings"),
        (lambda d: d["rings"][0].update(members={}), "rings[0].members", "needs a tag selector"),
        (lambda d: d["defaults"]["health"].update(probes=[{"url": "https://{host}/health"}]),
         "defaults.health.probes[0].url", "{vmName}"),
        (lambda d: d["defaults"]["health"].update(probes=[{"url": "https://{vmName}/h", "bodyPattern": "("}]),
         "defaults.health.probes[0].bodyPattern", "not a valid regular expression"),
        (lambda d: d["defaults"]["health"]["phases"].update(pollInterval="PT0S"),
         "defaults.health.phases.pollInterval", "longer than zero"),
        (lambda d: d["defaults"]["install"].update(maximumDuration="PT5H"), "defaults.install.maximumDuration",
         "PT4H"),
        (lambda d: d["promotion"].update(cancelMargin="PT45M"), "promotion.cancelMargin", "at most PT30M"),
    ],
)
def test_semantic_errors_name_the_field(mutate, field, fragment):
    doc = base()
    mutate(doc)
    errs = errors_of(doc)
    assert field in errs, errs
    assert fragment in errs[field]


def test_all_errors_are_reported_at_once_sorted_by_field():
    doc = base()
    doc["rings"][0]["rate"]["maxConcurrency"] = "0%"
    doc["rings"][1]["approval"]["timeout"] = "soon"
    doc["rings"][2]["patching"] = "later"
    with pytest.raises(PlanInvalid) as exc:
        load_plan(doc, source="x.json")
    fields = [e["field"] for e in exc.value.errors]
    assert fields == sorted(fields)
    assert len(fields) == 3
    body = exc.value.to_dict()["error"]
    assert body["code"] == "PlanInvalid" and len(body["details"]) == 3
    assert exc.value.lines()[0].startswith("rings[0].rate.maxConcurrency: ")


def test_maintenance_api_reboot_setting_is_normalised():
    doc = base()
    doc["defaults"]["install"]["rebootSetting"] = "RebootIfRequired"
    doc["rings"][0]["install"] = {"rebootSetting": "NeverReboot"}
    plan = load_plan(doc)
    assert plan.ring("ring0").install["rebootSetting"] == "Never"
    assert plan.ring("ring1").install["rebootSetting"] == "IfRequired"


def test_ring_approval_block_replaces_default_block():
    doc = base()
    doc["defaults"]["approval"] = {"mode": "manual", "approvers": ["ops@contoso.com"], "timeout": "PT4H"}
    doc["rings"][1].pop("approval")
    plan = load_plan(doc)
    assert plan.ring("ring1").approval.approvers == ("ops@contoso.com",)
    assert plan.ring("ring1").approval.timeout == timedelta(hours=4)
    assert not plan.ring("ring0").approval.required  # ring0 says none explicitly


def test_defaults_approval_error_is_reported_on_defaults():
    doc = base()
    doc["defaults"]["approval"] = {"mode": "manual"}
    doc["rings"][1].pop("approval")
    assert "defaults.approval.approvers" in errors_of(doc)


def test_minimal_plan_gets_builtin_defaults():
    plan = load_plan({"version": 1, "name": "mini", "rings": [
        {"name": "r0", "members": {"tag": {"name": "ring", "value": "0"}}, "patching": "direct"}]})
    r0 = plan.ring("r0")
    assert r0.rate.concurrency(8) == 2  # 25%
    assert r0.rate.error_budget(8) == 0
    assert r0.health.healthy_state == timedelta(minutes=15)
    assert r0.install["windowsParameters"]["classificationsToInclude"] == ["Critical", "Security"]
    assert r0.open_mode == "none" and not r0.tolerate_errors


def test_load_plan_file_reports_bad_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1,')
    with pytest.raises(PlanInvalid) as exc:
        load_plan_file(bad)
    assert "not valid JSON" in exc.value.errors[0]["message"]
    with pytest.raises(PlanInvalid) as exc2:
        load_plan_file(tmp_path / "missing.json")
    assert "cannot read plan file" in exc2.value.errors[0]["message"]


def test_non_object_plan_is_refused():
    with pytest.raises(PlanInvalid):
        load_plan([1, 2])  # type: ignore[arg-type]


def test_plan_dict_is_not_mutated_by_loading():
    doc = base()
    snapshot = copy.deepcopy(doc)
    load_plan(doc)
    assert doc == snapshot


@pytest.mark.parametrize("path", sorted((REPO / "plans").rglob("*.json")), ids=lambda p: p.name)
def test_every_shipped_plan_is_valid(path):
    assert load_plan_file(path).rings


def test_first_ring_must_be_direct():
    doc = base()
    doc["rings"] = doc["rings"][1:]
    errs = errors_of(doc)
    assert "must be direct for the first ring" in errs["rings[0].patching"]


def test_sample_fleet_plan_matches_the_simulator_sample_scenario():
    import yaml

    scenario = REPO / "emulator" / "arm" / "scenarios" / "sample.yaml"
    if not scenario.exists():
        pytest.skip("simulator sample scenario not present")
    doc = yaml.safe_load(scenario.read_text())
    sub = doc["subscriptions"][0]
    configs = {
        f"/subscriptions/{sub['id']}/resourceGroups/{rg['name']}/providers/Microsoft.Maintenance/"
        f"maintenanceConfigurations/{mc['name']}".lower()
        for rg in sub["resourceGroups"]
        for mc in rg.get("maintenanceConfigurations", [])
    }
    plan = load_plan_file(REPO / "plans" / "examples" / "sample-fleet.json")
    for ring in plan.rings:
        assert ring.configuration_id.lower() in configs, ring.name


def test_allow_uncovered_os_defaults_false_and_round_trips_without_changing_other_hashes() -> None:
    raw = json.loads(DEFAULT.read_text())
    plain = load_plan(copy.deepcopy(raw))
    assert all(not r.allow_uncovered_os for r in plain.rings)
    assert all("allowUncoveredOs" not in r.to_dict()["gate"] for r in plain.rings)
    allowed = copy.deepcopy(raw)
    allowed["rings"][1]["gate"] = {"allowUncoveredOs": True}
    plan = load_plan(allowed)
    assert plan.rings[1].allow_uncovered_os and plan.rings[1].to_dict()["gate"]["allowUncoveredOs"] is True
    assert load_plan(plan.to_dict()) == plan and plan.hash != plain.hash
    bad = copy.deepcopy(raw)
    bad["rings"][1]["gate"] = {"allowUncoveredOs": "yes"}
    assert any("allowUncoveredOs" in e["field"] for e in validate_plan(bad))


def test_from_resolved_builds_the_same_plan_without_validating(monkeypatch):
    from patchrings.domain import plan as plan_module
    from patchrings.domain.plan import Plan

    for path in [DEFAULT, *sorted((REPO / "plans" / "examples").glob("*.json"))]:
        loaded = load_plan_file(path)
        resolved = loaded.to_dict()

        def no_validation(doc):
            raise AssertionError("from_resolved must not validate again")

        monkeypatch.setattr(plan_module, "validate_plan", no_validation)
        again = Plan.from_resolved(resolved)
        monkeypatch.undo()
        assert again == loaded and again.to_dict() == resolved
        for ring in again:
            nxt, prev = again.next_ring(ring.name), again.previous_ring(ring.name)
            assert (nxt.name if nxt else None) == (again.ring_names[ring.index + 1]
                                                   if ring.index + 1 < len(again.rings) else None)
            assert (prev.name if prev else None) == (again.ring_names[ring.index - 1] if ring.index else None)
    with pytest.raises(PlanInvalid):
        Plan.from_dict({"version": 1, "name": "x", "rings": []})  # from_dict still validates


def test_ring_from_dict_round_trips_a_ring_spec():
    from patchrings.domain.plan import Ring

    for path in [DEFAULT, *sorted((REPO / "plans" / "examples").glob("*.json"))]:
        for ring in load_plan_file(path):
            spec = ring.to_dict()
            assert Ring.from_dict(spec, ring.index) == ring
            assert Ring.from_dict(spec).index == -1 and Ring.from_dict(spec).to_dict() == spec
    short = Ring.from_dict({"name": "r", "patching": "scheduled", "open": "retag",
                            "members": {"tag": {"name": "ring", "value": "1", "holdValue": "hold"}}})
    assert short.open_mode == "retag" and short.scheduled and short.members.tag is not None


def test_quarantine_on_bad_manifest_defaults_to_exclude_and_round_trips_without_changing_other_hashes() -> None:
    from patchrings.domain.plan import plan_weakenings

    raw = base()
    plain = load_plan(copy.deepcopy(raw))
    assert not plain.quarantine.wait and "quarantine" not in plain.to_dict()
    assert load_plan({**copy.deepcopy(raw), "quarantine": {"onBadManifest": "exclude"}}).hash == plain.hash
    waiting = load_plan({**copy.deepcopy(raw), "quarantine": {"onBadManifest": "wait", "timeout": "PT8H"}})
    assert waiting.quarantine.wait and waiting.to_dict()["quarantine"] == {"onBadManifest": "wait", "timeout": "PT8H"}
    assert load_plan(waiting.to_dict()) == waiting and waiting.hash != plain.hash
    # who decides: the first manual ring's approvers, the plan's timeout, always rejecting
    policy = waiting.quarantine_approval()
    first_manual = next(r for r in waiting.rings if r.approval.required)
    assert policy is not None and policy.approvers == first_manual.approval.approvers
    assert policy.timeout == timedelta(hours=8) and policy.on_timeout == "reject"
    assert load_plan({**copy.deepcopy(raw), "quarantine": {"onBadManifest": "wait"}}).quarantine_approval().timeout \
        == first_manual.approval.timeout  # type: ignore[union-attr]
    # an inline plan keeps the deployed choice (either way)
    assert [p["field"] for p in plan_weakenings(plain, waiting)] == ["plan.quarantine"]
    assert [p["field"] for p in plan_weakenings(waiting, plain)] == ["plan.quarantine"]


@pytest.mark.parametrize("quarantine, field, fragment", [
    ({"onBadManifest": "later"}, "quarantine.onBadManifest", "must be one of: exclude"),
    ({"onBadManifest": "wait", "when": 1}, "quarantine.when", "unknown field; allowed here: onBadManifest, timeout"),
    ({"onBadManifest": "wait", "timeout": "soon"}, "quarantine.timeout", "ISO-8601 duration"),
    ({"onBadManifest": "wait", "timeout": "PT0S"}, "quarantine.timeout", "longer than zero"),
    ("wait", "quarantine", "must be an object"),
])
def test_quarantine_errors_name_the_field(quarantine: object, field: str, fragment: str) -> None:
    errors = errors_of({**base(), "quarantine": quarantine})
    assert fragment in errors.get(field, ""), errors


def test_quarantine_wait_needs_a_ring_with_manual_approval() -> None:
    doc = base()
    for ring in doc["rings"]:
        ring.pop("approval", None)
    doc.setdefault("defaults", {})["approval"] = {"mode": "none"}
    assert errors_of(doc) == {}
    doc["quarantine"] = {"onBadManifest": "wait"}
    assert "no ring takes manual approval" in errors_of(doc)["quarantine.onBadManifest"]
