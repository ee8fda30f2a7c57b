"""The Tags backend: the tag set at a scope (a VM, an Arc machine, a maintenance configuration, a
resource group or a subscription of the scenario), named after ``ResourceManagementClient.tags``.

SUPPORTED: ``get_at_scope``, ``create_or_update_at_scope`` (replace), ``update_at_scope``
(``Merge`` / ``Replace`` / ``Delete``, names case-insensitive), ``delete_at_scope``; the 50-tags limit
(400 ``InvalidTag``). :mod:`emulator.arm.tags` is the HTTP layer above it.

LIMITATIONS: tags of other resource types are not stored (404 ``ResourceNotFound``).
"""

from __future__ import annotations

from emulator.arm.backends.core import Core
from emulator.arm.errors import ArmError

__all__ = ["MAX_TAGS", "TagsBackend"]

MAX_TAGS = 50


def _set_case_insensitive(current: dict[str, str], name: str, value: str) -> None:
    for existing in list(current):
        if existing.lower() == name.lower():
            del current[existing]
    current[name] = value


class TagsBackend:
    """See the module docstring."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def get_at_scope(self, scope: str) -> dict[str, str]:
        """The scope's tags (the stored dict itself), or 404 for a scope the simulator does not tag."""
        fleet = self.core.fleet
        vm = fleet.vm(scope)
        if vm is not None:
            return vm.tags
        config = fleet.configuration(scope)
        if config is not None:
            return config.tags
        key = scope.lower().rstrip("/")
        parts = key.split("/")
        is_sub = len(parts) == 3 and fleet.has_subscription(parts[2])
        is_rg = len(parts) == 5 and parts[3] == "resourcegroups" and fleet.has_resource_group(parts[2], parts[4])
        if is_sub or is_rg:
            return fleet.tags_by_scope.setdefault(key, {})
        raise ArmError(404, "ResourceNotFound", f"The resource '{scope}' was not found.")

    def _write(self, scope: str, tags: dict[str, str]) -> None:
        if len(tags) > MAX_TAGS:
            raise ArmError(
                400,
                "InvalidTag",
                f"The scope '{scope}' would have {len(tags)} tags; at most {MAX_TAGS} are allowed per resource.",
            )
        fleet = self.core.fleet
        vm = fleet.vm(scope)
        if vm is not None:
            vm.tags = dict(tags)
            return
        config = fleet.configuration(scope)
        if config is not None:
            config.tags = dict(tags)
            return
        fleet.tags_by_scope[scope.lower().rstrip("/")] = dict(tags)

    def create_or_update_at_scope(self, scope: str, tags: dict[str, str]) -> dict[str, str]:
        self._write(scope, tags)
        return tags

    def update_at_scope(self, scope: str, operation: str, given: dict[str, str]) -> dict[str, str]:
        """``Merge`` / ``Replace`` / ``Delete`` (by name, or name and value); the resulting set."""
        current = dict(self.get_at_scope(scope))
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
        self._write(scope, current)
        return current

    def delete_at_scope(self, scope: str) -> None:
        self.get_at_scope(scope)
        self._write(scope, {})
