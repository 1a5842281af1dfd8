"""``Value`` / ``ValueType``: structured values, used for log ``fields`` (§6.8)."""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any, TypeVar

from .error import TenErrorCode, _TenError, make_error

T = TypeVar("T", bound="Value")


class ValueType(IntEnum):
    INVALID = 0
    NULL = 1
    BOOL = 2
    INT = 3
    FLOAT = 4
    STRING = 5
    BYTES = 6
    ARRAY = 7
    OBJECT = 8
    JSON_STRING = 9


_TYPE_WORDS = {
    ValueType.BOOL: "bool",
    ValueType.INT: "int",
    ValueType.FLOAT: "float",
    ValueType.STRING: "string",
    ValueType.BYTES: "bytes",
    ValueType.ARRAY: "array",
    ValueType.OBJECT: "object",
    ValueType.JSON_STRING: "json string",
}


class Value:
    """A typed value container; getters return ``(value, Err | None)``."""

    _type: ValueType
    _data: Any

    def __init__(self, value_type: ValueType, data: Any) -> None:
        self._type = ValueType(value_type)
        self._data = data

    def __repr__(self) -> str:
        return f"Value({self._type.name}, {self._data!r})"

    @classmethod
    def from_null(cls: type[T]) -> T:
        return cls(ValueType.NULL, None)

    @classmethod
    def from_bool(cls: type[T], value: bool) -> T:
        return cls(ValueType.BOOL, bool(value))

    @classmethod
    def from_int(cls: type[T], value: int) -> T:
        return cls(ValueType.INT, int(value))

    @classmethod
    def from_float(cls: type[T], value: float) -> T:
        return cls(ValueType.FLOAT, float(value))

    @classmethod
    def from_string(cls: type[T], value: str) -> T:
        return cls(ValueType.STRING, str(value))

    @classmethod
    def from_buf(cls: type[T], value: bytes) -> T:
        return cls(ValueType.BYTES, bytes(value))

    @classmethod
    def from_array(cls: type[T], value: list[Value]) -> T:
        return cls(ValueType.ARRAY, list(value))

    @classmethod
    def from_object(cls: type[T], value: dict[str, Value]) -> T:
        return cls(ValueType.OBJECT, dict(value))

    @classmethod
    def from_json_string(cls: type[T], value: str) -> T:
        return cls(ValueType.JSON_STRING, str(value))

    @classmethod
    def from_python(cls: type[T], value: Any) -> T:
        """Recurse through lists and dicts; stringify anything unknown."""
        if value is None:
            return cls(ValueType.NULL, None)
        if isinstance(value, Value):
            return cls(value._type, value._data)
        if isinstance(value, bool):
            return cls.from_bool(value)
        if isinstance(value, int):
            return cls.from_int(value)
        if isinstance(value, float):
            return cls.from_float(value)
        if isinstance(value, str):
            return cls.from_string(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls.from_buf(bytes(value))
        if isinstance(value, (list, tuple)):
            return cls.from_array([cls.from_python(v) for v in value])
        if isinstance(value, dict):
            return cls.from_object({str(k): cls.from_python(v) for k, v in value.items()})
        return cls.from_string(str(value))

    def get_type(self) -> ValueType:
        return self._type

    def _get(self, expected: ValueType, default: Any) -> tuple[Any, _TenError | None]:
        if self._type != expected:
            return default, make_error(
                TenErrorCode.ErrorCodeInvalidType,
                f"Value is not {_TYPE_WORDS[expected]}, got {self._type.name}",
            )
        return self._data, None

    def get_bool(self) -> tuple[bool, _TenError | None]:
        return self._get(ValueType.BOOL, False)

    def get_int(self) -> tuple[int, _TenError | None]:
        return self._get(ValueType.INT, 0)

    def get_float(self) -> tuple[float, _TenError | None]:
        return self._get(ValueType.FLOAT, 0.0)

    def get_string(self) -> tuple[str, _TenError | None]:
        return self._get(ValueType.STRING, "")

    def get_buf(self) -> tuple[bytes, _TenError | None]:
        return self._get(ValueType.BYTES, b"")

    def get_array(self) -> tuple[list[Value], _TenError | None]:
        return self._get(ValueType.ARRAY, [])

    def get_object(self) -> tuple[dict[str, Value], _TenError | None]:
        return self._get(ValueType.OBJECT, {})

    def get_json_string(self) -> tuple[str, _TenError | None]:
        return self._get(ValueType.JSON_STRING, "")

    def _to_python(self) -> Any:
        """Plain-Python form (for log fields); raises ValueError if malformed."""
        t = self._type
        if t == ValueType.NULL:
            return None
        if t in (ValueType.BOOL, ValueType.INT, ValueType.FLOAT, ValueType.STRING):
            return self._data
        if t == ValueType.BYTES:
            return bytes(self._data).hex()
        if t == ValueType.ARRAY:
            return [_item_to_python(v) for v in self._data]
        if t == ValueType.OBJECT:
            return {str(k): _item_to_python(v) for k, v in self._data.items()}
        if t == ValueType.JSON_STRING:
            return json.loads(self._data)
        raise ValueError(f"cannot convert a value of type {t.name}")


def _item_to_python(item: Any) -> Any:
    if not isinstance(item, Value):
        raise ValueError(f"array/object items must be Value, got {type(item).__name__}")
    return item._to_python()


def fields_to_python(fields: Value | dict[str, Any] | None) -> Any:
    """Convert log ``fields``; raises ValueError with the reason on failure."""
    if fields is None:
        return None
    if isinstance(fields, Value):
        return fields._to_python()
    if isinstance(fields, dict):
        return Value.from_python(fields)._to_python()
    raise ValueError(f"fields must be a Value or a dict, got {type(fields).__name__}")
