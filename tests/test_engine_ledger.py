"""No silent loss (issue #12): every frame pushed is transcribed once or reported lost.

Audio the engine cannot keep (the outage buffer overflows while no connection
takes audio, or the session stops or gives up with audio still queued) goes
through one accounting point, the session's `AudioLedger`: it is counted in the
stats and reported as one NON_FATAL error per drop episode, with one WARN log
line, never one per frame.
"""

from __future__ import annotations

import logging
from typing import Any

from test_engine_support import (
    CONNECTED,
    Recorder,
    marker,
    marker_server,
    speech,
)
from test_engine_support import (
    fast_settings as support_fast_settings,
)

from stt_server import Fault
from xai_asr_python.reconnect_manager import BackoffPolicy
from xai_asr_python.session import StreamingSession
from xai_asr_python.session_types import SessionSettings
from xai_asr_python.timeline import TICKS_PER_MS

FRAME = 320  # 10 ms of 16 kHz PCM
SESSION_LOGGER = "xai_asr_python.session"


def fast_settings(url: str, **overrides: Any) -> SessionSettings:
    """Faults of the audio.done lifecycle (done late, never, without a close, an error or a
    close instead): turns end with audio.done here (finalize_mode audio_done)."""
    return support_fast_settings(url, **{"finalize_mode": "audio_done", **overrides})


def push_frames(session: StreamingSession, data: bytes) -> None:
    """As a live source does: one 10 ms frame per push."""
    for offset in range(0, len(data), FRAME):
        session.push_audio(data[offset : offset + FRAME])


def drop_errors(recorder: Recorder) -> list:
    return [e for e in recorder.errors if e.kind == "audio_dropped"]


def drop_log_lines(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == SESSION_LOGGER and r.levelno >= logging.WARNING and "dropped" in r.getMessage()
    ]


def refusing_settings(url: str, buffer_max_ms: int):
    return fast_settings(
        url,
        buffer_max_ms=buffer_max_ms,
        backoff=BackoffPolicy(base_s=0.01, cap_s=0.02, max_attempts=1000),
    )


async def test_an_outage_longer_than_the_buffer_is_one_reported_drop_episode(caplog) -> None:
    caplog.set_level(logging.INFO, logger=SESSION_LOGGER)
    async with marker_server() as server:
        server.set_default_fault(Fault(refuse_status=503))  # every upgrade refused
        recorder = Recorder()
        session = StreamingSession(refusing_settings(server.url, 200), recorder)
        session.start()
        await server.wait_for_connection(1)
        # 500 ms of speech, frame by frame, while nothing connects: the buffer keeps the
        # newest 200 ms, so frames 0-29 (300 ms) are dropped, 30 of them one at a time.
        push_frames(session, speech(50, 0))
        assert drop_errors(recorder) == []  # the episode is still going on
        server.set_default_fault(None)
        await recorder.wait_state(CONNECTED, 5)
        session.finalize("f1")
        await recorder.wait_finalized(1, 5)
        drops = drop_errors(recorder)
        assert len(drops) == 1, drops
        error = drops[0]
        assert not error.fatal and error.retry_in_s is None
        assert "dropped 300 ms of audio" in error.message, error.message
        assert "buffer_max_ms" in error.message, error.message
        # The graph hears of the loss before the turn's answer.
        kinds = [
            k
            for k, v in recorder.events
            if k in ("error", "finalize_end") and (k == "finalize_end" or v.kind == "audio_dropped")
        ]
        assert kinds == ["error", "finalize_end"]
        # One WARN line for the episode, not one per frame.
        assert len(drop_log_lines(caplog)) == 1, drop_log_lines(caplog)
        stats = session.stats
        assert stats.dropped_ms == 300 and stats.drop_episodes == 1
        # The ledger: every frame transcribed exactly once, or reported lost.
        assert recorder.final_indices() == list(range(30, 50))
        await session.stop()


async def test_two_outages_are_two_episodes() -> None:
    async with marker_server() as server:
        server.set_default_fault(Fault(refuse_status=503))
        recorder = Recorder()
        session = StreamingSession(refusing_settings(server.url, 100), recorder)
        session.start()
        await server.wait_for_connection(1)
        push_frames(session, speech(30, 0))  # 200 ms dropped
        server.set_default_fault(None)
        await recorder.wait_state(CONNECTED, 5)
        await recorder.wait_for(lambda: len(drop_errors(recorder)) == 1, 5, "episode 1")
        # A second outage: the server drops every connection from now on.
        server.set_default_fault(Fault(refuse_status=503))
        session.finalize("f1")
        await recorder.wait_finalized(1, 5)
        push_frames(session, marker([(True, 40)], 30))  # 300 ms more dropped
        server.set_default_fault(None)
        session.finalize("f2")
        await recorder.wait_finalized(2, 5)
        drops = drop_errors(recorder)
        assert [e.message.split(" of audio")[0] for e in drops] == [
            "dropped 200 ms",
            "dropped 300 ms",
        ], drops
        assert session.stats.drop_episodes == 2 and session.stats.dropped_ms == 500
        await session.stop()


async def test_audio_still_queued_when_the_session_stops_is_reported() -> None:
    async with marker_server() as server:
        server.set_default_fault(Fault(refuse_status=503))
        recorder = Recorder()
        session = StreamingSession(refusing_settings(server.url, 60_000), recorder)
        session.start()
        await server.wait_for_connection(1)
        push_frames(session, speech(40, 0))
        await session.stop()
        drops = drop_errors(recorder)
        assert len(drops) == 1 and "dropped 400 ms of audio" in drops[0].message, drops
        assert "stopped" in drops[0].message
        assert session.stats.dropped_ms == 400


async def test_a_clean_session_reports_no_loss() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        await recorder.wait_state(CONNECTED, 5)
        push_frames(session, marker([(True, 30), (False, 30)], 0))
        session.finalize("f1")
        await recorder.wait_finalized(1, 5)
        await session.stop()
        assert drop_errors(recorder) == [] and session.stats.dropped_ms == 0
        assert recorder.final_indices() == list(range(30))


# ------------------------------------------------------------------ the ledger, sans I/O


def test_ledger_episode_spans_every_drop_until_audio_flows() -> None:
    from xai_asr_python.audio_buffer import AudioLedger

    ledger = AudioLedger()
    assert ledger.end_episode(now=0.0) is None
    ledger.lose(100 * TICKS_PER_MS, 10, "buffer", now=1.0)
    ledger.lose(50 * TICKS_PER_MS, 5, "buffer", now=2.0)
    assert ledger.in_episode
    episode = ledger.end_episode(now=3.5)
    assert episode is not None
    assert (episode.dropped_ms, episode.frames, episode.reasons) == (150, 15, ("buffer",))
    assert episode.number == 1 and episode.total_dropped_ms == 150
    assert episode.lasted_s == 2.5
    assert not ledger.in_episode and ledger.end_episode(now=4.0) is None
    ledger.lose(20 * TICKS_PER_MS, 2, "stopped", now=5.0)
    episode = ledger.end_episode(now=5.0)
    assert episode is not None and episode.number == 2 and episode.total_dropped_ms == 170
    assert ledger.lost_ms == 170 and ledger.episodes == 2
    assert ledger.lost_ms_by_reason == {"buffer": 150, "stopped": 20}


async def test_audio_lost_after_a_fatal_error_is_counted_not_reported_again() -> None:
    async with marker_server() as server:
        server.set_default_fault(Fault(refuse_status=401))
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        push_frames(session, speech(10, 0))
        session.start()
        await recorder.wait_for(lambda: bool(recorder.errors), 5, "the fatal error")
        push_frames(session, speech(5, 10))
        await session.stop()
        # One FATAL error says it all; the loss is in the stats (the metrics).
        assert [e.fatal for e in recorder.errors] == [True]
        assert session.stats.dropped_ms == 150
