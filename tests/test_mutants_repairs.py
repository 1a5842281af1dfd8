"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in repairs.py: behaviour the engine's tests did not pin. Event by event on the
sans-I/O core (no sockets, no clock), through the core's own API.

The survivors left as equivalent, dead code:
- `end`: `repair.repair_ended = True` -> `False`. `end` forgets the repair connection
  in the same call, so no later event, timer or send completion reaches it, and
  nothing between the assignment and the forget reads the flag.
- `end`: the fallback `finish(failed, "failed")` -> another status. Both branches
  before it call `finish` on the failed turn, so `failed.turn_finished` is always
  True there: the line never runs.
- `end`: `Failure(kind="abnormal_close", ...)` -> another kind. The branch needs a
  repair that closed (`ended`) with no failure recorded and no done; a close always
  records one (`ConnectionTracker.closed`: done, planned, or a Failure), and nothing
  closes a repair on purpose before its end: the branch is never taken.
- `sent`: `item is EndOfAudio.REPAIR` -> `is not` (the repair's tracker told
  `audio_done_sent` at its first audio frame instead of at its audio.done). All that
  call does is move the tracker's phase to DRAINING, and a phase is read only by the
  tracker's own transitions (none of which tells STREAMING from DRAINING: created,
  done, fail, close) and by `Conn.usable`, which is asked of the standby alone
  (supervisor `_adopt`, `_after_failure`). A repair's phase is never read.
"""

from __future__ import annotations

from test_core_finalize_paths import Script, partial

from xai_asr_python import engine_io as io
from xai_asr_python.protocol import TranscriptDone
from xai_asr_python.session_types import SessionError


def opened(s: Script) -> list[int]:
    return [a.generation for a in s.actions if isinstance(a, io.Open)]


def under_repair() -> tuple[Script, int]:
    """Gen 1 drains a turn (finalize "f", deadline 2.0) and dies before its done: its
    turn goes to a repair connection, open and sent the turn's audio and audio.done."""
    s = Script(finalize_mode="audio_done", prewarm=False, finalize_timeout_s=2.0)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 30)
    s.feed(io.Received(s.at(0.3), 1, partial(0, 10, is_final=False, speech_final=False, end=0.1)))
    s.feed(io.FinalizeAsked(s.at(0.31), "f"))
    s.complete_sends(1)
    s.feed(io.Closed(s.at(0.4), 1, io.CloseInfo()))
    [repair] = [g for g in opened(s) if g > 1]
    s.at(0.5)
    s.connect(repair)
    s.complete_sends(repair)
    return s, repair


def test_a_repair_past_the_deadline_is_dropped_and_the_turn_ends_timeout() -> None:
    """The repair's transcript.done does not come by the turn's deadline: the turn ends
    "timeout" with gen 1's interim text made final, one more NON_FATAL error, and the
    repair connection, still open, is aborted (it would otherwise stay open)."""
    s, repair = under_repair()
    s.feed(io.TimerFired(s.at(2.31), ("repair", repair)))
    [end] = s.ends()
    assert (end.finalize_id, end.status, end.repaired) == ("f", "timeout", False)
    assert [w.text for t in s.finals() for w in t.words] == [str(i) for i in range(10)]
    assert any(isinstance(a, io.Abort) and a.generation == repair for a in s.actions)
    messages = [e.message for e in s.notified("on_error") if isinstance(e, SessionError)]
    assert (
        f"repair connection (gen {repair}) failed: no transcript.done within the "
        "finalize timeout (2 s)" in messages
    )


def test_a_repair_timer_left_over_from_before_a_crash_does_not_touch_the_new_start() -> None:
    """A crash (a bug in the core) forgets every connection, the repair too, with its
    timer still set. After a new Start, that timer firing is no news: the new session
    streams on, no second FATAL error."""
    s, repair = under_repair()
    s.actions += s.core.crashed(s.at(0.6), RuntimeError("boom"))
    assert s.core.gave_up
    s.feed(io.Start(s.at(1.0)))
    [new] = [g for g in opened(s) if g > repair]
    s.connect(new)
    fatal = [e for e in s.notified("on_error") if isinstance(e, SessionError) and e.fatal]
    assert s.feed(io.TimerFired(s.at(2.31), ("repair", repair))) == []
    assert [e for e in s.notified("on_error") if isinstance(e, SessionError) and e.fatal] == fatal
    assert not s.core.gave_up


def test_a_repaired_turns_connection_is_closed_politely_when_the_server_has_not() -> None:
    """The repair's transcript.done answers the turn: the repair connection, still open,
    is closed politely and bounded (the reason says it drained its turn), not dropped."""
    s, repair = under_repair()
    s.feed(
        io.Received(s.at(0.6), repair, partial(0, 30, is_final=True, speech_final=True, end=0.3))
    )
    s.feed(io.Received(s.at(0.6), repair, TranscriptDone("", 0.3, 0)))
    [end] = s.ends()
    assert (end.finalize_id, end.status, end.repaired) == ("f", "done", True)
    ends = [a for a in s.actions if isinstance(a, (io.Close, io.Abort)) and a.generation == repair]
    assert ends == [io.Close(repair, "drained", 0.5)]


def test_a_repair_timer_fired_a_hair_early_still_ends_the_turn_timeout() -> None:
    """asyncio runs a timer up to its clock's resolution before its time, so the repair
    deadline's timer may be told a moment before the deadline: the turn ends "timeout"
    all the same (a documented FinalizeOutcome status), with the finalize timeout's error."""
    s, repair = under_repair()
    s.feed(io.TimerFired(s.at(2.31 - 1e-9), ("repair", repair)))
    [end] = s.ends()
    assert (end.finalize_id, end.status, end.repaired) == ("f", "timeout", False)
    messages = [e.message for e in s.notified("on_error") if isinstance(e, SessionError)]
    assert (
        f"repair connection (gen {repair}) failed: no transcript.done within the "
        "finalize timeout (2 s)" in messages
    )
