"""What a session tells its listener about itself: its status, its errors, its losses.

The session core decides *that* something is reported; this decides *how*: the
status rule (a legal transition or nothing), an error's text (redacted, with
the retry it announces), and lost audio, counted in the ledger on the way and
told once per episode. Everything goes out through `emit` (the core's
`Notify` actions); nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .audio_buffer import AudioLedger, DropEpisode, DropReport
from .protocol import Failure
from .redaction import redact
from .session_types import ConnState, SessionError, is_legal_transition

# Why audio was lost (AudioLedger reasons).
LOST_BUFFER_FULL = "buffer_full"
LOST_STOPPED = "stopped"
LOST_GAVE_UP = "gave_up"
LOST_UNANSWERED = "unanswered"
LOST_REPLAY_WINDOW = "replay_window"


class SessionReports:
    def __init__(
        self,
        emit: Callable[..., None],
        ledger: AudioLedger,
        log: logging.Logger,
        *,
        secret: Callable[[], str],
        attempt: Callable[[], int],
        buffer_max_ms: Callable[[], int],
    ) -> None:
        self._emit = emit
        self._ledger = ledger
        self._log = log
        self._secret = secret
        self._attempt = attempt
        self._buffer_max_ms = buffer_max_ms
        self.state = ConnState.DISCONNECTED

    def redact(self, text: str) -> str:
        return redact(text, self._secret())

    def status(self, current: ConnState, code: int, message: str) -> None:
        """The current connection's status, when it changes (TEN's transition rule)."""
        last = self.state
        if current is last:
            return
        if not is_legal_transition(last, current):
            self._log.error("illegal status transition %s -> %s suppressed", last, current)
            return
        self.state = current
        self._emit("on_status", current, last, code, self.redact(message))

    def error(
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
            message=self.redact(text),
            vendor_code=failure.vendor_code,
            vendor_message=(
                None if failure.vendor_message is None else self.redact(failure.vendor_message)
            ),
            attempt=self._attempt() if attempt is None else attempt,
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

    def lose(self, report: DropReport, reason: str, now: float) -> None:
        """The one way audio leaves the engine untranscribed: into the ledger, reported
        once per episode (see end_drop_episode), never silently and never per frame."""
        self._ledger.lose(report.ticks, report.frames, reason, now=now, spans=report.spans)
        self._emit("on_audio_dropped", report.dropped_ms, self._ledger.lost_ms)

    def end_drop_episode(self, now: float, *, gave_up: bool) -> None:
        """The episode under way, if any, is over: one NON_FATAL error for all of it (only
        a log line after a FATAL error, which already said nothing more is transcribed)."""
        episode: DropEpisode | None = self._ledger.end_episode(now=now)
        if episode is None:
            return
        why = "; ".join(self._why_lost(reason) for reason in episode.reasons)
        # "over 0.0 s" reads as a mistake: a loss within 50 ms happened at once.
        lasted = f"over {episode.lasted_s:.1f} s" if episode.lasted_s >= 0.05 else "at once"
        message = (
            f"dropped {episode.dropped_ms:.0f} ms of audio ({episode.frames} frames, "
            f"{lasted}): {why} "
            f"[{episode.total_dropped_ms:.0f} ms dropped in this session]"
        )
        if gave_up:
            self._log.warning("%s", message)
            return
        self.error(
            Failure(kind="audio_dropped", message=message),
            fatal=False,
            retry_in_s=None,
            dropped_ms=episode.dropped_ms,
        )

    def _why_lost(self, reason: str) -> str:
        if reason == LOST_BUFFER_FULL:
            return (
                "no connection took audio and the outage buffer (buffer_max_ms = "
                f"{self._buffer_max_ms()} ms) overflowed, the oldest audio first"
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
        if reason == LOST_REPLAY_WINDOW:
            return (
                "a connection ended before a final covered audio older than its replay "
                "window (replay_max_ms), which no other connection can hear again (interim "
                "text, if any, was made final)"
            )
        return reason
