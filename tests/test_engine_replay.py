"""The replay window: audio a failed connection was sent but never finalized goes again
to the next connection, so no word is lost or duplicated.

A final result acknowledges the audio up to its end. When the connection that takes
new audio fails, whatever it was sent after its latest final (at most replay_max_ms
of it) is sent first to the next connection. Unlike test_engine_faults.py, audio is
pushed continuously here, the way a live source pushes it: the failure strikes with
audio in flight, and the test never waits for it to be noticed before pushing more.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from test_engine_support import (
    BYTES_PER_FRAME_16K,
    Recorder,
    assert_words_exact,
    marker,
    marker_server,
    push_all,
    speech,
    utterance,
)
from test_engine_support import (
    fast_settings as support_fast_settings,
)

from stt_server import Close, ErrorEvent, Fault, STTServer
from xai_asr_python.audio_buffer import (
    AudioBuffer,
    AudioFrame,
    FinalizeMarker,
    ReplayWindow,
)
from xai_asr_python.protocol import TranscriptPartial, WordTiming
from xai_asr_python.reconnect_manager import BackoffPolicy
from xai_asr_python.session import SessionSettings, StreamingSession
from xai_asr_python.timeline import TICKS_PER_MS, AudioFormat, ConnectionTimeline
from xai_asr_python.utterances import ResultAssembler

PCM16K = AudioFormat(16000, "pcm", 1)
FRAME = BYTES_PER_FRAME_16K

# The spoken stream of the fault tests, 3.8 s of marker frames:
#   A: speech 0-29, its final (speech_final) ends at frame 50;
#   B: speech 55-84, its final ends at frame 105;
#   C: speech 110-259 (1.5 s, only interim results until it ends);
#   D: speech 290-349; silence to 379.
PATTERN = [(True, 30), (False, 25), (True, 30), (False, 25), (True, 150), (False, 30)]
PATTERN += [(True, 60), (False, 30)]
TOTAL_FRAMES = sum(count for _, count in PATTERN)
# The fault strikes in the middle of C, once the server has 130 frames.
FAULT_AT = 130 * FRAME
# Connection 1's latest final ends here: the next connection hears the audio from here.
ACKED_FRAME = 105


def fast_settings(url: str, **overrides: Any) -> SessionSettings:
    """These tests are about turns that end with audio.done (the server closes, the next
    turn has a connection of its own): finalize_mode audio_done, the planned-close design."""
    return support_fast_settings(url, **{"finalize_mode": "audio_done", **overrides})


def spoken(pattern: list[tuple[bool, int]], start: int = 0) -> list[int]:
    indices: list[int] = []
    index = start
    for is_speech, count in pattern:
        if is_speech:
            indices += range(index, index + count)
        index += count
    return indices


async def push_paced(
    session: StreamingSession, data: bytes, chunk_bytes: int = 3200, speed: float = 10.0
) -> None:
    """A live source, `speed` times faster than real time, in 100 ms chunks (at 16 kHz
    mono). Not a synchronisation: the engine is never waited for."""
    for offset in range(0, len(data), chunk_bytes):
        session.push_audio(data[offset : offset + chunk_bytes])
        await asyncio.sleep(0.1 / speed)


def assert_each_connection_in_order(server: STTServer) -> None:
    """No connection got a frame twice or out of order (a replay is never mixed up with
    the frame whose send failed, nor with newer audio)."""
    for record in server.connections:
        indices = record.marker_indices
        assert all(a < b for a, b in itertools.pairwise(indices)), (record.number, indices)
        assert record.marker_errors == 0


def started(server: STTServer, **overrides: object) -> tuple[StreamingSession, Recorder]:
    recorder = Recorder()
    session = StreamingSession(fast_settings(server.url, **overrides), recorder)
    session.start()
    return session, recorder


# ------------------------------------------------------------------ the current connection fails


@pytest.mark.parametrize(
    ("fault", "kind", "idle_pause"),
    [
        (Fault(close=Close(code=1011, after_bytes=FAULT_AT)), "abnormal_close", False),
        (Fault(close=Close(code=1001, after_bytes=FAULT_AT)), "abnormal_close", False),
        (Fault(close=Close(code="abort", after_bytes=FAULT_AT)), "abnormal_close", False),
        (Fault(error_event=ErrorEvent(code=503, after_bytes=FAULT_AT)), "vendor_error", False),
        (
            Fault(error_event=ErrorEvent(after_bytes=FAULT_AT, then="close")),
            "vendor_error",
            False,
        ),
        (Fault(stop_reading_after_bytes=FAULT_AT), "stall", False),
        (Fault(idle_end_after_s=0.2), "stall", True),
    ],
    ids=[
        "close-1011",
        "close-1001",
        "tcp-abort",
        "error-then-silence",
        "error-then-close",
        "back-pressure-stall",
        "server-idle-end-stall",
    ],
)
async def test_no_word_lost_or_duplicated_when_the_current_connection_fails(
    fault: Fault, kind: str, idle_pause: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="xai_asr_python.session")
    async with marker_server() as server:
        server.set_fault(1, fault)
        # A dead session that stays open is found out only when speech flows for the stall
        # timeout without an answer (interim results come every 0.5 s of speech). Audio is
        # then pushed at twice real time, so that happens while audio still flows: an
        # audio.done sent first would make it a draining connection's failure.
        stall = kind == "stall"
        speed = 2.0 if stall else 10.0
        session, recorder = started(server, stall_timeout_s=0.8 if stall else 5.0)
        data = marker(PATTERN)
        if idle_pause:
            # A and B, then the user pauses (no audio at all): the server ends its session
            # silently and ignores everything after.
            await push_paced(session, data[: 110 * FRAME])
            record = await server.wait_for_connection(1, 3)
            await recorder.wait_for(lambda: record.session_end == "idle", 3, "server idle end")
            await push_paced(session, data[110 * FRAME :], speed=speed)
        else:
            await push_paced(session, data, speed=speed)
        session.finalize("f")
        await recorder.wait_finalized(1, 8)

        assert recorder.finalize_ends[0].status == "done"
        [error] = recorder.errors
        assert error.kind == kind and not error.fatal
        # Every spoken frame is a final word exactly once, in order, at i * 10 ms.
        assert recorder.final_indices() == spoken(PATTERN)
        assert_words_exact(recorder.finals)
        assert_each_connection_in_order(server)
        # A and B were final on connection 1: the next connection starts where B's final
        # ends, and gets everything from there.
        assert server.connection(2).marker_indices == list(range(ACKED_FRAME, TOTAL_FRAMES))
        stats = session.stats
        assert stats.failure_reconnects == 1
        assert stats.replayed_ms > 0
        assert stats.dropped_ms == 0
        assert any(
            "gen 1 failed: replaying" in r.getMessage()
            and "ms of un-finalized audio to the next connection" in r.getMessage()
            for r in caplog.records
        )
        recorder.assert_legal_statuses()
        await session.stop()


async def test_two_failures_in_a_row_replay_the_replayed_audio_again() -> None:
    """The connection that got the replay fails too: it replays the audio again."""
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=FAULT_AT)))
        # Connection 2 gets 105.. replayed; it dies 60 frames into it, inside C.
        server.set_fault(2, Fault(error_event=ErrorEvent(after_bytes=60 * FRAME)))
        session, recorder = started(server)
        await push_paced(session, marker(PATTERN))
        session.finalize("f")
        await recorder.wait_finalized(1, 8)
        assert recorder.finalize_ends[0].status == "done"
        assert [e.kind for e in recorder.errors] == ["abnormal_close", "vendor_error"]
        assert recorder.final_indices() == spoken(PATTERN)
        assert_words_exact(recorder.finals)
        assert_each_connection_in_order(server)
        assert server.connection(3).marker_indices == list(range(ACKED_FRAME, TOTAL_FRAMES))
        await session.stop()


async def test_multichannel_replay_duplicates_no_word_of_a_channel_already_final() -> None:
    """The acknowledged point is the earliest of the channels' latest finals: a silent
    channel has none, so everything is replayed, and the words of the speaking channel
    that were already final are not delivered again."""
    left_pattern = [(True, 30), (False, 25), (True, 100), (False, 30)]  # final at 50
    frames = sum(count for _, count in left_pattern)
    left = np.frombuffer(marker(left_pattern), dtype="<i2")
    right = np.frombuffer(marker([(False, frames)], 1000), dtype="<i2")
    stereo = np.empty(left.size * 2, dtype="<i2")
    stereo[0::2], stereo[1::2] = left, right
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=100 * 2 * FRAME)))
        session, recorder = started(server, multichannel=True, channels=2)
        await push_paced(session, stereo.tobytes(), chunk_bytes=6400)
        session.finalize("f")
        await recorder.wait_finalized(1, 8)
        assert recorder.finalize_ends[0].status == "done"
        assert [e.kind for e in recorder.errors] == ["abnormal_close"]
        assert server.connection(2).marker_indices == list(range(frames))
        left_finals = [t for t in recorder.finals if t.channel == 0]
        words = [int(w) for t in left_finals for w in t.text.split()]
        assert words == spoken(left_pattern)
        assert_words_exact(left_finals)
        assert not [t for t in recorder.finals if t.channel == 1 and t.text]
        await session.stop()


async def test_when_the_failure_is_the_last_attempt_the_interim_text_is_kept() -> None:
    """No next connection will come: nothing is replayed, the interim text is made final."""
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=120 * FRAME)))
        session, recorder = started(server, backoff=BackoffPolicy(max_attempts=1))
        push_all(session, speech(120))
        await recorder.wait_for(lambda: any(e.fatal for e in recorder.errors), 3, "fatal")
        # Interim results every 50 frames: 0-99 were heard and are kept.
        assert recorder.final_indices() == list(range(100))
        assert session.stats.replayed_ms == 0
        await session.stop()


# ------------------------------------------------------------------ the window's bound


def conn1_sent_frames(recorder: Recorder) -> int:
    return len(recorder.sent_by_generation()[1]) // FRAME


@pytest.mark.parametrize("replay_max_ms", [300, 0])
async def test_the_window_keeps_the_newest_replay_max_ms(replay_max_ms: int) -> None:
    """A long stretch with no final: only the newest replay_max_ms of it is replayed; the
    rest is counted as trimmed. Interim words older than the replay are made final (they
    will not be heard again); with replay_max_ms=0 that is all of them (the old way)."""
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=150 * FRAME)))
        session, recorder = started(server, replay_max_ms=replay_max_ms)
        push_all(session, speech(200))  # 2 s, no final: no pause, shorter than a chunk
        await recorder.wait_for(lambda: bool(recorder.errors), 3, "the failure")
        push_all(session, marker([(True, 60), (False, 30)], 200))
        session.finalize("f")
        await recorder.wait_finalized(1, 5)
        assert recorder.finalize_ends[0].status == "done"
        sent = conn1_sent_frames(recorder)
        stats = session.stats
        replay_frames = min(sent, replay_max_ms // 10)
        first = sent - replay_frames  # the first frame connection 2 hears
        assert stats.replayed_ms == replay_frames * 10
        # Connection 2 also trims its own window while it is sent audio faster than it
        # finalizes it: trimmed is at least connection 1's un-replayed part.
        if replay_max_ms:
            assert stats.replay_trimmed_ms >= (sent - replay_frames) * 10
        else:
            assert stats.replay_trimmed_ms == 0
        assert server.connection(2).marker_indices == list(range(first, 290))
        # Connection 1's last interim (at frame 150) covered 0-149; those of its words
        # before the replayed audio became final. Frames between 150 and the replay
        # were heard by no one: the only gap.
        assert recorder.final_indices() == [*range(min(150, first)), *range(first, 260)]
        assert_words_exact(recorder.finals)
        assert_each_connection_in_order(server)
        await session.stop()


async def test_long_silence_falls_out_of_the_window_and_is_never_replayed() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=320 * FRAME)))
        session, recorder = started(server, replay_max_ms=500)
        # A final at frame 50, then 2.7 s of silence (no final), then speech.
        await push_paced(session, marker([(True, 30), (False, 300), (True, 60), (False, 30)]))
        session.finalize("f")
        await recorder.wait_finalized(1, 8)
        assert recorder.final_indices() == [*range(30), *range(330, 390)]
        assert_words_exact(recorder.finals)
        stats = session.stats
        assert 0 < stats.replayed_ms <= 500
        assert stats.replay_trimmed_ms >= 2_200  # most of the silence
        assert server.connection(2).marker_indices[0] >= 270
        await session.stop()


# ------------------------------------------------------------------ nothing to replay


async def test_planned_closes_replay_nothing() -> None:
    """Finalize handoffs and an idle close: every frame goes to exactly one connection."""
    async with marker_server() as server:
        session, recorder = started(server, idle_close_s=0.3)
        push_all(session, marker([(True, 100), (False, 10)]))  # no final before audio.done
        session.finalize("t1")
        push_all(session, marker([(True, 100), (False, 10)], 200))
        session.finalize("t2")
        await recorder.wait_finalized(2, 5)
        push_all(session, speech(30, 400))  # then nothing: closed for idleness
        await recorder.wait_for(lambda: 429 in recorder.final_indices(), 3, "the idle close")
        assert recorder.errors == []
        indices = [i for r in server.connections for i in r.marker_indices]
        assert indices == [*range(110), *range(200, 310), *range(400, 430)]
        assert recorder.final_indices() == [*range(100), *range(200, 300), *range(400, 430)]
        assert session.stats.replayed_ms == 0
        assert session.stats.planned_reconnects >= 2
        await session.stop()


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault(error_event=ErrorEvent(code=500, on_audio_done=True)), "failed"),
        (Fault(close_before_done=True), "failed"),
    ],
    ids=["error-on-audio-done", "close-before-done"],
)
async def test_a_draining_connection_that_fails_replays_nothing(fault: Fault, status: str) -> None:
    """Nothing goes to the next connection, which already has newer audio: its interim
    text is made final, as before replay. (A failure, as opposed to no done by the
    deadline, is repaired on a separate connection when replay is on: that is
    test_engine_repair.py; here replay is off for the failures. No done at all is
    repaired too: test_engine_faults.py.)"""
    async with marker_server() as server:
        server.set_fault(1, fault)
        replay_max_ms = 0 if status == "failed" else 20_000
        session, recorder = started(server, finalize_timeout_s=0.5, replay_max_ms=replay_max_ms)
        await push_paced(session, marker([(True, 60), (False, 5)]))
        session.finalize("t1")
        # The next turn keeps coming while connection 1 drains.
        await push_paced(session, utterance(100, 20, 5))
        session.finalize("t2")
        await recorder.wait_finalized(2, 5)
        assert [o.status for o in recorder.finalize_ends] == [status, "done"]
        assert recorder.final_indices() == [*range(50), *range(100, 120)]
        assert server.connection(2).marker_indices == list(range(100, 125))
        assert session.stats.replayed_ms == 0
        await session.stop()


async def test_replay_off_is_the_old_behaviour() -> None:
    """replay_max_ms=0: the failed connection's in-flight audio is not sent again and
    its interim text is made final."""
    async with marker_server() as server:
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=FAULT_AT)))
        session, recorder = started(server, replay_max_ms=0)
        await push_paced(session, marker(PATTERN))
        session.finalize("f")
        await recorder.wait_finalized(1, 8)
        # Connection 2 starts with what connection 1 was never sent (the frame whose send
        # failed at the latest), nothing before it.
        first = server.connection(2).marker_indices[0]
        assert first == conn1_sent_frames(recorder) >= 130
        # C's words that connection 1 heard but never finalized (no interim yet) are lost.
        assert recorder.final_indices() == [
            *range(30),
            *range(55, 85),
            *range(first, 260),
            *range(290, 350),
        ]
        assert_words_exact(recorder.finals)
        stats = session.stats
        assert stats.replayed_ms == 0 and stats.replay_trimmed_ms == 0
        await session.stop()


def test_replay_max_ms_must_not_be_negative() -> None:
    assert SessionSettings(url="ws://127.0.0.1:1", api_key="").replay_max_ms == 20_000
    with pytest.raises(ValueError):
        SessionSettings(url="ws://127.0.0.1:1", api_key="", replay_max_ms=-1)
    settings = fast_settings("ws://127.0.0.1:1", replay_max_ms=2500)
    assert settings.redacted()["replay_max_ms"] == 2500


# ------------------------------------------------------------------ plain data


def pcm_frame(start_ms: int, ms: int, value: int = 1000) -> AudioFrame:
    samples = 16 * ms
    return AudioFrame(
        data=struct.pack(f"<{samples}h", *([value] * samples)),
        start=start_ms * TICKS_PER_MS,
        length=ms * TICKS_PER_MS,
    )


def test_an_acknowledgement_inside_a_frame_cuts_it_on_a_whole_sample() -> None:
    frame = pcm_frame(1000, 100)

    def kept_after(acked_ms: Fraction) -> list[AudioFrame]:
        window = ReplayWindow(PCM16K, max_ms=10_000)
        window.sent(frame)
        window.acknowledge(acked_ms)
        return window.frames()

    [tail] = kept_after(Fraction(30))
    assert (tail.start_ms, tail.duration_ms) == (1030, 70)
    assert tail.data == frame.data[30 * 32 :]
    # Between two samples: rounded up, so nothing before the cut is kept.
    [odd] = kept_after(Fraction(1, 100))
    assert len(odd.data) == len(frame.data) - 2
    assert kept_after(Fraction(100)) == []
    [whole] = kept_after(Fraction(0))
    assert (whole.data, whole.start, whole.length) == (frame.data, frame.start, frame.length)


def test_window_keeps_what_follows_the_acknowledged_point() -> None:
    window = ReplayWindow(PCM16K, max_ms=10_000)
    for k in range(5):
        assert window.sent(pcm_frame(500 + 100 * k, 100)) == 0
    assert window.kept_ms == 500 and window.start_ms == 0
    window.acknowledge(Fraction(250))  # inside the third frame: it is cut there
    assert window.start_ms == 250 and window.kept_ms == 250
    frames = window.frames()
    assert [(f.start_ms, f.duration_ms) for f in frames] == [(750, 50), (800, 100), (900, 100)]
    window.acknowledge(Fraction(100))  # an older final changes nothing
    assert window.kept_ms == 250
    window.acknowledge(Fraction(10_000))  # beyond what was sent: everything
    assert window.kept_ms == 0 and window.frames() == []
    assert window.trimmed_ms == 0


def test_window_is_bounded_to_the_newest_max_ms() -> None:
    window = ReplayWindow(PCM16K, max_ms=250)
    trimmed = [window.sent(pcm_frame(100 * k, 100)) / TICKS_PER_MS for k in range(4)]
    assert trimmed == [0, 0, 50, 100]
    assert window.kept_ms == 250 and window.trimmed_ms == 150
    assert [f.start_ms for f in window.frames()] == [150, 200, 300]
    assert window.take() and window.kept_ms == 0 and window.frames() == []
    off = ReplayWindow(PCM16K, max_ms=0)
    assert off.sent(pcm_frame(0, 100)) == 0 and off.frames() == []


def test_speech_trimmed_out_of_the_window_is_remembered_until_a_final_covers_it() -> None:
    # Frames at user 1000 ms on: speech, speech, silence, speech (100 ms each), in a
    # 150 ms window. What falls out un-acknowledged cannot be replayed: its speech (and
    # only its speech) is what a failure would lose.
    window = ReplayWindow(PCM16K, max_ms=150)
    for k, loud in enumerate((True, True, False, True)):
        window.sent(pcm_frame(1000 + 100 * k, 100, 8000 if loud else 0))
    # Trimmed: connection 0-250 ms = user 1000-1250 (two speech frames, half the silence).
    window.acknowledge(Fraction(50))  # a final covers the first 50 ms
    # Its frames: the two speech frames, each counted once (the silence is no loss).
    assert window.take_trimmed_speech() == [(1050 * TICKS_PER_MS, 1200 * TICKS_PER_MS, 2)]
    assert window.take_trimmed_speech() == []  # taken once
    quiet = ReplayWindow(PCM16K, max_ms=100)
    for k in range(3):
        quiet.sent(pcm_frame(100 * k, 100, 0))
    assert quiet.trimmed_ms == 200 and quiet.take_trimmed_speech() == []
    covered = ReplayWindow(PCM16K, max_ms=100)
    for k in range(3):
        covered.sent(pcm_frame(100 * k, 100, 8000))
    covered.acknowledge(Fraction(200))  # finals reached past everything trimmed
    assert covered.take_trimmed_speech() == []


def test_without_a_window_all_speech_sent_waits_for_a_final() -> None:
    off = ReplayWindow(PCM16K, max_ms=0)
    for k, loud in enumerate((True, True, False, True)):
        off.sent(pcm_frame(100 * k, 100, 8000 if loud else 0))
    off.acknowledge(Fraction(150))
    assert off.take_trimmed_speech() == [
        (150 * TICKS_PER_MS, 200 * TICKS_PER_MS, 2),
        (300 * TICKS_PER_MS, 400 * TICKS_PER_MS, 1),
    ]


def test_requeue_goes_first_in_order_and_the_bound_drops_the_oldest() -> None:
    buffer = AudioBuffer(PCM16K, max_ms=1000)
    for _ in range(3):
        buffer.push(b"\x00\x01" * 1600)  # 100 ms each, at 0, 100, 200
    sent = [buffer.pop() for _ in range(3)]  # sent on a connection that then failed
    buffer.push(b"\x00\x01" * 1600)  # newer audio, at 300
    buffer.mark_finalize("f")
    buffer.max_ms = 250
    assert all(isinstance(f, AudioFrame) for f in sent)
    report = buffer.requeue(sent)  # type: ignore[arg-type]
    # 400 ms in a 250 ms buffer: the oldest (replayed) audio goes first, and is reported.
    assert report is not None and (report.dropped_ms, report.frames) == (200, 2)
    items = list(buffer)
    assert [i.start_ms for i in items if isinstance(i, AudioFrame)] == [200, 300]
    assert isinstance(items[-1], FinalizeMarker)
    assert buffer.queued_ms == 200 and buffer.requeue([]) is None


def test_conn_to_user_ms_follows_the_stretches_sent() -> None:
    timeline = ConnectionTimeline(16000, 0)
    timeline.record_sent(1000 * TICKS_PER_MS, 100 * TICKS_PER_MS)
    timeline.record_sent(1500 * TICKS_PER_MS, 100 * TICKS_PER_MS)  # audio dropped in between
    assert timeline.conn_to_user_ms(Fraction(50)) == 1050
    assert timeline.conn_to_user_ms(Fraction(100), end=True) == 1100
    assert timeline.conn_to_user_ms(Fraction(100)) == 1500
    assert timeline.conn_to_user_ms(Fraction(150)) == 1550


def partial(first: int, count: int, *, is_final: bool = False) -> TranscriptPartial:
    words = tuple(WordTiming(str(i), i / 100, i / 100 + 0.01) for i in range(first, first + count))
    return TranscriptPartial(
        text=" ".join(w.text for w in words),
        words=words,
        is_final=is_final,
        speech_final=False,
        start_s=first / 100,
        duration_s=count / 100,
        channel=None,
    )


def test_salvage_before_keeps_only_the_interim_words_before_the_replay() -> None:
    assembler = ResultAssembler()
    assembler.on_partial(partial(0, 50))
    [result] = assembler.salvage(lambda s: s <= 0.3)
    assert result.final and result.text == " ".join(str(i) for i in range(30))
    assert result.end_s == pytest.approx(0.30)
    # All of it after the replay's start: nothing is made final.
    assembler = ResultAssembler()
    assembler.on_partial(partial(0, 50))
    assert assembler.salvage(lambda s: s <= 0.0) == []
    # All of it before: the interim as it was.
    assembler = ResultAssembler()
    assembler.on_partial(partial(0, 50))
    [whole] = assembler.salvage(lambda s: True)
    assert whole.text == partial(0, 50).text
