"""Dead connections are found before they swallow speech (issue #12, defect 2).

A connection that dies without FIN or RST (a partition, a NAT or proxy dropping an
idle flow, a hung vendor process) looks open. When speech starts on a connection
that has given no sign of life for `probe_quiet_s`, the session pings it; no pong
within `liveness_timeout_s` and it is treated as failed: the audio it was sent
after its latest final (its replay window) goes to the standby connection (or the
next one), and a draining turn is repaired on a healthy connection.
"""

from __future__ import annotations

import asyncio

import pytest
from test_engine_support import (
    BYTES_PER_FRAME_16K,
    CONNECTED,
    Recorder,
    assert_clean_stop,
    assert_words_exact,
    fast_settings,
    marker_server,
    push_all,
    utterance,
)

from stt_server import Fault, Partition
from xai_asr_python.session import StreamingSession

FRAME = BYTES_PER_FRAME_16K


def liveness_settings(url: str, **overrides):
    base = dict(
        standby=True,
        prewarm=True,
        finalize_timeout_s=3.0,
        stall_timeout_s=10.0,  # far away: the stall watchdog must not be what finds it
        probe_quiet_s=0.0,  # every start of speech is proven alive
        liveness_timeout_s=0.5,
        keepalive_s=30.0,  # nor the keepalive
    )
    base.update(overrides)
    return fast_settings(url, **base)


async def test_speech_after_a_silent_partition_goes_to_the_healthy_standby() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        # Connection 1 goes silent (TCP open) after the first utterance: 60 frames.
        server.set_fault(1, Fault(partition=Partition(after_bytes=60 * FRAME)))
        recorder = Recorder()
        session = StreamingSession(liveness_settings(server.url), recorder)
        session.start()
        await recorder.wait_state(CONNECTED, 5)
        push_all(session, utterance(0, 30, 30))  # frames 0-59: speech 0-29
        await recorder.wait_for(lambda: recorder.final_indices() == list(range(30)), 5, "t1")
        await recorder.wait_for(
            lambda: server.connection(1).partitioned_at_bytes is not None, 5, "the partition"
        )
        # Speech into the dead connection; the standby (connection 2) is healthy.
        push_all(session, utterance(60, 30, 30))  # frames 60-119: speech 60-89
        session.finalize("f1")
        await recorder.wait_finalized(1, 5)
        outcome = recorder.finalize_ends[0]
        assert outcome.status == "done", outcome
        # Every frame transcribed exactly once.
        assert recorder.final_indices() == [*range(30), *range(60, 90)]
        assert_words_exact(recorder.finals)
        [error] = [e for e in recorder.errors if e.kind == "dead_connection"]
        assert not error.fatal and "ping" in error.message
        assert all(e.kind != "audio_dropped" for e in recorder.errors)
        await assert_clean_stop(session, server, baseline)


@pytest.mark.parametrize("mode", ["audio_done", "finalize"])
async def test_a_finalize_sent_into_a_silent_partition_is_repaired_in_time(mode: str) -> None:
    """audio.done: the draining turn is repaired on a connection of its own; finalize: the
    connection is found dead and its audio, finalize included, goes to the next one."""
    async with marker_server() as server:
        server.set_fault(1, Fault(partition=Partition(after_bytes=60 * FRAME)))
        recorder = Recorder()
        session = StreamingSession(liveness_settings(server.url, finalize_mode=mode), recorder)
        session.start()
        await recorder.wait_state(CONNECTED, 5)
        push_all(session, utterance(0, 30, 30))
        await recorder.wait_for(lambda: recorder.final_indices() == list(range(30)), 5, "t1")
        await recorder.wait_for(
            lambda: server.connection(1).partitioned_at_bytes is not None, 5, "the partition"
        )
        # A short utterance and its finalize go out before any ping could be answered.
        push_all(session, utterance(60, 20, 10))
        session.finalize("f1")
        await recorder.wait_finalized(1, 5)
        outcome = recorder.finalize_ends[0]
        assert outcome.status == "done" and outcome.repaired == (mode == "audio_done"), outcome
        assert outcome.latency_ms < 3000  # on time: the finalize timeout
        assert recorder.final_indices() == [*range(30), *range(60, 80)]
        await session.stop()


async def test_a_live_connection_answers_the_probe_and_nothing_changes() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(liveness_settings(server.url, standby=False), recorder)
        session.start()
        await recorder.wait_state(CONNECTED, 5)
        push_all(session, utterance(0, 30, 30))
        await recorder.wait_for(lambda: recorder.final_indices() == list(range(30)), 5, "t1")
        push_all(session, utterance(60, 30, 30))
        session.finalize("f1")
        await recorder.wait_finalized(1, 5)
        assert recorder.errors == []
        assert recorder.final_indices() == [*range(30), *range(60, 90)]
        await session.stop()


@pytest.mark.parametrize("mode", ["audio_done", "finalize"])
async def test_a_connection_that_dies_mid_speech_is_proven_dead_at_the_finalize(
    mode: str,
) -> None:
    async with marker_server() as server:
        # Alive when speech starts (the probe is answered), silent from frame 40 on.
        server.set_fault(1, Fault(partition=Partition(after_bytes=40 * FRAME)))
        recorder = Recorder()
        # Speech starts on a fresh connection: no probe then. The finalize's probe finds it.
        settings = liveness_settings(server.url, probe_quiet_s=60.0, finalize_mode=mode)
        session = StreamingSession(settings, recorder)
        session.start()
        await recorder.wait_state(CONNECTED, 5)
        push_all(session, utterance(0, 60, 30))
        session.finalize("f1")
        await recorder.wait_finalized(1, 5)
        outcome = recorder.finalize_ends[0]
        assert outcome.status == "done" and outcome.repaired == (mode == "audio_done"), outcome
        assert recorder.final_indices() == list(range(60))
        assert [e.kind for e in recorder.errors] == ["dead_connection"]
        await session.stop()


async def test_the_keepalive_finds_a_connection_that_died_in_a_silence() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(partition=Partition(after_bytes=60 * FRAME)))
        recorder = Recorder()
        settings = liveness_settings(server.url, keepalive_s=0.3, liveness_timeout_s=0.3)
        session = StreamingSession(settings, recorder)
        session.start()
        await recorder.wait_state(CONNECTED, 5)
        push_all(session, utterance(0, 30, 30))
        # No more audio: only the keepalive can find that connection 1 went silent.
        await recorder.wait_for(
            lambda: any(e.kind == "dead_connection" for e in recorder.errors), 5, "the verdict"
        )
        await recorder.wait_state(CONNECTED, 5)  # a new connection, before any speech
        push_all(session, utterance(60, 30, 30))
        session.finalize("f1")
        await recorder.wait_finalized(1, 5)
        assert recorder.final_indices() == [*range(30), *range(60, 90)]
        await session.stop()
