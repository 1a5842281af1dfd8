"""Is a connection alive? The rules, as plain functions of a connection and the time.

A connection that dies without FIN or RST (a partition, a NAT dropping an idle
flow, a hung vendor) looks open. The session core asks these rules and acts on
the answers (a probe, a failure, an idle close, the next check); nothing here
keeps state or does I/O. The reasoning is in session.py's "Liveness".
"""

from __future__ import annotations

from dataclasses import dataclass

from .connection_state import Conn
from .protocol import Failure
from .session_types import SessionSettings

# The watchdog never checks more often than this.
WATCHDOG_MIN_SLEEP_S = 0.01
# A backlog shorter than this is rounding (backlog_s subtracts float seconds), not
# audio the vendor still has to hear: waiting for it would re-check at the same instant.
BACKLOG_RESOLUTION_S = 0.001


@dataclass(frozen=True)
class WatchVerdict:
    failure: Failure | None  # the connection is dead (a stall): fail it now
    probe: bool  # no sign of life for keepalive_s: ping it
    go_idle: bool  # no audio for idle_close_s and nothing to send: close it
    next_check_at: float  # when to look again


def backlog_s(conn: Conn, now: float) -> float:
    """Audio sent on `conn` that the vendor has not heard yet, in seconds, if it hears in
    real time from its latest event (as fast as any live vendor hears)."""
    unheard_s = float(conn.timeline.sent_ms) / 1000 - conn.heard_ms / 1000
    return max(0.0, unheard_s - (now - conn.heard_at))


def watch(conn: Conn, settings: SessionSettings, now: float, *, quiet: bool) -> WatchVerdict:
    """The current connection's stall, keepalive and idle checks. `quiet`: nothing is
    waiting to be sent."""
    stall_s = settings.stall_timeout_s
    failure: Failure | None = None
    # Speech went out and the vendor said nothing for the whole window. A stream that
    # stopped right after speech looks the same (a live vendor has no silence to
    # endpoint on), and so does a vendor whose session ended while its socket still
    # answers pings: the rule cannot tell them apart, and going deaf is the worse
    # mistake. The stall is reported, the speech sent again: nothing is lost either way.
    if conn.speech_since is not None and now - conn.speech_since >= stall_s:
        failure = Failure(
            kind="stall",
            message=f"no event for {stall_s:g} s while speech audio was flowing: "
            "the session is dead",
        )
    elif conn.sending_since is not None and now - conn.sending_since >= stall_s:
        failure = Failure(
            kind="stall",
            message=f"a send has been blocked for {stall_s:g} s: the server stopped reading",
        )
    keepalive_at = conn.alive_at + settings.keepalive_s
    idle_at = conn.last_audio_at + settings.idle_close_s
    # A blocked send starts without a recheck: checking at least every half stall
    # timeout still catches it within 1.5 stall timeouts.
    deadlines = [
        idle_at if now < idle_at else now + settings.idle_close_s,
        now + stall_s / 2,
        keepalive_at if now < keepalive_at else now + settings.keepalive_s,
    ]
    for since in (conn.speech_since, conn.sending_since):
        if since is not None:
            deadlines.append(since + stall_s)
    return WatchVerdict(
        failure=failure,
        probe=failure is None and now >= keepalive_at,
        go_idle=(
            failure is None
            and now >= idle_at
            and quiet
            and conn.sending_since is None
            and not conn.idle
        ),
        next_check_at=now + max(WATCHDOG_MIN_SLEEP_S, min(deadlines) - now),
    )


def probe_due_on_speech(conn: Conn, settings: SessionSettings, now: float) -> bool:
    """Speech is committed to a connection that has been quiet: prove it alive (its audio
    stays in the replay window meanwhile)."""
    return now - conn.alive_at >= settings.probe_quiet_s


def probe_timeout_s(conn: Conn, settings: SessionSettings, now: float) -> float:
    """A ping waits behind the audio the vendor has not heard yet: allow for it."""
    return settings.liveness_timeout_s + backlog_s(conn, now)


def dead(conn: Conn) -> Failure:
    """The verdict on a probe that got no pong in time."""
    return Failure(
        kind="dead_connection",
        message=f"no answer to a ping within {conn.probe_timeout_s:.1f} s (no sign of "
        f"life for {conn.probe_quiet_s:.1f} s before it): the connection is dead",
    )


def hedge_at(conn: Conn, settings: SessionSettings) -> float:
    """Half-way through a draining connection's finalize timeout."""
    timeout_s = conn.drain_timeout_s or settings.finalize_timeout_s
    # Never before half of what was left when audio.done went out: a deadline cut short
    # by a later finalize (or a fallback late in the timeout) must not put the check in
    # the past and fail a drain that is answering.
    midway = conn.drain_started_at + (conn.drain_deadline - conn.drain_started_at) / 2
    return max(conn.drain_deadline - timeout_s / 2, midway, conn.hedge_floor)


@dataclass(frozen=True)
class HedgeVerdict:
    failure: Failure | None  # not answering: repair its turn now
    recheck_at: float | None  # still hearing a backlog: look again when it is heard


def not_answering(conn: Conn, settings: SessionSettings, now: float) -> HedgeVerdict:
    """Half the finalize timeout has passed without transcript.done. If the vendor has
    heard everything (by the backlog estimate), the connection is not answering, alive
    or not: its turn is better repaired now, while the rest of the timeout leaves time
    for it, than ended "timeout" with only its interim text. If it is still hearing a
    backlog (a buffer flushed after an outage), the done may yet come: look again when
    the backlog is heard, if that is before the deadline."""
    if conn.turn_finished or conn.repairing or settings.replay_max_ms <= 0 or not conn.window:
        return HedgeVerdict(None, None)  # over, under repair, or nothing to repair
    backlog = backlog_s(conn, now)
    if backlog >= BACKLOG_RESOLUTION_S:
        at = now + backlog
        return HedgeVerdict(None, at if at < conn.drain_deadline else None)
    waited_s = now - conn.drain_started_at
    failure = Failure(
        kind="no_done", message=f"no transcript.done {waited_s:.1f} s after audio.done"
    )
    return HedgeVerdict(failure, None)
