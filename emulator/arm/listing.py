"""What the simulator's ARM providers share: the scope check (subscription, then resource group,
with ARM's 404 codes), paging (``$skiptoken`` offsets, a ``nextLink`` that keeps the caller's other
query parameters, ``core.page_size`` items a page) and an LRO result URL's answer (202 with
``Location`` / ``Retry-After`` while running, 200 with the result when done).

Backends use :func:`check_scope` / :func:`in_scope`; handlers use :func:`page` / :func:`lro_result`.
Everything here takes the shared :class:`~emulator.arm.backends.core.Core` (never the HTTP server).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError

if TYPE_CHECKING:
    from emulator.arm.backends.core import Core

T = TypeVar("T")


def check_scope(core: Core, sub: str, rg: str | None = None) -> None:
    """ARM's 404s for a list or GET under a subscription / resource group that does not exist."""
    if not core.fleet.has_subscription(sub):
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
    if rg is not None and not core.fleet.has_resource_group(sub, rg):
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")


def in_scope(core: Core, resources: Mapping[str, T], sub: str, rg: str | None = None) -> list[T]:
    """The resources (keyed by lower-case id) under ``sub`` (and, given, resource group ``rg``),
    sorted by id as ARM lists them."""
    check_scope(core, sub, rg)
    prefix = (f"/subscriptions/{sub}/" + (f"resourcegroups/{rg}/" if rg is not None else "")).lower()
    return [resources[key] for key in sorted(k for k in resources if k.startswith(prefix))]


def page(core: Core, call: Call, items: list[T], render: Callable[[T], dict[str, Any]]) -> Reply:
    """One page of ``items`` from the call's ``$skiptoken``, with a ``nextLink`` while more remain."""
    size = core.page_size
    try:
        skip = int(call.query.get("$skiptoken", "0"))
    except ValueError:
        raise ArmError.bad_request("The $skiptoken is invalid.", code="InvalidSkipToken") from None
    body: dict[str, Any] = {"value": [render(item) for item in items[skip : skip + size]]}
    if skip + size < len(items):
        query = {k: v for k, v in call.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = str(skip + size)
        body["nextLink"] = f"{call.base_url}{call.path}?{urlencode(query)}"
    return Reply(200, body)


def lro_result(core: Core, call: Call, *, running: bool, result: Any) -> Reply:
    """A long-running operation's result URL: 202 pointing at itself while it runs, then 200."""
    if running:
        location = f"{call.base_url}{call.path}?{urlencode({'api-version': call.api_version})}"
        return Reply(202, None, {"Location": location, "Retry-After": str(core.retry_after)})
    return Reply(200, result)
