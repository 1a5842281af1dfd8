"""The connection supervisor: which connection takes the session's audio, and the next.

`ConnectionSupervisor` owns the session's phase (`Phase`, session_types.py), the
CURRENT connection, the one whose handshake is under way and the STANDBY opened
ahead for the next turn, the backoff streak (reconnect_manager.py) and whether
the session gave up. It opens connections (through the books, books.py), adopts
a standby, takes an open failure, says what the end of the current one means
(planned: the next at once; a failure: replay, backoff, maybe fatal) and gives
up (FATAL). Its own part of the machine (session_core.py draws the whole):

    IDLE --start--> CONNECTING --opened--> STREAMING (go_live: the sender takes it)
    STREAMING --handed_off (audio.done sent), or idle--> CONNECTING | ADOPTING | LAZY
    STREAMING --current_ended: it ended or failed------------------> conclude
              --current_ended: a send failed--> SETTLING --closed | settle timer--> conclude
    conclude: planned (or the service's idle timeout) --> CONNECTING | ADOPTING | LAZY
              failure --> BACKOFF --timer--> CONNECTING
                      --> ADOPTING | STREAMING (dead, and the standby is ready)
                      --> FATAL (gave up; Start begins again)

What streams on the current connection is the sender's (sender.py); the checks
that find it dead are the watch's (watch.py); a turn, once its audio.done is out,
is the turns' (turns.py). The supervisor reaches the sender and the watch through
`SupervisedSender` and `SupervisedWatch` (they are made after it and read it),
and the session through `SessionHost` (engine_io.py). No I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

from . import engine_io as io
from .audio_buffer import AudioFrame, FinalizeMarker, ReplayWindow
from .books import ConnectionBooks
from .connection_state import Conn, Finalize, Role
from .protocol import Failure, PlannedClose, TranscriptCreated, url_for_log
from .reconnect_manager import ReconnectManager, RetryDecision
from .session_reports import LOST_GAVE_UP, SessionReports
from .session_types import ConnState, Phase, SessionSettings
from .timeline import ConnectionTimeline
from .turns import Turns
from .vendor import Vendor

# A socket that failed under a send is given this long for its reader to see the close.
SEND_FAILURE_SETTLE_S = 1.0

BACKOFF_TIMER: io.TimerKey = ("backoff", 0)


class SupervisedSender(Protocol):
    """What the supervisor asks of the sender (sender.py's `Sender` implements it)."""

    def pump(self) -> None: ...
    def check_demand(self) -> None: ...
    def buffer_head(self) -> int: ...
    def audio_waiting(self) -> bool: ...
    def take_floors(self) -> dict[int | None, Fraction]: ...
    def replay(self, conn: Conn) -> None: ...
    def take_back_finalizes(self, conn: Conn) -> list[tuple[int, FinalizeMarker]]: ...
    def requeue(
        self, finalizes: list[tuple[int, FinalizeMarker]], frames: list[AudioFrame]
    ) -> None: ...
    def drop_unsent(self, reason: str) -> None: ...
    def withdraw_marker(self, token: str) -> None: ...


class SupervisedWatch(Protocol):
    """What the supervisor asks of the watch (watch.py's `Watch` implements it)."""

    def watch(self, conn: Conn) -> None: ...
    def probe_if_due(self, conn: Conn) -> None: ...


class ConnectionSupervisor:
    """The phase and the live connections (current, connecting, standby): opening,
    adoption, failures, backoff, fatal."""

    def __init__(
        self,
        host: io.SessionHost,
        books: ConnectionBooks,
        reports: SessionReports,
        turns: Turns,
        *,
        vendor: Vendor,
        rng: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        self._host = host
        self._act = host.act
        self._books = books
        self._reports = reports
        self._turns = turns
        self._repairs = turns.repairs
        self._vendor = vendor
        self._log = log
        settings = host.settings
        self._reconnect = ReconnectManager(
            settings.backoff,
            healthy_after_s=settings.healthy_after_s,
            clock=lambda: host.now,
            rng=rng,
        )
        # Made after the supervisor (they read it): set by `bind`, before any event.
        self._sender: SupervisedSender
        self._watch: SupervisedWatch
        # Read by the sender on every frame (plain attributes); changed only here.
        self.phase = Phase.IDLE
        self.current: Conn | None = None
        self.gave_up = False
        self._connecting: Conn | None = None  # CONNECTING, or the standby being adopted
        self._connect_reason = "start"
        self._connect_started = 0.0
        self._standby: Conn | None = None
        self._switch_to_standby = False  # a dead connection's successor is the standby
        self._gap_since: float | None = None
        # stats
        self.planned_reconnects = 0
        self.failure_reconnects = 0
        self.last_gap_ms: float | None = None
        self.connections_opened = 0

    def bind(self, sender: SupervisedSender, watch: SupervisedWatch) -> None:
        self._sender = sender
        self._watch = watch

    @property
    def failed_attempts(self) -> int:
        return self._reconnect.attempt

    # ================================================================ the user

    def start(self) -> None:
        if self.gave_up:
            # The audio lost while given up is counted, and told by the FATAL error: it
            # ends here, not carried into the next episode's report.
            self._reports.end_drop_episode(self._host.now, gave_up=True)
            self.gave_up = False
            self._reconnect.connection_healthy()  # a new start is a new streak
        self._log.info("session starting: %s", self._host.settings.redacted())
        self._connect("start")

    def settings_changed(self, old: SessionSettings, settings: SessionSettings) -> None:
        self._reconnect.policy = settings.backoff
        self._reconnect.healthy_after_s = settings.healthy_after_s
        self._discard_standby("the settings changed")  # it was opened with the old ones

    def stop(self) -> list[Conn]:
        """Sockets first: nothing more goes out and nothing waits on the network. The
        connections, oldest first, for their turns to end (then `forget_all`)."""
        self.phase = Phase.STOPPED
        return self.abort_all()

    def abort_all(self) -> list[Conn]:
        """Abort every connection; returns them, oldest first (then `forget_all`)."""
        for generation in sorted(self._books.conns):
            self._act(io.Abort(generation))
        return sorted(self._books.conns.values(), key=lambda c: c.generation)

    def forget_all(self) -> None:
        self._books.clear()
        self.current = self._connecting = self._standby = None

    # ================================================================ connecting

    def _next_connection(self, reason: str) -> None:
        if self._host.stopped:
            return
        if reason == "lazy":
            self.phase = Phase.LAZY
            self._sender.check_demand()
            return
        self._connect(reason)

    def connect_on_demand(self) -> None:
        """Audio came while no connection was wanted (LAZY)."""
        self._gap_since = self._host.now
        self._connect("lazy")

    def _connect(self, reason: str) -> None:
        self._connect_reason = reason
        self._connect_started = self._host.now
        switch, self._switch_to_standby = self._switch_to_standby, False
        if reason == "planned" or switch:
            standby, self._standby = self._standby, None
            if standby is not None:
                self._reports.status(ConnState.CONNECTING, 0, "switching to the standby connection")
                if not standby.opened and not standby.open_failed:
                    # Its handshake is under way: wait for the rest of it.
                    self.phase = Phase.ADOPTING
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
        self._books.forget(standby.generation)
        self._act(io.Abort(standby.generation))
        self._open_new()

    def _open_new(self) -> None:
        self._discard_standby("a new connection is opened")
        settings = self._host.settings
        conn = self._books.new_conn(Role.CONNECTING, settings.connect_timeout_s)
        self._connecting = conn
        self.phase = Phase.CONNECTING
        self._reports.status(ConnState.CONNECTING, 0, f"connecting to {url_for_log(settings.url)}")
        self._connect_started = self._host.now

    def opened(self, event: io.Opened) -> None:
        conn = self._books.conns.get(event.generation)
        if conn is None or self._host.stopped:
            # Discarded or stopped while it opened (its cancel came too late): nobody
            # owns it any more.
            self._act(io.Abort(event.generation))
            return
        conn.tracker.receive(TranscriptCreated(event.vendor_session))
        conn.vendor_session = event.vendor_session
        conn.opened = True
        conn.open_done_at = self._host.now
        if conn.role is Role.CONNECTING:
            self._connecting = None
            self._go_live(conn, adopted=False)
        elif conn.role is Role.STANDBY:
            self._log.info(
                "gen %d: standby connection open in %.0f ms",
                conn.generation,
                (self._host.now - conn.opened_at) * 1000,
            )
            if self.phase is Phase.ADOPTING and self._connecting is conn:
                self._adopt(conn)
        elif conn.role is Role.REPAIR:
            self._repairs.send_next(conn)

    def open_failed(self, event: io.OpenFailed) -> None:
        conn = self._books.forget(event.generation)
        if conn is None or self._host.stopped:
            return
        conn.open_failed = True
        failure = event.failure
        conn.tracker.fail(failure)
        if conn.role is Role.CONNECTING:
            self._connecting = None
            self._reports.status(
                ConnState.DISCONNECTED, numeric_code(failure.vendor_code), failure.message
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
            if self.phase is Phase.ADOPTING and self._connecting is conn:
                self._adopt(conn)
        elif conn.role is Role.REPAIR:
            self._repairs.end(conn, failure)

    def _go_live(self, conn: Conn, *, adopted: bool) -> None:
        """`conn` becomes the current connection: new audio goes to it from now on."""
        settings = self._host.settings
        now = self._host.now
        sender = self._sender
        conn.role = Role.CURRENT
        conn.timeline = ConnectionTimeline(settings.sample_rate, sender.buffer_head())
        conn.assembler = self._vendor.assembler(settings)
        conn.window = ReplayWindow(settings.audio_format, settings.replay_max_ms)
        conn.opened_at = conn.last_audio_at = conn.heard_at = now
        # A standby's last sign of life is its transcript.created.
        conn.alive_at = conn.open_done_at if adopted else now
        conn.channel_keys = tuple(range(settings.channels)) if settings.multichannel else (None,)
        conn.floors = sender.take_floors()
        self.current = conn
        self.phase = Phase.STREAMING
        self.connections_opened += 1
        reason = self._connect_reason
        if reason == "failure":
            self.failure_reconnects += 1
        elif reason in ("planned", "lazy"):
            self.planned_reconnects += 1
        if self._gap_since is not None:
            self.last_gap_ms = (now - self._gap_since) * 1000
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
        self._act(io.Notify("on_connected", (conn.generation, delay_ms)))
        self._watch.watch(conn)
        sender.pump()

    # ---------------------------------------------------------------- standby

    def speech_started(self, conn: Conn, finalize_via: str) -> None:
        """The first speech since the connection's latest event was just sent on it."""
        settings = self._host.settings
        self._watch.probe_if_due(conn)
        if (
            not conn.standby_asked
            and settings.standby
            and settings.prewarm
            and finalize_via == "audio_done"
        ):
            # A turn ending with audio.done needs the next connection: open it now.
            self._open_standby(conn)
        self._watch.watch(conn)  # the stall deadline moved earlier

    def _open_standby(self, conn: Conn) -> None:
        """Open the next turn's connection now, while this turn streams (its first speech
        was just sent): at the finalize it is ready, and the audio after the finalize
        goes out at once instead of waiting for a handshake."""
        conn.standby_asked = True
        if self._standby is not None or self._host.stopped:
            return
        self._standby = self._books.new_conn(Role.STANDBY, self._host.settings.connect_timeout_s)

    def _discard_standby(self, why: str) -> None:
        standby, self._standby = self._standby, None
        if standby is None:
            return
        self._log.info("gen %d: standby connection closed: %s", standby.generation, why)
        if self._books.forget(standby.generation) is None:
            return  # its opening failed: nothing left of it
        if not standby.opened:
            self._act(io.Abort(standby.generation))  # cancels its opening
        else:
            self._books.close(standby, "not needed")

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
            self.give_up()
            return
        standby = self._standby if failure.kind == "dead_connection" else None
        if standby is not None and standby.usable:
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
            self.phase = Phase.BACKOFF
            self._act(io.SetTimer(BACKOFF_TIMER, self._host.now + decision.delay_s))
        else:
            self._connect("failure")

    def backoff_over(self, _key: object) -> None:
        if self.phase is Phase.BACKOFF:
            self._connect("failure")

    def give_up(self) -> None:
        """FATAL: no connection will come; finalizes waiting for one end now."""
        self.gave_up = True
        self.phase = Phase.FATAL
        self._discard_standby("the session gave up")
        sender = self._sender
        sender.drop_unsent(LOST_GAVE_UP)
        now = self._host.now
        self._reports.end_drop_episode(now, gave_up=self.gave_up)
        self._reports.status(ConnState.DISCONNECTED, 0, "gave up")
        for f in self._turns.unsent():
            sender.withdraw_marker(f.token)
            self._turns.end(f, "no_connection", self._books.next_generation)

    # ================================================================ the current one ends

    def handed_off(self, conn: Conn, f: Finalize | None, also: list[Finalize], how: str) -> None:
        """audio.done went out on the current connection (a finalize's, a fallback's, or
        an idle close's): the turn is the turns' now, and the next connection comes."""
        self._turns.begin_drain(conn, f, also)
        self.current = None
        self._gap_since = self._host.now
        self._reconnect.connection_closed()
        if how == "idle":
            self._gap_since = None
        self._after_handoff(how)

    def close_unused(self, conn: Conn) -> None:
        """The current connection is idle and was never sent audio: closed, no drain."""
        self.current = None
        self._reconnect.connection_closed()
        self._books.close(conn, "idle")
        self.retire(conn)
        self._gap_since = None
        self._after_handoff("idle")

    def _after_handoff(self, how: str) -> None:
        """The current connection finished its turn (finalize) or closed for idleness."""
        settings = self._host.settings
        if how == "idle":
            self._discard_standby("the session is idle")
            self._reports.status(
                ConnState.DISCONNECTED,
                1000,
                f"closed after {settings.idle_close_s:g} s without audio",
            )
            self._next_connection("lazy")
            return
        if settings.prewarm or self._sender.audio_waiting():
            self._next_connection("planned")
            return
        self._reports.status(ConnState.DISCONNECTED, 1000, "turn finalized; next on audio")
        self._next_connection("lazy")

    def current_ended(self, conn: Conn, how: str) -> None:
        """The current connection cannot take audio any more (nothing is in flight)."""
        if conn.tracker.failure is None and not conn.ended:
            # The socket failed under a send: its reader sees the close in a moment.
            self.phase = Phase.SETTLING
            conn.settling = how
            self._act(
                io.SetTimer(("settle", conn.generation), self._host.now + SEND_FAILURE_SETTLE_S)
            )
            return
        self.conclude(conn, how)

    def settle_expired(self, generation: int) -> None:
        conn = self._books.conns.get(generation)
        if conn is None or conn.settling is None or self.current is not conn:
            return
        conn.tracker.fail(Failure(kind="send_failed", message="sending audio failed"))
        self._act(io.Abort(generation))
        self.conclude(conn, conn.settling)

    def conclude(self, conn: Conn, how: str) -> None:
        """What the current connection's end means: planned (next connection at once) or
        a failure (replay, backoff, maybe fatal)."""
        if conn.settling is not None:
            conn.settling = None
            self._act(io.CancelTimer(("settle", conn.generation)))
        verdict: PlannedClose | Failure
        if conn.tracker.failure is not None:
            verdict = conn.tracker.failure
        else:
            assert conn.verdict is not None
            verdict = conn.verdict
            if how == "send_failed" and isinstance(verdict, PlannedClose) and not conn.tracker.done:
                verdict = Failure(kind="send_failed", message="sending audio failed")
        self.current = None
        self._gap_since = self._host.now
        sender = self._sender
        prewarm = self._host.settings.prewarm
        if isinstance(verdict, Failure) and verdict.kind == "stream_timeout":
            # The service ended a session it found idle: a new connection takes over,
            # hearing first what this one had not made final. Nothing to report.
            self._log.info("gen %d: %s; connecting anew", conn.generation, verdict.message)
            sender.replay(conn)
            self.retire(conn)
            self._reconnect.connection_closed()
            self._reports.status(ConnState.DISCONNECTED, 1000, verdict.message)
            self._next_connection("planned" if prewarm else "lazy")
            return
        if isinstance(verdict, PlannedClose):
            self._turns.salvage(conn)
            sender.requeue(sender.take_back_finalizes(conn), [])
            self.retire(conn)
            self._reconnect.connection_closed()
            self._reports.status(ConnState.DISCONNECTED, 1000, f"closed ({verdict.reason})")
            self._next_connection("planned" if prewarm else "lazy")
            return
        decision = self._reconnect.record_failure(
            fatal=verdict.fatal, retry_after_s=verdict.retry_after_s
        )
        if decision.give_up:
            # No next connection: its interim text is all there is, and the audio past it
            # is counted lost (the FATAL error that follows says why).
            self._turns.give_up(conn, reason=LOST_GAVE_UP)
            sender.take_back_finalizes(conn)  # they end with the session's fatal error
        else:
            sender.replay(conn)
        self.retire(conn)
        self._log.warning("gen %d: failed: %s", conn.generation, verdict.message)
        self._reports.status(
            ConnState.DISCONNECTED, numeric_code(verdict.vendor_code), verdict.message
        )
        self.phase = Phase.CONNECTING  # until after_failure says how the next one comes
        self._after_failure(verdict, decision)

    def abandoned(self, conn: Conn, message: str) -> None:
        """The current connection was dropped with a finalize it never answered (the
        sender's `abandon`): a new one takes the audio after the cut."""
        self.retire(conn)
        self._gap_since = self._host.now
        self._reports.status(ConnState.DISCONNECTED, 0, message)
        self._connect("failure")

    # ================================================================ the books

    def connection_healthy(self) -> None:
        self._reconnect.connection_healthy()

    def retire(self, conn: Conn) -> None:
        """`conn` leaves the books: nothing it says any more can touch the session."""
        if self._books.conns.get(conn.generation) is conn:
            self._books.forget(conn.generation)
        if self.current is conn:
            self.current = None
        self._act(io.CancelTimer(("watch", conn.generation)))
        self._turns.delivery.unblock(conn.generation)


def numeric_code(code: str | None) -> int:
    if code is not None and code.strip().lstrip("-").isdigit():
        return int(code)
    return 0
