"""The session engine against the real local server: turns, reconnects, order, time."""

from __future__ import annotations

import asyncio

from test_engine_support import (
    Recorder,
    assert_clean_stop,
    fast_settings,
    marker_server,
    push_all,
    received_indices,
    speech_indices,
    utterance,
)

from xai_asr_python.session import ConnState, StreamingSession


async def test_many_utterances_finalized_one_by_one_are_all_transcribed() -> None:
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        recorder = Recorder()
        session = StreamingSession(fast_settings(server.url), recorder)
        session.start()
        index = 0
        expected: list[int] = []
        for turn in range(6):
            push_all(session, utterance(index, speech_frames=20, silence_frames=5))
            expected += list(range(index, index + 20))
            index += 25
            session.finalize(f"turn-{turn}")
            await recorder.wait_finalized(turn + 1, timeout=5)
        assert [o.status for o in recorder.finalize_ends] == ["done"] * 6
        assert [o.finalize_id for o in recorder.finalize_ends] == [f"turn-{i}" for i in range(6)]
        assert recorder.final_indices() == expected
        assert recorder.errors == []
        # Every audio byte reached the server exactly once, in order.
        assert received_indices(server) == list(range(index))
        assert speech_indices(server) == expected
        assert bytes(recorder.sent) == b"".join(bytes(r.audio) for r in server.connections)
        recorder.assert_legal_statuses()
        await assert_clean_stop(session, server, baseline)
        assert recorder.state is ConnState.DISCONNECTED
