"""The extension's bookkeeping of turns, as the graph sees them.

`TurnTracker`: the ids of the turn in progress (one per channel; a final result
ends its channel's turn), when its first audio went to the vendor (ttfw), and where
the results got to on the session timeline. `PendingFinalizes`: the asr_finalize
messages not answered yet, in arrival order (ttlw, one asr_finalize_end each).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .session_types import Transcript


@dataclass
class TurnTracker:
    """Ids and timing of the turn in progress, per channel."""

    ids: dict[int | None, str] = field(default_factory=dict)
    first_audio_at: float | None = None
    ttfw_reported: bool = False
    # End of the latest result on the session timeline: a closing final starts there
    # at the earliest, so finals stay in time order.
    results_end_ms: int = 0

    def audio_sent(self) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()

    def ttfw_ms(self, now: float) -> int | None:
        """The turn's ttfw, the first time a result of the turn comes; else None."""
        if self.ttfw_reported or self.first_audio_at is None:
            return None
        self.ttfw_reported = True
        return round((now - self.first_audio_at) * 1000)

    def result_id(self, t: Transcript) -> str:
        """The id of `t`, a result going out now (and so the latest result)."""
        self.results_end_ms = max(self.results_end_ms, int(t.start_ms + t.duration_ms))
        if t.channel not in self.ids:
            self.ids[t.channel] = uuid.uuid4().hex
        return self.ids[t.channel]

    def result_sent(self, t: Transcript) -> None:
        """A final result ends its turn: the next result has a new id."""
        if not t.final:
            return
        self.ids.pop(t.channel, None)
        if not self.ids:
            self.first_audio_at = None
            self.ttfw_reported = False


@dataclass
class PendingFinalize:
    finalize_id: str
    metadata: dict[str, Any]
    received_at: float
    answered: bool = False
    # A final result went out since this finalize came: its turn's text is complete.
    final_sent: bool = False
    safety_timer: asyncio.TimerHandle | None = None


class PendingFinalizes:
    """The finalizes not answered yet, by key (unique, even when a finalize_id is not)."""

    def __init__(self) -> None:
        self._by_key: dict[str, PendingFinalize] = {}
        self._order: deque[str] = deque()
        self._seq = 0

    def add(self, pending: PendingFinalize) -> str:
        self._seq += 1
        key = f"{self._seq}:{pending.finalize_id}"
        self._by_key[key] = pending
        self._order.append(key)
        return key

    def get(self, key: str) -> PendingFinalize | None:
        return self._by_key.get(key)

    def all(self) -> list[PendingFinalize]:
        return list(self._by_key.values())

    def oldest_unanswered(self) -> PendingFinalize | None:
        """The finalize a final result going out now belongs to (the engine delivers
        turn N's results before turn N+1's)."""
        for key in self._order:
            pending = self._by_key[key]
            if not pending.answered:
                return pending
        return None

    def forget_answered(self) -> None:
        """Forget answered finalizes from the front; order is arrival order."""
        while self._order and self._by_key[self._order[0]].answered:
            del self._by_key[self._order.popleft()]
