"""stop() from every state: prompt, no task or socket left, pending finalizes end "stopped"."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from test_engine_support import (
    Recorder,
    assert_clean_stop,
    engine_leftovers,
    marker_server,
    push_all,
    speech,
)
from test_engine_support import (
    fast_settings as support_fast_settings,
)
from websockets.asyncio.client import ClientConnection

from stt_server import Fault, STTServer
from xai_asr_python.reconnect_manager import BackoffPolicy
from xai_asr_python.session import ConnState, StreamingSession
from xai_asr_python.session_types import SessionSettings


def fast_settings(url: str, **overrides: Any) -> SessionSettings:
    """These tests are about turns that end with audio.done (the server closes, the next
    turn has a connection of its own): finalize_mode audio_done, the planned-close design."""
    return support_fast_settings(url, **{"finalize_mode": "audio_done", **overrides})


def open_client_sockets() -> list[ClientConnection]:
    """WebSocket client connections whose TCP transport is still open."""
    gc.collect()
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, ClientConnection)
        and getattr(obj, "transport", None) is not None
        and not obj.transport.is_closing()
    ]


async def stop_and_check(
    session: StreamingSession, recorder: Recorder, server: STTServer, baseline: set[asyncio.Task]
) -> None:
    pending = len(recorder.finalize_ends)
    await assert_clean_stop(session, server, baseline)
    assert open_client_sockets() == []
    # Every finalize ends exactly once; the ones still open at stop end "stopped".
    ends = recorder.finalize_ends
    assert len({o.finalize_id for o in ends}) == len(ends)
    assert all(o.status == "stopped" for o in ends[pending:])
    assert recorder.state is ConnState.DISCONNECTED
    recorder.assert_legal_statuses()


async def test_stop_before_start_ends_buffered_finalizes() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        push_all(session, speech(10))
        session.finalize("never-sent")
        await stop_and_check(session, recorder, server, baseline)
        assert [o.status for o in recorder.finalize_ends] == ["stopped"]
        assert server.connections == []


async def test_stop_mid_handshake() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        server.set_fault(1, Fault(handshake_delay_ms=5000))
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url, connect_timeout_s=10), recorder)
        session.start()
        push_all(session, speech(10))
        session.finalize("f")
        await server.wait_for_connection(1, timeout=3)
        assert recorder.state is ConnState.CONNECTING
        # The server cannot see a client leave while it delays the upgrade; the client
        # side is checked instead (no open socket, no task).
        await asyncio.wait_for(session.stop(), 0.5)
        assert not session.tasks and open_client_sockets() == []
        assert [o.status for o in recorder.finalize_ends] == ["stopped"]
        await asyncio.sleep(0)  # cancelled keepalive tasks finish on the next loop turn
        assert engine_leftovers(baseline) == []
        assert recorder.state is ConnState.DISCONNECTED
        recorder.assert_legal_statuses()


async def test_stop_while_waiting_for_transcript_created() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        server.set_fault(1, Fault(no_created=True))
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url, connect_timeout_s=10), recorder)
        session.start()
        record = await server.wait_for_connection(1, timeout=3)
        await recorder.wait_for(lambda: record.opened, 3, "socket open")
        await stop_and_check(session, recorder, server, baseline)
        assert record.end in ("lost", "closed")


async def test_stop_while_connected_and_streaming() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        await recorder.wait_state(ConnState.CONNECTED, 3)
        push_all(session, speech(200))
        session.finalize("f")  # queued behind the audio: may or may not be sent yet
        # The checks below can fail: right now there is a socket and engine tasks.
        assert open_client_sockets() and engine_leftovers(baseline)
        await stop_and_check(session, recorder, server, baseline)
        assert len(recorder.finalize_ends) == 1


async def test_stop_while_draining() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        server.set_fault(1, Fault(ignore_audio_done=True))
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url, finalize_timeout_s=10), recorder)
        session.start()
        push_all(session, speech(30))
        session.finalize("f")
        record = await server.wait_for_connection(1, timeout=3)
        await recorder.wait_for(lambda: record.audio_done_received, 3, "audio.done sent")
        await recorder.wait_state(ConnState.CONNECTED, 3)  # the pre-warmed next connection
        await stop_and_check(session, recorder, server, baseline)
        assert [o.status for o in recorder.finalize_ends] == ["stopped"]


async def test_stop_mid_backoff() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        server.set_default_fault(Fault(refuse_status=503))
        recorder = Recorder()
        session = StreamingSession(
            fast_settings(server.url, backoff=BackoffPolicy(base_s=10, cap_s=10)),
            recorder,
            rng=lambda: 1.0,  # the full 10 s
        )
        session.start()
        await recorder.wait_for(lambda: bool(recorder.errors), 3, "the refusal")
        assert recorder.errors[0].retry_in_s == 10.0
        session.finalize("f")
        await stop_and_check(session, recorder, server, baseline)
        assert len(server.connections) == 1


async def test_stop_after_fatal() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server(api_key="right") as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        await recorder.wait_for(lambda: any(e.fatal for e in recorder.errors), 3, "fatal")
        await stop_and_check(session, recorder, server, baseline)


async def test_stop_is_idempotent_and_final() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        await recorder.wait_state(ConnState.CONNECTED, 3)
        await stop_and_check(session, recorder, server, baseline)
        statuses = len(recorder.statuses)
        await asyncio.wait_for(asyncio.gather(session.stop(), session.stop()), 0.5)
        # After stop: no new connection, audio ignored, a finalize still ends once.
        session.start()
        session.push_audio(speech(10))
        session.finalize("late")
        await recorder.wait_finalized(1, 1)
        assert recorder.finalize_ends[0].status == "stopped"
        assert not session.tasks
        assert len(server.connections) == 1
        assert len(recorder.statuses) == statuses


async def test_two_concurrent_stops_both_wait_for_the_end() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        await recorder.wait_state(ConnState.CONNECTED, 3)
        first = asyncio.ensure_future(session.stop())
        await asyncio.sleep(0)  # the first stop is under way
        await asyncio.wait_for(session.stop(), 1)
        # The second returned only once stopping was complete.
        assert not session.tasks and recorder.state is ConnState.DISCONNECTED
        await asyncio.wait_for(first, 1)
