"""``Msg``: base of every message, plus the message record the runtime moves.

A Python message object is a thin handle over a :class:`MsgCore` record.
Sending *moves* the record into the runtime and detaches it from the handle:
that is the "invalidation" of §5.2 (``ValueError("Msg is invalidated.")``).
The receiving side gets a fresh handle of the same class over the record.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from ._core.values import (
    JsonError,
    TValue,
    get_path,
    new_object,
    parse_json_text,
    set_path,
    to_json_text,
)
from ._core.values import (
    from_py as tvalue_from_py,
)
from .error import TenErrorCode, _TenError, make_error, not_found
from .loc import Loc

M = TypeVar("M", bound="Msg")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def new_cmd_id() -> str:
    return uuid.uuid4().hex


class MsgCore:
    """Everything a message carries; owned by exactly one handle or the runtime."""

    __slots__ = (
        "buf",
        "cmd_id",
        "dests",
        "extra",
        "fields",
        "is_completed",
        "is_final",
        "kind",
        "locks",
        "name",
        "parent_cmd_id",
        "props",
        "py_class",
        "source",
        "status",
    )

    def __init__(self, kind: str, py_class: type[Msg], name: str) -> None:
        self.kind = kind  # cmd | cmd_result | data | audio_frame | video_frame
        self.py_class = py_class
        self.name = name
        self.props: TValue = new_object()
        self.dests: list[tuple[str | None, str | None, str | None]] = []
        self.source: tuple[str | None, str | None, str | None] | None = None
        self.cmd_id: str | None = new_cmd_id() if kind == "cmd" else None
        self.parent_cmd_id: str | None = None
        self.status = 0
        self.is_final = True
        self.is_completed = False
        self.fields: dict[str, Any] = {}
        self.buf: bytearray | None = None
        self.locks: list[memoryview] = []
        self.extra: dict[str, Any] = {}

    def clone(self) -> MsgCore:
        other = MsgCore.__new__(MsgCore)
        other.kind = self.kind
        other.py_class = self.py_class
        other.name = self.name
        other.props = self.props.clone()
        other.dests = list(self.dests)
        other.source = self.source
        if self.cmd_id is not None:
            other.cmd_id = new_cmd_id()
            other.parent_cmd_id = self.cmd_id
        else:
            other.cmd_id = None
            other.parent_cmd_id = self.parent_cmd_id
        other.status = self.status
        other.is_final = self.is_final
        other.is_completed = False
        other.fields = dict(self.fields)
        other.buf = None if self.buf is None else bytearray(self.buf)
        other.locks = []
        other.extra = dict(self.extra)
        return other

    def wrap(self) -> Msg:
        """A new Python handle of the original class over this record."""
        return self.py_class._ten_from_core(self)


def _check_path(path: object) -> str:
    if not isinstance(path, str):
        raise ValueError(f"path must be a str, got {type(path).__name__}")
    return path


def _is_ten_namespace(path: str) -> bool:
    # A first segment ``ten`` addresses built-in message fields, not properties.
    return path == "ten" or path.startswith(("ten.", "ten["))


def _type_error(value: TValue, target: str) -> _TenError:
    return make_error(
        TenErrorCode.ErrorCodeGeneric,
        f"The conversion from {value.type} to {target} is unfit.",
    )


class Msg:
    """Base class of all messages (``ten_runtime.msg.Msg``)."""

    _core: MsgCore | None

    def __init__(self, name: str) -> None:
        raise NotImplementedError("Use [Cmd|Data|VideoFrame|AudioFrame].create instead.")

    @classmethod
    def _ten_from_core(cls: type[M], core: MsgCore) -> M:
        obj = object.__new__(cls)
        obj._core = core
        return obj

    # -- ownership ---------------------------------------------------------

    def _c(self) -> MsgCore:
        core = self._core
        if core is None:
            raise ValueError("Msg is invalidated.")
        return core

    def _ten_take(self) -> MsgCore:
        """Move the record out of this handle (the send path calls this)."""
        core = self._c()
        self._core = None
        return core

    # -- identity and routing ----------------------------------------------

    def get_name(self) -> str:
        return self._c().name

    def set_name(self, name: str) -> None:
        if not isinstance(name, str):
            raise ValueError(f"name must be a str, got {type(name).__name__}")
        self._c().name = name

    def get_source(self) -> Loc:
        source = self._c().source
        if source is None:
            return Loc(None, None, None)
        return Loc(*source)

    def set_dests(self, locs: list[Loc]) -> _TenError | None:
        core = self._c()
        dests: list[tuple[str | None, str | None, str | None]] = []
        for loc in locs:
            if not isinstance(loc, Loc):
                raise ValueError(f"dests must be Loc objects, got {type(loc).__name__}")
            if loc.app_uri is None:
                return make_error(TenErrorCode.ErrorCodeInvalidArgument, "App URI cannot be empty.")
            if loc.extension_name is not None and loc.graph_id is None:
                return make_error(
                    TenErrorCode.ErrorCodeInvalidArgument,
                    "Graph ID cannot be empty when extension name is provided.",
                )
            dests.append((loc.app_uri, loc.graph_id, loc.extension_name))
        core.dests = dests
        return None

    # -- properties --------------------------------------------------------

    def get_property_to_json(self, path: str | None = None) -> tuple[str, _TenError | None]:
        core = self._c()
        if path is None or path == "":
            return to_json_text(core.props), None
        path = _check_path(path)
        value = None if _is_ten_namespace(path) else get_path(core.props, path)
        if value is None:
            return "", not_found(path)
        return to_json_text(value), None

    def set_property_from_json(self, path: str | None, json_str: str) -> _TenError | None:
        core = self._c()
        try:
            parsed = tvalue_from_py(parse_json_text(json_str))
        except (JsonError, TypeError):
            return make_error(TenErrorCode.ErrorCodeInvalidJSON, str(json_str))
        if path is None or path == "":
            if parsed.type != "object":
                return make_error(
                    TenErrorCode.ErrorCodeInvalidArgument,
                    "The JSON must be an object to replace all properties.",
                )
            core.props = parsed
            return None
        return self._set(_check_path(path), parsed)

    def _get(self, path: str) -> tuple[TValue | None, _TenError | None]:
        core = self._c()
        path = _check_path(path)
        value = None if _is_ten_namespace(path) else get_path(core.props, path)
        if value is None:
            return None, not_found(path)
        return value, None

    def _set(self, path: str, value: TValue) -> _TenError | None:
        core = self._c()
        if path == "":
            return make_error(TenErrorCode.ErrorCodeInvalidArgument, "path should not be empty.")
        if _is_ten_namespace(path):
            return make_error(
                TenErrorCode.ErrorCodeInvalidArgument,
                "'ten' is reserved for built-in message fields.",
            )
        problem = set_path(core.props, path, value)
        if problem is not None:
            return make_error(TenErrorCode.ErrorCodeInvalidArgument, problem)
        return None

    def get_property_string(self, path: str) -> tuple[str, _TenError | None]:
        value, err = self._get(path)
        if value is None:
            return "", err
        if value.type != "string":
            return "", make_error(TenErrorCode.ErrorCodeInvalidArgument, "Value is not string.")
        return value.data, None

    def set_property_string(self, path: str, value: str) -> _TenError | None:
        _check_path(path)
        if not isinstance(value, str):
            raise ValueError(f"value must be a str, got {type(value).__name__}")
        return self._set(path, TValue("string", value))

    def get_property_int(self, path: str) -> tuple[int, _TenError | None]:
        value, err = self._get(path)
        if value is None:
            return 0, err
        if not value.is_int:
            return 0, _type_error(value, "int64")
        return value.data, None

    def set_property_int(self, path: str, value: int) -> _TenError | None:
        _check_path(path)
        if not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"value must be an int64, got {value!r}")
        return self._set(path, TValue("int64", int(value)))

    def get_property_float(self, path: str) -> tuple[float, _TenError | None]:
        value, err = self._get(path)
        if value is None:
            return 0.0, err
        if not value.is_float:
            return 0.0, _type_error(value, "float64")
        return value.data, None

    def set_property_float(self, path: str, value: float) -> _TenError | None:
        _check_path(path)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"value must be a float, got {type(value).__name__}")
        return self._set(path, TValue("float64", float(value)))

    def get_property_bool(self, path: str) -> tuple[bool, _TenError | None]:
        value, err = self._get(path)
        if value is None:
            return False, err
        if value.type != "bool":
            return False, _type_error(value, "bool")
        return value.data, None

    def set_property_bool(self, path: str, value: int) -> _TenError | None:
        _check_path(path)
        if not isinstance(value, int):
            raise ValueError(f"value must be a bool or int, got {type(value).__name__}")
        return self._set(path, TValue("bool", int(value) > 0))

    def get_property_buf(self, path: str) -> tuple[bytearray, _TenError | None]:
        value, err = self._get(path)
        if value is None:
            return bytearray(), err
        if value.type != "buf":
            return bytearray(), _type_error(value, "buf")
        return bytearray(value.data), None

    def set_property_buf(self, path: str, value: bytes) -> _TenError | None:
        _check_path(path)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(f"value must be bytes, got {type(value).__name__}")
        if len(value) == 0:
            raise ValueError("Invalid buffer size.")
        return self._set(path, TValue("buf", bytearray(value)))

    def clone(self: M) -> M:
        return type(self)._ten_from_core(self._c().clone())


class BufferMixin:
    """alloc/lock/unlock/get of the payload buffer of Data and frames."""

    # Per class: error raised for lock/unlock failures, alloc message, and
    # whether get_buf() of an unallocated buffer is an error (frames) or empty.
    _ten_lock_error: type[Exception] = SystemError
    _ten_alloc_message = "Invalid buffer size."
    _ten_empty_get_raises = False

    _c: Any  # provided by Msg (listed first in the concrete classes' bases)

    def alloc_buf(self, size: int) -> None:
        core = self._c()
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(self._ten_alloc_message)
        if core.locks:
            raise self._ten_lock_error("Cannot reallocate a locked buffer.")
        core.buf = bytearray(size)

    def lock_buf(self) -> memoryview:
        core = self._c()
        if core.buf is None:
            raise self._ten_lock_error("Failed to lock buffer: no buffer allocated.")
        view = memoryview(core.buf)
        core.locks.append(view)
        return view

    def unlock_buf(self, buf: memoryview) -> None:
        core = self._c()
        for i, view in enumerate(core.locks):
            if view is buf or (isinstance(buf, memoryview) and buf.obj is view.obj):
                del core.locks[i]
                return
        raise self._ten_lock_error(
            "Failed to unlock buffer: it is not a locked buffer of this msg."
        )

    def get_buf(self) -> bytearray:
        core = self._c()
        if core.buf is None:
            if self._ten_empty_get_raises:
                raise SystemError("Failed to get buffer.")
            return bytearray()
        return bytearray(core.buf)


def check_int_field(value: object, bits: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an int, got {type(value).__name__}")
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not low <= value <= high:
        raise ValueError(f"{what} is out of range of int{bits}: {value}")
    return value
