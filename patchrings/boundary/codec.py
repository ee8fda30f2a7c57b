"""The one place where durable-boundary dataclasses become JSON-ready dicts and back.

Why one place: every activity and sub-orchestration input crosses the Durable history as JSON.
Writing ``{"rolloutId": ..., "ring": ...}`` by hand at each call site (and reading it back with
``spec.get(...)`` at each receiver) let the two sides drift; here a dataclass declares the shape
once and :func:`to_payload` / :func:`from_payload` do the conversion for all of them.

Rules (kept small on purpose, so the JSON stays byte-compatible with the documented contract):

* a field ``run_id`` is the JSON key ``runId`` (snake_case → camelCase); ``field(metadata=
  {"key": "..."})`` names a key that does not follow that rule;
* a field whose value is ``None`` is left out of the payload (optional keys are absent, as
  before), unless its metadata says ``{"keep_none": True}``;
* ``datetime`` values are written as RFC 3339 UTC with ``Z`` and parsed back from any ISO form;
  nested dataclasses, ``list[...]``/``tuple[...]`` of them and ``X | None`` are converted
  recursively; anything else (str, int, float, bool, dict, Any) passes through unchanged;
* reading, unknown keys are ignored (a newer caller may send more: at-least-once delivery across
  a deployment means both versions meet) and a missing required key raises
  :class:`BoundaryInvalid` naming the field;
* an *open* input (the ledger's record activities store every key they do not name as a column;
  ``notify`` publishes its whole input) declares one ``dict`` field with ``metadata={"rest": True}``:
  reading, it receives every key the dataclass does not name (and a named key that came as
  ``null``, so the JSON written back is the JSON read); writing, its keys go back at the top level.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar, Union, overload

from patchrings.domain.timeutil import format_instant, parse_instant
from patchrings.errors import PatchRingsError

__all__ = ["BoundaryInvalid", "from_payload", "json_key", "to_payload"]

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")


class BoundaryInvalid(PatchRingsError):
    """A durable input or output does not have the shape its dataclass declares."""

    code = "BoundaryInvalid"
    http_status = 400


def json_key(field: dataclasses.Field[Any]) -> str:
    """The JSON key of a dataclass field: ``metadata["key"]`` or the camelCase of its name."""
    explicit = field.metadata.get("key")
    if explicit:
        return str(explicit)
    head, *rest = field.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _rest_field(cls: type) -> dataclasses.Field[Any] | None:
    return next((f for f in dataclasses.fields(cls) if f.metadata.get("rest")), None)


@overload
def to_payload(value: DataclassInstance) -> dict[str, Any]: ...
@overload
def to_payload(value: Any) -> Any: ...
def to_payload(value: Any) -> Any:
    """A dataclass (or a list / dict holding them) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if field.metadata.get("rest"):
                rest = dict(item or {})
                continue
            if item is None and not field.metadata.get("keep_none"):
                continue
            out[json_key(field)] = to_payload(item)
        for key, item in rest.items():
            out.setdefault(key, to_payload(item))
        return out
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, (list, tuple)):
        return [to_payload(item) for item in value]
    if isinstance(value, dict):
        return {key: to_payload(item) for key, item in value.items()}
    return value


def from_payload(cls: type[T], data: Any, *, where: str = "") -> T:
    """Build ``cls`` from JSON data; raises :class:`BoundaryInvalid` naming the bad field."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise BoundaryInvalid(f"{where or cls.__name__}: expected an object, got {type(data).__name__}",
                              field=where or None)
    hints = _hints(cls)  # type: ignore[arg-type]  # classes are hashable
    kwargs: dict[str, Any] = {}
    rest = _rest_field(cls)
    named = {json_key(f) for f in dataclasses.fields(cls) if not f.metadata.get("rest")}  # type: ignore[arg-type]
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not field.init or field is rest:
            continue
        key = json_key(field)
        path = f"{where}.{key}" if where else key
        if key in data and (data[key] is not None or _optional(hints[field.name])):
            kwargs[field.name] = _convert(hints[field.name], data[key], path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise BoundaryInvalid(f"{cls.__name__}: {path} is required", field=path)
    if rest is not None:
        kwargs[rest.name] = {key: item for key, item in data.items() if key not in named or item is None}
    return cls(**kwargs)


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint) or hint is Any


def _convert(hint: Any, value: Any, path: str) -> Any:
    if hint is Any or value is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, path)
        for option in options:  # the first dataclass / datetime that fits, else as is
            if isinstance(option, type) and dataclasses.is_dataclass(option) and isinstance(value, Mapping):
                return from_payload(option, value, where=path)
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise BoundaryInvalid(f"{path}: expected a list, got {type(value).__name__}", field=path)
        args = typing.get_args(hint)
        item_hint = args[0] if args else Any
        items = [_convert(item_hint, item, f"{path}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple or hint is tuple else items
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_payload(hint, value, where=path)
    if hint is datetime:
        try:
            return parse_instant(value)
        except (ValueError, TypeError) as exc:
            raise BoundaryInvalid(f"{path}: not an ISO-8601 instant: {value!r}", field=path) from exc
    return value
