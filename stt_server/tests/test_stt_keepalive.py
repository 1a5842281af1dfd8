"""The server's keepalive fails a silent client, never a busy one (issue 23).

A pong travels behind the audio the client sent before it, and the server
reads audio only as fast as its recogniser takes it. A client streaming
faster than that (the main job's --fast) must not be cut off with 1011
"keepalive ping timeout"; a client that sends nothing and answers nothing
still is.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from server_support import WAIT, expect_created, open_client, receive_all, send_done

from stt_server import STTServer, marker
from stt_server import server as server_module

PING_INTERVAL = 0.2
PING_TIMEOUT = 0.5


@pytest.fixture
def slow_recogniser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each audio message takes the server 8 ms: it reads the socket slowly."""
    on_audio = server_module._ConnectionRunner._on_audio

    async def slowly(self: Any, data: bytes) -> None:
        await asyncio.sleep(0.008)
        await on_audio(self, data)

    monkeypatch.setattr(server_module._ConnectionRunner, "_on_audio", slowly)


async def test_a_client_busy_sending_is_not_failed(slow_recogniser: None) -> None:
    # 300 frames of 100 ms flat out: about 2.4 s of reading for the server, and the
    # client's pongs queue behind up to ~1 MB of audio in the socket.
    audio = marker.generate([(True, 3000)])
    async with STTServer(
        recognizer="marker", ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT
    ) as server:
        async with open_client(server.url, ping_interval=None) as ws:
            await expect_created(ws)
            events = asyncio.ensure_future(receive_all(ws, timeout=30))
            try:
                for offset in range(0, len(audio), 3200):
                    await asyncio.wait_for(ws.send(audio[offset : offset + 3200]), 30)
                await send_done(ws, 30)
            except Exception:
                pass  # a failed connection shows in what the client saw
            seen = await events
        record = server.connection(1)
        await record.wait_ended(WAIT)
    assert (seen.close_code, seen.close_reason) == (1000, ""), (seen.close_code, seen.close_reason)
    assert seen.types[-1] == "transcript.done"
    assert record.marker_indices == list(range(3000))  # every frame heard, on one connection


async def test_a_silent_client_is_still_failed() -> None:
    async with STTServer(
        recognizer="marker", ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT
    ) as server:
        async with open_client(server.url, ping_interval=None) as ws:
            await expect_created(ws)
            # The client neither reads (so it answers no ping) nor sends.
            ws.transport.pause_reading()
            loop = asyncio.get_running_loop()
            started = loop.time()
            record = server.connection(1)
            await record.wait_ended(WAIT)
            waited = loop.time() - started
            ws.transport.resume_reading()
    assert record.close_code == 1011 and record.close_reason == "keepalive ping timeout", record
    # Found in about ping_interval + ping_timeout (plus the close's own timeout).
    assert PING_INTERVAL + PING_TIMEOUT - 0.05 <= waited < WAIT
