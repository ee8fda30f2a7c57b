"""Extract the ARM body shapes the infra tests check from Azure/bicep-types-az.

Not run by the tests: it produced ``arm-types.json`` next to it, once, from the mirrored
repository (``fetch github:Azure/bicep-types-az``). Run it again to refresh:

    python tests/unit/infra/schemas/extract.py /work/.mirror/Azure+bicep-types-az/repo

The output keeps, for each resource type the Bicep declares, the body's property tree as
bicep-types-az generated it from the azure-rest-api-specs swagger: property names, required /
read-only flags, string literal enums, integer bounds and discriminated unions. That is what
the Bicep compiler itself would check the templates against.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# type@api -> bicep-types-az generated/<folder>/types.json
RESOURCES = {
    "Microsoft.EventGrid/systemTopics@2022-06-15": "eventgrid/microsoft.eventgrid/2022-06-15",
    "Microsoft.EventGrid/topics@2022-06-15": "eventgrid/microsoft.eventgrid/2022-06-15",
    "Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15": "eventgrid/microsoft.eventgrid/2022-06-15",
    "Microsoft.Web/sites@2024-04-01": "web/microsoft.web/2024-04-01",
    "Microsoft.Web/sites/config@2024-04-01": "web/microsoft.web/2024-04-01",
    "Microsoft.Maintenance/maintenanceConfigurations@2023-04-01": "maintenance/microsoft.maintenance/2023-04-01",
    "Microsoft.Maintenance/configurationAssignments@2023-04-01": "maintenance/microsoft.maintenance/2023-04-01",
}
FLAGS = {"required": 1, "readOnly": 2, "writeOnly": 4}
MAX_DEPTH = 9


def convert(types: list[dict[str, Any]], ref: dict[str, str], depth: int = 0) -> dict[str, Any]:
    node = types[int(ref["$ref"].split("/")[-1])]
    kind = node["$type"]
    if kind == "StringType":
        return {"type": "string"}
    if kind == "IntegerType":
        return {"type": "int", **{k: node[k] for k in ("minValue", "maxValue") if k in node}}
    if kind == "BooleanType":
        return {"type": "bool"}
    if kind == "AnyType":
        return {"type": "any"}
    if kind == "StringLiteralType":
        return {"type": "string", "enum": [node["value"]]}
    if kind == "UnionType":
        parts = [convert(types, e, depth) for e in node["elements"]]
        enum = [v for p in parts for v in p.get("enum", [])]
        if all(p.get("type") == "string" for p in parts):
            open_ = any("enum" not in p for p in parts)
            return {"type": "string", **({} if open_ else {"enum": enum}), **({"knownValues": enum} if open_ else {})}
        return {"type": "any"}
    if kind == "ArrayType":
        return {"type": "array", "items": convert(types, node["itemType"], depth + 1)}
    if depth > MAX_DEPTH:
        return {"type": "object", "truncated": True}
    if kind == "ObjectType":
        shape = {"type": "object", "name": node.get("name"),
                 "properties": props(types, node.get("properties", {}), depth)}
        if node.get("additionalProperties"):
            shape["additionalProperties"] = True
        return shape
    if kind == "DiscriminatedObjectType":
        return {"type": "object", "name": node.get("name"), "discriminator": node["discriminator"],
                "properties": props(types, node.get("baseProperties", {}), depth),
                "variants": {value: convert(types, e, depth + 1) for value, e in node["elements"].items()}}
    raise ValueError(kind)


def props(types: list[dict[str, Any]], properties: dict[str, Any], depth: int) -> dict[str, Any]:
    out = {}
    for name, prop in properties.items():
        shape = convert(types, prop["type"], depth + 1)
        flags = prop.get("flags", 0)
        shape.update({flag: True for flag, bit in FLAGS.items() if flags & bit})
        out[name] = shape
    return out


def main(repo: str) -> None:
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    source = f"Azure/bicep-types-az@{commit} generated/<provider>/types.json"
    result: dict[str, Any] = {"$source": source, "resources": {}}
    cache: dict[str, list[dict[str, Any]]] = {}
    for resource, folder in RESOURCES.items():
        if folder not in cache:
            text = subprocess.run(["git", "-C", repo, "show", f"HEAD:generated/{folder}/types.json"],
                                  capture_output=True, text=True, check=True).stdout
            cache[folder] = json.loads(text)
        types = cache[folder]
        found = [t for t in types if t["$type"] == "ResourceType" and t["name"] == resource]
        assert found, resource
        result["resources"][resource] = {"file": f"generated/{folder}/types.json",
                                         "body": convert(types, found[0]["body"])}
    out = Path(__file__).with_name("arm-types.json")
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(out, out.stat().st_size)


if __name__ == "__main__":
    main(sys.argv[1])
