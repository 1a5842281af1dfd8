"""A failed turn's second chance: its audio re-transcribed on a REPAIR connection.

A DRAINING connection that fails before its transcript.done (or stops answering
half-way to its deadline) hands its turn here when time is left (`Turns.drain_failed`
decides): a short-lived connection is opened, sent the failed connection's replay
window and audio.done, and its results become the turn's if its transcript.done
comes by the turn's deadline (all or none). Either way the failed turn ends with it:
"done" (repaired), "failed" or "timeout".

    start --Opened--> send_next ... --sent(audio.done)--> waiting for transcript.done
    transcript.done | failure | close | deadline | open failed --> end

`Repairs` owns the repair's progress (what it was sent, what it answered); the
repair connection's books (generation, Open, Close) are the host's, and the failed
turn's end (`finish`, `salvage`, `give_up`) is the turns'. Both are reached through
the Protocols below; no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Protocol

from . import engine_io as io
from .audio_buffer import AudioFrame
from .connection_state import (
    FAILURE_CLOSE_TIMEOUT_S,
    AudioBatch,
    Conn,
    EndOfAudio,
    Role,
    audio_in_flight,
    joinable,
)
from .protocol import Failure, ServerEvent, TranscriptDone, TranscriptPartial
from .session_reports import SessionReports
from .timeline import TICKS_PER_MS
from .utterances import VendorResult


class RepairsHost(io.SessionHost, Protocol):
    """What a repair needs of the session beyond every room's host (the core
    implements it)."""

    @property
    def reports(self) -> SessionReports: ...
    def new_conn(self, role: Role, connect_timeout_s: float, base_user: int = 0) -> Conn: ...
    def conn(self, generation: int) -> Conn | None: ...
    def forget(self, generation: int) -> None: ...
    def close(self, conn: Conn, reason: str, timeout_s: float | None = None) -> None: ...
    def count_replayed(self, ticks: int) -> None: ...


class RepairedTurns(Protocol):
    """How a repair ends the failed turn it took over (`Turns` implements it)."""

    def finish(
        self, conn: Conn, status: str, failure: Failure | None = None, *, repaired: bool = False
    ) -> None: ...
    def salvage(
        self, conn: Conn, is_before: Callable[[float], bool] | None = None
    ) -> float | None: ...
    def give_up(self, conn: Conn, frames: list[AudioFrame] | None = None) -> None: ...
    def deliver_result(self, conn: Conn, result: VendorResult) -> None: ...


class Repairs:
    def __init__(self, host: RepairsHost, turns: RepairedTurns, log: logging.Logger) -> None:
        self._host = host
        self._turns = turns
        self._log = log

    def start(
        self,
        failed: Conn,
        frames: list[AudioFrame],
        replay_from: Fraction,
        floors: dict[int | None, Fraction],
    ) -> None:
        """Open a short-lived connection, send it `frames` and audio.done, and wait for its
        transcript.done, all by the failed turn's deadline. Its results become the turn's."""
        settings = self._host.settings
        deadline = failed.drain_deadline
        timeout_s = max(0.001, min(settings.connect_timeout_s, deadline - self._host.now))
        repair = self._host.new_conn(Role.REPAIR, timeout_s, frames[0].start)
        self._log.warning(
            "gen %d failed while draining: repairing its turn on gen %d (%.0f ms of audio)",
            failed.generation,
            repair.generation,
            sum(f.length for f in frames) / TICKS_PER_MS,
        )
        repair.channel_keys = failed.channel_keys
        repair.floors = floors
        repair.repair_of = failed
        repair.repair_frames = frames
        repair.replay_from = replay_from
        repair.drain_deadline = deadline
        self._host.act(io.SetTimer(("repair", repair.generation), deadline))

    def send_next(self, repair: Conn) -> None:
        if repair.repair_ended or repair.in_flight is not None:
            return
        frames = repair.repair_frames
        if repair.repair_next < len(frames):
            first = repair.repair_next
            sent: AudioFrame | AudioBatch = frames[first]
            more = joinable(frames[first], frames, first + 1)
            if more:  # a repair replays a turn at once: 100 ms a message
                sent = AudioBatch(frames[first : first + 1 + more])
            repair.repair_next += 1 + more
            repair.in_flight = sent
            self._host.act(io.Send(repair.generation, sent.data))
        elif repair.repair_next == len(repair.repair_frames):
            repair.repair_next += 1
            repair.in_flight = EndOfAudio.REPAIR
            self._host.act(io.SendEndOfAudio(repair.generation))

    def sent(self, repair: Conn, item: Any, ok: bool) -> None:
        if not ok or repair.repair_ended:
            return  # its close says why
        for frame in audio_in_flight(item):
            repair.timeline.record_sent(frame.start, frame.length)
            self._host.count_replayed(frame.length)
        if item is EndOfAudio.REPAIR:
            repair.tracker.audio_done_sent()
        self.send_next(repair)

    def event(self, repair: Conn, event: ServerEvent) -> None:
        """The repair connection's results, kept until its transcript.done (all or none)."""
        if repair.repair_ended:
            return
        result: VendorResult | None = None
        if isinstance(event, TranscriptPartial):
            result = repair.assembler.on_partial(event)
        elif isinstance(event, TranscriptDone):
            result = repair.assembler.on_done(event)
        if result is not None:
            repair.repair_results.append(result)
        if repair.tracker.done or repair.tracker.failure is not None:
            self.end(repair)

    def expired(self, generation: int) -> None:
        repair = self._host.conn(generation)
        if repair is not None and repair.role is Role.REPAIR:
            self.end(repair)

    def end(self, repair: Conn, open_failure: Failure | None = None) -> None:
        """The repair is over, one way or another: the failed turn ends with it."""
        if repair.repair_ended or self._host.stopped:
            return
        repair.repair_ended = True
        failed = repair.repair_of
        assert failed is not None
        generation = repair.generation
        deadline = repair.drain_deadline
        self._host.act(io.CancelTimer(("repair", generation)))
        settings = self._host.settings
        tracker = repair.tracker
        status = "failed"
        failure = open_failure
        if failure is None:
            if tracker.done and tracker.failure is None:
                status = "done"
            elif tracker.failure is not None:
                failure = tracker.failure
            elif repair.ended:
                verdict = repair.verdict
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
        if status == "done":
            # The failed connection's interim text over the repaired audio is dropped;
            # its words before that audio (fallen out of the window) are made final.
            timeline = failed.timeline
            replay_from = repair.replay_from
            self._turns.salvage(failed, lambda s: timeline.vendor_to_conn_ms(s) <= replay_from)
            for result in repair.repair_results:
                if result.final:
                    self._turns.deliver_result(repair, result)
            self._turns.finish(failed, "done", repaired=True)
            self._log.info("gen %d: turn repaired on gen %d", failed.generation, generation)
        else:
            assert failure is not None
            if self._host.now >= deadline:
                status = "timeout"
            self._host.reports.error(
                failure,
                fatal=False,
                retry_in_s=None,
                message=f"repair connection (gen {generation}) failed: {failure.message}",
            )
            self._turns.give_up(failed, repair.repair_frames)
            self._turns.finish(failed, status)
        if not failed.turn_finished:
            self._turns.finish(failed, "failed")  # never an open turn
        self._host.forget(generation)
        if open_failure is not None:
            return  # nothing was opened
        if status == "done" and not repair.ended:
            # The server closes after transcript.done; we close what it has not.
            self._host.close(repair, "drained", FAILURE_CLOSE_TIMEOUT_S)
        elif not repair.ended:
            self._host.act(io.Abort(generation))
