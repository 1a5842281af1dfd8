"""Every fault the local server can inject, each ending in its documented state within a bound.

Audio that crosses a failure is pushed in step with the fault here: the test
waits until the failure has been noticed before it pushes more, so what each
connection got is known exactly. What the failed connection was sent but never
finalized is replayed to the next one. test_engine_replay.py pushes
continuously through the same faults, with audio in flight when they strike.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import pytest
from test_engine_support import (
    BYTES_PER_FRAME_16K,
    Recorder,
    assert_clean_stop,
    marker,
    marker_server,
    push_all,
    received_indices,
    speech,
    utterance,
)
from test_engine_support import (
    fast_settings as support_fast_settings,
)

from stt_server import Close, ErrorEvent, Fault, Malformed, STTServer
from xai_asr_python.protocol import ConnectionPhase, ConnectionTracker, Failure
from xai_asr_python.recognition import Recognition
from xai_asr_python.reconnect_manager import BackoffPolicy
from xai_asr_python.redaction import mask_secret
from xai_asr_python.session import ConnState, SessionSettings, StreamingSession
from xai_asr_python.session_types import SessionError

KEY = "test-key-0123456789"


def fast_settings(url: str, **overrides: Any) -> SessionSettings:
    """Faults of the audio.done lifecycle (done late, never, without a close, an error or a
    close instead): turns end with audio.done here (finalize_mode audio_done)."""
    return support_fast_settings(url, **{"finalize_mode": "audio_done", **overrides})


async def run_turn(
    session: StreamingSession,
    recorder: Recorder,
    start_index: int,
    finalize_id: str,
    frames: int = 20,
    timeout: float = 5.0,
) -> None:
    """One utterance then a finalize; waits for its finalize end."""
    count = len(recorder.finalize_ends)
    push_all(session, utterance(start_index, speech_frames=frames, silence_frames=5))
    session.finalize(finalize_id)
    await recorder.wait_finalized(count + 1, timeout)


def started(server: STTServer, **overrides: object) -> tuple[StreamingSession, Recorder]:
    recorder = Recorder()
    session = StreamingSession(fast_settings(server.url, **overrides), recorder)
    session.start()
    return session, recorder


def retrying(session: StreamingSession) -> bool:
    """An attempt to connect, or a backoff before one, is still under way."""
    return any(
        ":connection-" in t.get_name() or t.get_name().endswith(":backoff") for t in session.tasks
    )


# ------------------------------------------------------------------ refused upgrades


@pytest.mark.parametrize("status", [401, 403, 400])
async def test_refusal_that_retrying_cannot_fix_is_fatal_at_once(status: int) -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        server.set_default_fault(Fault(refuse_status=status))
        session, recorder = started(server)
        push_all(session, speech(10))
        session.finalize("f")
        await recorder.wait_for(lambda: len(recorder.errors) >= 1, 3, "an error")
        [error] = recorder.errors
        assert error.fatal and error.kind == "handshake_refused"
        assert error.vendor_code == str(status) and error.vendor_message
        assert KEY not in error.message and KEY not in (error.vendor_message or "")
        # The pending finalize ends at once: no connection will come.
        await recorder.wait_finalized(1, 1)
        assert recorder.finalize_ends[0].status == "no_connection"
        assert not retrying(session)  # no retry loop left behind
        assert len(server.connections) == 1
        assert recorder.state is ConnState.DISCONNECTED
        recorder.assert_legal_statuses()
        await assert_clean_stop(session, server, baseline)


async def test_wrong_key_against_a_server_with_a_key_is_fatal() -> None:
    async with marker_server(api_key="the-right-key") as server:
        session, recorder = started(server)
        await recorder.wait_for(lambda: len(recorder.errors) >= 1, 3, "an error")
        [error] = recorder.errors
        assert error.fatal and error.vendor_code == "401"
        assert server.connections[0].headers["authorization"] == "<redacted>"
        await session.stop()


async def test_bad_query_is_answered_400_and_fatal() -> None:
    async with marker_server() as server:
        session, recorder = started(server, sample_rate=12345)
        await recorder.wait_for(lambda: len(recorder.errors) >= 1, 3, "an error")
        [error] = recorder.errors
        assert error.fatal and error.vendor_code == "400"
        assert "sample_rate" in (error.vendor_message or "")
        await session.stop()


@pytest.mark.parametrize("status", [500, 503])
async def test_server_error_at_the_upgrade_is_retried_and_audio_survives(status: int) -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(refuse_status=status))
        session, recorder = started(server)
        await run_turn(session, recorder, 0, "f")
        [error] = recorder.errors
        assert not error.fatal and error.vendor_code == str(status) and error.attempt == 1
        assert error.retry_in_s is not None and 0 <= error.retry_in_s <= 0.05
        assert recorder.finalize_ends[0].status == "done"
        assert received_indices(server) == list(range(25))
        assert recorder.final_indices() == list(range(20))
        assert session.stats.failure_reconnects == 1
        recorder.assert_legal_statuses()
        await session.stop()


async def test_429_retry_after_is_honoured() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(refuse_status=429, retry_after=1))
        session, recorder = started(server)
        await recorder.wait_for(lambda: bool(recorder.errors), 3, "the 429 error")
        refused_at = time.monotonic()
        [error] = recorder.errors
        assert not error.fatal and error.vendor_code == "429" and error.retry_in_s == 1.0
        await server.wait_for_connection(2, timeout=3)
        assert time.monotonic() - refused_at >= 0.9
        await recorder.wait_state(ConnState.CONNECTED, 2)
        await session.stop()


async def test_retry_ceiling_ends_in_one_fatal_error() -> None:
    async with marker_server() as server:
        server.set_default_fault(Fault(refuse_status=503))
        session, recorder = started(
            server, backoff=BackoffPolicy(base_s=0.01, cap_s=0.02, max_attempts=3)
        )
        await recorder.wait_for(lambda: any(e.fatal for e in recorder.errors), 3, "fatal")
        errors = recorder.errors
        assert [(e.fatal, e.attempt) for e in errors] == [(False, 1), (False, 2), (True, 3)]
        assert errors[-1].kind == "retries_exhausted" and errors[-1].vendor_code == "503"
        assert len(server.connections) == 3
        assert not retrying(session)
        # After giving up: audio is ignored and a finalize still ends, honestly.
        session.push_audio(speech(5))
        session.finalize("late")
        await recorder.wait_finalized(1, 1)
        assert recorder.finalize_ends[0].status == "no_connection"
        recorder.assert_legal_statuses()
        await session.stop()


# ------------------------------------------------------------------ handshake and created


async def test_slow_handshake_beyond_the_connect_timeout_is_retried() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(handshake_delay_ms=3000))
        session, recorder = started(server, connect_timeout_s=0.3)
        await run_turn(session, recorder, 0, "f")
        [error] = recorder.errors
        assert error.kind == "handshake_timeout" and not error.fatal
        assert recorder.finalize_ends[0].status == "done"
        assert received_indices(server) == list(range(25))
        await session.stop()


async def test_missing_transcript_created_is_retried_and_no_audio_goes_early() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(no_created=True))
        session, recorder = started(server, connect_timeout_s=0.3)
        await run_turn(session, recorder, 0, "f")
        # The first is the missing transcript.created; on a loaded machine the retry's
        # handshake may outlast the short connect timeout too: retried again.
        error = recorder.errors[0]
        assert error.kind == "no_created" and not error.fatal
        assert all(not e.fatal for e in recorder.errors)
        assert all(r.bytes_before_created == 0 for r in server.connections)
        assert received_indices(server) == list(range(25))
        assert server.connections[0].audio == b""
        await session.stop()


# ------------------------------------------------------------------ mid-stream failures


async def push_until_failure(
    session: StreamingSession, recorder: Recorder, server: STTServer, data: bytes
) -> None:
    """Push `data`, then wait until the engine noticed that connection 1 failed."""
    push_all(session, data)
    await recorder.wait_for(lambda: bool(recorder.errors), 3, "the failure")
    await server.connection(1).wait_ended(3)


TRIGGER = 20 * BYTES_PER_FRAME_16K  # the fault fires once 200 ms of audio arrived


@pytest.mark.parametrize(
    ("fault", "kind", "code"),
    [
        (Fault(error_event=ErrorEvent(code=503, after_bytes=TRIGGER)), "vendor_error", "503"),
        (
            Fault(error_event=ErrorEvent(code="busy", after_bytes=TRIGGER, then="close")),
            "vendor_error",
            "busy",
        ),
        (Fault(close=Close(code=1001, after_bytes=TRIGGER)), "abnormal_close", "1001"),
        (Fault(close=Close(code=1011, after_bytes=TRIGGER)), "abnormal_close", "1011"),
        (Fault(close=Close(code="abort", after_bytes=TRIGGER)), "abnormal_close", "1006"),
    ],
    ids=["error-then-silence", "error-then-close", "close-1001", "close-1011", "tcp-abort"],
)
async def test_mid_stream_failure_reconnects_without_losing_audio(
    fault: Fault, kind: str, code: str
) -> None:
    async with marker_server() as server:
        server.set_fault(1, fault)
        session, recorder = started(server)
        await push_until_failure(session, recorder, server, speech(20, 0))
        # Audio keeps coming during the outage: buffered, then flushed in order, after
        # the failed connection's un-finalized audio (frames 0-19), replayed.
        push_all(session, marker([(True, 40), (False, 5)], 20))
        await recorder.wait_for(
            lambda: len(server.connections) >= 2 and len(server.connection(2).marker_indices) == 65,
            3,
            "the flush",
        )
        await server.connection(1).wait_ended(2)
        # The replaced connection's late close changed nothing: no extra reconnect.
        assert len(server.connections) == 2 and recorder.state is ConnState.CONNECTED
        session.finalize("f")
        await recorder.wait_finalized(1, 5)
        [error] = recorder.errors  # one failure, one error (an error then a close is one)
        assert error.kind == kind and error.vendor_code == code and not error.fatal
        if kind == "vendor_error":
            assert error.vendor_message == "Cannot continue request"
        assert server.connection(1).marker_indices == list(range(20))
        assert server.connection(2).marker_indices == list(range(65))
        assert recorder.finalize_ends[0].status == "done"
        # Every word once: the failed connection finalized none, the new one all of them.
        assert recorder.final_indices() == list(range(60))
        assert session.stats.failure_reconnects == 1
        assert session.stats.replayed_ms == 200
        recorder.assert_legal_statuses()
        statuses = [(s[1].value, s[0].value) for s in recorder.statuses]
        assert statuses[:5] == [
            ("disconnected", "connecting"),
            ("connecting", "connected"),
            ("connected", "disconnected"),
            ("disconnected", "connecting"),
            ("connecting", "connected"),
        ]
        await session.stop()


async def test_server_that_accepts_then_drops_every_connection_escalates() -> None:
    async with marker_server() as server:
        server.set_default_fault(Fault(close=Close(code=1011, after_ms=0)))
        session, recorder = started(
            server, backoff=BackoffPolicy(base_s=0.01, cap_s=0.02, max_attempts=4)
        )
        await recorder.wait_for(lambda: any(e.fatal for e in recorder.errors), 5, "fatal")
        assert [e.attempt for e in recorder.errors] == [1, 2, 3, 4]
        assert recorder.errors[-1].kind == "retries_exhausted"
        assert len(server.connections) == 4
        await session.stop()


async def test_a_healthy_connection_resets_the_attempt_counter() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(refuse_status=503))
        server.set_fault(2, Fault(close=Close(code=1011, after_ms=400)))
        server.set_fault(3, Fault(refuse_status=503))
        session, recorder = started(server, healthy_after_s=0.2)
        await server.wait_for_connection(4, timeout=5)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        # 1: refused; 2: up 0.4 s (> healthy_after) then dropped: a new streak; 3: refused.
        assert [e.attempt for e in recorder.errors] == [1, 1, 2]
        await session.stop()


def assert_rest_reported_lost(error: SessionError, *, frames: int) -> None:
    """The speech past the interim text made final, which no replay window keeps
    (replay_max_ms 0), is reported lost: once, exactly that much (10 ms a frame)."""
    assert error.kind == "audio_dropped" and not error.fatal
    assert error.dropped_ms == frames * 10


async def test_vendor_error_during_drain_ends_the_finalize_as_failed() -> None:
    """Without replay (replay_max_ms=0) there is no repair connection: the old fallback.
    With replay the turn is repaired (test_engine_repair.py)."""
    async with marker_server() as server:
        server.set_fault(1, Fault(error_event=ErrorEvent(code=500, on_audio_done=True)))
        session, recorder = started(server, replay_max_ms=0)
        await run_turn(session, recorder, 0, "t1", frames=60)
        assert recorder.finalize_ends[0].status == "failed"
        error, dropped = recorder.errors
        assert error.kind == "vendor_error" and error.vendor_code == "500" and not error.fatal
        # The interim text of the dead turn is not lost: it became final.
        assert recorder.final_indices() == list(range(50))
        assert_rest_reported_lost(dropped, frames=10)
        await run_turn(session, recorder, 100, "t2")
        assert recorder.finalize_ends[1].status == "done"
        await session.stop()


# ------------------------------------------------------------------ finalize faults


async def test_no_answer_to_audio_done_is_repaired_on_time_and_is_closed_by_us() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(ignore_audio_done=True))
        session, recorder = started(server, finalize_timeout_s=0.5)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        push_all(session, speech(60))
        session.finalize("t1")
        await recorder.wait_finalized(1, 2)
        outcome = recorder.finalize_ends[0]
        # Half the timeout without a done: the turn is transcribed again on a connection
        # of its own, by the deadline (issue #12: before, it ended "timeout" with only
        # its interim text, frames 50-59 lost).
        assert outcome.status == "done" and outcome.repaired, outcome
        assert outcome.latency_ms <= 800
        [error] = recorder.errors
        assert error.kind == "no_done" and not error.fatal
        record = server.connection(1)
        await record.wait_ended(2)
        assert record.closed_by == "client"
        assert recorder.final_indices() == list(range(60))
        # The next turn is unaffected.
        await run_turn(session, recorder, 100, "t2")
        assert recorder.finalize_ends[1].status == "done"
        await session.stop()


async def test_no_answer_to_a_turn_flushed_after_an_outage_is_repaired_on_time() -> None:
    """The turn's finalize waited for a connection (a slow handshake), so its audio goes
    out in one burst with audio.done right behind it: half-way to the deadline the
    vendor is still, by the real-time estimate, hearing that burst. The session looks
    again once it should have heard it; still no done: the turn is repaired by the
    deadline. (It used to give up at the half-way check and end "timeout" on the
    interim text, the rest lost; the randomized soak found it, seed 87.)"""
    async with marker_server() as server:
        server.set_fault(1, Fault(created_delay_ms=500, ignore_audio_done=True))
        session, recorder = started(
            server,
            finalize_timeout_s=1.6,
            connect_timeout_s=3,
            interim_results=False,  # no event while it hears the burst
            endpointing_ms=None,
        )
        push_all(session, speech(60))
        session.finalize("t1")
        await recorder.wait_finalized(1, 3)
        outcome = recorder.finalize_ends[0]
        assert outcome.status == "done" and outcome.repaired, outcome
        assert outcome.latency_ms <= 1600 + 300
        assert [e.kind for e in recorder.errors] == ["no_done"]
        assert recorder.final_indices() == list(range(60))
        await session.stop()


async def test_done_without_close_is_planned_and_we_close_the_socket() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(done_without_close=True))
        session, recorder = started(server)
        await run_turn(session, recorder, 0, "t1")
        assert recorder.finalize_ends[0].status == "done"
        assert recorder.finalize_ends[0].latency_ms < 500
        record = server.connection(1)
        await record.wait_ended(2)
        assert record.closed_by == "client" and record.close_code == 1000
        assert recorder.errors == []
        await session.stop()


async def test_close_before_done_fails_the_finalize_but_keeps_the_text() -> None:
    """Without replay: no repair connection (with replay: test_engine_repair.py)."""
    async with marker_server() as server:
        server.set_fault(1, Fault(close_before_done=True))
        session, recorder = started(server, replay_max_ms=0)
        await run_turn(session, recorder, 0, "t1", frames=60)
        assert recorder.finalize_ends[0].status == "failed"
        error, dropped = recorder.errors
        assert error.kind == "abnormal_close" and error.vendor_code == "1000"
        assert recorder.final_indices() == list(range(50))
        assert_rest_reported_lost(dropped, frames=10)
        await run_turn(session, recorder, 100, "t2")
        assert recorder.finalize_ends[1].status == "done"
        await session.stop()


async def test_malformed_frames_are_survived() -> None:
    async with marker_server() as server:
        server.set_default_fault(Fault(malformed=Malformed()))
        server.set_fault(2, Fault(malformed=Malformed(on_audio_done=True)))
        session, recorder = started(server)
        await run_turn(session, recorder, 0, "t1")
        await run_turn(session, recorder, 100, "t2")
        assert [o.status for o in recorder.finalize_ends] == ["done", "done"]
        assert recorder.errors == []
        assert recorder.final_indices() == [*range(20), *range(100, 120)]
        await session.stop()


@pytest.mark.parametrize(
    ("done_text", "flush_on_done"),
    [("empty", True), ("whole", True), ("whole", False), ("pending", False)],
)
async def test_long_turns_are_final_once_whatever_the_done_text(
    done_text: str, flush_on_done: bool
) -> None:
    """Locked chunks, utterance finals and the done text never finalize a word twice:
    the live wire ends the open utterance with its finals at audio.done and an empty
    done; older servers put the pending text (or everything) in the done alone."""
    async with marker_server(done_text=done_text, flush_on_done=flush_on_done) as server:
        session, recorder = started(server)
        index = 0
        expected: list[int] = []
        for turn in range(3):
            # 4 s of speech (locked chunks), a pause (speech_final), more speech.
            data = marker([(True, 400), (False, 30), (True, 50)], index)
            expected += [*range(index, index + 400), *range(index + 430, index + 480)]
            push_all(session, data)
            index += 480
            session.finalize(f"t{turn}")
            await recorder.wait_finalized(turn + 1, 5)
        assert recorder.final_indices() == expected
        finals = recorder.finals
        for earlier, later in itertools.pairwise(finals):
            assert earlier.start_ms + earlier.duration_ms <= later.start_ms
        await session.stop()


# ------------------------------------------------------------------ back-pressure and idle


async def test_temporary_back_pressure_loses_nothing_and_never_blocks_the_caller() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(stop_reading_after_bytes=TRIGGER, stop_reading_for_ms=400))
        session, recorder = started(server)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        data = marker([(True, 300), (False, 30)], 0)  # 3.3 s, far more than the socket takes
        slowest = 0.0
        for chunk_start in range(0, len(data), 3200):
            t0 = time.perf_counter()
            session.push_audio(data[chunk_start : chunk_start + 3200])
            slowest = max(slowest, time.perf_counter() - t0)
        assert slowest < 0.05
        session.finalize("f")
        await recorder.wait_finalized(1, 5)
        assert recorder.finalize_ends[0].status == "done"
        assert recorder.errors == []
        assert received_indices(server) == list(range(330))
        await session.stop()


async def test_permanent_back_pressure_is_a_stall_and_the_session_recovers() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(stop_reading_after_bytes=TRIGGER))
        session, recorder = started(server, stall_timeout_s=0.5, replay_max_ms=10_000)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        # 30 s of speech into a socket nobody reads (loopback buffers may take it all):
        # no event comes back while speech flows, or a send blocks; either is a stall.
        push_all(session, speech(3000, 0))
        await recorder.wait_for(lambda: bool(recorder.errors), 4, "the stall")
        [error] = recorder.errors
        assert error.kind == "stall" and not error.fatal
        await recorder.wait_for(
            lambda: len(server.connections) >= 2 and server.connection(2).opened, 3, "conn 2"
        )
        push_all(session, utterance(3000))
        session.finalize("f")
        await recorder.wait_finalized(1, 5)
        indices = received_indices(server)
        # Nothing twice and nothing out of order. The kernel took the whole 30 s for the
        # unread socket: its newest 10 s (replay_max_ms) were replayed to connection 2,
        # the older un-finalized audio is the only gap, and the stats account for it.
        assert indices == sorted(set(indices))
        assert indices[-60:] == list(range(3000, 3060))
        assert server.connection(2).marker_indices[0] > server.connection(1).marker_indices[-1]
        assert session.stats.replayed_ms == 10_000
        assert session.stats.replay_trimmed_ms >= 20_000
        assert server.connection(2).marker_indices[:1000] == list(range(2000, 3000))
        await session.stop()


async def test_our_idle_close_comes_first_and_is_planned() -> None:
    async with marker_server() as server:
        server.set_default_fault(Fault(idle_end_after_s=5.0))
        session, recorder = started(server, idle_close_s=0.3)
        push_all(session, speech(30, 0))
        await recorder.wait_for(
            lambda: recorder.state is ConnState.DISCONNECTED and len(recorder.statuses) > 2,
            3,
            "the idle close",
        )
        assert recorder.statuses[-1][3].startswith("closed after 0.3 s without audio")
        record = server.connection(1)
        await record.wait_ended(2)
        assert record.audio_done_received and record.close_code == 1000
        assert recorder.errors == []
        # The pending words of the idle connection were collected before it closed.
        assert recorder.final_indices() == list(range(30))
        # Audio resumes: a new connection, no error.
        await run_turn(session, recorder, 100, "f")
        assert recorder.finalize_ends[0].status == "done"
        assert recorder.final_indices() == [*range(30), *range(100, 120)]
        assert session.stats.planned_reconnects == 1
        assert recorder.errors == []
        await session.stop()


async def test_server_side_idle_end_is_caught_by_the_stall_watchdog() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(idle_end_after_s=0.2))
        session, recorder = started(server, stall_timeout_s=0.4)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        record = server.connection(1)
        await recorder.wait_for(lambda: record.session_end == "idle", 3, "server idle end")
        # Speech into the dead session: no event comes back, the watchdog replaces it.
        push_all(session, speech(30, 0))
        await recorder.wait_for(lambda: bool(recorder.errors), 3, "the stall")
        assert recorder.errors[0].kind == "stall"
        await recorder.wait_state(ConnState.CONNECTED, 3)
        await run_turn(session, recorder, 100, "f")
        assert recorder.finalize_ends[0].status == "done"
        assert recorder.final_indices()[-20:] == list(range(100, 120))
        await session.stop()


async def test_stall_detection_waits_for_speech_not_silence() -> None:
    """With no speech flowing, a quiet server is legitimate: no stall."""
    async with marker_server() as server:
        server.set_fault(1, Fault(idle_end_after_s=0.1))
        session, recorder = started(server, stall_timeout_s=0.2, idle_close_s=0.6)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        push_all(session, marker([(False, 100)], 0))  # 1 s of silence into a dead session
        # The idle close (0.6 s after the last audio) proves the stall timeout passed.
        await recorder.wait_state(ConnState.DISCONNECTED, 3)
        assert all(e.kind != "stall" for e in recorder.errors)
        assert len(server.connection(1).audio) == 100 * BYTES_PER_FRAME_16K
        await session.stop()


async def test_settings_are_plain_data() -> None:
    settings = fast_settings("ws://127.0.0.1:1/v1/stt")
    assert isinstance(settings, SessionSettings)
    assert KEY not in repr(settings)
    assert settings.redacted()["api_key"] != KEY and KEY not in str(settings.redacted())
    assert "test-key" not in settings.connect_url()


async def test_finalize_after_its_turn_died_with_the_connection_is_failed() -> None:
    """Without replay (replay_max_ms=0, the old behaviour) the turn's audio died with its
    connection: the finalize has nothing left to finalize and says so."""
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=TRIGGER)))
        session, recorder = started(server, replay_max_ms=0)
        await push_until_failure(session, recorder, server, speech(20, 0))
        session.finalize("f")  # nothing of the turn is left to send
        await recorder.wait_finalized(1, 2)
        assert recorder.finalize_ends[0].status == "failed"
        assert recorder.finalize_ends[0].latency_ms < 500
        assert session.stats.replayed_ms == 0
        # A later turn is a normal one.
        await run_turn(session, recorder, 100, "g")
        assert recorder.finalize_ends[1].status == "done"
        await session.stop()


async def test_finalize_after_its_connection_died_finalizes_the_replayed_turn() -> None:
    """With replay the turn did not die with its connection: its audio went to the next
    one, where the finalize finalizes it."""
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=TRIGGER)))
        session, recorder = started(server)
        await push_until_failure(session, recorder, server, speech(20, 0))
        session.finalize("f")
        await recorder.wait_finalized(1, 2)
        assert recorder.finalize_ends[0].status == "done"
        assert recorder.final_indices() == list(range(20))
        assert server.connection(2).marker_indices == list(range(20))
        assert server.connection(2).audio_done_received
        assert session.stats.replayed_ms == 200
        await session.stop()


async def test_the_key_appears_in_no_log_line_even_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with marker_server(api_key=KEY) as server:
        session, recorder = started(server)
        await run_turn(session, recorder, 0, "f")
        await session.stop()
        wrong, wrong_recorder = started(server, api_key="another-secret-key-987")
        await wrong_recorder.wait_for(lambda: bool(wrong_recorder.errors), 3, "401")
        await wrong.stop()
    assert "> GET /v1/stt" in caplog.text  # websockets' debug lines were captured
    assert KEY not in caplog.text
    assert "another-secret-key-987" not in caplog.text
    assert f"Bearer {mask_secret(KEY)}" in caplog.text  # masked as in every other line


async def test_a_burst_is_given_its_playing_time_before_a_stall() -> None:
    """A buffer flush arrives faster than real time; the vendor may take that long to
    hear it. The stall clock starts when the speech would be heard in real time."""
    async with marker_server() as server:
        server.set_fault(1, Fault(idle_end_after_s=0.05))  # a dead session from the start
        session, recorder = started(server, stall_timeout_s=0.2)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        record = server.connection(1)
        await recorder.wait_for(lambda: record.session_end == "idle", 3, "server idle end")
        pushed_at = time.monotonic()
        push_all(session, marker([(False, 100), (True, 50)], 0))  # 1 s silence, then speech
        await recorder.wait_for(lambda: bool(recorder.errors), 4, "the stall")
        waited = time.monotonic() - pushed_at
        assert recorder.errors[0].kind == "stall"
        assert 1.0 <= waited < 2.0
        await session.stop()


async def test_proxy_settings_in_the_environment_are_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # websockets would otherwise route through this (refusing) proxy.
    for name in ("all_proxy", "ws_proxy", "http_proxy", "ALL_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("NO_PROXY", "")
    async with marker_server() as server:
        session, recorder = started(server)
        await run_turn(session, recorder, 0, "f")
        assert recorder.errors == [] and recorder.finalize_ends[0].status == "done"
        await session.stop()


async def test_a_server_message_over_the_client_limit_is_reported_as_that() -> None:
    """A real oversized message on a real socket: the client's library closes with
    1009, and the failure says so (it used to read "lost without a close frame")."""
    async with marker_server() as server:
        url = fast_settings(server.url).connect_url()
        # transcript.created (about 80 bytes with its session id) fits; the first partial
        # with words (hundreds of bytes) does not.
        rec = Recognition(1, url, KEY, connect_timeout_s=3, max_message_bytes=160)
        await rec.open()
        await rec.send_audio(marker([(True, 80)], 0))

        async def all_events() -> list[object]:
            return [event async for event in rec.events()]

        assert await asyncio.wait_for(all_events(), 5) == []
        code, reason, sent_code, sent_reason = rec.close_info()
        tracker = ConnectionTracker(phase=ConnectionPhase.STREAMING)
        verdict = tracker.closed(code, reason, sent_code=sent_code, sent_reason=sent_reason)
        assert isinstance(verdict, Failure), verdict
        assert "client closed the connection (1009)" in verdict.message, verdict.message
        await rec.close("test", timeout_s=1)
