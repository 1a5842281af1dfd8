"""Every injected fault, as the client observes it on the wire."""

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
    transcribe,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stt_server import Close, ErrorEvent, Fault, Malformed, STTServer, marker

SPEECH = marker.generate([(True, 20), (False, 40)])  # 19,200 bytes, 6 slices of 3,200


async def assert_still_open(ws: object) -> None:
    """The socket answers a ping: it is open, just silent."""
    pong = await asyncio.wait_for(ws.ping(), WAIT)  # type: ignore[attr-defined]
    await asyncio.wait_for(pong, WAIT)


async def send_until_closed(ws: object, audio: bytes) -> None:
    """Send audio in 100 ms frames; stop quietly when the server has closed."""
    try:
        await send_audio(ws, audio)  # type: ignore[arg-type]
    except ConnectionClosed:
        pass


# -- at the upgrade ------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
async def test_refused_upgrade(marker_server: STTServer, status: int) -> None:
    marker_server.set_fault(
        1, Fault(refuse_status=status, retry_after=2 if status == 429 else None)
    )
    with pytest.raises(InvalidStatus) as caught:
        async with open_client(marker_server.url):
            pass
    response = caught.value.response
    assert response.status_code == status
    assert response.headers.get("Retry-After") == ("2" if status == 429 else None)
    # Only connection 1 was faulted: the retry gets through.
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
    assert [r.refused_status for r in marker_server.connections] == [status, None]


async def test_fault_numbers_count_refused_connections(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(refuse_status=503))
    marker_server.set_fault(3, Fault())
    for _ in range(2):
        with pytest.raises(InvalidStatus):
            async with open_client(marker_server.url):
                pass
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
    marker_server.set_default_fault(None)
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
    assert [r.refused_status for r in marker_server.connections] == [503, 503, None, None]


async def test_a_fault_source_decides_each_connection_at_its_upgrade(
    marker_server: STTServer,
) -> None:
    asked: list[int] = []

    def source(number: int) -> Fault | None:
        asked.append(number)
        return Fault(refuse_status=503) if number == 2 else None

    marker_server.set_fault_source(source)
    marker_server.set_fault(3, Fault(refuse_status=500))  # its own fault wins
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
    for _ in range(2):
        with pytest.raises(InvalidStatus):
            async with open_client(marker_server.url):
                pass
    assert asked == [1, 2]
    assert [r.refused_status for r in marker_server.connections] == [None, 503, 500]


async def test_handshake_delay(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(handshake_delay_ms=300))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with open_client(marker_server.url) as ws:
        assert loop.time() - started >= 0.3
        await expect_created(ws)
    # A client with a shorter open timeout gives up during the delay.
    with pytest.raises(asyncio.TimeoutError):
        async with open_client(marker_server.url, open_timeout=0.1):
            pass


async def test_stop_is_prompt_during_a_delayed_handshake() -> None:
    server = STTServer(recognizer="marker")
    await server.start()
    server.set_default_fault(Fault(handshake_delay_ms=60_000))
    client = asyncio.ensure_future(open_client(server.url).__aenter__())
    await server.wait_for_connection(1, WAIT)
    await asyncio.wait_for(server.stop(), 2)
    with pytest.raises(InvalidStatus) as caught:
        await asyncio.wait_for(client, WAIT)
    assert caught.value.response.status_code == 503


# -- transcript.created --------------------------------------------------------


async def test_no_created(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(no_created=True))
    async with open_client(marker_server.url) as ws:
        seen = await receive_all(ws, idle=0.3)
        assert seen.timed_out and seen.events == []
        await assert_still_open(ws)


# -- error events --------------------------------------------------------------


@pytest.mark.parametrize("code", [503, None])
async def test_error_after_bytes_then_stay_open(marker_server: STTServer, code: int | None) -> None:
    marker_server.set_default_fault(
        Fault(
            error_event=ErrorEvent(message="Cannot continue request", code=code, after_bytes=6400)
        )
    )
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await send_audio(ws, SPEECH)
        await send_done(ws)
        seen = await receive_all(ws, idle=0.3)
        expected = {"type": "error", "message": "Cannot continue request"}
        if code is not None:
            expected["code"] = code
        assert seen.events == [expected]
        assert seen.timed_out  # no transcript.done, no close: the session is dead
        await assert_still_open(ws)
    record = marker_server.connection(1)
    assert record.session_end == "error"
    assert len(record.audio) == len(SPEECH)  # audio still read (and ignored)


async def test_error_after_ms_then_close(marker_server: STTServer) -> None:
    marker_server.set_default_fault(
        Fault(error_event=ErrorEvent(code="internal", after_ms=100, then="close", close_code=1011))
    )
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        seen = await receive_all(ws)
    assert seen.events == [
        {"type": "error", "message": "Cannot continue request", "code": "internal"}
    ]
    assert seen.close_code == 1011


async def test_error_on_audio_done_replaces_the_answer(marker_server: STTServer) -> None:
    marker_server.set_default_fault(
        Fault(error_event=ErrorEvent(message="finalize failed", on_audio_done=True, then="close"))
    )
    seen = await transcribe(marker_server.url, SPEECH, endpointing=300)
    assert seen.types == ["transcript.partial", "transcript.partial", "error"]
    assert seen.close_code == 1011


async def test_error_then_continue(marker_server: STTServer) -> None:
    marker_server.set_default_fault(
        Fault(error_event=ErrorEvent(message="just saying", after_bytes=1, then="continue"))
    )
    seen = await transcribe(marker_server.url, SPEECH)
    assert seen.types == ["error", "transcript.partial", "transcript.partial", "transcript.done"]
    assert seen.close_code == 1000


# -- closes ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1011])
async def test_close_after_bytes(marker_server: STTServer, code: int) -> None:
    marker_server.set_default_fault(Fault(close=Close(code=code, reason="bye", after_bytes=6400)))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await send_until_closed(ws, SPEECH)
        seen = await receive_all(ws)
    assert (seen.close_code, seen.close_reason, seen.close_frame_received) == (code, "bye", True)
    assert seen.events == []
    record = marker_server.connection(1)
    await record.wait_ended(WAIT)
    assert (record.end, record.closed_by, record.close_code) == ("closed", "server", code)
    assert len(record.audio) >= 6400


async def test_close_after_ms(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(close=Close(code=1001, after_ms=150)))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        seen = await receive_all(ws)
    assert seen.close_code == 1001 and seen.events == []


async def test_abort_without_close_frame(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(close=Close(code="abort", after_bytes=3200)))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await send_until_closed(ws, SPEECH)
        seen = await receive_all(ws)
    assert (seen.close_code, seen.close_frame_received) == (1006, False)
    record = marker_server.connection(1)
    await record.wait_ended(WAIT)
    assert (record.end, record.closed_by) == ("aborted", "server")


async def test_abort_right_after_open(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(no_created=True, close=Close(code="abort")))
    async with open_client(marker_server.url) as ws:
        seen = await receive_all(ws)
    assert seen.events == [] and seen.close_code == 1006


# -- audio.done answers --------------------------------------------------------


async def test_ignore_audio_done(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(ignore_audio_done=True))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await send_audio(ws, SPEECH)
        await send_done(ws)
        seen = await receive_all(ws, idle=0.3)
        assert seen.timed_out and seen.events == []
        await assert_still_open(ws)
    assert marker_server.connection(1).session_end == "ignored_done"


async def test_done_without_close(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(done_without_close=True))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await send_audio(ws, SPEECH)
        await send_done(ws)
        seen = await receive_all(ws, idle=0.3)
        assert seen.types[-1] == "transcript.done" and seen.timed_out
        await assert_still_open(ws)
    record = marker_server.connection(1)
    await record.wait_ended(WAIT)
    assert (record.closed_by, record.close_code) == ("client", 1000)


async def test_close_before_done(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(close_before_done=True))
    seen = await transcribe(marker_server.url, SPEECH)
    assert seen.events == [] and seen.close_code == 1000


# -- junk frames ---------------------------------------------------------------


async def test_malformed_frames_then_business_as_usual(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(malformed=Malformed(after_bytes=3200)))
    seen = await transcribe(marker_server.url, SPEECH)
    assert seen.events[:4] == [
        "this is not JSON {",
        {"type": "transcript.unexpected", "text": "?"},
        {"type": "transcript.partial"},
        b"\x00\x01 binary frame from the server",
    ]
    assert seen.types[4:] == ["transcript.partial"] * 2 + ["transcript.done"]
    assert seen.close_code == 1000
    sent = marker_server.connection(1).events_sent
    assert [e.get("_malformed") for e in sent[1:5]] == list(Malformed().kinds)


@pytest.mark.parametrize("kind", ["not_json", "unknown_type", "missing_fields", "binary"])
async def test_one_malformed_kind_on_audio_done(marker_server: STTServer, kind: str) -> None:
    marker_server.set_default_fault(Fault(malformed=Malformed(kinds=(kind,), on_audio_done=True)))
    seen = await transcribe(marker_server.url, SPEECH)
    assert len(seen.events) == 4
    assert seen.types[1:] == ["transcript.partial"] * 2 + ["transcript.done"]


async def test_malformed_after_ms(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(malformed=Malformed(kinds=("binary",), after_ms=50)))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        assert isinstance(await asyncio.wait_for(ws.recv(), WAIT), bytes)


# -- back-pressure ---------------------------------------------------------------


async def fill_until_blocked(ws: object, limit_bytes: int = 64_000_000) -> int:
    """Send audio until a send stays blocked for 0.5 s; return bytes sent before it."""
    sent = 0
    while sent < limit_bytes:
        chunk = marker.generate([(True, 100)], start_index=sent // 320)  # 32,000 bytes
        try:
            await asyncio.wait_for(ws.send(chunk), 0.5)  # type: ignore[attr-defined]
        except asyncio.TimeoutError:
            return sent
        sent += len(chunk)
    raise AssertionError(f"sends never blocked after {sent} bytes")


async def test_stop_reading_blocks_the_client(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(stop_reading_after_bytes=64_000))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await fill_until_blocked(ws)
        record = marker_server.connection(1)
        # Nothing was read after the fault fired at the frame reaching 64,000 bytes.
        assert len(record.audio) == 64_000
        assert record.marker_indices == list(range(200))
        assert not record.ended.is_set()
        ws.transport.abort()  # no closing handshake is possible: the server is not reading
    # A server that does not read cannot notice the client leaving; stopping
    # it still ends the connection at once.
    await asyncio.wait_for(marker_server.stop(), 2)
    assert record.ended.is_set() and record.end == "aborted"


async def test_stop_reading_for_a_while_then_resume(marker_server: STTServer) -> None:
    marker_server.set_default_fault(
        Fault(stop_reading_after_bytes=32_000, stop_reading_for_ms=1500)
    )
    chunk = marker.generate([(True, 100)])  # 32,000 bytes, sent again and again
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        # Read what the server sends all along: a client that stops reading while it
        # sends would block the server's sends, and the server would stop reading.
        reader = asyncio.ensure_future(receive_all(ws, timeout=60))
        sent, blocked = 0, False
        while not blocked:
            assert sent < 64_000_000, "sends never blocked"
            send = asyncio.ensure_future(ws.send(chunk))
            done, _ = await asyncio.wait({send}, timeout=0.3)
            blocked = not done
            # A blocked send finishes once the server reads again (a hang guard: the
            # server then works through megabytes of queued audio).
            await asyncio.wait_for(send, 30)
            sent += len(chunk)
        await send_done(ws, timeout=30)
        seen = await reader
    assert seen.types[-1] == "transcript.done" and seen.close_code == 1000
    record = marker_server.connection(1)
    assert len(record.audio) == sent  # everything queued arrived in the end
    assert record.marker_errors == 0


async def test_stop_is_prompt_while_not_reading() -> None:
    server = STTServer(recognizer="marker")
    await server.start()
    server.set_default_fault(Fault(stop_reading_after_bytes=3200))
    async with open_client(server.url) as ws:
        await expect_created(ws)
        await fill_until_blocked(ws)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(server.stop(), 2)
        assert loop.time() - started < 1.0
        seen = await receive_all(ws)
    assert seen.close_code == 1006
    assert server.connection(1).end == "aborted"


# -- idle end ------------------------------------------------------------------


async def test_idle_end_keeps_the_socket_but_stops_answering(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(idle_end_after_s=0.2))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await send_audio(ws, SPEECH)
        record = await marker_server.wait_for_connection(1, WAIT)
        await asyncio.wait_for(record.session_over.wait(), WAIT)
        assert record.session_end == "idle"
        await send_audio(ws, SPEECH)
        await send_done(ws)
        seen = await receive_all(ws, idle=0.3)
        assert seen.timed_out and seen.events == []
        await assert_still_open(ws)
    assert len(record.audio) == 2 * len(SPEECH)


# -- stopping with every kind of connection open --------------------------------


async def test_stop_is_prompt_and_leaves_no_tasks() -> None:
    server = STTServer(recognizer="marker")
    await server.start()
    server.set_fault(2, Fault(stop_reading_after_bytes=3200))
    server.set_fault(3, Fault(done_delay_ms=60_000))
    server.set_fault(4, Fault(handshake_delay_ms=60_000))
    server.set_fault(5, Fault(no_created=True, error_event=ErrorEvent(after_ms=60_000)))
    plain = await open_client(server.url).__aenter__()
    paused = await open_client(server.url).__aenter__()
    delayed_done = await open_client(server.url).__aenter__()
    delayed_handshake = asyncio.ensure_future(open_client(server.url).__aenter__())
    await server.wait_for_connection(4, WAIT)
    silent = await open_client(server.url).__aenter__()
    await fill_until_blocked(paused)
    await send_audio(delayed_done, SPEECH)
    await send_done(delayed_done)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(server.stop(), 3)
    assert loop.time() - started < 1.5
    assert all(record.ended.is_set() for record in server.connections)
    for ws in (plain, paused, delayed_done, silent):
        await ws.__aexit__(None, None, None)
    with pytest.raises(InvalidStatus):
        await asyncio.wait_for(delayed_handshake, WAIT)
    # Client-side tasks end as their sockets close; nothing of the server's remains.
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        leftover = asyncio.all_tasks() - {asyncio.current_task()}
        if not leftover:
            break
        await asyncio.sleep(0.01)
    assert not leftover, leftover


async def test_a_server_close_completes_while_the_client_is_still_streaming(
    marker_server: STTServer,
) -> None:
    # The client has sent far more than the server reads before it decides to
    # close. A real server reads on until the client's close frame arrives; if
    # it did not, the client would wait for its own close_timeout (here 5 s).
    marker_server.set_fault(1, Fault(close=Close(code=1011, after_bytes=6400)))
    async with open_client(marker_server.url, close_timeout=5) as ws:
        await expect_created(ws)
        audio = marker.generate([(True, 300)])
        for offset in range(0, len(audio), 320):
            try:
                await ws.send(audio[offset : offset + 320])
            except ConnectionClosed:
                break
        await asyncio.wait_for(ws.wait_closed(), 1.0)
        assert ws.close_code == 1011
    record = await marker_server.wait_for_connection(1)
    await record.wait_ended(timeout=WAIT)
    assert record.end == "closed" and record.closed_by == "server"


async def test_a_client_that_leaves_mid_handshake_ends_its_record(
    marker_server: STTServer,
) -> None:
    # The upgrade request arrives, then the client drops TCP before any answer.
    marker_server.set_fault(1, Fault(handshake_delay_ms=2000))
    host, port = marker_server.host, marker_server.port
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET /v1/stt HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    record = await marker_server.wait_for_connection(1)
    writer.close()
    await writer.wait_closed()
    await record.wait_ended(timeout=1.0)  # well before the 2 s delay is over
    assert record.end == "lost" and not record.opened
