"""The order results reach the listener in: turn N's results and finalize end before
anything of turn N+1.

Results and finalize outcomes are delivered under the generation whose place in
the order they take. A draining connection *blocks* its generation until its
turn is finished (done, timeout, failure, or a repair's answer); anything of a
newer generation waits behind it, and is released, in generation order, as soon
as no older turn is open any more. Pure: `emit` is the only way out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class DeliveryOrder(Generic[Item]):
    def __init__(self, emit: Callable[[Item], None]) -> None:
        self._emit = emit
        self._blockers: set[int] = set()  # draining generations whose turn is not finished
        self._held: dict[int, list[Item]] = {}

    def block(self, generation: int) -> None:
        """`generation`'s turn is open: nothing newer is delivered until `unblock`."""
        self._blockers.add(generation)

    def unblock(self, generation: int) -> None:
        self._blockers.discard(generation)
        self._release()

    def deliver(self, generation: int, item: Item) -> None:
        if self._blockers and min(self._blockers) < generation:
            self._held.setdefault(generation, []).append(item)
            return
        self._emit(item)

    def clear(self) -> None:
        """Every turn is over (stop): what was held goes out, oldest first."""
        self._blockers.clear()
        self._release()

    @property
    def holding(self) -> int:
        return sum(len(items) for items in self._held.values())

    def _release(self) -> None:
        for generation in sorted(self._held):
            if self._blockers and min(self._blockers) < generation:
                break
            for item in self._held.pop(generation, []):
                self._emit(item)
