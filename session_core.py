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

The session's phases (one at a time; what the next connection waits for).
`Phase` is the supervisor's (supervisor.py: `ConnectionSupervisor`); the room
that makes each move is on its right:

    IDLE --Start--> CONNECTING --Opened--> STREAMING                  [supervisor]
    STREAMING --finalize sent, or idle--> CONNECTING (prewarm)       [sender: the
              | ADOPTING (standby) | LAZY                         handoff; supervisor]
    STREAMING --current failed--> SETTLING (a send failed, its close not seen yet)
              --> BACKOFF --timer--> CONNECTING   (or ADOPTING: a dead one's standby)
                                        [sender or watch find it; supervisor decides]
    LAZY --audio pushed--> CONNECTING                  [sender: the buffer; supervisor]
    any --gave up--> FATAL --Start--> CONNECTING                       [supervisor]
    any --StopAsked--> STOPPED                   [core: each room ends its part]

A connection's roles are in connection_state.py (CONNECTING, STANDBY,
CURRENT, DRAINING, FINISHED, REPAIR). A turn: its audio goes to the CURRENT
connection (sender.py); its finalize marker, reached in the buffer, becomes
audio.done; the connection is DRAINING until transcript.done (turn "done"), a
failure (repaired on a REPAIR connection, repairs.py, or "failed"), or the
deadline ("timeout"); then FINISHED, and closed (turns.py). Its results block
every newer generation's (delivery.py) until then. The connections the core
still has a say on are in the books (books.py: `ConnectionBooks`).

With finalize_mode finalize (or auto, until it falls back) a turn stays on
its connection (the sender sends; the turns wait for the answer):

    FinalizeAsked           -> SetTimer(finalize #1)
      ... its marker reaches the head of the buffer ...
                            -> SendFinalize(g)
    SendCompleted(g, ok)    -> Probe(g), SetTimer(answer #1)  (g stays current: the
                                                               next Send goes to g)
    Received(g, utterance final reaching the cut)
                            -> Notify(on_transcript), Notify(on_finalize_end)
    Received(g, error: finalize refused) | TimerFired(answer #1)
                            -> SendEndOfAudio(g), then as below from its SendCompleted

With audio_done, two turns in events and actions (g: the current generation;
the room that answers each event is named in the table of rooms below):

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

The rooms. `SessionCore` routes: each event goes to the room that owns what it
touches, every room appends its actions to the one list the core returns, and
the rooms reach the session and each other only through small Protocols (no
room imports the core, nor a room that calls it back; tests/test_structure.py
holds that):

- supervisor.py `ConnectionSupervisor`: the phase; the CURRENT connection, the
  one connecting, the STANDBY; Start, Opened, OpenFailed; adopting a standby;
  what the current connection's end means (planned: the next one; a failure:
  replay, backoff); FATAL. Reaches the sender and the watch through
  `SupervisedSender` and `SupervisedWatch`.
- sender.py `Sender`: the buffer and its head, the send in flight, finalize or
  audio.done, the handoff at a finalize, replay and take-back to the buffer,
  fall_back and abandon; AudioPushed and SendCompleted (the per-frame path: one
  call from the core). Reads the supervisor through `Line`.
- watch.py `Watch`: the current connection's watch timer (stall, idle,
  keepalive), probes, ProbeAnswered. Reads `WatchedLine`, nudges `WatchedSender`.
- books.py `ConnectionBooks`: every connection by generation; Open with the
  settings of the moment (and their version), Close, forget.
- turns.py `Turns`: a turn after its audio.done (drain, hedge, timeout, finish),
  the finalizes and their one answer, results in order (delivery.py), a turn's
  lost audio. repairs.py `Repairs`: a failed turn's repair connection. Both
  reach the session through `TurnsHost` / `RepairsHost`, which the core
  implements.
- session_core.py `SessionCore`: the routing; the user's events (audio, finalize,
  settings, stop); what connections say (Received, Closed): results to the
  turns, ends and failures to the supervisor or the sender. It implements
  `SessionHost` (engine_io.py: the time, the settings, `act`) for every room.

Why this cut: each room's state changes for one reason (which connection is
live, what is sent on it, whether it is alive, what a turn answers), so a change
to how a failed connection is replaced is read in supervisor.py alone; and the
per-frame path crosses one room boundary only (core -> Sender, which reads the
supervisor's `current` and `phase` as plain attributes). liveness.py holds the
rules that find a dead connection, session_reports.py what is reported and how,
connection_state.py what is known of one connection.

Timers (keys, and the room each is routed to): ("finalize", token) a finalize's
deadline while it waits for a connection or for its answer on an open one;
("answer", token) the point where a finalize sent as `finalize` is answered by
audio.done instead; ("drain", gen) and ("hedge", gen) a draining turn's deadline
and half-way point; ("grace", gen) the server's moment to close after done (all
Turns); ("repair", gen) a repair's deadline (Repairs); ("watch", gen) the
current connection's stall, idle and keepalive checks (Watch); ("settle", gen)
how long a failed send waits for its close; ("backoff", 0) the next attempt
(both ConnectionSupervisor).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from . import engine_io as io
from .audio_buffer import AudioLedger
from .books import ConnectionBooks
from .connection_state import Conn, Finalize, FinalizeMessage, Role, acknowledge
from .protocol import Failure, TranscriptDone, TranscriptPartial, VendorError
from .sender import Sender
from .session_reports import LOST_STOPPED, SessionReports
from .session_types import ConnState, FinalizeOutcome, Phase, SessionSettings, SessionStats
from .supervisor import ConnectionSupervisor
from .timeline import TICKS_PER_MS, round_ms
from .turns import Turns
from .vendor import XAI, Vendor
from .watch import Watch

__all__ = ["Phase", "SessionCore"]


class SessionCore:
    """A session's state and decisions, in rooms. Events in (`handle`), actions out."""

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
        # SessionHost, read by the rooms on every frame: plain attributes. `now` is the
        # time of the event being handled; `act` appends to its actions (the list stays:
        # `_take` hands out a copy).
        self.now = now
        self.stopped = False
        self._out: list[io.Action] = []
        self.act: Callable[[io.Action], None] = self._out.append
        # Where audio the engine gives up on goes: counted and reported once per episode.
        self._ledger = AudioLedger()
        self._reports = SessionReports(
            self.emit,
            self._ledger,
            self._log,
            secret=lambda: self._settings.api_key,
            attempt=lambda: self._supervisor.failed_attempts,
            buffer_max_ms=lambda: self._sender.buffer_max_ms,
        )
        self._turns = Turns(self, self._log)
        self._repairs = self._turns.repairs
        self._books = ConnectionBooks(self, vendor)
        self._supervisor = ConnectionSupervisor(
            self, self._books, self._reports, self._turns, vendor=vendor, rng=rng, log=self._log
        )
        self._sender = Sender(
            self,
            self._supervisor,
            self._books,
            self._turns,
            self._repairs,
            self._reports,
            self._ledger,
            self._log,
        )
        self._watch = Watch(self, self._supervisor, self._books, self._sender, self._log)
        self._supervisor.bind(self._sender, self._watch)
        self._warned: set[str] = set()
        supervisor, turns = self._supervisor, self._turns
        self._handlers: dict[type, Callable[[Any], None]] = {
            io.Start: self._on_start,
            io.AudioPushed: self._on_audio,
            io.FinalizeAsked: self._on_finalize,
            io.SettingsChanged: self._on_settings,
            io.StopAsked: self._on_stop,
            io.Opened: supervisor.opened,
            io.OpenFailed: supervisor.open_failed,
            io.Received: self._on_received,
            io.Closed: self._on_closed,
            io.SendCompleted: self._on_send_completed,
            io.ProbeAnswered: self._watch.probe_answered,
            io.TimerFired: self._on_timer,
            io.DeferredDue: self._on_deferred,
        }
        self._timer_handlers: dict[str, Callable[[Any], None]] = {
            "finalize": turns.finalize_expired,
            "drain": turns.drain_expired,
            "hedge": turns.hedge,
            "grace": turns.grace_over,
            "watch": self._watch.timer,
            "settle": supervisor.settle_expired,
            "repair": self._repairs.expired,
            "answer": turns.answer_overdue,
            "backoff": supervisor.backoff_over,
        }

    # ================================================================ interface

    def handle(self, event: io.Event) -> Sequence[io.Action]:
        """Apply one event; the actions that follow, in order."""
        self.now = event.now
        self._handlers[type(event)](event)
        return self._take()

    # The two events of every audio frame, without building an event object: the
    # same as handle(AudioPushed(...)) and handle(SendCompleted(...)).

    def audio_pushed(self, now: float, chunk: bytes) -> Sequence[io.Action]:
        self.now = now
        if self.stopped or self._supervisor.gave_up:  # _push_audio, inline: every frame
            self._refuse_audio(chunk)
        else:
            self._sender.push(chunk)
        return self._take()

    def send_completed(self, now: float, generation: int, ok: bool) -> Sequence[io.Action]:
        self.now = now
        self._sender.send_completed(generation, ok)
        return self._take()

    def _take(self) -> Sequence[io.Action]:
        out = self._out
        if not out:
            return ()  # most events of a live stream ask for nothing new
        taken = out.copy()
        out.clear()
        return taken

    def crashed(self, now: float, exc: BaseException) -> list[io.Action]:
        """A bug in the core surfaced (an exception from `handle`): a silent, dead session
        is the one outcome we never accept, so it gives up loudly."""
        self.now = now
        if not self.stopped and not self._supervisor.gave_up:
            self._reports.error(
                Failure(kind="internal", message=f"internal error: {type(exc).__name__}: {exc}"),
                fatal=True,
                retry_in_s=None,
            )
            self._supervisor.give_up()
            # Its connections go too: nothing of them may reach the listener after the
            # FATAL error, and a Start after it must not find an old one still open.
            # What they held ends as at stop, counted lost (gave_up), each finalize failed.
            try:
                conns = self._supervisor.abort_all()
                self._turns.stop(conns, status="failed")
            finally:
                self._supervisor.forget_all()
        out = self._out.copy()
        self._out.clear()
        return out

    @property
    def settings(self) -> SessionSettings:
        return self._settings

    @property
    def gave_up(self) -> bool:
        return self._supervisor.gave_up

    @property
    def phase(self) -> Phase:
        return self._supervisor.phase

    @property
    def ledger(self) -> AudioLedger:
        return self._ledger

    @property
    def queued_ms(self) -> Fraction:
        return self._sender.queued_ms

    @property
    def stats(self) -> SessionStats:
        sender, supervisor = self._sender, self._supervisor
        return SessionStats(
            bytes_sent=sender.bytes_sent,
            audio_ms_sent=sender.audio_ms_sent,
            planned_reconnects=supervisor.planned_reconnects,
            failure_reconnects=supervisor.failure_reconnects,
            last_reconnect_gap_ms=supervisor.last_gap_ms,
            dropped_ms=self._ledger.lost_ms,
            connections_opened=supervisor.connections_opened,
            current_state=self._reports.state,
            generation=self._books.generation,
            dropped_frames=self._ledger.frames,
            failed_attempts=supervisor.failed_attempts,
            replayed_ms=sender.replayed / TICKS_PER_MS,
            replay_trimmed_ms=sender.replay_trimmed / TICKS_PER_MS,
            drop_episodes=self._ledger.episodes,
        )

    # ================================================================ the user

    def _on_start(self, event: io.Start) -> None:
        if self.stopped or self._supervisor.phase not in (Phase.IDLE, Phase.FATAL):
            return
        self._supervisor.start()

    def _on_audio(self, event: io.AudioPushed) -> None:
        if self.stopped or self._supervisor.gave_up:
            self._refuse_audio(event.chunk)
        else:
            self._sender.push(event.chunk)

    def _refuse_audio(self, chunk: bytes) -> None:
        if self.stopped:
            self._warn_once("after_stop", "audio pushed after stop is ignored")
            return
        self._warn_once("after_fatal", "audio is ignored: the session gave up (fatal error)")
        self._sender.push_after_fatal(chunk)

    def _on_finalize(self, event: io.FinalizeAsked) -> None:
        f = self._turns.new_finalize(event.finalize_id, round_ms(self._sender.position_ms))
        if self.stopped or self._supervisor.gave_up:
            outcome = FinalizeOutcome(
                f.finalize_id,
                "stopped" if self.stopped else "no_connection",
                0.0,
                position_ms=f.position_ms,
            )
            # Answered on a later loop turn: never from inside the caller's finalize().
            self.act(io.Defer(self._books.next_generation, outcome))
            return
        self._turns.register(f)
        self._sender.mark_finalize(f.token)

    def _on_settings(self, event: io.SettingsChanged) -> None:
        """Takes effect at the next connection (and for audio pushed from now on)."""
        settings = event.settings
        old, self._settings = self._settings, settings
        self._sender.settings_changed(old, settings)
        self._books.settings_changed(old, settings)
        self._supervisor.settings_changed(old, settings)
        self._log.info("settings updated (next connection): %s", settings.redacted())

    def _on_stop(self, event: io.StopAsked) -> None:
        if self.stopped:
            return
        self.stopped = True
        conns = self._supervisor.stop()  # sockets first: Abort every connection
        # Audio never sent is lost now: reported before the turns end.
        self._sender.drop_unsent(LOST_STOPPED)
        self._turns.stop(conns)
        self._supervisor.forget_all()
        self._reports.end_drop_episode(self.now, gave_up=self._supervisor.gave_up)
        self._reports.status(ConnState.DISCONNECTED, 1000, "stopped")
        self._log.info("session stopped")

    def _on_deferred(self, event: io.DeferredDue) -> None:
        self._turns.delivery.deliver(event.generation, event.outcome)

    def _on_send_completed(self, event: io.SendCompleted) -> None:
        self._sender.send_completed(event.generation, event.ok)

    def _on_timer(self, event: io.TimerFired) -> None:
        if self.stopped:
            return
        kind, arg = event.key
        self._timer_handlers[kind](arg)

    # ================================================================ what connections say

    def _on_received(self, event: io.Received) -> None:
        conn = self._books.conns.get(event.generation)
        if conn is None or self.stopped:
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
        now = self.now
        conn.speech_since = None
        conn.quiet_since = None
        conn.audio_since_event_ms = 0.0
        conn.alive_at = conn.heard_at = now
        if isinstance(vendor_event, TranscriptPartial):
            heard = conn.timeline.vendor_to_conn_ms(vendor_event.start_s + vendor_event.duration_s)
            conn.heard_ms = max(conn.heard_ms, float(heard))
            self._supervisor.connection_healthy()
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
            self._supervisor.connection_healthy()
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
                    self._sender.fall_back(
                        conn, f"the server refused finalize ({vendor_event.message})"
                    )
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
            self._books.close_failed(conn)
            self._sender.pump()

    def _on_closed(self, event: io.Closed) -> None:
        conn = self._books.conns.get(event.generation)
        if conn is None or self.stopped:
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
                self._supervisor.conclude(conn, conn.settling)
            else:
                self._sender.pump()  # the sender decides what the close means
        elif conn.role is Role.DRAINING:
            if not conn.turn_finished:
                verdict = conn.verdict
                # Ends its turn (and retires it), or hands the turn to a repair.
                self._turns.drain_failed(conn, verdict if isinstance(verdict, Failure) else None)
        elif conn.role is Role.FINISHED:
            self.act(io.CancelTimer(("grace", conn.generation)))
            self._supervisor.retire(conn)
        elif conn.role is Role.REPAIR:
            self._repairs.end(conn)

    # ================================================================ TurnsHost

    @property
    def reports(self) -> SessionReports:
        return self._reports

    @property
    def next_generation(self) -> int:
        return self._books.next_generation

    def conn(self, generation: int) -> Conn | None:
        return self._books.conns.get(generation)

    def open_turns(self) -> list[Conn]:
        return self._books.open_turns()

    def forget(self, generation: int) -> None:
        self._books.forget(generation)

    def new_conn(self, role: Role, connect_timeout_s: float, base_user: int = 0) -> Conn:
        return self._books.new_conn(role, connect_timeout_s, base_user)

    def retire(self, conn: Conn) -> None:
        self._supervisor.retire(conn)

    def close(self, conn: Conn, reason: str, timeout_s: float | None = None) -> None:
        self._books.close(conn, reason, timeout_s)

    def probe(self, conn: Conn) -> None:
        self._watch.probe(conn)

    def count_replayed(self, ticks: int) -> None:
        self._sender.count_replayed(ticks)

    def fall_back(self, conn: Conn, why: str) -> None:
        self._sender.fall_back(conn, why)

    def abandon(self, conn: Conn, f: Finalize) -> None:
        self._sender.abandon(conn, f)

    def emit(self, method: str, *args: Any) -> None:
        self.act(io.Notify(method, args))

    # ================================================================ helpers

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning(message)
