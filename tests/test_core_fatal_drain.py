"""A draining connection that fails after the session gave up (FATAL) opens nothing: no
repair comes after a FATAL error. Its turn ends failed, and the audio past its interim
text is reported lost (gave_up), event by event on the sans-I/O core."""

from __future__ import annotations

from test_core_finalize_paths import Script, partial

from xai_asr_python import engine_io as io
from xai_asr_python.protocol import Failure


def test_a_drain_that_fails_after_a_fatal_error_is_not_repaired() -> None:
    s = Script(finalize_mode="audio_done", prewarm=False, standby=False)
    s.feed(io.Start(0.0))
    s.connect(1)
    s.push(0, 30)
    s.complete_sends(1)
    s.feed(io.Received(s.at(0.31), 1, partial(0, 10, is_final=False, speech_final=False, end=0.1)))
    s.feed(io.FinalizeAsked(s.at(0.32), "f"))
    sent = s.complete_sends(1)
    assert isinstance(sent[-1], io.SendEndOfAudio)  # gen 1 drains its turn
    s.push(30, 5)  # the next turn's audio asks for a connection: gen 2
    assert any(isinstance(a, io.Open) and a.generation == 2 for a in s.actions)
    refused = Failure(
        kind="handshake_refused",
        message="the server refused the connection (HTTP 401)",
        vendor_code="401",
        fatal=True,
    )
    s.feed(io.OpenFailed(s.at(0.4), 2, refused))
    assert s.core.gave_up
    opened = len([a for a in s.actions if isinstance(a, io.Open)])
    # gen 1 dies before its transcript.done: nothing may open now, not even a repair.
    s.feed(io.Closed(s.at(0.45), 1, io.CloseInfo()))
    assert len([a for a in s.actions if isinstance(a, io.Open)]) == opened
    [end] = s.ends()
    assert end.finalize_id == "f" and end.status == "failed"
    # Its interim text is made final; the speech past it (100-300 ms) is counted lost
    # for the reason the session gave up, and told (on_audio_dropped), not silently gone.
    assert [w.text for t in s.finals() for w in t.words] == [str(i) for i in range(10)]
    assert 200.0 in s.notified("on_audio_dropped")
    assert s.core.ledger.lost_ms_by_reason == {"gave_up": 250.0}  # with the 50 ms unsent
