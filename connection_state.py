"""The session core's bookkeeping for one connection, and the pure rules that read it.

A `Conn` is everything the core knows about one generation: its role, its
vendor tracker (what its close means), its timeline, its results, its replay
window, its liveness clocks and the send in flight. It does no I/O; the core's
rooms (session_core.py names them) change it on events and the driver never sees it.

Roles, and how a connection moves between them:

    CONNECTING --Opened--> CURRENT --audio.done sent--> DRAINING --turn over--> FINISHED
    STANDBY ----adopted (Opened)----^                       |  failed before done
    REPAIR (answers a DRAINING connection's turn)  <--------+

A connection leaves the core's books when it is retired: its turn is over and
its socket closed or being closed, or it failed while current, or stop().
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from .audio_buffer import AudioFrame, FinalizeMarker, ReplayWindow
from .protocol import CloseVerdict, ConnectionPhase, ConnectionTracker, TranscriptPartial
from .session_types import Transcript, Word
from .timeline import TICKS_PER_MS, AudioFormat, ConnectionTimeline, round_ms
from .utterances import ResultAssembler, VendorResult

# A failed (or finished) connection is closed politely, so the server reads what we
# sent, for this long; then dropped.
FAILURE_CLOSE_TIMEOUT_S = 0.5


class Role(enum.Enum):
    CONNECTING = "connecting"  # the next current connection, handshake under way
    STANDBY = "standby"  # opened ahead for the next turn
    CURRENT = "current"  # takes new audio
    DRAINING = "draining"  # sent audio.done; its turn is not over
    FINISHED = "finished"  # its turn is over; waits a moment for the server's close
    REPAIR = "repair"  # re-transcribes a failed draining connection's turn


class EndOfAudio(enum.Enum):
    """The send in flight is an audio.done that is not a finalize's."""

    IDLE = "idle"  # closing an idle connection: collect its pending text first
    REPAIR = "repair"  # the end of a repair connection's replayed audio
    # Finalizes sent as `finalize` were refused or not answered in time: audio.done
    # answers them instead, and the connection drains like any audio.done's.
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class FinalizeMessage:
    """The send in flight is the `finalize` message for this marker (the connection stays
    open); a FinalizeMarker in flight is an audio.done."""

    marker: FinalizeMarker


# Audio already queued when a send is made goes out with it, up to this much per
# message: the vendor's own guidance is about 100 ms a message (smaller works). Nothing
# ever waits for audio to come: only what is queued already is joined. (An encoding
# with packets, such as Opus, would be one packet a message: not joined.)
BATCH_MAX_TICKS = 100 * TICKS_PER_MS
BATCHED_ENCODINGS = frozenset({"pcm", "mulaw", "alaw"})


def joinable(first: AudioFrame, following: Sequence[object], offset: int = 0) -> int:
    """How many of `following[offset:]` go out in one message with `first`: the frames
    right after it (contiguous, same encoding; a finalize marker ends the run), up to
    BATCH_MAX_TICKS of audio in all."""
    if first.encoding not in BATCHED_ENCODINGS:
        return 0
    end = first.start + first.length
    total = first.length
    k = offset
    while k < len(following):
        item = following[k]
        if (
            type(item) is not AudioFrame
            or item.encoding != first.encoding
            or item.start != end
            or total + item.length > BATCH_MAX_TICKS
        ):
            break
        end += item.length
        total += item.length
        k += 1
    return k - offset


class AudioBatch:
    """The send in flight is these frames, queued one after another, in one message: a
    burst (after an outage, a handoff, a replay) catches up in fewer sends. Each frame
    keeps its own place in the window, the timeline and the ledger."""

    __slots__ = ("data", "frames")

    def __init__(self, frames: list[AudioFrame]) -> None:
        self.frames = frames
        self.data = b"".join(frame.data for frame in frames)


InFlight = AudioFrame | AudioBatch | FinalizeMarker | FinalizeMessage | EndOfAudio


def audio_in_flight(item: InFlight | None) -> list[AudioFrame]:
    """The frames of a send in flight (none if it is not audio)."""
    if type(item) is AudioFrame:
        return [item]
    if type(item) is AudioBatch:
        return list(item.frames)
    return []


@dataclass(frozen=True)
class Finalize:
    """One asr_finalize, from the request to its one outcome."""

    token: str  # unique inside the session (finalize ids need not be)
    finalize_id: str
    issued_at: float
    deadline: float
    position_ms: int  # user-stream time of the cut (audio pushed before the finalize)


@dataclass(eq=False, slots=True)
class Awaiting:
    """A finalize sent as `finalize` on a connection, waiting for the utterance final
    that reaches its cut (one per channel)."""

    finalize: Finalize
    cut: int  # user tick where it cut the stream
    cut_s: float  # the same on the vendor's timeline of the connection
    channels: set[int | None]


@dataclass(eq=False, slots=True)
class Conn:
    generation: int
    role: Role
    tracker: ConnectionTracker
    timeline: ConnectionTimeline
    assembler: ResultAssembler
    # What it was sent after its latest final: sent again if it fails.
    window: ReplayWindow
    opened_at: float = 0.0
    open_done_at: float = 0.0  # when its opening finished (Opened)
    opened: bool = False
    vendor_session: str | None = None  # transcript.created's id
    settings_version: int = 0  # the session's settings it was opened with
    open_failed: bool = False
    ended: bool = False  # its socket is gone (Closed)
    verdict: CloseVerdict | None = None
    last_audio_at: float = 0.0
    # The last sign of life (an event, or the pong to a probe), and a probe under way.
    alive_at: float = 0.0
    probing: bool = False
    probe_timeout_s: float = 0.0  # the probe under way: its timeout, and the quiet before it
    probe_quiet_s: float = 0.0
    closing: bool = False  # we asked for a polite close
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
    in_flight: InFlight | None = None  # the one send under way
    sending_since: float | None = None  # ... since then (back-pressure)
    sent_bytes: int = 0
    idle: bool = False
    finalize: Finalize | None = None
    # Finalizes answered by the same drain as `finalize` (a fallback with several sent).
    finalizes_also: list[Finalize] = field(default_factory=list)
    # Finalizes sent as `finalize` and not answered yet, oldest first; audio.done is due
    # on it instead (refused, or no answer in time).
    awaiting: list[Awaiting] = field(default_factory=list)
    fallback_due: bool = False
    # User ticks: the end of the latest speech frame sent (finalize mode), and the end of
    # the latest utterance final. Speech after that is an utterance still open.
    speech_until: int = 0
    answered_until: int = 0
    drain_deadline: float = 0.0
    drain_started_at: float = 0.0  # when its audio.done went out
    # The finalize timeout its turn was given (settings may change while it drains).
    drain_timeout_s: float = 0.0
    # The half-way check comes no earlier than this (a fallback's audio.done goes out
    # late in the finalize timeout: the vendor still gets time to answer it).
    hedge_floor: float = 0.0
    turn_finished: bool = False
    # How the current connection's end was found (a failed send, or the end itself),
    # while the core waits for its socket's close to learn what it means.
    settling: str | None = None
    # The channels whose finals acknowledge audio (one key, None, unless multichannel).
    channel_keys: tuple[int | None, ...] = (None,)
    # Per channel: connection time up to which its finals acknowledge the audio.
    acked_ms: dict[int | None, Fraction] = field(default_factory=dict)
    # Multichannel only: per channel, the user time before which its words were already
    # final on a failed connection whose audio (replayed for another channel) this one
    # hears again. Its words before that are not delivered twice.
    floors: dict[int | None, Fraction] = field(default_factory=dict)
    standby_asked: bool = False  # the standby for the turn after this one was asked for
    repairing: bool = False  # failed while draining: a repair connection has its turn
    # A repair connection: the turn it answers, the audio it re-sends, its results
    # (all or nothing: delivered only once its done came).
    repair_of: Conn | None = None
    repair_frames: list[AudioFrame] = field(default_factory=list)
    repair_next: int = 0
    replay_from: Fraction = Fraction(0)
    repair_results: list[VendorResult] = field(default_factory=list)
    repair_ended: bool = False

    @property
    def turn_generation(self) -> int:
        """The generation whose place in the delivery order this connection's results take."""
        return self.repair_of.generation if self.repair_of is not None else self.generation

    @property
    def usable(self) -> bool:
        """Open and ready, and nothing has begun to end it (a standby may have been closed
        by the server while it waited)."""
        return (
            self.opened
            and not self.ended
            and self.tracker.failure is None
            and self.tracker.planned is None
            and self.tracker.phase is ConnectionPhase.STREAMING
        )

    def describe(self) -> str:
        if self.open_failed or not self.opened:
            return "never opened"
        if self.tracker.failure is not None:
            return self.tracker.failure.message
        return "WebSocket closed" if self.ended else "WebSocket open"


def new_conn(
    generation: int,
    role: Role,
    tracker: ConnectionTracker,
    assembler: ResultAssembler,
    fmt: AudioFormat,
    replay_max_ms: int,
    base_user: int = 0,
) -> Conn:
    return Conn(
        generation=generation,
        role=role,
        tracker=tracker,
        timeline=ConnectionTimeline(fmt.sample_rate, base_user),
        assembler=assembler,
        window=ReplayWindow(fmt, replay_max_ms),
    )


# ---------------------------------------------------------------- rules


def acknowledge(conn: Conn, event: TranscriptPartial, end_s: float) -> None:
    """A final result: the audio up to its end is transcribed for good, on its channel.
    The connection's acknowledged point is the earliest over its channels."""
    key = event.channel if conn.channel_keys != (None,) else None
    end_ms = min(
        conn.timeline.vendor_to_conn_ms(end_s),
        conn.timeline.sent_ms,  # the vendor cannot have heard more
    )
    if end_ms > conn.acked_ms.get(key, Fraction(0)):
        conn.acked_ms[key] = end_ms
    conn.window.acknowledge(min(conn.acked_ms.get(k, Fraction(0)) for k in conn.channel_keys))


def floors_after(conn: Conn, replay_from: Fraction) -> dict[int | None, Fraction]:
    """Word floors for the connection that hears `conn`'s audio from `replay_from`
    (connection time) again."""
    floors = dict(conn.floors)
    for key in conn.channel_keys:
        acked = conn.acked_ms.get(key, Fraction(0))
        if acked > replay_from:
            # Multichannel: this channel's finals reach further than the replayed
            # audio starts; its words there must not be delivered twice.
            floor = conn.timeline.conn_to_user_ms(acked, end=True)
            floors[key] = max(floor, floors.get(key, floor))
    return floors


def to_transcript(conn: Conn, result: VendorResult) -> Transcript | None:
    """A vendor result on the session timeline; None when all of it lies below a floor."""
    timeline = conn.timeline
    start_ms, duration_ms = timeline.span(result.start_s, result.end_s)
    words = tuple(
        Word(
            w.text, *timeline.span(w.start_s, w.end_s), stable=result.final, confidence=w.confidence
        )
        for w in result.words
    )
    t = Transcript(
        text=result.text,
        final=result.final,
        start_ms=start_ms,
        duration_ms=duration_ms,
        words=words,
        channel=result.channel,
        speech_final=result.speech_final,
        generation=conn.generation,
        end_of_turn_confidence=result.end_of_turn_confidence,
    )
    return above_floor(t, conn.floors) if conn.floors else t


def above_floor(t: Transcript, floors: dict[int | None, Fraction]) -> Transcript | None:
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
