"""A turn, from its audio.done to its one answer, and the order answers go out in.

The session core hands a turn over when the current connection is sent
audio.done (`begin_drain`). From then on `Turns` owns it: the connection is
DRAINING until its transcript.done ("done"), a failure (re-transcribed on a
REPAIR connection, or "failed"), or the deadline ("timeout"); its finalize
gets exactly one outcome; its results, and any newer connection's, go out in
order (delivery.py); audio nothing can transcribe any more goes to the ledger.
It also keeps the finalizes from their request to their outcome.

A turn's states, for the connection that carries it:

    DRAINING --transcript.done------------------------------> FINISHED "done"
    DRAINING --deadline-------------------------------------> FINISHED "timeout"
    DRAINING --failure, no time left or replay off----------> FINISHED "failed"
    DRAINING --failure, or no done half-way, time left--> repairing
        repairing --the repair's transcript.done------------> FINISHED "done" (repaired)
        repairing --the repair fails, or the deadline-------> FINISHED "failed" | "timeout"
    any --stop----------------------------------------------> "stopped"

Like the core, it does no I/O: it acts through its host (`TurnsHost`, which the
core implements: `act`, `emit`, `new_conn`, `retire`, `close`, `probe`), reads the
time from it, and is called by it on events and timers. A failed turn's repair is
repairs.py's (`Repairs`, which reaches the turns back only through `RepairedTurns`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from . import engine_io as io
from . import liveness
from .audio_buffer import AudioFrame, AudioLedger, DropReport, FinalizeMarker
from .connection_state import (
    FAILURE_CLOSE_TIMEOUT_S,
    Awaiting,
    Conn,
    Finalize,
    Role,
    audio_in_flight,
    floors_after,
    to_transcript,
)
from .delivery import DeliveryOrder
from .protocol import Failure
from .repairs import Repairs, RepairsHost
from .session_reports import LOST_GAVE_UP, LOST_REPLAY_WINDOW, LOST_STOPPED, LOST_UNANSWERED
from .session_types import FinalizeOutcome, Transcript
from .timeline import TICKS_PER_MS
from .utterances import VendorResult

# After transcript.done the server closes by itself; it gets this long before we close.
DONE_CLOSE_GRACE_S = 0.5
# An utterance final answers a `finalize` when it reaches the cut, give or take this
# (the vendor's times are rounded).
CUT_TOLERANCE_S = 0.05


class TurnsHost(RepairsHost, Protocol):
    """What the turns need of the session: the time, the settings, the books of
    connections, and a way to act (the core implements it)."""

    @property
    def gave_up(self) -> bool: ...
    @property
    def ledger(self) -> AudioLedger: ...
    @property
    def next_generation(self) -> int:
        """Where an outcome with no connection of its own takes its place in the order."""
        ...

    def open_turns(self) -> list[Conn]:
        """The connections whose turn is not over: draining ones and repairs."""
        ...

    def emit(self, method: str, *args: object) -> None: ...
    def probe(self, conn: Conn) -> None: ...
    def retire(self, conn: Conn) -> None: ...
    def fall_back(self, conn: Conn, why: str) -> None: ...
    def abandon(self, conn: Conn, f: Finalize) -> None: ...


class Turns:
    def __init__(self, host: TurnsHost, log: logging.Logger) -> None:
        self._host = host
        self._log = log
        # A failed turn's second chance (repairs.py); the host routes its connection's
        # events there.
        self.repairs = Repairs(host, self, log)
        self._finalizes: dict[str, Finalize] = {}  # in issue order, until answered
        self._sent_on: dict[str, int] = {}  # finalize token -> generation of its audio.done
        # finalize token -> generation it was sent on as `finalize`, until answered
        self._answering: dict[str, int] = {}
        self._finalize_seq = 0
        self.delivery: DeliveryOrder[Transcript | FinalizeOutcome] = DeliveryOrder(
            self._emit_delivery
        )
        # Audio went to the vendor since the last audio.done (on any connection).
        self.has_audio = False

    # ================================================================ finalizes

    def new_finalize(self, finalize_id: str, position_ms: int) -> Finalize:
        self._finalize_seq += 1
        now = self._host.now
        return Finalize(
            token=f"#{self._finalize_seq}",
            finalize_id=finalize_id,
            issued_at=now,
            deadline=now + self._host.settings.finalize_timeout_s,
            position_ms=position_ms,
        )

    def register(self, f: Finalize) -> None:
        """`f` waits for its turn's answer, by its deadline. Its answer cannot overtake a
        turn still open (delivery order), so no open turn may outlast that deadline (the
        finalize timeout may have been shortened since those turns began)."""
        self._finalizes[f.token] = f
        self._host.act(io.SetTimer(("finalize", f.token), f.deadline))
        for conn in self._host.open_turns():
            if conn.drain_deadline > f.deadline:
                self._set_deadline(conn, f.deadline)

    def _set_deadline(self, conn: Conn, deadline: float) -> None:
        conn.drain_deadline = deadline
        generation = conn.generation
        if conn.role is Role.REPAIR:
            self._host.act(io.SetTimer(("repair", generation), deadline))
            return
        self._host.act(io.SetTimer(("drain", generation), deadline))
        hedge_at = liveness.hedge_at(conn, self._host.settings)
        self._host.act(io.SetTimer(("hedge", generation), max(self._host.now, hedge_at)))

    def finalize(self, token: str) -> Finalize | None:
        """The finalize still waiting for its answer, if it is."""
        return self._finalizes.get(token)

    def unsent(self) -> list[Finalize]:
        """The finalizes whose audio.done has not gone out."""
        return [f for f in self._finalizes.values() if f.token not in self._sent_on]

    # ================================================================ finalize, connection kept

    def finalize_sent(self, conn: Conn, marker: FinalizeMarker) -> None:
        """`finalize` went out on `conn`, which stays current and takes the audio after it:
        the utterance final that reaches the cut answers it. Not answered by the check
        point (half the finalize timeout, and time enough after the send), audio.done
        answers it instead (`answer_overdue`)."""
        f = self._finalizes.get(marker.finalize_id)
        if f is None:
            return  # ended meanwhile (its deadline)
        host = self._host
        now = host.now
        timeline = conn.timeline
        conn.awaiting.append(
            Awaiting(
                f,
                round(timeline.user_end_ms * TICKS_PER_MS),
                float(timeline.sent_ms) / 1000,
                set(conn.channel_keys),
            )
        )
        self._answering[f.token] = conn.generation
        self.has_audio = False
        # The finalize's own timeout: one the settings brought later must not hurry it.
        timeout_s = f.deadline - f.issued_at
        check_at = min(
            f.deadline - timeout_s / 4, max(f.issued_at + timeout_s / 2, now + timeout_s / 4)
        )
        host.act(io.SetTimer(("answer", f.token), max(now, check_at)))
        # A finalize is committed to it: prove it alive now, while the deadline still
        # leaves time to send the turn's audio to another connection if it is dead.
        host.probe(conn)

    def utterance_final(self, conn: Conn, end_s: float, channel: int | None) -> None:
        """An utterance final came on `conn` (its result is out): it answers the oldest
        finalize whose cut it reaches. One that ends before the cut is the vendor's own
        endpointing, said before it read the finalize."""
        if not conn.awaiting:
            return
        waiting = conn.awaiting[0]
        if end_s + CUT_TOLERANCE_S < waiting.cut_s:
            return
        waiting.channels.discard(channel if conn.channel_keys != (None,) else None)
        if waiting.channels:
            return
        conn.awaiting.pop(0)
        self.answered(waiting.finalize)
        self.end(waiting.finalize, "done", conn.generation)

    def answered(self, f: Finalize) -> None:
        """`f` is no longer waiting on a `finalize` message (answered, or audio.done or a
        new connection takes it over)."""
        if self._answering.pop(f.token, None) is not None:
            self._host.act(io.CancelTimer(("answer", f.token)))

    def answer_now(self, marker: FinalizeMarker, generation: int) -> None:
        """A finalize with nothing of its turn pending on the connection: answered at once
        (its text, if any, is final already)."""
        self.has_audio = False
        f = self._finalizes.get(marker.finalize_id)
        if f is not None:
            self.end(f, "done", generation)

    def answer_overdue(self, token: str) -> None:
        generation = self._answering.get(token)
        conn = self._host.conn(generation) if generation is not None else None
        if conn is None or not any(w.finalize.token == token for w in conn.awaiting):
            return
        f = self._finalizes.get(token)
        timeout_s = (f.deadline - f.issued_at) if f is not None else 0.0
        self._host.fall_back(conn, f"no answer to finalize within {timeout_s / 2:g} s")

    def stop(self, conns: list[Conn], *, status: str = "stopped") -> None:
        """The session stops (its sockets are aborted): every turn ends now, in order:
        the draining ones, oldest first, then the current one. Their interim text is
        made final; speech sent after it, which no result will cover now, is reported
        lost (never silently: it was heard by no one who answered). Then every finalize
        still open ends `status` ("stopped"; "failed" when the core crashed), and
        nothing more is delivered."""
        reason = LOST_STOPPED if status == "stopped" else LOST_GAVE_UP
        for conn in conns:
            if conn.role is Role.DRAINING or conn.role is Role.CURRENT:
                frames = conn.window.take()
                # Handed to the socket, never answered.
                frames.extend(audio_in_flight(conn.in_flight))
                for repair in conns:
                    if repair.repair_of is conn and not repair.repair_ended:
                        frames = repair.repair_frames + frames  # the repair's, unanswered
                self.give_up(conn, frames, reason=reason)
                if conn.role is Role.DRAINING:
                    self.finish(conn, status)
        for f in list(self._finalizes.values()):
            self.end(f, status, self._host.next_generation)
        self.delivery.clear()

    # ================================================================ draining

    def begin_drain(self, conn: Conn, f: Finalize | None, also: list[Finalize] = ()) -> None:  # type: ignore[assignment]
        """audio.done went out on `conn` for `f` (None: an idle close; `also`: older
        finalizes the same drain answers): it takes no more audio and gets until the
        deadline to deliver transcript.done."""
        host = self._host
        now = host.now
        conn.role = Role.DRAINING
        conn.drain_started_at = now
        conn.finalize = f
        conn.finalizes_also = list(also)
        for g in also:
            self._sent_on[g.token] = conn.generation
            host.act(io.CancelTimer(("finalize", g.token)))
        # The window stays: if this connection fails before transcript.done, a repair
        # connection is sent what it holds (see drain_failed).
        pending = f is not None and f.token in self._finalizes
        if f is not None:
            self._sent_on[f.token] = conn.generation
            host.act(io.CancelTimer(("finalize", f.token)))
        # A finalize still pending keeps its own deadline (it must end on time); an
        # expired one, or an idle close, gives the vendor a full finalize timeout, but
        # never past the deadline of a finalize still waiting behind this turn: its
        # answer may not go out before this turn's end (delivery order), and it must
        # go out on time.
        timeout_s = host.settings.finalize_timeout_s
        conn.drain_deadline = f.deadline if f is not None and pending else now + timeout_s
        # The half-way check counts from the timeout the turn was given, not one the
        # settings brought later (a longer one would put it in the past).
        conn.drain_timeout_s = f.deadline - f.issued_at if f is not None and pending else timeout_s
        waiting = [g.deadline for g in self._finalizes.values() if g is not f]
        if waiting:
            conn.drain_deadline = min(conn.drain_deadline, min(waiting))
        # A finalize is committed to it: prove it alive now (one ping a turn), while the
        # deadline still leaves time to repair the turn if it is dead.
        host.probe(conn)
        self.delivery.block(conn.generation)
        host.act(io.CancelTimer(("watch", conn.generation)))
        host.act(io.SetTimer(("hedge", conn.generation), liveness.hedge_at(conn, host.settings)))
        host.act(io.SetTimer(("drain", conn.generation), conn.drain_deadline))

    def hedge(self, generation: int) -> None:
        """Half-way to the deadline: a connection that is not answering has its turn
        repaired now (liveness.not_answering)."""
        conn = self._host.conn(generation)
        if conn is None or conn.role is not Role.DRAINING:
            return
        verdict = liveness.not_answering(conn, self._host.settings, self._host.now)
        if verdict.recheck_at is not None:
            self._host.act(io.SetTimer(("hedge", generation), verdict.recheck_at))
        failure = verdict.failure
        if failure is None:
            return
        self._log.warning("gen %d: %s", conn.generation, failure.message)
        conn.tracker.fail(failure)
        self.drain_failed(conn, failure)

    def drain_expired(self, generation: int) -> None:
        conn = self._host.conn(generation)
        if conn is None or conn.role is not Role.DRAINING or conn.turn_finished:
            return
        if conn.repairing:
            return  # the repair ends the turn itself, within the same deadline
        timeout_s = self._host.settings.finalize_timeout_s
        failure = Failure(
            kind="finalize_timeout",
            message=f"no transcript.done within the finalize timeout ({timeout_s:g} s)",
        )
        conn.tracker.fail(failure)
        self.give_up(conn)
        self.finish(conn, "timeout", failure)

    def finish(
        self,
        conn: Conn,
        status: str,
        failure: Failure | None = None,
        *,
        repaired: bool = False,
    ) -> None:
        """A draining connection's turn is over: done, timeout, failed or stopped."""
        if conn.turn_finished:
            return
        conn.turn_finished = True
        if status != "done":
            self.salvage(conn)
        if failure is not None:
            self._host.reports.error(failure, fatal=False, retry_in_s=None)
        for f in conn.finalizes_also:
            self.end(f, status, conn.generation, repaired=repaired)
        if conn.finalize is not None:
            self.end(conn.finalize, status, conn.generation, repaired=repaired)
        self.delivery.unblock(conn.generation)
        if self._host.stopped:
            return
        # The turn is over; the socket goes too, whether or not the server closes it.
        generation = conn.generation
        self._host.act(io.CancelTimer(("hedge", generation)))
        self._host.act(io.CancelTimer(("drain", generation)))
        if conn.ended:
            self._host.retire(conn)
            return
        conn.role = Role.FINISHED
        if conn.tracker.failure is not None:
            self._host.close(conn, "drained", FAILURE_CLOSE_TIMEOUT_S)
            self._host.retire(conn)
        else:
            self._host.act(io.SetTimer(("grace", generation), self._host.now + DONE_CLOSE_GRACE_S))

    def grace_over(self, generation: int) -> None:
        conn = self._host.conn(generation)
        if conn is None or conn.role is not Role.FINISHED:
            return
        self._host.close(conn, "drained", FAILURE_CLOSE_TIMEOUT_S)
        self._host.retire(conn)

    # ================================================================ repair

    def drain_failed(self, conn: Conn, failure: Failure | None) -> None:
        """A draining connection failed before its transcript.done. Its un-finalized audio
        goes to a repair connection if there is time (and the session has not given up:
        no connection opens after a FATAL error); else its turn ends "failed"."""
        if conn.turn_finished or conn.repairing:
            return
        if self._host.gave_up:
            # After a FATAL error no connection opens, a repair's neither: what the
            # turn's window held past its interim text is lost, as the session gave up.
            self.give_up(conn, reason=LOST_GAVE_UP)
            self.finish(conn, "failed", failure)
            return
        if (
            self._host.settings.replay_max_ms <= 0
            or self._host.stopped
            or not conn.window
            or self._host.now >= conn.drain_deadline
        ):
            self.give_up(conn)
            self.finish(conn, "failed", failure)
            return
        conn.repairing = True
        if failure is not None:
            # Reported now, like any draining failure; the finalize ends with the repair.
            self._host.reports.error(
                failure,
                fatal=False,
                retry_in_s=None,
                message=f"{failure.message}; re-transcribing the turn's last "
                f"{float(conn.window.kept_ms) / 1000:.1f} s of audio on a new connection",
            )
        replay_from = conn.window.start_ms
        floors = floors_after(conn, replay_from)
        frames = conn.window.take()
        self.repairs.start(conn, frames, replay_from, floors)

    # ================================================================ turns and results

    def salvage(
        self,
        conn: Conn,
        is_before: Callable[[float], bool] | None = None,
        *,
        reason: str = LOST_REPLAY_WINDOW,
    ) -> float | None:
        """The connection ends without a done: its interim text becomes final, not lost
        (with `is_before`: only the words before the audio that will be replayed).
        Returns the end (user ms) of the text made final, if any.

        The speech that fell out of its replay window before a final covered it can be
        neither replayed nor transcribed now: past the text made final, it is reported
        lost (as `reason`)."""
        end: float | None = None
        for result in conn.assembler.salvage(is_before):
            self.deliver_result(conn, result)
            start_ms, duration_ms = conn.timeline.span(result.start_s, result.end_s)
            end = max(end or 0.0, float(start_ms + duration_ms))
        trimmed = conn.window.take_trimmed_speech()
        if trimmed:
            self._lose_past(trimmed, _floor(end), reason)
        return end

    def _lose_past(self, runs: list[tuple[int, int, int]], floor: int, reason: str) -> None:
        """Report lost what of `runs` ((start, end) user ticks and the frames they came
        in, in stream order) lies past `floor` (the end of the text made final): a run
        the text covers in part is lost from the text's end on, with its frames in
        proportion (a frame cut in two still counts once)."""
        spans: list[tuple[int, int]] = []
        frames = 0
        for start, end, count in runs:
            if end <= floor:
                continue
            cut = max(start, floor)
            frames += -(-count * (end - cut) // (end - start))
            if spans and spans[-1][1] == cut:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((cut, end))
        ticks = sum(end - start for start, end in spans)
        if ticks <= 0:
            return
        report = DropReport(ticks / TICKS_PER_MS, max(1, frames), ticks=ticks, spans=tuple(spans))
        self._host.reports.lose(report, reason, self._host.now)

    def give_up(
        self,
        conn: Conn,
        frames: list[AudioFrame] | None = None,
        is_before: Callable[[float], bool] | None = None,
        *,
        reason: str = LOST_UNANSWERED,
    ) -> None:
        """A draining connection's turn ends without its transcript.done and without a
        repair: its interim text is made final, and the audio of its window past that
        text, which nothing will transcribe now, goes to the ledger as lost. With
        `is_before`, only the interim words before a cut (the rest is heard again).
        At stop (`reason` stopped) audio without speech past the text is not reported:
        nothing was said there."""
        if frames is None:
            frames = conn.window.take()
        floor = _floor(self.salvage(conn, is_before, reason=reason))
        lost = [f for f in frames if f.start + f.length > floor]
        if reason == LOST_STOPPED and not any(f.speech for f in lost):
            return
        self._lose_past([(f.start, f.start + f.length, 1) for f in lost], floor, reason)

    def finalize_expired(self, token: str) -> None:
        f = self._finalizes.get(token)
        if f is None or token in self._sent_on:
            return  # answered, or its connection's drain owns the deadline now
        # Answers go out in the order the finalizes came: an older finalize still waiting
        # (its timeout was longer: the settings changed between them) ends first, now.
        for older in list(self._finalizes.values()):
            if older is f:
                break
            if older.token not in self._sent_on:
                self.finalize_expired(older.token)
        if token in self._answering:
            # Sent as `finalize`, and neither it nor audio.done was answered in time: the
            # turn ends like a drain that timed out, and its connection with it (no
            # result may come after the turn's end).
            generation = self._answering[token]
            conn = self._host.conn(generation)
            if conn is not None:
                self._host.abandon(conn, f)
            self.answered(f)
            self._log.warning(
                "finalize %r: not answered within the finalize timeout", f.finalize_id
            )
            self.end(f, "timeout", self._host.next_generation)
            return
        # Its audio.done never went out: no connection could take it in time. The
        # marker stays in the buffer, so the turn is still cut there when one comes.
        self._log.warning("finalize %r: no connection within the finalize timeout", f.finalize_id)
        self.end(f, "no_connection", self._host.next_generation)

    def end_empty(self, marker: FinalizeMarker, generation: int) -> None:
        """A finalize with no audio of its turn on the connection that would send it."""
        # Either the turn had no audio at all (nothing to finalize: done), or its audio
        # went to a connection that died before audio.done could (failed; the interim
        # text was already made final).
        status = "failed" if self.has_audio else "done"
        self.has_audio = False
        f = self._finalizes.get(marker.finalize_id)
        if f is not None:
            self.end(f, status, generation)

    def end(self, f: Finalize, status: str, generation: int, *, repaired: bool = False) -> None:
        if self._finalizes.pop(f.token, None) is None:
            return  # already answered
        self._sent_on.pop(f.token, None)
        self.answered(f)
        self._host.act(io.CancelTimer(("finalize", f.token)))
        if self._host.ledger.in_episode:
            self._host.reports.end_drop_episode(
                self._host.now, gave_up=self._host.gave_up
            )  # the graph hears of a loss before the turn's answer
        latency_ms = (self._host.now - f.issued_at) * 1000
        self.delivery.deliver(
            generation,
            FinalizeOutcome(f.finalize_id, status, latency_ms, repaired, f.position_ms),
        )

    def deliver_result(self, conn: Conn, result: VendorResult) -> None:
        transcript = to_transcript(conn, result)
        if transcript is not None:
            self.delivery.deliver(conn.turn_generation, transcript)

    def _emit_delivery(self, item: Transcript | FinalizeOutcome) -> None:
        if isinstance(item, Transcript):
            self._host.emit("on_transcript", item)
        else:
            self._host.emit("on_finalize_end", item)


def _floor(text_end_ms: float | None) -> int:
    """The user tick where the text made final ends (0: no text)."""
    return 0 if text_end_ms is None else round(text_end_ms * TICKS_PER_MS)
