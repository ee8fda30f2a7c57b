"""patchrings.deps: the one container, built lazily, rebuilt only when the app loads, pinnable.

(Until issue 10 there were two containers keyed by the environment, because the local host
swaps ``os.environ``; the local host now imports the app afresh per host, and the app's
``deps.load()`` at import is the explicit rebuild. Azure restarts the worker on a settings change.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchrings import deps
from patchrings.errors import SettingsInvalid
from patchrings.settings import Settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


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
    monkeypatch.setenv("PATCHRINGS_PLAN_PATH", str(REPO / "demo" / "plan.json"))
    deps.reset()
    yield
    deps.reset()


def test_built_once_and_rebuilt_when_the_app_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    first = deps.clients()
    assert first is deps.clients()
    assert deps.settings().arm_endpoint == "https://127.0.0.1:1111"
    assert deps.ledger() is deps.ledger()
    monkeypatch.setenv("PATCHRINGS_ARM_ENDPOINT", "https://127.0.0.1:2222")
    assert deps.clients() is first  # nothing watches the environment (Azure restarts the worker)
    deps.load()  # what function_app.py does when a (local) host imports the app
    second = deps.clients()
    assert second is not first and deps.settings().arm_endpoint == "https://127.0.0.1:2222"


def test_triggers_and_activities_share_one_set_of_clients() -> None:
    assert deps.ledger()._service is deps.clients().table_service()


def test_bad_settings_fail_on_first_use_and_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHRINGS_TYPO", "1")
    with pytest.raises(SettingsInvalid, match="PATCHRINGS_TYPO"):
        deps.clients()
    with pytest.raises(SettingsInvalid, match="PATCHRINGS_TYPO"):
        deps.load()


def test_pinned_values_ignore_the_environment_and_survive_a_load(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = Settings(ledger_account_url="https://x")
    fake_clients = object()
    deps.override(settings=pinned, clients=fake_clients)
    monkeypatch.setenv("PATCHRINGS_ARM_ENDPOINT", "https://127.0.0.1:3333")
    deps.load()
    assert deps.settings() is pinned
    assert deps.clients() is fake_clients
    deps.reset()
    assert deps.settings() is not pinned


def test_unknown_overrides_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot override"):
        deps.override(planner=object())


def test_settings_follow_the_app_service_authentication_variable_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host started with authentication on never answers from settings built with it off:
    the app reads WEBSITE_AUTH_ENABLED when it loads (not only PATCHRINGS_*)."""
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    deps.load()
    assert deps.settings().platform_auth_enabled is False
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    deps.load()
    assert deps.settings().platform_auth_enabled is True
