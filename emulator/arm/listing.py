"""What the simulator's ARM providers share: the scope check (subscription, then resource group,
with ARM's 404 codes), paging (``$skiptoken`` offsets, a ``nextLink`` that keeps the caller's other
query parameters, ``sim.page_size`` items a page) and an LRO result URL's answer (202 with
``Location`` / ``Retry-After`` while running, 200 with the result when done)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError

if TYPE_CHECKING:
    from emulator.arm.server import ArmSimulator

T = TypeVar("T")


def check_scope(sim: ArmSimulator, sub: str, rg: str | None = None) -> None:
    """ARM's 404s for a list or GET under a subscription / resource group that does not exist."""
    if not sim.fleet.has_subscription(sub):
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
    if rg is not None and not sim.fleet.has_resource_group(sub, rg):
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")


def in_scope(sim: ArmSimulator, resources: Mapping[str, T], call: Call, *, by_group: bool) -> list[T]:
    """The resources (keyed by lower-case id) under the call's subscription (and, ``by_group``,
    resource group), sorted by id as ARM lists them."""
    sub = call.params["sub"]
    check_scope(sim, sub, call.params["rg"] if by_group else None)
    prefix = (f"/subscriptions/{sub}/" + (f"resourcegroups/{call.params['rg']}/" if by_group else "")).lower()
    return [resources[key] for key in sorted(k for k in resources if k.startswith(prefix))]


def page(sim: ArmSimulator, call: Call, items: list[T], render: Callable[[T], dict[str, Any]]) -> Reply:
    """One page of ``items`` from the call's ``$skiptoken``, with a ``nextLink`` while more remain."""
    size = sim.page_size
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


def lro_result(sim: ArmSimulator, call: Call, *, running: bool, result: Any) -> Reply:
    """A long-running operation's result URL: 202 pointing at itself while it runs, then 200."""
    if running:
        location = f"{call.base_url}{call.path}?{urlencode({'api-version': call.api_version})}"
        return Reply(202, None, {"Location": location, "Retry-After": str(sim.retry_after)})
    return Reply(200, result)
