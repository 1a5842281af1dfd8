"""The order the extension's messages go out in.

Engine callbacks are synchronous; their messages are queued here and one task
sends them (`run`). Results, finalize ends, errors and status go out in the order
produced; other metrics only when none of those is waiting (they are never what a
user waits for, a finalize end is; ttlw, part of a turn's answer, goes in order
before it, on the MESSAGES lane); the stop mark last.

An interim result still queued when a newer result of the same turn is put is
not sent: each interim carries the whole utterance so far, so the newer one says
all it said. A burst (a connection hearing seconds of replayed audio at once)
then costs the graph one interim per turn, not one per partial, and the turn's
end does not wait behind a queue of stale text. Nothing is delayed: an interim
that is not superseded goes out as before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from ten_runtime import AsyncTenEnv, Data

MESSAGES, METRICS, _STOP = 0, 1, 2
# (lane, sequence, message): the queue orders by lane, then by when it was put.
_Item = tuple[int, int, tuple[str, dict[str, Any]] | None]


def _turn_of(name: str, payload: dict[str, Any]) -> tuple[str, Any] | None:
    """The turn an asr_result belongs to (its id and channel); None for other messages."""
    if name != "asr_result":
        return None
    asr_info = payload.get("metadata", {}).get("asr_info", {})
    return (str(payload.get("id")), asr_info.get("channel"))


class Outbox:
    def __init__(self) -> None:
        self._queue: asyncio.PriorityQueue[_Item] = asyncio.PriorityQueue()
        self._seq = 0
        self._queued_interim: dict[tuple[str, Any], int] = {}  # turn -> its queued interim
        self._superseded: set[int] = set()
        self.coalesced = 0  # interims not sent: a newer result of their turn said it all

    def put(self, name: str, payload: dict[str, Any], lane: int = MESSAGES) -> None:
        self._seq += 1
        turn = _turn_of(name, payload)
        if turn is not None:
            older = self._queued_interim.pop(turn, None)
            if older is not None:
                self._superseded.add(older)
                self.coalesced += 1
            if not payload.get("final"):
                self._queued_interim[turn] = self._seq
        self._queue.put_nowait((lane, self._seq, (name, payload)))

    def close(self) -> None:
        """The stop mark: it sorts after every message, so `run` returns when no other
        is queued."""
        self._queue.put_nowait((_STOP, 0, None))

    async def run(self, ten_env: AsyncTenEnv, warn: Callable[[str], None]) -> None:
        while True:
            _, seq, item = await self._queue.get()
            if item is None:
                return
            if seq in self._superseded:
                self._superseded.discard(seq)
                continue
            name, payload = item
            turn = _turn_of(name, payload)
            if turn is not None and self._queued_interim.get(turn) == seq:
                del self._queued_interim[turn]
            data = Data.create(name)
            data.set_property_from_json(None, json.dumps(payload))
            err = await ten_env.send_data(data)
            if err is not None:
                warn(f"could not send {name}: {err.error_message()}")
