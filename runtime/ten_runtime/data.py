"""``Data``: a fire-and-forget message with properties and an optional buffer (§6.4)."""

from __future__ import annotations

from typing import TypeVar

from .msg import BufferMixin, Msg, MsgCore

D = TypeVar("D", bound="Data")


class Data(Msg, BufferMixin):
    _ten_lock_error = SystemError
    _ten_alloc_message = "Invalid buffer size."
    _ten_empty_get_raises = False

    def __init__(self, name: str) -> None:
        raise NotImplementedError("Use Data.create instead.")

    @classmethod
    def create(cls: type[D], name: str) -> D:
        if not isinstance(name, str):
            raise ValueError(f"name must be a str, got {type(name).__name__}")
        return cls._ten_from_core(MsgCore("data", cls, name))
