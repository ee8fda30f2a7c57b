"""The one place Azure SDK clients and credentials are built, from :class:`Settings`.

Why one place: the app must not know whether it talks to Azure or to the local ARM simulator
beyond its settings. Building every client here means the endpoint (``base_url``), the
credential (managed identity vs. the simulator's static token), the CA bundle
(``connection_verify``) and the token scope are decided once, identically for Compute,
Maintenance, Resources (Tags API) and Table storage. Nothing else in the app constructs a
client; activities receive an :class:`AzureClients` (or a fake with the same methods) injected.

Clients are cached per (kind, subscription) and are thread-safe to share: the Python worker
runs sync activities on a thread pool.

The ARM bearer token only ever goes to the configured ARM endpoint (issue 13.12): every management
client authenticates through :class:`ArmEndpointOnlyPolicy`, which refuses (raises
:class:`ForeignHostRefused`, nothing is sent) a request whose scheme, host or port is not the
endpoint's -- whatever built the URL, and on redirects too (the policy runs for every request the
pipeline sends). :meth:`AzureClients.send_arm_request` additionally takes only a path (or a URL on
the endpoint) and raises :class:`~patchrings.errors.ArmTargetRefused` for anything else.

Notifications go to an Event Grid topic through azure-eventgrid's ``EventGridPublisherClient``
(:meth:`AzureClients.event_grid_publisher`): the same credential (managed identity in Azure, the
static token locally, where the topic emulator accepts it) with Event Grid's data-plane scope
``https://eventgrid.azure.net/.default`` (the SDK's), the topic's CA bundle, and short bounded
retries/timeouts (:data:`NOTIFY_LIMITS`): a notification must never hold an activity for long.

Deadline-bound calls (the guard's cancel must land before T-10) pass ``budget_seconds``: the call
then makes exactly one attempt (no SDK retries or Retry-After sleeps: the caller retries with
durable timers) with connect/read timeouts no longer than the budget (:func:`deadline_kwargs`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

from patchrings.domain.arm_ids import subscription_of  # re-exported: one subscription-of-an-id (issue 10)
from patchrings.errors import ArmTargetRefused
from patchrings.settings import ARM_AUTH_STATIC_TOKEN, PUBLIC_ARM_ENDPOINT, Settings

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient
    from azure.eventgrid._legacy import EventGridPublisherClient
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.hybridcompute import HybridComputeManagementClient
    from azure.mgmt.maintenance import MaintenanceManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    from azure.mgmt.resourcegraph import ResourceGraphClient

__all__ = [
    "ARM_LIMITS",
    "NOTIFY_LIMITS",
    "TABLE_LIMITS",
    "ArmEndpointOnlyPolicy",
    "AzureClients",
    "ForeignHostRefused",
    "StaticTokenCredential",
    "deadline_kwargs",
    "origin_of",
    "subscription_of",
]

# Bounded retries/timeouts (see AzureClients.client_kwargs). 429 + Retry-After is still honoured.
ARM_LIMITS: dict[str, Any] = {"retry_total": 4, "retry_backoff_max": 20, "connection_timeout": 15,
                              "read_timeout": 60}
# Notifications are best effort and must return within seconds (activities.notify also bounds
# the whole publish by a wall-clock budget): one retry, short back-off, short timeouts.
NOTIFY_LIMITS: dict[str, Any] = {"retry_total": 1, "retry_backoff_factor": 0.5, "retry_backoff_max": 2,
                                 "connection_timeout": 5, "read_timeout": 5}
# The ledger is on the fail-closed guard's path: a dead Table endpoint must fail fast.
TABLE_LIMITS: dict[str, Any] = {"retry_total": 3, "retry_backoff_max": 10, "connection_timeout": 10,
                                "read_timeout": 30}

# Used for calls that are not about one subscription (e.g. a cancel PUT sent by absolute path):
# the pipeline never puts the client's subscription into such a URL.
_ANY_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


# The shortest budget a deadline-bound call is given (below it a TLS handshake cannot complete).
MIN_BUDGET_SECONDS = 1.0


def deadline_kwargs(budget_seconds: float) -> dict[str, Any]:
    """Per-call pipeline options that keep one call within ``budget_seconds``.

    One attempt only (``retry_total=0``: azure-core's RetryPolicy does not count its Retry-After
    sleeps against its own ``timeout``, so its retries could carry a call past a deadline), and
    connect/read timeouts capped by the budget and by :data:`ARM_LIMITS`. A 429/5xx answer is then
    returned (or raised by SDK operations) at once, with its ``Retry-After`` for the caller.
    """
    budget = max(MIN_BUDGET_SECONDS, float(budget_seconds))
    return {
        "retry_total": 0,
        "connection_timeout": min(float(ARM_LIMITS["connection_timeout"]), budget),
        "read_timeout": min(float(ARM_LIMITS["read_timeout"]), budget),
    }


def origin_of(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a URL, lower-cased, default ports filled in (ValueError if bad)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port  # ValueError for a malformed port
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class ForeignHostRefused(ClientAuthenticationError):
    """A request to a host other than the configured ARM endpoint: refused before any token is
    attached or any byte is sent. A ``ClientAuthenticationError`` so azure-core's RetryPolicy
    propagates it at once instead of retrying."""


class ArmEndpointOnlyPolicy(ARMChallengeAuthenticationPolicy):
    """ARM's bearer-token policy that only authenticates requests to the configured endpoint."""

    def __init__(self, credential: TokenCredential, *scopes: str, endpoint: str, **kwargs: Any) -> None:
        super().__init__(credential, *scopes, **kwargs)
        self.endpoint = endpoint
        self._origin = origin_of(endpoint)

    def on_request(self, request: Any) -> None:
        url = str(request.http_request.url)
        try:
            origin = origin_of(url)
            userinfo = "@" in (urlsplit(url).netloc or "")
        except ValueError:
            origin, userinfo = ("", "", None), True
        if origin != self._origin or userinfo:
            raise ForeignHostRefused(
                f"refused to send the ARM token to {origin[0]}://{origin[1]}:{origin[2]}: "
                f"only the configured ARM endpoint {self.endpoint} is trusted"
            )
        super().on_request(request)


class StaticTokenCredential:
    """A ``TokenCredential`` that always returns one bearer token (the simulator's).

    Local only: the settings model refuses ``static-token`` without a token, and Azure uses
    ``DefaultAzureCredential``. The token is reported as valid for an hour from each call so
    the bearer policy never tries to refresh it early.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self) -> None:
        """Nothing to release (present so it can be closed like SDK credentials)."""


class AzureClients:
    """Builds and caches the SDK clients the activities use.

    ``credential`` and ``transport`` may be injected (tests); otherwise they come from settings.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        transport: Any = None,
    ) -> None:
        self.settings = settings
        self._credential = credential
        self._transport = transport
        self._lock = threading.RLock()
        self._cache: dict[tuple[str, str], Any] = {}
        self._tables: TableServiceClient | None = None

    # ------------------------------------------------------------------ credentials
    @property
    def credential(self) -> TokenCredential:
        """The ARM credential: the static token locally, DefaultAzureCredential in Azure."""
        with self._lock:
            if self._credential is None:
                if self.settings.arm_auth == ARM_AUTH_STATIC_TOKEN:
                    self._credential = StaticTokenCredential(self.settings.arm_static_token or "")
                else:
                    from azure.identity import DefaultAzureCredential

                    self._credential = DefaultAzureCredential()
            return self._credential

    @property
    def credential_scopes(self) -> list[str]:
        """Token scope for ARM: the public cloud's, or ``<endpoint>/.default`` for other clouds."""
        endpoint = self.settings.arm_endpoint.rstrip("/")
        if self.settings.arm_auth == ARM_AUTH_STATIC_TOKEN or endpoint.lower() == PUBLIC_ARM_ENDPOINT:
            return [f"{PUBLIC_ARM_ENDPOINT}/.default"]
        return [f"{endpoint}/.default"]

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every management client is built with (endpoint, TLS, scopes, limits).

        Retries and timeouts are bounded (:data:`ARM_LIMITS`): azure-core's defaults (10 retries,
        up to 120 s back-off, 300 s connect timeout) could keep an activity busy for many
        minutes, and some calls race a deadline (a run's cancel must land before T-10).
        """
        kwargs: dict[str, Any] = {
            "base_url": self.settings.arm_endpoint,
            "credential_scopes": self.credential_scopes,
            # one per client: the policy caches its token
            "authentication_policy": ArmEndpointOnlyPolicy(
                self.credential, *self.credential_scopes, endpoint=self.settings.arm_endpoint
            ),
            **ARM_LIMITS,
        }
        if self.settings.arm_ca_bundle:
            kwargs["connection_verify"] = self.settings.arm_ca_bundle
        if self._transport is not None:
            kwargs["transport"] = self._transport
        return kwargs

    # ------------------------------------------------------------------ ARM clients
    def _cached(self, kind: str, subscription_id: str, build: Any) -> Any:
        key = (kind, subscription_id.lower())
        with self._lock:
            client = self._cache.get(key)
            if client is None:
                client = build(self.credential, subscription_id, **self.client_kwargs())
                self._cache[key] = client
            return client

    def compute(self, subscription_id: str) -> ComputeManagementClient:
        """Compute client (virtual machines, instance views, install/assess patches)."""
        from azure.mgmt.compute import ComputeManagementClient

        return self._cached("compute", subscription_id, ComputeManagementClient)  # type: ignore[no-any-return]

    def maintenance(self, subscription_id: str) -> MaintenanceManagementClient:
        """Maintenance client (configurations, assignments, applyUpdates)."""
        from azure.mgmt.maintenance import MaintenanceManagementClient

        return self._cached(  # type: ignore[no-any-return]
            "maintenance", subscription_id, MaintenanceManagementClient
        )

    def resources(self, subscription_id: str) -> ResourceManagementClient:
        """Resources client; the activities use its Tags API (``tags.*_at_scope``)."""
        from azure.mgmt.resource.resources import ResourceManagementClient

        return self._cached("resources", subscription_id, ResourceManagementClient)  # type: ignore[no-any-return]

    def hybrid_compute(self, subscription_id: str) -> HybridComputeManagementClient:
        """HybridCompute client (Arc-enabled servers: machines, agent status, install/assess patches)."""
        from azure.mgmt.hybridcompute import HybridComputeManagementClient

        return self._cached(  # type: ignore[no-any-return]
            "hybridcompute", subscription_id, HybridComputeManagementClient
        )

    def resource_graph(self) -> ResourceGraphClient:
        """Azure Resource Graph client (scheduled runs' per-machine results). Tenant-level: no
        subscription in its URL; same endpoint, credential, CA bundle and limits as the others."""
        from azure.mgmt.resourcegraph import ResourceGraphClient

        def build(credential: TokenCredential, _subscription: str, **kwargs: Any) -> ResourceGraphClient:
            return ResourceGraphClient(credential, **kwargs)

        return self._cached("resourcegraph", "", build)  # type: ignore[no-any-return]

    def arm_url(self, path_or_url: str) -> str:
        """The absolute URL for an ARM path, refusing anything that would leave the endpoint.

        Accepts a path (``/subscriptions/...``) or an absolute URL on the configured endpoint's
        origin; refuses (:class:`ArmTargetRefused`) other hosts, schemes and ports, scheme-relative
        ``//host`` paths, user info, query strings, fragments, backslashes, whitespace and ``..``.
        """
        endpoint = self.settings.arm_endpoint.rstrip("/")
        text = str(path_or_url)
        if not text or any(c in text for c in "?#\\") or any(c.isspace() or ord(c) < 0x20 for c in text):
            raise ArmTargetRefused(f"not an ARM path: {text[:200]!r}", field="path")
        if "://" in text:
            try:
                same = origin_of(text) == origin_of(endpoint) and "@" not in urlsplit(text).netloc
            except ValueError:
                same = False
            if not same:
                raise ArmTargetRefused(f"refusing a request outside the ARM endpoint {endpoint}: {text[:200]!r}",
                                       field="path")
            text = urlsplit(text).path
        if not text.startswith("/") or text.startswith("//"):
            raise ArmTargetRefused(f"not an ARM path: {text[:200]!r}", field="path")
        if any(seg in (".", "..") for seg in text.split("/")):
            raise ArmTargetRefused(f"refusing a dot segment in an ARM path: {text[:200]!r}", field="path")
        return endpoint + text

    def send_arm_request(
        self,
        method: str,
        path_or_url: str,
        api_version: str,
        json: Any = None,
        *,
        budget_seconds: float | None = None,
    ) -> HttpResponse:
        """Send one raw ARM request through a management client's own pipeline.

        Why: some calls have no SDK operation (the applyUpdates *Cancel* PUT needs api-version
        2023-09-01-preview or later; azure-mgmt-maintenance 2.1.0 stops at 2023-04-01). Using
        the client's pipeline keeps auth, retries (429 + Retry-After), ``base_url`` and
        ``connection_verify``. The URL is always the ARM endpoint + the path
        (:meth:`arm_url`: anything else is refused before a request exists). With
        ``budget_seconds`` the call is one attempt bounded by that budget (:func:`deadline_kwargs`).
        The response is returned as is (no ``raise_for_status``): callers map status codes.
        """
        url = self.arm_url(path_or_url)
        try:
            subscription = subscription_of(url)
        except ValueError:
            subscription = _ANY_SUBSCRIPTION
        pipeline = self.maintenance(subscription)._client
        request = HttpRequest(method.upper(), url, params={"api-version": api_version}, json=json)
        options = deadline_kwargs(budget_seconds) if budget_seconds is not None else {}
        response: HttpResponse = pipeline.send_request(request, **options)
        response.read()
        return response

    # ------------------------------------------------------------------ Event Grid (notifications)
    def event_grid_publisher(self) -> EventGridPublisherClient | None:
        """The Event Grid publisher for ``PATCHRINGS_NOTIFY_TOPIC_ENDPOINT`` (``None`` when unset).

        Basic (custom) topic, api-version 2018-01-01, CloudEvents sent as
        ``application/cloudevents-batch+json``. Credential: :attr:`credential` (the managed
        identity's DefaultAzureCredential in Azure, which gets a token for
        ``https://eventgrid.azure.net/.default``; the simulator's static token locally).

        Built from ``azure.eventgrid._legacy.EventGridPublisherClient``, the class the public
        ``azure.eventgrid.EventGridPublisherClient`` delegates to for basic topics: in
        azure-eventgrid 4.22.1 the public class constructs it *without* the caller's keyword
        arguments (``_patch.py``: ``LegacyEventGridPublisherClient(endpoint, credential,
        api_version=...)``), so ``connection_verify`` (the emulator's CA), ``transport`` and the
        bounded timeouts/retries would be silently dropped. Same ``send`` API.
        """
        endpoint = self.settings.notify_topic_endpoint
        if not endpoint:
            return None
        from azure.eventgrid._legacy import EventGridPublisherClient

        kwargs: dict[str, Any] = {"api_version": "2018-01-01", **NOTIFY_LIMITS}
        if self.settings.notify_topic_ca_bundle:
            kwargs["connection_verify"] = self.settings.notify_topic_ca_bundle
        if self._transport is not None:
            kwargs["transport"] = self._transport
        key = ("eventgrid", endpoint.lower())
        with self._lock:
            client = self._cache.get(key)
            if client is None:
                client = EventGridPublisherClient(endpoint, self.credential, **kwargs)
                self._cache[key] = client
            return client

    # ------------------------------------------------------------------ Table storage
    def table_service(self) -> TableServiceClient:
        """The ledger's Table service: a connection string (Azurite) or account URL + identity."""
        from azure.data.tables import TableServiceClient

        with self._lock:
            if self._tables is None:
                extra: dict[str, Any] = dict(TABLE_LIMITS)
                if self._transport is not None:
                    extra["transport"] = self._transport
                if self.settings.ledger_connection:
                    self._tables = TableServiceClient.from_connection_string(
                        self.settings.ledger_connection, **extra
                    )
                else:
                    # The ledger always uses the managed identity (shared with ARM when ARM uses
                    # it too): the static token is an ARM-simulator credential, meaningless here.
                    credential: Any
                    if self.settings.arm_auth == ARM_AUTH_STATIC_TOKEN:
                        from azure.identity import DefaultAzureCredential

                        credential = DefaultAzureCredential()
                    else:
                        credential = self.credential
                    self._tables = TableServiceClient(
                        endpoint=self.settings.ledger_account_url or "", credential=credential, **extra
                    )
            return self._tables

    def close(self) -> None:
        """Close every cached client (their HTTP sessions); safe to call twice."""
        with self._lock:
            clients = list(self._cache.values())
            self._cache.clear()
            tables, self._tables = self._tables, None
        for client in clients:
            client.close()
        if tables is not None:
            tables.close()
