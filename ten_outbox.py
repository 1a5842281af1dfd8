"""The order the extension's messages go out in.

Engine callbacks are synchronous; their messages are queued here and one task
sends them (`run`). Results, finalize ends, errors and status go out in the order
produced; other metrics only when none of those is waiting (they are never what a
user waits for, a finalize end is; ttlw, part of a turn's answer, goes in order
before it, on the MESSAGES lane); the stop mark last.
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


class Outbox:
    def __init__(self) -> None:
        self._queue: asyncio.PriorityQueue[_Item] = asyncio.PriorityQueue()
        self._seq = 0

    def put(self, name: str, payload: dict[str, Any], lane: int = MESSAGES) -> None:
        self._seq += 1
        self._queue.put_nowait((lane, self._seq, (name, payload)))

    def close(self) -> None:
        """The stop mark: it sorts after every message, so `run` returns when no other
        is queued."""
        self._queue.put_nowait((_STOP, 0, None))

    async def run(self, ten_env: AsyncTenEnv, warn: Callable[[str], None]) -> None:
        while True:
            _, _, item = await self._queue.get()
            if item is None:
                return
            name, payload = item
            data = Data.create(name)
            data.set_property_from_json(None, json.dumps(payload))
            err = await ten_env.send_data(data)
            if err is not None:
                warn(f"could not send {name}: {err.error_message()}")
