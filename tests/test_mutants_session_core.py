"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in session_core.py: behaviour the engine's tests did not pin. Event by event
on the sans-I/O core (no sockets, no clock), through the core's own API.

The survivor left as equivalent: `_on_received`'s debug line for an event after its
turn ended loses its last argument (a log text: with DEBUG on, logging reports the bad
format on stderr instead of the line; nothing else changes).
"""

from __future__ import annotations

from test_core_finalize_paths import Script

from xai_asr_python import engine_io as io
from xai_asr_python.session_types import SessionError


def test_a_crash_ends_every_open_finalize_failed() -> None:
    """FinalizeOutcome.status is one of done, timeout, no_connection, failed, stopped
    (session_types.py): a turn draining when the core crashed ends "failed" (its audio
    counted lost because the session gave up); one whose audio.done never went out ends
    "no_connection", as at any FATAL error."""
    s = Script(finalize_mode="audio_done", prewarm=False)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 30)
    s.feed(io.FinalizeAsked(s.at(0.3), "draining"))
    s.complete_sends(1)  # gen 1 drains "draining"
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
