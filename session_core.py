"""The session engine's core: every state and decision of a session, and no I/O.

`SessionCore.handle(event)` (or, for the two events of every audio frame, the
direct `audio_pushed` and `send_completed`) takes one event (engine_io.py: what the user did,
what a connection did, a timer) with the time it happened, updates the
session's state, and returns the actions that follow (open, send, close,
probe, set a timer, tell the listener). It reads no clock, awaits nothing and
touches no socket: session.py's `StreamingSession` drives it on asyncio, and a
test drives it on a virtual clock. The rules it implements (ownership of
frames, planned versus failure, status, replay, repair, liveness, loss) are
described in session.py's module docstring; this docstring is the picture of
the machine.

The session's phases (one at a time; what the next connection waits for):

    IDLE --Start--> CONNECTING --Opened--> STREAMING
    STREAMING --finalize sent, or idle--> CONNECTING (prewarm) | ADOPTING (standby) | LAZY
    STREAMING --current failed--> SETTLING (a send failed, its close not seen yet)
              --> BACKOFF --timer--> CONNECTING   (or ADOPTING: a dead one's standby)
    LAZY --audio pushed--> CONNECTING          any --gave up--> FATAL --Start--> CONNECTING
    any --StopAsked--> STOPPED

A connection's roles are in connection_state.py (CONNECTING, STANDBY,
CURRENT, DRAINING, FINISHED, REPAIR). A turn: its audio goes to the CURRENT
connection; its finalize marker, reached in the buffer, becomes audio.done;
the connection is DRAINING until transcript.done (turn "done"), a failure
(repaired on a REPAIR connection, or "failed"), or the deadline ("timeout");
then FINISHED, and closed. Its results block every newer generation's
(delivery.py) until then.

With finalize_mode finalize (or auto, until it falls back) a turn stays on
its connection:

    FinalizeAsked           -> SetTimer(finalize #1)
      ... its marker reaches the head of the buffer ...
                            -> SendFinalize(g)
    SendCompleted(g, ok)    -> Probe(g), SetTimer(answer #1)  (g stays current: the
                                                               next Send goes to g)
    Received(g, utterance final reaching the cut)
                            -> Notify(on_transcript), Notify(on_finalize_end)
    Received(g, error: finalize refused) | TimerFired(answer #1)
                            -> SendEndOfAudio(g), then as below from its SendCompleted

With audio_done, two turns in events and actions (g: the current generation):

    Start                   -> Open(g)                      (status CONNECTING)
    Opened(g)               -> SetTimer(watch g)             (status CONNECTED)
    AudioPushed             -> Send(g, frame)
    SendCompleted(g, ok)    -> Notify(on_audio_sent)         (the next Send, if queued)
    Received(g, partial)    -> Notify(on_transcript)
    FinalizeAsked           -> SetTimer(finalize #1)
      ... its marker reaches the head of the buffer ...
                            -> SendEndOfAudio(g)
    SendCompleted(g, ok)    -> Probe(g), SetTimer(hedge g), SetTimer(drain g),
                               Open(g+1)                     (g drains; g+1 comes)
    Received(g, done)       -> Notify(on_transcript), Notify(on_finalize_end),
                               SetTimer(grace g)
    Closed(g)               -> (g retired)
    StopAsked               -> Abort(every g), Notify(...)   (the last reports)

A failure is the same conversation with other answers: OpenFailed or
Closed(g) without done -> Notify(on_error), SetTimer(backoff) -> Open(g+1),
and the replay window's frames queued again at the head of the buffer.

The core owns the phases, the connections and the sender; a turn, once its
audio.done is out, is turns.py's (drain, repair, timeout, the finalizes and the
order of results); liveness.py holds the rules that find a dead connection and
session_reports.py says what is reported and how.

Timers (keys): ("finalize", token) a finalize's deadline while it waits for a
connection or for its answer on an open one; ("answer", token) the point where
a finalize sent as `finalize` is answered by audio.done instead; ("drain", gen)
and ("hedge", gen) a draining turn's deadline and half-way point; ("grace", gen)
the server's moment to close after done;
("watch", gen) the current connection's stall, idle and keepalive checks;
("settle", gen) how long a failed send waits for its close; ("repair", gen)
a repair's deadline; ("backoff", 0) the next attempt.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from . import engine_io as io
from . import liveness
from .audio_buffer import (
    AudioBuffer,
    AudioFrame,
    AudioLedger,
    FinalizeMarker,
    ReplayWindow,
)
from .connection_state import (
    FAILURE_CLOSE_TIMEOUT_S,
    Conn,
    EndOfAudio,
    Finalize,
    FinalizeMessage,
    Role,
    acknowledge,
    floors_after,
    new_conn,
)
from .protocol import (
    Failure,
    PlannedClose,
    TranscriptCreated,
    TranscriptDone,
    TranscriptPartial,
    VendorError,
    url_for_log,
)
from .reconnect_manager import ReconnectManager, RetryDecision
from .session_reports import (
    LOST_BUFFER_FULL,
    LOST_GAVE_UP,
    LOST_STOPPED,
    SessionReports,
)
from .session_types import (
    ConnState,
    FinalizeOutcome,
    SessionSettings,
    SessionStats,
)
from .timeline import TICKS_PER_MS, ConnectionTimeline, round_ms
from .turns import Turns
from .vendor import XAI, Vendor

# A socket that failed under a send is given this long for its reader to see the close.
SEND_FAILURE_SETTLE_S = 1.0


BACKOFF_TIMER: io.TimerKey = ("backoff", 0)


class Phase(enum.Enum):
    IDLE = "idle"  # not started
    LAZY = "lazy"  # no connection wanted until audio comes
    CONNECTING = "connecting"  # a new connection's handshake
    ADOPTING = "adopting"  # waiting for the standby's handshake to finish
    BACKOFF = "backoff"  # waiting out the delay after a failure
    STREAMING = "streaming"  # the current connection takes audio
    SETTLING = "settling"  # the current connection's send failed; waiting for its close
    FATAL = "fatal"  # gave up; Start begins again
    STOPPED = "stopped"


class SessionCore:
    """All of a session's state and decisions. Events in (`handle`), actions out."""

    def __init__(
        self,
        settings: SessionSettings,
        *,
        vendor: Vendor = XAI,
        rng: Callable[[], float] = random.random,
        logger: logging.Logger | None = None,
        now: float = 0.0,
    ) -> None:
        self._settings = settings
        self._vendor = vendor
        self._log = logger or logging.getLogger("xai_asr_python.session")
        self._now = now
        self._out: list[io.Action] = []
        self._buffer = AudioBuffer(settings.audio_format, settings.buffer_max_ms)
        # Where audio the engine gives up on goes: counted and reported once per episode.
        self._ledger = AudioLedger()
        self._reconnect = ReconnectManager(
            settings.backoff,
            healthy_after_s=settings.healthy_after_s,
            clock=lambda: self._now,
            rng=rng,
        )
        self._phase = Phase.IDLE
        self._generation = 0
        self._conns: dict[int, Conn] = {}  # every connection the core still has a say on
        self._current: Conn | None = None
        self._connecting: Conn | None = None  # CONNECTING, or the standby being adopted
        self._connect_reason = "start"
        self._connect_started = 0.0
        self._standby: Conn | None = None
        self._switch_to_standby = False  # a dead connection's successor is the standby
        self._reports = SessionReports(
            self._emit,
            self._ledger,
            self._log,
            secret=lambda: self._settings.api_key,
            attempt=lambda: self._reconnect.attempt,
            buffer_max_ms=lambda: self._buffer.max_ms,
        )
        self._turns = Turns(self, self._log)
        self._repairs = self._turns.repairs
        # How a finalize ends its utterance now: "finalize" (the connection stays) or
        # "audio_done" (it drains and closes; the next turn has another). `auto` starts
        # with finalize and falls back for good when the service refuses or ignores it.
        self._finalize_via = _finalize_via(settings.finalize_mode)
        # New settings apply from the next connection: with finalize on an open
        # connection there is none, so a turn on a connection opened with older settings
        # ends with audio.done (each connection keeps the version it was opened with).
        self._settings_version = 0
        self._stopped = False
        self._fatal = False
        self._warned: set[str] = set()
        self._gap_since: float | None = None
        # Word floors for the connection that will take replayed audio (multichannel).
        self._next_floors: dict[int | None, Fraction] = {}
        # stats
        self._bytes_sent = 0
        self._audio_ms_sent = 0.0
        self._planned_reconnects = 0
        self._failure_reconnects = 0
        self._last_gap_ms: float | None = None
        self._connections_opened = 0
        self._replayed = 0  # ticks (timeline.py)
        self._replay_trimmed = 0  # ticks
        self._handlers: dict[type, Callable[[Any], None]] = {
            io.Start: self._on_start,
            io.AudioPushed: self._on_audio,
            io.FinalizeAsked: self._on_finalize,
            io.SettingsChanged: self._on_settings,
            io.StopAsked: self._on_stop,
            io.Opened: self._on_opened,
            io.OpenFailed: self._on_open_failed,
            io.Received: self._on_received,
            io.Closed: self._on_closed,
            io.SendCompleted: self._on_send_completed,
            io.ProbeAnswered: self._on_probe_answered,
            io.TimerFired: self._on_timer,
            io.DeferredDue: self._on_deferred,
        }
        self._timer_handlers: dict[str, Callable[[Any], None]] = {
            "finalize": self._turns.finalize_expired,
            "drain": self._turns.drain_expired,
            "hedge": self._turns.hedge,
            "grace": self._turns.grace_over,
            "watch": self._watch_timer,
            "settle": self._settle_expired,
            "repair": self._repairs.expired,
            "answer": self._turns.answer_overdue,
            "backoff": self._backoff_over,
        }

    # ================================================================ interface

    def handle(self, event: io.Event) -> Sequence[io.Action]:
        """Apply one event; the actions that follow, in order."""
        self._now = event.now
        self._handlers[type(event)](event)
        return self._take()

    # The two events of every audio frame, without building an event object: the
    # same as handle(AudioPushed(...)) and handle(SendCompleted(...)).

    def audio_pushed(self, now: float, chunk: bytes) -> Sequence[io.Action]:
        self._now = now
        self._push_audio(chunk)
        return self._take()

    def send_completed(self, now: float, generation: int, ok: bool) -> Sequence[io.Action]:
        self._now = now
        self._send_completed(generation, ok)
        return self._take()

    def _take(self) -> Sequence[io.Action]:
        out = self._out
        if not out:
            return ()  # most events of a live stream ask for nothing new
        self._out = []
        return out

    def crashed(self, now: float, exc: BaseException) -> list[io.Action]:
        """A bug in the core surfaced (an exception from `handle`): a silent, dead session
        is the one outcome we never accept, so it gives up loudly."""
        self._now = now
        if not self._stopped and not self._fatal:
            self._reports.error(
                Failure(kind="internal", message=f"internal error: {type(exc).__name__}: {exc}"),
                fatal=True,
                retry_in_s=None,
            )
            self._enter_fatal()
        out, self._out = self._out, []
        return out

    @property
    def settings(self) -> SessionSettings:
        return self._settings

    @property
    def gave_up(self) -> bool:
        return self._fatal

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def ledger(self) -> AudioLedger:
        return self._ledger

    @property
    def queued_ms(self) -> Fraction:
        return self._buffer.queued_ms

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
            current_state=self._reports.state,
            generation=self._generation,
            dropped_frames=self._ledger.frames,
            failed_attempts=self._reconnect.attempt,
            replayed_ms=self._replayed / TICKS_PER_MS,
            replay_trimmed_ms=self._replay_trimmed / TICKS_PER_MS,
            drop_episodes=self._ledger.episodes,
        )

    # ================================================================ the user

    def _on_start(self, event: io.Start) -> None:
        if self._stopped or self._phase not in (Phase.IDLE, Phase.FATAL):
            return
        if self._fatal:
            self._fatal = False
            self._reconnect.connection_healthy()  # a new start is a new streak
        self._log.info("session starting: %s", self._settings.redacted())
        self._connect("start")

    def _on_audio(self, event: io.AudioPushed) -> None:
        self._push_audio(event.chunk)

    def _push_audio(self, chunk: bytes) -> None:
        if self._stopped:
            self._warn_once("after_stop", "audio pushed after stop is ignored")
            return
        if self._fatal:
            self._warn_once("after_fatal", "audio is ignored: the session gave up (fatal error)")
            # Still part of the user's stream: it takes its place on the timeline (so
            # times stay right after a new start) and in the ledger, counted, not
            # reported again (the FATAL error said nothing more is transcribed).
            for report in (self._buffer.push(chunk), self._buffer.drop_audio()):
                if report is not None:
                    self._ledger.lose(
                        report.ticks, report.frames, LOST_GAVE_UP, now=self._now, spans=report.spans
                    )
            return
        report = self._buffer.push(chunk)
        if report is not None:
            self._reports.lose(report, LOST_BUFFER_FULL, self._now)
        self._kick()

    def _on_finalize(self, event: io.FinalizeAsked) -> None:
        f = self._turns.new_finalize(event.finalize_id, round_ms(self._buffer.position_ms))
        if self._stopped or self._fatal:
            outcome = FinalizeOutcome(
                f.finalize_id,
                "stopped" if self._stopped else "no_connection",
                0.0,
                position_ms=f.position_ms,
            )
            # Answered on a later loop turn: never from inside the caller's finalize().
            self._out.append(io.Defer(self._generation + 1, outcome))
            return
        self._turns.register(f)
        self._buffer.mark_finalize(f.token)
        self._kick()

    def _on_settings(self, event: io.SettingsChanged) -> None:
        """Takes effect at the next connection (and for audio pushed from now on)."""
        settings = event.settings
        if settings.finalize_mode != self._settings.finalize_mode:
            self._finalize_via = _finalize_via(settings.finalize_mode)
        old, self._settings = self._settings, settings
        if settings.connect_url() != old.connect_url() or settings.api_key != old.api_key:
            self._settings_version += 1  # what a connection is opened with changed
        self._buffer.set_format(settings.audio_format)
        self._buffer.max_ms = settings.buffer_max_ms
        self._reconnect.policy = settings.backoff
        self._reconnect.healthy_after_s = settings.healthy_after_s
        self._discard_standby("the settings changed")  # it was opened with the old ones
        self._log.info("settings updated (next connection): %s", settings.redacted())

    def _on_stop(self, event: io.StopAsked) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._phase = Phase.STOPPED
        # Sockets first: nothing more goes out and nothing waits on the network.
        for generation in sorted(self._conns):
            self._out.append(io.Abort(generation))
        # Audio never sent is lost now: reported before the turns end.
        report = self._buffer.drop_audio()
        if report is not None:
            self._reports.lose(report, LOST_STOPPED, self._now)
        # Turns end in order: the draining ones, oldest first, then the current one. Their
        # interim text is made final; speech sent after it, which no result will cover
        # now, is reported lost (never silently: it was heard by no one who answered).
        conns = sorted(self._conns.values(), key=lambda c: c.generation)
        for conn in conns:
            if conn.role is Role.DRAINING or conn.role is Role.CURRENT:
                frames = conn.window.take()
                if type(conn.in_flight) is AudioFrame:
                    frames.append(conn.in_flight)  # handed to the socket, never answered
                for repair in conns:
                    if repair.repair_of is conn and not repair.repair_ended:
                        frames = repair.repair_frames + frames  # the repair's, unanswered
                self._turns.give_up(conn, frames, reason=LOST_STOPPED)
                if conn.role is Role.DRAINING:
                    self._turns.finish(conn, "stopped")
        self._conns.clear()
        self._current = self._connecting = self._standby = None
        self._turns.end_all("stopped")
        self._turns.delivery.clear()
        self._reports.end_drop_episode(self._now, gave_up=self._fatal)
        self._reports.status(ConnState.DISCONNECTED, 1000, "stopped")
        self._log.info("session stopped")

    def _on_deferred(self, event: io.DeferredDue) -> None:
        self._turns.delivery.deliver(event.generation, event.outcome)

    def _kick(self) -> None:
        """Something entered the buffer: the sender or the lazy wait may act on it."""
        if self._phase is Phase.STREAMING:
            self._pump()
        elif self._phase is Phase.LAZY:
            self._check_demand()

    # ================================================================ connecting

    def _next_connection(self, reason: str) -> None:
        if self._stopped:
            return
        if reason == "lazy":
            self._phase = Phase.LAZY
            self._check_demand()
            return
        self._connect(reason)

    def _check_demand(self) -> None:
        """No connection is wanted until audio (or a finalize with audio before it) arrives."""
        while self._phase is Phase.LAZY:
            head = self._buffer.peek()
            if isinstance(head, FinalizeMarker):
                # Nothing of this turn is waiting to be recognised: nothing to finalize.
                self._buffer.pop()
                self._turns.end_empty(head, self._generation + 1)
                continue
            if head is not None:
                self._gap_since = self._now
                self._connect("lazy")
            return

    def _connect(self, reason: str) -> None:
        self._connect_reason = reason
        self._connect_started = self._now
        switch, self._switch_to_standby = self._switch_to_standby, False
        if reason == "planned" or switch:
            standby, self._standby = self._standby, None
            if standby is not None:
                self._reports.status(ConnState.CONNECTING, 0, "switching to the standby connection")
                if not standby.opened and not standby.open_failed:
                    # Its handshake is under way: wait for the rest of it.
                    self._phase = Phase.ADOPTING
                    self._connecting = standby
                    return
                self._adopt(standby)
                return
        self._open_new()

    def _adopt(self, standby: Conn) -> None:
        self._connecting = None
        if standby.usable:
            self._go_live(standby, adopted=True)
            return
        self._log.info(
            "gen %d: standby connection not usable (%s); connecting anew",
            standby.generation,
            standby.describe(),
        )
        self._conns.pop(standby.generation, None)
        self._out.append(io.Abort(standby.generation))
        self._open_new()

    def _open_new(self) -> None:
        self._discard_standby("a new connection is opened")
        settings = self._settings
        conn = self._new_conn(Role.CONNECTING, settings.connect_timeout_s)
        self._connecting = conn
        self._phase = Phase.CONNECTING
        self._reports.status(ConnState.CONNECTING, 0, f"connecting to {url_for_log(settings.url)}")
        self._connect_started = self._now

    def _new_conn(self, role: Role, connect_timeout_s: float, base_user: int = 0) -> Conn:
        """A connection with the next generation number and the current settings."""
        settings = self._settings
        self._generation += 1
        conn = new_conn(
            self._generation,
            role,
            self._vendor.tracker(settings),
            self._vendor.assembler(settings),
            settings.audio_format,
            settings.replay_max_ms if role is not Role.REPAIR else 0,
            base_user,
        )
        conn.opened_at = conn.last_audio_at = self._now
        conn.settings_version = self._settings_version
        self._conns[conn.generation] = conn
        self._out.append(io.Open(conn.generation, settings, connect_timeout_s))
        return conn

    def _on_opened(self, event: io.Opened) -> None:
        conn = self._conns.get(event.generation)
        if conn is None or self._stopped:
            # Discarded or stopped while it opened (its cancel came too late): nobody
            # owns it any more.
            self._out.append(io.Abort(event.generation))
            return
        conn.tracker.receive(TranscriptCreated(event.vendor_session))
        conn.vendor_session = event.vendor_session
        conn.opened = True
        conn.open_done_at = self._now
        if conn.role is Role.CONNECTING:
            self._connecting = None
            self._go_live(conn, adopted=False)
        elif conn.role is Role.STANDBY:
            self._log.info(
                "gen %d: standby connection open in %.0f ms",
                conn.generation,
                (self._now - conn.opened_at) * 1000,
            )
            if self._phase is Phase.ADOPTING and self._connecting is conn:
                self._adopt(conn)
        elif conn.role is Role.REPAIR:
            self._repairs.send_next(conn)

    def _on_open_failed(self, event: io.OpenFailed) -> None:
        conn = self._conns.pop(event.generation, None)
        if conn is None or self._stopped:
            return
        conn.open_failed = True
        failure = event.failure
        conn.tracker.fail(failure)
        if conn.role is Role.CONNECTING:
            self._connecting = None
            self._reports.status(
                ConnState.DISCONNECTED, _numeric_code(failure.vendor_code), failure.message
            )
            self._after_failure(failure)
        elif conn.role is Role.STANDBY:
            # Not an error yet: the next turn connects the usual way when it starts, and
            # that attempt reports (and backs off) if the service is really refusing.
            self._log.warning(
                "gen %d: standby connection failed: %s; the next turn connects when it starts",
                conn.generation,
                failure.message,
            )
            if self._phase is Phase.ADOPTING and self._connecting is conn:
                self._adopt(conn)
        elif conn.role is Role.REPAIR:
            self._repairs.end(conn, failure)

    def _go_live(self, conn: Conn, *, adopted: bool) -> None:
        """`conn` becomes the current connection: new audio goes to it from now on."""
        settings = self._settings
        now = self._now
        conn.role = Role.CURRENT
        conn.timeline = ConnectionTimeline(settings.sample_rate, self._buffer_head())
        conn.assembler = self._vendor.assembler(settings)
        conn.window = ReplayWindow(settings.audio_format, settings.replay_max_ms)
        conn.opened_at = conn.last_audio_at = conn.heard_at = now
        # A standby's last sign of life is its transcript.created.
        conn.alive_at = conn.open_done_at if adopted else now
        conn.channel_keys = tuple(range(settings.channels)) if settings.multichannel else (None,)
        conn.floors = self._next_floors
        self._next_floors = {}
        self._current = conn
        self._phase = Phase.STREAMING
        self._connections_opened += 1
        reason = self._connect_reason
        if reason == "failure":
            self._failure_reconnects += 1
        elif reason in ("planned", "lazy"):
            self._planned_reconnects += 1
        if self._gap_since is not None:
            self._last_gap_ms = (now - self._gap_since) * 1000
            self._gap_since = None
        self._reconnect.connection_opened()
        delay_ms = (now - self._connect_started) * 1000
        session = f" (vendor session {conn.vendor_session})" if conn.vendor_session else ""
        self._log.info(
            "gen %d: %s %s in %.0f ms%s",
            conn.generation,
            "switched to the standby connection to" if adopted else "connected to",
            url_for_log(settings.url),
            delay_ms,
            session,
        )
        self._reports.status(ConnState.CONNECTED, 0, f"transcript.created{session}")
        self._emit("on_connected", conn.generation, delay_ms)
        self._watch(conn)
        self._pump()

    # ---------------------------------------------------------------- standby

    def _open_standby(self, conn: Conn) -> None:
        """Open the next turn's connection now, while this turn streams (its first speech
        was just sent): at the finalize it is ready, and the audio after the finalize
        goes out at once instead of waiting for a handshake."""
        conn.standby_asked = True
        if self._standby is not None or self._stopped:
            return
        self._standby = self._new_conn(Role.STANDBY, self._settings.connect_timeout_s)

    def _discard_standby(self, why: str) -> None:
        standby, self._standby = self._standby, None
        if standby is None:
            return
        self._log.info("gen %d: standby connection closed: %s", standby.generation, why)
        if self._conns.pop(standby.generation, None) is None:
            return  # its opening failed: nothing left of it
        if not standby.opened:
            self._out.append(io.Abort(standby.generation))  # cancels its opening
        else:
            self._close(standby, "not needed")

    def _ready_standby(self) -> Conn | None:
        """The standby connection, if it is open and usable right now."""
        standby = self._standby
        return standby if standby is not None and standby.usable else None

    # ---------------------------------------------------------------- failures

    def _after_failure(self, failure: Failure, decision: RetryDecision | None = None) -> None:
        """Report a failed attempt and wait the backoff, or give up."""
        if decision is None:
            decision = self._reconnect.record_failure(
                fatal=failure.fatal, retry_after_s=failure.retry_after_s
            )
        if decision.give_up:
            if failure.fatal:
                self._reports.error(failure, fatal=True, retry_in_s=None, attempt=decision.attempt)
            else:
                self._reports.error(
                    failure,
                    fatal=True,
                    retry_in_s=None,
                    attempt=decision.attempt,
                    kind="retries_exhausted",
                    message=f"gave up after {decision.attempt} failed attempts in a row; "
                    f"last: {failure.message}",
                )
            self._enter_fatal()
            return
        standby = self._ready_standby() if failure.kind == "dead_connection" else None
        if standby is not None:
            # The connection stopped answering, and the standby, opened since, is open:
            # switch to it at once (no backoff, no handshake). It is probed in turn
            # when speech starts on it. Other failures take the usual path.
            self._switch_to_standby = True
            self._reports.error(
                failure,
                fatal=False,
                retry_in_s=0.0,
                attempt=decision.attempt,
                message=f"{failure.message}; switching to the standby connection "
                f"(gen {standby.generation})",
            )
            self._connect("failure")
            return
        self._reports.error(
            failure, fatal=False, retry_in_s=decision.delay_s, attempt=decision.attempt
        )
        if decision.delay_s > 0:
            self._phase = Phase.BACKOFF
            self._out.append(io.SetTimer(BACKOFF_TIMER, self._now + decision.delay_s))
        else:
            self._connect("failure")

    def _backoff_over(self, _key: Any) -> None:
        if self._phase is Phase.BACKOFF:
            self._connect("failure")

    def _enter_fatal(self) -> None:
        """No connection will come: finalizes waiting for one end now."""
        self._fatal = True
        self._phase = Phase.FATAL
        self._discard_standby("the session gave up")
        report = self._buffer.drop_audio()
        if report is not None:
            self._reports.lose(report, LOST_GAVE_UP, self._now)
        self._reports.end_drop_episode(self._now, gave_up=self._fatal)
        self._reports.status(ConnState.DISCONNECTED, 0, "gave up")
        for f in self._turns.unsent():
            self._buffer.remove_marker(f.token)
            self._turns.end(f, "no_connection", self._generation + 1)

    # ================================================================ sending

    def _pump(self) -> None:
        """The one sender: the buffer's head goes to the current connection, one send at
        a time (the next when the driver says this one is written)."""
        conn = self._current
        if conn is None or conn.in_flight is not None or self._phase is not Phase.STREAMING:
            return
        items = self._buffer
        while True:
            if conn.ended or conn.tracker.failure is not None:
                self._current_ended(conn, "ended")
                return
            if conn.fallback_due:
                # Finalizes sent as `finalize` were refused or not answered: audio.done
                # answers them, and the connection drains.
                conn.fallback_due = False
                conn.in_flight = EndOfAudio.FALLBACK
                self._out.append(io.SendEndOfAudio(conn.generation))
                return
            item = items.pop()
            if item is None:
                if conn.idle:
                    self._close_idle(conn)
                return
            conn.idle = False
            if type(item) is AudioFrame:
                conn.in_flight = item
                conn.sending_since = self._now
                self._out.append(io.Send(conn.generation, item.data))
                return
            assert type(item) is FinalizeMarker
            if conn.sent_bytes == 0:
                # Nothing of this turn is on this connection: nothing to finalize here.
                self._turns.end_empty(item, conn.generation)
                continue
            if self._finalize_via == "finalize" and conn.settings_version == self._settings_version:
                if (
                    conn.speech_until <= conn.answered_until
                    and not conn.awaiting
                    and not conn.assembler.holds_text
                ):
                    # No speech since the last utterance final: nothing to end.
                    self._turns.answer_now(item, conn.generation)
                    continue
                conn.in_flight = FinalizeMessage(item)
                self._out.append(io.SendFinalize(conn.generation))
                return
            conn.in_flight = item
            self._out.append(io.SendEndOfAudio(conn.generation))
            return

    def _on_send_completed(self, event: io.SendCompleted) -> None:
        self._send_completed(event.generation, event.ok)

    def _send_completed(self, generation: int, ok: bool) -> None:
        conn = self._conns.get(generation)
        if conn is None or self._stopped:
            return
        item, conn.in_flight = conn.in_flight, None
        conn.sending_since = None
        if conn.role is Role.REPAIR:
            self._repairs.sent(conn, item, ok)
            return
        if item is None or conn.role is not Role.CURRENT:
            return
        if not ok:
            if type(item) is FinalizeMessage:
                self._buffer.push_front(item.marker)
            elif type(item) is not EndOfAudio:
                # Not to the floor: it goes first to the next connection.
                self._buffer.push_front(item)
            self._current_ended(conn, "send_failed")
            return
        if type(item) is AudioFrame:
            self._after_send(conn, item)
            # The sender goes on if there is more to send, or the connection ended (or
            # failed) while this send was in flight; else it waits for audio.
            if (
                self._buffer
                or conn.ended
                or conn.tracker.failure is not None
                or conn.idle
                or conn.fallback_due
            ):
                self._pump()
            return
        if type(item) is FinalizeMessage:
            self._turns.finalize_sent(conn, item.marker)
            self._pump()
            return
        conn.tracker.audio_done_sent()
        self._turns.has_audio = False
        # Finalizes still waiting on this connection for a `finalize` answer are answered
        # by this audio.done's drain too, whatever it was sent for.
        waiting = [f for _, f in self._release_awaiting(conn)]
        if item is EndOfAudio.FALLBACK:
            if waiting:
                # Late in the finalize timeout: the vendor gets half of what is left to
                # answer audio.done before its turn is repaired.
                conn.hedge_floor = self._now + (min(f.deadline for f in waiting) - self._now) / 2
            self._begin_drain(conn, waiting[-1] if waiting else None, waiting[:-1])
            self._after_handoff("handoff")
        elif item is EndOfAudio.IDLE:
            self._begin_drain(conn, waiting[-1] if waiting else None, waiting[:-1])
            self._gap_since = None
            self._after_handoff("idle")
        else:
            assert type(item) is FinalizeMarker
            self._begin_drain(conn, self._turns.finalize(item.finalize_id), waiting)
            self._after_handoff("handoff")

    def _after_send(self, conn: Conn, frame: AudioFrame) -> None:
        # Runs for every frame sent: integer ticks, and the frame's speech level only
        # while the watchdog still waits for the first speech since the last event.
        now = self._now
        length = frame.length
        data = frame.data
        conn.timeline.record_sent(frame.start, length)
        if self._ledger.in_episode:
            self._reports.end_drop_episode(now, gave_up=self._fatal)  # audio flows again
        trimmed = conn.window.sent(frame)
        if trimmed:
            self._replay_trimmed += trimmed
        if frame.replayed:
            self._replayed += length
        conn.sent_bytes += len(data)
        if self._finalize_via == "finalize" and frame.speech:
            conn.speech_until = frame.start + length
        self._turns.has_audio = True
        conn.last_audio_at = now
        quiet_since = conn.quiet_since
        if quiet_since is None:
            quiet_since = conn.quiet_since = now
        duration_ms = length / TICKS_PER_MS
        since_event_ms = conn.audio_since_event_ms
        conn.audio_since_event_ms = since_event_ms + duration_ms
        if conn.speech_since is None and frame.speech:
            conn.speech_since = max(now, quiet_since + since_event_ms / 1000)
            self._speech_started(conn)
        self._bytes_sent += len(data)
        self._audio_ms_sent += duration_ms
        self._out.append(io.Notify("on_audio_sent", (data,)))

    def _speech_started(self, conn: Conn) -> None:
        """The first speech since the connection's latest event was just sent on it."""
        settings = self._settings
        if liveness.probe_due_on_speech(conn, settings, self._now):
            # Speech is committed to a connection that has been quiet: prove it alive
            # (its audio stays in the replay window meanwhile).
            self._start_probe(conn)
        if (
            not conn.standby_asked
            and settings.standby
            and settings.prewarm
            and self._finalize_via == "audio_done"
        ):
            # A turn ending with audio.done needs the next connection: open it now.
            self._open_standby(conn)
        self._watch(conn)  # the stall deadline moved earlier

    def _close_idle(self, conn: Conn) -> None:
        """No audio for idle_close_s: end the session ourselves (planned), before the
        service ends it silently. Pending text is collected first with audio.done."""
        self._log.info(
            "gen %d: idle for %g s: closing", conn.generation, self._settings.idle_close_s
        )
        if conn.sent_bytes == 0:
            self._current = None
            self._reconnect.connection_closed()
            self._close(conn, "idle")
            self._retire(conn)
            self._gap_since = None
            self._after_handoff("idle")
            return
        conn.in_flight = EndOfAudio.IDLE
        self._out.append(io.SendEndOfAudio(conn.generation))

    def _after_handoff(self, how: str) -> None:
        """The current connection finished its turn (finalize) or closed for idleness."""
        settings = self._settings
        if how == "idle":
            self._discard_standby("the session is idle")
            self._reports.status(
                ConnState.DISCONNECTED,
                1000,
                f"closed after {settings.idle_close_s:g} s without audio",
            )
            self._next_connection("lazy")
            return
        if settings.prewarm or self._buffer.peek() is not None:
            self._next_connection("planned")
            return
        self._reports.status(ConnState.DISCONNECTED, 1000, "turn finalized; next on audio")
        self._next_connection("lazy")

    def _buffer_head(self) -> int:
        """User tick of the next audio the sender will take from the buffer."""
        for item in self._buffer:
            if isinstance(item, AudioFrame):
                return item.start
        return self._buffer.position

    # ---------------------------------------------------------------- the current one ends

    def _current_ended(self, conn: Conn, how: str) -> None:
        """The current connection cannot take audio any more (nothing is in flight)."""
        if conn.tracker.failure is None and not conn.ended:
            # The socket failed under a send: its reader sees the close in a moment.
            self._phase = Phase.SETTLING
            conn.settling = how
            self._out.append(
                io.SetTimer(("settle", conn.generation), self._now + SEND_FAILURE_SETTLE_S)
            )
            return
        self._conclude(conn, how)

    def _settle_expired(self, generation: int) -> None:
        conn = self._conns.get(generation)
        if conn is None or conn.settling is None or self._current is not conn:
            return
        conn.tracker.fail(Failure(kind="send_failed", message="sending audio failed"))
        self._out.append(io.Abort(generation))
        self._conclude(conn, conn.settling)

    def _conclude(self, conn: Conn, how: str) -> None:
        """What the current connection's end means: planned (next connection at once) or
        a failure (replay, backoff, maybe fatal)."""
        if conn.settling is not None:
            conn.settling = None
            self._out.append(io.CancelTimer(("settle", conn.generation)))
        verdict: PlannedClose | Failure
        if conn.tracker.failure is not None:
            verdict = conn.tracker.failure
        else:
            assert conn.verdict is not None
            verdict = conn.verdict
            if how == "send_failed" and isinstance(verdict, PlannedClose) and not conn.tracker.done:
                verdict = Failure(kind="send_failed", message="sending audio failed")
        self._current = None
        self._gap_since = self._now
        if isinstance(verdict, Failure) and verdict.kind == "stream_timeout":
            # The service ended a session it found idle: a new connection takes over,
            # hearing first what this one had not made final. Nothing to report.
            self._log.info("gen %d: %s; connecting anew", conn.generation, verdict.message)
            self._replay(conn)
            self._retire(conn)
            self._reconnect.connection_closed()
            self._reports.status(ConnState.DISCONNECTED, 1000, verdict.message)
            self._next_connection("planned" if self._settings.prewarm else "lazy")
            return
        if isinstance(verdict, PlannedClose):
            self._turns.salvage(conn)
            self._requeue(self._take_back_finalizes(conn), [])
            self._retire(conn)
            self._reconnect.connection_closed()
            self._reports.status(ConnState.DISCONNECTED, 1000, f"closed ({verdict.reason})")
            self._next_connection("planned" if self._settings.prewarm else "lazy")
            return
        decision = self._reconnect.record_failure(
            fatal=verdict.fatal, retry_after_s=verdict.retry_after_s
        )
        if decision.give_up:
            self._turns.salvage(conn)  # no next connection: its interim text is all there is
            self._take_back_finalizes(conn)  # they end with the session's fatal error
        else:
            self._replay(conn)
        self._retire(conn)
        self._log.warning("gen %d: failed: %s", conn.generation, verdict.message)
        self._reports.status(
            ConnState.DISCONNECTED, _numeric_code(verdict.vendor_code), verdict.message
        )
        self._phase = Phase.CONNECTING  # until after_failure says how the next one comes
        self._after_failure(verdict, decision)

    def _replay(self, conn: Conn) -> None:
        """The current connection failed: what it was sent after its latest final goes
        back to the head of the buffer, for the next connection to hear first."""
        replay_from = conn.window.start_ms  # connection time
        frames = conn.window.take()
        # Its interim text over the replayed audio is dropped (the next connection
        # transcribes that audio again); interim words before it (audio that fell out of
        # the window) are made final, as they would never be heard again.
        timeline = conn.timeline
        if frames:
            self._turns.salvage(conn, lambda s: timeline.vendor_to_conn_ms(s) <= replay_from)
        else:
            self._turns.salvage(conn)  # nothing will be heard again: all of it, as before
        self._next_floors = floors_after(conn, replay_from)
        finalizes = self._take_back_finalizes(conn)
        if frames:
            replay_ms = sum(f.length for f in frames) / TICKS_PER_MS
            self._log.warning(
                "gen %d failed: replaying %.0f ms of un-finalized audio to the next connection",
                conn.generation,
                replay_ms,
            )
        self._requeue(finalizes, [f.as_replayed() for f in frames])

    def _take_back_finalizes(self, conn: Conn) -> list[tuple[int, FinalizeMarker]]:
        """The finalizes sent as `finalize` on `conn` that it will never answer now: each
        with the user tick where it cut the stream, to be sent again in its place."""
        return [(cut, FinalizeMarker(f.token)) for cut, f in self._release_awaiting(conn)]

    def _release_awaiting(self, conn: Conn) -> list[tuple[int, Finalize]]:
        """`conn` no longer waits for `finalize` answers: the finalizes it was sent that
        are still open, oldest first, each with the user tick of its cut."""
        released = []
        for waiting in conn.awaiting:
            f = waiting.finalize
            self._turns.answered(f)
            if self._turns.finalize(f.token) is not None:
                released.append((waiting.cut, f))
        conn.awaiting.clear()
        conn.fallback_due = False
        return released

    def _requeue(
        self, finalizes: list[tuple[int, FinalizeMarker]], frames: list[AudioFrame]
    ) -> None:
        """Back to the head of the buffer, in stream order: `frames` (a failed connection's
        replay) with each finalize at its cut."""
        if not finalizes and not frames:
            return
        items: list[AudioFrame | FinalizeMarker] = []
        pending = list(finalizes)
        for frame in frames:
            while pending and pending[0][0] <= frame.start:
                items.append(pending.pop(0)[1])
            items.append(frame)
        items.extend(marker for _, marker in pending)
        report = self._buffer.requeue(items)
        if report is not None:
            self._reports.lose(report, LOST_BUFFER_FULL, self._now)

    # ================================================================ what connections say

    def _on_received(self, event: io.Received) -> None:
        conn = self._conns.get(event.generation)
        if conn is None or self._stopped:
            return
        vendor_event = event.event
        conn.tracker.receive(vendor_event)
        if conn.role is Role.REPAIR:
            self._repairs.event(conn, vendor_event)
            return
        if conn.role is not Role.CURRENT and conn.role is not Role.DRAINING:
            return  # a standby (nothing to say yet) or a finished turn
        if conn.turn_finished or conn.repairing:
            # Its turn is over (done, timeout or failure) and newer results may already
            # be out, or it failed and a repair connection has its turn: anything more
            # from it would break the order.
            self._log.debug(
                "gen %d: %s after its turn ended; ignored", conn.generation, vendor_event
            )
            return
        now = self._now
        conn.speech_since = None
        conn.quiet_since = None
        conn.audio_since_event_ms = 0.0
        conn.alive_at = conn.heard_at = now
        if isinstance(vendor_event, TranscriptPartial):
            heard = conn.timeline.vendor_to_conn_ms(vendor_event.start_s + vendor_event.duration_s)
            conn.heard_ms = max(conn.heard_ms, float(heard))
            self._reconnect.connection_healthy()
            end_s = self._vendor.acknowledged_until_s(vendor_event)
            if end_s is not None:
                acknowledge(conn, vendor_event, end_s)
            result = conn.assembler.on_partial(vendor_event)
            if result is not None:
                self._turns.deliver_result(conn, result)
            if vendor_event.speech_final and vendor_event.is_final:
                end_s = vendor_event.start_s + vendor_event.duration_s
                end = round(conn.timeline.to_user_ms(end_s, end=True) * TICKS_PER_MS)
                conn.answered_until = max(conn.answered_until, end)
                if conn.awaiting:
                    self._turns.utterance_final(conn, end_s, vendor_event.channel)
        elif isinstance(vendor_event, TranscriptDone):
            conn.heard_ms = float(conn.timeline.sent_ms)
            self._reconnect.connection_healthy()
            result = conn.assembler.on_done(vendor_event)
            if result is not None:
                self._turns.deliver_result(conn, result)
            if conn.role is Role.DRAINING and conn.tracker.done:
                self._turns.finish(conn, "done")
        elif isinstance(vendor_event, VendorError):
            failure = conn.tracker.failure
            if failure is None:
                # A message of ours refused; the connection goes on.
                if conn.role is Role.CURRENT and (
                    conn.awaiting or type(conn.in_flight) is FinalizeMessage
                ):
                    self.fall_back(conn, f"the server refused finalize ({vendor_event.message})")
                else:
                    self._warn_once(
                        "refused",
                        f"gen {conn.generation}: the server refused a message: "
                        f"{vendor_event.message}",
                    )
                return
            self._log.warning("gen %d: vendor error: %s", conn.generation, failure.message)
            if conn.role is Role.DRAINING:
                self._turns.drain_failed(conn, failure)
            self._close_failed(conn)
            self._pump()

    def _on_closed(self, event: io.Closed) -> None:
        conn = self._conns.get(event.generation)
        if conn is None or self._stopped:
            return
        close = event.close
        if close.failure is not None:
            conn.tracker.fail(close.failure)
        conn.ended = True
        if conn.verdict is None:
            conn.verdict = conn.tracker.closed(
                close.code, close.reason, sent_code=close.sent_code, sent_reason=close.sent_reason
            )
        if conn.role is Role.CURRENT:
            if conn.settling is not None:
                self._conclude(conn, conn.settling)
            else:
                self._pump()  # the sender decides what the close means
        elif conn.role is Role.DRAINING:
            if not conn.turn_finished:
                verdict = conn.verdict
                # Ends its turn (and retires it), or hands the turn to a repair.
                self._turns.drain_failed(conn, verdict if isinstance(verdict, Failure) else None)
        elif conn.role is Role.FINISHED:
            self._out.append(io.CancelTimer(("grace", conn.generation)))
            self._retire(conn)
        elif conn.role is Role.REPAIR:
            self._repairs.end(conn)

    def _close_failed(self, conn: Conn) -> None:
        """A dead session: close politely (the server reads what we sent), bounded."""
        self._close(conn, "failed", FAILURE_CLOSE_TIMEOUT_S)

    def _close(self, conn: Conn, reason: str, timeout_s: float | None = None) -> None:
        """A polite close, once: a close after a failure stays that failure."""
        if conn.ended or conn.closing:
            return
        conn.closing = True
        conn.tracker.close_planned(reason)
        self._out.append(io.Close(conn.generation, reason, timeout_s))

    def fall_back(self, conn: Conn, why: str) -> None:
        """The finalizes sent as `finalize` on `conn` will not be answered (refused, or
        no answer in time): audio.done answers them, and `auto` ends every later turn
        that way too."""
        if conn.role is not Role.CURRENT or conn.fallback_due or self._current is not conn:
            return
        if self._settings.finalize_mode == "auto" and self._finalize_via == "finalize":
            self._finalize_via = "audio_done"
            self._log.warning(
                "gen %d: %s: this turn and every later one end with audio.done "
                "(a new connection per turn)",
                conn.generation,
                why,
            )
        else:
            self._log.warning("gen %d: %s: this turn ends with audio.done", conn.generation, why)
        conn.fallback_due = True
        self._pump()

    def abandon(self, conn: Conn, f: Finalize) -> None:
        """`f`, sent as `finalize` on the current `conn`, timed out unanswered: like a
        drain that timed out, its turn ends with the interim text before its cut made
        final and the audio before the cut that nothing transcribed reported lost; the
        audio after the cut (and any later finalize) goes to a new connection, and `conn`
        is dropped, so that nothing of this turn comes after its end."""
        if self._current is not conn:
            return
        waiting = next((w for w in conn.awaiting if w.finalize is f), None)
        if waiting is None:
            return
        cut, cut_s = waiting.cut, waiting.cut_s
        frames = conn.window.take()
        item, conn.in_flight = conn.in_flight, None
        later = [w for w in conn.awaiting if w is not waiting and w.cut > cut]
        conn.awaiting = [w for w in conn.awaiting if w not in later and w is not waiting]
        taken = self._take_back_finalizes(conn)  # older ones, if any: sent again too
        conn.awaiting = later
        taken += self._take_back_finalizes(conn)
        if type(item) is AudioFrame:
            frames.append(item)
        elif type(item) is FinalizeMessage:
            taken.append((round(conn.timeline.user_end_ms * TICKS_PER_MS), item.marker))
        before = [fr for fr in frames if fr.start < cut]
        after = [fr.as_replayed() for fr in frames if fr.start >= cut]
        self._turns.give_up(conn, before, lambda s: s <= cut_s)
        failure = Failure(
            kind="finalize_timeout",
            message="no answer to finalize within the finalize timeout "
            f"({self._settings.finalize_timeout_s:g} s)",
        )
        conn.tracker.fail(failure)
        self._out.append(io.Abort(conn.generation))
        self._reports.error(failure, fatal=False, retry_in_s=None)
        self._requeue(taken, after)
        self._retire(conn)
        self._gap_since = self._now
        self._reports.status(ConnState.DISCONNECTED, 0, failure.message)
        self._connect("failure")

    # ================================================================ liveness

    def _watch(self, conn: Conn) -> None:
        """Stall, idle and keepalive checks of the current connection; arms the next."""
        if self._current is not conn or conn.ended or conn.tracker.failure is not None:
            return
        verdict = liveness.watch(conn, self._settings, self._now, quiet=self._buffer.peek() is None)
        if verdict.failure is not None:
            self._log.warning("gen %d: %s", conn.generation, verdict.failure.message)
            # Dropped at once: a stalled socket may not even take a close frame.
            conn.tracker.fail(verdict.failure)
            self._out.append(io.Abort(conn.generation))
            self._pump()
            return
        if verdict.probe:
            self._start_probe(conn)  # a silence: prove it alive
        self._out.append(io.SetTimer(("watch", conn.generation), verdict.next_check_at))
        if verdict.go_idle:
            conn.idle = True
            self._pump()

    def _watch_timer(self, generation: int) -> None:
        conn = self._conns.get(generation)
        if conn is not None:
            self._watch(conn)

    def _start_probe(self, conn: Conn) -> None:
        """Ping `conn`, unless a ping is already on its way. No pong in time and it is
        dead, and fails like any other (replay to the next connection, or a repair when
        draining). The ping waits behind the audio the vendor has not heard yet: the
        timeout allows for it, at real time from the vendor's latest event."""
        if conn.probing:
            return
        conn.probing = True
        conn.probe_timeout_s = liveness.probe_timeout_s(conn, self._settings, self._now)
        conn.probe_quiet_s = self._now - conn.alive_at
        self._out.append(io.Probe(conn.generation, conn.probe_timeout_s))

    def _on_probe_answered(self, event: io.ProbeAnswered) -> None:
        conn = self._conns.get(event.generation)
        if conn is None or self._stopped:
            return
        conn.probing = False
        if event.alive is None or conn.role not in (Role.CURRENT, Role.DRAINING):
            return  # closed meanwhile (its Closed says how)
        if event.alive:
            conn.alive_at = self._now
            return
        if conn.ended or conn.turn_finished or conn.repairing:
            return
        failure = liveness.dead(conn)
        self._log.warning("gen %d: %s", conn.generation, failure.message)
        conn.tracker.fail(failure)
        self._out.append(io.Abort(conn.generation))
        self._pump()

    # ================================================================ turns

    def _begin_drain(self, conn: Conn, f: Finalize | None, also: list[Finalize] = ()) -> None:  # type: ignore[assignment]
        """audio.done went out: the turn is the turns' now, and the next connection comes."""
        self._turns.begin_drain(conn, f, also)
        self._current = None
        self._gap_since = self._now
        self._reconnect.connection_closed()

    def _retire(self, conn: Conn) -> None:
        """`conn` leaves the books: nothing it says any more can touch the session."""
        if self._conns.get(conn.generation) is conn:
            del self._conns[conn.generation]
        if self._current is conn:
            self._current = None
        self._out.append(io.CancelTimer(("watch", conn.generation)))
        self._turns.delivery.unblock(conn.generation)

    # ================================================================ what Turns may use

    @property
    def now(self) -> float:
        return self._now

    @property
    def reports(self) -> SessionReports:
        return self._reports

    @property
    def next_generation(self) -> int:
        """Where an outcome with no connection of its own takes its place in the order."""
        return self._generation + 1

    def conn(self, generation: int) -> Conn | None:
        return self._conns.get(generation)

    def open_turns(self) -> list[Conn]:
        """The connections whose turn is not over: draining ones and repairs."""
        return [
            conn
            for conn in self._conns.values()
            if (conn.role is Role.DRAINING and not conn.turn_finished)
            or (conn.role is Role.REPAIR and not conn.repair_ended)
        ]

    def forget(self, generation: int) -> None:
        self._conns.pop(generation, None)

    def act(self, action: io.Action) -> None:
        self._out.append(action)

    def emit(self, method: str, *args: Any) -> None:
        self._out.append(io.Notify(method, args))

    def probe(self, conn: Conn) -> None:
        self._start_probe(conn)

    def retire(self, conn: Conn) -> None:
        self._retire(conn)

    def close(self, conn: Conn, reason: str, timeout_s: float | None = None) -> None:
        self._close(conn, reason, timeout_s)

    def new_conn(self, role: Role, connect_timeout_s: float, base_user: int = 0) -> Conn:
        return self._new_conn(role, connect_timeout_s, base_user)

    def count_replayed(self, ticks: int) -> None:
        self._replayed += ticks

    # ================================================================ helpers

    def _on_timer(self, event: io.TimerFired) -> None:
        if self._stopped:
            return
        kind, arg = event.key
        self._timer_handlers[kind](arg)

    def _emit(self, method: str, *args: Any) -> None:
        self._out.append(io.Notify(method, args))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning(message)


def _finalize_via(mode: str) -> str:
    return "audio_done" if mode == "audio_done" else "finalize"


def _numeric_code(code: str | None) -> int:
    if code is not None and code.strip().lstrip("-").isdigit():
        return int(code)
    return 0
