"""Recognisers behind one small interface, one instance per audio channel.

A channel recogniser cuts its channel's samples into 10 ms frames counted
from the connection start and decides speech/silence for each (`frames`);
the utterance state machine (session.py) then opens a segment, feeds it
frames, asks for the hypothesis, and closes it to get final words. Word
times are seconds on the connection's timeline.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stt_server.marker import MarkerDecoder, MarkerFrame, frame_samples
from stt_server.protocol import SessionConfig, Word, seconds

RECOGNIZERS = ("pocketsphinx", "whisper", "marker")


@dataclass
class Frame:
    """10 ms of one channel. number: frame number on the connection timeline."""

    number: int
    samples: np.ndarray
    is_speech: bool
    marker: MarkerFrame | None = field(default=None)


class ChannelRecognizer(ABC):
    """Streaming recognition of one channel."""

    # Frames of silence kept before a speech onset and fed with it, so the
    # first word's start is not clipped by the VAD's decision delay.
    preroll_frames: int = 0
    # Chunk policy (10 ms frames; see session.ChannelTracker): a chunk locks
    # once it holds chunk_min_frames, at its first pause of
    # chunk_pause_frames, and at chunk_max_frames regardless. Interim
    # hypotheses are asked for every interim_every_frames.
    chunk_min_frames: int = 250
    chunk_pause_frames: int = 10
    chunk_max_frames: int = 350
    # Past chunk_long_frames, a shorter pause (chunk_long_pause_frames) is
    # enough, so that the hard limit rarely has to cut inside a word.
    chunk_long_frames: int = 350
    chunk_long_pause_frames: int = 10
    interim_every_frames: int = 50

    @abstractmethod
    def frames(self, samples: np.ndarray) -> list[Frame]:
        """Cut samples (int16, this channel) into complete frames, keep the rest."""

    def flush_frames(self) -> list[Frame]:
        """End of audio: the trailing incomplete frame, if any, as silence."""
        return []

    @abstractmethod
    def start_segment(self, start_frame: int) -> None:
        """Begin decoding a segment whose first frame is start_frame."""

    @abstractmethod
    def feed(self, frame: Frame) -> None:
        """Add a frame to the open segment."""

    @abstractmethod
    def hypothesis(self) -> list[Word]:
        """The open segment's words so far (may still change)."""

    @abstractmethod
    def end_segment(self) -> list[Word]:
        """Close the open segment and return its final words."""

    def close(self) -> None:  # noqa: B027 - an optional hook
        """Release resources (the connection is over)."""


class RecognizerBackend(ABC):
    """Creates channel recognisers; shared by all connections of a server."""

    name: str
    # True when recognition is CPU-heavy and must run off the event loop.
    runs_in_thread: bool
    # True when it also holds the GIL: sessions then run in worker processes
    # (stt_server.workers), so connections decode in parallel.
    runs_in_process: bool = False

    def options(self) -> tuple[tuple[str, Any], ...]:
        """make_backend keyword arguments that rebuild this backend in a worker."""
        return ()

    def open_remote(self, config: SessionConfig, style: Any) -> Any:
        """A session in a worker process (runs_in_process backends only); style: a
        session.SessionStyle."""
        raise NotImplementedError

    @abstractmethod
    def channel(self, config: SessionConfig) -> ChannelRecognizer: ...

    def prepare(self) -> None:  # noqa: B027 - an optional hook
        """Blocking warm-up at server start (load models)."""


class FixedFramer:
    """Cuts a channel into frames of rate/100 samples by connection frame number."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.next_number = 0
        self._buffer = np.zeros(0, dtype=np.int16)

    def cut(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        buffer = np.concatenate([self._buffer, samples]) if len(self._buffer) else samples
        out: list[tuple[int, np.ndarray]] = []
        start = 0
        while True:
            n = frame_samples(self.next_number, self.sample_rate)
            if len(buffer) - start < n:
                break
            out.append((self.next_number, buffer[start : start + n]))
            start += n
            self.next_number += 1
        self._buffer = buffer[start:].copy()
        return out

    def leftover(self) -> tuple[int, np.ndarray] | None:
        if not len(self._buffer):
            return None
        out = (self.next_number, self._buffer)
        self._buffer = np.zeros(0, dtype=np.int16)
        self.next_number += 1
        return out


# ---------------------------------------------------------------------------
# marker


class MarkerChannel(ChannelRecognizer):
    """Every well-formed speech frame is a word: its index, at its exact time."""

    def __init__(self, config: SessionConfig) -> None:
        self._decoder = MarkerDecoder(config.sample_rate, config.encoding)
        self.decoded: list[MarkerFrame] = []  # every frame, malformed ones too
        self._words: list[Word] = []

    def frames(self, samples: np.ndarray) -> list[Frame]:
        out = []
        for marker, frame_samples_ in self._decoder.feed(samples):
            self.decoded.append(marker)
            is_speech = bool(marker.ok and marker.is_speech)
            out.append(Frame(marker.position, frame_samples_, is_speech, marker))
        return out

    def flush_frames(self) -> list[Frame]:
        out = []
        for marker in self._decoder.flush():
            self.decoded.append(marker)
            out.append(Frame(marker.position, np.zeros(0, dtype=np.int16), False, marker))
        return out

    def start_segment(self, start_frame: int) -> None:
        self._words = []

    def feed(self, frame: Frame) -> None:
        if frame.is_speech and frame.marker is not None:
            self._words.append(
                Word(str(frame.marker.index), seconds(frame.number), seconds(frame.number + 1))
            )

    def hypothesis(self) -> list[Word]:
        return list(self._words)

    def end_segment(self) -> list[Word]:
        words, self._words = self._words, []
        return words


class MarkerBackend(RecognizerBackend):
    name = "marker"
    runs_in_thread = False

    def channel(self, config: SessionConfig) -> ChannelRecognizer:
        return MarkerChannel(config)


# ---------------------------------------------------------------------------
# pocketsphinx

MODEL_RATE = 16000
MODEL_FRAME = MODEL_RATE // 100
DECODE_BATCH_FRAMES = 10
# Energy VAD: frames above this RMS level are speech. -45 dBFS keeps weak
# word onsets (fricatives: the "f" of "from") in the utterance while staying
# above a typical microphone's noise floor.
DEFAULT_VAD_THRESHOLD_DB = -45.0


def resample_frame(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """One 10 ms frame at any rate to 160 samples at 16 kHz.

    Simple and deterministic: a box filter against aliasing when going down,
    then linear interpolation at the 160 output sample centres. Frame edges
    are not smoothed across; at 10 ms that costs nothing recognisable.
    """
    if sample_rate == MODEL_RATE and len(samples) == MODEL_FRAME:
        return samples
    x = samples.astype(np.float64)
    width = round(sample_rate / MODEL_RATE)
    if width > 1:
        x = np.convolve(x, np.ones(width) / width, mode="same")
    positions = (np.arange(MODEL_FRAME) + 0.5) * (len(x) / MODEL_FRAME) - 0.5
    y = np.interp(positions, np.arange(len(x)), x)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def frame_level_db(samples: np.ndarray) -> float:
    """RMS level of a frame in dBFS (-inf for digital silence)."""
    if not len(samples):
        return -math.inf
    rms = math.sqrt(float(np.mean(samples.astype(np.float64) ** 2)))
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


class DecoderPool:
    """Reusable pocketsphinx decoders (each takes ~0.5 s to load).

    A decoder's cepstral mean adapts to what it hears; it is reset to the
    model's initial value on every acquire so results do not depend on
    which connection used the decoder before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[tuple[Any, str]] = []

    def _create(self) -> tuple[Any, str]:
        from pocketsphinx import Decoder

        decoder = Decoder(samprate=MODEL_RATE, loglevel="FATAL")
        return decoder, decoder.get_cmn()

    def acquire(self) -> tuple[Any, str]:
        with self._lock:
            entry = self._idle.pop() if self._idle else None
        if entry is None:
            entry = self._create()
        entry[0].set_cmn(entry[1])
        return entry

    def release(self, entry: tuple[Any, str]) -> None:
        with self._lock:
            self._idle.append(entry)

    def warm(self, count: int = 1) -> None:
        with self._lock:
            missing = count - len(self._idle)
        for _ in range(missing):
            self.release(self._create())


# Loading a model is the slow part of starting a server: share decoders
# between all servers of the process (tests start many).
SHARED_DECODER_POOL = DecoderPool()

_FILLERS = ("<s>", "</s>", "<sil>")


class PocketsphinxChannel(ChannelRecognizer):
    preroll_frames = 25

    def __init__(self, config: SessionConfig, pool: DecoderPool, vad_threshold_db: float) -> None:
        self._rate = config.sample_rate
        self._pool = pool
        self._entry: tuple[Any, str] | None = pool.acquire()
        self._decoder = self._entry[0]
        self._threshold = vad_threshold_db
        self._framer = FixedFramer(config.sample_rate)
        self._pending: list[np.ndarray] = []  # 16 kHz audio not yet given to the decoder
        self._segment_start = 0
        self._in_utterance = False

    def frames(self, samples: np.ndarray) -> list[Frame]:
        return [
            Frame(number, chunk, frame_level_db(chunk) > self._threshold)
            for number, chunk in self._framer.cut(samples)
        ]

    def flush_frames(self) -> list[Frame]:
        leftover = self._framer.leftover()
        return [] if leftover is None else [Frame(leftover[0], leftover[1], False)]

    def start_segment(self, start_frame: int) -> None:
        self._decoder.start_utt()
        self._in_utterance = True
        self._segment_start = start_frame
        self._pending = []

    def feed(self, frame: Frame) -> None:
        if len(frame.samples) == frame_samples(frame.number, self._rate):
            self._pending.append(resample_frame(frame.samples, self._rate))
        if len(self._pending) >= DECODE_BATCH_FRAMES:
            self._process_pending()

    def _process_pending(self) -> None:
        # One process_raw per batch of frames is much cheaper than one per
        # 10 ms. Batches start at the segment start, every 100 ms, and at
        # interim points (multiples of 500 ms), so the decoder sees the same
        # batches whether or not interim results are asked for.
        if self._pending:
            data = np.concatenate(self._pending).astype("<i2").tobytes()
            self._pending = []
            self._decoder.process_raw(data, False, False)

    def _words(self) -> list[Word]:
        segments = self._decoder.seg()
        words = []
        for segment in segments or ():
            text = segment.word
            if text in _FILLERS or text.startswith("[") or text.startswith("<"):
                continue
            text = text.split("(", 1)[0]  # "to(3)": alternate pronunciation 3
            start = self._segment_start + segment.start_frame
            end = self._segment_start + segment.end_frame + 1
            words.append(Word(text, seconds(start), seconds(end)))
        return words

    def hypothesis(self) -> list[Word]:
        self._process_pending()
        return self._words()

    def end_segment(self) -> list[Word]:
        self._process_pending()
        self._decoder.end_utt()
        self._in_utterance = False
        return self._words()

    def close(self) -> None:
        if self._entry is None:
            return
        if self._in_utterance:
            self._decoder.end_utt()
            self._in_utterance = False
        self._pool.release(self._entry)
        self._entry = None


class PocketsphinxBackend(RecognizerBackend):
    name = "pocketsphinx"
    runs_in_thread = True

    def __init__(
        self,
        vad_threshold_db: float = DEFAULT_VAD_THRESHOLD_DB,
        pool: DecoderPool = SHARED_DECODER_POOL,
        *,
        processes: bool = True,
    ) -> None:
        self.vad_threshold_db = vad_threshold_db
        self.pool = pool
        # pocketsphinx holds the GIL while it decodes: worker processes.
        self.runs_in_process = processes

    def options(self) -> tuple[tuple[str, Any], ...]:
        return (("vad_threshold_db", self.vad_threshold_db),)

    def open_remote(self, config: SessionConfig, style: Any) -> Any:
        from stt_server.workers import SHARED_LANES

        return SHARED_LANES.open(config, self.name, self.options(), style)

    def channel(self, config: SessionConfig) -> ChannelRecognizer:
        return PocketsphinxChannel(config, self.pool, self.vad_threshold_db)

    def prepare(self) -> None:
        if self.runs_in_process:
            from stt_server.workers import SHARED_LANES

            SHARED_LANES.warm(self.name, self.options())
        else:
            self.pool.warm(1)


def make_backend(
    name: str, *, vad_threshold_db: float = DEFAULT_VAD_THRESHOLD_DB, in_process: bool = False
) -> RecognizerBackend:
    """in_process: decode in the calling process (worker processes use it)."""
    if name == "marker":
        return MarkerBackend()
    if name == "pocketsphinx":
        return PocketsphinxBackend(vad_threshold_db, processes=not in_process)
    if name == "whisper":
        from stt_server.whisper import WhisperBackend

        return WhisperBackend()
    raise ValueError(f"unknown recognizer {name!r}; use one of {RECOGNIZERS}")
