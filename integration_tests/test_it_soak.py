"""The randomized fault soak (issue #12) on a fixed set of seeds: every fault the
local server injects, mixed at random with speech, silence and finalize timing;
each speech frame transcribed exactly once or reported lost, every finalize ended
on time by the soak's own clock, every word at its frame's place on the user's
timeline, the status chain legal by the soak's own table. See soak.py;
`python -m bench.soak --seeds N` runs many more seeds."""

from __future__ import annotations

import pytest
from soak import (
    AUTH_REFUSALS,
    ClockedRecorder,
    SoakResult,
    _check_fatal,
    _check_statuses,
    run_seed,
)
from test_engine_support import marker

from stt_server.records import ConnectionRecord
from xai_asr_python.session import ConnState, SessionError, Transcript

# About 4 s each on two loaded cores, mostly real time (paced audio, pauses,
# timeouts); the verdicts do not depend on the machine's speed.
# Faults come at moments of the session (soak.FaultPlan), on whichever connection is
# live then, so most seeds have faults at work: of seeds 0-39, 31 told errors
# (measured 2026-12-07; with faults drawn per connection number, 67 of seeds 0-89 ran
# on one connection with no error). These thirteen mix streaks of failed handshakes
# and many connections (0, 6, 27), repairs and drops (3, 7, 14, 15, 21, 28, 39),
# turns given up (4, 25, 32).
SEEDS = [0, 3, 4, 6, 7, 14, 15, 21, 25, 27, 28, 32, 39]


@pytest.mark.parametrize("seed", SEEDS)
async def test_soak_seed(seed: int) -> None:
    result = await run_seed(seed)
    details = "\n".join(
        [result.summary, *result.violations, "excused:", *result.excused, "plan:", *result.plan]
    )
    assert result.ok, f"{details}\nreplay: python -m bench.soak --seed {seed} --log"


# The soak's own judges, on made-up event sequences: each rule must fail what breaks it.


def _error(
    *, fatal: bool, attempt: int, code: str | None = "500", retry: float | None = 0.1
) -> SessionError:
    kind = "retries_exhausted" if fatal and code not in AUTH_REFUSALS else "handshake_refused"
    return SessionError(fatal, kind, f"failed ({code})", code, None, attempt, retry)


def _status(recorder: ClockedRecorder, last: ConnState, current: ConnState, message: str) -> None:
    recorder.on_status(current, last, 0, message)


def _fatal_verdict(errors: list[SessionError], max_attempts: int = 3) -> SoakResult:
    recorder = ClockedRecorder()
    for error in errors:
        recorder.on_error(error)
    result = SoakResult(0)
    _check_fatal(result, recorder, [], max_attempts)
    return result


def test_fatal_only_by_the_rules() -> None:
    refused_key = _error(fatal=True, attempt=1, code="401", retry=None)
    assert _fatal_verdict([refused_key]).ok
    streak = [_error(fatal=False, attempt=n) for n in (1, 2)]
    assert _fatal_verdict([*streak, _error(fatal=True, attempt=3, retry=None)]).ok
    # Given up one attempt early, or without the streak told.
    assert not _fatal_verdict([streak[0], _error(fatal=True, attempt=2, retry=None)]).ok
    assert not _fatal_verdict([_error(fatal=True, attempt=3, retry=None)]).ok
    # A refused key retried.
    retried_key = _error(fatal=False, attempt=1, code="403")
    assert not _fatal_verdict([retried_key, refused_key]).ok


def test_nothing_but_disconnected_after_a_fatal_error() -> None:
    recorder = ClockedRecorder()
    recorder.on_error(_error(fatal=True, attempt=1, code="401", retry=None))
    _status(recorder, ConnState.DISCONNECTED, ConnState.CONNECTING, "connecting")
    recorder.on_transcript(Transcript("7", True, 70, 10, (), None, True, 1))
    result = SoakResult(0)
    _check_fatal(result, recorder, [], 3)
    assert len(result.violations) == 2, result.violations


def _records_with(session_id: str, frames: int, first: int = 0) -> list[ConnectionRecord]:
    record = ConnectionRecord(number=1, path="/v1/stt", query={}, headers={})
    record.session_id = session_id
    record.audio.extend(marker([(True, frames)], first))
    return [record]


def _status_verdict(
    recorder: ClockedRecorder,
    frames_received: int,
    first: int = 0,
    lost: list[tuple[float, float]] | None = None,
) -> SoakResult:
    result = SoakResult(0)
    records = _records_with("s1", frames_received, first)
    _check_statuses(result, recorder, records, {"f0": 30}, lost or [])
    return result


def _handoff(recorder: ClockedRecorder) -> None:
    _status(recorder, ConnState.DISCONNECTED, ConnState.CONNECTING, "connecting")
    _status(recorder, ConnState.CONNECTING, ConnState.CONNECTED, "(vendor session s1)")
    _status(recorder, ConnState.CONNECTED, ConnState.CONNECTING, "switching")
    _status(recorder, ConnState.CONNECTING, ConnState.DISCONNECTED, "stopped")


def test_a_handoff_needs_a_turn_end_on_the_connection_handed_off() -> None:
    recorder = ClockedRecorder()
    _handoff(recorder)
    assert _status_verdict(recorder, 30).ok  # frames 0-29: the turn cut at 30 reached it
    verdict = _status_verdict(recorder, 20)  # frames 0-19: it was mid-turn
    assert len(verdict.violations) == 1 and "no turn ended" in verdict.violations[0]
    # Frames 20-29, the turn's end, reached it and were then reported lost (its turn
    # failed): still a handoff at a turn's end (seed 22 was failed for it).
    assert _status_verdict(recorder, 10, first=20, lost=[(200.0, 300.0)]).ok


def test_status_chain_and_failures_told_while_disconnected() -> None:
    recorder = ClockedRecorder()
    _status(recorder, ConnState.DISCONNECTED, ConnState.CONNECTING, "connecting")
    _status(recorder, ConnState.CONNECTING, ConnState.CONNECTED, "(vendor session s1)")
    recorder.on_error(_error(fatal=False, attempt=1))  # a failure while connected
    _status(recorder, ConnState.CONNECTED, ConnState.CONNECTED, "(vendor session s1)")
    verdict = _status_verdict(recorder, 30)
    assert any("told while the status was connected" in v for v in verdict.violations)
    assert any("illegal step connected -> connected" in v for v in verdict.violations)
    assert any("last status is connected" in v for v in verdict.violations)
