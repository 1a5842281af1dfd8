"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in session_reports.py: behaviour the engine's tests did not pin. Event by
event on the sans-I/O core (no sockets, no clock), through the core's own API; what is
checked is the `SessionError` the listener gets (its `message` is the extension's
`error` message). The status rule's guard, which no core sequence is known to reach,
is called directly.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from test_core_finalize_paths import Script

from xai_asr_python import engine_io as io
from xai_asr_python.audio_buffer import AudioLedger
from xai_asr_python.protocol import classify_handshake_rejection
from xai_asr_python.session_reports import SessionReports
from xai_asr_python.session_types import ConnState, SessionError


def errors(s: Script) -> list[SessionError]:
    return [e for e in s.notified("on_error") if isinstance(e, SessionError)]


def test_a_non_fatal_error_with_a_retry_scheduled_says_when() -> None:
    """The service refused the handshake (503) and asked for 2 s: the error says the
    engine retries in 2 s, and the retry is set for then."""
    s = Script(prewarm=False, standby=False)
    s.feed(io.Start(s.at(0.0)))
    refused = classify_handshake_rejection(503, {"Retry-After": "2"}, b"", now_epoch_s=0.0)
    s.feed(io.OpenFailed(s.at(0.2), 1, refused))
    [error] = errors(s)
    assert (error.fatal, error.retry_in_s) == (False, 2.0)
    assert error.message == f"{refused.message}; retrying in 2 s"
    assert io.SetTimer(("backoff", 0), 2.2) in s.actions


def test_a_loss_with_two_causes_names_both_in_order() -> None:
    """No connection came, the outage buffer (100 ms) overflowed, then the session
    stopped with the rest still queued: one error for the episode, both causes in it."""
    s = Script(prewarm=False, standby=False, buffer_max_ms=100)
    s.feed(io.Start(s.at(0.0)))
    s.push(0, 30)  # 300 ms; the connection never opens
    s.feed(io.StopAsked(s.at(0.5)))
    [error] = errors(s)
    assert (error.kind, error.fatal, error.dropped_ms) == ("audio_dropped", False, 300.0)
    assert error.message == (
        "dropped 300 ms of audio (30 frames, over 0.5 s): no connection took audio and the "
        "outage buffer (buffer_max_ms = 100 ms) overflowed, the oldest audio first; the "
        "session stopped before it could be sent [300 ms dropped in this session]"
    )


def test_an_illegal_status_transition_is_suppressed_and_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TEN's rule: connected only after connecting. A status that would break it is
    not told to the listener; the engine bug behind it is logged, as an error that
    names both states (the one trace of it). Called directly: no event sequence of
    the core is known to ask for one (the stateful machine and the engine's tests
    never do)."""
    told: list[tuple[Any, ...]] = []
    log = logging.getLogger("test_mutants_session_reports")
    reports = SessionReports(
        lambda *event: told.append(event),
        AudioLedger(),
        log,
        secret=lambda: "",
        attempt=lambda: 0,
        buffer_max_ms=lambda: 1000,
    )
    with caplog.at_level(logging.ERROR, logger=log.name):
        reports.status(ConnState.CONNECTED, 0, "transcript.created")
    assert told == [] and reports.state is ConnState.DISCONNECTED
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.ERROR,
            f"illegal status transition {ConnState.DISCONNECTED} -> {ConnState.CONNECTED} "
            "suppressed",
        )
    ]
    reports.status(ConnState.CONNECTING, 0, "connecting")  # the legal way is told
    assert told == [("on_status", ConnState.CONNECTING, ConnState.DISCONNECTED, 0, "connecting")]
