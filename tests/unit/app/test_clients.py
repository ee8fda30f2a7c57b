"""AzureClients: every client is built from settings (endpoint, token, CA) without network."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest

from patchrings.clients import AzureClients, StaticTokenCredential, subscription_of
from patchrings.settings import Settings

pytestmark = pytest.mark.unit

SUB = "11111111-2222-3333-4444-555555555555"


class RecordingTransport(HttpTransport):  # type: ignore[misc]
    """A transport that answers every request with one canned JSON response and records it."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.status = status
        self.body = body if body is not None else {}
        self.requests: list[Any] = []

    def __enter__(self) -> RecordingTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **kwargs: Any) -> Any:
        import requests
        from azure.core.rest._requests_basic import RestRequestsTransportResponse

        self.requests.append(request)
        raw = requests.Response()
        raw.status_code = self.status
        raw._content = json.dumps(self.body).encode()
        raw.raw = io.BytesIO(raw._content)
        raw.headers["Content-Type"] = "application/json"
        raw.url = request.url
        return RestRequestsTransportResponse(request=request, internal_response=raw)


def local_settings(tmp_path: Path) -> Settings:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    return Settings(
        arm_endpoint="https://127.0.0.1:8443",
        arm_auth="static-token",
        arm_static_token="sim-token",
        arm_ca_bundle=str(ca),
        ledger_connection="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
    )


def test_static_token_credential() -> None:
    token = StaticTokenCredential("abc").get_token("https://management.azure.com/.default")
    assert token.token == "abc"
    assert token.expires_on > 0


def test_clients_built_from_local_settings(tmp_path: Path) -> None:
    clients = AzureClients(local_settings(tmp_path))
    compute = clients.compute(SUB)
    assert compute._config.base_url == "https://127.0.0.1:8443"
    assert isinstance(clients.credential, StaticTokenCredential)
    assert clients.client_kwargs()["connection_verify"] == str(tmp_path / "ca.pem")
    # cached per subscription, case-insensitively
    assert clients.compute(SUB.upper()) is compute
    assert clients.maintenance(SUB)._client._base_url == "https://127.0.0.1:8443"
    assert clients.resources(SUB)._config.base_url == "https://127.0.0.1:8443"
    assert clients.table_service().url.startswith("http://127.0.0.1:10002/devstoreaccount1")
    clients.close()


def test_azure_settings_use_default_credential_and_public_scope() -> None:
    settings = Settings(ledger_account_url="https://acct.table.core.windows.net")
    clients = AzureClients(settings)
    assert clients.credential_scopes == ["https://management.azure.com/.default"]
    assert "connection_verify" not in clients.client_kwargs()
    from azure.identity import DefaultAzureCredential

    assert isinstance(clients.credential, DefaultAzureCredential)
    assert clients.table_service().url.startswith("https://acct.table.core.windows.net")


def test_sovereign_cloud_scope() -> None:
    settings = Settings(arm_endpoint="https://management.usgovcloudapi.net", ledger_account_url="https://x")
    assert AzureClients(settings).credential_scopes == ["https://management.usgovcloudapi.net/.default"]


def test_send_arm_request_goes_through_the_pipeline(tmp_path: Path) -> None:
    transport = RecordingTransport(200, {"properties": {"status": "Cancelled"}})
    clients = AzureClients(local_settings(tmp_path), transport=transport)
    run = (
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc"
        "/providers/microsoft.maintenance/applyupdates/20261116060000"
    )
    body = {"properties": {"status": "Cancel"}}
    response = clients.send_arm_request("put", run, "2023-09-01-preview", json=body)
    assert response.status_code == 200
    assert response.json()["properties"]["status"] == "Cancelled"
    (sent,) = transport.requests
    assert sent.method == "PUT"
    assert sent.url == f"https://127.0.0.1:8443{run}?api-version=2023-09-01-preview"
    assert sent.headers["Authorization"] == "Bearer sim-token"
    assert json.loads(sent.content) == {"properties": {"status": "Cancel"}}


def test_subscription_of() -> None:
    assert subscription_of(f"/subscriptions/{SUB}/resourceGroups/x") == SUB
    with pytest.raises(ValueError):
        subscription_of("/providers/x")


def test_request_type_is_rest() -> None:
    assert HttpRequest("GET", "/x").method == "GET"


def test_retries_and_timeouts_are_bounded(tmp_path: Path) -> None:
    clients = AzureClients(local_settings(tmp_path))
    compute = clients.compute(SUB)
    assert compute._config.retry_policy.total_retries == 4
    transport = compute._client._pipeline._transport
    assert (transport.connection_config.timeout, transport.connection_config.read_timeout) == (15, 60)
    tables = clients.table_service()._client._client._pipeline._transport
    assert tables.connection_config.timeout == 10


# ---------------------------------------------------------------------- strict run ids (issue 13.12)
MC_ID = f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/Microsoft.Maintenance/maintenanceConfigurations/mc-ring1"


@pytest.mark.parametrize("run_id", [
    f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
    f"{MC_ID.lower()}/providers/microsoft.maintenance/applyupdates/20261116060000",
])
def test_parse_apply_update_id_accepts_a_schedule_run(run_id: str) -> None:
    from patchrings.arm.ids import parse_apply_update_id, same_arm_id

    config, run = parse_apply_update_id(run_id)
    assert same_arm_id(config, MC_ID)
    assert run == "20261116060000"


@pytest.mark.parametrize("bad", [
    "",
    "https://evil.example/x" + f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
    f"https://management.azure.com{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
    f"//evil.example{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
    f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/2026111606000",     # 13 digits
    f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/202611160600001",   # 15 digits
    f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/default",
    f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000?x=1",
    f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000#f",
    f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000/",
    f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000\n",
    f" {MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
    f"/subscriptions/{SUB}/resourceGroups/../providers/Microsoft.Maintenance/maintenanceConfigurations/mc"
    "/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
    "/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
    f"/subscriptions/{SUB}/resourceGroups/rg%2F..%2F/providers/Microsoft.Maintenance/maintenanceConfigurations/mc"
    "/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Maintenance/maintenanceConfigurations/mc@evil.example"
    "/providers/Microsoft.Maintenance/applyUpdates/20261116060000",
])
def test_parse_apply_update_id_refuses_anything_else(bad: str) -> None:
    from patchrings.arm.ids import parse_apply_update_id

    with pytest.raises(ValueError, match="applyUpdates run id"):
        parse_apply_update_id(bad)


def test_parse_apply_update_id_refuses_non_strings() -> None:
    from patchrings.arm.ids import parse_apply_update_id

    with pytest.raises(ValueError):
        parse_apply_update_id(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the token stays home (13.12)
class ScriptedTransport(RecordingTransport):
    """Answers from a list of (status, headers, body); records requests and per-call kwargs."""

    def __init__(self, answers: list[tuple[int, dict[str, str], Any]]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.kwargs: list[dict[str, Any]] = []
        self.urls: list[str] = []  # at send time (a redirect mutates the request object)

    def send(self, request: Any, **kwargs: Any) -> Any:
        import requests
        from azure.core.rest._requests_basic import RestRequestsTransportResponse

        self.requests.append(request)
        self.urls.append(str(request.url))
        self.kwargs.append(kwargs)
        status, headers, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        raw = requests.Response()
        raw.status_code = status
        raw._content = json.dumps(body).encode()
        raw.raw = io.BytesIO(raw._content)
        raw.headers["Content-Type"] = "application/json"
        raw.headers.update(headers)
        raw.url = request.url
        return RestRequestsTransportResponse(request=request, internal_response=raw)


RUN = f"{MC_ID}/providers/Microsoft.Maintenance/applyUpdates/20261116060000"


@pytest.mark.parametrize("url", [
    "https://attacker.example/x",
    "http://127.0.0.1:8443/x",            # same host, other scheme
    "https://127.0.0.1:9443/x",           # same host, other port
    "https://127.0.0.1:8443@attacker.example/x",
])
def test_the_token_is_never_attached_for_another_host(tmp_path: Path, url: str) -> None:
    from patchrings.clients import ForeignHostRefused

    transport = RecordingTransport(200, {})
    clients = AzureClients(local_settings(tmp_path), transport=transport)
    with pytest.raises(ForeignHostRefused):
        clients.maintenance(SUB)._client.send_request(HttpRequest("GET", url))
    assert transport.requests == []  # refused before anything was sent


def test_a_redirect_to_another_host_is_refused(tmp_path: Path) -> None:
    from patchrings.clients import ForeignHostRefused

    transport = ScriptedTransport([(302, {"Location": "https://attacker.example/steal"}, {})])
    clients = AzureClients(local_settings(tmp_path), transport=transport)
    with pytest.raises(ForeignHostRefused):
        clients.send_arm_request("GET", RUN, "2023-09-01-preview")
    assert [u.split("?")[0] for u in transport.urls] == [f"https://127.0.0.1:8443{RUN}"]  # nothing else sent


def test_the_endpoint_itself_gets_the_token(tmp_path: Path) -> None:
    transport = RecordingTransport(200, {})
    clients = AzureClients(local_settings(tmp_path), transport=transport)
    clients.maintenance(SUB)._client.send_request(HttpRequest("GET", "https://127.0.0.1:8443/x"))
    assert transport.requests[0].headers["Authorization"] == "Bearer sim-token"


@pytest.mark.parametrize("target", [
    "https://attacker.example" + RUN,
    "//attacker.example" + RUN,
    "attacker.example" + RUN,
    RUN + "?x=1",
    RUN + "#x",
    "/subscriptions/x/../../x",
    "/x\\y",
    "/x y",
])
def test_send_arm_request_refuses_targets_off_the_endpoint(tmp_path: Path, target: str) -> None:
    from patchrings.errors import ArmTargetRefused

    transport = RecordingTransport(200, {})
    clients = AzureClients(local_settings(tmp_path), transport=transport)
    with pytest.raises(ArmTargetRefused):
        clients.send_arm_request("PUT", target, "2023-09-01-preview", json={})
    assert transport.requests == []


def test_a_budgeted_call_is_one_attempt_bounded_by_the_budget(tmp_path: Path) -> None:
    transport = ScriptedTransport([(503, {"Retry-After": "30"}, {"error": {"code": "ServiceUnavailable"}})])
    clients = AzureClients(local_settings(tmp_path), transport=transport)
    response = clients.send_arm_request("PUT", RUN, "2023-09-01-preview", json={}, budget_seconds=7)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert len(transport.requests) == 1  # no SDK retry (and no Retry-After sleep)
    assert transport.kwargs[0]["connection_timeout"] == 7 and transport.kwargs[0]["read_timeout"] == 7


def test_an_unbudgeted_call_keeps_the_sdk_retries(tmp_path: Path) -> None:
    transport = ScriptedTransport([(503, {"Retry-After": "0"}, {}), (200, {}, {"ok": True})])
    clients = AzureClients(local_settings(tmp_path), transport=transport)
    response = clients.send_arm_request("GET", RUN, "2023-09-01-preview")
    assert response.status_code == 200 and len(transport.requests) == 2


def test_deadline_kwargs_caps_timeouts() -> None:
    from patchrings.clients import deadline_kwargs

    assert deadline_kwargs(600) == {"retry_total": 0, "connection_timeout": 15.0, "read_timeout": 60.0}
    assert deadline_kwargs(0)["read_timeout"] == 1.0
