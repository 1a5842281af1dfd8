"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in liveness.py: behaviour the engine's tests did not pin. Event by event on
the sans-I/O core (no sockets, no clock), through the core's own API; what is checked
is the `SessionError` the listener gets (its `kind` and `message` reach the
extension's `error`).

Survivor left as equivalent:
- `watch`: the recheck `now + stall_s / 2` -> `now + stall_s / 3` (sample seed 1): the
  watch only looks more often. Every verdict has its own deadline among the others
  (`since + stall_s` once a look has seen the send blocked or the speech flowing,
  `keepalive_at`, `idle_at`), and a look at most half a stall timeout apart always
  falls inside a stall window, so each verdict comes at the same moment; the extra
  looks find nothing. At the defaults (stall 15 s, keepalive 5 s) the term never even
  wins: the keepalive term is never later than `now + 5 s`. Checked by following the
  core's own watch timer: a send blocked (silence or speech) at ten moments between
  0 and 3.7 s, stall 2 s, is aborted at the same time either way, and an idle close
  denied while a send was in flight comes at the same time either way.
"""

from __future__ import annotations

from test_core_finalize_paths import Script

from xai_asr_python import engine_io as io
from xai_asr_python.session_types import SessionError


def errors(s: Script) -> list[SessionError]:
    return [e for e in s.notified("on_error") if isinstance(e, SessionError)]


def test_a_send_blocked_for_the_stall_timeout_is_reported_as_a_stall() -> None:
    """Silence goes out (no speech: the speech stall cannot fire) and the send never
    completes: the server stopped reading. At the stall timeout the connection is
    aborted; when the send's end is known the error says what happened."""
    s = Script(prewarm=False, standby=False, stall_timeout_s=2.0, keepalive_s=60.0)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.actions += s.core.audio_pushed(s.now, bytes(320))  # 10 ms of digital silence
    s.feed(io.TimerFired(s.at(1.0), ("watch", 1)))
    assert io.Abort(1) not in s.actions
    s.feed(io.TimerFired(s.at(2.0), ("watch", 1)))
    assert io.Abort(1) in s.actions
    s.feed(io.SendCompleted(s.at(2.1), 1, False))
    [error] = errors(s)
    assert (error.kind, error.fatal) == ("stall", False)
    assert error.message == "a send has been blocked for 2 s: the server stopped reading"


def test_the_no_done_error_says_how_long_the_connection_was_waited_for() -> None:
    """audio.done went out at t=2.0; half the 1 s finalize timeout later, with all the
    audio heard, the connection is not answering: the error says 0.5 s, however late in
    the session the turn ended."""
    s = Script(finalize_mode="audio_done", prewarm=False, standby=False)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 30)
    s.complete_sends(1)
    s.feed(io.FinalizeAsked(s.at(2.0), "f"))
    s.complete_sends(1)
    s.feed(io.TimerFired(s.at(2.5), ("hedge", 1)))
    [error] = errors(s)
    assert error.kind == "no_done"
    assert error.message.startswith("no transcript.done 0.5 s after audio.done; ")


def test_while_a_keepalive_ping_is_awaited_the_watch_sleeps() -> None:
    """A quiet connection is pinged at the keepalive (5 s). Its pong or the ping's own
    timeout decides; the watch's next look is the next deadline (a keepalive period on),
    not a 10 ms poll until the pong comes."""
    s = Script(prewarm=False, standby=False, keepalive_s=5.0, liveness_timeout_s=1.0)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    after = s.feed(io.TimerFired(s.at(5.0), ("watch", 1)))
    assert after == [io.Probe(1, 1.0), io.SetTimer(("watch", 1), 10.0)]
