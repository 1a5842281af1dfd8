"""The sender: the buffer's head to the current connection, one send at a time.

`Sender` owns the outage buffer (audio_buffer.py: audio and finalize markers in
stream order, up to buffer_max_ms), the send in flight on the current
connection, how a finalize ends its utterance now (`finalize` on the open
connection, or `audio.done` and a drain), and what goes back to the head of the
buffer when a connection cannot take its audio after all (a failed one's replay
window, finalizes it will not answer). Its part of the machine (session_core.py
draws the whole):

    audio pushed --> buffer --pump--> Send(g) --send_completed(ok)--> pump ...
    finalize marker at the head --> SendFinalize(g) (g stays current; turns.py)
                                 | SendEndOfAudio(g) --sent--> handed_off (g drains)
    a send failed, or g ended/failed --> current_ended (the supervisor says what it means)
    finalize refused or unanswered  --> fall_back: audio.done answers it
    finalize timed out on g         --> abandon: g dropped, audio after the cut requeued

Which connection is current, and the phase, are the connection supervisor's
(supervisor.py), read on every frame through `Line`; the finalizes' answers are
the turns' (turns.py). No I/O: it acts by appending actions (`SessionHost`).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Protocol

from . import engine_io as io
from .audio_buffer import AudioBuffer, AudioFrame, AudioLedger, FinalizeMarker
from .books import ConnectionBooks
from .connection_state import (
    AudioBatch,
    Conn,
    EndOfAudio,
    Finalize,
    FinalizeMessage,
    Role,
    audio_in_flight,
    floors_after,
    joinable,
)
from .protocol import Failure
from .repairs import Repairs
from .session_reports import LOST_BUFFER_FULL, LOST_GAVE_UP, SessionReports
from .session_types import Phase, SessionSettings
from .timeline import TICKS_PER_MS
from .turns import Turns


class Line(Protocol):
    """What the sender needs of the connection supervisor (supervisor.py implements
    it): the current connection and the phase, read on every frame, and what follows
    when the current connection's turn or life ends."""

    @property
    def phase(self) -> Phase: ...
    @property
    def current(self) -> Conn | None: ...
    @property
    def gave_up(self) -> bool: ...
    def connect_on_demand(self) -> None: ...
    def speech_started(self, conn: Conn, finalize_via: str) -> None: ...
    def current_ended(self, conn: Conn, how: str) -> None: ...
    def close_unused(self, conn: Conn) -> None: ...
    def handed_off(
        self, conn: Conn, f: Finalize | None, also: list[Finalize], how: str
    ) -> None: ...
    def abandoned(self, conn: Conn, message: str) -> None: ...


class Sender:
    """The buffer, the send in flight, replay and the handoff at a finalize."""

    def __init__(
        self,
        host: io.SessionHost,
        line: Line,
        books: ConnectionBooks,
        turns: Turns,
        repairs: Repairs,
        reports: SessionReports,
        ledger: AudioLedger,
        log: logging.Logger,
    ) -> None:
        settings = host.settings
        self._host = host
        self._act = host.act
        self._line = line
        self._books = books
        self._conns = books.conns  # never replaced; read on every send completed
        self._turns = turns
        self._repairs = repairs
        self._reports = reports
        self._ledger = ledger
        self._log = log
        self._buffer = AudioBuffer(settings.audio_format, settings.buffer_max_ms)
        self._queue = self._buffer.items  # read on every send completed
        # How a finalize ends its utterance now: "finalize" (the connection stays) or
        # "audio_done" (it drains and closes; the next turn has another). `auto` starts
        # with finalize and falls back for good when the service refuses or ignores it.
        self._finalize_via = finalize_via(settings.finalize_mode)
        # Word floors for the connection that will take replayed audio (multichannel).
        self._next_floors: dict[int | None, Fraction] = {}
        # stats
        self.bytes_sent = 0
        self.audio_ms_sent = 0.0
        self.replayed = 0  # ticks (timeline.py)
        self.replay_trimmed = 0  # ticks

    # ================================================================ into the buffer

    def push(self, chunk: bytes) -> None:
        report = self._buffer.push(chunk)
        if report is not None:
            self._reports.lose(report, LOST_BUFFER_FULL, self._host.now)
        if self._line.phase is Phase.STREAMING:  # _kick, inline: every frame
            self.pump()
        else:
            self._kick()

    def push_after_fatal(self, chunk: bytes) -> None:
        """Audio after the session gave up: still part of the user's stream, it takes its
        place on the timeline (so times stay right after a new start) and in the ledger,
        counted, not reported again (the FATAL error said nothing more is transcribed)."""
        buffer = self._buffer
        now = self._host.now
        for report in (buffer.push(chunk), buffer.drop_audio()):
            if report is not None:
                self._ledger.lose(
                    report.ticks, report.frames, LOST_GAVE_UP, now=now, spans=report.spans
                )

    def mark_finalize(self, token: str) -> None:
        self._buffer.mark_finalize(token)
        self._kick()

    def settings_changed(self, old: SessionSettings, settings: SessionSettings) -> None:
        """Audio pushed from now on has the new format; finalize_mode applies at once."""
        if settings.finalize_mode != old.finalize_mode:
            self._finalize_via = finalize_via(settings.finalize_mode)
        self._buffer.set_format(settings.audio_format)
        self._buffer.max_ms = settings.buffer_max_ms

    @property
    def position_ms(self) -> Fraction:
        """Where the stream pushed so far ends (user ms)."""
        return self._buffer.position_ms

    @property
    def queued_ms(self) -> Fraction:
        return self._buffer.queued_ms

    @property
    def buffer_max_ms(self) -> int:
        return self._buffer.max_ms

    def drop_unsent(self, reason: str) -> None:
        """Audio never sent is lost now (stop, or the session gave up)."""
        report = self._buffer.drop_audio()
        if report is not None:
            self._reports.lose(report, reason, self._host.now)

    def withdraw_marker(self, token: str) -> None:
        self._buffer.remove_marker(token)

    def _kick(self) -> None:
        """Something entered the buffer: the sender or the lazy wait may act on it."""
        phase = self._line.phase
        if phase is Phase.STREAMING:
            self.pump()
        elif phase is Phase.LAZY:
            self.check_demand()

    def check_demand(self) -> None:
        """No connection is wanted until audio (or a finalize with audio before it) arrives."""
        line = self._line
        while line.phase is Phase.LAZY:
            head = self._buffer.peek()
            if isinstance(head, FinalizeMarker):
                # Nothing of this turn is waiting to be recognised: nothing to finalize.
                self._buffer.pop()
                self._turns.end_empty(head, self._books.next_generation)
                continue
            if head is not None:
                line.connect_on_demand()
            return

    def audio_waiting(self) -> bool:
        return self._buffer.peek() is not None

    def buffer_head(self) -> int:
        """User tick of the next audio the sender will take from the buffer."""
        for item in self._buffer:
            if isinstance(item, AudioFrame):
                return item.start
        return self._buffer.position

    def take_floors(self) -> dict[int | None, Fraction]:
        """The word floors for the connection going live (after a replay), once."""
        floors, self._next_floors = self._next_floors, {}
        return floors

    # ================================================================ sending

    def pump(self) -> None:
        """The one sender: the buffer's head goes to the current connection, one send at
        a time (the next when the driver says this one is written)."""
        line = self._line
        conn = line.current
        if conn is None or conn.in_flight is not None or line.phase is not Phase.STREAMING:
            return
        items = self._buffer
        while True:
            if conn.ended or conn.tracker.failure is not None:
                line.current_ended(conn, "ended")
                return
            if conn.fallback_due:
                # Finalizes sent as `finalize` were refused or not answered: audio.done
                # answers them, and the connection drains.
                conn.fallback_due = False
                conn.in_flight = EndOfAudio.FALLBACK
                self._act(io.SendEndOfAudio(conn.generation))
                return
            item = items.pop()
            if item is None:
                if conn.idle:
                    self._close_idle(conn)
                return
            conn.idle = False
            if type(item) is AudioFrame:
                sent: AudioFrame | AudioBatch = item
                if self._queue:
                    # More audio waits already: what joins goes out with this frame.
                    more = joinable(item, self._queue)
                    if more:
                        sent = AudioBatch([item, *items.pop_frames(more)])
                conn.in_flight = sent
                conn.sending_since = self._host.now
                self._act(io.Send(conn.generation, sent.data))
                return
            assert type(item) is FinalizeMarker
            if conn.sent_bytes == 0:
                # Nothing of this turn is on this connection: nothing to finalize here.
                self._turns.end_empty(item, conn.generation)
                continue
            if (
                self._finalize_via == "finalize"
                and conn.settings_version == self._books.settings_version
            ):
                if (
                    conn.speech_until <= conn.answered_until
                    and not conn.awaiting
                    and not conn.assembler.holds_text
                ):
                    # No speech since the last utterance final: nothing to end.
                    self._turns.answer_now(item, conn.generation)
                    continue
                conn.in_flight = FinalizeMessage(item)
                self._act(io.SendFinalize(conn.generation))
                return
            conn.in_flight = item
            self._act(io.SendEndOfAudio(conn.generation))
            return

    def send_completed(self, generation: int, ok: bool) -> None:
        conn = self._conns.get(generation)
        if conn is None or self._host.stopped:
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
            elif type(item) is AudioBatch:
                for frame in reversed(item.frames):  # first to the next connection
                    self._buffer.push_front(frame)
            elif type(item) is not EndOfAudio:
                # Not to the floor: it goes first to the next connection.
                self._buffer.push_front(item)
            self._line.current_ended(conn, "send_failed")
            return
        if type(item) is AudioFrame or type(item) is AudioBatch:
            if type(item) is AudioFrame:
                self._after_send(conn, item)
            else:
                for frame in item.frames:  # as if sent one by one, at once
                    self._after_send(conn, frame)
            # The sender goes on if there is more to send, or the connection ended (or
            # failed) while this send was in flight; else it waits for audio.
            if (
                self._queue  # the buffer holds more
                or conn.ended
                or conn.tracker.failure is not None
                or conn.idle
                or conn.fallback_due
            ):
                self.pump()
            return
        if type(item) is FinalizeMessage:
            self._turns.finalize_sent(conn, item.marker)
            self.pump()
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
                now = self._host.now
                conn.hedge_floor = now + (min(f.deadline for f in waiting) - now) / 2
            self._line.handed_off(conn, waiting[-1] if waiting else None, waiting[:-1], "handoff")
        elif item is EndOfAudio.IDLE:
            self._line.handed_off(conn, waiting[-1] if waiting else None, waiting[:-1], "idle")
        else:
            assert type(item) is FinalizeMarker
            f = self._turns.finalize(item.finalize_id)
            self._line.handed_off(conn, f, waiting, "handoff")

    def _after_send(self, conn: Conn, frame: AudioFrame) -> None:
        # Runs for every frame sent: integer ticks, and the frame's speech level (measured
        # once per frame) only where something reads it: finalize mode, or the watchdog
        # still waiting for the first speech since the last event.
        now = self._host.now
        length = frame.length
        data = frame.data
        size = len(data)
        conn.timeline.record_sent(frame.start, length)
        if self._ledger.in_episode:
            # Audio flows again.
            self._reports.end_drop_episode(now, gave_up=self._line.gave_up)
        trimmed = conn.window.sent(frame)
        if trimmed:
            self.replay_trimmed += trimmed
        if frame.replayed:
            self.replayed += length
        conn.sent_bytes += size
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
            self._line.speech_started(conn, self._finalize_via)
        self.bytes_sent += size
        self.audio_ms_sent += duration_ms
        self._act(io.Notify("on_audio_sent", (data,)))

    def _close_idle(self, conn: Conn) -> None:
        """No audio for idle_close_s: end the session ourselves (planned), before the
        service ends it silently. Pending text is collected first with audio.done."""
        self._log.info(
            "gen %d: idle for %g s: closing", conn.generation, self._host.settings.idle_close_s
        )
        if conn.sent_bytes == 0:
            self._line.close_unused(conn)
            return
        conn.in_flight = EndOfAudio.IDLE
        self._act(io.SendEndOfAudio(conn.generation))

    def count_replayed(self, ticks: int) -> None:
        self.replayed += ticks

    # ================================================================ back to the buffer

    def replay(self, conn: Conn) -> None:
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
        finalizes = self.take_back_finalizes(conn)
        if frames:
            replay_ms = sum(f.length for f in frames) / TICKS_PER_MS
            self._log.warning(
                "gen %d failed: replaying %.0f ms of un-finalized audio to the next connection",
                conn.generation,
                replay_ms,
            )
        self.requeue(finalizes, [f.as_replayed() for f in frames])

    def take_back_finalizes(self, conn: Conn) -> list[tuple[int, FinalizeMarker]]:
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

    def requeue(
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
            self._reports.lose(report, LOST_BUFFER_FULL, self._host.now)

    # ================================================================ a finalize not answered

    def fall_back(self, conn: Conn, why: str) -> None:
        """The finalizes sent as `finalize` on `conn` will not be answered (refused, or
        no answer in time): audio.done answers them, and `auto` ends every later turn
        that way too."""
        if conn.role is not Role.CURRENT or conn.fallback_due or self._line.current is not conn:
            return
        if self._host.settings.finalize_mode == "auto" and self._finalize_via == "finalize":
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
        self.pump()

    def abandon(self, conn: Conn, f: Finalize) -> None:
        """`f`, sent as `finalize` on the current `conn`, timed out unanswered: like a
        drain that timed out, its turn ends with the interim text before its cut made
        final and the audio before the cut that nothing transcribed reported lost; the
        audio after the cut (and any later finalize) goes to a new connection, and `conn`
        is dropped, so that nothing of this turn comes after its end."""
        if self._line.current is not conn:
            return
        waiting = next((w for w in conn.awaiting if w.finalize is f), None)
        if waiting is None:
            return
        cut, cut_s = waiting.cut, waiting.cut_s
        frames = conn.window.take()
        item, conn.in_flight = conn.in_flight, None
        later = [w for w in conn.awaiting if w is not waiting and w.cut > cut]
        conn.awaiting = [w for w in conn.awaiting if w not in later and w is not waiting]
        taken = self.take_back_finalizes(conn)  # older ones, if any: sent again too
        conn.awaiting = later
        taken += self.take_back_finalizes(conn)
        frames.extend(audio_in_flight(item))
        if type(item) is FinalizeMessage:
            taken.append((round(conn.timeline.user_end_ms * TICKS_PER_MS), item.marker))
        before = [fr for fr in frames if fr.start < cut]
        after = [fr.as_replayed() for fr in frames if fr.start >= cut]
        self._turns.give_up(conn, before, lambda s: s <= cut_s)
        failure = Failure(
            kind="finalize_timeout",
            message="no answer to finalize within the finalize timeout "
            f"({self._host.settings.finalize_timeout_s:g} s)",
        )
        conn.tracker.fail(failure)
        self._act(io.Abort(conn.generation))
        self._reports.error(failure, fatal=False, retry_in_s=None)
        self.requeue(taken, after)
        self._line.abandoned(conn, failure.message)


def finalize_via(mode: str) -> str:
    return "audio_done" if mode == "audio_done" else "finalize"
