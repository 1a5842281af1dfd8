"""Marker audio: every 10 ms frame carries its own index and a speech flag.

It lets a test prove that audio arrived exactly once, in order, aligned, and
that reported times are exact, across any number of reconnects.

Frame layout (signed 16-bit samples at the stream's rate):

- samples 0..56: a header, one bit per sample, carried in the sample's sign
  (bit 1 = +HEADER_LEVEL, bit 0 = -HEADER_LEVEL): 16 magic bits, the 32-bit
  frame index (most significant bit first), the speech flag, and an 8-bit
  check. Signs survive G.711 mu-law/A-law, so marker audio works with every
  encoding; the level is low so a silence frame stays quiet for energy VADs.
- the rest: a 1 kHz tone for speech frames, zeros for silence frames.

A frame is 10 ms: rate/100 samples. At 22050 Hz that is 220.5, so frame k
spans samples [k*rate//100, (k+1)*rate//100): 220 or 221 samples by the
parity of the frame's own (global) index, which the decoder reads from the
header before it knows the frame's length.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from stt_server import g711

MAGIC = 0xB38F
HEADER_LEVEL = 128
HEADER_SAMPLES = 16 + 32 + 1 + 8
TONE_HZ = 1000
TONE_LEVEL = 8000
MIN_SAMPLE_RATE = 8000  # 80 samples a frame: room for the header

_POWERS_16 = 1 << np.arange(15, -1, -1, dtype=np.int64)
_POWERS_32 = 1 << np.arange(31, -1, -1, dtype=np.int64)
_POWERS_8 = 1 << np.arange(7, -1, -1, dtype=np.int64)


@dataclass(frozen=True)
class MarkerFrame:
    """One decoded 10 ms frame.

    position: frame number in the decoded stream (0-based).
    byte_offset: where the frame starts in the decoded stream, in bytes of
        16-bit samples (for G.711 input: bytes of the decoded samples / 2).
    index, is_speech: from the header; None when the header is unreadable.
    error: None for a well-formed frame, else "bad header" (misaligned or
        corrupt), "bad payload" (header fine, samples after it altered) or
        "truncated" (the stream ends inside the frame).
    """

    position: int
    byte_offset: int
    index: int | None
    is_speech: bool | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def frame_samples(index: int, sample_rate: int) -> int:
    """Samples in frame `index` (rate/100, alternating 220/221 at 22050 Hz)."""
    return (index + 1) * sample_rate // 100 - index * sample_rate // 100


def _check(index: int, is_speech: bool) -> int:
    value = 0xA5 ^ int(is_speech)
    for shift in (24, 16, 8, 0):
        value ^= (index >> shift) & 0xFF
    return value


def _bits(value: int, width: int) -> list[int]:
    return [(value >> shift) & 1 for shift in range(width - 1, -1, -1)]


@lru_cache(maxsize=64)
def _payload(is_speech: bool, n: int, sample_rate: int) -> np.ndarray:
    if not is_speech:
        return np.zeros(n, dtype=np.int16)
    t = np.arange(n) / sample_rate
    return np.round(TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


@lru_cache(maxsize=128)
def _expected_payload(is_speech: bool, n: int, sample_rate: int, encoding: str) -> np.ndarray:
    """The payload as it looks after the wire encoding (G.711 alters the tone)."""
    return g711.roundtrip(_payload(is_speech, n, sample_rate), encoding)


def frame(index: int, is_speech: bool, sample_rate: int = 16000) -> np.ndarray:
    """The int16 samples of frame `index`."""
    if not 0 <= index < 2**32:
        raise ValueError("marker index must fit in 32 bits")
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"marker audio needs at least {MIN_SAMPLE_RATE} Hz")
    bits = _bits(MAGIC, 16) + _bits(index, 32) + [int(is_speech)]
    bits += _bits(_check(index, is_speech), 8)
    header = np.where(np.array(bits) == 1, HEADER_LEVEL, -HEADER_LEVEL).astype(np.int16)
    n = frame_samples(index, sample_rate)
    return np.concatenate([header, _payload(is_speech, n - HEADER_SAMPLES, sample_rate)])


def generate(
    pattern: Iterable[tuple[bool, int]],
    sample_rate: int = 16000,
    start_index: int = 0,
) -> bytes:
    """Marker audio as int16 little-endian bytes.

    pattern: runs of (is_speech, n_frames), e.g. [(False, 20), (True, 100)];
    frame indices count up from start_index across the runs. Encode the
    result with stt_server.g711.encode for mulaw/alaw streams.
    """
    frames: list[np.ndarray] = []
    index = start_index
    for is_speech, count in pattern:
        for _ in range(count):
            frames.append(frame(index, bool(is_speech), sample_rate))
            index += 1
    if not frames:
        return b""
    return np.concatenate(frames).astype("<i2").tobytes()


def _read_header(header: np.ndarray) -> tuple[int, bool] | None:
    bits = (header > 0).astype(np.int64)
    if int(bits[:16] @ _POWERS_16) != MAGIC:
        return None
    index = int(bits[16:48] @ _POWERS_32)
    is_speech = bool(bits[48])
    if int(bits[49:57] @ _POWERS_8) != _check(index, is_speech):
        return None
    return index, is_speech


class MarkerDecoder:
    """Streaming decoder: feed int16 samples in any slices, get whole frames back."""

    def __init__(self, sample_rate: int, encoding: str = "pcm") -> None:
        self.sample_rate = sample_rate
        self.encoding = encoding
        self._buffer = np.zeros(0, dtype=np.int16)
        self._position = 0
        self._sample_offset = 0
        self._expected_index: int | None = None

    def feed(self, samples: np.ndarray) -> list[tuple[MarkerFrame, np.ndarray]]:
        """Decode every complete frame; keep the rest for the next call."""
        buffer = np.concatenate([self._buffer, samples]) if len(self._buffer) else samples
        decoded: list[tuple[MarkerFrame, np.ndarray]] = []
        start = 0
        while len(buffer) - start >= HEADER_SAMPLES:
            header = _read_header(buffer[start : start + HEADER_SAMPLES])
            # A bad header says nothing about the frame's length: assume the
            # frame the stream should hold next, so one glitch is one error.
            guess = self._expected_index if self._expected_index is not None else self._position
            n = frame_samples(header[0] if header else guess, self.sample_rate)
            if len(buffer) - start < n:
                break
            samples_of_frame = buffer[start : start + n]
            decoded.append((self._frame(header, samples_of_frame), samples_of_frame))
            start += n
        self._buffer = buffer[start:].copy()
        return decoded

    def _frame(self, header: tuple[int, bool] | None, samples: np.ndarray) -> MarkerFrame:
        position, offset = self._position, self._sample_offset * 2
        self._position += 1
        self._sample_offset += len(samples)
        if header is None:
            if self._expected_index is not None:
                self._expected_index += 1
            return MarkerFrame(position, offset, None, None, "bad header")
        index, is_speech = header
        self._expected_index = index + 1
        payload = samples[HEADER_SAMPLES:]
        expected = _expected_payload(is_speech, len(payload), self.sample_rate, self.encoding)
        error = None if np.array_equal(payload, expected) else "bad payload"
        return MarkerFrame(position, offset, index, is_speech, error)

    def flush(self) -> list[MarkerFrame]:
        """End of stream: a leftover partial frame is reported as truncated."""
        if not len(self._buffer):
            return []
        leftover = self._buffer
        self._buffer = np.zeros(0, dtype=np.int16)
        header = (
            _read_header(leftover[:HEADER_SAMPLES]) if len(leftover) >= HEADER_SAMPLES else None
        )
        position, offset = self._position, self._sample_offset * 2
        self._position += 1
        self._sample_offset += len(leftover)
        index, is_speech = header if header else (None, None)
        return [MarkerFrame(position, offset, index, is_speech, "truncated")]


def decode(data: bytes, sample_rate: int = 16000, encoding: str = "pcm") -> list[MarkerFrame]:
    """Decode a whole marker stream as sent on the wire (int16 LE, mulaw or alaw).

    Every frame is reported, malformed ones with an error; an odd trailing
    byte of a pcm stream counts as a truncated frame.
    """
    odd_byte = encoding == "pcm" and len(data) % 2 == 1
    if odd_byte:
        data = data[:-1]
    decoder = MarkerDecoder(sample_rate, encoding)
    frames = [marker for marker, _ in decoder.feed(g711.decode(data, encoding))]
    frames += decoder.flush()
    if odd_byte and (not frames or frames[-1].error != "truncated"):
        frames.append(MarkerFrame(len(frames), len(data), None, None, "truncated"))
    return frames
