"""Stopping the graph at any moment leaves nothing behind.

After a finalize the extension pre-warms the next connection at once, so a
graph that stops right after a turn stops while a connection is being set
up. These tests sweep the moment of the stop across that setup (the server
delays its handshake answer so the window is wide) and check, every time,
that run() returns promptly and that no connection or socket is left open.
"""

from __future__ import annotations

import asyncio

import pytest
from it_support import ItTester, fast_props, marker_server, run_it, turn_audio, wait_all_ended

from stt_server import Fault


def sweep(fault: Fault | None, delays_ms: list[float]) -> list[str]:
    """One session per delay: a turn, its finalize, then a stop that many ms
    after the finalize end; what was left open each time."""
    leaks: list[str] = []
    for delay_ms in delays_ms:
        with marker_server() as srv:
            if fault is not None:
                srv.set_fault(2, fault)

            async def script(t: ItTester, delay_ms: float = delay_ms) -> None:
                await t.send_audio(turn_audio(0))
                await t.finalize("f", bound_s=2.0)
                await asyncio.sleep(delay_ms / 1000)  # the moment of the stop: the variable

            run_it(fast_props(srv.url), script, timeout_s=10)
            try:
                wait_all_ended(srv, timeout=2)
            except AssertionError as exc:
                leaks.append(f"stop {delay_ms} ms after the finalize end: {str(exc)[:160]}")
    return leaks


def test_stop_right_after_a_finalize() -> None:
    """The pre-warmed connection's setup takes a few ms on loopback: stops
    from 0 to 8 ms after the finalize end, in 0.5 ms steps, cover it."""
    leaks = sweep(None, [k / 2 for k in range(17)])
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("phase", ["handshake", "created"])
def test_stop_while_a_slow_connection_opens(phase: str) -> None:
    """handshake: the server answers the upgrade of connection 2 after 30 ms;
    created: it answers at once and sends transcript.created after 30 ms."""
    fault = Fault(handshake_delay_ms=30) if phase == "handshake" else Fault(created_delay_ms=30)
    leaks = sweep(fault, list(range(0, 60, 4)))
    assert not leaks, "\n".join(leaks)
