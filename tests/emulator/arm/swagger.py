"""Validate bodies against the verbatim swagger fragments in /work/shared/contracts (jsonschema).

External ``$ref``s to common-types are pointed at the merged common fragment; types the fragments
do not carry (TrackedResource, ExtendedLocation) accept anything. ``x-ms-enum`` with
``modelAsString: true`` is extensible in Azure, so its enum is not enforced.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import jsonschema

from tests.contracts import CONTRACTS as SHARED_CONTRACTS

CONTRACTS = SHARED_CONTRACTS
FRAGMENTS = {
    "compute": CONTRACTS / "compute/swagger/ComputeRP_2026-04-01_virtualMachines_patching_fragment.json",
    "maintenance": CONTRACTS / "maintenance/swagger/Maintenance_2025-11-01_fragment.json",
    "resources": CONTRACTS / "resources/swagger/resources_2025-04-01_tags_fragment.json",
}
COMMON = CONTRACTS / "compute/swagger/common-types_v1_common_fragment.json"


def _rewrite(node: Any, known: set[str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                name = value.rsplit("/", 1)[-1]
                if "/definitions/" in value and name in known:
                    out[key] = f"#/definitions/{name}"
                else:
                    return {}
            elif key == "enum" and node.get("x-ms-enum", {}).get("modelAsString"):
                continue
            else:
                out[key] = _rewrite(value, known)
        return out
    if isinstance(node, list):
        return [_rewrite(item, known) for item in node]
    return node


@cache
def _root(provider: str) -> dict[str, Any]:
    doc = json.loads(FRAGMENTS[provider].read_text())
    definitions = dict(doc.get("definitions", {}))
    if provider == "compute":
        definitions.update(json.loads(COMMON.read_text()).get("definitions", {}))
    known = set(definitions)
    return {"definitions": _rewrite(definitions, known)}


def validate(provider: str, definition: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` if ``instance`` does not fit ``#/definitions/{definition}``."""
    root = copy.deepcopy(_root(provider))
    if definition not in root["definitions"]:
        raise KeyError(f"{definition} is not in the {provider} fragment")
    schema = {**root, "$ref": f"#/definitions/{definition}"}
    jsonschema.Draft4Validator(schema).validate(instance)


def example(relative: str) -> dict[str, Any]:
    return json.loads((CONTRACTS / relative).read_text())
