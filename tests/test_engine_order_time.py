"""Order, time and continuity across reconnects: frame-exact with marker audio.

Marker frame i is the i-th 10 ms of the user's stream, so a word for frame i
must start at exactly i * 10 ms on the session timeline, whichever
connection heard it, and however much audio was dropped before it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from test_engine_support import (
    BYTES_PER_FRAME_16K,
    CONNECTED,
    CONNECTING,
    DISCONNECTED,
    Recorder,
    assert_words_exact,
    marker,
    marker_server,
    push_all,
    received_indices,
    send_all,
    speech,
    status_pairs,
    utterance,
)
from test_engine_support import (
    fast_settings as support_fast_settings,
)

from stt_server import Close, ErrorEvent, Fault, g711
from xai_asr_python.reconnect_manager import BackoffPolicy
from xai_asr_python.session import StreamingSession
from xai_asr_python.session_types import SessionSettings

# ------------------------------------------------------------------ planned handoffs


def fast_settings(url: str, **overrides: Any) -> SessionSettings:
    """These tests are about turns that end with audio.done (the server closes, the next
    turn has a connection of its own): finalize_mode audio_done, the planned-close design."""
    return support_fast_settings(url, **{"finalize_mode": "audio_done", **overrides})


async def test_prewarmed_handoff_status_and_audio_after_finalize_goes_to_the_next() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        push_all(session, utterance(0, 20, 5))
        session.finalize("t1")
        # Pushed right after the finalize, before the next connection is ready.
        push_all(session, utterance(100, 20, 5))
        session.finalize("t2")
        await recorder.wait_finalized(2, 5)
        assert [o.status for o in recorder.finalize_ends] == ["done", "done"]
        # The finished session never got a byte of the next turn.
        assert server.connection(1).marker_indices == list(range(25))
        assert server.connection(2).marker_indices == list(range(100, 125))
        await recorder.wait_state(CONNECTED, 3)
        # Status follows the connection that takes new audio: no "disconnected" in a
        # planned handoff.
        assert status_pairs(recorder) == [
            (DISCONNECTED, CONNECTING),
            (CONNECTING, CONNECTED),
            (CONNECTED, CONNECTING),
            (CONNECTING, CONNECTED),
            (CONNECTED, CONNECTING),
            (CONNECTING, CONNECTED),
        ]
        assert session.stats.planned_reconnects == 2
        assert session.stats.last_reconnect_gap_ms is not None
        await session.stop()
        assert status_pairs(recorder)[-1] == (CONNECTED, DISCONNECTED)
        recorder.assert_legal_statuses()


async def test_without_prewarm_the_next_connection_waits_for_audio() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url, prewarm=False), recorder)
        session.start()
        push_all(session, utterance(0, 20, 5))
        session.finalize("t1")
        await recorder.wait_finalized(1, 5)
        # Decided at the handoff: disconnected, and no attempt without audio.
        assert recorder.statuses[-1][:3] == (DISCONNECTED, CONNECTED, 1000)
        assert len(server.connections) == 1
        push_all(session, utterance(100, 20, 5))
        session.finalize("t2")
        await recorder.wait_finalized(2, 5)
        assert server.connection(2).marker_indices == list(range(100, 125))
        assert recorder.final_indices() == [*range(20), *range(100, 120)]
        recorder.assert_legal_statuses()
        await session.stop()


@pytest.mark.parametrize("mode", ["audio_done", "finalize"])
async def test_turns_pushed_all_at_once_are_split_exactly_at_each_finalize(mode: str) -> None:
    """No awaits between pushes: the finalize markers alone decide the turn boundaries.
    With audio.done each turn has a connection; with finalize one connection hears them
    all, and each utterance final answers its finalize with exactly its turn's words."""
    async with marker_server() as server:
        recorder = Recorder()
        settings = fast_settings(server.url, finalize_timeout_s=3, finalize_mode=mode)
        session = StreamingSession(settings, recorder)
        session.start()
        turns = 10
        for turn in range(turns):
            # Marker index = user frame: each turn is 35 frames.
            push_all(session, utterance(turn * 35, 30, 5))
            session.finalize(f"t{turn}")
        await recorder.wait_finalized(turns, 8)
        assert [o.finalize_id for o in recorder.finalize_ends] == [f"t{i}" for i in range(turns)]
        assert [o.status for o in recorder.finalize_ends] == ["done"] * turns
        if mode == "audio_done":
            for turn in range(turns):
                record = server.connection(turn + 1)
                assert record.marker_indices == list(range(turn * 35, turn * 35 + 35))
                assert record.audio_done_received
        else:
            assert len(server.connections) == 1
            assert server.connection(1).marker_indices == list(range(turns * 35))
            assert not server.connection(1).audio_done_received
        expected = [i for turn in range(turns) for i in range(turn * 35, turn * 35 + 30)]
        assert recorder.final_indices() == expected
        assert_words_exact(recorder.finals)
        # Each turn's final comes before its finalize end, and that before the next turn.
        kinds = [
            ("end", v.finalize_id) if k == "finalize_end" else ("final", v.text.split()[0])
            for k, v in recorder.events
            if k == "finalize_end" or (k == "transcript" and v.final)
        ]
        assert kinds == [
            x for i in range(turns) for x in (("final", str(i * 35)), ("end", f"t{i}"))
        ]
        await session.stop()


async def test_results_of_the_next_turn_wait_for_the_previous_finalize() -> None:
    async with marker_server() as server:
        # Connection 1 answers audio.done late; connection 2 has a final long before.
        server.set_fault(1, Fault(done_delay_ms=400))
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        push_all(session, speech(20, 0))  # no trailing silence: its final comes with done
        session.finalize("t1")
        push_all(session, utterance(100, 30, 30))  # endpointing ends it on connection 2
        await recorder.wait_for(
            lambda: any(t.final and t.generation == 2 for t in recorder.transcripts), 5, "t2"
        )
        positions = {
            "t1 final": next(
                i
                for i, (k, v) in enumerate(recorder.events)
                if k == "transcript" and v.generation == 1 and v.final
            ),
            "t1 end": next(i for i, (k, _) in enumerate(recorder.events) if k == "finalize_end"),
            "t2 first": next(
                i
                for i, (k, v) in enumerate(recorder.events)
                if k == "transcript" and v.generation == 2
            ),
        }
        assert positions["t1 final"] < positions["t1 end"] < positions["t2 first"]
        assert recorder.finalize_ends[0].latency_ms >= 350  # really was held that long
        assert recorder.final_indices() == [*range(20), *range(100, 130)]
        await session.stop()


# ------------------------------------------------------------------ time


async def test_timestamps_are_exact_across_planned_and_failed_reconnects_and_drops() -> None:
    async with marker_server() as server:
        server.set_fault(2, Fault(close=Close(code=1011, after_bytes=20 * BYTES_PER_FRAME_16K)))
        recorder = Recorder()
        session = StreamingSession(
            fast_settings(
                server.url,
                buffer_max_ms=300,
                backoff=BackoffPolicy(base_s=0.3, cap_s=0.3),
            ),
            recorder,
            rng=lambda: 1.0,  # a 0.3 s outage after the failure
        )
        session.start()
        await recorder.wait_state(CONNECTED, 3)
        push_all(session, utterance(0, 20, 5))  # connection 1: frames 0-24 (fits the buffer)
        session.finalize("t1")
        await recorder.wait_finalized(1, 5)
        await recorder.wait_state(CONNECTED, 3)  # connection 2, pre-warmed
        push_all(session, speech(20, 25))  # frames 25-44; then connection 2 is dropped
        await recorder.wait_for(lambda: bool(recorder.errors), 3, "the failure")
        assert recorder.state is DISCONNECTED
        assert recorder.of("dropped") == []
        # Connection 2's un-finalized frames 25-44 went back to the buffer (200 ms of its
        # 300 ms). During the outage 500 ms more arrive: the oldest audio goes first, the
        # replayed frames 25-44, then new frames 45-64.
        push_all(session, marker([(True, 30), (False, 20)], 45))
        session.finalize("t2")
        await recorder.wait_finalized(2, 5)
        assert recorder.of("dropped") == [
            (100.0, 100.0),
            (100.0, 200.0),
            (100.0, 300.0),
            (100.0, 400.0),
        ]
        assert session.stats.dropped_ms == 400
        assert received_indices(server) == [*range(45), *range(65, 95)]
        assert recorder.final_indices() == [*range(20), *range(65, 75)]
        assert_words_exact(recorder.finals)
        assert session.stats.failure_reconnects == 1 and session.stats.planned_reconnects == 1
        assert session.stats.replayed_ms == 0  # all of it was dropped before it could go
        await session.stop()


async def test_audio_before_start_is_bounded_oldest_dropped_and_reported() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url, buffer_max_ms=500), recorder)
        push_all(session, speech(200, 0))  # 2 s before any connection
        drops = recorder.of("dropped")
        assert drops and drops[-1][1] == 1500
        assert sum(d for d, _ in drops) == 1500
        assert session.stats.dropped_ms == 1500 and session.stats.dropped_frames == 15
        session.start()
        session.finalize("f")
        await recorder.wait_finalized(1, 5)
        assert received_indices(server) == list(range(150, 200))
        assert recorder.final_indices() == list(range(150, 200))
        assert_words_exact(recorder.finals)
        await session.stop()


@pytest.mark.parametrize(
    ("rate", "encoding"),
    [(8000, "mulaw"), (22050, "pcm"), (48000, "alaw")],
)
async def test_other_rates_and_encodings_are_timed_exactly(rate: int, encoding: str) -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_ms=150)))
        recorder = Recorder()
        session = StreamingSession(
            fast_settings(server.url, sample_rate=rate, encoding=encoding), recorder
        )
        session.start()
        pcm = marker([(False, 10), (True, 30), (False, 5)], 0, rate=rate)
        data = pcm if encoding == "pcm" else g711.encode(pcm, encoding)
        bytes_per_sample = 2 if encoding == "pcm" else 1
        await recorder.wait_for(lambda: bool(recorder.errors), 3, "the failure")
        push_all(session, data, chunk_bytes=rate // 10 * bytes_per_sample)
        session.finalize("f")
        await recorder.wait_finalized(1, 5)
        assert recorder.finalize_ends[0].status == "done"
        assert server.connection(2).marker_errors == 0
        assert received_indices(server) == list(range(45))
        assert recorder.final_indices() == list(range(10, 40))
        assert_words_exact(recorder.finals)
        await session.stop()


async def test_multichannel_results_per_channel_and_one_done_each() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(
            fast_settings(server.url, multichannel=True, channels=2), recorder
        )
        session.start()
        left = np.frombuffer(marker([(True, 20), (False, 5)], 0), dtype="<i2")
        right = np.frombuffer(marker([(False, 5), (True, 20)], 1000), dtype="<i2")
        stereo = np.empty(left.size * 2, dtype="<i2")
        stereo[0::2], stereo[1::2] = left, right
        push_all(session, stereo.tobytes(), chunk_bytes=6400)
        session.finalize("f")
        await recorder.wait_finalized(1, 5)
        assert recorder.finalize_ends[0].status == "done"
        by_channel = {
            channel: [
                int(w) for t in recorder.finals if t.channel == channel for w in t.text.split()
            ]
            for channel in (0, 1)
        }
        assert by_channel == {0: list(range(20)), 1: list(range(1005, 1025))}
        assert_words_exact([t for t in recorder.finals if t.channel == 0])
        assert_words_exact([t for t in recorder.finals if t.channel == 1], channel_offset=1000)
        assert server.connection(1).query["channels"] == "2"
        await session.stop()


# ------------------------------------------------------------------ finalize while disconnected


async def test_finalize_during_a_reconnect_is_flushed_then_finalized_there() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_ms=50)))
        recorder = Recorder()
        session = StreamingSession(
            fast_settings(server.url, backoff=BackoffPolicy(base_s=0.2, cap_s=0.2)),
            recorder,
            rng=lambda: 1.0,
        )
        session.start()
        await recorder.wait_for(lambda: bool(recorder.errors), 3, "the failure")
        assert recorder.state is DISCONNECTED
        push_all(session, utterance(0, 20, 5))
        session.finalize("f")
        await recorder.wait_finalized(1, 3)
        outcome = recorder.finalize_ends[0]
        assert outcome.status == "done" and outcome.latency_ms < 1000
        assert server.connection(2).marker_indices == list(range(25))
        assert server.connection(2).audio_done_received
        assert recorder.final_indices() == list(range(20))
        await session.stop()


async def test_finalize_with_no_connection_in_time_still_ends_on_time() -> None:
    async with marker_server() as server:
        server.set_default_fault(Fault(refuse_status=503))
        recorder = Recorder()
        session = StreamingSession(
            fast_settings(
                server.url,
                finalize_timeout_s=0.4,
                backoff=BackoffPolicy(base_s=0.3, cap_s=0.3, max_attempts=50),
            ),
            recorder,
            rng=lambda: 1.0,
        )
        session.start()
        push_all(session, utterance(0, 20, 5))
        session.finalize("f")
        await recorder.wait_finalized(1, 2)
        outcome = recorder.finalize_ends[0]
        assert outcome.status == "no_connection"
        assert 380 <= outcome.latency_ms <= 700
        # The service comes back: the turn's audio is still recognised, cut where the
        # finalize was, and its finalize is not answered twice.
        server.set_default_fault(None)
        push_all(session, utterance(100, 20, 30))  # ended by endpointing
        await recorder.wait_for(lambda: 100 in recorder.final_indices(), 3, "recovery")
        first = next(r for r in server.connections if r.opened)
        assert first.marker_indices == list(range(25)) and first.audio_done_received
        assert recorder.final_indices()[:20] == list(range(20))
        assert len(recorder.finalize_ends) == 1
        await session.stop()


async def test_finalize_with_nothing_to_finalize_ends_at_once() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        await recorder.wait_state(CONNECTED, 3)
        session.finalize("empty")
        await recorder.wait_finalized(1, 1)
        assert recorder.finalize_ends[0].status == "done"
        assert len(server.connections) == 1  # the connection was kept: nothing was sent
        await session.stop()


async def test_update_settings_applies_at_the_next_connection() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        settings = fast_settings(server.url)
        session = StreamingSession(settings, recorder)
        session.start()
        await recorder.wait_state(CONNECTED, 3)
        push_all(session, utterance(0, 20, 5))
        session.update_settings(fast_settings(server.url, language="es", endpointing_ms=500))
        session.finalize("t1")
        await recorder.wait_finalized(1, 5)
        await recorder.wait_state(CONNECTED, 3)
        assert server.connection(1).query["language"] == "en"
        assert server.connection(2).query["language"] == "es"
        assert server.connection(2).query["endpointing"] == "500"
        await session.stop()


# ------------------------------------------------------------------ continuity


@pytest.mark.parametrize("feeder", ["push_audio", "push_audio_and_send"])
async def test_every_frame_arrives_exactly_once_across_planned_and_failed_reconnects(
    feeder: str,
) -> None:
    """A long session through planned turns and every kind of mid-stream failure, with
    audio pushed for the sender task, or sent by the pushing tasks themselves (as the
    extension does) while the sender task handles finalizes and failures."""
    frame = BYTES_PER_FRAME_16K
    senders: list[asyncio.Task[None]] = []

    def feed(session: StreamingSession, data: bytes) -> None:
        if feeder == "push_audio":
            push_all(session, data)
        else:
            senders.extend(send_all(session, data))

    def finalize(session: StreamingSession, finalize_id: str) -> None:
        if feeder == "push_audio":
            session.finalize(finalize_id)
        else:  # in its own task too, after the audio's (as the runtime runs on_data)

            async def on_data() -> None:
                session.finalize(finalize_id)

            senders.append(asyncio.get_running_loop().create_task(on_data()))

    async with marker_server() as server:
        server.set_fault(2, Fault(close=Close(code=1011, after_bytes=20 * frame)))
        server.set_fault(3, Fault(refuse_status=503))
        server.set_fault(5, Fault(error_event=ErrorEvent(after_bytes=20 * frame)))
        server.set_fault(6, Fault(close=Close(code="abort", after_bytes=10 * frame)))
        server.set_fault(7, Fault(close=Close(code=1001, after_bytes=10 * frame)))
        recorder = Recorder()
        sending_tasks: set[asyncio.Task[Any] | None] = set()
        on_audio_sent = recorder.on_audio_sent

        def note_sender(chunk: bytes) -> None:
            sending_tasks.add(asyncio.current_task())
            on_audio_sent(chunk)

        recorder.on_audio_sent = note_sender  # type: ignore[method-assign]
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()

        async def fail_after(data: bytes, errors: int) -> None:
            feed(session, data)
            await recorder.wait_for(lambda: len(recorder.errors) >= errors, 3, f"error {errors}")

        feed(session, utterance(0, 40, 10))  # 1: frames 0-49
        finalize(session, "a")
        await recorder.wait_finalized(1, 5)
        await fail_after(speech(20, 50), 1)  # 2: 50-69, then dropped
        await recorder.wait_for(lambda: len(recorder.errors) >= 2, 3, "503")  # 3: refused
        feed(session, utterance(70, 30, 10))  # 4: 70-109
        finalize(session, "b")
        await recorder.wait_finalized(2, 5)
        await fail_after(speech(20, 110), 3)  # 5: 110-129, error then silence
        await fail_after(speech(10, 130), 4)  # 6: 130-139, TCP abort
        await fail_after(speech(10, 140), 5)  # 7: 140-149, close 1001
        feed(session, utterance(150, 30, 10))  # 8: 150-189
        finalize(session, "c")
        await recorder.wait_finalized(3, 5)
        # 9: 190-229 as live audio arrives (a frame every 10 ms) on an open connection.
        await recorder.wait_state(CONNECTED, 3)
        live = utterance(190, 30, 10)
        for offset in range(0, len(live), frame):
            feed(session, live[offset : offset + frame])
            await asyncio.sleep(0.01)  # real-time arrival, not synchronisation
        finalize(session, "d")
        await recorder.wait_finalized(4, 5)

        # Each connection got each frame at most once, in order; the un-finalized audio
        # of each failed connection went again to the next one, which got it first.
        for record in server.connections:
            assert record.marker_indices == sorted(set(record.marker_indices))
        assert sorted(set(received_indices(server))) == list(range(230))
        assert server.connection(4).marker_indices == list(range(50, 110))
        assert server.connection(8).marker_indices == list(range(110, 190))
        assert server.connection(9).marker_indices == list(range(190, 230))
        # No stale close of a replaced connection started an extra reconnect (10 is the
        # one pre-warmed after the last finalize).
        assert len(server.connections) <= 10
        assert all(not record.audio for record in server.connections[9:])
        assert all(task.done() and task.exception() is None for task in senders)
        # Both senders were at work: the session's own task, and (with
        # push_audio_and_send) the pushing tasks while a connection was open.
        assert any(
            task is not None and task.get_name().startswith("xai-session:sender-")
            for task in sending_tasks
        )
        assert bool(sending_tasks & set(senders)) == (feeder == "push_audio_and_send")
        assert [o.status for o in recorder.finalize_ends] == ["done"] * 4
        assert [e.kind for e in recorder.errors] == [
            "abnormal_close",
            "handshake_refused",
            "vendor_error",
            "abnormal_close",
            "abnormal_close",
        ]
        assert not any(e.fatal for e in recorder.errors)
        # Every spoken frame is a final word exactly once, in order, at its exact time.
        assert recorder.final_indices() == [
            *range(40),
            *range(50, 100),
            *range(110, 180),
            *range(190, 220),
        ]
        assert_words_exact(recorder.finals)
        # Each connection got what went out on it: all of it when it was not dropped,
        # a prefix of it when it was (the rest was in flight, and replayed).
        sent = recorder.sent_by_generation()
        for record in server.connections:
            got = bytes(record.audio)
            if record.number in (1, 4, 8, 9):
                assert got == sent[record.number]
            else:
                assert sent.get(record.number, b"").startswith(got)
        stats = session.stats
        assert stats.bytes_sent == len(recorder.sent)
        assert stats.audio_ms_sent == stats.bytes_sent / frame * 10
        # Re-sent at least: 50-69 to connection 4; 110-119 to 6 and to 7 (each got 10
        # frames before its fault, replayed ones first); 110-129 to 8. How much more
        # depends on when the faults struck the audio in flight.
        assert stats.replayed_ms >= 600
        assert stats.audio_ms_sent == 2300 + stats.replayed_ms
        assert stats.failure_reconnects == 4  # after 2, 3, 5, 6, 7 -> opened 4, 6, 7, 8
        recorder.assert_legal_statuses()
        await session.stop()


async def test_generation_numbers_grow_and_results_name_their_connection() -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        for turn in range(3):
            push_all(session, utterance(turn * 100, 20, 5))
            session.finalize(f"t{turn}")
        await recorder.wait_finalized(3, 5)
        assert [t.generation for t in recorder.finals] == [1, 2, 3]
        assert [g for g, _ in recorder.of("connected")][:3] == [1, 2, 3]
        assert session.stats.generation >= 3
        await asyncio.wait_for(session.stop(), 1)


async def test_two_minutes_pushed_at_once_with_a_finalize_every_20_s() -> None:
    """A flood far faster than real time: no error, no reconnect storm, nothing lost.

    The in-process server needs a while to digest each 20 s turn and accepts the
    next connection only in between; the timeouts are sized for a loaded machine.
    """
    pattern = [(True, 300), (False, 40)] * 5 + [(True, 250), (False, 50)]  # 20 s
    turns = 6
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(
            fast_settings(
                server.url, finalize_timeout_s=30, connect_timeout_s=10, buffer_max_ms=300_000
            ),
            recorder,
        )
        session.start()
        sent: list[int] = []
        spoken: list[int] = []
        for turn in range(turns):
            index = turn * 100_000
            push_all(session, marker(pattern, index))
            session.finalize(f"f{turn}")
            for is_speech, count in pattern:
                sent += range(index, index + count)
                if is_speech:
                    spoken += range(index, index + count)
                index += count
        await recorder.wait_finalized(turns, 30)
        assert [o.status for o in recorder.finalize_ends] == ["done"] * turns
        assert recorder.errors == [] and recorder.of("dropped") == []
        assert received_indices(server) == sent
        assert recorder.final_indices() == spoken
        assert len(server.connections) <= turns + 1
        await session.stop()
