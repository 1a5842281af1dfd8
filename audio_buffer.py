"""The outgoing queue: audio frames and finalize markers, in arrival order, bounded in ms of audio.

The session owns one `AudioBuffer`. Everything the user pushes goes through
it, connected or not, so there is exactly one path to the socket and one
order: a finalize marker sits between the frames pushed before it and those
pushed after it. Frames are kept whole-sample aligned (a chunk that ends
mid-sample lends its tail to the next chunk), so dropping whole frames never
shifts the samples that follow.

Every frame knows where it starts in the user's stream (dropped audio
included), in ticks (timeline.py): that is what makes the session timeline
exact across reconnects and drops. This runs for every 10 ms frame, so the
bookkeeping is integer arithmetic and a frame's speech level is computed only
if somebody asks for it.

`ReplayWindow` keeps, for the connection that takes new audio, the frames it
was sent after its acknowledged point (the end of its latest final result):
if that connection fails, they go back to the head of the buffer.

`AudioLedger` is the one place where audio the engine gives up on goes: the
buffer's bound, a stop or a fatal error with audio still queued. It counts it
(in total and per reason) and groups it into *episodes* (an episode ends when
audio flows to a connection again, a finalize is answered, or the session
ends), so that each episode is reported once, with its size and its causes.
"""

from __future__ import annotations

import array
import math
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from .timeline import TICKS_PER_MS, AudioFormat, ticks_to_ms

# Speech is "loud enough": the server's VAD uses -40 dBFS too.
SPEECH_THRESHOLD_DBFS = -40.0
# High bytes of the little-endian 16-bit samples -256..255: all below the threshold's
# amplitude (32768 * 10 ** (-40 / 20), about 328).
_QUIET_HIGH_BYTES = b"\x00\xff"
assert 256 < 32768 * 10 ** (SPEECH_THRESHOLD_DBFS / 20)
# High bytes of the samples -512..511; any other sample has |x| >= 512, and so a power
# of at least 512 ** 2. When more than _LOUD_SHARE of a frame's samples are such, its
# RMS is above the threshold whatever the others are: speech, decided in C.
_NEAR_QUIET_HIGH_BYTES = b"\x00\x01\xfe\xff"
_LOUD_SHARE = 10 ** (SPEECH_THRESHOLD_DBFS / 10) * 32768**2 / 512**2  # about 0.41
# Loudness is estimated on at most this many samples per frame, taken as a few
# contiguous windows spread over the frame (a stride could alias a tone away).
_LEVEL_WINDOWS = 8
_LEVEL_WINDOW = 100


class AudioFrame:
    """A whole-sample chunk of the user's stream. Positions are ticks (timeline.py)."""

    __slots__ = ("_speech", "data", "encoding", "length", "replayed", "start")

    def __init__(
        self,
        data: bytes,
        start: int,
        length: int,
        encoding: str = "pcm",
        replayed: bool = False,  # sent once on a connection that failed; queued again
    ) -> None:
        self.data = data
        self.start = start  # tick of the first sample in the user's stream
        self.length = length  # ticks
        self.encoding = encoding
        self.replayed = replayed
        self._speech: bool | None = None

    @property
    def start_ms(self) -> Fraction:
        return ticks_to_ms(self.start)

    @property
    def duration_ms(self) -> Fraction:
        return ticks_to_ms(self.length)

    @property
    def speech(self) -> bool:
        """Loud enough to count as speech (for the stall watchdog); computed once, on demand."""
        if self._speech is None:
            self._speech = is_speech(self.data, self.encoding)
        return self._speech

    def as_replayed(self) -> AudioFrame:
        frame = AudioFrame(self.data, self.start, self.length, self.encoding, True)
        frame._speech = self._speech
        return frame

    def __repr__(self) -> str:
        return (
            f"AudioFrame({len(self.data)} bytes at {float(self.start_ms):.3f} ms, "
            f"{float(self.duration_ms):.3f} ms{', replayed' if self.replayed else ''})"
        )


@dataclass(frozen=True)
class FinalizeMarker:
    finalize_id: str


QueueItem = AudioFrame | FinalizeMarker


@dataclass(frozen=True)
class DropReport:
    """Audio taken out of the engine's hands at once; the ledger keeps the totals."""

    dropped_ms: float
    frames: int
    ticks: int = 0  # dropped_ms, exact
    # Where the dropped audio was in the user's stream: (start, end) ticks, merged.
    spans: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class DropEpisode:
    """Audio lost in a row, from the first loss until audio flowed again."""

    number: int  # 1-based, per session
    dropped_ms: float
    frames: int
    reasons: tuple[str, ...]  # in the order they first occurred
    lasted_s: float  # from the first loss to the end of the episode
    total_dropped_ms: float  # over the whole session, this episode included


class AudioLedger:
    """Audio the engine could not deliver: counted, grouped into episodes, reported once.

    Every frame pushed is, at any time, queued (AudioBuffer), sent and awaiting a
    final (ReplayWindow or a connection's turn), transcribed, or *lost*: lost audio
    exists only here, so a loss nobody reports cannot happen. Plain bookkeeping
    (no I/O, no clock of its own): the caller passes `now`.
    """

    def __init__(self) -> None:
        self._lost = 0  # ticks
        self.frames = 0  # frames lost, in total
        self._by_reason: dict[str, int] = {}
        self.episodes = 0
        self._episode_ticks = 0
        self._episode_frames = 0
        self._episode_reasons: list[str] = []
        self._episode_since = 0.0
        self.in_episode = False
        self._spans: list[tuple[int, int]] = []  # user-stream ticks lost, merged

    @property
    def lost_spans_ms(self) -> list[tuple[float, float]]:
        """Where the lost audio was in the user's stream: (start, end) in ms."""
        return [(a / TICKS_PER_MS, b / TICKS_PER_MS) for a, b in self._spans]

    def _add_span(self, start: int, end: int) -> None:
        spans = self._spans
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))

    @property
    def lost_ms(self) -> float:
        return self._lost / TICKS_PER_MS

    @property
    def lost_ms_by_reason(self) -> dict[str, float]:
        return {reason: ticks / TICKS_PER_MS for reason, ticks in self._by_reason.items()}

    def lose(
        self,
        ticks: int,
        frames: int,
        reason: str,
        *,
        now: float,
        spans: tuple[tuple[int, int], ...] = (),
    ) -> None:
        if ticks <= 0:
            return
        for start, end in spans:
            self._add_span(start, end)
        if not self.in_episode:
            self.in_episode = True
            self._episode_ticks = self._episode_frames = 0
            self._episode_reasons = []
            self._episode_since = now
        self._lost += ticks
        self.frames += frames
        self._by_reason[reason] = self._by_reason.get(reason, 0) + ticks
        self._episode_ticks += ticks
        self._episode_frames += frames
        if reason not in self._episode_reasons:
            self._episode_reasons.append(reason)

    def end_episode(self, *, now: float) -> DropEpisode | None:
        """The episode under way is over (audio flows again, a turn ends): its report."""
        if not self.in_episode:
            return None
        self.in_episode = False
        self.episodes += 1
        return DropEpisode(
            number=self.episodes,
            dropped_ms=self._episode_ticks / TICKS_PER_MS,
            frames=self._episode_frames,
            reasons=tuple(self._episode_reasons),
            lasted_s=max(0.0, now - self._episode_since),
            total_dropped_ms=self.lost_ms,
        )


# The mutation run (bench/mutation.py) leaves this out: the table is built once, at
# import, and mutmut's workers fork from a process that imported it before a mutant is
# switched on, so none of its mutants would ever take effect (each would "survive").
# Its values are pinned through speech detection (tests/test_engine_buffer_timeline.py).
# pragma: no mutate start
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


# pragma: no mutate end


_G711 = {"mulaw": _g711_table("mulaw"), "alaw": _g711_table("alaw")}


def _pcm_samples(data: bytes) -> array.array[int]:
    samples = array.array("h")
    samples.frombytes(data[: len(data) - len(data) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def level_dbfs(data: bytes, encoding: str) -> float:
    """RMS level of a frame in dBFS (-inf for digital silence or no samples)."""
    if encoding == "pcm":
        values: list[int] | array.array[int] = _pcm_samples(data)
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
    """level_dbfs(data) > SPEECH_THRESHOLD_DBFS, exactly; most frames are decided in C."""
    if encoding == "pcm":
        high = data[1::2]
        if not high.translate(None, _QUIET_HIGH_BYTES):
            # Every sample is within -256..255 (its high byte is 0x00 or 0xFF), below the
            # threshold's amplitude, so the RMS is too: most silence ends here.
            return False
        samples = len(high)
        if (
            samples <= _LEVEL_WINDOWS * _LEVEL_WINDOW  # level_dbfs reads every sample
            and len(high.translate(None, _NEAR_QUIET_HIGH_BYTES)) > _LOUD_SHARE * samples
        ):
            return True  # most speech ends here
    return level_dbfs(data, encoding) > SPEECH_THRESHOLD_DBFS


class AudioBuffer:
    """Frames waiting for a socket, plus the finalize markers between them."""

    def __init__(self, fmt: AudioFormat, max_ms: int) -> None:
        self._items: deque[QueueItem] = deque()
        self._queued = 0  # ticks of audio queued
        self._carry = b""
        self._position = 0  # user-stream tick of the next byte pushed
        self.max_ms = max_ms
        self.set_format(fmt)

    @property
    def format(self) -> AudioFormat:
        return self._fmt

    def set_format(self, fmt: AudioFormat) -> None:
        """Frames pushed from now on are in `fmt` (queued frames keep their own timing)."""
        if getattr(self, "_fmt", None) != fmt:
            self._carry = b""
            self._fmt = fmt
            self._unit = fmt.bytes_per_frame
            self._ticks_per_frame = fmt.ticks_per_frame
            self._encoding = fmt.encoding

    @property
    def max_ms(self) -> int:
        return self._max // TICKS_PER_MS

    @max_ms.setter
    def max_ms(self, value: int) -> None:
        self._max = value * TICKS_PER_MS

    @property
    def position_ms(self) -> Fraction:
        """User-stream time just after the last whole frame pushed."""
        return ticks_to_ms(self._position)

    @property
    def position(self) -> int:
        return self._position

    @property
    def queued_ms(self) -> Fraction:
        return ticks_to_ms(self._queued)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> deque[QueueItem]:
        """The queue itself, for a reader that only asks whether it is empty (read only)."""
        return self._items

    def __iter__(self) -> Iterator[QueueItem]:
        return iter(self._items)

    def has_audio(self) -> bool:
        return self._queued > 0

    def push(self, chunk: bytes) -> DropReport | None:
        """Queue a chunk of audio (whole samples only; a partial tail waits for the next chunk)."""
        if self._carry:
            chunk = self._carry + chunk
            self._carry = b""
        unit = self._unit
        extra = len(chunk) % unit
        if extra:
            self._carry = chunk[-extra:]
            chunk = chunk[:-extra]
        if not chunk:
            return None
        length = len(chunk) // unit * self._ticks_per_frame
        self._items.append(AudioFrame(chunk, self._position, length, self._encoding))
        self._position += length
        self._queued += length
        if self._queued > self._max:
            return self._enforce_bound()
        return None

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
        if type(item) is AudioFrame:
            self._queued -= item.length
        return item

    def pop_frames(self, n: int) -> list[AudioFrame]:
        """The next `n` items, which the caller knows are frames."""
        frames = []
        for _ in range(n):
            frame = self._items.popleft()
            assert type(frame) is AudioFrame
            self._queued -= frame.length
            frames.append(frame)
        return frames

    def push_front(self, item: QueueItem) -> None:
        """Put back an item whose send failed: it goes first, before anything newer."""
        self._items.appendleft(item)
        if isinstance(item, AudioFrame):
            self._queued += item.length

    def requeue(self, items: list[QueueItem]) -> DropReport | None:
        """Put back frames (and the finalize markers among them) sent on a connection
        that failed: first, in order, before anything newer. The bound applies as to
        new audio (the oldest goes first)."""
        for item in reversed(items):
            self._items.appendleft(item)
            if type(item) is AudioFrame:
                self._queued += item.length
        return self._enforce_bound()

    def remove_marker(self, finalize_id: str) -> bool:
        for item in self._items:
            if isinstance(item, FinalizeMarker) and item.finalize_id == finalize_id:
                self._items.remove(item)
                return True
        return False

    def _enforce_bound(self) -> DropReport | None:
        if self._queued <= self._max:
            return None
        dropped = 0
        frames = 0
        spans: list[tuple[int, int]] = []
        kept_markers: list[FinalizeMarker] = []
        # Drop the oldest whole frames; finalize markers are not audio and stay,
        # in order, ahead of the audio that follows them.
        while self._queued > self._max and self._items:
            item = self._items.popleft()
            if isinstance(item, FinalizeMarker):
                kept_markers.append(item)
                continue
            self._queued -= item.length
            dropped += item.length
            frames += 1
            _merge_span(spans, item.start, item.start + item.length)
        for marker in reversed(kept_markers):
            self._items.appendleft(marker)
        return self._count_dropped(dropped, frames, spans)

    def drop_audio(self) -> DropReport | None:
        """Take every queued frame out (the session ends with them unsent); markers stay."""
        if not self._queued:
            return None
        dropped = self._queued
        spans: list[tuple[int, int]] = []
        frames = 0
        for item in self._items:
            if type(item) is AudioFrame:
                frames += 1
                _merge_span(spans, item.start, item.start + item.length)
        self._items = deque(item for item in self._items if type(item) is not AudioFrame)
        self._queued = 0
        return self._count_dropped(dropped, frames, spans)

    @staticmethod
    def _count_dropped(dropped: int, frames: int, spans: list[tuple[int, int]]) -> DropReport:
        return DropReport(dropped / TICKS_PER_MS, frames, ticks=dropped, spans=tuple(spans))


def _merge_span(spans: list[tuple[int, int]], start: int, end: int) -> None:
    if spans and spans[-1][1] == start:
        spans[-1] = (spans[-1][0], end)
    else:
        spans.append((start, end))


class ReplayWindow:
    """The frames sent on one connection after its acknowledged point, at most `max_ms`.

    The protocol has no acknowledgements, but a final result is one: everything
    up to its end is transcribed for good. Whatever the connection was sent
    after the latest final is kept here (the newest `max_ms` of it), so that if
    the connection fails it can be sent again to the next one. Times are on the
    connection's own timeline (ms of audio sent on it); inside, positions are
    whole samples. A window holds up to thousands of frames per session, so it
    keeps them as parallel deques of bytes and ints, not as one object per frame
    (objects the garbage collector would have to walk again and again).
    """

    def __init__(self, fmt: AudioFormat, max_ms: int) -> None:
        self._fmt = fmt
        self.max_ms = max_ms
        self._max_samples = math.floor(Fraction(max_ms * fmt.sample_rate, 1000))
        self._unit = fmt.bytes_per_frame
        self._tpf = fmt.ticks_per_frame
        self._data: deque[bytes] = deque()
        self._conn_starts: deque[int] = deque()  # connection sample of each frame
        self._user_starts: deque[int] = deque()  # user-stream tick of each frame
        self._replayed: deque[bool] = deque()
        self._kept = 0  # samples kept
        self._end = 0  # connection sample just after the last frame sent
        self._acked = 0  # connection sample up to which the audio is transcribed for good
        self._trimmed = 0  # un-acknowledged samples that fell out of the window
        # The speech among them, until a final covers it: (connection start, connection
        # end, user tick of the start, frames) per run of speech, oldest first. If the
        # connection fails first, that speech can be neither replayed nor transcribed,
        # so it must be reported lost (take_trimmed_speech).
        self._trimmed_speech: deque[tuple[int, int, int, int]] = deque()

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
        return self._ms(self._conn_starts[0] if self._conn_starts else self._end)

    def __bool__(self) -> bool:
        return bool(self._data)

    def frames(self) -> list[AudioFrame]:
        fmt = self._fmt
        tpf = fmt.ticks_per_frame
        unit = self._unit
        return [
            AudioFrame(data, start, len(data) // unit * tpf, fmt.encoding, replayed)
            for data, start, replayed in zip(
                self._data, self._user_starts, self._replayed, strict=True
            )
        ]

    def sent(self, frame: AudioFrame) -> int:
        """`frame` went out on the connection. Returns the ticks trimmed out to stay in bound."""
        start = self._end
        samples = len(frame.data) // self._unit
        self._end += samples
        if self.max_ms <= 0:
            # No window: every frame is out of it at once (its speech is remembered).
            if frame.speech:
                self._remember_speech(start, start + samples, frame.start, 1)
            return 0
        self._data.append(frame.data)
        self._conn_starts.append(start)
        self._user_starts.append(frame.start)
        self._replayed.append(frame.replayed)
        self._kept += samples
        if self._kept <= self._max_samples:
            return 0
        trimmed = self._cut_before(self._end - self._max_samples, trimming=True)
        self._trimmed += trimmed
        return trimmed * self._tpf

    def acknowledge(self, conn_ms: Fraction) -> None:
        """A final result ends at `conn_ms`: nothing before it will ever be sent again."""
        point = min(math.ceil(conn_ms * self._fmt.sample_rate / 1000), self._end)
        if point <= self._acked:
            return
        self._acked = point
        self._cut_before(point)
        speech = self._trimmed_speech
        while speech and speech[0][0] < point:
            start, end, user_start, frames = speech.popleft()
            if end > point:  # covered in part: the rest still waits for a final
                speech.appendleft((point, end, user_start + (point - start) * self._tpf, frames))
                break

    def take_trimmed_speech(self) -> list[tuple[int, int, int]]:
        """The speech that fell out of the window and no final covers: (start, end) user
        ticks and the frames it came in, oldest first. Emptied: the connection failed or
        ended without covering it, and the caller reports it lost (past whatever interim
        text it makes final)."""
        tpf = self._tpf
        spans = [
            (user_start, user_start + (end - start) * tpf, frames)
            for start, end, user_start, frames in self._trimmed_speech
        ]
        self._trimmed_speech.clear()
        return spans

    def _remember_speech(self, start: int, end: int, user_start: int, frames: int) -> None:
        speech = self._trimmed_speech
        if speech and speech[-1][1] == start:
            first, _, first_user, count = speech[-1]
            if first_user + (start - first) * self._tpf == user_start:  # one run
                speech[-1] = (first, end, first_user, count + frames)
                return
        speech.append((start, end, user_start, frames))

    def take(self) -> list[AudioFrame]:
        """Empty the window (the connection failed, or it drains and needs none)."""
        frames = self.frames()
        for queue in (self._data, self._conn_starts, self._user_starts, self._replayed):
            queue.clear()
        self._kept = 0
        return frames

    def _cut_before(self, point: int, *, trimming: bool = False) -> int:
        """Drop the audio before connection sample `point`; returns the samples dropped.
        `trimming`: it is dropped un-acknowledged, to keep the window in bound, so its
        speech is remembered until a final covers it."""
        removed = 0
        unit = self._unit
        while self._data:
            start = self._conn_starts[0]
            if start >= point:
                break
            data = self._data.popleft()
            self._conn_starts.popleft()
            user_start = self._user_starts.popleft()
            replayed = self._replayed.popleft()
            samples = len(data) // unit
            cut = point - start
            if trimming:
                part = data if cut >= samples else data[: cut * unit]
                if is_speech(part, self._fmt.encoding):
                    # A frame cut in two is counted once: when its last part goes.
                    whole = cut >= samples
                    self._remember_speech(start, start + min(cut, samples), user_start, int(whole))
            if cut >= samples:
                removed += samples
                self._kept -= samples
                continue
            removed += cut
            self._kept -= cut
            self._data.appendleft(data[cut * unit :])
            self._conn_starts.appendleft(start + cut)
            self._user_starts.appendleft(user_start + cut * self._tpf)
            self._replayed.appendleft(replayed)
            break
        return removed
