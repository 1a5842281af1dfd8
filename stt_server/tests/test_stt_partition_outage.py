"""The partition and outage faults, as a plain client observes them on the wire."""

from __future__ import annotations

import asyncio

import pytest
from server_support import (
    WAIT,
    expect_created,
    open_client,
    receive_all,
    send_audio,
    send_done,
)
from websockets.exceptions import InvalidStatus

from stt_server import Fault, Outage, Partition, STTServer, marker

SPEECH = marker.generate([(True, 20), (False, 40)])  # 600 ms: 19,200 bytes


async def ping_answered(ws: object, within_s: float) -> bool:
    pong = await ws.ping()  # type: ignore[attr-defined]
    try:
        await asyncio.wait_for(pong, within_s)
    except asyncio.TimeoutError:
        return False
    return True


async def test_partition_after_bytes_is_silence_with_tcp_open(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(partition=Partition(after_bytes=9600)))
    async with open_client(marker_server.url, ping_interval=None) as ws:
        await expect_created(ws)
        await send_audio(ws, SPEECH)
        await send_done(ws)
        # No answer, no pong, no close: the connection just went silent.
        assert not await ping_answered(ws, 0.5)
        seen = await receive_all(ws, idle=0.3)
        assert seen.timed_out and seen.close_code is None
        record = marker_server.connection(1)
        assert record.partitioned_at_bytes == 9600
        assert len(record.audio) == 9600  # nothing read after it
        assert not record.audio_done_received
        assert not record.ended.is_set()
        ws.transport.abort()  # the client gives up on it
    # A partitioned server may never hear of it (as over a real partition, a FIN
    # or even a reset can be stuck behind unread audio); stopping still ends it.
    await asyncio.wait_for(marker_server.stop(), 2)
    assert record.ended.is_set()


async def test_partition_holds_events_back_and_heals(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(partition=Partition(after_ms=0, for_ms=600)))
    async with open_client(marker_server.url, ping_interval=None) as ws:
        await expect_created(ws)
        await send_audio(ws, SPEECH)
        await send_done(ws)
        loop = asyncio.get_running_loop()
        started = loop.time()
        seen = await receive_all(ws)  # the whole turn arrives once it heals
        assert loop.time() - started > 0.2
    assert seen.types[-1] == "transcript.done" and seen.close_code == 1000
    record = marker_server.connection(1)
    assert record.partition_healed and record.marker_errors == 0
    assert record.marker_indices == list(range(60))


async def test_partition_answers_no_keepalive_ping() -> None:
    # The client's keepalive is what notices a silent connection at all.
    async with STTServer(recognizer="marker", ping_interval=None) as server:
        server.set_default_fault(Fault(partition=Partition()))
        async with open_client(server.url, ping_interval=0.1, ping_timeout=0.2) as ws:
            await expect_created(ws)
            seen = await receive_all(ws, timeout=WAIT)
        # The client's own keepalive timed out: no close frame ever came.
        assert seen.close_code == 1006 and not seen.close_frame_received
        await server.connection(1).wait_ended(WAIT)


async def test_stop_is_prompt_during_a_partition() -> None:
    server = STTServer(recognizer="marker")
    await server.start()
    server.set_default_fault(Fault(partition=Partition()))
    async with open_client(server.url, ping_interval=None) as ws:
        await expect_created(ws)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(server.stop(), 2)
        assert loop.time() - started < 1.0
        seen = await receive_all(ws)
    assert seen.close_code == 1006
    assert server.connection(1).end == "aborted"


async def test_outage_refuses_every_upgrade_until_it_is_over(marker_server: STTServer) -> None:
    marker_server.begin_outage(Outage(for_ms=400, mode="refuse", status=503))
    loop = asyncio.get_running_loop()
    started = loop.time()
    refused = 0
    while True:
        try:
            async with open_client(marker_server.url) as ws:
                await expect_created(ws)
                break
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            refused += 1
            await asyncio.sleep(0.05)
    assert loop.time() - started >= 0.4
    assert refused >= 2 and not marker_server.outage_active
    assert [r.outage for r in marker_server.connections] == ["refuse"] * refused + [None]


async def test_outage_hangs_upgrades_then_serves_them(marker_server: STTServer) -> None:
    marker_server.begin_outage(Outage(for_ms=500, mode="hang"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        assert loop.time() - started >= 0.5
        await send_audio(ws, SPEECH)
        await send_done(ws)
        seen = await receive_all(ws)
    assert seen.types[-1] == "transcript.done"
    assert marker_server.connection(1).outage == "hang"


async def test_a_client_that_gives_up_on_a_hung_upgrade_ends_its_record(
    marker_server: STTServer,
) -> None:
    marker_server.begin_outage(Outage(for_ms=10_000, mode="hang"))
    with pytest.raises((asyncio.TimeoutError, TimeoutError)):
        async with open_client(marker_server.url, open_timeout=0.3):
            pass
    await marker_server.connection(1).wait_ended(WAIT)
    marker_server.end_outage()
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)


def test_outage_and_partition_reject_bad_values() -> None:
    with pytest.raises(ValueError):
        Outage(for_ms=100, mode="sulk")
    with pytest.raises(ValueError):
        Partition(after_ms=1, after_bytes=2)
    with pytest.raises(ValueError):
        Partition(for_ms=-1)
