"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in supervisor.py: behaviour the engine's tests did not pin. Event by event on
the sans-I/O core (no sockets, no clock), through the core's own API.

No survivor of this module's sample is left as equivalent.
"""

from __future__ import annotations

import pytest
from test_core_finalize_paths import Script

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
