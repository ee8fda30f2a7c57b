"""Three-phase health tracking (wait → elastic → stay healthy) and sample evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from patchrings.domain.health import HealthPolicy, HealthSample, HealthState, HealthTracker, evaluate_sample

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
POLICY = HealthPolicy.from_dict(
    {"phases": {"waitDuration": "PT5M", "elasticDuration": "PT10M", "healthyStateDuration": "PT6M",
                "pollInterval": "PT2M"}}
)
HEALTHY = HealthSample(power_state="PowerState/running", vm_agent="Ready", app_health="Healthy")
SICK = HealthSample(power_state="PowerState/running", vm_agent="Ready", app_health="Unhealthy")
STOPPED = HealthSample(power_state="PowerState/stopped", vm_agent="Not Ready")
UNREADABLE = HealthSample(read_error="ResourceNotFound")


def minutes(n):
    return T0 + timedelta(minutes=n)


def test_wait_phase_ignores_samples_and_points_to_its_end():
    t = HealthTracker(POLICY, T0)
    assert t.state.phase == "wait" and t.state.next_check_at == minutes(5)
    st = t.observe(minutes(1), STOPPED)
    assert st.phase == "wait" and st.outcome is None and st.samples == 0


def test_healthy_path_completes_after_healthy_state_duration():
    t = HealthTracker(POLICY, T0)
    st = t.observe(minutes(5), SICK)  # elastic: unhealthy is ignored
    assert st.phase == "elastic" and st.next_check_at == minutes(7)
    st = t.observe(minutes(7), HEALTHY)
    assert st.phase == "stayHealthy" and st.healthy_since == minutes(7) and st.next_check_at == minutes(9)
    st = t.observe(minutes(9), HEALTHY)
    st = t.observe(minutes(11), HEALTHY)
    assert st.phase == "stayHealthy" and st.next_check_at == minutes(13)
    st = t.observe(minutes(13), HEALTHY)
    assert st.done and st.outcome == "healthy" and st.reasons == ()


def test_never_healthy_within_elastic_is_unhealthy():
    t = HealthTracker(POLICY, T0)
    for m in (5, 7, 9, 11, 13):
        st = t.observe(minutes(m), SICK)
        assert not st.done
    assert st.next_check_at == minutes(15)  # capped at the elastic deadline
    st = t.observe(minutes(15), SICK)
    assert st.done and st.outcome == "unhealthy"
    assert "elasticDuration" in st.reasons[0]
    assert any("application health is Unhealthy" in r for r in st.reasons)


def test_unhealthy_during_hold_stops_at_once():
    t = HealthTracker(POLICY, T0)
    t.observe(minutes(5), HEALTHY)
    st = t.observe(minutes(7), STOPPED)
    assert st.done and st.outcome == "unhealthy"
    assert st.reasons[0] == "became unhealthy during healthyStateDuration"
    assert t.observe(minutes(20), HEALTHY) is st  # done is final


def test_unreadable_throughout_elastic_is_unknown_not_unhealthy():
    t = HealthTracker(POLICY, T0)
    for m in (5, 7, 9, 11, 13, 15):
        st = t.observe(minutes(m), UNREADABLE)
    assert st.done and st.outcome == "unknown"
    assert "could not be read" in st.reasons[0]


def test_unreadable_sample_during_hold_makes_outcome_unknown():
    t = HealthTracker(POLICY, T0)
    t.observe(minutes(5), HEALTHY)
    st = t.observe(minutes(7), UNREADABLE)
    assert st.phase == "stayHealthy"  # clock not reset
    st = t.observe(minutes(11), HEALTHY)
    assert st.done and st.outcome == "unknown" and "not proven" in st.reasons[0]


def test_zero_wait_and_zero_hold_complete_on_first_healthy_sample():
    policy = HealthPolicy.from_dict({"phases": {"waitDuration": "PT0S", "healthyStateDuration": "PT0S"}})
    t = HealthTracker(policy, T0)
    assert t.state.phase == "elastic" and t.state.next_check_at == T0
    assert t.observe(T0, HEALTHY).outcome == "healthy"


def test_tracker_and_state_round_trip_through_dicts():
    t = HealthTracker(POLICY, T0)
    t.observe(minutes(5), HEALTHY)
    doc = t.to_dict()
    again = HealthTracker.from_dict(POLICY, doc)
    assert again.state == t.state
    assert HealthState.from_dict(t.state.to_dict()) == t.state
    assert again.observe(minutes(11), HEALTHY.to_dict()).outcome == "healthy"


@pytest.mark.parametrize(
    ("sample", "policy", "expected"),
    [
        (HEALTHY, {}, "healthy"),
        (HealthSample(power_state="running", vm_agent="ready"), {}, "healthy"),  # no app health extension
        (HealthSample(power_state="running", vm_agent="ready"), {"checks": {"applicationHealth": "required"}},
         "unknown"),
        (HealthSample(power_state="deallocated", vm_agent="ready"), {}, "unhealthy"),
        (HealthSample(power_state=None, vm_agent="ready"), {}, "unknown"),
        (HealthSample(power_state="stopped", vm_agent=None), {"checks": {"powerState": False, "vmAgent": False}},
         "healthy"),
        (HealthSample(power_state="running", vm_agent="ready", app_health="Initializing"), {}, "unknown"),
        (HealthSample(power_state="running", vm_agent="ready", app_health="unhealthy"),
         {"checks": {"applicationHealth": "ignore"}}, "healthy"),
        (HealthSample(power_state="running", vm_agent="ready", probes=({"url": "u", "ok": False, "status": 500},)),
         {}, "unhealthy"),
        (HealthSample(power_state="running", vm_agent="ready", probes=({"url": "u", "error": "timeout"},)),
         {}, "unknown"),
        (HealthSample(power_state="running", vm_agent="ready", probes=({"url": "u", "status": 204},)), {},
         "healthy"),
        (HealthSample(power_state="running", vm_agent="ready"), {"probes": [{"url": "https://{vmName}/h"}]},
         "unknown"),
        (HealthSample(power_state="stopped", vm_agent="ready", probes=({"url": "u", "error": "x"},)), {},
         "unhealthy"),
    ],
)
def test_evaluate_sample(sample, policy, expected):
    state, reasons = evaluate_sample(HealthPolicy.from_dict(policy), sample)
    assert state == expected
    assert (reasons == []) == (expected == "healthy")


def test_probe_url_substitutes_vm_name_and_policy_round_trips():
    policy = HealthPolicy.from_dict({"probes": [{"url": "https://{vmName}.contoso.com/health",
                                                 "expectStatus": 200, "bodyPattern": "ok"}]})
    assert policy.probes[0].url_for({"name": "web01"}) == "https://web01.contoso.com/health"
    assert HealthPolicy.from_dict(policy.to_dict()) == policy


# ------------------------------------------------------------------ issue 11: cheap samples, fail fast
CHEAP_UP = HealthSample(power_state="running", partial=True)
CHEAP_DOWN = HealthSample(power_state="stopped", partial=True)
LONG_HOLD = HealthPolicy.from_dict(
    {"phases": {"waitDuration": "PT5M", "elasticDuration": "PT30M", "healthyStateDuration": "PT15M",
                "pollInterval": "PT1M"}}
)


def test_a_cheap_sample_judges_power_and_probes_only():
    assert evaluate_sample(POLICY, CHEAP_UP) == ("healthy", [])
    assert evaluate_sample(POLICY, CHEAP_DOWN)[0] == "unhealthy"
    probe_down = HealthSample(power_state="running", partial=True, probes=({"url": "u", "ok": False},))
    assert evaluate_sample(POLICY, probe_down)[0] == "unhealthy"
    assert HealthSample.from_dict(CHEAP_UP.to_dict()) == CHEAP_UP


def test_the_hold_is_sampled_three_times_cheap_between_full_at_its_end():
    t = HealthTracker(LONG_HOLD, T0)
    assert t.wants_full  # the end of the wait phase needs a full sample
    st = t.observe(minutes(5), HEALTHY)
    assert st.phase == "stayHealthy" and st.next_check_at == minutes(10) and not t.wants_full
    st = t.observe(minutes(10), CHEAP_UP)
    assert st.next_check_at == minutes(15) and not t.wants_full
    st = t.observe(minutes(15), CHEAP_UP)
    assert st.next_check_at == minutes(20) and t.wants_full
    st = t.observe(minutes(20), CHEAP_UP)  # a cheap sample cannot end the hold: a full one now
    assert st.phase == "stayHealthy" and st.next_check_at == minutes(20) and t.wants_full
    st = t.observe(minutes(20), HEALTHY)
    assert st.outcome == "healthy" and st.samples == 5


def test_a_cheap_sample_that_sees_a_vm_down_ends_the_hold_unhealthy():
    t = HealthTracker(LONG_HOLD, T0)
    t.observe(minutes(5), HEALTHY)
    st = t.observe(minutes(10), CHEAP_DOWN)
    assert st.outcome == "unhealthy" and "became unhealthy" in st.reasons[0]


def test_a_cheap_healthy_sample_never_proves_a_vm_healthy_in_the_elastic_phase():
    t = HealthTracker(LONG_HOLD, T0)
    st = t.observe(minutes(5), CHEAP_UP)
    assert st.phase == "elastic" and t.wants_full


def test_fail_fast_a_vm_healthy_before_patching_fails_on_its_second_unhealthy_sample():
    t = HealthTracker(LONG_HOLD, T0, healthy_before=True)
    st = t.observe(minutes(5), SICK)
    assert st.phase == "elastic" and st.unhealthy_streak == 1
    st = t.observe(minutes(6), UNREADABLE)  # unknown neither extends nor breaks the streak
    assert st.phase == "elastic" and st.unhealthy_streak == 1
    st = t.observe(minutes(7), STOPPED)
    assert st.outcome == "unhealthy" and st.next_check_at is None
    assert "failed fast" in st.reasons[0]
    # detection latency: 7 simulated minutes after the install, not 35 (wait + elasticDuration)
    restored = HealthTracker.from_dict(LONG_HOLD, t.to_dict())
    assert restored.healthy_before and restored.state == st


def test_fail_fast_a_healthy_sample_breaks_the_streak():
    t = HealthTracker(LONG_HOLD, T0, healthy_before=True)
    t.observe(minutes(5), SICK)
    st = t.observe(minutes(6), CHEAP_UP)  # healthy power/probes: the streak ends (not promoted)
    assert st.unhealthy_streak == 0 and st.phase == "elastic"
    st = t.observe(minutes(7), SICK)
    assert st.phase == "elastic" and st.unhealthy_streak == 1


def test_without_a_healthy_baseline_the_elastic_phase_runs_its_course():
    t = HealthTracker(LONG_HOLD, T0)
    for m in range(5, 35):
        st = t.observe(minutes(m), SICK)
        assert st.phase == "elastic", m
    st = t.observe(minutes(35), SICK)
    assert st.outcome == "unhealthy" and "elasticDuration" in st.reasons[0]


DEFERRED = HealthSample(read_error="Deferred: not read within the budget", deferred=True)


def test_a_deferred_sample_is_no_reading_the_vm_is_due_again_shortly():
    """Issue 11 (paced reads): a read that never started decides nothing -- not the end of the
    wait, not the elastic deadline, not the end of the hold -- and the VM is asked for again."""
    from patchrings.domain.health import DEFER_RETRY

    t = HealthTracker(POLICY, T0)
    st = t.observe(minutes(5), DEFERRED)  # the end of the wait phase, not read
    assert (st.phase, st.samples, st.next_check_at) == ("wait", 0, minutes(5) + DEFER_RETRY)
    assert t.wants_full
    st = t.observe(minutes(5) + DEFER_RETRY, HEALTHY)
    assert st.phase == "stayHealthy" and st.healthy_since == minutes(5) + DEFER_RETRY
    hold_end = st.healthy_since + POLICY.healthy_state
    t2 = HealthTracker(POLICY, T0)
    for m in (5, 7, 9, 11, 13):
        t2.observe(minutes(m), SICK)
    st = t2.observe(minutes(15), DEFERRED)  # the elastic deadline passes without a reading
    assert not st.done and st.next_check_at == minutes(15) + DEFER_RETRY
    assert t2.observe(minutes(15) + DEFER_RETRY, SICK).outcome == "unhealthy"
    since = t.state.healthy_since
    t.observe(since + timedelta(minutes=2), HEALTHY)
    t.observe(since + timedelta(minutes=4), HEALTHY)
    st = t.observe(hold_end, DEFERRED)  # the hold's final full sample, not read: no verdict
    assert not st.done and st.unknown_while_holding == 0 and t.wants_full
    assert t.observe(hold_end + DEFER_RETRY, HEALTHY).outcome == "healthy"
    assert HealthSample.from_dict(DEFERRED.to_dict()) == DEFERRED
    assert evaluate_sample(POLICY, DEFERRED)[0] == "unknown"  # elsewhere (no tracker): never healthy


@pytest.mark.parametrize("healthy_first", [False, True])
def test_reads_starved_for_ever_end_the_vm_inconclusive_not_a_loop(healthy_first: bool) -> None:
    """Deferral is bounded (review finding): once the phase's end has passed, only
    MAX_LATE_DEFERRALS deferred samples in a row are waited for; then the VM ends on an
    unreadable sample -- never healthy -- instead of verify looping (and growing) for ever."""
    from patchrings.domain.health import DEFER_RETRY, MAX_LATE_DEFERRALS

    t = HealthTracker(POLICY, T0)
    at = minutes(5)
    if healthy_first:
        t.observe(at, HEALTHY)  # in the stay-healthy phase from here
        at += timedelta(minutes=2)
    samples = 0
    while not t.state.done and samples < 1000:
        t.observe(at, DEFERRED)
        samples += 1
        at = t.state.next_check_at or at + DEFER_RETRY
    st = t.state
    assert st.done and st.outcome != "healthy", st
    limit = (POLICY.healthy_state if healthy_first else POLICY.elastic) / DEFER_RETRY
    assert samples <= limit + MAX_LATE_DEFERRALS + 2, samples
