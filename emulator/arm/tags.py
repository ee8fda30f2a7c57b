"""Microsoft.Resources tags at ``/{scope}/providers/Microsoft.Resources/tags/default``.

SUPPORTED: GET, PUT (replace the set), PATCH with ``operation`` ``Merge`` / ``Replace`` /
``Delete`` (Delete matches by name, or by name and value when a value is given), DELETE; scopes
that are VMs, maintenance configurations, resource groups or subscriptions of the scenario. All
answer 200 + ``TagsResource`` (the SDK's LRO pollers accept a direct 200, contracts §6). The
50-tags limit answers 400 ``InvalidTag``.

LIMITATIONS: tags of other resource types are not stored (404).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError

if TYPE_CHECKING:
    from emulator.arm.server import ArmSimulator

__all__ = ["HANDLERS"]

_MAX_TAGS = 50


def _read(sim: ArmSimulator, scope: str) -> dict[str, str]:
    vm = sim.fleet.vm(scope)
    if vm is not None:
        return vm.tags
    config = sim.fleet.configuration(scope)
    if config is not None:
        return config.tags
    key = scope.lower().rstrip("/")
    parts = key.split("/")
    is_sub = len(parts) == 3 and sim.fleet.has_subscription(parts[2])
    is_rg = len(parts) == 5 and parts[3] == "resourcegroups" and sim.fleet.has_resource_group(parts[2], parts[4])
    if is_sub or is_rg:
        return sim.fleet.tags_by_scope.setdefault(key, {})
    raise ArmError(404, "ResourceNotFound", f"The resource '{scope}' was not found.")


def _write(sim: ArmSimulator, scope: str, tags: dict[str, str]) -> None:
    if len(tags) > _MAX_TAGS:
        raise ArmError(
            400,
            "InvalidTag",
            f"The scope '{scope}' would have {len(tags)} tags; at most {_MAX_TAGS} are allowed per resource.",
        )
    vm = sim.fleet.vm(scope)
    if vm is not None:
        vm.tags = dict(tags)
        return
    config = sim.fleet.configuration(scope)
    if config is not None:
        config.tags = dict(tags)
        return
    sim.fleet.tags_by_scope[scope.lower().rstrip("/")] = dict(tags)


def _resource(scope: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "id": f"{scope}/providers/Microsoft.Resources/tags/default",
        "name": "default",
        "type": "Microsoft.Resources/tags",
        "properties": {"tags": dict(tags)},
    }


def _tags_from(body: Any) -> dict[str, str]:
    props = body.get("properties") if isinstance(body, dict) else None
    tags = props.get("tags") if isinstance(props, dict) else None
    if tags is None:
        tags = {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ArmError(400, "InvalidRequestContent", "properties.tags must be an object of string values.")
    for name in tags:
        if not name or len(name) > 512 or any(c in name for c in "<>%&\\?/"):
            raise ArmError(400, "InvalidTagNameCharacters", f"The tag name '{name}' has invalid characters.")
    return tags


def _set_case_insensitive(current: dict[str, str], name: str, value: str) -> None:
    for existing in list(current):
        if existing.lower() == name.lower():
            del current[existing]
    current[name] = value


def get_tags(sim: ArmSimulator, call: Call) -> Reply:
    scope = call.params["scope"]
    return Reply(200, _resource(scope, _read(sim, scope)))


def put_tags(sim: ArmSimulator, call: Call) -> Reply:
    scope = call.params["scope"]
    _read(sim, scope)
    tags = _tags_from(call.require_body())
    _write(sim, scope, tags)
    return Reply(200, _resource(scope, tags))


def patch_tags(sim: ArmSimulator, call: Call) -> Reply:
    scope = call.params["scope"]
    body = call.require_body()
    current = dict(_read(sim, scope))
    given = _tags_from(body)
    operation = str(body.get("operation") or "")
    if operation.lower() == "replace":
        current = dict(given)
    elif operation.lower() == "merge":
        for name, value in given.items():
            _set_case_insensitive(current, name, value)
    elif operation.lower() == "delete":
        for name, value in given.items():
            for existing in list(current):
                if existing.lower() == name.lower() and (not value or current[existing] == value):
                    del current[existing]
    else:
        raise ArmError(
            400,
            "InvalidRequestContent",
            f"'operation' must be Merge, Replace or Delete, got {operation or 'nothing'!r}.",
        )
    _write(sim, scope, current)
    return Reply(200, _resource(scope, current))


def delete_tags(sim: ArmSimulator, call: Call) -> Reply:
    scope = call.params["scope"]
    _read(sim, scope)
    _write(sim, scope, {})
    return Reply(200, None)


HANDLERS = {"tags.get": get_tags, "tags.put": put_tags, "tags.patch": patch_tags, "tags.delete": delete_tags}
