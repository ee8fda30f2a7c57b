"""The gate's check before act (issue 11): which live machines a retag gate may write."""

from __future__ import annotations

from typing import Any

import pytest

from patchrings.domain.gates import gate_write_refusal
from patchrings.domain.membership import MemberRule

pytestmark = pytest.mark.unit

TAG = {"name": "patchRing", "value": "ring1", "holdValue": "ring1-hold"}
BY_TAG = MemberRule.from_members({"tag": TAG, "resourceGroups": ["rg-a"]})
WITH_CONFIG = MemberRule.from_members({"tag": TAG, "maintenanceConfigurationId": "/subscriptions/s/mc/x"})


def refusal(rule: MemberRule, opening: bool, tag: str | None, rg: str = "rg-a") -> str | None:
    tags: dict[str, Any] = {"PATCHRING": tag} if tag is not None else {"owner": "x"}  # names: any case
    return gate_write_refusal(rule, opening=opening, open_value="ring1", hold_value="ring1-hold",
                              resource_group=rg, location="westeurope", os="Linux", tags=tags)


@pytest.mark.parametrize(("rule", "opening", "tag", "rg", "written"), [
    # opening: the ring's tag must still select the machine (hold value, or open already)
    (BY_TAG, True, "ring1-hold", "rg-a", True),
    (BY_TAG, True, "ring1", "rg-a", True),
    (BY_TAG, True, "excluded", "rg-a", False),  # the operator took it out: never pulled back in
    (BY_TAG, True, None, "rg-a", False),
    (BY_TAG, True, "Ring1-Hold", "rg-a", False),  # values are case-sensitive
    (BY_TAG, True, "ring1-hold", "rg-b", False),  # out of the plan's scope
    # a configuration ring: the tag still decides (the gate's write is the tag)
    (WITH_CONFIG, True, "excluded", "rg-a", False),
    (WITH_CONFIG, True, "ring1-hold", "rg-z", True),
    # closing: only a machine still at the open value (or already at the hold value)
    (BY_TAG, False, "ring1", "rg-a", True),
    (BY_TAG, False, "ring1-hold", "rg-a", True),
    (BY_TAG, False, "quarantine", "rg-a", False),  # someone retagged it meanwhile: keeps it
    (BY_TAG, False, None, "rg-a", False),
    (WITH_CONFIG, False, "excluded", "rg-a", False),
    # closing ignores scope: a machine still at the open value never keeps it after the gate closes
    (BY_TAG, False, "ring1", "rg-b", True),
])
def test_gate_write_refusal_table(rule: MemberRule, opening: bool, tag: str | None, rg: str, written: bool) -> None:
    reason = refusal(rule, opening, tag, rg)
    assert (reason is None) == written, reason
    if not written:
        assert reason and ("scope" in reason or repr(tag) in reason)


def test_a_ring_without_a_tag_checks_scope_only() -> None:
    rule = MemberRule.from_members({"resourceGroups": ["rg-a"]})
    assert gate_write_refusal(rule, opening=True, open_value="v", hold_value=None, resource_group="rg-a",
                              location="x", os="Linux", tags={}) is None
    assert gate_write_refusal(rule, opening=True, open_value="v", hold_value=None, resource_group="rg-b",
                              location="x", os="Linux", tags={}) is not None
    # closing is never refused for scope (review finding: the open value must not outlive the gate)
    assert gate_write_refusal(rule, opening=False, open_value="v", hold_value=None, resource_group="rg-b",
                              location="x", os="Linux", tags={}) is None
