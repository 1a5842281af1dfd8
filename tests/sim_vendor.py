"""A virtual clock, a timer heap and a simulated xAI-like vendor for the session core.

The session core (session_core.py) does no I/O: events in, actions out. This
module is the world around it for tests: `Harness` feeds the core events at
virtual times, carries out its actions (timers, deferred outcomes, listener
calls) and hands connection actions to `SimVendor`, which answers them the way
a live socket to the xAI service would (opened or refused, sends completed,
partials, transcript.done, closes, pongs) after random but reproducible
delays.

The vendor "recognises" marker audio: every 10 ms frame of 16 kHz PCM (320
bytes) carries its index in the user's stream. A speech frame is loud and is
heard as the word ``w<index>``; a silence frame is quiet; a noise frame is as
loud as speech (the core's level meter counts it as speech) but the vendor
hears no word in it. Word times are on the connection's own timeline (the
frame's byte offset among the bytes that connection received), so a test can
check that the core maps them back to the user's timeline exactly (frame ``i``
is ``[10 i, 10 i + 10)`` ms there). `Harness.pushed` is the simulator's own
record of every frame pushed and what it is: the judge of which frames must
come out as words.

How the vendor speaks (`VendorProfile`): by default the LIVE xAI wire
(shared/docs/xai-stt-protocol.md, "How the live service really speaks"),
and each older behaviour is one knob a test can draw:

- utterances: words are locked in chunk finals (`is_final`, not
  `speech_final`) every `chunk_ms` of an utterance's audio; the utterance
  ends (endpointing, a finalize, audio.done) with an utterance final
  (`speech_final`) that restates every word of the utterance (live), after a
  chunk final of its tail (`lock_tail`), or carries only the tail (old);
- times: interims and chunk finals start at the utterance's start, their
  duration growing with it (live), or at their own chunk's start (old);
  an interim carries only the words after the locked point;
- between utterances, empty partials over silence and noise (live), every
  fourth one `is_final`; never an utterance final for them;
- transcript.done: empty (live; the open utterance is always flushed first
  then), the whole connection's text, or the pending part;
- `finalize` (SendFinalize): answered by ending the utterance now with an
  utterance final (restating; empty text when nothing is pending; it ends at
  the audio heard when the finalize was read), the connection staying open
  (live); refused with a client-message parse error, the connection staying
  open (an older deployment); or ignored.

Faults a test can inject per connection: a vendor error event (an older
deployment's, with a code, or a live one without), "ASR stream timed out"
(the live service ending an idle session), an abrupt close, a close 1000
without done, a silent partition (sends still complete, no events, pings
unanswered), a connection that never answers audio.done, a broken socket
(the next send fails), slow writes (back-pressure); and for the next
openings: refusals (503, or 401: fatal), or no answer until the connect
timeout.

The harness also checks properties of the core's traffic as it goes (one send
in flight per connection, no audio after audio.done, nothing sent to a
connection whose close was delivered, no connection work after stop); the
violations are collected in `Harness.violations`. Ground truth for the loss checks:
`SimConn.over_at` (when the core learnt or decided a connection is over),
`SimConn.interim_words` (the interim text the core holds of it), the frames
each connection heard (`SimConn.frames`, `SimVendor.sent_frames`), every
frame handed to a connection and when (`SimVendor.handed`), when a connection
could take audio (`SimConn.open_at`), the control messages written
(`SimVendor.messages`) and every fault the script made (`SimVendor.faults`).
"""

from __future__ import annotations

import array
import heapq
import itertools
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xai_asr_python.engine_io import (
    Abort,
    Action,
    AudioPushed,
    CancelTimer,
    Close,
    Closed,
    CloseInfo,
    Defer,
    DeferredDue,
    Event,
    Notify,
    Open,
    Opened,
    OpenFailed,
    Probe,
    ProbeAnswered,
    Received,
    Send,
    SendCompleted,
    SendEndOfAudio,
    SendFinalize,
    SetTimer,
    TimerFired,
    TimerKey,
)
from xai_asr_python.protocol import (
    Failure,
    ServerEvent,
    TranscriptDone,
    TranscriptPartial,
    VendorError,
    WordTiming,
)

SAMPLE_RATE = 16_000
FRAME_MS = 10
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160
FRAME_BYTES = FRAME_SAMPLES * 2  # 320
BYTES_PER_SECOND = SAMPLE_RATE * 2  # 32000
SPEECH_LEVEL = 8000  # about -12 dBFS: well above the -40 dBFS speech threshold
SPEECH_TAG = 0x1234
NOISE_TAG = 0x4321
SILENCE_TAG = 0x5A  # below 256: the frame stays quiet
# More scheduled callbacks than this at one virtual instant: the core (or the sim) loops.
MAX_CALLBACKS_PER_INSTANT = 20_000


# --------------------------------------------------------------------------- marker audio


def _to_bytes(samples: array.array[int]) -> bytes:
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def speech_frame(index: int) -> bytes:
    """A loud 10 ms frame that the vendor hears as the word ``w<index>``."""
    samples = array.array("h", [SPEECH_LEVEL] * FRAME_SAMPLES)
    samples[1] = index & 0x7FFF
    samples[2] = (index >> 15) & 0x7FFF
    samples[3] = SPEECH_TAG
    return _to_bytes(samples)


def silence_frame(index: int) -> bytes:
    """A quiet 10 ms frame (every sample below 256) that still carries its index."""
    samples = array.array("h", [0] * FRAME_SAMPLES)
    samples[0] = index & 0xFF
    samples[1] = (index >> 8) & 0xFF
    samples[2] = (index >> 16) & 0xFF
    samples[3] = SILENCE_TAG
    return _to_bytes(samples)


def noise_frame(index: int) -> bytes:
    """A 10 ms frame as loud as speech (the core's level meter calls it speech) in which
    the vendor hears no word: noise."""
    samples = array.array("h", [SPEECH_LEVEL] * FRAME_SAMPLES)
    samples[1] = index & 0x7FFF
    samples[2] = (index >> 15) & 0x7FFF
    samples[3] = NOISE_TAG
    return _to_bytes(samples)


SPEECH = "speech"
SILENCE = "silence"
NOISE = "noise"


def frame_kind(data: bytes) -> tuple[int, str]:
    """(index, SPEECH | SILENCE | NOISE) of one marker frame; ValueError if it is not one."""
    if len(data) != FRAME_BYTES:
        raise ValueError(f"a frame is {FRAME_BYTES} bytes, not {len(data)}")
    samples = array.array("h")
    samples.frombytes(data)
    if sys.byteorder == "big":
        samples.byteswap()
    if samples[0] == SPEECH_LEVEL and samples[3] in (SPEECH_TAG, NOISE_TAG):
        kind = SPEECH if samples[3] == SPEECH_TAG else NOISE
        return samples[1] | (samples[2] << 15), kind
    if samples[3] == SILENCE_TAG:
        return samples[0] | (samples[1] << 8) | (samples[2] << 16), SILENCE
    raise ValueError("not a marker frame (altered on the way?)")


def decode_frame(data: bytes) -> tuple[int, bool]:
    """(index, is_speech) of one marker frame: is it heard as a word?"""
    index, kind = frame_kind(data)
    return index, kind == SPEECH


def word_index(token: str) -> int:
    """``w17`` -> 17."""
    if not token.startswith("w") or not token[1:].isdigit():
        raise ValueError(f"not a marker word: {token!r}")
    return int(token[1:])


# --------------------------------------------------------------------------- the vendor


UTTERANCE_FINALS = ("restate", "tail")
PARTIAL_TIMES = ("utterance", "chunk")
DONE_TEXTS = ("empty", "whole", "pending")
FINALIZE_REPLIES = ("answer", "refuse", "ignore")
# What an older deployment answers to a `finalize` it does not know (the connection stays).
REFUSAL_MESSAGE = 'Invalid message: expected {"type": "audio.done"}'
STREAM_TIMED_OUT = "ASR stream timed out"
# Between utterances with empty partials: every EMPTY_FINAL_EVERY-th one is is_final.
EMPTY_FINAL_EVERY = 4


@dataclass
class VendorProfile:
    """How the simulated vendor behaves (drawn once per test run). The defaults are the
    live xAI wire; every older behaviour is one knob.

    Results: `utterance_final` "restate" (live: the utterance final carries every word
    of the utterance again; with `lock_tail`, after a chunk final of the words after
    the last lock, as captured) or "tail" (older: only the words after the last lock).
    `partial_times` "utterance" (live: interims and chunk finals start at the
    utterance's start, their duration growing) or "chunk" (older: at their chunk's
    start). `chunk_ms`: a chunk final every this much audio of an utterance (None:
    only when a test asks). `empty_partials`: between utterances, an empty partial
    every `empty_every` frames of silence or noise heard, every fourth one is_final
    (live). An utterance final never comes for an utterance without words, unless a
    finalize asks for one (or `utterance_final` is "tail", whose finals may be empty).

    `done_text`: transcript.done carries "empty" text (live), the "whole" connection's
    text, or the "pending" part (the words no utterance final carried); with
    `done_words`, word times too. `flush_on_done`: at audio.done the open utterance
    ends with its finals first (always so with "empty": the words would be lost).

    `finalize`: a `finalize` message is "answer"ed (live: the utterance ends now with
    an utterance final reaching the audio heard when it was read, empty if nothing is
    pending; the connection stays open), "refuse"d (an older deployment: an error
    event without code, REFUSAL_MESSAGE, the connection staying open) or "ignore"d.
    `finalize_delay_s`: the time an answering vendor takes on top of the latency (the
    live service can take seconds: its answer may come after the core gave up on it).
    """

    open_delay_s: tuple[float, float] = (0.02, 0.2)
    latency_s: tuple[float, float] = (0.005, 0.08)
    send_delay_s: tuple[float, float] = (0.0, 0.004)
    # An interim result every this many frames heard (with words after the lock).
    interim_every: int = 20
    # An utterance final after this much silence (or noise) following words; None: never.
    endpoint_ms: int | None = 300
    # Endpointed finals and chunk finals end at the end of what was heard (True) or at
    # the last word (False). A finalize's utterance final always ends at what was heard.
    final_to_heard_end: bool = True
    utterance_final: str = "restate"
    lock_tail: bool = True
    partial_times: str = "utterance"
    chunk_ms: int | None = 3000
    empty_partials: bool = True
    empty_every: int = 50
    done_text: str = "empty"
    done_words: bool = False
    flush_on_done: bool = True
    # The server closes by itself after transcript.done (else it waits for the client).
    close_after_done: bool = True
    finalize: str = "answer"
    # How long the vendor takes to end the utterance a finalize asked to end, on top of
    # the latency (its answer, and all after it, come that much later).
    finalize_delay_s: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name, allowed in (
            ("utterance_final", UTTERANCE_FINALS),
            ("partial_times", PARTIAL_TIMES),
            ("done_text", DONE_TEXTS),
            ("finalize", FINALIZE_REPLIES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}")

    @property
    def restates(self) -> bool:
        return self.utterance_final == "restate"

    @property
    def flushes(self) -> bool:
        return self.flush_on_done or self.done_text == "empty"


@dataclass
class SimConn:
    generation: int
    opened_at: float
    state: str = "opening"  # opening, open, gone
    fifo_tail: float = 0.0
    closing: bool = False  # its Closed is on its way: nothing else is scheduled
    # Faults.
    partitioned: bool = False
    broken: bool = False
    no_done: bool = False
    slow: bool = False  # sends take long to be written (back-pressure)
    # Traffic.
    received: bytearray = field(default_factory=bytearray)
    frames: list[tuple[int, bool]] = field(default_factory=list)  # (index, word) heard
    open_at: float | None = None  # when its Opened was delivered (it could take audio)
    words: list[tuple[int, float]] = field(default_factory=list)  # (index, conn start s)
    # words[:utt_ptr] were carried by utterance finals (or a done); words[:lock_ptr] are
    # locked (chunk finals too). utt_ptr <= lock_ptr.
    utt_ptr: int = 0
    lock_ptr: int = 0
    utt_end_s: float = 0.0  # end of the latest utterance final
    lock_end_s: float = 0.0  # end of the latest lock (any final)
    frames_since_interim: int = 0
    frames_since_lock: int = 0  # audio heard in the utterance since its last lock
    silence_run: int = 0
    quiet_frames: int = 0  # non-word frames heard between utterances since an empty one
    quiet_count: int = 0  # empty partials since the last utterance
    send_token: int | None = None  # the send in flight (its completion's token)
    send_is_eoa: bool = False
    eoa_sent: bool = False
    eoa_at: float | None = None  # when audio.done was written
    done_sent: bool = False
    last_audio_at: float | None = None  # when the latest audio frame was written
    finalizes: int = 0  # `finalize` messages read
    client_close: str | None = None  # the reason of the client's polite close, if any
    probe_tokens: set[int] = field(default_factory=set)
    closed_delivered: bool = False
    # Ground truth for the loss checks. When the core learnt (or decided) that this
    # connection is over: an error event, its close or a failed opening delivered, or
    # the core's own Abort or Close. None: still in use.
    over_at: float | None = None
    # The words of the latest interim result delivered to the core, until a final
    # result is delivered (the text the core holds and must make final at stop).
    interim_words: tuple[int, ...] = ()
    # The first audio it was sent had been sent before to a connection that was sent
    # audio.done: a repair (its results are all or nothing; at stop they are lost).
    repairs_a_drain: bool = False

    @property
    def heard_s(self) -> float:
        return len(self.received) / BYTES_PER_SECOND

    @property
    def in_utterance(self) -> bool:
        return len(self.words) > self.utt_ptr

    def utterance_start_s(self) -> float:
        """Where the open utterance starts: its first word (or the end of the last one)."""
        if self.in_utterance:
            return self.words[self.utt_ptr][1]
        return self.utt_end_s

    def text(self, words: list[tuple[int, float]]) -> str:
        return " ".join(f"w{i}" for i, _ in words)


def _timings(words: list[tuple[int, float]]) -> tuple[WordTiming, ...]:
    step = FRAME_MS / 1000
    return tuple(WordTiming(f"w{i}", start, start + step) for i, start in words)


class Harness:
    """The virtual clock, the timer heap and the listener log around one SessionCore.

    `core` is anything with ``handle(event) -> list[action]``. Everything that
    happens is scheduled on one heap of (time, sequence, callback) and run in
    time order (ties in scheduling order) by `run_until`.
    """

    def __init__(self, core: Any, rng: random.Random, profile: VendorProfile | None = None):
        self.core = core
        self.rng = rng
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._timer_tokens: dict[TimerKey, int] = {}
        self._tokens = itertools.count(1)
        self.vendor = SimVendor(self, profile or VendorProfile())
        self.notifications: list[tuple[float, str, tuple[Any, ...]]] = []
        # A readable log, for failure reports: lines, or (time, arrow, event or action)
        # formatted only when read (trace_tail): most runs never read it.
        self.trace: list[str | tuple[float, str, object]] = []
        self.violations: list[str] = []
        self.stopped_at: float | None = None
        self.events_fed = 0
        self._same_instant = 0
        self.keep_trace = True
        # The simulator's own record of every frame pushed: index -> SPEECH, SILENCE or
        # NOISE, as the vendor will hear it (only SPEECH frames become words).
        self.pushed: dict[int, str] = {}

    # ---------------------------------------------------------------- scheduling

    def schedule(self, at: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (max(at, self.now), next(self._seq), fn))

    def run_until(self, t: float) -> None:
        """Run everything due up to and including `t`; the clock ends at `t`."""
        while self._heap and self._heap[0][0] <= t:
            at, _, fn = heapq.heappop(self._heap)
            if at > self.now:
                self.now = at
                self._same_instant = 0
            self._same_instant += 1
            if self._same_instant > MAX_CALLBACKS_PER_INSTANT:
                raise AssertionError(
                    f"livelock: over {MAX_CALLBACKS_PER_INSTANT} events at t={self.now:.4f} "
                    "without the clock moving\n" + self.trace_tail(40)
                )
            fn()
        self.now = max(self.now, t)

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    # ---------------------------------------------------------------- the core

    def feed(self, event: Event) -> list[Action]:
        """Hand one event to the core at the current virtual time; carry out its actions."""
        assert abs(event.now - self.now) < 1e-12, (event, self.now)
        self.events_fed += 1
        if isinstance(event, AudioPushed):
            self._note_pushed(event.chunk)
        actions = self.core.handle(event)
        if self.keep_trace:
            now = self.now
            self.trace.append((now, "<-", event))
            for action in actions:
                self.trace.append((now, "   ->", action))
        for action in actions:
            self._apply(action)
        return actions

    def trace_tail(self, lines: int) -> str:
        """The last `lines` entries of the trace, readable."""
        return "\n".join(
            entry if isinstance(entry, str) else f"{entry[0]:9.4f} {entry[1]} {_short(entry[2])}"
            for entry in self.trace[-lines:]
        )

    def _note_pushed(self, chunk: bytes) -> None:
        for offset in range(0, len(chunk) - FRAME_BYTES + 1, FRAME_BYTES):
            try:
                index, kind = frame_kind(chunk[offset : offset + FRAME_BYTES])
            except ValueError:
                continue
            self.pushed[index] = kind

    def speech_frames(self) -> set[int]:
        """The frames pushed that the vendor hears as words."""
        return {i for i, kind in self.pushed.items() if kind == SPEECH}

    def _apply(self, action: Action) -> None:
        stopped = self.stopped_at is not None
        # (A Defer is a listener call on a later loop turn: allowed too.)
        if stopped and not isinstance(action, (Abort, Close, CancelTimer, Notify, Defer)):
            self.violations.append(f"t={self.now:.4f}: after stop the core asked for {action!r}")
        if isinstance(action, SetTimer):
            at = action.at
            token = next(self._tokens)
            self._timer_tokens[action.key] = token
            key = action.key

            def fire(key: TimerKey = key, token: int = token) -> None:
                if self._timer_tokens.get(key) == token:
                    del self._timer_tokens[key]
                    self.feed(TimerFired(self.now, key))

            self.schedule(at, fire)
        elif isinstance(action, CancelTimer):
            self._timer_tokens.pop(action.key, None)
        elif isinstance(action, Defer):
            generation, outcome = action.generation, action.outcome
            self.schedule(self.now, lambda: self.feed(DeferredDue(self.now, generation, outcome)))
        elif isinstance(action, Notify):
            self.notifications.append((self.now, action.method, action.args))
        else:
            self.vendor.act(action)

    def timers(self) -> dict[TimerKey, int]:
        return dict(self._timer_tokens)


class SimVendor:
    """Answers the core's connection actions the way a live xAI socket would."""

    def __init__(self, harness: Harness, profile: VendorProfile) -> None:
        self.h = harness
        self.p = profile
        self.conns: dict[int, SimConn] = {}
        self.refuse_until = -1.0
        self.refuse_fatal = False
        self.hang_opens = 0  # this many next openings get no answer (connect timeout)
        self._extra_delay = 0.0  # added to the latency of the events being made
        self.opens: list[tuple[float, int]] = []
        self.sent_frames: dict[int, list[int]] = {}  # generation -> frame indices sent
        # The control messages written, in order: (time, generation, "finalize" or
        # "audio.done").
        self.messages: list[tuple[float, int, str]] = []
        # Every fault that happened: (time, generation or None, kind): injected, an
        # opening refused or hung, a done withheld (no_done set by a test).
        self.faults: list[tuple[float, int | None, str]] = []
        # Every Send the core made (heard or not): (time, generation, data), in order
        # (`handed` reads it).
        self.sends: list[tuple[float, int, bytes]] = []

    # ---------------------------------------------------------------- helpers

    def handed(self) -> dict[int, list[tuple[float, int]]]:
        """When and to which generation each frame was handed (a Send, heard or not):
        index -> [(time, generation)], in order."""
        out: dict[int, list[tuple[float, int]]] = {}
        for at, gen, data in self.sends:
            for offset in range(0, len(data) - FRAME_BYTES + 1, FRAME_BYTES):
                try:
                    index, _ = frame_kind(data[offset : offset + FRAME_BYTES])
                except ValueError:
                    continue  # _hear reports it
                out.setdefault(index, []).append((at, gen))
        return out

    def _draw(self, span: tuple[float, float]) -> float:
        return self.h.rng.uniform(*span)

    def _deliver(
        self,
        conn: SimConn,
        make: Callable[[], Event | None],
        *,
        fifo: bool = True,
        delay: float | None = None,
        final: bool = False,
    ) -> None:
        """Schedule an event of `conn` (in its order when `fifo`); `final`: its Closed."""
        if conn.closing:
            return
        d = self._draw(self.p.latency_s) + self._extra_delay if delay is None else delay
        at = self.h.now + d
        if fifo:
            at = max(at, conn.fifo_tail)
            conn.fifo_tail = at
        if final:
            conn.closing = True

        def run() -> None:
            if conn.closed_delivered:
                return
            if conn.partitioned and fifo and not final:
                return  # lost in the partition
            event = make()
            if event is None:
                return
            if isinstance(event, Closed):
                self._flush_before_close(conn)
                conn.closed_delivered = True
                conn.state = "gone"
                self._over(conn)
            elif isinstance(event, Received):
                self._note_delivered(conn, event.event)
            self.h.feed(event)

        self.h.schedule(at, run)

    def _over(self, conn: SimConn) -> None:
        if conn.over_at is None:
            conn.over_at = self.h.now

    def _note_delivered(self, conn: SimConn, event: ServerEvent) -> None:
        if isinstance(event, TranscriptPartial):
            if event.is_final or event.speech_final:
                conn.interim_words = ()
            elif event.text:
                conn.interim_words = tuple(word_index(t) for t in event.text.split())
        elif isinstance(event, TranscriptDone):
            conn.interim_words = ()
        elif isinstance(event, VendorError) and event.message != REFUSAL_MESSAGE:
            self._over(conn)  # an error event ends a connection (a refusal of finalize not)

    def _flush_before_close(self, conn: SimConn) -> None:
        """A socket that ends fails the send and the ping under way first."""
        if conn.send_token is not None:
            conn.send_token = None
            self.h.feed(SendCompleted(self.h.now, conn.generation, False))
        if conn.probe_tokens:
            conn.probe_tokens.clear()
            self.h.feed(ProbeAnswered(self.h.now, conn.generation, None))

    def _event(self, conn: SimConn, event: ServerEvent) -> None:
        gen = conn.generation
        self._deliver(conn, lambda: Received(self.h.now, gen, event))

    def _close(
        self, conn: SimConn, info: CloseInfo, *, fifo: bool = True, delay: float | None = None
    ) -> None:
        gen = conn.generation
        self._deliver(
            conn, lambda: Closed(self.h.now, gen, info), fifo=fifo, delay=delay, final=True
        )

    # ---------------------------------------------------------------- actions

    def act(self, action: Action) -> None:
        if isinstance(action, Open):
            self._open(action)
            return
        conn = self.conns.get(action.generation)  # type: ignore[union-attr]
        if conn is None:
            self.h.violations.append(f"t={self.h.now:.4f}: {action!r} on a generation never opened")
            return
        if isinstance(action, (Send, SendEndOfAudio, SendFinalize)):
            self._send(conn, action)
        elif isinstance(action, Probe):
            self._probe(conn, action)
        elif isinstance(action, Close):
            self._over(conn)
            self._on_close(conn, action)
        elif isinstance(action, Abort):
            self._over(conn)
            self._abort(conn)
        else:  # pragma: no cover - the harness handles the rest
            raise AssertionError(f"unexpected action {action!r}")

    def _open(self, action: Open) -> None:
        gen = action.generation
        h = self.h
        if gen in self.conns or (self.opens and gen <= max(g for _, g in self.opens)):
            h.violations.append(f"t={h.now:.4f}: generation {gen} opened again / out of order")
        conn = SimConn(gen, h.now)
        self.conns[gen] = conn
        self.opens.append((h.now, gen))
        self.sent_frames[gen] = []
        if h.now < self.refuse_until:
            fatal = self.refuse_fatal
            self.faults.append((h.now, gen, "refused"))
            failure = Failure(
                kind="handshake_refused",
                message=f"the server refused the connection (HTTP {401 if fatal else 503})",
                vendor_code="401" if fatal else "503",
                fatal=fatal,
            )
            self._open_result(
                conn, lambda: OpenFailed(h.now, gen, failure), self._draw(self.p.open_delay_s)
            )
            return
        delay = self._draw(self.p.open_delay_s)
        if self.hang_opens > 0 or delay >= action.connect_timeout_s:
            self.hang_opens = max(0, self.hang_opens - 1)
            self.faults.append((h.now, gen, "hung"))
            failure = Failure(
                kind="handshake_timeout",
                message=f"the WebSocket handshake did not complete within "
                f"{action.connect_timeout_s:g} s",
            )
            self._open_result(
                conn, lambda: OpenFailed(h.now, gen, failure), action.connect_timeout_s
            )
            return

        def opened() -> Event:
            conn.state = "open"
            conn.open_at = h.now
            return Opened(h.now, gen)

        self._open_result(conn, opened, delay)

    def _open_result(self, conn: SimConn, make: Callable[[], Event], delay: float) -> None:
        def run() -> None:
            if conn.state != "opening" or conn.closed_delivered or conn.closing:
                return  # aborted meanwhile
            event = make()
            if isinstance(event, OpenFailed):
                conn.state = "gone"
                conn.closed_delivered = True  # nothing of it follows
                self._over(conn)
            self.h.feed(event)

        at = self.h.now + delay
        conn.fifo_tail = at
        self.h.schedule(at, run)

    def _send(self, conn: SimConn, action: Send | SendEndOfAudio | SendFinalize) -> None:
        h = self.h
        gen = conn.generation
        if conn.send_token is not None:
            h.violations.append(
                f"t={h.now:.4f}: gen {gen}: {_short(action)} while a send is in flight"
            )
        if conn.closed_delivered:
            h.violations.append(f"t={h.now:.4f}: gen {gen}: {_short(action)} after its close")
            return
        if conn.state != "open":
            h.violations.append(f"t={h.now:.4f}: gen {gen}: {_short(action)} before Opened")
            return
        if conn.eoa_sent:
            h.violations.append(f"t={h.now:.4f}: gen {gen}: {_short(action)} after audio.done")
        if not isinstance(action, Send):
            self.messages.append((h.now, gen, _MESSAGE_NAMES[type(action)]))
        else:
            self.sends.append((h.now, gen, action.data))
        token = next(h._tokens)
        conn.send_token = token
        conn.send_is_eoa = isinstance(action, SendEndOfAudio)
        if conn.broken:
            # The socket is gone: the write fails, and its close follows.
            def failed() -> None:
                if conn.send_token != token or conn.closed_delivered:
                    return
                conn.send_token = None
                h.feed(SendCompleted(h.now, gen, False))

            h.schedule(h.now + self._draw(self.p.send_delay_s), failed)
            self._close(conn, CloseInfo(), fifo=False, delay=0.002)
            return
        if isinstance(action, SendEndOfAudio):
            conn.eoa_sent = True

        def completed() -> None:
            if conn.send_token != token or conn.closed_delivered:
                return
            # The vendor gets the message when the write is done: what the core counts
            # as sent is what the vendor may have heard (with back-pressure a live socket
            # may deliver a little earlier; the core maps times only over what it sent).
            if isinstance(action, Send):
                conn.last_audio_at = h.now
                self._hear(conn, action.data)
            elif isinstance(action, SendFinalize):
                self._answer_finalize(conn)
            else:
                conn.eoa_at = h.now
                self._answer_end_of_audio(conn)
            conn.send_token = None
            h.feed(SendCompleted(h.now, gen, True))

        delay = self._draw((0.02, 0.3)) if conn.slow else self._draw(self.p.send_delay_s)
        h.schedule(h.now + delay, completed)

    def _hear(self, conn: SimConn, data: bytes) -> None:
        if len(data) == 0 or len(data) % FRAME_BYTES:
            self.h.violations.append(
                f"gen {conn.generation}: a send of {len(data)} bytes (not whole frames)"
            )
            return
        if len(data) > BYTES_PER_SECOND // 10:
            # Queued audio is joined up to 100 ms a message (the vendor's guidance).
            self.h.violations.append(
                f"gen {conn.generation}: a send of {len(data) // FRAME_BYTES} frames (> 100 ms)"
            )
        p = self.p
        for offset in range(0, len(data), FRAME_BYTES):
            chunk = data[offset : offset + FRAME_BYTES]
            try:
                index, kind = frame_kind(chunk)
            except ValueError as exc:
                self.h.violations.append(f"gen {conn.generation}: {exc}")
                continue
            speech = kind == SPEECH
            start_s = len(conn.received) / BYTES_PER_SECOND
            if not conn.received:
                conn.repairs_a_drain = any(
                    c.eoa_sent and index in self.sent_frames[c.generation]
                    for c in self.conns.values()
                    if c.generation < conn.generation
                )
            conn.received += chunk
            conn.frames.append((index, speech))
            self.sent_frames[conn.generation].append(index)
            if conn.partitioned:
                continue  # it never reaches the vendor
            conn.frames_since_interim += 1
            if speech:
                conn.words.append((index, start_s))
                conn.silence_run = 0
                conn.quiet_frames = 0
            else:
                conn.silence_run += 1
            if not conn.in_utterance:
                # Between utterances: silence and noise, now and then an empty partial.
                if not speech and p.empty_partials:
                    conn.quiet_frames += 1
                    if conn.quiet_frames >= p.empty_every:
                        self.emit_empty(conn)
                continue
            conn.frames_since_lock += 1
            if p.endpoint_ms is not None and conn.silence_run * FRAME_MS >= p.endpoint_ms:
                self.end_utterance(conn)
            elif (
                p.chunk_ms is not None
                and conn.frames_since_lock * FRAME_MS >= p.chunk_ms
                and len(conn.words) > conn.lock_ptr
            ):
                self.lock_chunk(conn)
            elif len(conn.words) > conn.lock_ptr and conn.frames_since_interim >= p.interim_every:
                self.emit_interim(conn)

    # ---------------------------------------------------------------- results

    def _chunk_start_s(self, conn: SimConn, pending: list[tuple[int, float]]) -> float:
        """Where a partial over `pending` (the words after the lock) starts: the
        utterance's start (live) or its own chunk's (older)."""
        if self.p.partial_times == "utterance":
            return conn.utterance_start_s()
        return pending[0][1] if pending else conn.lock_end_s

    def _end_s(self, conn: SimConn, pending: list[tuple[int, float]]) -> float:
        if self.p.final_to_heard_end or not pending:
            return conn.heard_s
        return pending[-1][1] + FRAME_MS / 1000

    def emit_interim(self, conn: SimConn) -> bool:
        """An interim result over the words heard after the locked point."""
        pending = conn.words[conn.lock_ptr :]
        conn.frames_since_interim = 0
        if not pending or not self._may_speak(conn):
            return False
        start = self._chunk_start_s(conn, pending)
        end = pending[-1][1] + FRAME_MS / 1000
        self._result(conn, pending, start, end, final=False)
        return True

    def emit_final(self, conn: SimConn, *, speech_final: bool = False) -> bool:
        """A chunk final (`lock_chunk`) or, with speech_final, the utterance's end
        (`end_utterance`)."""
        if speech_final:
            return self.end_utterance(conn)
        return self.lock_chunk(conn)

    def lock_chunk(self, conn: SimConn) -> bool:
        """A chunk final: the words after the locked point are locked."""
        pending = conn.words[conn.lock_ptr :]
        conn.frames_since_interim = 0
        if not pending or not self._may_speak(conn):
            return False
        start = self._chunk_start_s(conn, pending)
        end = max(self._end_s(conn, pending), conn.lock_end_s)
        conn.lock_ptr = len(conn.words)
        conn.lock_end_s = end
        conn.frames_since_lock = 0
        self._result(conn, pending, start, end, final=True)
        return True

    def end_utterance(self, conn: SimConn, *, forced: bool = False) -> bool:
        """The utterance ends: its utterance final (restating it, or its tail). Without
        words, only when `forced` (a finalize) or with tail finals."""
        conn.frames_since_interim = 0
        if not self._may_speak(conn):
            return False
        p = self.p
        utterance = conn.words[conn.utt_ptr :]
        tail = conn.words[conn.lock_ptr :]
        if not utterance and not forced:
            return False
        end = conn.heard_s if forced else max(self._end_s(conn, tail), conn.lock_end_s)
        if p.restates:
            if tail and p.lock_tail:
                self.lock_chunk(conn)
            start = utterance[0][1] if utterance else conn.utt_end_s
            words = utterance
        else:
            # Only the words after the last lock, even none.
            start = tail[0][1] if tail else conn.lock_end_s
            words = tail
        end = max(end, conn.lock_end_s, start)
        conn.utt_ptr = conn.lock_ptr = len(conn.words)
        conn.utt_end_s = conn.lock_end_s = end
        conn.frames_since_lock = 0
        conn.silence_run = 0
        conn.quiet_frames = conn.quiet_count = 0
        self._result(conn, words, start, end, final=True, speech_final=True)
        return True

    def emit_empty(self, conn: SimConn) -> None:
        """Between utterances: an empty partial over the silence since the last lock;
        every EMPTY_FINAL_EVERY-th is_final (that audio is locked)."""
        conn.quiet_frames = 0
        if not self._may_speak(conn):
            return
        conn.quiet_count += 1
        final = conn.quiet_count % EMPTY_FINAL_EVERY == 0
        start, end = conn.lock_end_s, conn.heard_s
        if final:
            conn.lock_end_s = end
        self._result(conn, [], start, end, final=final)

    def _result(
        self,
        conn: SimConn,
        pending: list[tuple[int, float]],
        start: float,
        end: float,
        *,
        final: bool,
        speech_final: bool = False,
    ) -> None:
        self._event(
            conn,
            TranscriptPartial(
                text=conn.text(pending),
                words=_timings(pending),
                is_final=final,
                speech_final=speech_final,
                start_s=start,
                duration_s=end - start,
                channel=None,
            ),
        )

    def _may_speak(self, conn: SimConn) -> bool:
        return conn.state == "open" and not conn.closing and not conn.partitioned

    def _answer_finalize(self, conn: SimConn) -> None:
        conn.finalizes += 1
        if conn.partitioned:
            return
        reply = self.p.finalize
        if reply == "answer":
            # The vendor may take its time to end the utterance: its results, and all
            # that follows them on the connection, come that much later.
            self._extra_delay = self._draw(self.p.finalize_delay_s)
            try:
                self.end_utterance(conn, forced=True)
            finally:
                self._extra_delay = 0.0
        elif reply == "refuse":
            self._event(conn, VendorError(message=REFUSAL_MESSAGE, code=None))
        # "ignore": nothing at all

    def _answer_end_of_audio(self, conn: SimConn) -> None:
        if conn.no_done or conn.partitioned:
            if conn.no_done:
                self.faults.append((self.h.now, conn.generation, "no_done"))
            return
        p = self.p
        if p.flushes and conn.in_utterance:
            self.end_utterance(conn)
        conn.done_sent = True
        if p.done_text == "whole":
            words = conn.words
        elif p.done_text == "pending":
            words = conn.words[conn.utt_ptr :]
        else:
            words = []
        conn.utt_ptr = conn.lock_ptr = len(conn.words)
        self._event(
            conn,
            TranscriptDone(
                text=conn.text(words),
                duration_s=conn.heard_s,
                channel=0,
                words=_timings(words) if p.done_words else (),
            ),
        )
        if p.close_after_done:
            self._close(conn, CloseInfo(code=1000, reason="done"))

    # ---------------------------------------------------------------- probes and closes

    def _probe(self, conn: SimConn, action: Probe) -> None:
        h = self.h
        gen = conn.generation
        if conn.closed_delivered:
            h.violations.append(f"t={h.now:.4f}: gen {gen}: Probe after its close")
            return
        if conn.state != "open":
            h.violations.append(f"t={h.now:.4f}: gen {gen}: Probe before Opened")
            return
        token = next(h._tokens)
        conn.probe_tokens.add(token)

        def answer(alive: bool) -> None:
            if token not in conn.probe_tokens or conn.closed_delivered:
                return
            conn.probe_tokens.discard(token)
            # (A draining connection may be past help: its turn is being repaired.)
            in_use = conn.over_at is None and not conn.eoa_sent
            h.feed(ProbeAnswered(h.now, gen, alive))
            # No pong in time: the connection is dead, and the core stops using it at
            # once (session.py, "Liveness").
            if not alive and in_use and conn.over_at is None and h.stopped_at is None:
                h.violations.append(
                    f"t={h.now:.4f}: gen {gen}: its probe found it dead (no pong in "
                    f"{action.timeout_s:g} s) and the core goes on using it"
                )

        if conn.partitioned or conn.closing:
            h.schedule(h.now + action.timeout_s, lambda: answer(False))
        else:
            # A pong: a control frame, behind whatever the server sent before it.
            delay = self._draw(self.p.latency_s)
            at = max(h.now + delay, conn.fifo_tail)
            if at - h.now > action.timeout_s:
                at = h.now + action.timeout_s
                h.schedule(at, lambda: answer(False))
            else:
                h.schedule(at, lambda: answer(True))

    def _on_close(self, conn: SimConn, action: Close) -> None:
        if conn.closed_delivered or conn.closing:
            return
        conn.client_close = action.reason
        if conn.state == "opening":
            self._close(conn, CloseInfo(), fifo=False, delay=0.001)
            return
        if conn.partitioned:
            timeout = 1.0 if action.timeout_s is None else action.timeout_s
            self._close(
                conn,
                CloseInfo(sent_code=1000, sent_reason=action.reason),
                fifo=False,
                delay=timeout,
            )
            return
        # The server reads what came before and echoes the close.
        self._close(
            conn,
            CloseInfo(code=1000, reason=action.reason, sent_code=1000, sent_reason=action.reason),
        )

    def _abort(self, conn: SimConn) -> None:
        if conn.closed_delivered:
            return
        conn.closing = False  # whatever was on its way is superseded
        conn.partitioned = True  # nothing more is read from it
        self._close(conn, CloseInfo(), fifo=False, delay=0.001)

    # ---------------------------------------------------------------- faults

    def live(self) -> list[SimConn]:
        """Open connections whose close is not under way, newest first."""
        return sorted(
            (
                c
                for c in self.conns.values()
                if c.state == "open" and not c.closing and not c.closed_delivered
            ),
            key=lambda c: -c.generation,
        )

    def inject(self, conn: SimConn, kind: str) -> None:
        self.faults.append((self.h.now, conn.generation, kind))
        if kind == "error":
            # An older deployment's error event, with a code.
            self._event(conn, VendorError(message="simulated internal error", code="500"))
            self._close(conn, CloseInfo(code=1011, reason="internal error"))
        elif kind == "error_live":
            # The live service's: no code; a pipeline failure closes the connection.
            self._event(conn, VendorError(message="Cannot continue request", code=None))
            self._close(conn, CloseInfo(code=1011, reason="internal error"))
        elif kind == "stream_timeout":
            # The live service ends a session it found idle, and closes.
            self._event(conn, VendorError(message=STREAM_TIMED_OUT, code=None))
            self._close(conn, CloseInfo(code=1011, reason=STREAM_TIMED_OUT))
        elif kind == "abrupt":
            self._close(conn, CloseInfo())
        elif kind == "goaway":
            self._close(conn, CloseInfo(code=1000, reason="bye"))
        elif kind == "partition":
            conn.partitioned = True
        elif kind == "no_done":
            conn.no_done = True
        elif kind == "broken":
            conn.broken = True
        elif kind == "slow":
            conn.slow = True
        else:
            raise ValueError(kind)

    def refuse(self, until: float, *, fatal: bool = False) -> None:
        self.refuse_until = until
        self.refuse_fatal = fatal


_MESSAGE_NAMES: dict[type, str] = {SendEndOfAudio: "audio.done", SendFinalize: "finalize"}


def _short(obj: object) -> str:
    if isinstance(obj, (Send,)):
        frames = []
        for off in range(0, len(obj.data), FRAME_BYTES):
            try:
                i, sp = decode_frame(obj.data[off : off + FRAME_BYTES])
                frames.append(f"{'w' if sp else 's'}{i}")
            except ValueError:
                frames.append("?")
        return f"Send(gen={obj.generation}, {' '.join(frames)})"
    if isinstance(obj, Open):
        return f"Open(gen={obj.generation}, timeout={obj.connect_timeout_s:g})"
    text = repr(obj)
    if "AudioPushed" in text:
        data: bytes = obj.chunk  # type: ignore[attr-defined]
        parts = []
        for off in range(0, len(data), FRAME_BYTES):
            try:
                i, sp = decode_frame(data[off : off + FRAME_BYTES])
                parts.append(f"{'w' if sp else 's'}{i}")
            except ValueError:
                parts.append("?")
        return f"AudioPushed({' '.join(parts)})"
    return text if len(text) <= 400 else text[:400] + "..."
