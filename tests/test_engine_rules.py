"""The engine's plain rules, without a session: result order (delivery.py) and the
liveness verdicts (liveness.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xai_asr_python.audio_buffer import AudioFrame
from xai_asr_python.connection_state import Role, new_conn
from xai_asr_python.delivery import DeliveryOrder
from xai_asr_python.liveness import backlog_s, not_answering, watch
from xai_asr_python.protocol import ConnectionTracker
from xai_asr_python.session import SessionSettings
from xai_asr_python.timeline import TICKS_PER_MS, AudioFormat
from xai_asr_python.utterances import ResultAssembler

# ---------------------------------------------------------------- delivery order

_op = st.one_of(
    st.tuples(st.just("block"), st.integers(1, 6)),
    st.tuples(st.just("unblock"), st.integers(1, 6)),
    st.tuples(st.just("deliver"), st.integers(1, 6)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=60))
def test_no_result_overtakes_an_open_older_turn_and_none_is_lost(ops) -> None:
    emitted: list[tuple[int, int]] = []
    blockers: set[int] = set()
    violations: list[str] = []

    def emit(item: tuple[int, int]) -> None:
        generation = item[0]
        if any(b < generation for b in blockers):
            violations.append(f"{item} went out while turn {min(blockers)} was open")
        emitted.append(item)

    order: DeliveryOrder[tuple[int, int]] = DeliveryOrder(emit)
    delivered: list[tuple[int, int]] = []
    for n, (kind, generation) in enumerate(ops):
        if kind == "block":
            blockers.add(generation)
            order.block(generation)
        elif kind == "unblock":
            blockers.discard(generation)
            order.unblock(generation)
        else:
            delivered.append((generation, n))
            order.deliver(generation, (generation, n))
    blockers.clear()
    order.clear()
    assert not violations
    assert sorted(emitted) == sorted(delivered)  # every item once
    for generation in {g for g, _ in delivered}:
        mine = [n for g, n in emitted if g == generation]
        assert mine == sorted(mine)  # a generation's items keep their order
    assert order.holding == 0


# ---------------------------------------------------------------- liveness

FMT = AudioFormat(16000, "pcm", 1)
SETTINGS = SessionSettings(
    url="ws://x",
    api_key="k",
    stall_timeout_s=4.0,
    keepalive_s=5.0,
    idle_close_s=30.0,
    finalize_timeout_s=2.0,
    liveness_timeout_s=1.0,
)


def conn_sent(ms: int, *, now: float = 0.0):
    conn = new_conn(1, Role.CURRENT, ConnectionTracker(), ResultAssembler(), FMT, 20_000)
    conn.alive_at = conn.heard_at = conn.last_audio_at = now
    ticks = ms * TICKS_PER_MS
    frame = AudioFrame(b"\x00\x00" * (16 * ms), 0, ticks)
    conn.timeline.record_sent(0, ticks)
    conn.window.sent(frame)
    return conn


def test_a_burst_is_heard_at_real_time_from_the_latest_event() -> None:
    conn = conn_sent(3000, now=10.0)  # 3 s sent at once at t=10, nothing heard yet
    assert backlog_s(conn, 10.0) == 3.0
    assert backlog_s(conn, 12.0) == 1.0
    assert backlog_s(conn, 14.0) == 0.0


def test_speech_without_an_event_for_the_stall_timeout_is_a_stall() -> None:
    conn = conn_sent(100)
    conn.speech_since = 1.0
    conn.audio_since_event_ms = 4000.0  # the audio flowed on: 4 s of it, no answer
    early = watch(conn, SETTINGS, 4.9, quiet=True)
    assert early.failure is None and early.next_check_at == 5.0
    late = watch(conn, SETTINGS, 5.0, quiet=True)
    assert late.failure is not None and late.failure.kind == "stall"


def test_speech_then_a_stopped_stream_is_a_stall_too() -> None:
    """The stream stopped right after speech: a live vendor has nothing to answer, and a
    vendor whose session ended says nothing either (its socket still answers pings). The
    rule takes both for a stall: going deaf is the worse mistake."""
    conn = conn_sent(100)
    conn.speech_since = 1.0
    conn.audio_since_event_ms = 250.0
    verdict = watch(conn, SETTINGS, 5.0, quiet=True)
    assert verdict.failure is not None and verdict.failure.kind == "stall"


def test_a_silence_gets_a_keepalive_probe_and_then_an_idle_close() -> None:
    conn = conn_sent(100)
    assert not watch(conn, SETTINGS, 4.0, quiet=True).probe
    assert watch(conn, SETTINGS, 5.0, quiet=True).probe
    assert not watch(conn, SETTINGS, 29.0, quiet=True).go_idle
    assert watch(conn, SETTINGS, 30.0, quiet=True).go_idle
    assert not watch(conn, SETTINGS, 30.0, quiet=False).go_idle  # audio waits to go out


def test_a_draining_turn_still_hearing_a_burst_is_looked_at_again_when_it_is_heard() -> None:
    conn = conn_sent(600, now=0.0)
    conn.role = Role.DRAINING
    conn.drain_deadline = 1.6
    still_hearing = not_answering(conn, SETTINGS, 0.3)  # 0.3 s of the burst unheard
    assert still_hearing.failure is None
    assert still_hearing.recheck_at == pytest.approx(0.6)
    heard = not_answering(conn, SETTINGS, 0.6)
    assert heard.failure is not None and heard.failure.kind == "no_done"
    # A burst that cannot be heard before the deadline: nothing to look at again.
    conn.drain_deadline = 0.5
    too_late = not_answering(conn, SETTINGS, 0.1)
    assert too_late.failure is None and too_late.recheck_at is None
