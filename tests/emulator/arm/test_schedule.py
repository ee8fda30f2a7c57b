"""The schedule engine over simulated weeks: T-40 freeze, pre/post events, cancellation, recurrence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.eventgrid import EventGridEvent
from azure.mgmt.maintenance import models as m

from emulator.arm.recurrence import occurrences, parse_window
from tests.emulator.arm.conftest import SUB, base_scenario, with_events
from tests.emulator.arm.swagger import example, validate

pytestmark = pytest.mark.emulator

MC = f"/subscriptions/{SUB}/resourcegroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations"
T0 = datetime(2026, 11, 17, 20, 0, tzinfo=UTC)  # first Tuesday run of mc-ring0
RUN = f"{MC}/mc-ring0/providers/microsoft.maintenance/applyupdates/20261117200000"


def at(minutes_before: float) -> datetime:
    return T0 - timedelta(minutes=minutes_before)


def cancel(arm, correlation_id: str):
    client = arm.maintenance()
    return client._send_request(
        HttpRequest(
            "PUT",
            correlation_id,
            params={"api-version": "2023-09-01-preview"},
            json={"properties": {"status": "Cancel"}},
        )
    )


def test_t40_freeze_pre_and_post_events(arm_factory, receiver):
    # pinned at T-35 as in the docs' example timeline (14:25 for a 15:00 run)
    scenario = with_events(base_scenario(events={"preEventLeadMinutes": 35}))
    running = arm_factory(scenario, variables={"RECEIVER": receiver.url, "KEY": "k1"})
    tags = running.resources().tags
    vm = f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines"
    running.advance_to(at(41))
    tags.begin_update_at_scope(f"{vm}/lin-02", {"operation": "Merge", "properties": {"tags": {"patchRing": "ring0"}}})
    assert running.sim.run(RUN) is None
    running.advance_to(at(39))
    run = running.sim.run(RUN)
    assert run is not None and run.status == "Pending"
    assert sorted(v.rsplit("/", 1)[1] for v in run.vm_ids) == ["lin-01", "lin-02", "win-01"]
    # a tag change after T-40 applies to the next run only
    tags.begin_update_at_scope(f"{vm}/win-02", {"operation": "Merge", "properties": {"tags": {"patchRing": "ring0"}}})
    running.advance_to(at(34))
    (pre,) = receiver.events("PreMaintenanceEvent")
    assert pre["id"] == RUN and pre["topic"] == f"{MC}/mc-ring0" and pre["subject"] == "mc-ring0"
    assert pre["eventTime"] == "2026-11-17T19:25:00Z"
    assert pre["data"] == {
        "correlationId": RUN,
        "maintenanceConfigurationId": f"{MC}/mc-ring0",
        "startDateTime": "2026-11-17T20:00:00Z",
        "endDateTime": "2026-11-17T23:00:00Z",
        "cancellationCutOffDateTime": "2026-11-17T19:50:00Z",
        "resourceSubscriptionIds": [SUB],
    }
    contract = example("eventgrid/examples/PreMaintenanceEvent.eventgrid-schema.json")[0]
    assert set(pre) == set(contract) and set(pre["data"]) == set(contract["data"])
    parsed = EventGridEvent.from_dict(pre)
    assert parsed.event_type == "Microsoft.Maintenance.PreMaintenanceEvent"
    headers = receiver.deliveries[0]["headers"]
    assert headers["aeg-event-type"] == "Notification" and headers["aeg-delivery-count"] == "0"
    assert receiver.deliveries[0]["query"] == {"functionName": "on_maintenance_event", "code": "k1"}
    running.advance_until(lambda: receiver.events("PostMaintenanceEvent"))
    (post,) = receiver.events("PostMaintenanceEvent")
    assert post["data"]["status"] == "Succeeded" and "cancellationCutOffDateTime" not in post["data"]
    contract = example("eventgrid/examples/PostMaintenanceEvent.eventgrid-schema.json")[0]
    assert set(post["data"]) == set(contract["data"])
    assert post["eventTime"] == "2026-11-17T20:40:00Z"  # CU 30 + SSU 5 + reboot 5 on the Windows VM
    assert running.sim.run(RUN).result_status == "Succeeded"
    # per-VM results through the instance view
    compute = running.compute()
    summary = compute.virtual_machines.instance_view("rg-fleet", "win-01").patch_status.last_patch_installation_summary
    assert summary.status == "Succeeded" and summary.installed_patch_count == 2
    untouched = compute.virtual_machines.instance_view("rg-fleet", "win-02").patch_status
    assert untouched.last_patch_installation_summary is None
    # next week's run picks up win-02
    running.advance_to(T0 + timedelta(days=7) - timedelta(minutes=39))
    next_run = running.sim.run(f"{MC}/mc-ring0/providers/microsoft.maintenance/applyupdates/20261124200000")
    assert "win-02" in [v.rsplit("/", 1)[1] for v in next_run.vm_ids]


def test_cancel_before_the_cutoff(arm_factory, receiver):
    running = arm_factory(with_events(base_scenario()), variables={"RECEIVER": receiver.url})
    running.advance_to(at(30))  # the pre-event is out by T-30 whatever its seeded lead
    response = cancel(running, receiver.events("PreMaintenanceEvent")[0]["data"]["correlationId"])
    assert response.status_code == 200
    body = response.json()
    assert body["properties"]["status"] == "Cancelled"
    ex = example("maintenance/examples/2025-11-01/ApplyUpdates_CreateOrUpdate_CancelMaintenance.json")
    validate("maintenance", "ApplyUpdate", body)
    assert set(body) == set(ex["responses"]["200"]["body"])
    assert body["id"].lower() == RUN.lower()
    assert cancel(running, RUN.upper().replace("APPLYUPDATES/", "applyUpdates/")).status_code == 200  # idempotent
    record = running.sim.recorder.find(method="PUT")[0]
    assert record.action == "Microsoft.Maintenance/applyUpdates/write" and record.api_version == "2023-09-01-preview"
    running.advance_until(lambda: receiver.events("PostMaintenanceEvent"))
    assert running.sim.run(RUN).status == "Cancelled"
    assert receiver.events("PostMaintenanceEvent")[0]["data"]["status"] == "Cancelled"
    assert all(vm.install_count == 0 for vm in running.sim.fleet.vms.values())
    status = running.maintenance().apply_updates.get(
        "rg-patching", "Microsoft.Maintenance", "maintenanceConfigurations", "mc-ring0", "20261117200000"
    )
    assert status.status == "Cancelled"


def test_cancel_after_the_cutoff_is_refused(arm_factory, receiver):
    running = arm_factory(with_events(base_scenario()), variables={"RECEIVER": receiver.url})
    running.advance_to(at(10) + timedelta(seconds=1))
    response = cancel(running, RUN)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "CancellationCutoffPassed"
    assert "2026-11-17T19:50:00Z" in error["message"]
    with pytest.raises(HttpResponseError):
        response.raise_for_status()
    running.advance_until(lambda: receiver.events("PostMaintenanceEvent"))
    assert running.sim.run(RUN).status == "Completed"
    assert running.sim.vm("win-01").install_count == 1


def test_cancel_a_future_run_and_unknown_runs(arm):
    assert cancel(arm, RUN).status_code == 200  # before T-40: a valid occurrence can be cancelled
    arm.advance_until(lambda: arm.sim.run(RUN) is not None and arm.sim.run(RUN).status != "Pending")
    assert arm.sim.run(RUN).status == "Cancelled"
    missing = cancel(arm, RUN.replace("20261117200000", "20261118200000"))  # not an occurrence
    assert missing.status_code == 404
    wrong = arm.maintenance()._send_request(
        HttpRequest("PUT", RUN, params={"api-version": "2025-11-01"}, json={"properties": {"status": "Completed"}})
    )
    assert wrong.status_code == 400


def test_cloudevents_pascal_case_duplicates_and_retries(arm_factory, receiver):
    scenario = with_events(
        base_scenario(events={"duplicateProbability": 1.0, "reorderMaxDelaySeconds": 30}),
        schema="CloudEventSchemaV1_0",
        dataKeyCase="pascal",
        includedEventTypes=["Microsoft.Maintenance.PreMaintenanceEvent"],
    )
    receiver.statuses = [500, 503]
    running = arm_factory(scenario, variables={"RECEIVER": receiver.url})
    running.advance_to(at(25))
    pres = receiver.events("PreMaintenanceEvent")
    assert len(pres) == 2  # a duplicate, as Event Grid may deliver
    event = pres[0]
    assert event["specversion"] == "1.0" and event["source"] == f"{MC}/mc-ring0"
    assert event["data"]["CorrelationId"] == RUN and "CancellationCutOffDateTime" in event["data"]
    from azure.core.messaging import CloudEvent

    assert CloudEvent.from_dict(event).type == "Microsoft.Maintenance.PreMaintenanceEvent"
    statuses = [d["status"] for d in receiver.deliveries]
    assert statuses[:2] == [500, 503] and statuses.count(200) == 2
    counts = sorted(int(d["headers"]["aeg-delivery-count"]) for d in receiver.deliveries)
    assert max(counts) >= 1  # a retried delivery says so
    log = running.sim.deliveries
    assert any(entry["attempt"] > 1 for entry in log) and any(entry["duplicate"] for entry in log)
    assert receiver.deliveries[0]["headers"]["Content-Type"].startswith("application/cloudevents-batch+json")
    running.advance_until(lambda: running.sim.run(RUN).status == "Completed")
    assert receiver.events("PostMaintenanceEvent") == []  # filtered by includedEventTypes


def test_prerequisites_and_window_overrun_in_a_scheduled_run(arm_factory, receiver):
    scenario = with_events(base_scenario(faults=[{"type": "slowInstall", "vms": ["win-01"], "factor": 6}]))
    scenario["subscriptions"][0]["resourceGroups"][0]["vms"][2]["powerState"] = "deallocated"  # lin-01
    running = arm_factory(scenario, variables={"RECEIVER": receiver.url})
    running.advance_until(lambda: receiver.events("PostMaintenanceEvent"))
    run = running.sim.run(RUN)
    assert list(run.skipped) == [running.sim.vm("lin-01").id]
    assert "deallocated" in run.skipped[running.sim.vm("lin-01").id]
    win = running.compute().virtual_machines.instance_view("rg-fleet", "win-01").patch_status
    summary = win.last_patch_installation_summary
    # 3h window - 10 min reserve = 170 min; the CU takes 180 min at 6x, so nothing fits after
    assert summary.maintenance_window_exceeded is True and summary.pending_patch_count >= 1
    assert receiver.events("PostMaintenanceEvent")[0]["data"]["status"] == "Failed"  # a VM could not run
    per_vm = running.maintenance().apply_updates.get(
        "rg-fleet", "Microsoft.Compute", "virtualMachines", "lin-01", "20261117200000"
    )
    assert per_vm.status == "Completed"


RECUR_FORMS = [
    "Day",
    "3Days",
    "Week Saturday,Sunday",
    "2Weeks Wednesday",
    "Month day23,day24",
    "Month day-1",
    "Month Last Sunday",
    "Month Second Tuesday Offset4",
    "Month First Monday Offset-3",
]


def test_a_simulated_month_of_every_recur_every_form(arm_factory, receiver):
    configs = [
        {
            "name": f"mc-{i}",
            "window": {
                "startDateTime": "2026-11-01 22:00",
                "duration": "02:00",
                "timeZone": "Pacific Standard Time",
                "recurEvery": form,
            },
        }
        for i, form in enumerate(RECUR_FORMS)
    ]
    scenario = with_events(base_scenario())
    scenario["subscriptions"][0]["resourceGroups"][1]["maintenanceConfigurations"] = configs
    scenario["subscriptions"][0]["dynamicScopes"] = []
    start = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
    end = start + timedelta(days=31)
    running = arm_factory(scenario, variables={"RECEIVER": receiver.url})
    running.advance_to(end)
    for i, form in enumerate(RECUR_FORMS):
        window = parse_window(configs[i]["window"])
        expected = [o.name for o in occurrences(window, start + timedelta(minutes=40), end - timedelta(hours=3))]
        got = [r.name for r in running.sim.runs if r.config_name == f"mc-{i}" and r.start <= end - timedelta(hours=3)]
        assert got == expected, form
        assert expected, form
        posts = [e for e in receiver.events("PostMaintenanceEvent") if e["subject"] == f"mc-{i}"]
        pres = [e for e in receiver.events("PreMaintenanceEvent") if e["subject"] == f"mc-{i}"]
        assert len(pres) >= len(expected) and len(posts) >= len(expected), form
    # Pacific time: 22:00 PST is 06:00Z the next day
    day_runs = [r for r in running.sim.runs if r.config_name == "mc-0"]
    assert day_runs[0].start == datetime(2026, 11, 17, 6, 0, tzinfo=UTC)


def test_hourly_schedule_and_config_written_through_the_api(arm, receiver):
    client = arm.maintenance()
    cfg = m.MaintenanceConfiguration(
        location="westeurope",
        maintenance_scope="InGuestPatch",
        start_date_time="2026-11-16 08:00",
        duration="01:30",
        time_zone="UTC",
        recur_every="6Hours",
        install_patches=m.InputPatchConfiguration(
            reboot_setting="Never", linux_parameters=m.InputLinuxParameters(classifications_to_include=["Other"])
        ),
    )
    client.maintenance_configurations.create_or_update("rg-patching", "mc-hourly", cfg)
    client.configuration_assignments.create_or_update(
        "rg-fleet",
        "Microsoft.Compute",
        "virtualMachines",
        "lin-02",
        "mc-hourly",
        m.ConfigurationAssignment(maintenance_configuration_id=f"{MC}/mc-hourly"),
    )
    arm.advance_to(datetime(2026, 11, 17, 9, 0, tzinfo=UTC))
    names = [r.name for r in arm.sim.runs if r.config_name == "mc-hourly"]
    assert names == ["20261116080000", "20261116140000", "20261116200000", "20261117020000", "20261117080000"]
    assert "tzdata=2026a" in arm.sim.vm("lin-02").installed
    # editing the schedule restarts it
    cfg.recur_every = "Day"
    client.maintenance_configurations.create_or_update("rg-patching", "mc-hourly", cfg)
    arm.advance_to(datetime(2026, 11, 19, 9, 0, tzinfo=UTC))
    names = [r.name for r in arm.sim.runs if r.config_name == "mc-hourly"]
    assert names[-2:] == ["20261118080000", "20261119080000"]


def _edit_classifications(arm, classes):
    client = arm.maintenance()
    cfg = client.maintenance_configurations.get("rg-patching", "mc-ring0")
    cfg.install_patches.windows_parameters.classifications_to_include = classes
    client.maintenance_configurations.create_or_update("rg-patching", "mc-ring0", cfg)


def _vm_record(arm, vm: str, run: str):
    return arm.maintenance().apply_updates.get(
        "rg-fleet", "Microsoft.Compute", "virtualMachines", vm, run
    )


def test_an_edit_after_t40_auto_cancels_that_run_and_not_the_next(arm):
    """AUM: editing a schedule with a pre-event needs 40 minutes' lead, "otherwise it will lead to
    auto-cancellation of the current scheduled run" (update-manager-domain.md §2.2, §6)."""
    arm.advance_to(at(39))
    assert arm.sim.run(RUN).status == "Pending"
    assert _vm_record(arm, "win-01", "20261117200000").status == "Pending"
    _edit_classifications(arm, ["Definition"])
    # the run and every VM's record show the cancellation at once
    got = arm.maintenance().apply_updates.get(
        "rg-patching", "Microsoft.Maintenance", "maintenanceConfigurations", "mc-ring0", "20261117200000"
    )
    assert got.status == "Cancelled"
    assert _vm_record(arm, "win-01", "20261117200000").status == "Cancelled"
    assert "edited less than 40 minutes before" in arm.sim.run(RUN).cancel_reason
    arm.advance_to(T0 + timedelta(hours=4))
    assert arm.sim.run(RUN).status == "Cancelled" and not arm.sim.run(RUN).plans
    assert all(vm.install_count == 0 for vm in arm.sim.fleet.vms.values())
    # the next occurrence is created at its own T-40 and runs with the edited parameters
    nxt = RUN.replace("20261117200000", "20261124200000")
    arm.advance_until(lambda: arm.sim.run(nxt) is not None and arm.sim.run(nxt).status == "Completed")
    assert arm.sim.run(nxt).cancelled_at is None
    assert "KB2267602" in arm.sim.vm("win-01").installed and "KB5048667" not in arm.sim.vm("win-01").installed


def test_a_patch_after_t40_also_cancels_and_one_before_t40_applies(arm):
    arm.advance_to(at(41))
    _edit_classifications(arm, ["Definition"])  # 41 minutes ahead: in time for this run
    arm.advance_to(at(20))
    assert arm.sim.run(RUN).status == "Pending" and arm.sim.run(RUN).cancelled_at is None
    response = arm.maintenance()._send_request(
        HttpRequest("PATCH", f"{MC}/mc-ring0", params={"api-version": "2023-04-01"}, json={"tags": {"x": "1"}})
    )
    assert response.status_code == 200
    assert arm.sim.run(RUN).status == "Cancelled"


def test_late_edit_cancellation_can_be_turned_off(arm_factory):
    arm = arm_factory(base_scenario(events={"cancelRunOnLateEdit": False}))
    arm.advance_to(at(39))
    _edit_classifications(arm, ["Definition"])
    arm.advance_until(lambda: arm.sim.run(RUN).status == "Completed")
    assert arm.sim.run(RUN).plans  # the frozen run still happened after the edit
    assert "KB2267602" not in arm.sim.vm("win-01").installed  # the late edit did not apply
    assert "KB5048667" in arm.sim.vm("win-01").installed


def test_a_cancel_reads_cancelled_at_once(arm):
    arm.advance_to(at(30))
    assert cancel(arm, RUN).status_code == 200
    got = arm.maintenance().apply_updates.get(
        "rg-patching", "Microsoft.Maintenance", "maintenanceConfigurations", "mc-ring0", "20261117200000"
    )
    assert got.status == "Cancelled"  # not Pending until T0
    assert _vm_record(arm, "win-01", "20261117200000").status == "Cancelled"
    # a run cancelled before it existed reads Cancelled from its T-40
    nxt = RUN.replace("20261117200000", "20261124200000")
    assert cancel(arm, nxt).status_code == 200
    arm.advance_to(T0 + timedelta(days=7) - timedelta(minutes=39))
    assert arm.sim.run(nxt).status == "Cancelled"


@pytest.mark.parametrize("mode", ["echo", "ignore", "url"])
def test_endpoint_validation_handshake(arm_factory, receiver, mode):
    receiver.validation_mode = "echo" if mode == "echo" else "ignore"
    running = arm_factory(with_events(base_scenario(), validate=True), variables={"RECEIVER": receiver.url})
    if mode == "url":
        # the manual alternative: GET the validationUrl (the simulator serves it)
        running.advance_to(at(30))
        assert receiver.events() == []
        url = receiver.validation_requests[0][0]["data"]["validationUrl"]
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=str(running.sim.ca_path))
        with urllib.request.urlopen(url, context=context) as response:
            assert response.status == 200
    running.advance_until(lambda: running.sim.run(RUN) and running.sim.run(RUN).status == "Completed")
    running.advance_to(running.now() + timedelta(minutes=1))
    request = receiver.validation_requests[0][0]
    assert request["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert set(request) == set(example("eventgrid/examples/SubscriptionValidationEvent.eventgrid-schema.json")[0])
    if mode == "ignore":
        assert receiver.events() == []
        assert any(d["error"] == "endpoint validation failed" for d in running.sim.deliveries)
    else:
        assert len(receiver.events("PreMaintenanceEvent")) == 1 and len(receiver.events("PostMaintenanceEvent")) == 1
        if mode == "echo":
            assert len(receiver.validation_requests) == 1  # validated once, then plain deliveries


def test_cloudevents_validation_uses_options(arm_factory, receiver):
    scenario = with_events(base_scenario(), validate=True, schema="CloudEventSchemaV1_0")
    running = arm_factory(scenario, variables={"RECEIVER": receiver.url})
    running.advance_to(at(30))
    assert receiver.validation_requests == [{"options": "eventgrid.azure.net"}]
    assert len(receiver.events("PreMaintenanceEvent")) == 1


def test_pre_event_lead_is_seeded_in_t40_to_t30(arm_factory, receiver):
    """AUM sends the pre-event "at least 30 mins prior", from T-40 (update-manager-domain.md §2.2)."""
    running = arm_factory(with_events(base_scenario()), variables={"RECEIVER": receiver.url})
    running.advance_until(lambda: len(receiver.events("PreMaintenanceEvent")) >= 4, timeout=120)
    leads = []
    for event in receiver.events("PreMaintenanceEvent")[:4]:
        start = datetime.fromisoformat(event["data"]["startDateTime"].replace("Z", "+00:00"))
        lead = start - datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
        assert timedelta(minutes=30) <= lead <= timedelta(minutes=40)
        assert lead == running.sim.schedule.pre_event_lead(event["data"]["correlationId"])
        leads.append(lead)
    assert len(set(leads)) > 1  # not a fixed lead
    # the same seed gives the same draw; another seed another one
    again = arm_factory(with_events(base_scenario()), variables={"RECEIVER": receiver.url})
    assert again.sim.schedule.pre_event_lead(RUN) == running.sim.schedule.pre_event_lead(RUN)
    other = arm_factory(with_events(base_scenario(seed=8)), variables={"RECEIVER": receiver.url})
    assert other.sim.schedule.pre_event_lead(RUN) != running.sim.schedule.pre_event_lead(RUN)


def test_pinned_worst_case_pre_event_at_t30_leaves_20_minutes_to_cancel(arm_factory, receiver):
    scenario = with_events(base_scenario(events={"preEventLeadMinutes": 30}))
    running = arm_factory(scenario, variables={"RECEIVER": receiver.url})
    running.advance_to(at(30) - timedelta(seconds=1))
    assert receiver.events("PreMaintenanceEvent") == []
    running.advance_to(at(30))
    (pre,) = receiver.events("PreMaintenanceEvent")
    assert pre["eventTime"] == "2026-11-17T19:30:00Z"
    assert pre["data"]["cancellationCutOffDateTime"] == "2026-11-17T19:50:00Z"
    running.advance_to(at(10))  # the last moment: 20 minutes after the pre-event
    assert cancel(running, RUN).status_code == 200
    running.advance_until(lambda: running.sim.run(RUN).status == "Cancelled")
    assert running.sim.vm("win-01").install_count == 0


def test_system_cancellation_when_the_pre_event_cannot_be_delivered(arm_factory, receiver):
    receiver.statuses = [500] * 10
    scenario = with_events(base_scenario(events={"cancelIfPreEventUndelivered": True}))
    running = arm_factory(scenario, variables={"RECEIVER": receiver.url})
    running.advance_until(lambda: running.sim.run(RUN) and running.sim.run(RUN).status == "Cancelled")
    run = running.sim.run(RUN)
    assert run.cancel_reason.startswith("Maintenance cancelled due to internal platform failure at 2026-11-17T19:30")
    assert running.sim.vm("win-01").install_count == 0
    # when the pre-event gets through, the run goes ahead
    receiver.statuses = []
    nxt = RUN.replace("20261117200000", "20261124200000")
    running.advance_until(lambda: running.sim.run(nxt) and running.sim.run(nxt).status == "Completed")
    assert running.sim.run(nxt).cancel_reason is None


def test_availability_set_update_domains_patch_one_after_another(arm_factory):
    scenario = base_scenario()
    vms = scenario["subscriptions"][0]["resourceGroups"][0]["vms"]
    for vm in vms:
        if vm["os"] == "Windows":
            vm.pop("zone")
            vm["availabilitySet"] = "as-web"
            vm["tags"]["patchRing"] = "ring0"
    vms.append({"name": "win-03", "os": "Windows", "availabilitySet": "as-web", "tags": {"patchRing": "ring0"}})
    running = arm_factory(scenario)
    running.advance_until(lambda: running.sim.run(RUN) and running.sim.run(RUN).status == "Completed")
    plans = {running.sim.fleet.vm(vm_id).name: plan for vm_id, plan in running.sim.run(RUN).plans.items()}
    # 30 + 5 + 5 (reboot) = 40 minutes per Windows VM, update domain 0, 1, 2 in turn
    assert [(plans[n].start - T0).total_seconds() / 60 for n in ("win-01", "win-02", "win-03")] == [0, 40, 80]
    assert plans["lin-01"].start == T0  # not in the set: starts with the first domain
    iv = running.compute().virtual_machines.instance_view("rg-fleet", "win-03")
    assert (iv.platform_update_domain, iv.platform_fault_domain) == (2, 0)
    # a 3-hour window minus the reboot reserve leaves no room for a fourth domain
    assert all(not p.window_exceeded for p in plans.values())


def test_vms_must_be_running_15_minutes_before_the_run(arm_factory):
    running = arm_factory(base_scenario(faults=[{"type": "deallocated", "vms": ["win-01", "lin-01"]}]))
    running.advance_to(at(20))
    running.sim.set_vm_state("win-01", power_state="running")  # in time
    running.advance_to(at(10))
    running.sim.set_vm_state("lin-01", power_state="running")  # too late for this run
    running.advance_until(lambda: running.sim.run(RUN).status == "Completed")
    run = running.sim.run(RUN)
    assert [running.sim.fleet.vm(v).name for v in run.plans] == ["win-01"]
    assert "15 minutes before" in run.skipped[running.sim.vm("lin-01").id]
