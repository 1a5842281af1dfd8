"""One connection's recognition, without I/O: bytes in, protocol events out.

ChannelTracker is the utterance/endpointing state machine of one channel:

- an utterance opens on a speech frame (with the recogniser's pre-roll);
- interim partials every 500 ms of chunk audio (if enabled and non-empty);
- a chunk locks (is_final=true, speech_final=false) by the recogniser's
  chunk policy: pocketsphinx and marker once it holds 2.5 s, at its first
  pause (100 ms of silence), or at 3.5 s regardless (cutting in a pause keeps
  real words whole, the hard limit keeps chunks about 3 s); whisper at a
  400 ms pause once it holds 2.5 s, at a 150 ms pause once it holds 10 s,
  and at 20 s regardless;
- `endpointing` ms of silence after the last speech frame ends the utterance
  (is_final=true, speech_final=true), even when its last chunk is empty.

STTSession splits the byte stream into channels (G.711 decoding,
de-interleaving) and answers audio.done with the transcript.done events.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from stt_server import g711
from stt_server.protocol import (
    SessionConfig,
    Word,
    done_event,
    join_words,
    partial_event,
    seconds,
)
from stt_server.recognizers import ChannelRecognizer, Frame, RecognizerBackend

Event = dict


class ChannelTracker:
    """Utterance, chunk and endpointing decisions for one channel."""

    def __init__(
        self,
        recognizer: ChannelRecognizer,
        *,
        endpointing_ms: int,
        interim_results: bool,
        channel_index: int | None,
    ) -> None:
        self.recognizer = recognizer
        self._endpoint_frames = math.ceil(endpointing_ms / 10) if endpointing_ms > 0 else None
        self._interim = interim_results
        self._channel_index = channel_index
        self._preroll: deque[Frame] = deque(maxlen=max(recognizer.preroll_frames, 1))
        self._segment_start: int | None = None  # first frame of the open chunk
        self._since_interim = 0
        self._in_utterance = False
        self._silence_run = 0  # silence frames since the last speech frame
        self._boundary = 0  # first frame after the last locked chunk or utterance
        self.finalized: list[Word] = []  # words of every locked chunk, in order
        self._speech_final_count = 0  # len(finalized) at the last speech_final

    def process(self, frames: list[Frame]) -> list[Event]:
        events: list[Event] = []
        for frame in frames:
            self._step(frame, events)
        return events

    def _step(self, frame: Frame, events: list[Event]) -> None:
        if self._segment_start is None:
            if not frame.is_speech:
                if self.recognizer.preroll_frames:
                    self._preroll.append(frame)
                if self._in_utterance:
                    self._silence_run += 1
                    if self._endpoint_reached():
                        self._end_utterance(frame.number + 1, [], events)
                return
            self._open_segment(frame)
        else:
            self.recognizer.feed(frame)
            self._silence_run = 0 if frame.is_speech else self._silence_run + 1
        self._since_interim += 1
        recognizer = self.recognizer
        chunk_frames = frame.number + 1 - self._segment_start
        if self._endpoint_reached():
            self._end_utterance(frame.number + 1, self.recognizer.end_segment(), events)
        elif (
            chunk_frames >= recognizer.chunk_max_frames
            or (
                chunk_frames >= recognizer.chunk_min_frames
                and self._silence_run >= recognizer.chunk_pause_frames
            )
            or (
                chunk_frames >= recognizer.chunk_long_frames
                and self._silence_run >= recognizer.chunk_long_pause_frames
            )
        ):
            self._lock_chunk(frame.number + 1, events)
        elif self._interim and self._since_interim >= recognizer.interim_every_frames:
            self._since_interim = 0
            words = self.recognizer.hypothesis()
            if words:
                events.append(self._partial(words, False, False, frame.number + 1))

    def _open_segment(self, frame: Frame) -> None:
        preroll = list(self._preroll)
        self._preroll.clear()
        start = preroll[0].number if preroll else frame.number
        self._segment_start = start
        self.recognizer.start_segment(start)
        for earlier in preroll:
            self.recognizer.feed(earlier)
        self.recognizer.feed(frame)
        self._since_interim = frame.number - start
        self._in_utterance = True
        self._silence_run = 0

    def _endpoint_reached(self) -> bool:
        return self._endpoint_frames is not None and self._silence_run >= self._endpoint_frames

    def _partial(
        self, words: list[Word], is_final: bool, speech_final: bool, end_frame: int
    ) -> Event:
        start = self._segment_start if self._segment_start is not None else self._boundary
        return partial_event(
            words,
            is_final=is_final,
            speech_final=speech_final,
            start=seconds(start),
            duration=seconds(end_frame - start),
            channel_index=self._channel_index,
        )

    def _lock_chunk(self, end_frame: int, events: list[Event]) -> None:
        words = self.recognizer.end_segment()
        if words:  # an empty locked chunk tells a client nothing
            events.append(self._partial(words, True, False, end_frame))
        self.finalized.extend(words)
        self._close_segment(end_frame)

    def _end_utterance(self, end_frame: int, words: list[Word], events: list[Event]) -> None:
        events.append(self._partial(words, True, True, end_frame))
        self.finalized.extend(words)
        self._speech_final_count = len(self.finalized)
        self._in_utterance = False
        self._silence_run = 0
        self._close_segment(end_frame)

    def _close_segment(self, end_frame: int) -> None:
        self._segment_start = None
        self._boundary = end_frame
        self._preroll.clear()

    def finish(self) -> tuple[str, str]:
        """End of audio: (whole text, text not yet delivered by a speech_final)."""
        self.process(self.recognizer.flush_frames())
        if self._segment_start is not None:
            self.finalized.extend(self.recognizer.end_segment())
            self._segment_start = None
        return join_words(self.finalized), join_words(self.finalized[self._speech_final_count :])


class STTSession:
    """The recognition side of one connection: feed_audio(bytes) -> events."""

    def __init__(self, config: SessionConfig, backend: RecognizerBackend) -> None:
        self.config = config
        self._group_bytes = config.bytes_per_sample * config.channels
        self._remainder = b""
        self.audio_bytes = 0
        self.trackers: list[ChannelTracker] = []
        try:
            for index in range(config.channels):
                recognizer = backend.channel(config)
                self.trackers.append(
                    ChannelTracker(
                        recognizer,
                        endpointing_ms=config.endpointing_ms,
                        interim_results=config.interim_results,
                        channel_index=index if config.multichannel else None,
                    )
                )
        except BaseException:
            self.close()
            raise
        self.finished = False

    @property
    def duration(self) -> float:
        """Seconds of audio received (per channel)."""
        return round(self.audio_bytes / self.config.bytes_per_second, 6)

    def feed_audio(self, data: bytes) -> list[Event]:
        self.audio_bytes += len(data)
        data = self._remainder + data
        usable = len(data) - len(data) % self._group_bytes
        self._remainder = data[usable:]
        if not usable:
            return []
        samples = g711.decode(data[:usable], self.config.encoding)
        channels = self.config.channels
        events: list[Event] = []
        for index, tracker in enumerate(self.trackers):
            channel = samples[index::channels] if channels > 1 else samples
            events += tracker.process(tracker.recognizer.frames(np.ascontiguousarray(channel)))
        return events

    def finish(self, done_text: str = "whole") -> list[Event]:
        """audio.done: one transcript.done per channel ("whole" or "pending" text)."""
        self.finished = True
        events = []
        for index, tracker in enumerate(self.trackers):
            whole, pending = tracker.finish()
            text = whole if done_text == "whole" else pending
            events.append(done_event(text, self.duration, index))
        return events

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.recognizer.close()


def open_session(config: SessionConfig, backend: RecognizerBackend) -> Any:
    """The connection's session: here, or in a worker process if the backend asks."""
    if backend.runs_in_process:
        return backend.open_remote(config)
    return STTSession(config, backend)
