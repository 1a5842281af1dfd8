"""The reconnect policy driven with an injected clock, sleep and random source (no waiting)."""

from __future__ import annotations

import pytest

from xai_asr_python.reconnect_manager import BackoffPolicy, ReconnectManager


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingSleep:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.now += seconds


DEFAULT_POLICY = BackoffPolicy()


def make(
    policy: BackoffPolicy = DEFAULT_POLICY,
    rng_value: float = 0.999,
    healthy_after_s: float = 5.0,
) -> tuple[ReconnectManager, FakeClock, RecordingSleep]:
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    manager = ReconnectManager(
        policy, healthy_after_s=healthy_after_s, clock=clock, sleep=sleep, rng=lambda: rng_value
    )
    return manager, clock, sleep


def test_defaults() -> None:
    policy = BackoffPolicy()
    assert (policy.base_s, policy.cap_s, policy.max_attempts) == (0.5, 8.0, 10)


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    manager, _, _ = make(rng_value=1.0)  # the top of the jitter range: the ceiling itself
    delays = [manager.record_failure().delay_s for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]


def test_full_jitter_scales_the_ceiling_by_the_random_draw() -> None:
    draws = iter([0.0, 0.5, 0.25])
    clock = FakeClock()
    manager = ReconnectManager(
        BackoffPolicy(base_s=1.0, cap_s=100.0),
        clock=clock,
        sleep=RecordingSleep(clock),
        rng=lambda: next(draws),
    )
    assert [manager.record_failure().delay_s for _ in range(3)] == [0.0, 1.0, 1.0]


def test_gives_up_at_the_ceiling_with_every_earlier_attempt_retried() -> None:
    manager, _, _ = make(BackoffPolicy(max_attempts=4))
    decisions = [manager.record_failure() for _ in range(4)]
    assert [d.give_up for d in decisions] == [False, False, False, True]
    assert [d.attempt for d in decisions] == [1, 2, 3, 4]
    assert decisions[-1].reason == "exhausted" and decisions[-1].delay_s == 0.0


def test_fatal_failure_gives_up_at_once() -> None:
    manager, _, _ = make()
    decision = manager.record_failure(fatal=True)
    assert decision.give_up and decision.reason == "fatal" and decision.attempt == 1


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    manager, _, _ = make(rng_value=0.1)
    decision = manager.record_failure(retry_after_s=3.0)
    assert decision.delay_s == 3.0 and decision.reason == "retry_after" and not decision.give_up
    # A Retry-After shorter than the jittered delay does not shorten it.
    manager2, _, _ = make(BackoffPolicy(base_s=10.0, cap_s=10.0), rng_value=0.9)
    assert manager2.record_failure(retry_after_s=1.0).delay_s == pytest.approx(9.0)


async def test_wait_uses_the_injected_sleep() -> None:
    manager, clock, sleep = make(rng_value=0.5)
    start = clock.now
    decision = manager.record_failure()
    await manager.wait(decision)
    assert sleep.calls == [0.25]
    assert clock.now == pytest.approx(start + 0.25)
    # A zero delay does not call sleep at all.
    zero, _, zero_sleep = make(rng_value=0.0)
    await zero.wait(zero.record_failure())
    assert zero_sleep.calls == []


def test_a_transcript_event_ends_the_streak() -> None:
    manager, _, _ = make()
    for _ in range(3):
        manager.record_failure()
    manager.connection_opened()
    manager.connection_healthy()
    assert manager.attempt == 0
    assert manager.record_failure().attempt == 1


def test_staying_open_long_enough_ends_the_streak() -> None:
    manager, clock, _ = make(healthy_after_s=5.0)
    for _ in range(3):
        manager.record_failure()
    manager.connection_opened()
    clock.now += 5.0
    # The connection was healthy before it died: this failure starts a new streak.
    assert manager.record_failure().attempt == 1


def test_accept_then_drop_escalates_instead_of_flapping() -> None:
    # A server that accepts every connection and drops it at once, never healthy.
    manager, clock, _ = make(BackoffPolicy(max_attempts=10), healthy_after_s=5.0)
    decisions = []
    for _ in range(10):
        manager.connection_opened()
        clock.now += 0.2  # dropped before healthy_after
        decisions.append(manager.record_failure())
    assert [d.give_up for d in decisions] == [False] * 9 + [True]


def test_planned_close_after_a_long_uptime_resets_the_streak() -> None:
    manager, clock, _ = make(healthy_after_s=2.0)
    manager.record_failure()
    manager.connection_opened()
    clock.now += 2.5
    manager.connection_closed()
    assert manager.attempt == 0


async def test_a_whole_retry_loop_runs_without_real_waiting() -> None:
    """Drive a loop the way the session does: connect, fail, back off, until give-up."""
    manager, clock, sleep = make(BackoffPolicy(base_s=0.5, cap_s=8.0, max_attempts=6), 1.0)
    start = clock.now
    attempts = 0
    while True:
        attempts += 1
        decision = manager.record_failure()
        if decision.give_up:
            break
        await manager.wait(decision)
    assert attempts == 6
    assert sleep.calls == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert clock.now - start == pytest.approx(15.5)


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        BackoffPolicy(base_s=-1)
    # A huge attempt number does not overflow.
    assert BackoffPolicy().ceiling_s(10_000) == 8.0
