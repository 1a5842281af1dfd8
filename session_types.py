"""The session's public vocabulary: its settings, what it reports, and the status rule.

Shared by the core (session_core.py), the asyncio driver (session.py) and the
extension; nothing here does anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from .protocol import build_query, build_url, bytes_per_sample, url_for_log
from .reconnect_manager import BackoffPolicy
from .redaction import mask_secret
from .timeline import AudioFormat

# How an asr_finalize ends the utterance (see SessionSettings.finalize_mode).
FINALIZE_MODES = ("auto", "finalize", "audio_done")
# xAI's limits on keyterm.
MAX_KEYTERMS = 100
MAX_KEYTERM_CHARS = 50


class Phase(enum.Enum):
    """The session core's phase: what the next connection waits for (session_core.py
    draws the machine; supervisor.py owns it)."""

    IDLE = "idle"  # not started
    LAZY = "lazy"  # no connection wanted until audio comes
    CONNECTING = "connecting"  # a new connection's handshake
    ADOPTING = "adopting"  # waiting for the standby's handshake to finish
    BACKOFF = "backoff"  # waiting out the delay after a failure
    STREAMING = "streaming"  # the current connection takes audio
    SETTLING = "settling"  # the current connection's send failed; waiting for its close
    FATAL = "fatal"  # gave up; Start begins again
    STOPPED = "stopped"


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
    # Optional xAI parameters; None (or no keyterms) is not sent: the server's default.
    keyterms: tuple[str, ...] = ()  # sent as keyterm=A&keyterm=B; at most 100, 1-50 chars
    filler_words: bool | None = None
    smart_turn: float | None = None  # 0.0-1.0
    smart_turn_timeout_ms: int | None = None  # 1-5000, only with smart_turn
    vad_threshold: float | None = None  # 0.0-1.0
    # How an asr_finalize ends the utterance: "finalize" sends {"type": "finalize"} on
    # the open connection (no reconnect); "audio_done" sends audio.done and the server
    # closes (the next turn uses a fresh or standby connection); "auto" starts with
    # "finalize" and switches to "audio_done" for the rest of the session if the
    # service refuses finalize or does not answer it by half the finalize timeout.
    finalize_mode: str = "auto"
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
        if self.finalize_mode not in FINALIZE_MODES:
            raise ValueError(f"finalize_mode must be one of {', '.join(FINALIZE_MODES)}")
        # A list is taken too, kept as a tuple (the settings are immutable).
        object.__setattr__(self, "keyterms", tuple(self.keyterms))
        if len(self.keyterms) > MAX_KEYTERMS:
            raise ValueError(f"at most {MAX_KEYTERMS} keyterms")
        for term in self.keyterms:
            if not isinstance(term, str) or not 1 <= len(term.strip()) <= MAX_KEYTERM_CHARS:
                raise ValueError(f"each keyterm must be 1-{MAX_KEYTERM_CHARS} characters")
        for name in ("smart_turn", "vad_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be 0.0-1.0")
        if self.smart_turn_timeout_ms is not None:
            if self.smart_turn is None:
                raise ValueError("smart_turn_timeout_ms is only valid with smart_turn")
            if not 1 <= self.smart_turn_timeout_ms <= 5000:
                raise ValueError("smart_turn_timeout_ms must be 1-5000")

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
                keyterms=self.keyterms,
                filler_words=self.filler_words,
                smart_turn=self.smart_turn,
                smart_turn_timeout_ms=self.smart_turn_timeout_ms,
                vad_threshold=self.vad_threshold,
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
            "keyterms": list(self.keyterms),
            "filler_words": self.filler_words,
            "smart_turn": self.smart_turn,
            "smart_turn_timeout_ms": self.smart_turn_timeout_ms,
            "vad_threshold": self.vad_threshold,
            "finalize_mode": self.finalize_mode,
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
    confidence: float | None = None  # the vendor's, when it gives one


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
    # The vendor's confidence that the speaker's turn is over (smart_turn), if given.
    end_of_turn_confidence: float | None = None


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
    dropped_ms: float  # all audio lost, whatever the reason (the ledger's total)
    connections_opened: int
    current_state: ConnState
    generation: int
    dropped_frames: int = 0  # the frames of dropped_ms
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
