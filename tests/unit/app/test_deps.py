"""activities.deps: built lazily from the environment, rebuilt when PATCHRINGS_* change, pinnable."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities import deps as deps_module
from activities.deps import Deps, deps, set_deps
from patchrings.errors import SettingsInvalid
from patchrings.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key in [k for k in os.environ if k.startswith("PATCHRINGS_")]:
        monkeypatch.delenv(key)
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    monkeypatch.setenv("PATCHRINGS_ARM_ENDPOINT", "https://127.0.0.1:1111")
    monkeypatch.setenv("PATCHRINGS_ARM_AUTH", "static-token")
    monkeypatch.setenv("PATCHRINGS_ARM_STATIC_TOKEN", "token-one")
    monkeypatch.setenv("PATCHRINGS_ARM_CA_BUNDLE", str(ca))
    monkeypatch.setenv("PATCHRINGS_LEDGER_CONNECTION", "AccountName=a;AccountKey=b;TableEndpoint=http://127.0.0.1:2/a")
    set_deps(None)
    yield
    set_deps(None)


def test_built_once_and_rebuilt_when_settings_change(monkeypatch: pytest.MonkeyPatch) -> None:
    first = deps()
    assert first is deps()
    assert first.settings.arm_endpoint == "https://127.0.0.1:1111"
    monkeypatch.setenv("PATCHRINGS_ARM_ENDPOINT", "https://127.0.0.1:2222")
    second = deps()
    assert second is not first and second.settings.arm_endpoint == "https://127.0.0.1:2222"


def test_bad_settings_fail_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHRINGS_TYPO", "1")
    with pytest.raises(SettingsInvalid, match="PATCHRINGS_TYPO"):
        deps()


def test_pinned_deps_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = Deps(settings=Settings(ledger_account_url="https://x"), clients=object())
    set_deps(pinned)
    monkeypatch.setenv("PATCHRINGS_ARM_ENDPOINT", "https://127.0.0.1:3333")
    assert deps() is pinned
    assert deps_module._pinned is True


def test_trigger_settings_follow_the_app_service_authentication_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """triggers.deps rebuilds its settings when WEBSITE_AUTH_ENABLED changes (not only PATCHRINGS_*),
    so a host started with authentication on never answers from settings cached with it off."""
    from triggers import deps as trigger_deps

    trigger_deps.reset()
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    try:
        assert trigger_deps.settings().platform_auth_enabled is False
        monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
        assert trigger_deps.settings().platform_auth_enabled is True
    finally:
        trigger_deps.reset()
