"""Audio older than the replay window, on a connection that fails before a final covers
it: it cannot be heard again, so past the interim text made final it is reported lost
(never silently gone), event by event on the sans-I/O core."""

from __future__ import annotations

from test_core_finalize_paths import FRAME, Script, partial

from xai_asr_python import engine_io as io
from xai_asr_python.reconnect_manager import BackoffPolicy
from xai_asr_python.session_types import SessionError


def fail_after_an_interim(replay_max_ms: int, frames: int, heard: int) -> tuple[Script, int]:
    """`frames` of speech (10 ms each) sent on gen 1; an interim covers the first `heard`;
    then the connection dies with no final (a TCP reset) and gen 2 opens. The script, and
    how many frames gen 2 was sent (the replay; queued, they go out in batches)."""
    s = Script(finalize_mode="audio_done", replay_max_ms=replay_max_ms, prewarm=False)
    s.feed(io.Start(0.0))
    s.connect(1)
    s.push(0, frames)
    s.complete_sends(1)
    interim = partial(0, heard, is_final=False, speech_final=False, end=heard / 100)
    s.feed(io.Received(s.at(frames / 100), 1, interim))
    s.feed(io.Closed(s.at(frames / 100 + 0.1), 1, io.CloseInfo()))
    # The interim text is made final (it will not be heard again).
    [final] = s.finals()
    assert [w.text for w in final.words] == [str(i) for i in range(heard)]
    s.feed(io.TimerFired(s.at(frames / 100 + 0.2), ("backoff", 0)))
    s.connect(2)
    sent = sum(len(a.data) for a in s.complete_sends(2) if isinstance(a, io.Send))
    return s, sent // FRAME


def test_speech_trimmed_from_the_replay_window_is_reported_lost_when_the_connection_fails() -> None:
    # 1 s of speech in a 300 ms window: 0-700 ms fall out of it unacknowledged; the
    # interim covers 0-200 ms. The last 300 ms go to the next connection, first ...
    s, replayed = fail_after_an_interim(replay_max_ms=300, frames=100, heard=20)
    assert replayed == 30
    # ... and what lies between (200-700 ms, 50 frames of speech) is reported, once.
    assert s.core.ledger.lost_spans_ms == [(200.0, 700.0)]
    assert s.core.ledger.lost_ms_by_reason == {"replay_window": 500.0}
    assert s.core.ledger.frames == 50
    errors = [e for e in s.notified("on_error") if isinstance(e, SessionError)]
    [dropped] = [e for e in errors if e.kind == "audio_dropped"]
    assert not dropped.fatal and dropped.dropped_ms == 500.0
    assert "replay window" in dropped.message


def test_with_no_replay_window_a_failure_reports_the_speech_past_the_interim_text() -> None:
    s, replayed = fail_after_an_interim(replay_max_ms=0, frames=50, heard=10)
    assert replayed == 0
    assert s.core.ledger.lost_spans_ms == [(100.0, 500.0)]
    assert s.core.ledger.frames == 40


def test_a_connection_that_fails_for_good_counts_its_window_lost() -> None:
    # No retry left (max_attempts 1): nothing will hear gen 1's window again. The
    # FATAL error says so, and the ledger counts that audio (gave_up), none of it silent.
    s = Script(
        finalize_mode="audio_done",
        prewarm=False,
        backoff=BackoffPolicy(base_s=0.01, cap_s=0.05, max_attempts=1),
    )
    s.feed(io.Start(0.0))
    s.connect(1)
    s.push(0, 30)
    s.complete_sends(1)
    s.feed(io.Closed(s.at(0.4), 1, io.CloseInfo()))
    assert s.core.gave_up
    assert s.core.ledger.lost_ms_by_reason == {"gave_up": 300.0}
    assert s.core.ledger.lost_spans_ms == [(0.0, 300.0)]
    errors = [e for e in s.notified("on_error") if isinstance(e, SessionError)]
    assert [e.fatal for e in errors] == [True]
