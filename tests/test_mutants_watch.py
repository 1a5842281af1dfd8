"""Checks that kill what the mutation run (bench/mutation.py) found surviving in
watch.py: behaviour the engine's tests did not pin. Event by event on the sans-I/O
core (no sockets, no clock), through the core's own API.

The survivor left as equivalent (bench/README.md, "Mutation run" says why):
`probe_answered`'s `conn.probing = False` -> `None` (its one reader tests its truth).
"""

from __future__ import annotations

import logging

import pytest
from test_core_finalize_paths import Script

from xai_asr_python import engine_io as io
from xai_asr_python.protocol import TranscriptDone
from xai_asr_python.session_types import SessionError

LOGGER = "xai_asr_python.session"


def probes(s: Script, generation: int) -> list[io.Probe]:
    return [a for a in s.actions if isinstance(a, io.Probe) and a.generation == generation]


def aborted(s: Script, generation: int) -> bool:
    return any(isinstance(a, io.Abort) and a.generation == generation for a in s.actions)


def errors(s: Script) -> list[SessionError]:
    return [e for e in s.notified("on_error") if isinstance(e, SessionError)]


def opened_quiet(**overrides: object) -> Script:
    """Gen 1 open at t=0, nothing sent yet; the keepalive probes it after 5 s."""
    settings: dict[str, object] = {"keepalive_s": 5.0, "liveness_timeout_s": 1.0}
    s = Script(prewarm=False, **(settings | overrides))
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    return s


def test_a_connection_that_answered_a_ping_is_pinged_again_at_the_next_keepalive() -> None:
    """A pong proves the connection alive for one keepalive period, not for good: the
    next quiet period pings it again, so a connection that dies later is still found."""
    s = opened_quiet()
    s.feed(io.TimerFired(s.at(5.0), ("watch", 1)))
    assert len(probes(s, 1)) == 1
    s.feed(io.ProbeAnswered(s.at(5.1), 1, True))
    s.feed(io.TimerFired(s.at(10.1), ("watch", 1)))
    assert len(probes(s, 1)) == 2
    s.feed(io.ProbeAnswered(s.at(11.2), 1, False))
    assert aborted(s, 1)


def test_a_pong_moves_the_next_keepalive_a_full_period_on() -> None:
    s = opened_quiet()
    s.feed(io.TimerFired(s.at(5.0), ("watch", 1)))
    s.feed(io.ProbeAnswered(s.at(5.5), 1, True))
    s.feed(io.TimerFired(s.at(7.0), ("watch", 1)))
    assert len(probes(s, 1)) == 1  # alive at 5.5: not quiet again before 10.5
    timers = [a for a in s.actions if isinstance(a, io.SetTimer) and a.key == ("watch", 1)]
    assert timers[-1].at == 10.5


def test_a_ping_cut_short_by_the_connection_closing_is_no_verdict() -> None:
    """The socket closed while the ping waited (alive None): its Closed says how it
    ended. The answer alone neither fails nor aborts the connection, and a later
    quiet period is pinged again."""
    s = opened_quiet()
    s.feed(io.TimerFired(s.at(5.0), ("watch", 1)))
    s.feed(io.ProbeAnswered(s.at(5.1), 1, None))
    assert not aborted(s, 1)
    assert errors(s) == []
    s.feed(io.TimerFired(s.at(10.0), ("watch", 1)))
    assert len(probes(s, 1)) == 2


def test_a_ping_waits_for_the_audio_the_vendor_has_not_heard_yet() -> None:
    """2 s of audio went out at t=0 and the vendor said nothing: at t=0.5 it has at most
    heard 0.5 s of it, so the ping's answer may come 1.5 s later than on a quiet line."""
    s = opened_quiet(keepalive_s=0.5)
    s.push(0, 200)
    s.complete_sends(1)
    s.feed(io.TimerFired(s.at(0.5), ("watch", 1)))
    [probe] = probes(s, 1)
    assert probe.timeout_s == pytest.approx(1.0 + 1.5)


def test_a_connection_quiet_too_long_is_pinged_when_speech_starts() -> None:
    s = opened_quiet(probe_quiet_s=1.0, keepalive_s=60.0)
    s.feed(io.TimerFired(s.at(0.5), ("watch", 1)))
    s.at(2.0)
    s.push(0, 1)
    assert probes(s, 1) == []  # pushed, not yet sent
    s.complete_sends(1)
    assert [p.timeout_s for p in probes(s, 1)] == [1.0]


def test_a_stall_is_logged_reported_and_the_connection_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = opened_quiet(stall_timeout_s=3.0)
    s.push(0, 50)
    s.complete_sends(1)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        s.feed(io.TimerFired(s.at(3.0), ("watch", 1)))
    what = "no event for 3 s while speech audio was flowing: the session is dead"
    assert f"gen 1: {what}" in [r.getMessage() for r in caplog.records]
    assert aborted(s, 1)
    assert [(e.kind, e.message) for e in errors(s)] == [("stall", what)]
    assert any(isinstance(a, io.Open) and a.generation == 2 for a in s.actions)


def test_a_dead_ping_is_logged_and_reported_with_how_long_it_waited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The verdict says how long the connection had been quiet before the ping: since
    its latest sign of life (a pong at 5.5 s), not since it opened."""
    s = opened_quiet()
    s.feed(io.TimerFired(s.at(5.0), ("watch", 1)))
    s.feed(io.ProbeAnswered(s.at(5.5), 1, True))
    s.feed(io.TimerFired(s.at(10.5), ("watch", 1)))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        s.feed(io.ProbeAnswered(s.at(11.5), 1, False))
    what = (
        "no answer to a ping within 1.0 s (no sign of life for 5.0 s before it): "
        "the connection is dead"
    )
    assert f"gen 1: {what}" in [r.getMessage() for r in caplog.records]
    assert aborted(s, 1)
    assert [(e.kind, e.message) for e in errors(s)] == [("dead_connection", what)]


def test_no_second_ping_while_one_is_on_its_way() -> None:
    s = opened_quiet()
    s.feed(io.TimerFired(s.at(5.0), ("watch", 1)))
    s.feed(io.TimerFired(s.at(5.5), ("watch", 1)))  # still quiet, the pong not back yet
    assert len(probes(s, 1)) == 1


def test_a_late_dead_ping_does_not_touch_a_turn_already_under_repair(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A draining connection that did not answer by half its finalize timeout has its
    turn repaired on a new connection (the hedge). The ping sent at its audio.done then
    times out: that is no news. It is not declared dead a second time nor dropped; it
    is closed when the repair ends."""
    s = Script(finalize_mode="audio_done", prewarm=False, finalize_timeout_s=2.0)
    s.finalized_turn()
    assert len(probes(s, 1)) == 1  # the turn is committed to gen 1: prove it alive
    s.feed(io.TimerFired(s.at(1.31), ("hedge", 1)))
    assert any(isinstance(a, io.Open) and a.generation == 2 for a in s.actions)  # the repair
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        s.feed(io.ProbeAnswered(s.at(1.35), 1, False))
    assert caplog.records == []
    assert not aborted(s, 1)


def test_a_connection_found_dead_is_watched_no_more() -> None:
    """A dead ping fails gen 1 while a send is still stuck on it (it stays current until
    that send's end says so): the watch timer armed before must not ping the dead
    connection again nor fail it twice."""
    s = opened_quiet()
    s.push(0, 10)
    s.complete_sends(1, keep_last=True)
    s.feed(io.TimerFired(s.at(5.0), ("watch", 1)))
    s.feed(io.ProbeAnswered(s.at(6.0), 1, False))
    assert aborted(s, 1)
    after = s.feed(io.TimerFired(s.at(10.0), ("watch", 1)))
    assert after == []
    assert len(probes(s, 1)) == 1


def closed_with_its_idle_close_in_flight(**overrides: object) -> Script:
    """Gen 1 is closed for idleness at t=2: its audio.done is on its way when the server
    answers transcript.done and closes. Until the send's end is known it stays current,
    closed."""
    s = opened_quiet(idle_close_s=2.0, **({"keepalive_s": 60.0} | overrides))
    s.push(0, 10)
    s.complete_sends(1)
    s.feed(io.TimerFired(s.at(2.0), ("watch", 1)))
    assert isinstance(s.actions[-1], io.SendEndOfAudio)  # the idle close, in flight
    s.feed(io.Received(s.at(2.1), 1, TranscriptDone("", 0.1, 0)))
    s.feed(io.Closed(s.at(2.2), 1, io.CloseInfo(code=1000, reason="")))
    return s


def test_a_connection_that_closed_is_watched_no_more() -> None:
    """The watch timer armed before the close finds nothing to check or arm."""
    s = closed_with_its_idle_close_in_flight()
    assert s.feed(io.TimerFired(s.at(4.0), ("watch", 1))) == []


def test_a_ping_that_times_out_after_the_close_is_no_news(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The keepalive pinged gen 1 as it went idle; the ping's timeout comes after the
    connection closed (done, a planned end): it is not declared dead nor aborted."""
    s = closed_with_its_idle_close_in_flight(keepalive_s=2.0)
    assert len(probes(s, 1)) == 1
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert s.feed(io.ProbeAnswered(s.at(3.0), 1, False)) == []
    assert caplog.records == []
    assert errors(s) == []


def test_a_connection_with_nothing_to_send_for_idle_close_s_is_closed() -> None:
    """No audio for idle_close_s: the session ends it with audio.done (collecting
    what the vendor still holds) rather than let the service drop it silently."""
    s = opened_quiet(idle_close_s=2.0, keepalive_s=60.0)
    s.push(0, 10)
    s.complete_sends(1)
    s.feed(io.TimerFired(s.at(2.0), ("watch", 1)))
    assert any(isinstance(a, io.SendEndOfAudio) and a.generation == 1 for a in s.actions)
