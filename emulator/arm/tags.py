"""Microsoft.Resources tags at ``/{scope}/providers/Microsoft.Resources/tags/default``.

SUPPORTED: GET, PUT (replace the set), PATCH with ``operation`` ``Merge`` / ``Replace`` /
``Delete`` (Delete matches by name, or by name and value when a value is given), DELETE; scopes
that are VMs, maintenance configurations, resource groups or subscriptions of the scenario. All
answer 200 + ``TagsResource`` (the SDK's LRO pollers accept a direct 200, contracts §6). The
50-tags limit answers 400 ``InvalidTag``.

The tag sets live in :class:`emulator.arm.backends.tags.TagsBackend`; this module is the thin HTTP
layer above it.

LIMITATIONS: tags of other resource types are not stored (404).
"""

from __future__ import annotations

from typing import Any

from emulator.arm.backends.tags import TagsBackend
from emulator.arm.calls import Call, Reply
from emulator.arm.errors import ArmError

__all__ = ["HANDLERS"]


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


def get_tags(backend: TagsBackend, call: Call) -> Reply:
    scope = call.params["scope"]
    return Reply(200, _resource(scope, backend.get_at_scope(scope)))


def put_tags(backend: TagsBackend, call: Call) -> Reply:
    scope = call.params["scope"]
    backend.get_at_scope(scope)
    tags = _tags_from(call.require_body())
    return Reply(200, _resource(scope, backend.create_or_update_at_scope(scope, tags)))


def patch_tags(backend: TagsBackend, call: Call) -> Reply:
    scope = call.params["scope"]
    body = call.require_body()
    backend.get_at_scope(scope)
    given = _tags_from(body)
    operation = str(body.get("operation") or "")
    return Reply(200, _resource(scope, backend.update_at_scope(scope, operation, given)))


def delete_tags(backend: TagsBackend, call: Call) -> Reply:
    backend.delete_at_scope(call.params["scope"])
    return Reply(200, None)


HANDLERS = {"tags.get": get_tags, "tags.put": put_tags, "tags.patch": patch_tags, "tags.delete": delete_tags}
