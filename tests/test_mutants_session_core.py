"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in session_core.py: behaviour the engine's tests did not pin. Event by event
on the sans-I/O core (no sockets, no clock), through the core's own API.

The survivors left as equivalent, log texts no contract reads:
- `_on_received`'s debug line for an event after its turn ended loses its last argument
  (with DEBUG on, logging reports the bad format on stderr instead of the line; nothing
  else changes), or its text is changed (sample seed 1).
- `_refuse_audio`'s warning for audio after a FATAL error, changed to capitals (sample
  seed 1): that audio is counted lost by `push_after_fatal` (the ledger, "gave_up"),
  and the FATAL error before it already said nothing more is transcribed.
"""

from __future__ import annotations

from test_core_finalize_paths import Script

from xai_asr_python import engine_io as io
from xai_asr_python.session_types import FinalizeOutcome, SessionError


def test_a_crash_ends_every_open_finalize_failed() -> None:
    """FinalizeOutcome.status is one of done, timeout, no_connection, failed, stopped
    (session_types.py): a turn draining when the core crashed ends "failed" (its audio
    counted lost because the session gave up); one whose audio.done never went out ends
    "no_connection", as at any FATAL error."""
    s = Script(finalize_mode="audio_done", prewarm=False)
    s.finalized_turn("draining", 0.3)  # gen 1 drains "draining"
    s.push(30, 10)  # the next turn's audio waits for gen 2
    s.feed(io.FinalizeAsked(s.at(0.4), "waiting"))
    s.actions += s.core.crashed(s.at(0.5), RuntimeError("boom"))
    assert [(e.finalize_id, e.status) for e in s.ends()] == [
        ("draining", "failed"),
        ("waiting", "no_connection"),
    ]
    [fatal] = [e for e in s.notified("on_error") if isinstance(e, SessionError)]
    assert fatal.fatal and fatal.kind == "internal"
    assert set(s.core.ledger.lost_ms_by_reason) == {"gave_up"}


def test_a_close_tells_the_vendors_reason_in_the_error() -> None:
    """README: the `vendor_info` of each error says what the vendor answered. The server
    closes gen 1 with 1011 and a reason: the NON_FATAL abnormal_close error carries that
    code and that text."""
    s = Script(finalize_mode="audio_done")
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 10)
    s.complete_sends(1)
    s.feed(io.Closed(s.at(0.2), 1, io.CloseInfo(code=1011, reason="overloaded, try later")))
    [error] = [e for e in s.notified("on_error") if isinstance(e, SessionError)]
    assert (error.kind, error.fatal) == ("abnormal_close", False)
    assert (error.vendor_code, error.vendor_message) == ("1011", "overloaded, try later")


def test_a_finalize_after_stop_tells_where_the_audio_ended() -> None:
    """A finalize asked after stop() is answered "stopped" (on a later loop turn), and
    its outcome still says where it cut the user's audio: the 300 ms pushed before it
    (the extension's closing final spans up to that position)."""
    s = Script(finalize_mode="audio_done")
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 30)
    s.feed(io.StopAsked(s.at(0.3)))
    [defer] = [a for a in s.feed(io.FinalizeAsked(s.at(0.31), "late")) if isinstance(a, io.Defer)]
    s.feed(io.DeferredDue(s.at(0.32), defer.generation, defer.outcome))
    assert s.ends() == [FinalizeOutcome("late", "stopped", 0.0, position_ms=300)]
