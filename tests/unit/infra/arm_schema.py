"""Checks the object literals a Bicep resource declares against the resource type's ARM schema.

Why: without a Bicep compiler, a misspelt or misplaced property (``azureActiveDirectoryTenantID``,
``defaultAuthorizationPolicy`` one level too high, a WebHook property on an AzureFunction
destination) is only found by Azure, at deployment. The schema here is what the compiler uses:
Azure/bicep-types-az's types, generated from the azure-rest-api-specs swagger, trimmed by
``schemas/extract.py`` into ``schemas/arm-types.json``.

The Bicep is read with pycep-parser (as test_bicep_syntax.py does). Object literals are checked
key by key; a discriminated union (``endpointType``, ``kind``...) picks its variant from a literal
discriminator value; both branches of a ``c ? {...} : {...}`` are checked; values that are
expressions are not evaluated (their shape is unknown here) and are accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.infra.conftest import INFRA

__all__ = ["ARM_TYPES", "check_body", "declared_resources"]

ARM_TYPES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "schemas" / "arm-types.json").read_text(encoding="utf-8"))
_EXPRESSION_KEYS = {"operator", "function"}
_BICEP_ONLY_KEYS = {"parent", "scope", "dependsOn"}


def _is_expression(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in _EXPRESSION_KEYS


def _branches(node: Any) -> list[Any]:
    """The object literals a value may be: itself, or both branches of a ternary."""
    if _is_expression(node):
        op = node.get("operator") or {}
        if op.get("type") == "conditional":
            operands = op["operands"]
            return _branches(operands["true_value"]) + _branches(operands["false_value"])
        return []
    return [node]


def check_body(node: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    problems: list[str] = []
    for value in _branches(node):
        problems += _check(value, schema, path)
    return problems


def _check(node: Any, schema: dict[str, Any], path: str) -> list[str]:
    kind = schema.get("type")
    if kind == "any" or schema.get("truncated"):
        return []
    if kind == "array":
        if isinstance(node, list):
            return [p for i, item in enumerate(node) for p in check_body(item, schema["items"], f"{path}[{i}]")]
        return []
    if kind != "object":
        if isinstance(node, dict) and not _is_expression(node):
            return [f"{path}: an object where the schema has {kind}"]
        # A plain string is a literal or an identifier; identifiers are lower camel case names of
        # params/vars, so only literals that look like enum values (capitalised) are flagged.
        if (isinstance(node, str) and "enum" in schema and node not in schema["enum"] and "${" not in node
                and node[:1].isupper()):
            return [f"{path}: {node!r} is not one of {schema['enum']}"]
        return []
    if not isinstance(node, dict) or _is_expression(node):
        return []
    props = dict(schema.get("properties", {}))
    if "discriminator" in schema:
        value = node.get(schema["discriminator"])
        variants = schema["variants"]
        if isinstance(value, str) and value in variants:
            props.update(variants[value].get("properties", {}))
        elif isinstance(value, str) and not _is_expression(value) and value[:1].isupper():
            return [f"{path}.{schema['discriminator']}: {value!r} is not one of {sorted(variants)}"]
        else:
            for variant in variants.values():
                props.update(variant.get("properties", {}))
    problems: list[str] = []
    for key, value in node.items():
        if not path and key in _BICEP_ONLY_KEYS:
            continue
        where = f"{path}.{key}" if path else key
        if key not in props:
            if schema.get("additionalProperties"):
                continue
            problems.append(f"{where}: not a property of {schema.get('name') or 'this object'}")
            continue
        if props[key].get("readOnly"):
            problems.append(f"{where}: read-only")
            continue
        problems += check_body(value, props[key], where)
    return problems


def declared_resources() -> list[tuple[str, str, str, Any]]:
    """``(file, symbol, type@api, body)`` of every non-``existing`` resource in infra/**/*.bicep."""
    import pycep

    from tests.unit.infra.test_bicep_syntax import _downlevel

    parser = pycep.BicepParser()
    out = []
    for path in sorted(INFRA.rglob("*.bicep")):
        ast = parser.parse(text=_downlevel(path.read_text(encoding="utf-8")))
        for symbol, resource in (ast.get("resources") or {}).items():
            if resource.get("existing"):
                continue
            config = resource["config"]
            while "config" in config and ("condition" in config or "loop_type" in config):
                config = config["config"]
            out.append((str(path.relative_to(INFRA)), symbol, f"{resource['type']}@{resource['api_version']}", config))
    return out
