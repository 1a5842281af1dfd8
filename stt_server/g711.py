"""G.711 mu-law and A-law conversion (ITU-T G.711), without ``audioop``.

``audioop`` is deprecated and gone in Python 3.13, so the decode tables are
computed here from the standard's bit layout, and the encoders follow the
classic reference implementation (the one ``audioop`` also used), so bytes
produced here match what other G.711 encoders produce.
"""

from __future__ import annotations

import numpy as np

ENCODINGS = ("mulaw", "alaw")


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - magnitude if code & 0x80 else magnitude - 0x84


def _alaw_to_linear(code: int) -> int:
    code ^= 0x55
    segment = (code & 0x70) >> 4
    magnitude = (code & 0x0F) << 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


ULAW_DECODE = np.array([_ulaw_to_linear(c) for c in range(256)], dtype=np.int16)
ALAW_DECODE = np.array([_alaw_to_linear(c) for c in range(256)], dtype=np.int16)

# Upper bounds of the 8 segments, in the reduced ranges the encoders work in.
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _as_int16(samples: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if isinstance(samples, np.ndarray):
        return samples.astype(np.int16, copy=False)
    return np.frombuffer(bytes(samples), dtype="<i2")


def ulaw_encode(samples: bytes | np.ndarray) -> bytes:
    """Signed 16-bit samples (array or little-endian bytes) to mu-law bytes."""
    x = _as_int16(samples).astype(np.int32) >> 2  # 14-bit range
    mask = np.where(x < 0, 0x7F, 0xFF)
    x = np.minimum(np.abs(x), 8159) + 0x21  # clip, add the bias
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, x, side="left")
    code = (segment << 4) | ((x >> np.minimum(segment + 1, 15)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code) ^ mask
    return code.astype(np.uint8).tobytes()


def alaw_encode(samples: bytes | np.ndarray) -> bytes:
    """Signed 16-bit samples (array or little-endian bytes) to A-law bytes."""
    x = _as_int16(samples).astype(np.int32) >> 3  # 13-bit range
    negative = x < 0
    mask = np.where(negative, 0x55, 0xD5)
    x = np.where(negative, -x - 1, x)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, x, side="left")
    mantissa = np.where(segment < 2, x >> 1, x >> np.maximum(segment, 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa) ^ mask
    return code.astype(np.uint8).tobytes()


def decode(data: bytes | bytearray | memoryview, encoding: str) -> np.ndarray:
    """G.711 bytes to an int16 array ("pcm" input is read as int16 LE)."""
    if encoding == "pcm":
        return _as_int16(data)
    codes = np.frombuffer(bytes(data), dtype=np.uint8)
    if encoding == "mulaw":
        return ULAW_DECODE[codes]
    if encoding == "alaw":
        return ALAW_DECODE[codes]
    raise ValueError(f"unknown encoding {encoding!r}")


def encode(samples: bytes | np.ndarray, encoding: str) -> bytes:
    """int16 samples to the wire encoding ("pcm": int16 little-endian bytes)."""
    if encoding == "pcm":
        return _as_int16(samples).astype("<i2").tobytes()
    if encoding == "mulaw":
        return ulaw_encode(samples)
    if encoding == "alaw":
        return alaw_encode(samples)
    raise ValueError(f"unknown encoding {encoding!r}")


def roundtrip(samples: np.ndarray, encoding: str) -> np.ndarray:
    """What int16 samples become after encoding and decoding (identity for pcm)."""
    if encoding == "pcm":
        return samples.astype(np.int16)
    return decode(encode(samples, encoding), encoding)
