"""``AudioFrame`` and ``AudioFrameDataFmt`` (§6.5).

Fields are stored as given; none is derived from or checked against the buffer.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

from .msg import BufferMixin, Msg, MsgCore, check_int_field

A = TypeVar("A", bound="AudioFrame")


class AudioFrameDataFmt(IntEnum):
    INTERLEAVE = 1
    NON_INTERLEAVE = 2


_DEFAULTS = {
    "timestamp": 0,
    "sample_rate": 0,
    "bytes_per_sample": 0,
    "samples_per_channel": 0,
    "number_of_channels": 0,
    "data_fmt": int(AudioFrameDataFmt.INTERLEAVE),
    "line_size": 0,
    "eof": False,
}


class AudioFrame(Msg, BufferMixin):
    _ten_lock_error = RuntimeError
    _ten_alloc_message = "Invalid audio frame size."
    # Native quirk Q9: get_buf() of an unallocated frame raises SystemError.
    _ten_empty_get_raises = True

    def __init__(self, name: str) -> None:
        raise NotImplementedError("Use AudioFrame.create instead.")

    @classmethod
    def create(cls: type[A], name: str) -> A:
        if not isinstance(name, str):
            raise ValueError(f"name must be a str, got {type(name).__name__}")
        core = MsgCore("audio_frame", cls, name)
        core.fields.update(_DEFAULTS)
        return cls._ten_from_core(core)

    def _field(self, key: str) -> int:
        return self._c().fields[key]

    def _set_int(self, key: str, value: int, bits: int) -> None:
        self._c().fields[key] = check_int_field(value, bits, key)

    def get_timestamp(self) -> int:
        return self._field("timestamp")

    def set_timestamp(self, timestamp: int) -> None:
        self._set_int("timestamp", timestamp, 64)

    def get_sample_rate(self) -> int:
        return self._field("sample_rate")

    def set_sample_rate(self, sample_rate: int) -> None:
        self._set_int("sample_rate", sample_rate, 32)

    def get_bytes_per_sample(self) -> int:
        return self._field("bytes_per_sample")

    def set_bytes_per_sample(self, bytes_per_sample: int) -> None:
        self._set_int("bytes_per_sample", bytes_per_sample, 32)

    def get_samples_per_channel(self) -> int:
        return self._field("samples_per_channel")

    def set_samples_per_channel(self, samples_per_channel: int) -> None:
        self._set_int("samples_per_channel", samples_per_channel, 32)

    def get_number_of_channels(self) -> int:
        return self._field("number_of_channels")

    def set_number_of_channels(self, number_of_channels: int) -> None:
        self._set_int("number_of_channels", number_of_channels, 32)

    def get_data_fmt(self) -> int:
        return self._field("data_fmt")

    def set_data_fmt(self, data_fmt: int) -> None:
        self._set_int("data_fmt", int(data_fmt), 32)

    def get_line_size(self) -> int:
        return self._field("line_size")

    def set_line_size(self, line_size: int) -> None:
        self._set_int("line_size", line_size, 32)

    def is_eof(self) -> bool:
        return bool(self._field("eof"))

    def set_eof(self, is_eof: bool) -> None:
        self._c().fields["eof"] = bool(is_eof)
