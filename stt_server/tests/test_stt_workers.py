"""pocketsphinx sessions run in worker processes (it holds the GIL)."""

from __future__ import annotations

import os
import signal

from server_support import expect_created, load_clip, open_client, receive_all, transcribe
from test_stt_recognition import HELLO, SLOW, assert_mostly, final_text

from stt_server import STTServer
from stt_server.workers import SHARED_LANES, default_lanes


async def test_sessions_run_in_one_worker_per_core(sphinx_server: STTServer) -> None:
    pids = SHARED_LANES.warm("pocketsphinx", sphinx_server.backend.options())
    assert len(set(pids)) == default_lanes() == min(len(os.sched_getaffinity(0)), 8)
    assert os.getpid() not in pids


async def test_a_dead_worker_fails_its_connections_cleanly_and_is_replaced(
    sphinx_server: STTServer,
) -> None:
    pcm = load_clip("hello_world.wav")
    async with open_client(sphinx_server.url) as ws:
        await expect_created(ws)
        await ws.send(pcm[:16000])
        for pid in SHARED_LANES.warm("pocketsphinx", sphinx_server.backend.options()):
            os.kill(pid, signal.SIGKILL)
        await ws.send(pcm[16000:32000])
        seen = await receive_all(ws)
    assert seen.close_code == 1011
    # The next connection gets fresh workers and is recognised as usual.
    assert_mostly(HELLO, final_text(await transcribe(sphinx_server.url, pcm, timeout=SLOW)))
