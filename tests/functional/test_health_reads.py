"""Issue 11 on the local platform: health in bulk and fail fast, counted by the simulator's recorder.

A Ring 0 VM that was healthy before its install and is unhealthy after it fails on its second
unhealthy sample (the elastic phase is for VMs that were not yet healthy), and a healthy ring is
verified with a few instance views per VM plus cheap power-state samples from Resource Graph by id,
not 16 reads per VM (and no list of the subscription).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional import platform_scenario as sc
from tests.functional.platform_driver import driver

pytestmark = pytest.mark.functional

START = "2026-11-16T06:00:00Z"




def instance_views(p: Any, name: str) -> list[Any]:
    """Reads of the VM's instance view: ``GET …/instanceView``, or the VM with ``$expand=instanceView``
    (the install's pre-check, one GET: issue 11)."""
    return [r for r in p.arm.recorder.find(method="GET")
            if r.path.lower().endswith(f"/{name}/instanceview")
            or (r.path.lower().endswith(f"/virtualmachines/{name}") and r.operation == "vm.get")]


def test_a_vm_healthy_before_patching_fails_fast_after_two_unhealthy_samples(held: Any) -> None:
    p = held(sc.scenario(faults=[{"type": "unhealthyAfterPatch", "vms": ["r0-web-2"]}]))
    d = driver(p)
    rid = d.start(who="dave@contoso.com")
    final = d.until_done(rid)
    gate = final.output["rings"][0]["gate"]
    assert final.output["state"] == "halted" and gate["outcome"] == "fail", final.output
    reasons = [r["reason"] for r in gate["reasons"] if r["vm"].endswith("/r0-web-2")]
    assert reasons and any("failed fast" in r for r in reasons), reasons
    # one read before the install (the once-only check, also the baseline) + two samples after it
    assert len(instance_views(p, "r0-web-2")) == 3


def test_a_healthy_wave_is_verified_with_few_instance_views_per_vm(held: Any) -> None:
    p = held(sc.scenario())
    d = driver(p)
    rid = d.start(who="dave@contoso.com")
    d.until_waiting(rid, "approval", "ring1")
    for name in sc.RING0:
        # before the install, end of the wait phase, end of the stay-healthy phase (was 17)
        assert len(instance_views(p, name)) == 3, name
    assert p.arm.recorder.find(operation="arg.resources")  # the cheap samples in between (and members)
    assert not p.arm.recorder.find(operation="vm.list_all")  # never a list of the subscription
