"""Manifest ``api`` schemas: flatten (with the conflict rule), adjust, validate.

§10.3: the manifest's api and every interface it imports (recursively) are
merged by key.  The same property name or message name (per direction) must
have an identical definition everywhere; any mismatch, any unloadable or
repeated import makes the flatten fail, and then the runtime installs *no
schema at all* for that extension (logged, not fatal).

§10.4: a value is first *adjusted* (int width with range check, int -> float
when a float is declared; float -> int and other mismatches refused), then
*validated* (types, ``required``).  Undeclared keys are allowed.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from .values import (
    ALL_TYPES,
    FLOAT_TYPES,
    INT_RANGES,
    INT_TYPES,
    TValue,
    structurally_equal,
)

MSG_KINDS = ("cmd", "data", "audio_frame", "video_frame")
MSG_SECTIONS = tuple(f"{kind}_{d}" for kind in MSG_KINDS for d in ("in", "out"))


class SchemaDefinitionError(ValueError):
    """The schema text itself is malformed."""


class SchemaViolation(ValueError):
    """A value does not fit its schema."""


def _where(path: str) -> str:
    return f" (at '{path}')" if path else ""


@dataclass
class ValueSchema:
    type: str
    properties: dict[str, ValueSchema] | None = None
    items: ValueSchema | None = None
    required: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, obj: Any, where: str) -> ValueSchema:
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise SchemaDefinitionError(f"{where}: a value type needs a string 'type'")
        type_ = obj["type"]
        if type_ not in ALL_TYPES or type_ == "null":
            raise SchemaDefinitionError(f"{where}: unknown type '{type_}'")
        schema = cls(type_)
        if type_ == "array":
            if "items" not in obj or "properties" in obj:
                raise SchemaDefinitionError(
                    f"{where}: 'array' requires 'items', forbids 'properties'"
                )
            schema.items = cls.parse(obj["items"], f"{where}.items")
        elif type_ == "object":
            if "properties" not in obj or "items" in obj:
                raise SchemaDefinitionError(
                    f"{where}: 'object' requires 'properties', forbids 'items'"
                )
            schema.properties = cls.parse_properties(obj["properties"], where)
            schema.required = _parse_required(obj.get("required"), where)
        return schema

    @classmethod
    def parse_properties(cls, obj: Any, where: str) -> dict[str, ValueSchema]:
        if not isinstance(obj, dict):
            raise SchemaDefinitionError(f"{where}: 'properties' must be an object")
        return {name: cls.parse(sub, f"{where}.{name}") for name, sub in obj.items()}

    @classmethod
    def object_of(cls, section: Any, where: str) -> ValueSchema | None:
        """Schema of a ``{properties, required}`` section (property store, msg props)."""
        if section is None:
            return None
        if not isinstance(section, dict):
            raise SchemaDefinitionError(f"{where}: must be an object")
        return cls(
            "object",
            properties=cls.parse_properties(section.get("properties", {}), where),
            required=_parse_required(section.get("required"), where),
        )

    # -- adjust ------------------------------------------------------------

    def adjust(self, value: TValue, path: str = "") -> TValue:
        """Coerce ``value`` to this schema; returns the (possibly new) value."""
        want, have = self.type, value.type
        if want in INT_TYPES:
            if value.is_int:
                low, high = INT_RANGES[want]
                if not low <= value.data <= high:
                    raise SchemaViolation(
                        f"the value {value.data} is out of range of {want}{_where(path)}"
                    )
                return TValue(want, value.data)
            raise SchemaViolation(f"unsupported conversion from `{have}` to `{want}`{_where(path)}")
        if want in FLOAT_TYPES:
            if value.is_int or value.is_float:
                number = float(value.data)
                if want == "float32":
                    # Stored at float32 precision, as natively (0.1 -> 0.10000000149011612).
                    try:
                        number = struct.unpack("<f", struct.pack("<f", number))[0]
                    except OverflowError:
                        raise SchemaViolation(
                            f"the value {value.data} is out of range of float32{_where(path)}"
                        ) from None
                return TValue(want, number)
            raise SchemaViolation(f"unsupported conversion from `{have}` to `{want}`{_where(path)}")
        if want != have:
            raise SchemaViolation(f"unsupported conversion from `{have}` to `{want}`{_where(path)}")
        if want == "object" and self.properties:
            for name, sub in self.properties.items():
                child = value.data.get(name)
                if child is not None:
                    value.data[name] = sub.adjust(child, f"{path}.{name}" if path else name)
        elif want == "array" and self.items is not None:
            value.data[:] = [
                self.items.adjust(item, f"{path}[{i}]") for i, item in enumerate(value.data)
            ]
        return value

    # -- validate ----------------------------------------------------------

    def validate(self, value: TValue, path: str = "") -> None:
        want, have = self.type, value.type
        if want != have:
            raise SchemaViolation(f"the type should be `{want}`, not `{have}`{_where(path)}")
        if want in INT_TYPES:
            low, high = INT_RANGES[want]
            if not low <= value.data <= high:
                raise SchemaViolation(
                    f"the value {value.data} is out of range of {want}{_where(path)}"
                )
        if want == "object":
            for name in self.required:
                if name not in value.data:
                    raise SchemaViolation(
                        f"the property '{name}' is required but missing{_where(path)}"
                    )
            for name, sub in (self.properties or {}).items():
                child = value.data.get(name)
                if child is not None:
                    sub.validate(child, f"{path}.{name}" if path else name)
        elif want == "array" and self.items is not None:
            for i, item in enumerate(value.data):
                self.items.validate(item, f"{path}[{i}]")

    def check(self, value: TValue, path: str = "") -> TValue:
        """Adjust then validate; raises SchemaViolation."""
        adjusted = self.adjust(value, path)
        self.validate(adjusted, path)
        return adjusted


def _parse_required(obj: Any, where: str) -> list[str]:
    if obj is None:
        return []
    if not isinstance(obj, list) or not all(isinstance(x, str) for x in obj):
        raise SchemaDefinitionError(f"{where}: 'required' must be a list of names")
    return list(obj)


@dataclass
class MsgSchema:
    property: ValueSchema | None
    result: ValueSchema | None


@dataclass
class SchemaStore:
    """What an extension's manifest declares, after flattening."""

    property: ValueSchema | None = None
    msgs: dict[str, dict[str, MsgSchema]] = field(default_factory=dict)  # section -> name -> schema

    def msg_schema(self, kind: str, direction: str, name: str) -> MsgSchema | None:
        return self.msgs.get(f"{kind}_{direction}", {}).get(name)

    def top_level_property(self, name: str) -> ValueSchema | None:
        if self.property is None or not self.property.properties:
            return None
        return self.property.properties.get(name)


# ---------------------------------------------------------------------------
# Flattening


class FlattenError(ValueError):
    pass


def _resolve_import(import_uri: str, base_dir: str, app_base_dir: str | None) -> str:
    if not isinstance(import_uri, str) or not import_uri:
        raise FlattenError("an interface entry needs a non-empty 'import_uri'")
    uri = import_uri
    if "${app_base_dir}" in uri:
        if not app_base_dir:
            raise FlattenError(f"cannot resolve '{import_uri}': the app base dir is unknown")
        uri = uri.replace("${app_base_dir}", app_base_dir)
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        raise FlattenError(f"cannot load '{import_uri}': the stand-in does not fetch http(s) URIs")
    if parsed.scheme == "file":
        return os.path.realpath(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise FlattenError(f"unsupported URL scheme '{parsed.scheme}' in import_uri: {import_uri}")
    path = uri if os.path.isabs(uri) else os.path.join(base_dir, uri)
    return os.path.realpath(path)


def _load_interface(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise FlattenError(f"failed to read interface file {path}: {exc}") from None
    except ValueError as exc:
        raise FlattenError(f"failed to parse interface file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise FlattenError(f"interface file {path} is not a JSON object")
    return data


def _collect(
    api: dict[str, Any],
    base_dir: str,
    app_base_dir: str | None,
    seen: set[str],
    out: list[dict[str, Any]],
) -> None:
    out.append(api)
    interfaces = api.get("interface") or []
    if not isinstance(interfaces, list):
        raise FlattenError("'interface' must be a list")
    for entry in interfaces:
        if not isinstance(entry, dict):
            raise FlattenError("an 'interface' entry must be an object")
        real = _resolve_import(entry.get("import_uri", ""), base_dir, app_base_dir)
        # Like the Rust flattener: a file loaded twice (cycle or diamond) fails.
        if real in seen:
            raise FlattenError(f"Circular reference detected: {real}")
        seen.add(real)
        _collect(_load_interface(real), os.path.dirname(real), app_base_dir, seen, out)


def flatten_api(api: dict[str, Any], manifest_dir: str, app_base_dir: str | None) -> dict[str, Any]:
    """Merge the api with its interfaces; raises FlattenError on any conflict."""
    if not api.get("interface"):
        return api
    parts: list[dict[str, Any]] = []
    _collect(api, manifest_dir, app_base_dir, set(), parts)

    properties: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {s: {} for s in MSG_SECTIONS}
    for part in parts:
        prop_section = part.get("property")
        if isinstance(prop_section, dict):
            for name, definition in (prop_section.get("properties") or {}).items():
                if name in properties and not structurally_equal(properties[name], definition):
                    raise FlattenError(f"Conflicting property '{name}': values do not match")
                properties.setdefault(name, definition)
        for section in MSG_SECTIONS:
            for msg in part.get(section) or []:
                if not isinstance(msg, dict) or not isinstance(msg.get("name"), str):
                    raise FlattenError(f"a '{section}' entry needs a 'name'")
                known = sections[section].get(msg["name"])
                if known is not None and not structurally_equal(known, msg):
                    raise FlattenError(
                        f"Conflicting {section} message '{msg['name']}': properties, "
                        "required fields, or result do not match"
                    )
                sections[section].setdefault(msg["name"], msg)

    # The top-level ``required`` is not carried over when interfaces are merged.
    merged: dict[str, Any] = {}
    if properties:
        merged["property"] = {"properties": properties}
    for section, msgs in sections.items():
        if msgs:
            merged[section] = list(msgs.values())
    return merged


def build_schema_store(
    manifest: dict[str, Any] | None,
    manifest_dir: str,
    app_base_dir: str | None,
    log_warn: Callable[[str], None],
) -> SchemaStore | None:
    """The extension's schema store, or None when it has none (or flatten failed)."""
    if not manifest or not isinstance(manifest.get("api"), dict):
        return None
    try:
        api = flatten_api(manifest["api"], manifest_dir, app_base_dir)
    except FlattenError as exc:
        log_warn(f"Failed to flatten manifest api definition: {exc}; no schema is installed.")
        return None
    try:
        store = SchemaStore(property=ValueSchema.object_of(api.get("property"), "api.property"))
        for section in MSG_SECTIONS:
            table: dict[str, MsgSchema] = {}
            for msg in api.get(section) or []:
                where = f"api.{section}.{msg.get('name')}"
                result_section = msg.get("result")
                table[msg["name"]] = MsgSchema(
                    property=ValueSchema.object_of(msg.get("property"), f"{where}.property"),
                    result=ValueSchema.object_of(
                        result_section.get("property")
                        if isinstance(result_section, dict)
                        else None,
                        f"{where}.result.property",
                    ),
                )
            if table:
                store.msgs[section] = table
    except (SchemaDefinitionError, AttributeError, KeyError, TypeError) as exc:
        log_warn(f"Invalid schema in manifest api definition: {exc}; no schema is installed.")
        return None
    return store
