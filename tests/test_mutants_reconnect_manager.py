"""Checks that kill what the mutation run (bench/mutation.py) found surviving in
reconnect_manager.py: behaviour the engine's tests did not pin.

Survivors left as equivalent (bench/README.md, "Mutation run" says why):
`ceiling_s`'s exponent clamp 62 -> 63; `retry_after_s > delay` -> `>=` (at a tie both
wait the same time); `give_up` None for False on a Retry-After (every reader tests its
truth); `healthy_after_s`'s default (the core always passes the setting).
"""

from __future__ import annotations

import pytest

from xai_asr_python.reconnect_manager import BackoffPolicy, ReconnectManager


class NoteSleeps:
    """An injected sleep that notes what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.mark.parametrize("fatal", [True, False], ids=["refused-key", "streak-exhausted"])
async def test_a_session_that_gives_up_says_so_without_waiting(fatal: bool) -> None:
    """Giving up (a fatal failure, or the streak's last attempt) is reported at once:
    no backoff is waited before the FATAL error."""
    sleeps = NoteSleeps()
    manager = ReconnectManager(
        BackoffPolicy(base_s=1.0, cap_s=8.0, max_attempts=1), sleep=sleeps, rng=lambda: 0.5
    )
    decision = manager.record_failure(fatal=fatal)
    assert decision.give_up
    assert decision.delay_s == 0.0
    await manager.wait(decision)
    assert sleeps.calls == []


def test_the_zero_backoff_the_config_allows_is_a_valid_policy() -> None:
    """reconnect_base_delay_ms and reconnect_max_delay_ms may be 0 (config.py: ge=0):
    retry at once. Only a negative delay, or no attempt at all, is refused, and the
    refusal says why (a developer reads it: config.py refuses such values first)."""
    manager = ReconnectManager(BackoffPolicy(base_s=0.0, cap_s=0.0), rng=lambda: 0.5)
    assert [manager.record_failure().delay_s for _ in range(3)] == [0.0, 0.0, 0.0]
    for base_s, cap_s in ((-0.1, 1.0), (0.1, -1.0)):
        with pytest.raises(ValueError, match=r"^backoff delays must not be negative$"):
            BackoffPolicy(base_s=base_s, cap_s=cap_s)
    assert BackoffPolicy(max_attempts=1).max_attempts == 1  # give up at the first failure
    with pytest.raises(ValueError, match=r"^max_attempts must be at least 1$"):
        BackoffPolicy(max_attempts=0)


def test_a_retry_after_still_counts_the_attempt_and_each_decision_says_why() -> None:
    """A failure whose server asked for a longer wait (Retry-After) is still a failed
    attempt of the streak: the error reports its number, and the streak reaches the
    ceiling. Each decision names what set its delay."""
    manager = ReconnectManager(BackoffPolicy(base_s=1.0, cap_s=1.0), rng=lambda: 0.5)
    first = manager.record_failure(retry_after_s=3.0)
    second = manager.record_failure()
    assert (first.attempt, first.reason, first.delay_s) == (1, "retry_after", 3.0)
    assert (second.attempt, second.reason, second.delay_s) == (2, "backoff", 0.5)
