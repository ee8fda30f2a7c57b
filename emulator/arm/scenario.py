"""Scenario files for the ARM fleet simulator: loading, ``${VAR}`` expansion, schema validation.

Why a schema: a scenario is the whole simulated Azure (fleet, patch catalog, schedules, event
subscriptions, faults); a typo such as ``patchRnig`` or ``os: Win`` would otherwise produce a
quietly wrong world and a misleading test. Every document is validated against
:data:`SCENARIO_SCHEMA` (JSON Schema 2020-12) and errors name the exact location, e.g.
``subscriptions[0].resourceGroups[1].vms[2].os: 'Win' is not one of ['Windows', 'Linux']``.

The format is documented in ``emulator/arm/SCENARIOS.md``; ``scenarios/sample.yaml`` is a
realistic example. Strings may reference variables as ``${NAME}`` or ``${NAME:-default}``; the
platform passes ``FUNCTIONS_HOST`` and ``EVENTGRID_KEY``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = [
    "FAULT_TYPES",
    "SCENARIO_SCHEMA",
    "ScenarioError",
    "expand_variables",
    "load_scenario",
    "validate_fault",
    "validate_scenario",
]


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names the file and the location."""


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

_STR_LIST = {"type": "array", "items": {"type": "string"}}
# Arc agent status: the spec's StatusTypes plus Expired (community ARG queries; arc-and-resource-graph.md §2.3)
_ARC_STATUSES = ["Connected", "Disconnected", "Expired", "Error", "AwaitingConnection"]
_SELECTOR = {
    "vms": {**_STR_LIST, "description": "VM name globs (fnmatch, case-insensitive)"},
    "tags": {"type": "object", "additionalProperties": {"type": "string"}},
    "os": {"enum": ["Windows", "Linux"]},
    "probability": {"type": "number", "minimum": 0, "maximum": 1},
    "times": {"type": "integer", "minimum": 1, "description": "trigger at most this many times"},
}
_ACTIVE = {
    "from": {"type": "string", "description": "active from this simulated instant (ISO 8601)"},
    "until": {"type": "string", "description": "active until this simulated instant (ISO 8601)"},
}
_REQUEST_SELECTOR = {
    **_ACTIVE,
    "action": {"type": "string", "description": "RBAC action glob, e.g. Microsoft.Compute/*/read"},
    "method": {"type": "string"},
    "pathContains": {"type": "string"},
    "after": {"type": "integer", "minimum": 0, "description": "let this many matching requests pass first"},
    "count": {"type": "integer", "minimum": 1, "description": "fault this many matching requests"},
    "probability": {"type": "number", "minimum": 0, "maximum": 1},
}
_WINDOW = {
    "type": "object",
    "required": ["startDateTime", "duration", "timeZone", "recurEvery"],
    "properties": {
        "startDateTime": {"type": "string"},
        "expirationDateTime": {"type": ["string", "null"]},
        "duration": {"type": "string"},
        "timeZone": {"type": "string"},
        "recurEvery": {"type": "string"},
    },
    "additionalProperties": False,
}
_BUCKET = {
    "type": "object",
    "properties": {"size": {"type": "integer", "minimum": 1}, "refillPerSecond": {"type": "number", "minimum": 0}},
    "additionalProperties": False,
}

SCENARIO_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["subscriptions"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "seed": {"type": "integer"},
        "tenantId": {"type": "string"},
        "subscriptions": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "displayName": {"type": "string"},
                    "resourceGroups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "location": {"type": "string"},
                                "vms": {"type": "array", "items": {"$ref": "#/$defs/vm"}},
                                "arcMachines": {"type": "array", "items": {"$ref": "#/$defs/arcMachine"}},
                                "maintenanceConfigurations": {
                                    "type": "array",
                                    "items": {"$ref": "#/$defs/maintenanceConfiguration"},
                                },
                            },
                        },
                    },
                    "dynamicScopes": {"type": "array", "items": {"$ref": "#/$defs/dynamicScope"}},
                },
            },
        },
        "catalog": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "windows": {"type": "array", "items": {"$ref": "#/$defs/windowsPatch"}},
                "linux": {"type": "array", "items": {"$ref": "#/$defs/linuxPackage"}},
            },
        },
        "eventSubscriptions": {"type": "array", "items": {"$ref": "#/$defs/eventSubscription"}},
        "resourceGraph": {  # emulator/arm/resourcegraph.py: propagation, retention, quota, staleness
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "propagationMinutes": {"type": "number", "minimum": 0},
                "resourcesLagSeconds": {"type": "number", "minimum": 0},
                "retentionDays": {"type": "number", "minimum": 0},
                "assessmentRetentionDays": {"type": "number", "minimum": 0},
                "quota": {"type": "integer", "minimum": 1},
                "quotaWindowSeconds": {"type": "number", "minimum": 0},
                "enforceQuota": {"type": "boolean"},
                "retryAfterOn429": {"type": "boolean"},
                "initialAssessment": {"type": "boolean"},
                "assessAfterInstall": {"type": "boolean"},
            },
        },
        "events": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "freezeMinutesBefore": {"type": "number", "minimum": 0},
                "preEventMinutesBefore": {"type": "number", "minimum": 0},
                "preEventLeadMinutes": {"type": "number", "minimum": 0},
                "cancellationCutOffMinutesBefore": {"type": "number", "minimum": 0},
                "duplicateProbability": {"type": "number", "minimum": 0, "maximum": 1},
                "reorderMaxDelaySeconds": {"type": "number", "minimum": 0},
                "maxDeliveryAttempts": {"type": "integer", "minimum": 1},
                "postEventOnCancel": {"type": "boolean"},
                "freezeInstallParameters": {"type": "boolean"},
                "cancelIfPreEventUndelivered": {"type": "boolean"},
                "cancelRunOnLateEdit": {"type": "boolean"},
                "preEventDeadlineMinutesBefore": {"type": "number", "minimum": 0},
            },
        },
        "auth": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "identities": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "token"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "token": {"type": "string", "minLength": 8},
                            "objectId": {"type": "string"},
                            "actions": {**_STR_LIST, "description": "allowed RBAC actions (globs); omit for all"},
                            "default": {"type": "boolean"},
                        },
                    },
                }
            },
        },
        "lro": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "retryAfterSeconds": {"type": "integer", "minimum": 1},
                "assessMinutes": {"type": "number", "minimum": 0},
                "rebootMinutes": {"type": "number", "minimum": 0},
            },
        },
        "arc": {  # emulator/arm/hybridcompute.py
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "disconnectedOperationMinutes": {
                    "type": "number",
                    "minimum": 0,
                    "description": "an install/assess on a machine that is not Connected fails after this long",
                },
            },
        },
        "paging": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"pageSize": {"type": "integer", "minimum": 1}},
        },
        "throttling": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "reads": _BUCKET,
                "writes": _BUCKET,
                "deletes": _BUCKET,
            },
        },
        "apiVersions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"enforce": {"type": "boolean"}},
        },
        "maintenance": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "rebootSettingStyle": {"enum": ["request", "service"]},
                "enforceGuestWindowLimits": {"type": "boolean"},
            },
        },
        "faults": {"type": "array", "items": {"$ref": "#/$defs/fault"}},
        "timeline": {
            "type": "array",
            "description": "scripted VM state changes at simulated instants",
            "items": {
                "type": "object",
                "required": ["at", "vms"],
                "additionalProperties": False,
                "properties": {
                    "at": {"type": "string"},
                    "vms": {**_STR_LIST, "minItems": 1},
                    "health": {"enum": ["Healthy", "Unhealthy", "Unknown"]},
                    "powerState": {"enum": ["running", "deallocated", "stopped"]},
                    "vmAgent": {"enum": ["Ready", "NotReady"]},
                    "agentStatus": {"enum": _ARC_STATUSES, "description": "Arc machines' agent status"},
                    "tags": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                },
            },
        },
    },
    "$defs": {
        "vm": {
            "type": "object",
            "required": ["name", "os"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                "os": {"enum": ["Windows", "Linux"]},
                "location": {"type": "string"},
                "zone": {"type": ["string", "null"]},
                "availabilitySet": {"type": "string"},
                "size": {"type": "string"},
                "image": {"type": "string"},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "powerState": {"enum": ["running", "deallocated", "stopped"]},
                "vmAgent": {"enum": ["Ready", "NotReady"]},
                "health": {"enum": ["Healthy", "Unhealthy", "Unknown"]},
                "applicationHealthExtension": {"type": "boolean"},
                "patchMode": {"enum": ["AutomaticByPlatform", "AutomaticByOS", "Manual", "ImageDefault"]},
                "bypassPlatformSafetyChecksOnUserSchedule": {"type": "boolean"},
                "installedPatches": _STR_LIST,
                "maintenanceConfigurations": {**_STR_LIST, "description": "resource-level assignments"},
                "resourceGraphLagMinutes": {"type": "number", "minimum": 0},
            },
        },
        "arcMachine": {
            "type": "object",
            "required": ["name", "os"],
            "additionalProperties": False,
            "properties": {
                # Microsoft.HybridCompute machineName: ^[a-zA-Z0-9-_\.]{1,54}$ (arc-and-resource-graph.md §2.2)
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,54}$"},
                "os": {"enum": ["Windows", "Linux"]},
                "osName": {"type": "string"},
                "osSku": {"type": "string"},
                "osVersion": {"type": "string"},
                "agentVersion": {"type": "string"},
                "kind": {"enum": ["AVS", "HCI", "SCVMM", "VMware", "EPS", "GCP", "AWS"]},
                "location": {"type": "string"},
                "status": {"enum": _ARC_STATUSES},
                "lastStatusChange": {"type": "string"},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "health": {"enum": ["Healthy", "Unhealthy", "Unknown"]},
                "patchMode": {"enum": ["AutomaticByPlatform", "AutomaticByOS", "Manual", "ImageDefault"]},
                "installedPatches": _STR_LIST,
                "maintenanceConfigurations": {**_STR_LIST, "description": "resource-level assignments"},
                "resourceGraphLagMinutes": {"type": "number", "minimum": 0},
            },
        },
        "maintenanceConfiguration": {
            "type": "object",
            "required": ["name", "window"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "location": {"type": "string"},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "window": _WINDOW,
                "installPatches": {"type": "object"},
            },
        },
        "dynamicScope": {
            "type": "object",
            "required": ["name", "maintenanceConfiguration", "filter"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "maintenanceConfiguration": {"type": "string", "description": "name or full resource id"},
                "filter": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "resourceTypes": _STR_LIST,
                        "resourceGroups": _STR_LIST,
                        "osTypes": _STR_LIST,
                        "locations": _STR_LIST,
                        "tagSettings": {
                            "type": "object",
                            "properties": {
                                "tags": {"type": "object", "additionalProperties": _STR_LIST},
                                "filterOperator": {"enum": ["All", "Any"]},
                            },
                        },
                    },
                },
            },
        },
        "windowsPatch": {
            "type": "object",
            "required": ["kb", "name"],
            "additionalProperties": False,
            "properties": {
                "kb": {"type": "string", "pattern": "^(KB)?[0-9]+$"},
                "name": {"type": "string"},
                "classification": {"type": "string"},
                "classifications": _STR_LIST,
                "published": {"type": "string"},
                "reboot": {"enum": ["NeverReboots", "AlwaysRequiresReboot", "CanRequestReboot", "Unknown"]},
                "minutes": {"type": "number", "minimum": 0},
            },
        },
        "linuxPackage": {
            "type": "object",
            "required": ["package", "version"],
            "additionalProperties": False,
            "properties": {
                "package": {"type": "string"},
                "version": {"type": "string"},
                "classification": {"enum": ["Critical", "Security", "Other"]},
                "published": {"type": "string"},
                "reboot": {"enum": ["NeverReboots", "AlwaysRequiresReboot", "CanRequestReboot", "Unknown"]},
                "minutes": {"type": "number", "minimum": 0},
            },
        },
        "eventSubscription": {
            "type": "object",
            "required": ["name", "endpoint"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "endpoint": {"type": "string", "pattern": "^https?://"},
                "schema": {"enum": ["EventGridSchema", "CloudEventSchemaV1_0"]},
                "dataKeyCase": {"enum": ["camel", "pascal"]},
                "includedEventTypes": _STR_LIST,
                "configurations": {**_STR_LIST, "description": "maintenance configuration names or ids"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "validate": {"type": "boolean", "description": "run Event Grid's endpoint validation first"},
            },
        },
        "fault": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string"}},
            "oneOf": [
                {
                    "properties": {
                        "type": {"const": "patchFails"},
                        "patch": {"type": "string"},
                        **_SELECTOR,
                        **_ACTIVE,
                    },
                    "additionalProperties": False,
                },
                {
                    "properties": {
                        "type": {"const": "unhealthyAfterPatch"},
                        "patch": {"type": "string"},
                        "recoverAfterMinutes": {"type": "number", "exclusiveMinimum": 0},
                        **_SELECTOR,
                        **_ACTIVE,
                    },
                    "additionalProperties": False,
                },
                {
                    "properties": {"type": {"const": "rebootFails"}, **_SELECTOR, **_ACTIVE},
                    "additionalProperties": False,
                },
                {
                    "properties": {
                        "type": {"const": "operationFails"},
                        "operation": {"enum": ["installPatches", "assessPatches"]},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        **_SELECTOR,
                        **_ACTIVE,
                    },
                    "additionalProperties": False,
                },
                {
                    "properties": {"type": {"enum": ["vmAgentNotReady", "deallocated"]}, **_SELECTOR},
                    "additionalProperties": False,
                },
                {
                    "properties": {
                        "type": {"const": "slowInstall"},
                        "factor": {"type": "number", "exclusiveMinimum": 0},
                        **_SELECTOR,
                        **_ACTIVE,
                    },
                    "additionalProperties": False,
                },
                {
                    "required": ["status"],
                    "properties": {
                        "type": {"const": "httpError"},
                        "status": {"enum": [403, 404, 409, 429, 500, 502, 503]},
                        "retryAfter": {"type": "integer", "minimum": 0},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        **_REQUEST_SELECTOR,
                    },
                    "additionalProperties": False,
                },
                {
                    "properties": {"type": {"const": "dropConnection"}, **_REQUEST_SELECTOR},
                    "additionalProperties": False,
                },
                {
                    "properties": {
                        "type": {"const": "slowAnswer"},
                        "seconds": {"type": "number", "minimum": 0, "maximum": 120},
                        "simulatedSeconds": {"type": "number", "minimum": 0, "maximum": 86400},
                        "processFirst": {"type": "boolean"},
                        **_REQUEST_SELECTOR,
                    },
                    "additionalProperties": False,
                },
                {
                    "required": ["status"],
                    "properties": {
                        "type": {"const": "eventDeliveryError"},
                        "status": {"type": "integer"},
                        "count": {"type": "integer", "minimum": 1},
                        "eventType": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            ],
        },
    },
}


FAULT_TYPES = (
    "patchFails",
    "unhealthyAfterPatch",
    "rebootFails",
    "operationFails",
    "vmAgentNotReady",
    "deallocated",
    "slowInstall",
    "httpError",
    "dropConnection",
    "slowAnswer",
    "eventDeliveryError",
)


def expand_variables(value: Any, variables: dict[str, str], *, where: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of ``value`` (recursively)."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match[1], match[2]
            if name in variables:
                return variables[name]
            if default is not None:
                return default
            raise ScenarioError(
                f"{where or 'scenario'}: variable ${{{name}}} is not defined "
                f"(pass it as --var {name}=VALUE or write ${{{name}:-default}})"
            )

        return _VAR_RE.sub(sub, value)
    if isinstance(value, list):
        return [expand_variables(item, variables, where=f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {k: expand_variables(v, variables, where=f"{where}.{k}" if where else k) for k, v in value.items()}
    return value


def _location(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fault_branch(kind: str) -> int | None:
    """Index of the ``oneOf`` branch of the fault schema for fault type ``kind``."""
    for index, branch in enumerate(SCENARIO_SCHEMA["$defs"]["fault"]["oneOf"]):
        spec = branch["properties"]["type"]
        if spec.get("const") == kind or kind in spec.get("enum", []):
            return index
    return None


def validate_fault(fault: Any) -> None:
    """Validate one fault (as added at run time through the control API); ``ScenarioError`` names the field."""
    validate_scenario({"subscriptions": [{"id": "x"}], "faults": [fault]}, source="fault")


def validate_scenario(document: Any, *, source: str = "scenario") -> None:
    """Raise :class:`ScenarioError` listing every schema violation with its location."""
    validator = jsonschema.Draft202012Validator(SCENARIO_SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    lines = []
    for error in errors[:20]:
        if error.validator == "oneOf" and isinstance(error.instance, dict) and "type" in error.instance:
            # a fault: report the fields that do not fit its type instead of a wall of alternatives
            kind = error.instance["type"]
            where = _location(error.absolute_path)
            if kind not in FAULT_TYPES:
                detail = f"unknown fault type {kind!r} (known: {', '.join(FAULT_TYPES)})"
            else:
                branch = _fault_branch(kind)
                context = error.context or []
                mine = [e for e in context if e.relative_schema_path and e.relative_schema_path[0] == branch]
                known = mine or [e for e in context if e.validator not in {"enum", "const"}]
                detail = known[0].message if known else f"invalid {kind} fault"
                if known and known[0].path:
                    where = f"{where}.{'.'.join(map(str, known[0].path))}"
            lines.append(f"{where}: {detail}")
        else:
            lines.append(f"{_location(error.absolute_path)}: {error.message}")
    raise ScenarioError(f"{source}: invalid scenario:\n  " + "\n  ".join(lines))


def load_scenario(scenario: dict[str, Any] | str | Path, variables: dict[str, str] | None = None) -> dict[str, Any]:
    """Load a scenario (dict, or a ``.yaml``/``.yml``/``.json`` file), expand variables, validate.

    ``FUNCTIONS_HOST`` / ``EVENTGRID_KEY`` fall back to the process environment when not given.
    """
    if isinstance(scenario, dict):
        document: Any = copy.deepcopy(scenario)
        source = "scenario"
    else:
        path = Path(scenario)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{source}: cannot read scenario: {exc.strerror}") from None
        try:
            document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ScenarioError(f"{source}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(document, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping at the top level")
    merged = {k: v for k, v in os.environ.items() if k in ("FUNCTIONS_HOST", "FUNCTIONS_KEY", "EVENTGRID_KEY")}
    merged.update(variables or {})
    document = expand_variables(document, merged, where="")
    validate_scenario(document, source=source)
    return document
