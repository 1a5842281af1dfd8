"""The streaming session engine: one user audio stream over any number of xAI connections.

The engine knows nothing about TEN. The extension pushes audio and finalizes
into a `StreamingSession` and turns its listener callbacks into TEN messages.

Ownership (one owner per piece of state):
- the session owns the audio buffer, the connections, the generation counter,
  the pending finalizes and every task it starts;
- a `Recognition` (recognition.py) is ONE connection and is never reused;
- the supervisor task is the only sender: frames go buffer -> socket in
  arrival order, a finalize marker takes its place in that order, and a
  frame whose send fails goes back to the head of the buffer;
- each frame has one owner at a time: the buffer (not sent yet, or its send
  failed), a connection's replay window (sent, not yet covered by a final
  result; a draining connection keeps its window until its turn ends), a
  repair connection (see Replay), or no one (transcribed for good, or
  trimmed from the window).

Connections. The *current* connection is the one new audio goes to. After a
finalize (`audio.done`) it becomes *draining*: it gets no more audio, has
until the finalize's deadline to deliver `transcript.done`, and is then
closed by us whether or not the server closed it. The next connection is
opened at once (pre-warmed) unless `prewarm` is off; with `standby` too it is
opened earlier, when the current connection is sent its first speech, and
kept as the *standby* until the finalize (or a planned close) hands over to
it, so the audio after a finalize never waits for a handshake. A standby is
never a new way to fail: one that is refused or fails is logged and the next
turn connects the usual way (that attempt reports and backs off if the
service is really refusing); one the server closed meanwhile is replaced at
the handoff; a failure of the current connection, an idle close, new
settings, giving up and stop() close it. Results are delivered
in order: results of a newer connection are held back until every older
draining connection has finished its turn (done, timeout, failure), so the
final of turn N and its finalize end precede any result of turn N+1.

Planned versus failure. A close after `transcript.done`, an idle close and a
close at stop are planned: no error, no backoff. Anything else (a refused or
timed-out handshake, no `transcript.created`, an `error` event, a close
without done, a failed send, a stall) is a failure: a NON_FATAL `on_error`
with the backoff delay, then a new attempt; a FATAL one when retrying cannot
help (401/403/400/404) or the streak reaches `backoff.max_attempts`.

Status rule (`on_status`): the status describes the *current* connection,
the one that takes new audio. Draining connections do not affect it.
- CONNECTING when an attempt starts; CONNECTED when its `transcript.created`
  arrives; DISCONNECTED when it is gone: failed (code = HTTP status, close
  code or the vendor's numeric code, else 0), closed for idleness (1000),
  finished with prewarm off (1000), given up, or stopped (1000).
- A finalize with prewarm hands over: CONNECTED -> CONNECTING -> CONNECTED
  (the old connection drains in the background; no DISCONNECTED is
  reported, because new audio always has a connection on its way).
- A failure: CONNECTING or CONNECTED -> DISCONNECTED, then CONNECTING after
  the backoff. An idle close or a finalize with prewarm off:
  CONNECTED -> DISCONNECTED (1000), then CONNECTING when audio arrives.
  So the transitions are always legal (`is_legal_transition`) and never from
  a state to itself.

A draining connection that fails (error event, close before done, lost TCP)
or has no done by the deadline is reported as a NON_FATAL error with
`retry_in_s` None: it is not retried and not part of the backoff streak (the
next connection is already there). A failure before the deadline is
repaired when replay is on (see Replay); otherwise, and when no done came by
the deadline, its finalize ends "failed" or "timeout" and its interim text is
made final.

Replay. The protocol has no acknowledgements, but final results are: the
audio up to the end of a connection's latest `is_final` result is
transcribed for good. The current connection keeps in its replay window
(audio_buffer.ReplayWindow) what it was sent after that point, the newest
`replay_max_ms` of it (what falls out counts as `replay_trimmed_ms`; long
silences produce no finals). When the current connection fails (any
failure verdict: error event, close without done, lost TCP, failed send,
stall), its window goes back to the head of the buffer, before any newer
audio and any finalize still waiting, so the next connection hears it
first; that connection's timeline starts at the first replayed frame, so
times stay exact. The failed connection's interim text over the replayed
audio is dropped (it will be transcribed again; emitting it would duplicate
it), its interim words before the replayed audio are made final. When that
failure is the last attempt (fatal), nothing is replayed and the interim
text is made final instead. In multichannel mode the acknowledged point is
the earliest over the channels, and a channel's words before its own latest
final are not delivered again when the audio is replayed for another one.

Repair. A draining connection keeps its window too (its finals during the
drain still acknowledge audio). When it fails before its `transcript.done`
(error event, close without done, lost TCP, including a failure that was
already in flight when `audio.done` went out right behind the last frames),
replay is on and the finalize's deadline has not passed, its turn is
repaired: a separate, short-lived *repair* connection (a new Recognition
with its own generation number; not the current connection, it takes no new
audio and never affects `on_status`, `on_connected`, `on_audio_sent` or the
backoff streak) is opened, sent the window, then `audio.done`, and waited on
for `transcript.done`, all by the original finalize's deadline. Its results
are kept until that done and then become the turn's results, delivered in
the failed connection's place in the order (results of newer connections
stay held until then): its timeline starts at the first replayed frame, so
times stay exact; the failed connection's interim text over the replayed
audio is dropped, its interim words before it are made final; the finalize
ends "done" with `FinalizeOutcome.repaired` True. Transcripts of a repair
carry the repair connection's generation. The failure of the draining
connection is reported when it happens (NON_FATAL); if the repair cannot be
had (refused, even with 401/403: it stays NON_FATAL, the current connection
decides about FATAL), fails, or misses the deadline, that is one more
NON_FATAL error ("repair connection (gen N) failed: ..."), and the turn ends
as before: the failed connection's interim text is made final and the
finalize ends "failed" ("timeout" once the deadline has passed). A repair's
results are all or nothing: none of them is delivered unless its done came.
stop() cancels a repair like any other task (the turn ends "stopped", the
failed connection's interim text made final).

So a failure of the current connection loses no word and duplicates none
within the replay window, and neither does a draining connection's failure
that a repair can answer in time. Still not guaranteed: un-finalized audio
older than `replay_max_ms` (keep it above `stall_timeout_s`, since a silent
stall is found out only after that much speech without an answer; with the
defaults, 20 s and 15 s, all of it is); a draining connection that gives no
`transcript.done` by the deadline without failing first (nothing can be
repaired after the deadline: "timeout", interim text made final); a repair
that does not finish by the deadline (it needs a handshake and the whole
window to be recognised again, so a very short `finalize_timeout_s` may not
leave time) or fails; replayed audio the outage buffer drops
(`buffer_max_ms`, reported like any drop); and whatever is still buffered
when the session gives up.

Liveness. A connection that dies without FIN or RST (a partition, a NAT or
proxy dropping an idle flow, a hung vendor) looks open, and speech sent to it
is lost unless it is found out while that speech is still in its replay
window. So when speech starts on a connection with no sign of life (an event
or a pong) for `probe_quiet_s`, and when a finalize is sent on one, it is
pinged; no pong within `liveness_timeout_s` and it fails ("dead_connection"):
the current connection's window goes to the standby connection at once (no
backoff: it is open; it is probed in turn when speech starts on it) or, with
no standby, to the next connection as after any failure; a draining one is
repaired (see Repair). During a silence the watchdog pings the current
connection every `keepalive_s` (the library keepalive is off: its fixed pong
timeout would kill a healthy connection with a backlog). A probe's timeout
allows for the audio the vendor has not heard yet (`_backlog_s`: what was sent
beyond the vendor's latest event, heard at real time from then). A draining
connection with no transcript.done half-way to its deadline, though it has no
backlog left, is repaired too ("no_done"): alive or dead, it is not answering.

Loss. Audio the engine gives up on (the outage buffer's bound, audio still
queued at stop or when the session gives up, and a turn that ends without its
done and without a repair: its window past the interim text made final) goes
to the `AudioLedger`
(audio_buffer.py) through `_lose`, the only way out other than a
transcription; it is reported once per episode (an episode ends when audio
flows to a connection again, a finalize is answered, or the session ends) as a
NON_FATAL `audio_dropped` error saying how much and why, with one WARN line,
and counted in `stats` (dropped_ms, drop_episodes). After a FATAL error it is
only counted: that error already says nothing more will be transcribed.

Timing. `clock` measures (deadlines, health, latencies); `sleep` and `rng`
drive only the reconnect backoff (reconnect_manager.py), so a test can
inject them. Deadlines are waited for on the event loop's own timers.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Protocol

from .audio_buffer import (
    AudioBuffer,
    AudioFrame,
    AudioLedger,
    DropEpisode,
    DropReport,
    FinalizeMarker,
    ReplayWindow,
)
from .protocol import (
    Failure,
    PlannedClose,
    ServerEvent,
    TranscriptDone,
    TranscriptPartial,
    VendorError,
    build_query,
    build_url,
    bytes_per_sample,
    url_for_log,
)
from .recognition import ConnectFailed, Recognition, ResultAssembler, SendFailed, VendorResult
from .reconnect_manager import BackoffPolicy, ReconnectManager, RetryDecision
from .redaction import mask_secret, redact
from .timeline import TICKS_PER_MS, AudioFormat, ConnectionTimeline, round_ms

__all__ = [
    "BackoffPolicy",
    "ConnState",
    "FinalizeOutcome",
    "SessionError",
    "SessionListener",
    "SessionSettings",
    "SessionStats",
    "StreamingSession",
    "Transcript",
    "Word",
    "is_legal_transition",
]

# After transcript.done the server closes by itself; it gets this long before we close.
DONE_CLOSE_GRACE_S = 0.5
# A failed connection is closed politely (so the server reads what we sent) for this long,
# then dropped.
FAILURE_CLOSE_TIMEOUT_S = 0.5
# stop() waits at most this long for cancelled tasks to unwind (they unwind in one loop turn).
STOP_TASK_TIMEOUT_S = 0.5
# A socket that failed under a send is given this long for its reader to see the close.
SEND_FAILURE_SETTLE_S = 1.0
# The watchdog never polls faster than this.
WATCHDOG_MIN_SLEEP_S = 0.01
# The sender lets other tasks run at least this often during a long flush.
PUMP_YIELD_EVERY_S = 0.005

# Why audio was lost (AudioLedger reasons).
LOST_BUFFER_FULL = "buffer_full"
LOST_STOPPED = "stopped"
LOST_GAVE_UP = "gave_up"
LOST_UNANSWERED = "unanswered"


class ConnState(str, enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


def is_legal_transition(last: ConnState, current: ConnState) -> bool:
    """TEN's rule: any -> disconnected; disconnected|connected -> connecting;
    connecting -> connected; never a state to itself."""
    if last is current:
        return False
    if current is ConnState.DISCONNECTED:
        return True
    if current is ConnState.CONNECTING:
        return last in (ConnState.DISCONNECTED, ConnState.CONNECTED)
    return last is ConnState.CONNECTING


@dataclass(frozen=True)
class SessionSettings:
    url: str  # e.g. "wss://api.x.ai/v1/stt" or the local server's URL
    api_key: str = field(repr=False)
    sample_rate: int = 16000
    encoding: str = "pcm"  # pcm (2 bytes/sample) | mulaw | alaw (1 byte/sample)
    channels: int = 1  # audio channels in the stream (multichannel => 2-8)
    language: str | None = "en"
    interim_results: bool = True
    endpointing_ms: int | None = 300
    diarize: bool = False
    multichannel: bool = False
    finalize_timeout_s: float = 2.0
    buffer_max_ms: int = 60_000
    prewarm: bool = True
    # With prewarm: open the next connection when a turn's first speech is sent, so a
    # finalize only switches sockets (no handshake between turns).
    standby: bool = False
    connect_timeout_s: float = 10.0  # TCP + WebSocket handshake + transcript.created
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    healthy_after_s: float = 5.0
    stall_timeout_s: float = 15.0
    idle_close_s: float = 30.0
    # Un-finalized audio kept per current connection to send again if it fails (0: off).
    replay_max_ms: int = 20_000  # above stall_timeout_s: a silent stall is replayed whole
    # Liveness: when speech starts on a connection with no sign of life (an event or a
    # pong) for probe_quiet_s, it is pinged; no pong within liveness_timeout_s and it is
    # dead (its replay window goes to the next connection). Keep liveness_timeout_s well
    # below finalize_timeout_s, so a turn finalized into a dead connection is repaired
    # in time, and replay_max_ms above it.
    probe_quiet_s: float = 1.0
    liveness_timeout_s: float = 1.0
    # The WebSocket keepalive (a ping every keepalive_s, keepalive_s to answer it): what
    # finds a connection dead during a silence, when no speech starts.
    keepalive_s: float = 5.0

    def __post_init__(self) -> None:
        bytes_per_sample(self.encoding)  # raises on an unknown encoding
        if self.sample_rate <= 0 or self.channels < 1:
            raise ValueError("sample_rate must be positive and channels at least 1")
        for name in (
            "finalize_timeout_s",
            "connect_timeout_s",
            "healthy_after_s",
            "stall_timeout_s",
            "idle_close_s",
            "liveness_timeout_s",
            "keepalive_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.buffer_max_ms < 0:
            raise ValueError("buffer_max_ms must not be negative")
        if self.replay_max_ms < 0:
            raise ValueError("replay_max_ms must not be negative")
        if self.probe_quiet_s < 0:
            raise ValueError("probe_quiet_s must not be negative")

    @property
    def audio_format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.encoding, self.channels)

    @property
    def expected_dones(self) -> int:
        """transcript.done events that end a turn: one per channel in multichannel mode."""
        return self.channels if self.multichannel else 1

    def connect_url(self) -> str:
        """The URL with the session's query (the key is not in it: it goes in a header)."""
        return build_url(
            self.url,
            build_query(
                sample_rate=self.sample_rate,
                encoding=self.encoding,
                interim_results=self.interim_results,
                endpointing_ms=self.endpointing_ms,
                language=self.language,
                diarize=self.diarize,
                multichannel=self.multichannel,
                channels=self.channels,
            ),
        )

    def redacted(self) -> dict[str, Any]:
        """For logs: every setting, the API key masked."""
        return {
            "url": url_for_log(self.url),
            "api_key": mask_secret(self.api_key),
            "sample_rate": self.sample_rate,
            "encoding": self.encoding,
            "channels": self.channels,
            "language": self.language,
            "interim_results": self.interim_results,
            "endpointing_ms": self.endpointing_ms,
            "diarize": self.diarize,
            "multichannel": self.multichannel,
            "finalize_timeout_s": self.finalize_timeout_s,
            "buffer_max_ms": self.buffer_max_ms,
            "prewarm": self.prewarm,
            "standby": self.standby,
            "connect_timeout_s": self.connect_timeout_s,
            "backoff": {
                "base_s": self.backoff.base_s,
                "cap_s": self.backoff.cap_s,
                "max_attempts": self.backoff.max_attempts,
            },
            "healthy_after_s": self.healthy_after_s,
            "stall_timeout_s": self.stall_timeout_s,
            "idle_close_s": self.idle_close_s,
            "replay_max_ms": self.replay_max_ms,
            "probe_quiet_s": self.probe_quiet_s,
            "liveness_timeout_s": self.liveness_timeout_s,
            "keepalive_s": self.keepalive_s,
        }


@dataclass(frozen=True)
class Word:
    text: str
    start_ms: int
    duration_ms: int
    stable: bool


@dataclass(frozen=True)
class Transcript:
    text: str
    final: bool
    start_ms: int  # on the session timeline (the user's audio), continuous across reconnects
    duration_ms: int
    words: tuple[Word, ...]
    channel: int | None
    speech_final: bool
    generation: int


@dataclass(frozen=True)
class SessionError:
    fatal: bool  # True: the engine gave up (or config/key is bad) and will not retry
    kind: str  # handshake_refused, handshake_timeout, handshake_failed, no_created,
    # vendor_error, abnormal_close, stall, send_failed, retries_exhausted, finalize_timeout
    message: str  # human-readable, never contains the key
    vendor_code: str | None  # HTTP status, close code, or the error event's code, as text
    vendor_message: str | None  # the vendor's own text
    attempt: int  # failed attempts so far in this streak
    retry_in_s: float | None  # when non-fatal and a reconnect follows: the backoff delay
    dropped_ms: float | None = None  # kind "audio_dropped": the audio this episode lost


@dataclass(frozen=True)
class FinalizeOutcome:
    finalize_id: str
    # "done": transcript.done arrived (or the turn had no audio to finalize), on the
    #   turn's connection or, when that one failed while draining, on a repair one;
    # "timeout": audio.done was sent but no transcript.done came in time;
    # "no_connection": no connection could take the finalize in time;
    # "failed": the connection died (error event, close) before transcript.done and
    #   no repair connection could transcribe its audio again in time;
    # "stopped": stop() was called first.
    status: str
    latency_ms: float
    # True when the turn's connection failed while draining and a repair connection
    # transcribed its un-finalized audio again (status "done").
    repaired: bool = False
    # Where the finalize cut the user's audio (session timeline, ms): the end of the turn.
    position_ms: int = 0


@dataclass(frozen=True)
class SessionStats:
    bytes_sent: int
    audio_ms_sent: float
    planned_reconnects: int
    failure_reconnects: int
    last_reconnect_gap_ms: float | None
    dropped_ms: float
    connections_opened: int
    current_state: ConnState
    generation: int
    dropped_frames: int = 0
    failed_attempts: int = 0  # the current failure streak
    # Audio sent again, after the connection it was first sent on failed before a final
    # result covered it (counted when it is re-sent: to the next connection, or to a
    # repair connection when a draining connection failed).
    replayed_ms: float = 0.0
    # Un-finalized audio that fell out of a connection's replay window (older than
    # replay_max_ms): it was sent once, it just would not be sent again.
    replay_trimmed_ms: float = 0.0
    # Drop episodes reported (one NON_FATAL error each); dropped_ms is their total.
    drop_episodes: int = 0


class SessionListener(Protocol):
    """All callbacks are plain synchronous calls on the event loop, in order."""

    def on_transcript(self, t: Transcript) -> None: ...

    def on_finalize_end(self, outcome: FinalizeOutcome) -> None: ...

    def on_error(self, e: SessionError) -> None: ...

    def on_status(self, current: ConnState, last: ConnState, code: int, message: str) -> None: ...

    def on_connected(self, generation: int, connect_delay_ms: float) -> None: ...

    def on_audio_sent(self, chunk: bytes) -> None: ...

    def on_audio_dropped(self, dropped_ms: float, total_dropped_ms: float) -> None: ...


@dataclass(eq=False)
class _Finalize:
    token: str  # unique inside the session (finalize ids need not be)
    finalize_id: str
    issued_at: float
    deadline: float
    position_ms: int = 0  # user-stream time of the cut (audio pushed before the finalize)
    ended: bool = False
    sent_on: int | None = None  # generation that got its audio.done
    timer: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Live:
    """The session's bookkeeping for one open connection (current or draining)."""

    rec: Recognition
    timeline: ConnectionTimeline
    assembler: ResultAssembler
    # What it was sent after its latest final: sent again if it fails while current.
    window: ReplayWindow
    opened_at: float
    last_audio_at: float
    # The last sign of life (an event, or the pong to a probe), and a probe under way.
    alive_at: float = 0.0
    probing: bool = False
    # How far into the audio sent the vendor had got (connection ms) at its latest
    # event, and when that was: what it has not heard yet delays a pong.
    heard_ms: float = 0.0
    heard_at: float = 0.0
    # When the first speech frame sent since the last event is heard, in real time: a
    # burst (a buffer flush) is heard later than it is sent, and the vendor is not
    # stalled while it is still listening to it.
    speech_since: float | None = None
    quiet_since: float | None = None  # first send since the last event
    audio_since_event_ms: float = 0.0  # audio sent since the last event
    sending_since: float | None = None  # a send is in flight since then (back-pressure)
    sent_bytes: int = 0
    draining: bool = False
    idle: bool = False
    closing: bool = False
    finalize: _Finalize | None = None
    drain_deadline: float = 0.0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    # Wakes the watchdog when a deadline moves earlier (speech starts flowing).
    poke: asyncio.Event = field(default_factory=asyncio.Event)
    turn_finished: asyncio.Event = field(default_factory=asyncio.Event)
    # The channels whose finals acknowledge audio (one key, None, unless multichannel).
    channel_keys: tuple[int | None, ...] = (None,)
    # Per channel: connection time up to which its finals acknowledge the audio.
    acked_ms: dict[int | None, Fraction] = field(default_factory=dict)
    # Multichannel only: per channel, the user time before which its words were already
    # final on a failed connection whose audio (replayed for another channel) this one
    # hears again. Its words before that are not delivered twice.
    floors: dict[int | None, Fraction] = field(default_factory=dict)
    # The standby connection for the turn after this one was asked for.
    standby_asked: bool = False
    # A draining connection that failed: a repair connection is at work on its turn.
    repairing: bool = False
    # A repair connection: the draining connection whose turn it repairs. Its results
    # are delivered in that turn's place.
    repair_of: _Live | None = None

    @property
    def generation(self) -> int:
        return self.rec.generation

    @property
    def turn_generation(self) -> int:
        """The generation whose place in the delivery order this connection's results take."""
        return self.repair_of.generation if self.repair_of is not None else self.generation


_Delivery = Transcript | FinalizeOutcome


async def _wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    if event.is_set():
        return True
    if timeout_s <= 0:
        return False
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except (asyncio.TimeoutError, TimeoutError):
        return event.is_set()
    return True


def _numeric_code(code: str | None) -> int:
    if code is not None and code.strip().lstrip("-").isdigit():
        return int(code)
    return 0


class StreamingSession:
    def __init__(
        self,
        settings: SessionSettings,
        listener: SessionListener,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        logger: logging.Logger | None = None,
    ) -> None:
        self._settings = settings
        self._listener = listener
        self._clock = clock
        self._log = logger or logging.getLogger("xai_asr_python.session")
        self._buffer = AudioBuffer(settings.audio_format, settings.buffer_max_ms)
        # Where audio the engine gives up on goes: counted and reported once per episode.
        self._ledger = AudioLedger()
        self._reconnect = ReconnectManager(
            settings.backoff,
            healthy_after_s=settings.healthy_after_s,
            clock=clock,
            sleep=sleep,
            rng=rng,
        )
        self._state = ConnState.DISCONNECTED
        self._generation = 0
        self._lives: dict[int, _Live] = {}
        self._current: _Live | None = None
        self._connecting: Recognition | None = None
        # The connection opened ahead for the next turn (settings.standby), and the task
        # that opens it.
        self._standby: Recognition | None = None
        self._standby_task: asyncio.Task[None] | None = None
        self._standby_opened_at = 0.0
        self._switch_to_standby = False  # a dead connection's successor is the standby
        self._repair_recs: set[Recognition] = set()  # repair connections still open
        self._closing: set[Recognition] = set()  # closed politely in the background
        self._finalizes: dict[str, _Finalize] = {}  # in issue order
        self._finalize_seq = 0
        self._blockers: set[int] = set()  # draining generations whose turn is not finished
        self._held: dict[int, list[_Delivery]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        # The connection the sender task is parked on, waiting for audio (None while it
        # sends, connects or waits out a backoff): push_audio_and_send may send then.
        self._parked_on: _Live | None = None
        self._caller_sending = False  # push_audio_and_send is sending (one at a time)
        self._caller_done = asyncio.Event()
        self._stopped = False
        self._stop_finished = asyncio.Event()
        self._fatal = False
        self._warned: set[str] = set()
        self._gap_since: float | None = None
        # Word floors for the connection that will take replayed audio (multichannel).
        self._next_floors: dict[int | None, Fraction] = {}
        # Audio went to the vendor since the last audio.done (on any connection).
        self._turn_has_audio = False
        # stats
        self._bytes_sent = 0
        self._audio_ms_sent = 0.0
        self._planned_reconnects = 0
        self._failure_reconnects = 0
        self._last_gap_ms: float | None = None
        self._connections_opened = 0
        self._replayed = 0  # ticks (timeline.py)
        self._replay_trimmed = 0  # ticks

    # ================================================================ public API

    def start(self) -> None:
        """Begin connecting in tracked background tasks; returns at once.

        Idempotent while running; a no-op after stop(). After a fatal error it
        starts over with a fresh retry streak (e.g. after update_settings with
        a new key).
        """
        if self._stopped:
            return
        if self._supervisor is not None and not self._supervisor.done():
            return
        if self._fatal:
            self._fatal = False
            self._reconnect.connection_healthy()  # a new start is a new streak
        self._log.info("session starting: %s", self._settings.redacted())
        self._supervisor = self._spawn(self._run(), "supervisor")
        for f in self._finalizes.values():
            if f.timer is None and not f.ended:
                self._arm_finalize_timer(f)  # finalized before the event loop ran

    def push_audio(self, chunk: bytes) -> None:
        """Queue audio for the socket; never blocks. Buffered while not connected."""
        if self._queue_audio(chunk):
            self._wakeup.set()

    async def push_audio_and_send(self, chunk: bytes) -> None:
        """`push_audio`, then, if the sender is idle on an open connection, send the
        audio from the caller's task instead of waking the sender task.

        The chunk takes its place in the order before the first await, exactly as
        with `push_audio`. A live stream then costs one task switch less per frame.
        There is still one sender at a time: this sends only while the sender task
        is parked waiting for audio (it stays parked until this is done), only
        what it would have sent next (audio at the head of the buffer, never past
        a finalize marker), and leaves every other case (not connected, a failed
        send, a finalize, a connection ending) to the sender task.
        """
        if not self._queue_audio(chunk):
            return
        live = self._parked_on
        if live is None or self._caller_sending or live is not self._current:
            self._wakeup.set()
            return
        self._caller_sending = True
        try:
            buffer = self._buffer
            rec = live.rec
            while (
                type(item := buffer.peek()) is AudioFrame
                and self._parked_on is live
                and not live.ended.is_set()
                and rec.tracker.failure is None
                and not self._stopped
            ):
                buffer.pop()
                live.idle = False
                live.sending_since = self._clock()
                try:
                    await rec.send_audio(item.data)
                except SendFailed:
                    buffer.push_front(item)
                    break
                finally:
                    live.sending_since = None
                self._after_send(live, item)
        finally:
            self._caller_sending = False
            # Whatever is left (a finalize, a failure, audio that came meanwhile) is
            # the sender task's.
            if buffer.peek() is not None or live.ended.is_set():
                self._wakeup.set()
            self._caller_done.set()

    def _queue_audio(self, chunk: bytes) -> bool:
        if self._stopped:
            self._warn_once("after_stop", "audio pushed after stop is ignored")
            return False
        if self._fatal:
            self._warn_once("after_fatal", "audio is ignored: the session gave up (fatal error)")
            ticks = self._buffer.format.ticks(len(chunk))
            self._ledger.lose(ticks, 1, LOST_GAVE_UP, now=self._clock())
            return False
        report = self._buffer.push(chunk)
        if report is not None:
            self._lose(report, LOST_BUFFER_FULL)
        return True

    def finalize(self, finalize_id: str) -> None:
        """Finalize everything pushed so far; ends in exactly one on_finalize_end, on time."""
        self._finalize_seq += 1
        now = self._clock()
        f = _Finalize(
            token=f"#{self._finalize_seq}",
            finalize_id=finalize_id,
            issued_at=now,
            deadline=now + self._settings.finalize_timeout_s,
            position_ms=round_ms(self._buffer.position_ms),
        )
        if self._stopped or self._fatal:
            f.ended = True
            outcome = FinalizeOutcome(
                finalize_id,
                "stopped" if self._stopped else "no_connection",
                0.0,
                position_ms=f.position_ms,
            )
            self._call_soon(self._deliver, self._generation + 1, outcome)
            return
        self._finalizes[f.token] = f
        self._buffer.mark_finalize(f.token)
        self._arm_finalize_timer(f)
        self._wakeup.set()

    def update_settings(self, settings: SessionSettings) -> None:
        """Takes effect at the next connection (and for audio pushed from now on)."""
        self._settings = settings
        self._buffer.set_format(settings.audio_format)
        self._buffer.max_ms = settings.buffer_max_ms
        self._reconnect.policy = settings.backoff
        self._reconnect.healthy_after_s = settings.healthy_after_s
        self._discard_standby("the settings changed")  # it was opened with the old ones
        self._log.info("settings updated (next connection): %s", settings.redacted())

    async def stop(self) -> None:
        """Cancel every task and drop every socket; pending finalizes end "stopped"."""
        if self._stopped:
            await self._stop_finished.wait()
            return
        self._stopped = True
        recs = [live.rec for live in self._lives.values()]
        if self._connecting is not None:
            recs.append(self._connecting)
        if self._standby is not None:
            recs.append(self._standby)
        recs.extend(self._repair_recs)
        recs.extend(self._closing)
        # Sockets first: nothing more goes out and nothing waits on the network.
        for rec in recs:
            rec.abort()
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TASK_TIMEOUT_S)
            if pending:
                names = ", ".join(sorted(t.get_name() for t in pending))
                self._log.error("stop: tasks still running after cancel: %s", names)
        # A task that swallowed its cancel (wait_for on Python < 3.12) may have
        # opened a socket meanwhile: sweep again, so nothing outlives stop().
        late = [live.rec for live in self._lives.values() if live.rec not in recs]
        if self._connecting is not None and self._connecting not in recs:
            late.append(self._connecting)
        late.extend(rec for rec in self._repair_recs if rec not in recs)
        if self._standby is not None and self._standby not in recs:
            late.append(self._standby)
        for rec in late:
            rec.abort()
        recs.extend(late)
        stragglers = [t for t in self._tasks if t is not me and not t.done()]
        for task in stragglers:
            task.cancel()
        if recs:
            await asyncio.gather(*(rec.wait_closed(0.1) for rec in recs))
        # Audio never sent is lost now: reported before the turns end.
        report = self._buffer.drop_audio()
        if report is not None:
            self._lose(report, LOST_STOPPED)
        # Turns end in order: the draining ones, oldest first, then the current one.
        for live in sorted(self._lives.values(), key=lambda lv: lv.generation):
            if live.draining:
                self._finish_turn(live, "stopped")
            else:
                self._salvage(live)
            self._retire(live)
        for f in list(self._finalizes.values()):
            self._end_finalize(f, "stopped", self._generation + 1)
        self._blockers.clear()
        self._release_held()
        self._end_drop_episode()
        self._set_status(ConnState.DISCONNECTED, 1000, "stopped")
        self._stop_finished.set()
        self._log.info("session stopped")

    @property
    def gave_up(self) -> bool:
        """A FATAL error ended the session: it transcribes nothing until start() again."""
        return self._fatal

    @property
    def stats(self) -> SessionStats:
        return SessionStats(
            bytes_sent=self._bytes_sent,
            audio_ms_sent=self._audio_ms_sent,
            planned_reconnects=self._planned_reconnects,
            failure_reconnects=self._failure_reconnects,
            last_reconnect_gap_ms=self._last_gap_ms,
            dropped_ms=self._ledger.lost_ms,
            connections_opened=self._connections_opened,
            current_state=self._state,
            generation=self._generation,
            dropped_frames=self._buffer.dropped_frames,
            failed_attempts=self._reconnect.attempt,
            replayed_ms=self._replayed / TICKS_PER_MS,
            replay_trimmed_ms=self._replay_trimmed / TICKS_PER_MS,
            drop_episodes=self._ledger.episodes,
        )

    # ================================================================ supervisor

    async def _run(self) -> None:
        """Connect, stream until the connection hands over or ends, repeat."""
        reason = "start"
        try:
            while not self._stopped:
                if reason == "lazy":
                    await self._wait_for_demand()
                    self._gap_since = self._clock()
                live = await self._connect(reason)
                if live is None:
                    return
                reason = await self._stream(live)
                if reason == "fatal":
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave a silent, dead session
            self._log.exception("session engine failed")
            self._report_error(
                Failure(kind="internal", message=f"internal error: {type(exc).__name__}: {exc}"),
                fatal=True,
                retry_in_s=None,
            )
            self._enter_fatal()

    async def _wait_for_demand(self) -> None:
        """No connection is wanted until audio (or a finalize with audio before it) arrives."""
        while not self._stopped:
            head = self._buffer.peek()
            if isinstance(head, FinalizeMarker):
                # Nothing of this turn is waiting to be recognised: nothing to finalize.
                self._buffer.pop()
                self._end_empty_finalize(head, self._generation + 1)
                continue
            if head is not None:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _connect(self, reason: str) -> _Live | None:
        """Attempts until one connection is up; None after a fatal error or stop."""
        while not self._stopped:
            settings = self._settings
            started = self._clock()
            switch, self._switch_to_standby = self._switch_to_standby, False
            adopted = await self._adopt_standby() if reason == "planned" or switch else None
            if adopted is not None:
                rec = adopted
                generation = rec.generation
            else:
                self._discard_standby("a new connection is opened")
                rec = self._new_recognition(settings.connect_timeout_s)
                generation = rec.generation
                self._connecting = rec
                self._set_status(
                    ConnState.CONNECTING, 0, f"connecting to {url_for_log(settings.url)}"
                )
                started = self._clock()
                try:
                    await rec.open()
                except ConnectFailed as exc:
                    self._connecting = None
                    failure = exc.failure
                    self._set_status(
                        ConnState.DISCONNECTED, _numeric_code(failure.vendor_code), failure.message
                    )
                    if not await self._after_failure(failure):
                        return None
                    reason = "failure"
                    continue
                self._connecting = None
            if self._stopped:
                # On Python < 3.12 wait_for() can swallow a cancel that lands as
                # the handshake completes: the supervisor then runs on after stop().
                rec.abort()
                return None
            now = self._clock()
            live = _Live(
                rec=rec,
                timeline=ConnectionTimeline(settings.sample_rate, self._buffer_head()),
                assembler=ResultAssembler(multichannel=settings.multichannel),
                window=ReplayWindow(settings.audio_format, settings.replay_max_ms),
                opened_at=now,
                last_audio_at=now,
                # A standby's last sign of life is its transcript.created.
                alive_at=self._standby_opened_at if adopted is not None else now,
                heard_at=now,
                channel_keys=(
                    tuple(range(settings.channels)) if settings.multichannel else (None,)
                ),
                floors=self._next_floors,
            )
            self._next_floors = {}
            self._lives[generation] = live
            self._current = live
            self._connections_opened += 1
            if reason == "failure":
                self._failure_reconnects += 1
            elif reason in ("planned", "lazy"):
                self._planned_reconnects += 1
            if self._gap_since is not None:
                self._last_gap_ms = (now - self._gap_since) * 1000
                self._gap_since = None
            self._reconnect.connection_opened()
            self._log.info(
                "gen %d: %s %s in %.0f ms",
                generation,
                "switched to the standby connection to" if adopted else "connected to",
                url_for_log(settings.url),
                (now - started) * 1000,
            )
            self._set_status(ConnState.CONNECTED, 0, "transcript.created")
            self._emit("on_connected", generation, (now - started) * 1000)
            self._spawn(self._read(live), f"reader-{generation}")
            self._spawn(self._watch(live), f"watchdog-{generation}")
            return live
        return None

    def _new_recognition(self, connect_timeout_s: float) -> Recognition:
        """A connection with the next generation number and the current settings."""
        settings = self._settings
        self._generation += 1
        return Recognition(
            self._generation,
            settings.connect_url(),
            settings.api_key,
            connect_timeout_s=connect_timeout_s,
            expected_dones=settings.expected_dones,
            logger=self._log,
        )

    # ---------------------------------------------------------------- standby

    def _open_standby(self, live: _Live) -> None:
        """Open the next turn's connection now, while this turn streams (its first speech
        was just sent): at the finalize it is ready, and the audio after the finalize
        goes out at once instead of waiting for a handshake."""
        live.standby_asked = True
        if self._standby is not None or self._stopped:
            return
        rec = self._new_recognition(self._settings.connect_timeout_s)
        self._standby = rec
        self._standby_task = self._spawn(
            self._open_standby_socket(rec), f"standby-{rec.generation}"
        )

    async def _open_standby_socket(self, rec: Recognition) -> None:
        started = self._clock()
        try:
            await rec.open()
        except ConnectFailed as exc:
            # Not an error yet: the next turn connects the usual way when it starts, and
            # that attempt reports (and backs off) if the service is really refusing.
            self._log.warning(
                "gen %d: standby connection failed: %s; the next turn connects when it starts",
                rec.generation,
                exc.failure.message,
            )
            return
        if self._stopped or (self._standby is not rec and self._connecting is not rec):
            # Stopped or discarded meanwhile, and the cancel was swallowed (wait_for on
            # Python < 3.12 can, as the handshake completes): nobody owns it any more.
            rec.abort()
            return
        self._standby_opened_at = self._clock()
        self._log.info(
            "gen %d: standby connection open in %.0f ms",
            rec.generation,
            (self._clock() - started) * 1000,
        )

    async def _adopt_standby(self) -> Recognition | None:
        """The standby connection, if there is one and it is (or becomes) usable."""
        rec, task = self._standby, self._standby_task
        self._standby = self._standby_task = None
        if rec is None:
            return None
        self._set_status(ConnState.CONNECTING, 0, "switching to the standby connection")
        if task is not None and not task.done():
            # Its handshake is under way: wait for the rest of it (stop() aborts it).
            self._connecting = rec
            try:
                await asyncio.wait({task})
            finally:
                self._connecting = None
        if rec.usable and not self._stopped:
            return rec
        self._log.info(
            "gen %d: standby connection not usable (%s); connecting anew",
            rec.generation,
            "stopped" if self._stopped else rec.describe_state(),
        )
        rec.abort()
        return None

    def _discard_standby(self, why: str) -> None:
        rec, task = self._standby, self._standby_task
        self._standby = self._standby_task = None
        if rec is None:
            return
        self._log.info("gen %d: standby connection closed: %s", rec.generation, why)
        if task is not None and not task.done():
            task.cancel()  # its open() drops the socket
        elif rec.is_open:
            self._close_in_background(rec, "not needed")

    async def _after_failure(self, failure: Failure, decision: RetryDecision | None = None) -> bool:
        """Report a failed attempt and wait the backoff; False when giving up."""
        if decision is None:
            decision = self._reconnect.record_failure(
                fatal=failure.fatal, retry_after_s=failure.retry_after_s
            )
        if decision.give_up:
            if failure.fatal:
                self._report_error(failure, fatal=True, retry_in_s=None, attempt=decision.attempt)
            else:
                self._report_error(
                    failure,
                    fatal=True,
                    retry_in_s=None,
                    attempt=decision.attempt,
                    kind="retries_exhausted",
                    message=f"gave up after {decision.attempt} failed attempts in a row; "
                    f"last: {failure.message}",
                )
            self._enter_fatal()
            return False
        standby = self._ready_standby() if failure.kind == "dead_connection" else None
        if standby is not None:
            # The connection stopped answering, and the standby, opened since, is open:
            # switch to it at once (no backoff, no handshake). It is probed in turn
            # when speech starts on it. Other failures take the usual path.
            self._switch_to_standby = True
            self._report_error(
                failure,
                fatal=False,
                retry_in_s=0.0,
                attempt=decision.attempt,
                message=f"{failure.message}; switching to the standby connection "
                f"(gen {standby.generation})",
            )
            return not self._stopped
        self._report_error(
            failure, fatal=False, retry_in_s=decision.delay_s, attempt=decision.attempt
        )
        await self._reconnect.wait(decision)
        return not self._stopped

    def _ready_standby(self) -> Recognition | None:
        """The standby connection, if it is open and usable right now."""
        rec, task = self._standby, self._standby_task
        if rec is None or (task is not None and not task.done()) or not rec.usable:
            return None
        return rec

    def _enter_fatal(self) -> None:
        """No connection will come: finalizes waiting for one end now."""
        self._fatal = True
        self._discard_standby("the session gave up")
        report = self._buffer.drop_audio()
        if report is not None:
            self._lose(report, LOST_GAVE_UP)
        self._end_drop_episode()
        self._set_status(ConnState.DISCONNECTED, 0, "gave up")
        for f in list(self._finalizes.values()):
            if f.sent_on is None:
                self._buffer.remove_marker(f.token)
                self._end_finalize(f, "no_connection", self._generation + 1)

    async def _stream(self, live: _Live) -> str:
        """Pump the buffer into the current connection. Returns how to get the next one."""
        ended_how = await self._pump(live)
        if ended_how in ("handoff", "idle"):
            settings = self._settings
            if ended_how == "idle":
                self._discard_standby("the session is idle")
                self._set_status(
                    ConnState.DISCONNECTED,
                    1000,
                    f"closed after {settings.idle_close_s:g} s without audio",
                )
                return "lazy"
            if settings.prewarm or self._buffer.peek() is not None:
                return "planned"
            self._set_status(ConnState.DISCONNECTED, 1000, "turn finalized; next on audio")
            return "lazy"
        # The connection ended while current.
        verdict = await self._verdict_of(live, ended_how)
        self._current = None
        self._gap_since = self._clock()
        if isinstance(verdict, PlannedClose):
            self._salvage(live)
            self._retire(live)
            self._reconnect.connection_closed()
            self._set_status(ConnState.DISCONNECTED, 1000, f"closed ({verdict.reason})")
            return "planned" if self._settings.prewarm else "lazy"
        decision = self._reconnect.record_failure(
            fatal=verdict.fatal, retry_after_s=verdict.retry_after_s
        )
        if decision.give_up:
            self._salvage(live)  # no next connection: its interim text is all there is
        else:
            self._replay(live)
        self._retire(live)
        self._log.warning("gen %d: failed: %s", live.generation, verdict.message)
        self._set_status(
            ConnState.DISCONNECTED, _numeric_code(verdict.vendor_code), verdict.message
        )
        if not await self._after_failure(verdict, decision):
            return "fatal"
        return "failure"

    def _replay(self, live: _Live) -> None:
        """The current connection failed: what it was sent after its latest final goes
        back to the head of the buffer, for the next connection to hear first."""
        replay_from = live.window.start_ms  # connection time
        frames = live.window.take()
        # Its interim text over the replayed audio is dropped (the next connection
        # transcribes that audio again); interim words before it (audio that fell out of
        # the window) are made final, as they would never be heard again.
        timeline = live.timeline
        if frames:
            self._salvage(live, lambda s: timeline.vendor_to_conn_ms(s) <= replay_from)
        else:
            self._salvage(live)  # nothing will be heard again: all of it, as before
        self._next_floors = self._floors(live, replay_from)
        if not frames:
            return
        replay_ms = sum(f.length for f in frames) / TICKS_PER_MS
        self._log.warning(
            "gen %d failed: replaying %.0f ms of un-finalized audio to the next connection",
            live.generation,
            replay_ms,
        )
        report = self._buffer.requeue([f.as_replayed() for f in frames])
        if report is not None:
            self._lose(report, LOST_BUFFER_FULL)

    @staticmethod
    def _floors(live: _Live, replay_from: Fraction) -> dict[int | None, Fraction]:
        """Word floors for the connection that hears `live`'s audio from `replay_from`
        (connection time) again."""
        floors = dict(live.floors)
        for key in live.channel_keys:
            acked = live.acked_ms.get(key, Fraction(0))
            if acked > replay_from:
                # Multichannel: this channel's finals reach further than the replayed
                # audio starts; its words there must not be delivered twice.
                floor = live.timeline.conn_to_user_ms(acked, end=True)
                floors[key] = max(floor, floors.get(key, floor))
        return floors

    async def _verdict_of(self, live: _Live, ended_how: str) -> PlannedClose | Failure:
        rec = live.rec
        if rec.tracker.failure is None and not live.ended.is_set():
            # The socket failed under a send: its reader sees the close in a moment.
            if not await _wait_event(live.ended, SEND_FAILURE_SETTLE_S):
                rec.fail(Failure(kind="send_failed", message="sending audio failed"))
        if rec.tracker.failure is not None:
            return rec.tracker.failure
        verdict = rec.finish()
        if (
            ended_how == "send_failed"
            and isinstance(verdict, PlannedClose)
            and not rec.tracker.done
        ):
            return Failure(kind="send_failed", message="sending audio failed")
        return verdict

    async def _pump(self, live: _Live) -> str:
        """The one sender. Returns "handoff", "idle", "ended" or "send_failed"."""
        rec = live.rec
        yielded_at = time.monotonic()
        while True:
            if live.ended.is_set() or rec.tracker.failure is not None or self._stopped:
                return "ended"
            item = self._buffer.peek()
            if item is None:
                if live.idle:
                    return await self._close_idle(live)
                self._wakeup.clear()
                self._parked_on = live
                try:
                    await self._wakeup.wait()
                    # A caller may be sending from its own task (push_audio_and_send):
                    # the sender stays parked until it is done, so one sends at a time.
                    while self._caller_sending:
                        self._caller_done.clear()
                        await self._caller_done.wait()
                finally:
                    self._parked_on = None
                yielded_at = time.monotonic()
                continue
            live.idle = False
            if isinstance(item, FinalizeMarker):
                self._buffer.pop()
                if live.sent_bytes == 0:
                    # Nothing of this turn is on this connection: nothing to finalize here.
                    self._end_empty_finalize(item, live.generation)
                    continue
                try:
                    await rec.send_audio_done()
                except SendFailed:
                    self._buffer.push_front(item)
                    return "send_failed"
                self._turn_has_audio = False
                self._begin_drain(live, self._finalizes.get(item.finalize_id))
                return "handoff"
            assert isinstance(item, AudioFrame)
            self._buffer.pop()
            live.sending_since = self._clock()
            try:
                await rec.send_audio(item.data)
            except SendFailed:
                # Not to the floor: it goes first to the next connection.
                self._buffer.push_front(item)
                return "send_failed"
            finally:
                live.sending_since = None
            self._after_send(live, item)
            # A send into a fast socket completes without suspending: a long flush
            # yields now and then, so it cannot starve the readers, the timers and the
            # handshake of the next connection.
            if time.monotonic() - yielded_at >= PUMP_YIELD_EVERY_S:
                await asyncio.sleep(0)
                yielded_at = time.monotonic()

    def _after_send(self, live: _Live, frame: AudioFrame) -> None:
        # Runs for every frame sent: integer ticks, and the frame's speech level only
        # while the watchdog still waits for the first speech since the last event.
        now = self._clock()
        length = frame.length
        live.timeline.record_sent(frame.start, length)
        if self._ledger.in_episode:
            self._end_drop_episode()  # audio flows again
        trimmed = live.window.sent(frame)
        if trimmed:
            self._replay_trimmed += trimmed
        if frame.replayed:
            self._replayed += length
        live.sent_bytes += len(frame.data)
        self._turn_has_audio = True
        live.last_audio_at = now
        if live.quiet_since is None:
            live.quiet_since = now
        heard_at = live.quiet_since + live.audio_since_event_ms / 1000
        duration_ms = length / TICKS_PER_MS
        live.audio_since_event_ms += duration_ms
        if live.speech_since is None and frame.speech:
            live.speech_since = max(now, heard_at)
            live.poke.set()
            if now - live.alive_at >= self._settings.probe_quiet_s:
                # Speech is committed to a connection that has been quiet: prove it alive
                # (its audio stays in the replay window meanwhile).
                self._start_probe(live, now)
            if not live.standby_asked and self._settings.standby and self._settings.prewarm:
                self._open_standby(live)
        self._bytes_sent += len(frame.data)
        self._audio_ms_sent += duration_ms
        self._emit("on_audio_sent", frame.data)

    async def _close_idle(self, live: _Live) -> str:
        """No audio for idle_close_s: end the session ourselves (planned), before the
        service ends it silently. Pending text is collected first with audio.done."""
        self._log.info(
            "gen %d: idle for %g s: closing", live.generation, self._settings.idle_close_s
        )
        if live.sent_bytes == 0:
            self._current = None
            self._reconnect.connection_closed()
            live.closing = True
            self._close_in_background(live.rec, "idle")
            self._retire(live)
            self._gap_since = None
            return "idle"
        try:
            await live.rec.send_audio_done()
        except SendFailed:
            return "send_failed"
        self._turn_has_audio = False
        self._begin_drain(live, None)
        self._gap_since = None
        return "idle"

    def _buffer_head(self) -> int:
        """User tick of the next audio the sender will take from the buffer."""
        for item in self._buffer:
            if isinstance(item, AudioFrame):
                return item.start
        return self._buffer.position

    # ================================================================ per-connection tasks

    async def _read(self, live: _Live) -> None:
        cancelled = False
        try:
            async for event in live.rec.events():
                self._on_event(live, event)
        except asyncio.CancelledError:
            cancelled = True
            raise
        except Exception as exc:
            self._log.exception("gen %d: reader failed", live.generation)
            live.rec.fail(Failure(kind="internal", message=f"reader failed: {exc!r}"))
        finally:
            live.ended.set()
            if not cancelled and not self._stopped:
                self._on_socket_closed(live)

    def _on_event(self, live: _Live, event: ServerEvent) -> None:
        if self._lives.get(live.generation) is not live:
            return  # a retired connection: it can no longer touch the session
        if live.turn_finished.is_set() or live.repairing:
            # Its turn is over (done, timeout or failure) and newer results may already
            # be out, or it failed and a repair connection has its turn: anything more
            # from it would break the order.
            self._log.debug("gen %d: %s after its turn ended; ignored", live.generation, event)
            return
        live.speech_since = None
        live.quiet_since = None
        live.audio_since_event_ms = 0.0
        live.alive_at = live.heard_at = self._clock()
        if isinstance(event, TranscriptPartial):
            heard = float(live.timeline.vendor_to_conn_ms(event.start_s + event.duration_s))
            live.heard_ms = max(live.heard_ms, heard)
        elif isinstance(event, TranscriptDone):
            live.heard_ms = float(live.timeline.sent_ms)
        if isinstance(event, TranscriptPartial):
            self._reconnect.connection_healthy()
            if event.is_final:
                self._acknowledge(live, event)
            result = live.assembler.on_partial(event)
            if result is not None:
                self._deliver_result(live, result)
        elif isinstance(event, TranscriptDone):
            self._reconnect.connection_healthy()
            result = live.assembler.on_done(event)
            if result is not None:
                self._deliver_result(live, result)
            if live.draining and live.rec.tracker.done:
                self._finish_turn(live, "done")
        elif isinstance(event, VendorError):
            failure = live.rec.tracker.failure
            assert failure is not None
            self._log.warning("gen %d: vendor error: %s", live.generation, failure.message)
            if live.draining:
                self._drain_failed(live, failure)
            self._close_failed(live)
            self._wakeup.set()

    def _acknowledge(self, live: _Live, event: TranscriptPartial) -> None:
        """A final result: the audio up to its end is transcribed for good, on its channel.
        The connection's acknowledged point is the earliest over its channels."""
        key = event.channel if live.channel_keys != (None,) else None
        end_ms = min(
            live.timeline.vendor_to_conn_ms(event.start_s + event.duration_s),
            live.timeline.sent_ms,  # the vendor cannot have heard more
        )
        if end_ms > live.acked_ms.get(key, Fraction(0)):
            live.acked_ms[key] = end_ms
        live.window.acknowledge(min(live.acked_ms.get(k, Fraction(0)) for k in live.channel_keys))

    def _on_socket_closed(self, live: _Live) -> None:
        verdict = live.rec.finish()
        if self._lives.get(live.generation) is not live:
            return
        if live.draining:
            if not live.turn_finished.is_set():
                failure = verdict if isinstance(verdict, Failure) else None
                self._drain_failed(live, failure)
        else:
            self._wakeup.set()  # the pump decides what the close means

    def _close_failed(self, live: _Live) -> None:
        """A dead session: close politely (the server reads what we sent), bounded."""
        if live.closing or live.ended.is_set():
            return
        live.closing = True
        self._close_in_background(live.rec, "failed", timeout_s=FAILURE_CLOSE_TIMEOUT_S)

    async def _watch(self, live: _Live) -> None:
        """Stall and idle watchdog of the current connection."""
        while self._current is live and not live.ended.is_set():
            if live.rec.tracker.failure is not None:
                return
            settings = self._settings
            now = self._clock()
            stall_s = settings.stall_timeout_s
            failure: Failure | None = None
            if live.speech_since is not None and now - live.speech_since >= stall_s:
                failure = Failure(
                    kind="stall",
                    message=f"no event for {stall_s:g} s while speech audio was flowing: "
                    "the session is dead",
                )
            elif live.sending_since is not None and now - live.sending_since >= stall_s:
                failure = Failure(
                    kind="stall",
                    message=f"a send has been blocked for {stall_s:g} s: "
                    "the server stopped reading",
                )
            if failure is not None:
                self._log.warning("gen %d: %s", live.generation, failure.message)
                # Dropped at once: a stalled socket may not even take a close frame.
                live.rec.fail(failure)
                self._wakeup.set()
                return
            keepalive_at = live.alive_at + settings.keepalive_s
            if now >= keepalive_at:
                # Keepalive: no sign of life for keepalive_s (a silence): prove it alive.
                self._start_probe(live, now)
            idle_at = live.last_audio_at + settings.idle_close_s
            quiet = self._buffer.peek() is None and live.sending_since is None
            if now >= idle_at and quiet and not live.idle:
                live.idle = True
                self._wakeup.set()
            # A blocked send starts without a poke: checking at least every half stall
            # timeout still catches it within 1.5 stall timeouts.
            deadlines = [
                idle_at if now < idle_at else now + settings.idle_close_s,
                now + stall_s / 2,
                keepalive_at if now < keepalive_at else now + settings.keepalive_s,
            ]
            for since in (live.speech_since, live.sending_since):
                if since is not None:
                    deadlines.append(since + stall_s)
            live.poke.clear()
            await _wait_event(live.poke, max(WATCHDOG_MIN_SLEEP_S, min(deadlines) - now))

    def _start_probe(self, live: _Live, now: float) -> None:
        """Ping `live` in the background, unless a ping is already on its way."""
        if not live.probing:
            live.probing = True
            self._spawn(self._probe(live, now - live.alive_at), f"probe-{live.generation}")

    async def _probe(self, live: _Live, quiet_s: float) -> None:
        """Ping a connection speech was just sent to; no pong in time: it is dead, and
        fails like any other (replay to the next connection, or a repair when draining)."""
        # The ping waits behind the audio the vendor has not heard yet: allow for it, at
        # real time from the vendor's latest event (as fast as any live vendor hears).
        timeout_s = self._settings.liveness_timeout_s + self._backlog_s(live, self._clock())
        try:
            alive = await live.rec.probe(timeout_s)
        finally:
            live.probing = False
        if alive is None or self._lives.get(live.generation) is not live:
            return  # closed meanwhile (its reader says how), or retired
        if alive:
            live.alive_at = self._clock()
            return
        if live.ended.is_set() or live.turn_finished.is_set() or live.repairing:
            return
        failure = Failure(
            kind="dead_connection",
            message=f"no answer to a ping within {timeout_s:.1f} s (no sign of life for "
            f"{quiet_s:.1f} s before it): the connection is dead",
        )
        self._log.warning("gen %d: %s", live.generation, failure.message)
        live.rec.fail(failure)
        self._wakeup.set()

    def _begin_drain(self, live: _Live, f: _Finalize | None) -> None:
        """audio.done went out: this connection takes no more audio and gets until the
        deadline to deliver transcript.done."""
        now = self._clock()
        live.draining = True
        live.finalize = f
        # The window stays: if this connection fails before transcript.done, a repair
        # connection is sent what it holds (see _drain_failed).
        if f is not None:
            f.sent_on = live.generation
            if f.timer is not None and f.timer is not asyncio.current_task():
                f.timer.cancel()
        # A finalize still pending keeps its own deadline (it must end on time); an
        # expired one, or an idle close, gives the vendor a full finalize timeout.
        live.drain_deadline = (
            f.deadline if f is not None and not f.ended else now + self._settings.finalize_timeout_s
        )
        # A finalize is committed to it: prove it alive now (one ping a turn), while the
        # deadline still leaves time to repair the turn if it is dead.
        self._start_probe(live, now)
        self._blockers.add(live.generation)
        self._current = None
        self._gap_since = now
        self._reconnect.connection_closed()
        self._spawn(self._drain(live), f"drain-{live.generation}")

    async def _drain(self, live: _Live) -> None:
        try:
            if not live.turn_finished.is_set():
                await self._hedge(live)
                remaining = live.drain_deadline - self._clock()
                finished = await _wait_event(live.turn_finished, remaining)
                if not finished and live.repairing:
                    # The repair ends the turn itself, within the same deadline.
                    await live.turn_finished.wait()
                elif not finished:
                    timeout_s = self._settings.finalize_timeout_s
                    failure = Failure(
                        kind="finalize_timeout",
                        message=f"no transcript.done within the finalize timeout ({timeout_s:g} s)",
                    )
                    live.rec.tracker.fail(failure)
                    self._give_up_turn(live)
                    self._finish_turn(live, "timeout", failure)
            # The turn is over; the socket goes too, whether or not the server closes it.
            if not live.ended.is_set():
                failed = live.rec.tracker.failure is not None
                if failed or not await _wait_event(live.ended, DONE_CLOSE_GRACE_S):
                    await live.rec.close("drained", timeout_s=FAILURE_CLOSE_TIMEOUT_S)
        finally:
            if not self._stopped:
                self._retire(live)

    async def _hedge(self, live: _Live) -> None:
        """Half the finalize timeout has passed without transcript.done, though the vendor
        has heard everything (by the backlog estimate): a connection that never answers,
        alive or not. Its turn is repaired now, while the other half of the timeout leaves
        time for it, instead of ending "timeout" with only its interim text."""
        settings = self._settings
        hedge_at = live.drain_deadline - settings.finalize_timeout_s / 2
        if await _wait_event(live.turn_finished, hedge_at - self._clock()):
            return
        if live.repairing or self._stopped or settings.replay_max_ms <= 0 or not live.window:
            return
        if self._backlog_s(live, self._clock()) > 0:
            return  # still hearing a backlog (a burst): the done may well come in time
        waited_s = self._clock() - (live.drain_deadline - settings.finalize_timeout_s)
        failure = Failure(
            kind="no_done",
            message=f"no transcript.done {waited_s:.1f} s after audio.done",
        )
        self._log.warning("gen %d: %s", live.generation, failure.message)
        live.rec.tracker.fail(failure)
        self._drain_failed(live, failure)

    def _backlog_s(self, live: _Live, now: float) -> float:
        """Audio sent on `live` that the vendor has not heard yet, in seconds, if it hears
        in real time from its latest event (as fast as any live vendor hears)."""
        unheard_s = float(live.timeline.sent_ms) / 1000 - live.heard_ms / 1000
        return max(0.0, unheard_s - (now - live.heard_at))

    def _finish_turn(
        self,
        live: _Live,
        status: str,
        failure: Failure | None = None,
        *,
        repaired: bool = False,
    ) -> None:
        """A draining connection's turn is over: done, timeout, failed or stopped."""
        if live.turn_finished.is_set():
            return
        live.turn_finished.set()
        if status != "done":
            self._salvage(live)
        if failure is not None:
            self._report_error(failure, fatal=False, retry_in_s=None)
        if live.finalize is not None:
            self._end_finalize(live.finalize, status, live.generation, repaired=repaired)
        self._blockers.discard(live.generation)
        self._release_held()

    # ================================================================ repair

    def _drain_failed(self, live: _Live, failure: Failure | None) -> None:
        """A draining connection failed before its transcript.done. Its un-finalized audio
        goes to a repair connection if there is time; else its turn ends "failed"."""
        if live.turn_finished.is_set() or live.repairing:
            return
        if (
            self._settings.replay_max_ms <= 0
            or self._stopped
            or not live.window
            or self._clock() >= live.drain_deadline
        ):
            self._give_up_turn(live)
            self._finish_turn(live, "failed", failure)
            return
        live.repairing = True
        if failure is not None:
            # Reported now, like any draining failure; the finalize ends with the repair.
            self._report_error(
                failure,
                fatal=False,
                retry_in_s=None,
                message=f"{failure.message}; re-transcribing the turn's last "
                f"{float(live.window.kept_ms) / 1000:.1f} s of audio on a new connection",
            )
        replay_from = live.window.start_ms
        floors = self._floors(live, replay_from)
        frames = live.window.take()
        self._spawn(self._repair(live, frames, replay_from, floors), f"repair-{live.generation}")

    async def _repair(
        self,
        failed: _Live,
        frames: list[AudioFrame],
        replay_from: Fraction,
        floors: dict[int | None, Fraction],
    ) -> None:
        """Open a short-lived connection, send it `frames` and audio.done, and wait for its
        transcript.done, all by the failed turn's deadline. Its results become the turn's."""
        settings = self._settings
        deadline = failed.drain_deadline
        rec = self._new_recognition(
            max(0.001, min(settings.connect_timeout_s, deadline - self._clock()))
        )
        generation = rec.generation
        replay_ms = sum(f.length for f in frames) / TICKS_PER_MS
        self._log.warning(
            "gen %d failed while draining: repairing its turn on gen %d (%.0f ms of audio)",
            failed.generation,
            generation,
            replay_ms,
        )
        self._repair_recs.add(rec)
        repair = _Live(
            rec=rec,
            timeline=ConnectionTimeline(settings.sample_rate, frames[0].start),
            assembler=ResultAssembler(multichannel=settings.multichannel),
            window=ReplayWindow(settings.audio_format, 0),
            opened_at=self._clock(),
            last_audio_at=self._clock(),
            channel_keys=failed.channel_keys,
            floors=floors,
            draining=True,
            repair_of=failed,
        )
        results: list[VendorResult] = []
        failure: Failure | None = None
        status = "failed"
        reader: asyncio.Task[None] | None = None
        try:
            try:
                await rec.open()
            except ConnectFailed as exc:
                failure = exc.failure
            if failure is None:
                reader = self._spawn(
                    self._read_repair(repair, results), f"repair-reader-{generation}"
                )
                try:
                    await asyncio.wait_for(
                        self._send_repair(repair, frames), max(0.0, deadline - self._clock())
                    )
                except SendFailed:
                    pass  # the reader tells why
                except (asyncio.TimeoutError, TimeoutError):
                    pass  # the deadline: found out below
                await _wait_event(repair.turn_finished, deadline - self._clock())
                if rec.tracker.done and rec.tracker.failure is None:
                    status = "done"
                elif rec.tracker.failure is not None:
                    failure = rec.tracker.failure
                elif repair.turn_finished.is_set():
                    verdict = rec.finish()
                    failure = (
                        verdict
                        if isinstance(verdict, Failure)
                        else Failure(kind="abnormal_close", message="closed before transcript.done")
                    )
                else:
                    status = "timeout"
                    failure = Failure(
                        kind="finalize_timeout",
                        message="no transcript.done within the finalize timeout "
                        f"({settings.finalize_timeout_s:g} s)",
                    )
            if self._stopped:
                return
            if status == "done":
                # The failed connection's interim text over the repaired audio is dropped;
                # its words before that audio (fallen out of the window) are made final.
                timeline = failed.timeline
                self._salvage(failed, lambda s: timeline.vendor_to_conn_ms(s) <= replay_from)
                for result in results:
                    if result.final:
                        self._deliver_result(repair, result)
                self._finish_turn(failed, "done", repaired=True)
                self._log.info("gen %d: turn repaired on gen %d", failed.generation, generation)
            else:
                assert failure is not None
                if self._clock() >= deadline:
                    status = "timeout"
                self._report_error(
                    failure,
                    fatal=False,
                    retry_in_s=None,
                    message=f"repair connection (gen {generation}) failed: {failure.message}",
                )
                self._give_up_turn(failed, frames)
                self._finish_turn(failed, status)
        finally:
            try:
                if not self._stopped:
                    if not failed.turn_finished.is_set():
                        self._finish_turn(failed, "failed")  # a bug above: never an open turn
                    if status == "done":
                        # The server closes after transcript.done; we close what it has not.
                        await rec.close("drained", timeout_s=FAILURE_CLOSE_TIMEOUT_S)
                    else:
                        rec.abort()
            finally:
                if reader is not None and not reader.done():
                    reader.cancel()
                self._repair_recs.discard(rec)

    async def _send_repair(self, repair: _Live, frames: list[AudioFrame]) -> None:
        rec = repair.rec
        for frame in frames:
            if repair.turn_finished.is_set():
                return
            await rec.send_audio(frame.data)
            repair.timeline.record_sent(frame.start, frame.length)
            self._replayed += frame.length
        await rec.send_audio_done()

    async def _read_repair(self, repair: _Live, results: list[VendorResult]) -> None:
        """The repair connection's results, kept until its transcript.done (all or none)."""
        rec = repair.rec
        try:
            async for event in rec.events():
                if isinstance(event, TranscriptPartial):
                    result = repair.assembler.on_partial(event)
                elif isinstance(event, TranscriptDone):
                    result = repair.assembler.on_done(event)
                else:
                    result = None
                if result is not None:
                    results.append(result)
                if rec.tracker.done or rec.tracker.failure is not None:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.exception("gen %d: repair reader failed", repair.generation)
            rec.fail(Failure(kind="internal", message=f"reader failed: {exc!r}"))
        finally:
            repair.ended.set()
            repair.turn_finished.set()

    def _salvage(
        self, live: _Live, is_before: Callable[[float], bool] | None = None
    ) -> float | None:
        """The connection ends without a done: its interim text becomes final, not lost
        (with `is_before`: only the words before the audio that will be replayed).
        Returns the end (user ms) of the text made final, if any."""
        end: float | None = None
        for result in live.assembler.salvage(is_before):
            self._deliver_result(live, result)
            start_ms, duration_ms = live.timeline.span(result.start_s, result.end_s)
            end = max(end or 0.0, float(start_ms + duration_ms))
        return end

    def _give_up_turn(self, live: _Live, frames: list[AudioFrame] | None = None) -> None:
        """A draining connection's turn ends without its transcript.done and without a
        repair: its interim text is made final, and the audio of its window past that
        text, which nothing will transcribe now, goes to the ledger as lost."""
        if frames is None:
            frames = live.window.take()
        salvaged_end = self._salvage(live)
        floor = 0 if salvaged_end is None else round(salvaged_end * TICKS_PER_MS)
        lost = [f for f in frames if f.start >= floor]
        if not lost:
            return
        spans: list[tuple[int, int]] = []
        for f in lost:
            if spans and spans[-1][1] == f.start:
                spans[-1] = (spans[-1][0], f.start + f.length)
            else:
                spans.append((f.start, f.start + f.length))
        ticks = sum(f.length for f in lost)
        report = DropReport(
            ticks / TICKS_PER_MS,
            self._ledger.lost_ms + ticks / TICKS_PER_MS,
            len(lost),
            ticks=ticks,
            spans=tuple(spans),
        )
        self._lose(report, LOST_UNANSWERED)

    def _retire(self, live: _Live) -> None:
        if self._lives.get(live.generation) is live:
            del self._lives[live.generation]
        if self._current is live:
            self._current = None
        self._blockers.discard(live.generation)
        self._release_held()

    # ================================================================ finalizes

    def _arm_finalize_timer(self, f: _Finalize) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the finalize still ends at stop()
        f.timer = self._spawn(self._finalize_timer(f), f"finalize-{f.token}")

    async def _finalize_timer(self, f: _Finalize) -> None:
        await asyncio.sleep(max(0.0, f.deadline - self._clock()))
        if f.ended or f.sent_on is not None:
            return  # answered, or its connection's drain owns the deadline now
        # Its audio.done never went out: no connection could take it in time. The
        # marker stays in the buffer, so the turn is still cut there when one comes.
        self._log.warning("finalize %r: no connection within the finalize timeout", f.finalize_id)
        self._end_finalize(f, "no_connection", self._generation + 1)

    def _end_empty_finalize(self, marker: FinalizeMarker, generation: int) -> None:
        """A finalize with no audio of its turn on the connection that would send it."""
        # Either the turn had no audio at all (nothing to finalize: done), or its audio
        # went to a connection that died before audio.done could (failed; the interim
        # text was already made final).
        status = "failed" if self._turn_has_audio else "done"
        self._turn_has_audio = False
        f = self._finalizes.get(marker.finalize_id)
        if f is not None:
            self._end_finalize(f, status, generation)

    def _end_finalize(
        self, f: _Finalize, status: str, generation: int, *, repaired: bool = False
    ) -> None:
        if f.ended:
            self._finalizes.pop(f.token, None)
            return
        f.ended = True
        if f.timer is not None and f.timer is not asyncio.current_task():
            f.timer.cancel()
        self._finalizes.pop(f.token, None)
        if self._ledger.in_episode:
            self._end_drop_episode()  # the graph hears of a loss before the turn's answer
        latency_ms = (self._clock() - f.issued_at) * 1000
        self._deliver(
            generation,
            FinalizeOutcome(f.finalize_id, status, latency_ms, repaired, f.position_ms),
        )

    # ================================================================ delivery

    def _deliver_result(self, live: _Live, result: VendorResult) -> None:
        transcript = self._transcript(live, result)
        if live.floors:
            above = self._above_floor(transcript, live.floors)
            if above is None:
                return
            transcript = above
        self._deliver(live.turn_generation, transcript)

    @staticmethod
    def _above_floor(t: Transcript, floors: dict[int | None, Fraction]) -> Transcript | None:
        """Multichannel replay: only the words of `t` not already final on a failed
        connection (at or after its channel's floor)."""
        floor = floors.get(t.channel)
        if floor is None:
            return t
        floor_ms = round_ms(floor)
        end_ms = t.start_ms + t.duration_ms
        if t.start_ms >= floor_ms:
            return t
        if not t.words:
            return None if end_ms <= floor_ms else t
        words = tuple(w for w in t.words if w.start_ms >= floor_ms)
        if len(words) == len(t.words):
            return replace(t, start_ms=floor_ms, duration_ms=max(0, end_ms - floor_ms))
        if not words:
            return None
        start_ms = max(floor_ms, min(t.start_ms, words[0].start_ms))
        return replace(
            t,
            text=" ".join(w.text for w in words),
            words=words,
            start_ms=start_ms,
            duration_ms=max(0, end_ms - start_ms),
        )

    def _transcript(self, live: _Live, result: VendorResult) -> Transcript:
        timeline = live.timeline
        start_ms, duration_ms = timeline.span(result.start_s, result.end_s)
        words = tuple(
            Word(w.text, *timeline.span(w.start_s, w.end_s), stable=result.final)
            for w in result.words
        )
        return Transcript(
            text=result.text,
            final=result.final,
            start_ms=start_ms,
            duration_ms=duration_ms,
            words=words,
            channel=result.channel,
            speech_final=result.speech_final,
            generation=live.generation,
        )

    def _deliver(self, generation: int, item: _Delivery) -> None:
        """In order: nothing of a newer connection before an older turn is finished."""
        if any(blocker < generation for blocker in self._blockers):
            self._held.setdefault(generation, []).append(item)
            return
        self._emit_delivery(item)

    def _release_held(self) -> None:
        for generation in sorted(self._held):
            if any(blocker < generation for blocker in self._blockers):
                break
            for item in self._held.pop(generation, []):
                self._emit_delivery(item)

    def _emit_delivery(self, item: _Delivery) -> None:
        if isinstance(item, Transcript):
            self._emit("on_transcript", item)
        else:
            self._emit("on_finalize_end", item)

    def _set_status(self, current: ConnState, code: int, message: str) -> None:
        last = self._state
        if current is last:
            return
        if not is_legal_transition(last, current):
            self._log.error("illegal status transition %s -> %s suppressed", last, current)
            return
        self._state = current
        self._emit("on_status", current, last, code, self._redact(message))

    def _report_error(
        self,
        failure: Failure,
        *,
        fatal: bool,
        retry_in_s: float | None,
        attempt: int | None = None,
        kind: str | None = None,
        message: str | None = None,
        dropped_ms: float | None = None,
    ) -> None:
        text = message or failure.message
        if retry_in_s and not fatal:
            text += f"; retrying in {retry_in_s:.2g} s"  # only when a retry is scheduled
        error = SessionError(
            fatal=fatal,
            kind=kind or failure.kind,
            message=self._redact(text),
            vendor_code=failure.vendor_code,
            vendor_message=(
                None if failure.vendor_message is None else self._redact(failure.vendor_message)
            ),
            attempt=self._reconnect.attempt if attempt is None else attempt,
            retry_in_s=retry_in_s,
            dropped_ms=dropped_ms,
        )
        level = logging.ERROR if fatal else logging.WARNING
        retry = f", retry in {retry_in_s:.3f} s" if retry_in_s is not None else ""
        self._log.log(
            level,
            "%s error (%s): %s [vendor code %s, attempt %d%s]",
            "fatal" if fatal else "non-fatal",
            error.kind,
            error.message,
            error.vendor_code,
            error.attempt,
            retry,
        )
        self._emit("on_error", error)

    def _lose(self, report: DropReport, reason: str) -> None:
        """The one way audio leaves the engine untranscribed: into the ledger, reported
        once per episode (see _end_drop_episode), never silently and never per frame."""
        self._ledger.lose(
            report.ticks, report.frames, reason, now=self._clock(), spans=report.spans
        )
        self._emit("on_audio_dropped", report.dropped_ms, self._ledger.lost_ms)

    def _why_lost(self, reason: str) -> str:
        if reason == LOST_BUFFER_FULL:
            return (
                "no connection took audio and the outage buffer (buffer_max_ms = "
                f"{self._buffer.max_ms} ms) overflowed, the oldest audio first"
            )
        if reason == LOST_STOPPED:
            return "the session stopped before it could be sent"
        if reason == LOST_GAVE_UP:
            return "the session gave up (fatal error) before it could be sent"
        if reason == LOST_UNANSWERED:
            return (
                "a turn's connection gave no transcript.done and no other connection could "
                "transcribe its audio again by the finalize's deadline (interim text, if "
                "any, was made final)"
            )
        return reason

    def _end_drop_episode(self) -> None:
        episode: DropEpisode | None = self._ledger.end_episode(now=self._clock())
        if episode is None:
            return
        why = "; ".join(self._why_lost(reason) for reason in episode.reasons)
        message = (
            f"dropped {episode.dropped_ms:.0f} ms of audio ({episode.frames} frames, "
            f"over {episode.lasted_s:.1f} s): {why} "
            f"[{episode.total_dropped_ms:.0f} ms dropped in this session]"
        )
        if self._fatal:
            # The FATAL error already told the graph that nothing more is transcribed:
            # counted (metrics) and logged, not reported once more.
            self._log.warning("%s", message)
            return
        self._report_error(
            Failure(kind="audio_dropped", message=message),
            fatal=False,
            retry_in_s=None,
            dropped_ms=episode.dropped_ms,
        )

    # ================================================================ helpers

    def _emit(self, name: str, *args: Any) -> None:
        # A listener's bug must not take the engine down.
        try:
            getattr(self._listener, name)(*args)
        except Exception:
            self._log.exception("listener %s raised", name)

    def _redact(self, text: str) -> str:
        return redact(text, self._settings.api_key)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning(message)

    def _call_soon(self, function: Callable[..., None], *args: Any) -> None:
        try:
            asyncio.get_running_loop().call_soon(function, *args)
        except RuntimeError:
            function(*args)

    def _close_in_background(
        self, rec: Recognition, reason: str, timeout_s: float | None = None
    ) -> None:
        """A polite close in its own task. Until it is over the socket stays on the list
        stop() drops: a close task cancelled before its first step never runs at all."""
        self._closing.add(rec)

        async def close() -> None:
            try:
                await rec.close(reason, timeout_s=timeout_s)
            finally:
                self._closing.discard(rec)

        self._spawn(close(), f"close-{rec.generation}")

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"xai-session:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("task %s failed: %r", task.get_name(), task.exception())

    @property
    def ledger(self) -> AudioLedger:
        """What was lost, where and why (read only)."""
        return self._ledger

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        """The engine's tasks still running (empty after stop)."""
        return frozenset(t for t in self._tasks if not t.done())
