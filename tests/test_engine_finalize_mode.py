"""finalize_mode against the local server speaking the live wire (and its older ways).

xAI's `finalize` ends the utterance and keeps the connection; `audio.done`
closes it. `auto` starts with finalize and falls back to audio.done for good
when the service refuses finalize or does not answer it in time
(shared/docs/xai-stt-protocol.md, "Session model").
"""

from __future__ import annotations

import pytest
from test_engine_support import (
    Recorder,
    assert_clean_stop,
    assert_words_exact,
    engine_leftovers,
    fast_settings,
    marker_server,
    push_all,
    utterance,
)

from stt_server import Close, Fault
from xai_asr_python.session import ConnState, StreamingSession

FRAME = 320  # bytes of one 10 ms marker frame


async def _turns(
    session: StreamingSession, recorder: Recorder, turns: int, *, speech: int = 30
) -> list[int]:
    """`turns` turns of `speech` frames and 10 of silence, each finalized and answered
    before the next; marker index = user frame. The spoken indices."""
    spoken: list[int] = []
    per_turn = speech + 10
    for turn in range(turns):
        push_all(session, utterance(turn * per_turn, speech, 10))
        session.finalize(f"t{turn}")
        await recorder.wait_finalized(turn + 1, 5)
        spoken += range(turn * per_turn, turn * per_turn + speech)
    return spoken


def _assert_answered_once_on_time(recorder: Recorder, turns: int, timeout_ms: float) -> None:
    ends = recorder.finalize_ends
    assert [o.finalize_id for o in ends] == [f"t{i}" for i in range(turns)]
    assert all(o.status == "done" for o in ends), ends
    assert all(o.latency_ms <= timeout_ms for o in ends), ends


async def test_auto_turns_share_one_connection_and_every_word_comes_once() -> None:
    async with marker_server() as server:
        baseline = engine_leftovers(set())
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)  # auto
        session.start()
        await recorder.wait_state(ConnState.CONNECTED, 5)
        spoken = await _turns(session, recorder, 5)
        assert len(server.connections) == 1, "no reconnect and no standby"
        record = server.connection(1)
        assert record.finalizes_received == 5 and not record.audio_done_received
        assert recorder.final_indices() == spoken
        assert_words_exact(recorder.finals)  # exact times, no overlap
        # One final per utterance, each before its finalize's end.
        kinds = [
            "end" if k == "finalize_end" else "final"
            for k, v in recorder.events
            if k == "finalize_end" or (k == "transcript" and v.final)
        ]
        assert kinds == ["final", "end"] * 5
        _assert_answered_once_on_time(recorder, 5, 1000)
        assert recorder.errors == []
        await assert_clean_stop(session, server, baseline)


@pytest.mark.parametrize("wire_fault", ["refuse", "ignore"])
async def test_auto_falls_back_to_audio_done_for_good(wire_fault: str) -> None:
    """An older deployment refuses finalize (an error without code, the connection stays
    open) or never answers it: the finalize is still answered on time by audio.done,
    nothing is lost or doubled, and every later turn has a connection of its own."""
    async with marker_server() as server:
        server.finalize = wire_fault
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        await recorder.wait_state(ConnState.CONNECTED, 5)
        spoken = await _turns(session, recorder, 3)
        assert recorder.final_indices() == spoken
        assert_words_exact(recorder.finals)
        _assert_answered_once_on_time(recorder, 3, 1000)
        # One finalize was tried, then audio.done on every connection.
        assert server.connection(1).finalizes_received == 1
        assert sum(c.finalizes_received for c in server.connections) == 1
        assert all(c.audio_done_received for c in server.connections[:3])
        assert recorder.errors == []
        await session.stop()


async def test_explicit_finalize_mode_tries_finalize_every_turn() -> None:
    async with marker_server() as server:
        server.finalize = "refuse"
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url, finalize_mode="finalize"), recorder)
        session.start()
        await recorder.wait_state(ConnState.CONNECTED, 5)
        spoken = await _turns(session, recorder, 3)
        assert recorder.final_indices() == spoken
        _assert_answered_once_on_time(recorder, 3, 1000)
        assert sum(c.finalizes_received for c in server.connections) == 3
        await session.stop()


@pytest.mark.parametrize("mode", ["auto", "audio_done"])
@pytest.mark.parametrize("wire", ["live", "legacy"])
async def test_every_word_once_with_either_wire(wire: str, mode: str) -> None:
    async with marker_server(wire=wire) as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url, finalize_mode=mode), recorder)
        session.start()
        await recorder.wait_state(ConnState.CONNECTED, 5)
        spoken = await _turns(session, recorder, 3)
        assert recorder.final_indices() == spoken
        assert_words_exact(recorder.finals)
        _assert_answered_once_on_time(recorder, 3, 1000)
        await session.stop()


@pytest.mark.parametrize("done_text", ["empty", "whole", "pending"])
@pytest.mark.parametrize("utterance_final", ["restate", "tail"])
async def test_a_long_utterance_cut_by_audio_done_comes_once(
    utterance_final: str, done_text: str
) -> None:
    """A 6 s utterance (chunk finals on the way) finalized mid-speech with audio.done:
    the chunks locked so far, the tail and the done, whatever their shape, give each
    word once."""
    async with marker_server(utterance_final=utterance_final, done_text=done_text) as server:
        recorder = Recorder()
        settings = fast_settings(server.url, finalize_mode="audio_done")
        session = StreamingSession(settings, recorder)
        session.start()
        await recorder.wait_state(ConnState.CONNECTED, 5)
        push_all(session, utterance(0, 600, 0))
        session.finalize("t0")
        await recorder.wait_finalized(1, 5)
        assert recorder.final_indices() == list(range(600))
        assert len([t for t in recorder.finals if t.text]) == 1, "one final per utterance"
        await session.stop()


async def test_a_connection_cut_between_a_chunk_final_and_the_utterance_final() -> None:
    """The locked words come once (made final when the connection dies), and only the
    audio after the lock is sent again."""
    async with marker_server() as server:
        # 6 s of speech: chunk finals lock about every 3 s; the cut comes at 4.5 s.
        server.set_fault(1, Fault(close=Close(code=1011, after_bytes=450 * FRAME)))
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url, finalize_timeout_s=3), recorder)
        session.start()
        await recorder.wait_state(ConnState.CONNECTED, 5)
        push_all(session, utterance(0, 600, 30))
        session.finalize("t0")
        await recorder.wait_finalized(1, 5)
        assert recorder.final_indices() == list(range(600))
        first = server.connection(1)
        [locked] = [e for e in first.events_sent if e.get("is_final") and e.get("text")]
        locked_end = round((locked["start"] + locked["duration"]) * 100)
        assert 0 < locked_end < 450
        # The second connection heard the audio after the lock, not before it.
        assert server.connection(2).marker_indices[0] == locked_end
        assert_words_exact(recorder.finals)
        await session.stop()


async def test_the_vendor_session_id_comes_with_the_connected_status(caplog) -> None:
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        with caplog.at_level("INFO", logger="xai_asr_python"):
            session.start()
            await recorder.wait_state(ConnState.CONNECTED, 5)
        vendor_session = server.connection(1).session_id
        assert vendor_session
        [connected] = [s for s in recorder.statuses if s[0] is ConnState.CONNECTED]
        assert vendor_session in connected[3]
        assert any(vendor_session in r.getMessage() for r in caplog.records)
        await session.stop()
