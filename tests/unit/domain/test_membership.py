"""The one member rule (issue 11): Resource Graph rows, the live pre-check and the compliance view
all apply it, so its edges are pinned here."""

from __future__ import annotations

import pytest

from patchrings.domain.membership import MemberRule, tag_value

pytestmark = pytest.mark.unit

TAGGED = {"tag": {"name": "patchRing", "value": "ring1", "holdValue": "ring1-hold"}, "subscriptions": ["s"]}


def test_tag_names_are_case_insensitive_values_are_not() -> None:
    rule = MemberRule.from_members(TAGGED)
    assert rule.tag_selects({"PATCHRING": "ring1"}) and rule.tag_selects({"patchring": "ring1-hold"})
    assert not rule.tag_selects({"patchRing": "Ring1"})
    assert not rule.tag_selects({"patchRing": "ring10"}) and not rule.tag_selects({"other": "ring1"})
    assert tag_value({"A": None}, "a") is None


def test_scope_narrows_groups_locations_and_os_in_any_case_and_spacing() -> None:
    rule = MemberRule.from_members({**TAGGED, "resourceGroups": ["RG-Web"], "locations": ["West Europe"],
                                    "osTypes": ["windows"]})
    assert rule.in_scope(resource_group="rg-web", location="westeurope", os="Windows")
    assert not rule.in_scope(resource_group="rg-app", location="westeurope", os="Windows")
    assert not rule.in_scope(resource_group="rg-web", location="northeurope", os="Windows")
    assert not rule.in_scope(resource_group="rg-web", location="westeurope", os="Linux")
    assert MemberRule.from_members({"tag": TAGGED["tag"]}).in_scope(resource_group=None, location=None, os=None)


def test_left_because_says_why_only_when_the_live_model_proves_it() -> None:
    rule = MemberRule.from_members({**TAGGED, "resourceGroups": ["rg-web"]})
    assert rule.left_because(resource_group="rg-web", location="x", os="Linux", tags={"patchRing": "ring1"}) is None
    assert "'none' now" in str(rule.left_because(resource_group="rg-web", location="x", os="Linux",
                                                 tags={"patchRing": "none"}))
    assert "scope" in str(rule.left_because(resource_group="rg-app", location="x", os="Linux",
                                            tags={"patchRing": "ring1"}))
    # a configuration may hold the machine without the tag: the tag alone proves nothing then
    by_config = MemberRule.from_members({**TAGGED, "maintenanceConfigurationId": "/subscriptions/s/x"})
    assert by_config.left_because(resource_group="rg", location="x", os="Linux", tags={}) is None
