"""Typed value tree: the stand-in for TEN's ``ten_value_t``.

Every property store (extension, app, message) is a tree of :class:`TValue`.
The type tag keeps apart what JSON blurs: int widths vs floats (JSON ``1`` is
uint64, ``-1`` int64, ``1.0`` float64), bool vs int, buf vs string, null.

Paths use TEN's syntax: dot-separated object keys with ``[n]`` array
subscripts (``params.items[0].name``); the empty path means the root.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
INT_TYPES = frozenset(INT_RANGES)
FLOAT_TYPES = frozenset({"float32", "float64"})
SCALAR_TYPES = INT_TYPES | FLOAT_TYPES | {"bool", "string", "buf", "ptr", "null"}
ALL_TYPES = SCALAR_TYPES | {"array", "object"}


class TValue:
    """One node of the tree: a type tag plus Python data.

    ``data`` is: None (null), bool, int, float, str, bytearray (buf),
    list[TValue] (array) or dict[str, TValue] (object, insertion ordered).
    """

    __slots__ = ("data", "type")

    def __init__(self, type_: str, data: Any) -> None:
        self.type = type_
        self.data = data

    def __repr__(self) -> str:
        return f"TValue({self.type}, {self.data!r})"

    @property
    def is_int(self) -> bool:
        return self.type in INT_TYPES

    @property
    def is_float(self) -> bool:
        return self.type in FLOAT_TYPES

    def clone(self) -> TValue:
        if self.type == "object":
            return TValue("object", {k: v.clone() for k, v in self.data.items()})
        if self.type == "array":
            return TValue("array", [v.clone() for v in self.data])
        if self.type == "buf":
            return TValue("buf", bytearray(self.data))
        return TValue(self.type, self.data)


def new_object() -> TValue:
    return TValue("object", {})


# ---------------------------------------------------------------------------
# JSON <-> TValue


class JsonError(ValueError):
    """Text is not valid JSON (TEN uses yyjson, which rejects NaN/Infinity)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def parse_json_text(text: str) -> Any:
    """Parse JSON like yyjson would: strict, no NaN/Infinity."""
    if not isinstance(text, str):
        raise JsonError(f"JSON text must be a string, got {type(text).__name__}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise JsonError(str(exc)) from None


def from_py(obj: Any) -> TValue:
    """Convert a JSON-decoded Python value (or a simple Python value)."""
    if obj is None:
        return TValue("null", None)
    if isinstance(obj, bool):
        return TValue("bool", obj)
    if isinstance(obj, int):
        if 0 <= obj <= INT_RANGES["uint64"][1]:
            return TValue("uint64", obj)
        if INT_RANGES["int64"][0] <= obj < 0:
            return TValue("int64", obj)
        # Beyond 64 bits yyjson falls back to a real number.
        return TValue("float64", float(obj))
    if isinstance(obj, float):
        return TValue("float64", obj)
    if isinstance(obj, str):
        return TValue("string", obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return TValue("buf", bytearray(obj))
    if isinstance(obj, dict):
        return TValue("object", {str(k): from_py(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return TValue("array", [from_py(v) for v in obj])
    raise TypeError(f"unsupported value type {type(obj).__name__}")


def from_json_text(text: str) -> TValue:
    return from_py(parse_json_text(text))


def to_py(value: TValue) -> Any:
    """Convert to plain Python for JSON output.

    A buf has no JSON form; like the native converter it comes out as null.
    A non-finite float also has no JSON form and comes out as null.
    """
    t = value.type
    if t == "object":
        return {k: to_py(v) for k, v in value.data.items()}
    if t == "array":
        return [to_py(v) for v in value.data]
    if t in ("buf", "ptr", "null"):
        return None
    if t in FLOAT_TYPES and not math.isfinite(value.data):
        return None
    return value.data


def to_json_text(value: TValue, pretty: bool = True) -> str:
    """JSON text; pretty output mimics yyjson's (4-space indent, order kept)."""
    if pretty:
        # The same text as json.dumps(to_py(value), indent=4, ensure_ascii=False),
        # whose indenting encoder is pure Python: this runs for every message
        # property read (e.g. each audio frame's metadata), so it writes the text
        # directly, with the C string encoder for the leaves.
        parts: list[str] = []
        _pretty(value, "\n", parts)
        return "".join(parts)
    return json.dumps(to_py(value), ensure_ascii=False, separators=(",", ":"))


_encode_string = json.encoder.encode_basestring
_INDENT = "    "


def _pretty(value: TValue, newline: str, out: list[str]) -> None:
    """Append `value` as indented JSON; `newline` is a newline plus the current indent."""
    t = value.type
    if t == "object":
        items = value.data
        if not items:
            out.append("{}")
            return
        inner = newline + _INDENT
        separator = "{" + inner
        for key, item in items.items():
            out.append(separator)
            out.append(_encode_string(key))
            out.append(": ")
            _pretty(item, inner, out)
            separator = "," + inner
        out.append(newline + "}")
    elif t == "array":
        items = value.data
        if not items:
            out.append("[]")
            return
        inner = newline + _INDENT
        separator = "[" + inner
        for item in items:
            out.append(separator)
            _pretty(item, inner, out)
            separator = "," + inner
        out.append(newline + "]")
    elif t == "string":
        out.append(_encode_string(value.data))
    else:
        out.append(json.dumps(to_py(value)))


# ---------------------------------------------------------------------------
# Paths


class PathError(ValueError):
    """The path text cannot be parsed."""


def parse_path(path: str) -> list[str | int]:
    """``"a.b[0].c"`` -> ``["a", "b", 0, "c"]``; ``""`` -> ``[]``."""
    if path == "":
        return []
    segments: list[str | int] = []
    for part in path.split("."):
        if part == "":
            raise PathError(f"empty segment in path '{path}'")
        key, sep, rest = part.partition("[")
        if key:
            segments.append(key)
        elif not segments and not sep:
            raise PathError(f"empty segment in path '{path}'")
        if sep:
            rest = "[" + rest
            while rest:
                if not rest.startswith("["):
                    raise PathError(f"unexpected text after ']' in path '{path}'")
                close = rest.find("]")
                if close < 0:
                    raise PathError(f"unclosed '[' in path '{path}'")
                index_text = rest[1:close]
                if not index_text.isdigit():
                    raise PathError(f"array index must be a non-negative integer in '{path}'")
                segments.append(int(index_text))
                rest = rest[close + 1 :]
    return segments


def get_path(root: TValue, path: str) -> TValue | None:
    """The value at ``path`` or None (missing, bad path, or through a leaf)."""
    try:
        segments = parse_path(path)
    except PathError:
        return None
    cur = root
    for seg in segments:
        if isinstance(seg, int):
            if cur.type != "array" or seg >= len(cur.data):
                return None
            cur = cur.data[seg]
        else:
            if cur.type != "object" or seg not in cur.data:
                return None
            cur = cur.data[seg]
    return cur


def set_path(root: TValue, path: str, value: TValue) -> str | None:
    """Store ``value`` at ``path``, creating intermediate objects/arrays.

    Setting past the end of an array pads it with nulls.  Returns an error
    message, or None on success.  ``root`` must be an object.
    """
    try:
        segments = parse_path(path)
    except PathError as exc:
        return str(exc)
    if not segments:
        return "path should not be empty."
    if isinstance(segments[0], int):
        return f"path '{path}' starts with an array index but the store is an object"
    cur = root
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        nxt = None if last else segments[i + 1]
        if isinstance(seg, int):
            if cur.type != "array":
                return f"path '{path}' indexes a value of type {cur.type}"
            while len(cur.data) <= seg:
                cur.data.append(TValue("null", None))
            if last:
                cur.data[seg] = value
                return None
            child = cur.data[seg]
        else:
            if cur.type != "object":
                return f"path '{path}' reaches into a value of type {cur.type}"
            if last:
                cur.data[seg] = value
                return None
            child = cur.data.get(seg)
        if child is None or child.type == "null":
            child = TValue("array", []) if isinstance(nxt, int) else new_object()
            if isinstance(seg, int):
                cur.data[seg] = child
            else:
                cur.data[seg] = child
        cur = child
    return None  # pragma: no cover - loop always returns


def iter_string_leaves(value: TValue) -> Iterator[TValue]:
    """Every string node at any depth (for ``${env:...}`` substitution)."""
    if value.type == "string":
        yield value
    elif value.type == "object":
        for child in value.data.values():
            yield from iter_string_leaves(child)
    elif value.type == "array":
        for child in value.data:
            yield from iter_string_leaves(child)


def deep_merge(base: TValue, over: TValue) -> None:
    """Merge ``over`` into ``base`` in place (graph over file, §9.3).

    Objects on both sides merge recursively; anything else is replaced by a
    clone of the graph value; keys only in ``base`` are kept.
    """
    for key, over_child in over.data.items():
        base_child = base.data.get(key)
        if base_child is not None and base_child.type == "object" and over_child.type == "object":
            deep_merge(base_child, over_child)
        else:
            base.data[key] = over_child.clone()


def structurally_equal(a: Any, b: Any) -> bool:
    """Deep equality of JSON-decoded values that keeps 1 and 1.0 (and True) apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(structurally_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(structurally_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
