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

`ReplayWindow` keeps, for the connection that takes new audio, the frames it
was sent after its acknowledged point (the end of its latest final result):
if that connection fails, they go back to the head of the buffer.
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
    replayed: bool = False  # sent once on a connection that failed; queued again


def frame_tail(frame: AudioFrame, offset_ms: Fraction, fmt: AudioFormat) -> AudioFrame | None:
    """The part of `frame` from `offset_ms` after its start, cut on a whole sample (rounded
    up, so nothing before `offset_ms` is kept); None when nothing is left."""
    if offset_ms <= 0:
        return frame
    samples = math.ceil(offset_ms * fmt.sample_rate / 1000)
    cut = samples * fmt.bytes_per_frame
    if cut >= len(frame.data):
        return None
    data = frame.data[cut:]
    skipped = fmt.duration_ms(cut)
    return AudioFrame(
        data=data,
        start_ms=frame.start_ms + skipped,
        duration_ms=frame.duration_ms - skipped,
        speech=is_speech(data, fmt.encoding),
        replayed=frame.replayed,
    )


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

    def requeue(self, frames: list[AudioFrame]) -> DropReport | None:
        """Put back frames sent on a connection that failed: first, in order, before
        anything newer. The bound applies as to new audio (the oldest goes first)."""
        for frame in reversed(frames):
            self._items.appendleft(frame)
            self._queued_ms += frame.duration_ms
        return self._enforce_bound()

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


class ReplayWindow:
    """The frames sent on one connection after its acknowledged point, at most `max_ms`.

    The protocol has no acknowledgements, but a final result is one: everything
    up to its end is transcribed for good. Whatever the connection was sent
    after the latest final is kept here (the newest `max_ms` of it), so that if
    the connection fails it can be sent again to the next one. Times are on the
    connection's own timeline (ms of audio sent on it); inside, positions are
    whole samples (integers: this runs once per frame sent).
    """

    def __init__(self, fmt: AudioFormat, max_ms: int) -> None:
        self._fmt = fmt
        self.max_ms = max_ms
        self._max_samples = math.floor(Fraction(max_ms * fmt.sample_rate, 1000))
        self._items: deque[tuple[AudioFrame, int]] = deque()  # (frame, connection sample)
        self._kept = 0  # samples kept
        self._end = 0  # connection sample just after the last frame sent
        self._acked = 0  # connection sample up to which the audio is transcribed for good
        self._trimmed = 0  # un-acknowledged samples that fell out of the window

    def _ms(self, samples: int) -> Fraction:
        return Fraction(samples * 1000, self._fmt.sample_rate)

    @property
    def kept_ms(self) -> Fraction:
        return self._ms(self._kept)

    @property
    def acked_ms(self) -> Fraction:
        return self._ms(self._acked)

    @property
    def trimmed_ms(self) -> Fraction:
        return self._ms(self._trimmed)

    @property
    def start_ms(self) -> Fraction:
        """Connection time of the first frame kept (the end of what was sent if none)."""
        return self._ms(self._items[0][1] if self._items else self._end)

    def frames(self) -> list[AudioFrame]:
        return [frame for frame, _ in self._items]

    def sent(self, frame: AudioFrame) -> Fraction:
        """`frame` went out on the connection. Returns the audio trimmed out to stay in bound."""
        start = self._end
        samples = len(frame.data) // self._fmt.bytes_per_frame
        self._end += samples
        if self.max_ms <= 0:
            return _NO_MS
        self._items.append((frame, start))
        self._kept += samples
        if self._kept <= self._max_samples:
            return _NO_MS
        trimmed = self._cut_before(self._end - self._max_samples)
        self._trimmed += trimmed
        return self._ms(trimmed)

    def acknowledge(self, conn_ms: Fraction) -> None:
        """A final result ends at `conn_ms`: nothing before it will ever be sent again."""
        point = min(math.ceil(conn_ms * self._fmt.sample_rate / 1000), self._end)
        if point <= self._acked:
            return
        self._acked = point
        self._cut_before(point)

    def take(self) -> list[AudioFrame]:
        """Empty the window (the connection failed, or it drains and needs none)."""
        frames = self.frames()
        self._items.clear()
        self._kept = 0
        return frames

    def _cut_before(self, point: int) -> int:
        """Drop the audio before connection sample `point`; returns the samples dropped."""
        removed = 0
        unit = self._fmt.bytes_per_frame
        while self._items:
            frame, start = self._items[0]
            if start >= point:
                break
            self._items.popleft()
            samples = len(frame.data) // unit
            cut = point - start
            if cut >= samples:
                removed += samples
                self._kept -= samples
                continue
            tail = frame_tail(frame, self._ms(cut), self._fmt)
            assert tail is not None
            removed += cut
            self._kept -= cut
            self._items.appendleft((tail, start + cut))
            break
        return removed


_NO_MS = Fraction(0)
