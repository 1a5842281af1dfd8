"""A bug in the core (an exception from `handle`) ends the session loudly: one FATAL
error, every connection aborted and forgotten, nothing of them delivered after it, and
a Start after it opens one fresh connection (event by event, no sockets)."""

from __future__ import annotations

from test_core_finalize_paths import Script, partial

from xai_asr_python import engine_io as io
from xai_asr_python.session_types import SessionError


def test_a_crash_aborts_every_connection_and_nothing_of_them_comes_after_the_fatal() -> None:
    s = Script(finalize_mode="audio_done")
    s.feed(io.Start(0.0))
    s.connect(1)
    s.push(0, 30)
    s.complete_sends(1)
    s.feed(io.FinalizeAsked(s.at(0.3), "f"))
    out = s.core.crashed(s.at(0.31), RuntimeError("boom"))
    s.actions += out
    assert io.Abort(1) in out
    [fatal] = [e for e in s.notified("on_error") if isinstance(e, SessionError)]
    assert fatal.fatal and "boom" in fatal.message
    [end] = s.ends()  # the finalize ends at once, not at its deadline
    assert end.finalize_id == "f" and end.status != "done"
    assert s.core.gave_up
    # The aborted connection's last words arrive: nobody hears them now.
    heard = len(s.notified("on_transcript"))
    s.feed(io.Received(s.at(0.4), 1, partial(0, 30, is_final=True, speech_final=True, end=0.3)))
    assert len(s.notified("on_transcript")) == heard
    # A Start after the FATAL opens one connection; stop aborts only that one.
    opened = s.feed(io.Start(s.at(1.0)))
    assert [a.generation for a in opened if isinstance(a, io.Open)] == [2]
    stopped = s.feed(io.StopAsked(s.at(1.1)))
    assert [a.generation for a in stopped if isinstance(a, io.Abort)] == [2]
