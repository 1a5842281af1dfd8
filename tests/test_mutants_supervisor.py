"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in supervisor.py: behaviour the engine's tests did not pin. Event by event on
the sans-I/O core (no sockets, no clock), through the core's own API.

The survivor left as equivalent (sample seed 1): `__init__`'s `_connect_reason =
"start"` -> `"START"`. The reason is read only by `_go_live`, which counts a connection
a failure reconnect for "failure" and a planned one for "planned" or "lazy": "start"
and "START" are neither (and `start()` sets the reason before any connection goes live).
"""

from __future__ import annotations

import pytest
from test_core_finalize_paths import FRAME, Script

from xai_asr_python import engine_io as io
from xai_asr_python.session_types import SessionError


def errors(s: Script) -> list[SessionError]:
    return [e for e in s.notified("on_error") if isinstance(e, SessionError)]


def opened(s: Script) -> list[int]:
    return [a.generation for a in s.actions if isinstance(a, io.Open)]


def dead_with_its_standby_open() -> Script:
    """Gen 1 streams speech (its standby, gen 2, opens at the first speech and is open);
    the ping sent when that speech started after a quiet spell goes unanswered: gen 1 is
    dead."""
    s = Script(
        finalize_mode="audio_done",
        standby=True,
        probe_quiet_s=0.5,
        liveness_timeout_s=1.0,
    )
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.at(1.0)
    s.push(0, 10)
    s.complete_sends(1)
    assert opened(s) == [1, 2]  # the standby
    assert any(isinstance(a, io.Probe) and a.generation == 1 for a in s.actions)
    s.connect(2)
    s.feed(io.ProbeAnswered(s.at(2.0), 1, False))
    return s


def test_a_dead_connection_hands_its_audio_to_the_open_standby_at_once() -> None:
    """README, Liveness: a dead current connection's window goes to the standby at once:
    no backoff, no new handshake; the error says so."""
    s = dead_with_its_standby_open()
    assert opened(s) == [1, 2]  # no third connection
    [error] = errors(s)
    assert error.kind == "dead_connection" and not error.fatal
    assert error.retry_in_s == 0.0
    assert error.message.endswith("; switching to the standby connection (gen 2)")
    assert s.notified("on_connected") == [1, 2]  # gen 2 takes over, no handshake
    resent = s.complete_sends(2)
    assert resent and all(isinstance(a, io.Send) for a in resent)  # gen 1's window, replayed


def test_switching_to_the_standby_after_a_failure_counts_as_a_failure_reconnect() -> None:
    """vendor_metrics (README): the switch replaces a failed connection, so it is a
    failure reconnect, not a planned one."""
    s = dead_with_its_standby_open()
    stats = s.core.stats
    assert (stats.failure_reconnects, stats.planned_reconnects) == (1, 0)
    assert stats.connections_opened == 2


def test_the_connect_delay_is_told_in_milliseconds() -> None:
    """The `connect_delay` metric (README): ms from starting a connection attempt to its
    transcript.created."""
    s = Script(finalize_mode="audio_done")
    s.feed(io.Start(s.at(1.0)))
    s.feed(io.Opened(s.at(1.25), 1))
    [(generation, delay_ms)] = [
        a.args for a in s.actions if isinstance(a, io.Notify) and a.method == "on_connected"
    ]
    assert generation == 1 and delay_ms == pytest.approx(250.0)


def settling() -> Script:
    """Gen 1 streams; a send fails under it (the socket broke) and no close has come
    yet: the core waits for the reader to see it, bounded by the ("settle", 1) timer."""
    s = Script(finalize_mode="audio_done", prewarm=False)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 10)
    s.actions += s.core.send_completed(s.at(0.1), 1, False)
    assert io.SetTimer(("settle", 1), 1.1) in s.actions
    assert errors(s) == []  # not yet: its close may say why
    return s


def test_a_failed_send_with_no_close_after_it_ends_the_connection_at_the_settle_time() -> None:
    """No close comes within the settle time: the connection is dropped, the NON_FATAL
    send_failed error is told, and the next connection is sent the audio again."""
    s = settling()
    s.feed(io.TimerFired(s.at(1.1), ("settle", 1)))
    assert io.Abort(1) in s.actions
    [error] = errors(s)
    assert (error.kind, error.fatal) == ("send_failed", False)
    assert error.message == "sending audio failed"
    assert opened(s) == [1, 2]
    s.connect(2)
    resent = s.complete_sends(2)
    assert sum(len(a.data) for a in resent if isinstance(a, io.Send)) == 10 * FRAME


def test_a_settle_timer_left_over_from_before_a_crash_does_not_touch_the_new_start() -> None:
    """A crash (a bug in the core) forgets every connection, the settling one too, with
    its timer still set. After a new Start, that timer firing is no news: the new
    session streams on, no second FATAL error."""
    s = settling()
    s.actions += s.core.crashed(s.at(0.2), RuntimeError("boom"))
    assert s.core.gave_up
    s.feed(io.Start(s.at(0.5)))
    [new] = [g for g in opened(s) if g > 1]
    s.connect(new)
    fatal = [e for e in errors(s) if e.fatal]
    assert s.feed(io.TimerFired(s.at(1.1), ("settle", 1))) == []
    assert [e for e in errors(s) if e.fatal] == fatal
    assert not s.core.gave_up
