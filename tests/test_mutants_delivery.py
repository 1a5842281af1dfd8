"""Checks that kill what the mutation run (bench/mutation.py) found surviving in
delivery.py: behaviour the engine's tests did not pin.

Survivors left as equivalent (bench/README.md, "Mutation run" says why): in
`_release`, `break` -> `return` (nothing follows the loop) and `_held.pop(g, [])` ->
`pop(g, None)` / `pop(g)` (g is one of `_held`'s own keys: the default is never used).
"""

from __future__ import annotations

from xai_asr_python.delivery import DeliveryOrder


def test_an_open_turn_delivers_its_own_results_as_they_come() -> None:
    """A draining turn blocks what is *newer*, never itself: its results reach the
    listener at once (not at its end), while the next turn's wait behind it."""
    heard: list[str] = []
    order: DeliveryOrder[str] = DeliveryOrder(heard.append)
    order.block(3)
    order.deliver(3, "turn 3: final")
    order.deliver(4, "turn 4: final")
    assert heard == ["turn 3: final"]
    order.deliver(3, "turn 3: finalize end")
    order.unblock(3)
    assert heard == ["turn 3: final", "turn 3: finalize end", "turn 4: final"]


def test_a_held_turn_that_starts_draining_is_released_when_the_older_one_ends() -> None:
    """Turn 4's results wait behind draining turn 3; turn 4 then drains too (its
    finalize). When turn 3 ends, what turn 4 already had goes out at once: it waited
    only for turn 3, never for its own end."""
    heard: list[str] = []
    order: DeliveryOrder[str] = DeliveryOrder(heard.append)
    order.block(3)
    order.deliver(4, "turn 4: final")
    order.block(4)
    order.unblock(3)
    assert heard == ["turn 4: final"]
    assert order.holding == 0
