"""Settings model: unknown, missing and invalid keys fail with every offender named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from patchrings.errors import SettingsInvalid
from patchrings.settings import SETTINGS_SPEC, Settings, describe

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "default.json").write_text("{}")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def local_env(**overrides: str) -> dict[str, str]:
    env = {
        "PATCHRINGS_ARM_ENDPOINT": "https://127.0.0.1:8443/",
        "PATCHRINGS_ARM_AUTH": "static-token",
        "PATCHRINGS_ARM_STATIC_TOKEN": "s3cr3t-bearer",
        "PATCHRINGS_ARM_CA_BUNDLE": "ca.pem",
        "PATCHRINGS_LEDGER_CONNECTION": "AccountName=a;AccountKey=b;TableEndpoint=http://127.0.0.1:1/a;",
        "PATCHRINGS_APPROVER_HEADER_FALLBACK": "true",
        "UNRELATED": "ignored",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v != "<del>"}


def problems(exc: SettingsInvalid) -> dict[str, str]:
    return {p["setting"]: p["message"] for p in exc.details}


def test_local_settings_parse(app_dir: Path) -> None:
    s = Settings.from_env(local_env(), app_dir=app_dir)
    assert s.arm_endpoint == "https://127.0.0.1:8443"
    assert s.arm_auth == "static-token"
    assert s.arm_static_token == "s3cr3t-bearer"
    assert s.arm_ca_bundle == str(app_dir / "ca.pem")
    assert s.ledger_table_prefix == "patchrings"
    assert s.approver_header_fallback is True
    assert s.plan_file == app_dir / "plans" / "default.json"
    assert not s.is_public_azure
    assert "s3cr3t-bearer" not in repr(s) and "AccountKey" not in repr(s)


def test_azure_defaults(app_dir: Path) -> None:
    s = Settings.from_env(
        {"PATCHRINGS_LEDGER_ACCOUNT_URL": "https://acct.table.core.windows.net"}, app_dir=app_dir
    )
    assert s.arm_endpoint == "https://management.azure.com"
    assert s.arm_auth == "managed-identity"
    assert s.is_public_azure
    assert s.approver_header_fallback is False
    assert s.arm_ca_bundle is None


def test_unknown_key_is_named_with_suggestion(app_dir: Path) -> None:
    with pytest.raises(SettingsInvalid) as info:
        Settings.from_env(local_env(PATCHRINGS_ARM_ENDPIONT="x"), app_dir=app_dir)
    found = problems(info.value)
    assert list(found) == ["PATCHRINGS_ARM_ENDPIONT"]
    assert "did you mean PATCHRINGS_ARM_ENDPOINT" in found["PATCHRINGS_ARM_ENDPIONT"]
    assert info.value.code == "SettingsInvalid"


def test_every_problem_reported_at_once(app_dir: Path) -> None:
    env = local_env(
        PATCHRINGS_ARM_ENDPOINT="http://127.0.0.1:1",
        PATCHRINGS_ARM_AUTH="password",
        PATCHRINGS_LEDGER_CONNECTION="<del>",
        PATCHRINGS_LEDGER_TABLE_PREFIX="9bad-prefix",
        PATCHRINGS_APPROVER_HEADER_FALLBACK="maybe",
        PATCHRINGS_ARM_CA_BUNDLE="missing.pem",
        PATCHRINGS_PLAN_PATH="plans/nope.json",
    )
    with pytest.raises(SettingsInvalid) as info:
        Settings.from_env(env, app_dir=app_dir)
    found = problems(info.value)
    assert set(found) == {
        "PATCHRINGS_ARM_ENDPOINT", "PATCHRINGS_ARM_AUTH", "PATCHRINGS_LEDGER_CONNECTION",
        "PATCHRINGS_LEDGER_ACCOUNT_URL", "PATCHRINGS_LEDGER_TABLE_PREFIX",
        "PATCHRINGS_APPROVER_HEADER_FALLBACK", "PATCHRINGS_ARM_CA_BUNDLE", "PATCHRINGS_PLAN_PATH",
    }
    assert "allowed: managed-identity, static-token" in found["PATCHRINGS_ARM_AUTH"]
    assert "neither is set" in found["PATCHRINGS_LEDGER_CONNECTION"]
    for name in found:
        assert name in str(info.value)


def test_static_token_required_for_static_auth(app_dir: Path) -> None:
    with pytest.raises(SettingsInvalid) as info:
        Settings.from_env(local_env(PATCHRINGS_ARM_STATIC_TOKEN="<del>"), app_dir=app_dir)
    message = problems(info.value)["PATCHRINGS_ARM_STATIC_TOKEN"]
    assert "required when PATCHRINGS_ARM_AUTH=static-token" in message


def test_both_ledger_targets_rejected(app_dir: Path) -> None:
    env = local_env(PATCHRINGS_LEDGER_ACCOUNT_URL="https://a.table.core.windows.net")
    with pytest.raises(SettingsInvalid) as info:
        Settings.from_env(env, app_dir=app_dir)
    assert "both are set" in problems(info.value)["PATCHRINGS_LEDGER_ACCOUNT_URL"]


def test_spec_lists_exactly_the_documented_settings() -> None:
    names = [s.name for s in SETTINGS_SPEC]
    doc = (REPO / "docs" / "architecture.md").read_text()
    documented = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `PATCHRINGS_")}
    assert set(names) == documented
    text = describe()
    assert Settings.describe() == text
    for name in names:
        assert name in text


def test_sample_local_settings_cover_the_spec() -> None:
    sample = json.loads((REPO / "local.settings.sample.json").read_text())
    assert sample["IsEncrypted"] is False
    values = sample["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert "AzureWebJobsStorage" in values
    sample_keys = {k for k in values if k.startswith("PATCHRINGS_")}
    local_keys = {s.name for s in SETTINGS_SPEC if s.local_value is not None}
    assert sample_keys == local_keys


def test_cli_check_env_reports_every_problem(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from patchrings.settings import main

    monkeypatch.setenv("PATCHRINGS_ARM_AUTH", "nope")
    monkeypatch.delenv("PATCHRINGS_LEDGER_CONNECTION", raising=False)
    monkeypatch.delenv("PATCHRINGS_LEDGER_ACCOUNT_URL", raising=False)
    assert main(["--check", "--env"]) == 1
    err = capsys.readouterr().err
    assert "PATCHRINGS_ARM_AUTH" in err and "PATCHRINGS_LEDGER_CONNECTION" in err
    assert main([]) == 0
    assert "PATCHRINGS_PLAN_PATH" in capsys.readouterr().out


def local_settings(tmp_path: Path, **values: Any) -> Path:
    """The sample local.settings.json in an app folder of its own (plan and CA file present)."""
    (tmp_path / "plans").mkdir(exist_ok=True)
    (tmp_path / "plans" / "default.json").write_text("{}")
    (tmp_path / ".local" / "arm").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".local" / "arm" / "ca.pem").write_text("pem")
    doc = json.loads((REPO / "local.settings.sample.json").read_text())
    doc["Values"].update(values)
    doc["Values"] = {k: v for k, v in doc["Values"].items() if v != "<del>"}
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps(doc))
    return path


def test_check_reads_local_settings_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from patchrings.settings import main

    path = local_settings(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATCHRINGS_ARM_AUTH", "nope")  # the environment is not what --check reads
    assert main(["--check"]) == 0
    assert "local.settings.json: OK" in capsys.readouterr().out
    assert main(["--check", str(path)]) == 0


def test_check_names_every_problem_of_local_settings_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from patchrings.settings import main

    path = local_settings(tmp_path, PATCHRINGS_ARM_ENDPOINT="http://127.0.0.1:8443",
                          PATCHRINGS_ARM_CA_BUNDLE="nope.pem", PATCHRINGS_INLINE_PLANS="sometimes",
                          PATCHRINGS_TYPO="1", FUNCTIONS_WORKER_RUNTIME="node",
                          AzureWebJobsStorage="<del>", PATCHRINGS_LEDGER_TABLE_PREFIX=5)
    assert main(["--check", str(path)]) == 1
    err = capsys.readouterr().err
    for name in ("PATCHRINGS_ARM_ENDPOINT", "PATCHRINGS_ARM_CA_BUNDLE", "PATCHRINGS_INLINE_PLANS", "PATCHRINGS_TYPO",
                 "FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "PATCHRINGS_LEDGER_TABLE_PREFIX: must be a string"):
        assert f"Values.{name}" in err, (name, err)
    assert "unknown setting" in err


def test_check_of_a_missing_or_broken_file_fails_readably(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from patchrings.settings import main

    assert main(["--check", str(tmp_path / "local.settings.json")]) == 1
    assert "not found (copy local.settings.sample.json" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('{"Values": ')
    assert main(["--check", str(broken)]) == 1
    assert "not readable JSON" in capsys.readouterr().err
    assert main(["--check", "a", "b"]) == 1


def test_inline_plans_and_app_service_variables(app_dir: Path) -> None:
    s = Settings.from_env(local_env(PATCHRINGS_INLINE_PLANS="true", WEBSITE_AUTH_ENABLED="True"), app_dir=app_dir)
    assert s.inline_plans and s.platform_auth_enabled and not s.hosted_in_azure
    assert not s.header_fallback_allowed  # Easy Auth on: the principal, never the fallback header
    assert Settings.from_env(local_env(), app_dir=app_dir).header_fallback_allowed
    assert not Settings.from_env(local_env(), app_dir=app_dir).inline_plans
    hosted = Settings.from_env(local_env(WEBSITE_INSTANCE_ID="abc"), app_dir=app_dir)
    assert hosted.hosted_in_azure and not hosted.header_fallback_allowed


def test_notify_webhook_is_a_validated_optional_setting(app_dir: Path) -> None:
    assert Settings.from_env(local_env(), app_dir=app_dir).notify_webhook is None
    s = Settings.from_env(local_env(PATCHRINGS_NOTIFY_WEBHOOK="https://hooks.example/abc?sig=x"), app_dir=app_dir)
    assert s.notify_webhook == "https://hooks.example/abc?sig=x"
    assert "sig=x" not in repr(s)  # a webhook URL may carry a secret
    with pytest.raises(SettingsInvalid) as err:
        Settings.from_env(local_env(PATCHRINGS_NOTIFY_WEBHOOK="file:///etc/passwd"), app_dir=app_dir)
    assert err.value.field == "PATCHRINGS_NOTIFY_WEBHOOK"
