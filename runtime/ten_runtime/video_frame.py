"""``VideoFrame`` and ``PixelFmt`` (§6.6)."""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

from .msg import BufferMixin, Msg, MsgCore, check_int_field

V = TypeVar("V", bound="VideoFrame")


class PixelFmt(IntEnum):
    RGB24 = 1
    RGBA = 2
    BGR24 = 3
    BGRA = 4
    I422 = 5
    I420 = 6
    NV21 = 7
    NV12 = 8


class VideoFrame(Msg, BufferMixin):
    # Unlike AudioFrame, lock/unlock failures raise SystemError.
    _ten_lock_error = SystemError
    _ten_alloc_message = "Invalid video frame size."
    _ten_empty_get_raises = True

    def __init__(self, name: str) -> None:
        raise NotImplementedError("Use VideoFrame.create instead.")

    @classmethod
    def create(cls: type[V], name: str) -> V:
        if not isinstance(name, str):
            raise ValueError(f"name must be a str, got {type(name).__name__}")
        core = MsgCore("video_frame", cls, name)
        core.fields.update(
            {"width": 0, "height": 0, "timestamp": 0, "pixel_fmt": int(PixelFmt.RGBA), "eof": False}
        )
        return cls._ten_from_core(core)

    def get_width(self) -> int:
        return self._c().fields["width"]

    def set_width(self, width: int) -> None:
        self._c().fields["width"] = check_int_field(width, 32, "width")

    def get_height(self) -> int:
        return self._c().fields["height"]

    def set_height(self, height: int) -> None:
        self._c().fields["height"] = check_int_field(height, 32, "height")

    def get_timestamp(self) -> int:
        return self._c().fields["timestamp"]

    def set_timestamp(self, timestamp: int) -> None:
        self._c().fields["timestamp"] = check_int_field(timestamp, 64, "timestamp")

    def get_pixel_fmt(self) -> int:
        return self._c().fields["pixel_fmt"]

    def set_pixel_fmt(self, pixel_fmt: int) -> None:
        self._c().fields["pixel_fmt"] = check_int_field(int(pixel_fmt), 32, "pixel_fmt")

    def is_eof(self) -> bool:
        return bool(self._c().fields["eof"])

    def set_eof(self, eof: bool) -> None:
        self._c().fields["eof"] = bool(eof)
