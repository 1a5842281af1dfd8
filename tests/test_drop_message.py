"""The lost-audio message says how long the loss lasted, in words that read right."""

from __future__ import annotations

import logging
from typing import Any

from xai_asr_python.audio_buffer import AudioLedger
from xai_asr_python.session_reports import LOST_STOPPED, SessionReports
from xai_asr_python.timeline import TICKS_PER_MS


def episode_message(lasted_s: float) -> str:
    said: list[Any] = []
    ledger = AudioLedger()
    reports = SessionReports(
        lambda *event: said.append(event),
        ledger,
        logging.getLogger("test_drop_message"),
        secret=lambda: "",
        attempt=lambda: 0,
        buffer_max_ms=lambda: 2000,
    )
    ledger.lose(int(960 * TICKS_PER_MS), 48, LOST_STOPPED, now=10.0)
    reports.end_drop_episode(10.0 + lasted_s, gave_up=False)
    [(_, error)] = [event for event in said if event[0] == "on_error"]
    return str(error.message)


def test_a_loss_at_one_moment_is_said_to_happen_at_once() -> None:
    message = episode_message(0.01)
    assert "dropped 960 ms of audio (48 frames, at once)" in message, message
    assert "over 0.0 s" not in message


def test_a_loss_over_time_gives_its_span() -> None:
    assert "(48 frames, over 4.0 s)" in episode_message(4.0)
    assert "(48 frames, over 0.1 s)" in episode_message(0.05)
