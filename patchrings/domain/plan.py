"""The rollout plan: a versioned, validated document that says how every ring is rolled out.

Validation happens in two passes and reports *every* problem at once, field first
(``rings[1].approval.timeout: must be an ISO-8601 duration such as PT30M``):

1. the JSON Schema ``plan.schema.json`` (draft 2020-12) for shapes, enums and formats;
2. semantic rules the schema cannot express: unique ring names and configurations, scheduled rings
   need a maintenance configuration, ``retag`` needs a tag with a distinct ``holdValue``,
   ``enableConfiguration`` needs a configuration, manual approval needs approvers, phase durations
   make sense, probe patterns compile...

Top-level ``defaults`` (rate, health, install, approval, gate) are deep-merged under each ring
(objects merge, lists and scalars replace), so ``Plan.to_dict()`` carries every ring fully
resolved and round-trips through :func:`load_plan`. ``Plan.hash`` (short sha256 of the canonical
resolved document) identifies the plan a rollout ran with.

The only I/O in the domain is :func:`load_plan_file` (and reading the packaged schema once).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema

from patchrings.domain.approval import ApprovalPolicy
from patchrings.domain.arm_ids import same_arm_id, subscription_of
from patchrings.domain.health import HealthPolicy
from patchrings.domain.quarantine import QuarantinePolicy
from patchrings.domain.rate import RateControl
from patchrings.domain.timeutil import DurationError, format_duration, parse_duration
from patchrings.errors import NotFound, PlanForbidden, PlanInvalid

PatchingMode = Literal["direct", "scheduled"]
OpenMode = Literal["none", "retag", "enableConfiguration"]

PLAN_VERSION = 1

#: Built-in defaults under the plan's own ``defaults`` (documented in plans/README.md).
BUILTIN_DEFAULTS: dict[str, Any] = {
    "rate": {"maxConcurrency": "25%", "maxErrors": 0},
    "health": {
        "installation": {
            "allowWarnings": False,
            "allowPending": False,
            "allowMaintenanceWindowExceeded": False,
            "requireRebootCompleted": True,
        },
        "checks": {"powerState": True, "vmAgent": True, "applicationHealth": "ifPresent"},
        "probes": [],
        "phases": {
            "waitDuration": "PT5M",
            "elasticDuration": "PT30M",
            "healthyStateDuration": "PT15M",
            "pollInterval": "PT1M",
        },
    },
    "install": {
        "rebootSetting": "IfRequired",
        "maximumDuration": "PT2H",
        "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]},
        "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]},
    },
    "approval": {"mode": "none"},
    "gate": {"tolerateErrors": False},
}

#: The promotion margins a plan gets when it sets none (plans/README.md), defined once: land a
#: promotion this long before T-40, decide a scheduled run this long before its cancel deadline.
DEFAULT_T40_MARGIN = timedelta(minutes=5)
DEFAULT_CANCEL_MARGIN = timedelta(minutes=2)
BUILTIN_PROMOTION = {"t40Margin": format_duration(DEFAULT_T40_MARGIN),
                     "cancelMargin": format_duration(DEFAULT_CANCEL_MARGIN)}

#: ``rebootSetting`` forms the Maintenance API returns (Azure/azure-rest-api-specs#27409) → request form
REBOOT_SETTINGS = {
    "ifrequired": "IfRequired",
    "rebootifrequired": "IfRequired",
    "never": "Never",
    "neverreboot": "Never",
    "always": "Always",
    "alwaysreboot": "Always",
}

MAX_INSTALL_DURATION = timedelta(hours=4)


def normalize_reboot_setting(value: str) -> str:
    """``RebootIfRequired`` → ``IfRequired`` etc.; both forms are seen from Azure."""
    try:
        return REBOOT_SETTINGS[str(value).strip().lower()]
    except KeyError:
        raise ValueError(f"rebootSetting must be one of IfRequired, Never, Always (got {value!r})") from None


def canonical_json(doc: Any) -> str:
    """Sorted keys, no whitespace: the form hashes are computed over."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def short_hash(doc: Any) -> str:
    """First 16 hex digits of sha256 over :func:`canonical_json` (64 bits: plenty to name content)."""
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()[:16]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Objects merge recursively; lists and scalars in ``override`` replace ``base``."""
    out: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------------------------
# types


@dataclass(frozen=True)
class TagSelector:
    """VMs whose tag ``name`` equals ``value``; ``hold_value`` is where ``retag`` parks them."""

    name: str
    value: str
    hold_value: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "value": self.value}
        if self.hold_value is not None:
            out["holdValue"] = self.hold_value
        return out


@dataclass(frozen=True)
class Members:
    """How a ring's VMs are found: a tag selector and/or a maintenance configuration, in scope."""

    tag: TagSelector | None = None
    maintenance_configuration_id: str | None = None
    subscriptions: tuple[str, ...] = ()
    resource_groups: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    os_types: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Members:
        tag = doc.get("tag")
        return cls(
            tag=TagSelector(tag["name"], tag["value"], tag.get("holdValue")) if tag else None,
            maintenance_configuration_id=doc.get("maintenanceConfigurationId"),
            subscriptions=tuple(doc.get("subscriptions", ())),
            resource_groups=tuple(doc.get("resourceGroups", ())),
            locations=tuple(doc.get("locations", ())),
            os_types=tuple(doc.get("osTypes", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.tag:
            out["tag"] = self.tag.to_dict()
        if self.maintenance_configuration_id:
            out["maintenanceConfigurationId"] = self.maintenance_configuration_id
        for key, val in (
            ("subscriptions", self.subscriptions),
            ("resourceGroups", self.resource_groups),
            ("locations", self.locations),
            ("osTypes", self.os_types),
        ):
            if val:
                out[key] = list(val)
        return out

    def search_subscriptions(self) -> tuple[str, ...]:
        """Where to look for members: ``subscriptions``, else the configuration's subscription."""
        if self.subscriptions:
            return self.subscriptions
        sub = self.configuration_subscription
        return (sub,) if sub else ()

    @property
    def configuration_subscription(self) -> str | None:
        """The subscription of the maintenance configuration, parsed from its id."""
        if not self.maintenance_configuration_id:
            return None
        try:
            return subscription_of(self.maintenance_configuration_id)
        except ValueError:
            return None


@dataclass(frozen=True)
class Ring:
    """One ring, with every setting resolved (defaults merged)."""

    name: str
    index: int
    members: Members
    patching: PatchingMode
    open_mode: OpenMode
    rate: RateControl
    health: HealthPolicy
    approval: ApprovalPolicy
    install: dict[str, Any]
    tolerate_errors: bool = False
    #: promote this ring even if it holds an OS / image family no VM that passed Ring 0 covered
    #: (issue 13.7; default false: the rollout halts before opening such a ring)
    allow_uncovered_os: bool = False
    description: str | None = None
    assignment_name: str | None = None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], index: int = -1) -> Ring:
        """A ring from its resolved document (``Ring.to_dict()``, the ``ringSpec`` a rollout sends
        its ring-level sub-orchestrations), without validating a plan (it was, when loaded).
        ``index`` is -1 unless given: a ring document does not say where it stands in its plan.
        ``Ring.from_dict(r.to_dict(), r.index) == r``."""
        return _ring_from(doc, index, {})

    @property
    def configuration_id(self) -> str | None:
        return self.members.maintenance_configuration_id

    @property
    def direct(self) -> bool:
        return self.patching == "direct"

    @property
    def scheduled(self) -> bool:
        return self.patching == "scheduled"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        open_doc: dict[str, Any] = {"mode": self.open_mode}
        if self.assignment_name:
            open_doc["assignmentName"] = self.assignment_name
        out.update(
            {
                "members": self.members.to_dict(),
                "patching": self.patching,
                "open": open_doc,
                "rate": self.rate.to_dict(),
                "health": self.health.to_dict(),
                "approval": self.approval.to_dict(),
                "install": copy.deepcopy(self.install),
                "gate": {"tolerateErrors": self.tolerate_errors,
                         # only when set, so plans without it keep their hash
                         **({"allowUncoveredOs": True} if self.allow_uncovered_os else {})},
            }
        )
        return out


@dataclass(frozen=True)
class Promotion:
    """Safety margins for the schedule: land promotions ``t40Margin`` before T-40, decide
    ``cancelMargin`` before the cancel deadline."""

    t40_margin: timedelta = DEFAULT_T40_MARGIN
    cancel_margin: timedelta = DEFAULT_CANCEL_MARGIN

    def to_dict(self) -> dict[str, Any]:
        return {"t40Margin": format_duration(self.t40_margin), "cancelMargin": format_duration(self.cancel_margin)}


@dataclass(frozen=True)
class Plan:
    """A validated rollout plan. Build with :func:`load_plan` / :func:`load_plan_file`."""

    version: int
    name: str
    rings: tuple[Ring, ...]
    promotion: Promotion = Promotion()
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    source: str | None = field(default=None, compare=False)
    #: what the next rollout does about patches a failed gate quarantined (issue 11)
    quarantine: QuarantinePolicy = field(default_factory=QuarantinePolicy)

    def __iter__(self) -> Iterator[Ring]:
        return iter(self.rings)

    @property
    def ring_names(self) -> list[str]:
        return [r.name for r in self.rings]

    def ring(self, name: str) -> Ring:
        """The ring called ``name`` (case-insensitive); raises :class:`NotFound`."""
        for r in self.rings:
            if r.name.lower() == str(name).lower():
                return r
        raise NotFound(f"plan {self.name!r} has no ring {name!r} (rings: {', '.join(self.ring_names)})", field="ring")

    def ring_for_configuration(self, configuration_id: str) -> Ring | None:
        """The ring whose maintenance configuration is ``configuration_id`` (ARM ids case-insensitive)."""
        for r in self.rings:
            if same_arm_id(r.configuration_id, configuration_id):
                return r
        return None

    def next_ring(self, name: str) -> Ring | None:
        """The ring after ``name``, or ``None`` for the last ring."""
        idx = self.ring(name).index
        return self.rings[idx + 1] if idx + 1 < len(self.rings) else None

    def previous_ring(self, name: str) -> Ring | None:
        idx = self.ring(name).index
        return self.rings[idx - 1] if idx > 0 else None

    def quarantine_approval(self) -> ApprovalPolicy | None:
        """Who decides a ``quarantine.onBadManifest: wait`` and for how long: the approvers of the
        first ring that takes manual approval, the plan's ``quarantine.timeout`` (else that ring's
        approval timeout), always rejecting on timeout. None when no ring takes manual approval
        (validation refuses ``wait`` then)."""
        for r in self.rings:
            if r.approval.required and r.approval.approvers:
                return ApprovalPolicy(mode="manual", approvers=r.approval.approvers,
                                      timeout=self.quarantine.timeout or r.approval.timeout, on_timeout="reject")
        return None

    def _body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "name": self.name}
        if self.description:
            out["description"] = self.description
        out["defaults"] = copy.deepcopy(self.defaults)
        out["promotion"] = self.promotion.to_dict()
        if not self.quarantine.is_default:  # only when set, so plans without it keep their hash
            out["quarantine"] = self.quarantine.to_dict()
        out["rings"] = [r.to_dict() for r in self.rings]
        return out

    @property
    def hash(self) -> str:
        """Short sha256 of the canonical resolved plan (without the ``hash`` key)."""
        return short_hash(self._body())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, fully resolved, with ``hash``; ``load_plan(p.to_dict()) == p``."""
        body = self._body()
        body["hash"] = short_hash(body)
        return body

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Plan:
        """Validate ``doc`` (schema and semantic rules) and build it: :func:`load_plan`."""
        return load_plan(doc)

    @classmethod
    def from_resolved(cls, doc: Mapping[str, Any]) -> Plan:
        """The plan of an already resolved and validated document (``Plan.to_dict()``, e.g. what
        the ``load_plan`` activity returned to an orchestrator), without re-running validation.

        Orchestrators hold the plan as that JSON and need typed rings from it on every replay;
        the schema check (and its regular expressions) already ran when the plan was loaded.
        ``Plan.from_resolved(p.to_dict()) == p``. The document is trusted: a section a ring does
        not carry is resolved against the document's ``defaults`` and the built-in defaults as
        :func:`load_plan` does; nothing is checked.
        """
        return _build(doc)


# --------------------------------------------------------------------------------------------
# loading and validation


@cache
def plan_schema() -> dict[str, Any]:
    """The packaged JSON Schema (read once)."""
    text = resources.files("patchrings.domain").joinpath("plan.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = plan_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def field_path(parts: Sequence[str | int]) -> str:
    """``["rings", 1, "approval", "timeout"]`` → ``rings[1].approval.timeout``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _schema_errors(doc: Any) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    for err in _validator().iter_errors(doc):
        path = list(err.absolute_path)
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        if err.validator == "required" and isinstance(err.instance, Mapping):
            for key in err.validator_value:
                if key not in err.instance:
                    errors.append({"field": field_path([*path, key]), "message": "is required"})
            continue
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            allowed = sorted(schema.get("properties", {}))
            for key in err.instance:
                if key not in allowed:
                    errors.append(
                        {
                            "field": field_path([*path, key]),
                            "message": f"unknown field; allowed here: {', '.join(allowed)}",
                        }
                    )
            continue
        if schema.get("x-message"):
            message = schema["x-message"]
        elif err.validator == "enum":
            message = "must be one of: " + ", ".join(str(v) for v in err.validator_value)
        elif err.validator == "const":
            message = f"must be {err.validator_value!r}"
        elif err.validator == "type":
            want = err.validator_value
            names = [want] if isinstance(want, str) else list(want)
            message = "must be " + " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        elif err.validator == "minItems":
            message = f"must have at least {err.validator_value} item(s)"
        elif err.validator == "maxItems":
            message = f"must have at most {err.validator_value} item(s)"
        elif err.validator == "minLength":
            message = (
                "must not be empty"
                if err.validator_value == 1
                else f"must be at least {err.validator_value} characters"
            )
        elif err.validator == "maxLength":
            message = f"must be at most {err.validator_value} characters"
        elif err.validator == "minimum":
            message = f"must be >= {err.validator_value}"
        elif err.validator == "maximum":
            message = f"must be <= {err.validator_value}"
        else:
            message = err.message
        errors.append({"field": field_path(path), "message": message})
    return errors


def _sort_key(e: dict[str, str]) -> tuple[str, str]:
    # rings[10] after rings[9]: pad indices
    return (re.sub(r"\[(\d+)\]", lambda m: f"[{int(m.group(1)):04d}]", e["field"]), e["message"])


def _ring_section(raw_defaults: Mapping[str, Any], ring: Mapping[str, Any], section: str) -> dict[str, Any]:
    merged = deep_merge(BUILTIN_DEFAULTS[section], raw_defaults.get(section, {}))
    if section == "approval" and "approval" in ring:
        # an approval block is one decision: a ring's block replaces the default one
        return dict(ring["approval"])
    return deep_merge(merged, ring.get(section, {}))


def _semantic_errors(doc: Mapping[str, Any]) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []

    def err(path: str, message: str) -> None:
        errors.append({"field": path, "message": message})

    defaults = doc.get("defaults", {})
    seen_names: dict[str, int] = {}
    seen_configs: dict[str, int] = {}
    for i, ring in enumerate(doc["rings"]):
        p = f"rings[{i}]"
        name = ring["name"]
        if name.lower() in seen_names:
            err(f"{p}.name", f"duplicate ring name {name!r} (also rings[{seen_names[name.lower()]}])")
        seen_names.setdefault(name.lower(), i)
        members = ring["members"]
        tag = members.get("tag")
        mc = members.get("maintenanceConfigurationId")
        if not tag and not mc:
            err(f"{p}.members", "needs a tag selector (members.tag) and/or members.maintenanceConfigurationId")
        if mc:
            key = mc.rstrip("/").lower()
            if key in seen_configs:
                err(
                    f"{p}.members.maintenanceConfigurationId",
                    f"configuration already used by rings[{seen_configs[key]}]; each ring needs its own",
                )
            seen_configs.setdefault(key, i)
        patching = ring["patching"]
        open_mode = ring.get("open", {}).get("mode", "none")
        if patching == "scheduled" and not mc:
            err(
                f"{p}.members.maintenanceConfigurationId",
                "is required for a scheduled ring (its maintenance configuration's runs install the patches)",
            )
        if i == 0 and patching != "direct":
            err(
                f"{p}.patching",
                "must be direct for the first ring: its installPatches results are what the manifest "
                "for later rings is built from",
            )
        if open_mode == "retag":
            if not tag:
                err(f"{p}.members.tag", "is required when open.mode is retag (the tag that is moved)")
            elif not tag.get("holdValue"):
                err(f"{p}.members.tag.holdValue", "is required when open.mode is retag (where VMs wait)")
            elif tag["holdValue"] == tag["value"]:
                err(f"{p}.members.tag.holdValue", "must differ from members.tag.value")
        if open_mode == "enableConfiguration" and not mc:
            err(
                f"{p}.members.maintenanceConfigurationId",
                "is required when open.mode is enableConfiguration (the configuration whose assignment is created)",
            )
        if open_mode != "none" and patching == "direct":
            err(
                f"{p}.open.mode",
                f"{open_mode} only applies to scheduled rings; "
                "a direct ring is opened by the rollout itself (use none)",
            )

        # approval
        approval = _ring_section(defaults, ring, "approval")
        ap = f"{p}.approval" if "approval" in ring else "defaults.approval"
        if approval.get("mode") == "manual":
            approvers = approval.get("approvers") or []
            if not approvers:
                err(f"{ap}.approvers", "must list at least one approver when mode is manual")
            lowered = [a.strip().lower() for a in approvers]
            if len(set(lowered)) != len(lowered):
                err(f"{ap}.approvers", "lists the same approver twice")
            timeout = approval.get("timeout", "P1D")
            if _safe_duration(timeout) == timedelta(0):
                err(f"{ap}.timeout", "must be longer than zero")

        # health phases
        health = _ring_section(defaults, ring, "health")
        hp = f"{p}.health" if "health" in ring else "defaults.health"
        phases = health["phases"]
        if _safe_duration(phases["pollInterval"]) <= timedelta(0):
            err(f"{hp}.phases.pollInterval", "must be longer than zero")
        if _safe_duration(phases["elasticDuration"]) <= timedelta(0):
            err(f"{hp}.phases.elasticDuration", "must be longer than zero (time allowed to become healthy)")
        for j, probe in enumerate(health.get("probes", [])):
            pattern = probe.get("bodyPattern")
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    err(f"{hp}.probes[{j}].bodyPattern", f"is not a valid regular expression: {exc}")
            placeholders = set(re.findall(r"\{([^}]*)\}", probe["url"]))
            if placeholders - {"vmName"}:
                err(
                    f"{hp}.probes[{j}].url",
                    "may only contain the placeholder {vmName} (found "
                    + ", ".join("{" + x + "}" for x in sorted(placeholders - {"vmName"}))
                    + ")",
                )

        # install
        install = _ring_section(defaults, ring, "install")
        ip = f"{p}.install" if "install" in ring else "defaults.install"
        if "maximumDuration" in install:
            d = _safe_duration(install["maximumDuration"])
            if d > MAX_INSTALL_DURATION or d < timedelta(minutes=30):
                err(f"{ip}.maximumDuration", "must be between PT30M and PT4H (Azure installPatches limits)")

    quarantine = doc.get("quarantine") or {}
    if quarantine.get("onBadManifest") == "wait" and not any(
            _ring_section(defaults, ring, "approval").get("mode") == "manual" for ring in doc["rings"]):
        err("quarantine.onBadManifest", "wait needs a person to decide, and no ring takes manual approval "
                                        "(its approvers decide): give a ring approval.mode manual, or use exclude")
    if "timeout" in quarantine and _safe_duration(quarantine["timeout"]) == timedelta(0):
        err("quarantine.timeout", "must be longer than zero")

    margin_keys = doc.get("promotion", {})
    for key in ("t40Margin", "cancelMargin"):
        if key in margin_keys and _safe_duration(margin_keys[key]) > timedelta(minutes=30):
            err(f"promotion.{key}", "must be at most PT30M (AUM's pre-event budget is 20 minutes)")
    return errors


def _safe_duration(text: Any) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError:
        return timedelta(0)


def validate_plan(doc: Any) -> list[dict[str, str]]:
    """All problems with ``doc`` as ``[{field, message}]``, sorted by field; empty when valid."""
    errors = _schema_errors(doc)
    if not errors and isinstance(doc, Mapping):
        errors = _semantic_errors(doc)
    return sorted(errors, key=_sort_key)


def _normalize_install(install: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(install)
    if "rebootSetting" in out:
        out["rebootSetting"] = normalize_reboot_setting(out["rebootSetting"])
    if "maximumDuration" in out:
        out["maximumDuration"] = format_duration(parse_duration(out["maximumDuration"]))
    return out


def load_plan(doc: Mapping[str, Any], *, source: str | None = None) -> Plan:
    """Validate and build a :class:`Plan`; raises :class:`PlanInvalid` listing every problem.

    A ``hash`` key (as written by ``Plan.to_dict``) is accepted and ignored.
    """
    if not isinstance(doc, Mapping):
        raise PlanInvalid([{"field": "", "message": "a plan must be a JSON object"}], source=source)
    errors = validate_plan(doc)
    if errors:
        raise PlanInvalid(errors, source=source)
    return _build(doc, source=source)


def _build(doc: Mapping[str, Any], *, source: str | None = None) -> Plan:
    """The :class:`Plan` of a document that is already valid (no validation here)."""
    defaults = copy.deepcopy(dict(doc.get("defaults", {})))
    rings = [_ring_from(raw, i, defaults) for i, raw in enumerate(doc["rings"])]
    promo = deep_merge(BUILTIN_PROMOTION, doc.get("promotion", {}))
    return Plan(
        version=int(doc.get("version", PLAN_VERSION)),
        name=doc["name"],
        rings=tuple(rings),
        promotion=Promotion(parse_duration(promo["t40Margin"]), parse_duration(promo["cancelMargin"])),
        defaults=defaults,
        description=doc.get("description"),
        source=source,
        quarantine=QuarantinePolicy.from_dict(doc.get("quarantine")),
    )


def _ring_from(raw: Mapping[str, Any], index: int, defaults: Mapping[str, Any]) -> Ring:
    """The :class:`Ring` of one ring document, resolved against ``defaults`` (no validation)."""
    opened = raw.get("open") or {"mode": "none"}
    if isinstance(opened, str):  # a hand-written ring document may say just the mode
        opened = {"mode": opened}
    return Ring(
        name=raw["name"],
        index=index,
        members=Members.from_dict(raw.get("members") or {}),
        patching=raw.get("patching", "direct"),
        open_mode=opened.get("mode", "none"),
        rate=RateControl.from_dict(_ring_section(defaults, raw, "rate")),
        health=HealthPolicy.from_dict(_ring_section(defaults, raw, "health")),
        approval=ApprovalPolicy.from_dict(_ring_section(defaults, raw, "approval")),
        install=_normalize_install(_ring_section(defaults, raw, "install")),
        tolerate_errors=bool(_ring_section(defaults, raw, "gate").get("tolerateErrors", False)),
        allow_uncovered_os=bool(_ring_section(defaults, raw, "gate").get("allowUncoveredOs", False)),
        description=raw.get("description"),
        assignment_name=opened.get("assignmentName"),
    )


def load_plan_file(path: str | Path) -> Plan:
    """Read and validate a plan file (the domain's one I/O function)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanInvalid(
            [{"field": "", "message": f"cannot read plan file {p}: {exc.strerror or exc}"}], source=str(p)
        ) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanInvalid(
            [{"field": "", "message": f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"}],
            source=str(p),
        ) from exc
    return load_plan(doc, source=str(p))


# --------------------------------------------------------------------------------------------
# inline plans (issue 13.9): a plan that comes with a start request or in the orchestration's
# input may only restrict the deployed plan. Pure; the HTTP API (``triggers/inline_plans.py``)
# and the ``load_plan`` activity (a direct start through the Durable client) both call these.

def _inline_approvers(ring: Ring) -> set[str]:
    return {a.strip().lower() for a in ring.approval.approvers}


def _ring_weakenings(i: int, mine: Ring, theirs: Ring) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    at = f"plan.rings[{i}]"

    def bad(field: str, message: str) -> None:
        out.append({"field": f"{at}.{field}", "message": message})

    if mine.members.to_dict() != theirs.members.to_dict():
        bad("members", f"must be the deployed plan's members of ring {theirs.name!r}")
    if mine.patching != theirs.patching:
        bad("patching", f"must be {theirs.patching!r} as in the deployed plan")
    if (mine.open_mode, mine.assignment_name) != (theirs.open_mode, theirs.assignment_name):
        bad("open", "must be the deployed plan's open mode")
    if mine.health.to_dict() != theirs.health.to_dict():
        bad("health", f"must be the deployed plan's health policy of ring {theirs.name!r}")
    if mine.tolerate_errors and not theirs.tolerate_errors:
        bad("gate.tolerateErrors", "may not be turned on: the deployed plan does not tolerate errors")
    if mine.allow_uncovered_os and not theirs.allow_uncovered_os:
        bad("gate.allowUncoveredOs", "may not be turned on: the deployed plan refuses OS families Ring 0 did not cover")
    if theirs.rate.wave_schedule == "geometric" and mine.rate.wave_schedule != "geometric":
        bad("rate.waveSchedule", "must be 'geometric' as in the deployed plan (smaller first waves)")
    max_errors = mine.rate.max_errors.to_json()
    if max_errors not in (theirs.rate.max_errors.to_json(), 0):
        bad("rate.maxErrors", f"must be {theirs.rate.max_errors.to_json()!r} (the deployed value) or 0")
    if theirs.approval.required:
        if not mine.approval.required:
            bad("approval.mode", f"must be 'manual': ring {theirs.name!r} needs a person's approval")
        else:
            extra = sorted(a for a in mine.approval.approvers if a.strip().lower() not in _inline_approvers(theirs))
            if extra:
                bad("approval.approvers", f"{', '.join(extra)} may not approve ring {theirs.name!r} "
                                          "(not an approver in the deployed plan)")
            if mine.approval.on_timeout == "approve":
                if theirs.approval.on_timeout != "approve":
                    bad("approval.onTimeout", "must be 'reject' as in the deployed plan")
                elif mine.approval.timeout < theirs.approval.timeout:
                    bad("approval.timeout", "may not be shorter than the deployed timeout when onTimeout is 'approve'")
    return out


def plan_weakenings(inline: Plan, deployed: Plan) -> list[dict[str, str]]:
    """Every way ``inline`` is weaker than ``deployed`` (``[]`` = acceptable)."""
    problems: list[dict[str, str]] = []
    names = [r.name for r in inline.rings]
    expected = [r.name for r in deployed.rings][: len(names)]
    if [n.lower() for n in names] != [n.lower() for n in expected]:
        problems.append({
            "field": "plan.rings",
            "message": f"rings must be the deployed plan's rings in order (a prefix of "
                       f"{', '.join(r.name for r in deployed.rings)}); got {', '.join(names)}",
        })
        return problems
    for i, (mine, theirs) in enumerate(zip(inline.rings, deployed.rings, strict=False)):
        problems.extend(_ring_weakenings(i, mine, theirs))
    if inline.quarantine != deployed.quarantine:
        problems.append({"field": "plan.quarantine",
                         "message": f"must be the deployed plan's quarantine ({deployed.quarantine.to_dict()})"})
    if inline.promotion.to_dict() != deployed.promotion.to_dict():
        problems.append({"field": "plan.promotion", "message": "must be the deployed plan's promotion margins"})
    return problems


def check_inline_plan(inline: Plan, deployed: Plan, *, enabled: bool) -> None:
    """Raise :class:`PlanForbidden` unless inline plans are enabled and ``inline`` weakens nothing."""
    if not enabled:
        raise PlanForbidden(
            "a plan in the start request is not accepted: the deployed plan is used "
            "(inline plans are off; PATCHRINGS_INLINE_PLANS enables restricting ones, locally)",
            field="plan",
        )
    problems = plan_weakenings(inline, deployed)
    if problems:
        first = problems[0]
        raise PlanForbidden(
            f"the plan in the request weakens the deployed plan: {len(problems)} problem(s); first: "
            f"{first['field']}: {first['message']}",
            field=first["field"],
            details=problems,
        )

