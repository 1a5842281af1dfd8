"""The standby connection (settings.standby, with prewarm): the next turn's connection is
opened at this turn's first speech, so a finalize only switches sockets.

It is an optimisation, never a new way to fail: a standby that is refused, closed by
the server, or still opening when the finalize comes is replaced or waited for without
any error, and it never outlives the session.
"""

from __future__ import annotations

import asyncio
from typing import Any

from test_engine_support import (
    CONNECTED,
    CONNECTING,
    DISCONNECTED,
    Recorder,
    assert_clean_stop,
    marker,
    marker_server,
    push_all,
    speech,
    status_pairs,
    utterance,
)
from test_engine_support import (
    fast_settings as support_fast_settings,
)

from stt_server import Close, Fault, STTServer
from xai_asr_python.session import StreamingSession
from xai_asr_python.session_types import SessionSettings


def fast_settings(url: str, **overrides: Any) -> SessionSettings:
    """These tests are about turns that end with audio.done (the server closes, the next
    turn has a connection of its own): finalize_mode audio_done, the planned-close design."""
    return support_fast_settings(url, **{"finalize_mode": "audio_done", **overrides})


def standby_session(server: STTServer, **overrides: object) -> tuple[StreamingSession, Recorder]:
    recorder = Recorder()
    session = StreamingSession(fast_settings(server.url, standby=True, **overrides), recorder)
    session.start()
    return session, recorder


async def test_the_standby_opens_at_the_first_speech_and_takes_the_next_turn() -> None:
    async with marker_server() as server:
        baseline = asyncio.all_tasks()
        session, recorder = standby_session(server)
        push_all(session, marker([(False, 30)]))  # silence: no standby yet
        await recorder.wait_for(lambda: len(recorder.sent) >= 30 * 320, 3, "silence sent")
        assert len(server.connections) == 1
        push_all(session, utterance(30, 20, 10))  # speech: the standby opens
        standby = await server.wait_for_connection(2)
        await standby.arrived.wait()
        session.finalize("t1")
        push_all(session, utterance(100, 20, 10))  # the next turn, right after
        session.finalize("t2")
        await recorder.wait_finalized(2, 5)
        assert [o.status for o in recorder.finalize_ends] == ["done", "done"]
        assert server.connection(1).marker_indices == list(range(60))
        # The standby took the next turn whole; the one after that was opened at the
        # next turn's speech in turn (connection 3), and got no audio.
        assert server.connection(2).marker_indices == list(range(100, 130))
        assert recorder.errors == []
        assert recorder.final_indices() == [*range(30, 50), *range(100, 120)]
        await recorder.wait_state(CONNECTED, 3)
        # The usual planned handoff statuses: never DISCONNECTED between turns.
        assert status_pairs(recorder) == [
            (DISCONNECTED, CONNECTING),
            (CONNECTING, CONNECTED),
            (CONNECTED, CONNECTING),
            (CONNECTING, CONNECTED),
            (CONNECTED, CONNECTING),
            (CONNECTING, CONNECTED),
        ]
        assert len(server.connections) == 3
        assert not server.connection(3).audio
        await assert_clean_stop(session, server, baseline)


async def test_a_finalize_during_the_standby_handshake_waits_for_it() -> None:
    async with marker_server() as server:
        server.set_fault(2, Fault(handshake_delay_ms=300))
        session, recorder = standby_session(server)
        push_all(session, speech(10))
        await server.wait_for_connection(2)  # its handshake is under way
        session.finalize("t1")
        push_all(session, speech(10, 100))
        session.finalize("t2")
        await recorder.wait_finalized(2, 5)
        # The standby was waited for, not abandoned for a new connection.
        assert server.connection(2).marker_indices == list(range(100, 110))
        assert [o.status for o in recorder.finalize_ends] == ["done", "done"]
        assert recorder.errors == []
        await session.stop()


async def test_a_refused_standby_is_no_error_and_the_next_turn_connects_anew() -> None:
    async with marker_server() as server:
        server.set_fault(2, Fault(refuse_status=503))
        baseline = asyncio.all_tasks()
        session, recorder = standby_session(server)
        push_all(session, speech(10))
        refused = await server.wait_for_connection(2)
        await refused.wait_ended(timeout=2.0)
        session.finalize("t1")
        push_all(session, speech(10, 100))
        session.finalize("t2")
        await recorder.wait_finalized(2, 5)
        assert refused.refused_status == 503 and not refused.audio
        assert server.connection(3).marker_indices == list(range(100, 110))
        assert recorder.errors == []
        assert recorder.final_indices() == [*range(10), *range(100, 110)]
        await assert_clean_stop(session, server, baseline)


async def test_a_standby_the_server_closed_is_replaced_at_the_handoff() -> None:
    async with marker_server() as server:
        server.set_fault(2, Fault(close=Close(code=1001)))  # right after created
        session, recorder = standby_session(server)
        push_all(session, speech(10))
        closed = await server.wait_for_connection(2)
        await closed.wait_ended(timeout=2.0)
        session.finalize("t1")
        push_all(session, speech(10, 100))
        session.finalize("t2")
        await recorder.wait_finalized(2, 5)
        assert not closed.audio
        assert server.connection(3).marker_indices == list(range(100, 110))
        assert recorder.errors == []
        assert [o.status for o in recorder.finalize_ends] == ["done", "done"]
        await session.stop()


async def test_a_failure_of_the_current_connection_closes_the_standby() -> None:
    """A failure takes the usual path (error, backoff, a new connection that hears the
    replayed audio first); the standby, opened for a planned handoff, is closed."""
    frame = 320
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=30 * frame)))
        baseline = asyncio.all_tasks()
        session, recorder = standby_session(server)
        push_all(session, speech(20))
        standby = await server.wait_for_connection(2)
        await standby.arrived.wait()
        push_all(session, speech(10, 20))
        await recorder.wait_for(lambda: len(recorder.errors) >= 1, 3, "the failure")
        await standby.wait_ended(timeout=2.0)
        assert standby.closed_by == "client" and not standby.audio
        push_all(session, utterance(30, 10, 10))
        session.finalize("t1")
        await recorder.wait_finalized(1, 5)
        assert [e.kind for e in recorder.errors] == ["abnormal_close"]
        assert server.connection(3).marker_indices[:1] == [0]  # the replay, first
        assert recorder.final_indices() == list(range(40))
        await assert_clean_stop(session, server, baseline)


async def test_stop_while_the_standby_opens_or_waits_leaves_nothing() -> None:
    for fault in (Fault(handshake_delay_ms=200), Fault(created_delay_ms=200), None):
        async with marker_server() as server:
            server.set_fault(2, fault)
            baseline = asyncio.all_tasks()
            session, recorder = standby_session(server)
            push_all(session, speech(10))
            await server.wait_for_connection(2)
            await assert_clean_stop(session, server, baseline)
            # The speech stopped before any result: reported lost (stopped), nothing else.
            assert all(e.kind == "audio_dropped" and not e.fatal for e in recorder.errors)
            assert sum(e.dropped_ms or 0 for e in recorder.errors) <= 100


async def test_without_prewarm_there_is_no_standby() -> None:
    async with marker_server() as server:
        session, recorder = standby_session(server, prewarm=False)
        push_all(session, utterance(0, 20, 10))
        session.finalize("t1")
        await recorder.wait_finalized(1, 5)
        await recorder.wait_state(DISCONNECTED, 3)
        assert len(server.connections) == 1
        await session.stop()
