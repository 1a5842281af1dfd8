"""Reconnect policy: exponential backoff with full jitter, a retry ceiling, health resets.

Policy is data. The manager takes its clock, its sleep and its random source
as parameters, so a test drives it with a fake clock and records the delays
instead of waiting for them.

The attempt counter counts failed attempts in a row ("the streak"). It resets
only when a connection proved healthy: it delivered a transcript event, or it
stayed open `healthy_after_s`. A server that accepts every connection and
then drops it therefore still escalates to a fatal error after
`max_attempts` failures instead of flapping forever.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
RandomSource = Callable[[], float]


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: float = 0.5
    cap_s: float = 8.0
    # The streak of failed attempts that ends in a fatal error: the failure
    # numbered `max_attempts` is fatal, every one before it is retried.
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("backoff delays must not be negative")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def ceiling_s(self, attempt: int) -> float:
        """The upper bound of the jittered delay after failed attempt number `attempt` (1-based)."""
        # min() before the power would still overflow for a huge attempt: clamp the exponent.
        exponent = min(max(attempt - 1, 0), 62)
        return min(self.cap_s, self.base_s * (2**exponent))


@dataclass(frozen=True)
class RetryDecision:
    attempt: int  # failed attempts in this streak, this one included
    give_up: bool  # True: stop retrying, report a fatal error
    delay_s: float  # how long to wait before the next attempt (0 when giving up)
    reason: str  # "fatal" (retrying cannot help), "exhausted", "backoff", "retry_after"


class ReconnectManager:
    """Decides whether and when to try again. Owns only the streak counter."""

    def __init__(
        self,
        policy: BackoffPolicy,
        *,
        healthy_after_s: float = 5.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: RandomSource = random.random,
    ) -> None:
        self.policy = policy
        self.healthy_after_s = healthy_after_s
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._attempt = 0
        self._open_since: float | None = None

    @property
    def attempt(self) -> int:
        """Failed attempts in the current streak."""
        return self._attempt

    def connection_opened(self) -> None:
        """A connection is up (transcript.created arrived): start its health clock."""
        self._open_since = self._clock()

    def connection_healthy(self) -> None:
        """The connection delivered a transcript event: the streak is over."""
        self._attempt = 0

    def connection_closed(self) -> None:
        """The current connection ended (planned or not): count its uptime towards health."""
        self._credit_uptime()
        self._open_since = None

    def _credit_uptime(self) -> None:
        if (
            self._open_since is not None
            and self._clock() - self._open_since >= self.healthy_after_s
        ):
            self._attempt = 0

    def record_failure(
        self, *, fatal: bool = False, retry_after_s: float | None = None
    ) -> RetryDecision:
        """One failed attempt (a refused handshake, or a connection that died)."""
        # A connection that stayed up long enough was healthy before it failed:
        # this failure starts a new streak instead of extending the old one.
        self._credit_uptime()
        self._open_since = None
        self._attempt += 1
        if fatal:
            return RetryDecision(self._attempt, True, 0.0, "fatal")
        if self._attempt >= self.policy.max_attempts:
            return RetryDecision(self._attempt, True, 0.0, "exhausted")
        # Full jitter: uniform in [0, ceiling), so a crowd of clients spreads out.
        delay = self._rng() * self.policy.ceiling_s(self._attempt)
        if retry_after_s is not None and retry_after_s > delay:
            return RetryDecision(self._attempt, False, retry_after_s, "retry_after")
        return RetryDecision(self._attempt, False, delay, "backoff")

    async def wait(self, decision: RetryDecision) -> None:
        """Sleep the decided delay with the injected sleep (cancellable)."""
        if decision.delay_s > 0:
            await self._sleep(decision.delay_s)
