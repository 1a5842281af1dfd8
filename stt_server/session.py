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
  (is_final=true, speech_final=true); so does a `finalize`, at once.

How the utterance's end looks (SessionStyle.utterance_final):

- "restate" (the live service): the tail (the words after the last locked
  chunk) is locked as a chunk final first, then the utterance final carries
  every word of the utterance again. Interims and chunk finals start at the
  utterance's start and their duration grows with it. An utterance without
  any word (noise) ends without an utterance final (an empty chunk final,
  with empty partials on), unless a finalize asked for one;
- "tail" (older): the utterance final carries only the tail (even when
  empty) and every partial starts at its own chunk's start.

Between utterances, with interim results and SessionStyle.empty_partials,
an empty partial every 500 ms of non-speech audio, every fourth one
is_final (the silence so far is locked), never speech_final.

STTSession splits the byte stream into channels (G.711 decoding,
de-interleaving), answers finalize and, at audio.done, flushes and makes
the transcript.done events.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from stt_server import g711
from stt_server.protocol import (
    SessionConfig,
    Word,
    done_event,
    partial_event,
    seconds,
)
from stt_server.recognizers import ChannelRecognizer, Frame, RecognizerBackend

Event = dict

# Empty partials between utterances: one per this much non-speech audio, and
# every EMPTY_FINAL_EVERY-th of them is_final.
EMPTY_PARTIAL_EVERY_FRAMES = 50
EMPTY_FINAL_EVERY = 4


@dataclass(frozen=True)
class SessionStyle:
    """The recognition side's share of the wire options (wire.WireOptions); picklable,
    as sessions may run in worker processes."""

    utterance_final: str = "restate"
    empty_partials: bool = True


class ChannelTracker:
    """Utterance, chunk and endpointing decisions for one channel."""

    def __init__(
        self,
        recognizer: ChannelRecognizer,
        *,
        endpointing_ms: int,
        interim_results: bool,
        channel_index: int | None,
        style: SessionStyle = SessionStyle(),
        diarize: bool = False,
        smart_turn: bool = False,
    ) -> None:
        self.recognizer = recognizer
        self._endpoint_frames = math.ceil(endpointing_ms / 10) if endpointing_ms > 0 else None
        self._interim = interim_results
        self._channel_index = channel_index
        self._restate = style.utterance_final == "restate"
        self._empty_partials = style.empty_partials and interim_results
        self._speaker = 0 if diarize else None
        self._smart_turn = smart_turn
        self._preroll: deque[Frame] = deque(maxlen=max(recognizer.preroll_frames, 1))
        self._segment_start: int | None = None  # first frame of the open chunk
        self._since_interim = 0
        self._in_utterance = False
        self._silence_run = 0  # silence frames since the last speech frame
        self._boundary = 0  # first frame after the last locked chunk or utterance
        self._utterance_start = 0  # first frame of the open utterance
        self._utterance_words: list[Word] = []  # its locked chunks' words
        self._last_end = 0  # first frame after the last utterance final
        self._quiet_start = 0  # first frame the next empty partial spans
        self._quiet_frames = 0  # non-speech frames since the last empty partial
        self._quiet_count = 0  # empty partials since the last utterance
        self._next_frame = 0  # frames seen so far
        self.finalized: list[Word] = []  # words of every locked chunk, in order
        self._speech_final_count = 0  # len(finalized) at the last speech_final

    def process(self, frames: list[Frame]) -> list[Event]:
        events: list[Event] = []
        for frame in frames:
            self._step(frame, events)
        return events

    def _step(self, frame: Frame, events: list[Event]) -> None:
        self._next_frame = frame.number + 1
        if self._segment_start is None:
            if not frame.is_speech:
                if self.recognizer.preroll_frames:
                    self._preroll.append(frame)
                if self._in_utterance:
                    self._silence_run += 1
                    if self._endpoint_reached():
                        self._end_utterance(frame.number + 1, [], events)
                else:
                    self._quiet(frame.number + 1, events)
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

    def _quiet(self, end_frame: int, events: list[Event]) -> None:
        """A non-speech frame between utterances: now and then an empty partial."""
        if not self._empty_partials:
            return
        self._quiet_frames += 1
        if self._quiet_frames < EMPTY_PARTIAL_EVERY_FRAMES:
            return
        self._quiet_frames = 0
        self._quiet_count += 1
        is_final = self._quiet_count % EMPTY_FINAL_EVERY == 0
        events.append(self._event([], is_final, False, self._quiet_start, end_frame))
        if is_final:  # that silence is locked: it will not be transcribed again
            self._quiet_start = end_frame
            self._preroll.clear()

    def _open_segment(self, frame: Frame) -> None:
        preroll = list(self._preroll)
        self._preroll.clear()
        start = preroll[0].number if preroll else frame.number
        self._segment_start = start
        if not self._in_utterance:
            self._utterance_start = start
            self._utterance_words = []
        self.recognizer.start_segment(start)
        for earlier in preroll:
            self.recognizer.feed(earlier)
        self.recognizer.feed(frame)
        self._since_interim = frame.number - start
        self._in_utterance = True
        self._silence_run = 0

    def _endpoint_reached(self) -> bool:
        return self._endpoint_frames is not None and self._silence_run >= self._endpoint_frames

    def _event(
        self, words: list[Word], is_final: bool, speech_final: bool, start: int, end_frame: int
    ) -> Event:
        confidence = None
        if self._smart_turn:
            # A deterministic stand-in: 1.0 at an utterance's end, else the share of
            # the endpointing silence heard so far (0.0 without endpointing).
            if speech_final:
                confidence = 1.0
            elif self._endpoint_frames and self._in_utterance:
                confidence = round(min(1.0, self._silence_run / self._endpoint_frames), 2)
            else:
                confidence = 0.0
        return partial_event(
            words,
            is_final=is_final,
            speech_final=speech_final,
            start=seconds(start),
            duration=seconds(end_frame - start),
            channel_index=self._channel_index,
            speaker=self._speaker,
            end_of_turn_confidence=confidence,
        )

    def _partial(
        self, words: list[Word], is_final: bool, speech_final: bool, end_frame: int
    ) -> Event:
        """A partial of the open utterance: timed from its start ("restate") or from
        its chunk's ("tail")."""
        if self._restate:
            start = self._utterance_start
        else:
            start = self._segment_start if self._segment_start is not None else self._boundary
        return self._event(words, is_final, speech_final, start, end_frame)

    def _lock_chunk(self, end_frame: int, events: list[Event]) -> None:
        words = self.recognizer.end_segment()
        if words:  # an empty locked chunk tells a client nothing
            events.append(self._partial(words, True, False, end_frame))
        self.finalized.extend(words)
        self._utterance_words.extend(words)
        self._close_segment(end_frame)

    def _end_utterance(
        self, end_frame: int, tail: list[Word], events: list[Event], forced: bool = False
    ) -> None:
        """The utterance is over (endpointing, finalize, audio.done); tail: the words
        after its last locked chunk. forced: an utterance final even without words."""
        if not self._restate:
            events.append(self._partial(tail, True, True, end_frame))
        else:
            if tail:
                events.append(self._partial(tail, True, False, end_frame))
            words = self._utterance_words + tail
            if words or forced:
                events.append(self._partial(words, True, True, end_frame))
            elif self._empty_partials:
                # Noise: the live service never ends it with an utterance final.
                events.append(self._partial([], True, False, end_frame))
        self.finalized.extend(tail)
        self._speech_final_count = len(self.finalized)
        self._in_utterance = False
        self._silence_run = 0
        self._close_segment(end_frame)
        self._after_utterance(end_frame)

    def _after_utterance(self, end_frame: int) -> None:
        self._utterance_words = []
        self._last_end = end_frame
        self._quiet_start = end_frame
        self._quiet_frames = 0
        self._quiet_count = 0

    def _close_segment(self, end_frame: int) -> None:
        self._segment_start = None
        self._boundary = end_frame
        self._preroll.clear()

    def finalize(self) -> list[Event]:
        """A finalize: the utterance ends now, after the frames seen so far. With no
        open utterance, an empty utterance final over the audio since the last one."""
        end_frame = self._next_frame
        events: list[Event] = []
        if self._in_utterance:
            tail = self.recognizer.end_segment() if self._segment_start is not None else []
            self._end_utterance(end_frame, tail, events, forced=True)
        else:
            start = self._last_end if self._restate else self._boundary
            events.append(self._event([], True, True, start, end_frame))
            self._speech_final_count = len(self.finalized)
            self._close_segment(end_frame)
            self._after_utterance(end_frame)
        return events

    def finish(self, flush: bool) -> tuple[list[Event], list[Word], list[Word]]:
        """End of audio: (events, every word, the words no speech_final delivered).

        flush: the open utterance ends as at endpointing, and its events (and
        those of the trailing frame) are returned; else they are dropped and
        its words only count in the texts.
        """
        events = self.process(self.recognizer.flush_frames())
        if flush:
            if self._in_utterance:
                tail = self.recognizer.end_segment() if self._segment_start is not None else []
                self._end_utterance(self._next_frame, tail, events)
        else:
            events = []
            if self._segment_start is not None:
                self.finalized.extend(self.recognizer.end_segment())
                self._segment_start = None
        return events, self.finalized, self.finalized[self._speech_final_count :]

    @property
    def speaker(self) -> int | None:
        return self._speaker


class STTSession:
    """The recognition side of one connection: feed_audio(bytes) -> events."""

    def __init__(
        self,
        config: SessionConfig,
        backend: RecognizerBackend,
        style: SessionStyle = SessionStyle(),
    ) -> None:
        self.config = config
        self.style = style
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
                        style=style,
                        diarize=config.diarize,
                        smart_turn=config.smart_turn is not None,
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

    def finalize(self, channel: int | None = None) -> list[Event]:
        """A finalize message: end the utterance of `channel` (None: of every channel)."""
        trackers = self.trackers if channel is None else [self.trackers[channel]]
        events: list[Event] = []
        for tracker in trackers:
            events += tracker.finalize()
        return events

    def finish(self, done_text: str = "empty", flush: bool = True) -> list[Event]:
        """audio.done: the flushed partials (flush), then one transcript.done per channel
        with "empty", "whole" or "pending" text."""
        self.finished = True
        events: list[Event] = []
        done: list[Event] = []
        for index, tracker in enumerate(self.trackers):
            flushed, whole, pending = tracker.finish(flush)
            events += flushed
            words = {"whole": whole, "pending": pending}.get(done_text, [])
            done.append(done_event(words, self.duration, index, tracker.speaker))
        return events + done

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.recognizer.close()


def open_session(
    config: SessionConfig, backend: RecognizerBackend, style: SessionStyle = SessionStyle()
) -> Any:
    """The connection's session: here, or in a worker process if the backend asks."""
    if backend.runs_in_process:
        return backend.open_remote(config, style)
    return STTSession(config, backend, style)
