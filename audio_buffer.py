"""The outgoing queue: audio frames and finalize markers, in arrival order, bounded in ms of audio.

The session owns one `AudioBuffer`. Everything the user pushes goes through
it, connected or not, so there is exactly one path to the socket and one
order: a finalize marker sits between the frames pushed before it and those
pushed after it. Frames are kept whole-sample aligned (a chunk that ends
mid-sample lends its tail to the next chunk), so dropping whole frames never
shifts the samples that follow.

Every frame knows where it starts in the user's stream (dropped audio
included): that is what makes the session timeline exact across reconnects
and drops.
"""

from __future__ import annotations

import array
import math
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from .timeline import AudioFormat

# Speech is "loud enough": the server's VAD uses -40 dBFS too.
SPEECH_THRESHOLD_DBFS = -40.0
# Loudness is estimated on at most this many samples per frame, taken as a few
# contiguous windows spread over the frame (a stride could alias a tone away).
_LEVEL_WINDOWS = 8
_LEVEL_WINDOW = 100


@dataclass(frozen=True)
class AudioFrame:
    data: bytes
    start_ms: Fraction  # position of the first byte in the user's stream
    duration_ms: Fraction
    speech: bool  # loud enough to count as speech (for the stall watchdog)


@dataclass(frozen=True)
class FinalizeMarker:
    finalize_id: str


QueueItem = AudioFrame | FinalizeMarker


@dataclass(frozen=True)
class DropReport:
    dropped_ms: float
    total_dropped_ms: float
    frames: int


def _g711_table(kind: str) -> list[int]:
    """Linear 16-bit value of each G.711 byte (ITU-T G.711 expansion)."""
    table: list[int] = []
    for byte in range(256):
        if kind == "mulaw":
            u = ~byte & 0xFF
            sign = u & 0x80
            exponent = (u >> 4) & 0x07
            mantissa = u & 0x0F
            magnitude = ((mantissa << 3) + 0x84) << exponent
            value = magnitude - 0x84
        else:
            a = byte ^ 0x55
            sign = a & 0x80
            exponent = (a >> 4) & 0x07
            mantissa = a & 0x0F
            if exponent == 0:
                value = (mantissa << 4) + 8
            else:
                value = ((mantissa << 4) + 0x108) << (exponent - 1)
            sign = 0 if sign else 0x80  # A-law: a set sign bit means positive
        table.append(-value if sign else value)
    return table


_G711 = {"mulaw": _g711_table("mulaw"), "alaw": _g711_table("alaw")}


def level_dbfs(data: bytes, encoding: str) -> float:
    """RMS level of a frame in dBFS (-inf for digital silence or no samples)."""
    if encoding == "pcm":
        usable = len(data) - len(data) % 2
        samples = array.array("h")
        samples.frombytes(data[:usable])
        if sys.byteorder == "big":
            samples.byteswap()
        values: list[int] | array.array[int] = samples
    else:
        table = _G711[encoding]
        values = [table[b] for b in data]
    count = len(values)
    if count == 0:
        return -math.inf
    if count <= _LEVEL_WINDOWS * _LEVEL_WINDOW:
        windows = [values]
    else:
        last = count - _LEVEL_WINDOW
        starts = (k * last // (_LEVEL_WINDOWS - 1) for k in range(_LEVEL_WINDOWS))
        windows = [values[i : i + _LEVEL_WINDOW] for i in starts]
    picked = sum(len(w) for w in windows)
    power = sum(v * v for w in windows for v in w) / picked
    if power <= 0:
        return -math.inf
    return 10 * math.log10(power / (32768.0 * 32768.0))


def is_speech(data: bytes, encoding: str) -> bool:
    return level_dbfs(data, encoding) > SPEECH_THRESHOLD_DBFS


class AudioBuffer:
    """Frames waiting for a socket, plus the finalize markers between them."""

    def __init__(self, fmt: AudioFormat, max_ms: int) -> None:
        self._fmt = fmt
        self.max_ms = max_ms
        self._items: deque[QueueItem] = deque()
        self._queued_ms = Fraction(0)
        self._carry = b""
        self._position_ms = Fraction(0)  # user stream position of the next byte pushed
        self.total_dropped_ms = Fraction(0)
        self.dropped_frames = 0

    @property
    def format(self) -> AudioFormat:
        return self._fmt

    def set_format(self, fmt: AudioFormat) -> None:
        """Frames pushed from now on are in `fmt` (queued frames keep their own timing)."""
        if fmt != self._fmt:
            self._carry = b""
            self._fmt = fmt

    @property
    def position_ms(self) -> Fraction:
        """User-stream time just after the last whole frame pushed."""
        return self._position_ms

    @property
    def queued_ms(self) -> Fraction:
        return self._queued_ms

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[QueueItem]:
        return iter(self._items)

    def has_audio(self) -> bool:
        return self._queued_ms > 0

    def push(self, chunk: bytes) -> DropReport | None:
        """Queue a chunk of audio (whole samples only; a partial tail waits for the next chunk)."""
        if self._carry:
            chunk = self._carry + chunk
            self._carry = b""
        unit = self._fmt.bytes_per_frame
        usable = len(chunk) - len(chunk) % unit
        if usable != len(chunk):
            self._carry = chunk[usable:]
            chunk = chunk[:usable]
        if not chunk:
            return None
        duration = self._fmt.duration_ms(len(chunk))
        frame = AudioFrame(
            data=chunk,
            start_ms=self._position_ms,
            duration_ms=duration,
            speech=is_speech(chunk, self._fmt.encoding),
        )
        self._position_ms += duration
        self._items.append(frame)
        self._queued_ms += duration
        return self._enforce_bound()

    def mark_finalize(self, finalize_id: str) -> None:
        """A finalize takes its place after every frame pushed so far."""
        # A partial sample cannot be finalized: it would misalign the next connection.
        self._carry = b""
        self._items.append(FinalizeMarker(finalize_id))

    def peek(self) -> QueueItem | None:
        return self._items[0] if self._items else None

    def pop(self) -> QueueItem | None:
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, AudioFrame):
            self._queued_ms -= item.duration_ms
        return item

    def push_front(self, item: QueueItem) -> None:
        """Put back an item whose send failed: it goes first, before anything newer."""
        self._items.appendleft(item)
        if isinstance(item, AudioFrame):
            self._queued_ms += item.duration_ms

    def remove_marker(self, finalize_id: str) -> bool:
        for item in self._items:
            if isinstance(item, FinalizeMarker) and item.finalize_id == finalize_id:
                self._items.remove(item)
                return True
        return False

    def _enforce_bound(self) -> DropReport | None:
        if self._queued_ms <= self.max_ms:
            return None
        dropped = Fraction(0)
        frames = 0
        kept_markers: list[FinalizeMarker] = []
        # Drop the oldest whole frames; finalize markers are not audio and stay,
        # in order, ahead of the audio that follows them.
        while self._queued_ms > self.max_ms and self._items:
            item = self._items.popleft()
            if isinstance(item, FinalizeMarker):
                kept_markers.append(item)
                continue
            self._queued_ms -= item.duration_ms
            dropped += item.duration_ms
            frames += 1
        for marker in reversed(kept_markers):
            self._items.appendleft(marker)
        self.total_dropped_ms += dropped
        self.dropped_frames += frames
        return DropReport(float(dropped), float(self.total_dropped_ms), frames)
