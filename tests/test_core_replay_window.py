"""Audio older than the replay window, on a connection that fails before a final covers
it: it cannot be heard again, so past the interim text made final it is reported lost
(never silently gone), event by event on the sans-I/O core."""

from __future__ import annotations

from test_core_finalize_paths import Script, partial

from xai_asr_python import engine_io as io
from xai_asr_python.session_types import SessionError


def test_speech_trimmed_from_the_replay_window_is_reported_lost_when_the_connection_fails() -> (
    None
):
    # 1 s of speech on gen 1, in a 300 ms window: 0-700 ms fall out of it unacknowledged.
    # The vendor's interim covers 0-200 ms; then the connection dies with no final.
    s = Script(finalize_mode="audio_done", replay_max_ms=300, prewarm=False)
    s.feed(io.Start(0.0))
    s.connect(1)
    s.push(0, 100)
    s.complete_sends(1)
    s.feed(io.Received(s.at(1.0), 1, partial(0, 20, is_final=False, speech_final=False, end=0.2)))
    s.feed(io.Closed(s.at(1.1), 1, io.CloseInfo()))  # TCP reset: a failure
    # The interim text is made final (it will not be heard again) ...
    [final] = s.finals()
    assert [w.text for w in final.words] == [str(i) for i in range(20)]
    # ... the last 300 ms go to the next connection, first ...
    s.feed(io.TimerFired(s.at(1.2), ("backoff", 0)))
    s.connect(2)
    replayed = [a for a in s.complete_sends(2) if isinstance(a, io.Send)]
    assert len(replayed) == 30
    # ... and what lies between (200-700 ms, 50 frames of speech) is reported, once.
    assert s.core.ledger.lost_spans_ms == [(200.0, 700.0)]
    assert s.core.ledger.lost_ms_by_reason == {"replay_window": 500.0}
    assert s.core.ledger.frames == 50
    errors = [e for e in s.notified("on_error") if isinstance(e, SessionError)]
    [dropped] = [e for e in errors if e.kind == "audio_dropped"]
    assert not dropped.fatal and dropped.dropped_ms == 500.0
    assert "replay window" in dropped.message


def test_with_no_replay_window_a_failure_reports_the_speech_past_the_interim_text() -> None:
    s = Script(finalize_mode="audio_done", replay_max_ms=0, prewarm=False)
    s.feed(io.Start(0.0))
    s.connect(1)
    s.push(0, 50)
    s.complete_sends(1)
    s.feed(io.Received(s.at(0.6), 1, partial(0, 10, is_final=False, speech_final=False, end=0.1)))
    s.feed(io.Closed(s.at(0.7), 1, io.CloseInfo()))
    [final] = s.finals()
    assert [w.text for w in final.words] == [str(i) for i in range(10)]
    assert s.core.ledger.lost_spans_ms == [(100.0, 500.0)]
    assert s.core.ledger.frames == 40
    s.feed(io.TimerFired(s.at(0.8), ("backoff", 0)))
    s.connect(2)
    assert not [a for a in s.complete_sends(2) if isinstance(a, io.Send)]  # nothing replayed
