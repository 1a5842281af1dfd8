"""Repair of a failed draining turn: a connection that was sent audio.done and fails before
its transcript.done has its un-finalized audio transcribed again on a short-lived repair
connection, within the finalize's deadline.

The turn used throughout (marker recogniser, endpointing 200 ms):
  A: speech 0-29, its final (speech_final) comes at frame 50;
  B: speech 55-114, one interim (55-104) and no final before audio.done; silence to 119.
So the failed connection's interim text (55-104) misses B's last ten words: only a
repair gets all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from test_engine_support import (
    BYTES_PER_FRAME_16K,
    Recorder,
    assert_clean_stop,
    assert_words_exact,
    marker,
    marker_server,
    push_all,
    utterance,
)
from test_engine_support import (
    fast_settings as support_fast_settings,
)

from stt_server import Close, ErrorEvent, Fault, STTServer
from xai_asr_python.session import ConnState, FinalizeOutcome, StreamingSession
from xai_asr_python.session_types import SessionSettings

TURN = [(True, 30), (False, 25), (True, 60), (False, 5)]
TURN_BYTES = 120 * BYTES_PER_FRAME_16K
SPOKEN_1 = [*range(30), *range(55, 115)]
INTERIM_ONLY_1 = [*range(30), *range(55, 105)]  # what the failed connection had
SPOKEN_2 = list(range(120, 140))  # marker index = user frame: turn 2 follows turn 1


def fast_settings(url: str, **overrides: Any) -> SessionSettings:
    """These tests are about turns that end with audio.done (the server closes, the next
    turn has a connection of its own): finalize_mode audio_done, the planned-close design."""
    return support_fast_settings(url, **{"finalize_mode": "audio_done", **overrides})


def started(server: STTServer, **overrides: object) -> tuple[StreamingSession, Recorder]:
    recorder = Recorder()
    session = StreamingSession(fast_settings(server.url, **overrides), recorder)
    session.start()
    return session, recorder


async def two_turns(session: StreamingSession, recorder: Recorder) -> None:
    """Turn 1, finalized right behind its last frames (one burst, so a failure striking
    at its end is in flight when audio.done goes out), then turn 2 at once."""
    await recorder.wait_state(ConnState.CONNECTED, 3)
    push_all(session, marker(TURN))
    session.finalize("t1")
    push_all(session, utterance(120, 20, 5))
    session.finalize("t2")
    await recorder.wait_finalized(2, 5)


def first_event_index(recorder: Recorder, predicate: Callable[[str, Any], bool]) -> int:
    for i, (kind, value) in enumerate(recorder.events):
        if predicate(kind, value):
            return i
    raise AssertionError("no such event")


def assert_turn_order(recorder: Recorder) -> None:
    """Turn 1's finalize end precedes every result of turn 2."""
    end_1 = first_event_index(recorder, lambda k, v: k == "finalize_end" and v.finalize_id == "t1")
    turn_2 = first_event_index(
        recorder,
        lambda k, v: k == "transcript" and any(int(w) >= 120 for w in v.text.split()),
    )
    assert end_1 < turn_2
    # Nothing of turn 1 after its end.
    for kind, value in recorder.events[end_1:]:
        if kind == "transcript":
            assert all(int(w) >= 120 for w in value.text.split()), value


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(close_before_done=True), "abnormal_close"),
        (Fault(error_event=ErrorEvent(on_audio_done=True, then="close")), "vendor_error"),
        (Fault(error_event=ErrorEvent(on_audio_done=True, then="stay_open")), "vendor_error"),
        (Fault(close=Close(code=1011, after_bytes=TURN_BYTES)), "abnormal_close"),
        (Fault(close=Close(code="abort", after_bytes=TURN_BYTES)), "abnormal_close"),
    ],
    ids=["close-before-done", "error-then-close", "error-then-silence", "close-1011", "tcp-abort"],
)
async def test_a_draining_connection_that_fails_has_its_turn_repaired(
    fault: Fault, kind: str
) -> None:
    async with marker_server() as server:
        server.set_fault(1, fault)
        session, recorder = started(server, finalize_timeout_s=1.0)
        await two_turns(session, recorder)

        first, second = recorder.finalize_ends
        assert (first.finalize_id, first.status, first.repaired) == ("t1", "done", True)
        assert first.latency_ms < 1000
        assert (second.finalize_id, second.status, second.repaired) == ("t2", "done", False)
        # Every spoken frame is a final word exactly once, in order, at i * 10 ms: B's last
        # words too, which the failed connection never reported.
        assert recorder.final_indices() == [*SPOKEN_1, *SPOKEN_2]
        assert_words_exact(recorder.finals)
        assert_turn_order(recorder)
        [error] = recorder.errors
        assert error.kind == kind and not error.fatal and error.retry_in_s is None
        # The repair connection got the audio after A's final, then audio.done.
        [repair] = [r for r in server.connections if r.number != 1 and 119 in r.marker_indices]
        indices = repair.marker_indices
        assert 30 <= indices[0] <= 55 and indices == list(range(indices[0], 120))
        assert repair.audio_done_received
        await repair.wait_ended(2)
        # The current connection was not disturbed: no failure reconnect, still connected.
        assert session.stats.failure_reconnects == 0
        assert session.stats.replayed_ms == (120 - indices[0]) * 10
        assert recorder.state is ConnState.CONNECTED
        recorder.assert_legal_statuses()
        await session.stop()


@pytest.mark.parametrize(
    "repair_fault",
    [
        Fault(refuse_status=503),
        Fault(refuse_status=401),  # would be fatal for the current connection: not here
        Fault(error_event=ErrorEvent(on_audio_done=True, then="close")),
        Fault(close_before_done=True),
    ],
    ids=["refused-503", "refused-401", "error-on-audio-done", "close-before-done"],
)
async def test_when_the_repair_fails_the_turn_ends_failed_as_before(repair_fault: Fault) -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(close_before_done=True))
        # Without prewarm the repair connection is connection 2.
        server.set_fault(2, repair_fault)
        session, recorder = started(server, prewarm=False, finalize_timeout_s=1.0)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        push_all(session, marker(TURN))
        session.finalize("t1")
        await recorder.wait_finalized(1, 3)
        [outcome] = recorder.finalize_ends
        assert (outcome.status, outcome.repaired) == ("failed", False)
        assert outcome.latency_ms < 1000
        # The failed connection's interim text, made final.
        assert recorder.final_indices() == INTERIM_ONLY_1
        assert_words_exact(recorder.finals)
        errors = recorder.errors
        assert len(errors) == 3 and not any(e.fatal for e in errors)
        assert "repair connection" in errors[1].message
        # What the interim text did not cover is reported lost (issue #12), with how much.
        assert errors[2].kind == "audio_dropped" and errors[2].dropped_ms
        assert server.connection(2).number == 2
        # The session goes on: the next turn is normal.
        push_all(session, utterance(120, 20, 5))
        session.finalize("t2")
        await recorder.wait_finalized(2, 3)
        assert recorder.finalize_ends[1].status == "done"
        assert recorder.final_indices() == [*INTERIM_ONLY_1, *SPOKEN_2]
        assert server.connection(3).marker_indices == list(range(120, 145))
        assert not any(e.fatal for e in recorder.errors)
        await session.stop()


async def test_a_repair_that_cannot_finish_by_the_deadline_ends_the_turn_on_time() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(close_before_done=True))
        server.set_fault(2, Fault(handshake_delay_ms=2000))
        session, recorder = started(server, prewarm=False, finalize_timeout_s=0.4)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        push_all(session, marker(TURN))
        session.finalize("t1")
        await recorder.wait_finalized(1, 2)
        [outcome] = recorder.finalize_ends
        assert (outcome.status, outcome.repaired) == ("timeout", False)
        assert 350 <= outcome.latency_ms <= 700
        assert recorder.final_indices() == INTERIM_ONLY_1
        assert not any(e.fatal for e in recorder.errors)
        await session.stop()


async def test_replay_off_means_no_repair() -> None:
    async with marker_server() as server:
        server.set_fault(1, Fault(close_before_done=True))
        session, recorder = started(server, replay_max_ms=0)
        await two_turns(session, recorder)
        assert [(o.status, o.repaired) for o in recorder.finalize_ends] == [
            ("failed", False),
            ("done", False),
        ]
        assert recorder.final_indices() == [*INTERIM_ONLY_1, *SPOKEN_2]
        # Connection 1 and the next turn's connection: no repair connection.
        assert len(server.connections) == 2
        assert server.connection(2).marker_indices == list(range(120, 145))
        assert session.stats.replayed_ms == 0
        await session.stop()


async def test_stop_during_a_repair_is_prompt_and_leaves_nothing() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        server.set_fault(1, Fault(close_before_done=True))
        server.set_fault(2, Fault(ignore_audio_done=True))  # the repair waits for its done
        session, recorder = started(server, prewarm=False, finalize_timeout_s=5.0)
        await recorder.wait_state(ConnState.CONNECTED, 3)
        push_all(session, marker(TURN))
        session.finalize("t1")
        await recorder.wait_for(
            lambda: len(server.connections) >= 2 and server.connection(2).audio_done_received,
            3,
            "the repair's audio.done",
        )
        assert recorder.finalize_ends == []
        await assert_clean_stop(session, server, baseline)
        [outcome] = recorder.finalize_ends
        # The turn is 120 frames of 10 ms: the finalize cut the stream at 1200 ms.
        assert outcome == FinalizeOutcome("t1", "stopped", outcome.latency_ms, False, 1200)
        # The turn's text is not lost at stop: the failed connection's interim, as final.
        assert recorder.final_indices() == INTERIM_ONLY_1
        assert server.connection(2).closed_by == "client"


def test_finalize_outcome_repaired_defaults_to_false() -> None:
    """Additive: an outcome built the old way is not a repaired one."""
    assert FinalizeOutcome("f", "done", 1.0).repaired is False


async def test_multichannel_repair_duplicates_no_word_of_a_channel_already_final() -> None:
    """Two channels: the silent one has no final, so the whole turn is repaired, and the
    speaking channel's words already final on the failed connection are not delivered
    again."""
    frames = sum(count for _, count in TURN)
    left = np.frombuffer(marker(TURN), dtype="<i2")
    right = np.frombuffer(marker([(False, frames)], 1000), dtype="<i2")
    stereo = np.empty(left.size * 2, dtype="<i2")
    stereo[0::2], stereo[1::2] = left, right
    async with marker_server() as server:
        server.set_fault(1, Fault(close_before_done=True))
        session, recorder = started(
            server, multichannel=True, channels=2, prewarm=False, finalize_timeout_s=1.0
        )
        await recorder.wait_state(ConnState.CONNECTED, 3)
        push_all(session, stereo.tobytes(), chunk_bytes=6400)
        session.finalize("t1")
        await recorder.wait_finalized(1, 3)
        [outcome] = recorder.finalize_ends
        assert (outcome.status, outcome.repaired) == ("done", True)
        assert server.connection(2).marker_indices == list(range(frames))
        left_finals = [t for t in recorder.finals if t.channel == 0]
        assert [int(w) for t in left_finals for w in t.text.split()] == SPOKEN_1
        assert_words_exact(left_finals)
        assert not [t for t in recorder.finals if t.channel == 1 and t.text]
        await session.stop()
