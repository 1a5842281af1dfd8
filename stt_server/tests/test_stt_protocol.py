"""The wire protocol as a plain websockets client sees it (marker recogniser)."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest
from server_support import (
    WAIT,
    expect_created,
    open_client,
    receive_all,
    send_audio,
    send_done,
    transcribe,
    url_with,
)
from websockets.exceptions import InvalidStatus

from stt_server import Fault, STTServer, g711, marker


def indices(event: dict) -> list[int]:
    return [int(w["text"]) for w in event["words"]]


async def test_created_then_partials_then_done_then_normal_close(marker_server: STTServer) -> None:
    audio = marker.generate([(False, 20), (True, 120), (False, 40)])
    seen = await transcribe(marker_server.url, audio, endpointing=300, interim_results=True)
    assert seen.types == ["transcript.partial"] * 4 + ["transcript.done"]
    interim_1, interim_2, chunk_final, utterance_final = seen.events[:4]
    assert (interim_1["is_final"], interim_1["start"], interim_1["duration"]) == (False, 0.2, 0.5)
    assert (interim_2["is_final"], interim_2["start"], interim_2["duration"]) == (False, 0.2, 1.0)
    # Live: the chunk final of the tail, then the utterance final restating it.
    assert (chunk_final["is_final"], chunk_final["speech_final"]) == (True, False)
    assert (utterance_final["is_final"], utterance_final["speech_final"]) == (True, True)
    for final in (chunk_final, utterance_final):
        assert indices(final) == list(range(20, 140))
        assert (final["start"], final["duration"]) == (0.2, 1.5)
    assert seen.events[4] == {
        "type": "transcript.done",
        "text": "",
        "words": [],
        "duration": 1.8,
        "channel_index": 0,
    }
    assert (seen.close_code, seen.close_frame_received) == (1000, True)
    record = marker_server.connection(1)
    await record.wait_ended(WAIT)
    assert record.audio == audio and record.audio_done_received
    assert (record.end, record.closed_by, record.close_code) == ("closed", "server", 1000)
    assert record.events_sent[0] == {"type": "transcript.created", "id": record.session_id}
    assert record.events_sent[1:] == seen.events


async def test_interim_cadence_follows_audio_not_frames_sent(marker_server: STTServer) -> None:
    # 37 ms slices: partials still come every 500 ms of audio.
    audio = marker.generate([(True, 260)])
    seen = await transcribe(marker_server.url, audio, chunk=1184, interim_results=True)
    interim = [e for e in seen.of_type("transcript.partial") if not e["is_final"]]
    assert [e["duration"] for e in interim] == [0.5, 1.0, 1.5, 2.0, 2.5]
    assert [len(e["words"]) for e in interim] == [50, 100, 150, 200, 250]


async def test_speech_final_on_silence_and_times_are_exact(marker_server: STTServer) -> None:
    audio = marker.generate([(True, 50), (False, 80), (True, 30), (False, 80)])
    seen = await transcribe(marker_server.url, audio, endpointing=500)
    finals = seen.of_type("transcript.partial")
    assert [(e["is_final"], e["speech_final"]) for e in finals] == [(True, False), (True, True)] * 2
    assert indices(finals[2]) == indices(finals[3]) == list(range(130, 160))
    for event in finals:
        for word in event["words"]:
            assert word["start"] == int(word["text"]) / 100
            assert word["end"] == (int(word["text"]) + 1) / 100
    assert (finals[3]["start"], finals[3]["duration"]) == (1.3, 0.8)


async def test_chunk_final_locking(marker_server: STTServer) -> None:
    seen = await transcribe(marker_server.url, marker.generate([(True, 700)]), endpointing=300)
    locked = seen.of_type("transcript.partial")
    # Timed from the utterance's start; the open utterance is flushed at audio.done
    # (its tail is empty: the last chunk locked at the end of the audio).
    assert [(e["start"], e["duration"], e["speech_final"]) for e in locked] == [
        (0.0, 3.5, False),
        (0.0, 7.0, False),
        (0.0, 7.0, True),
    ]
    assert indices(locked[1]) == list(range(350, 700))
    assert indices(locked[2]) == list(range(700))
    assert seen.of_type("transcript.done")[0]["text"] == ""


@pytest.mark.parametrize(
    ("done_text", "flush"), [("whole", True), ("pending", False), ("empty", True)]
)
async def test_done_text_modes_on_the_wire(
    marker_server: STTServer, done_text: str, flush: bool
) -> None:
    marker_server.set_default_fault(Fault(done_text=done_text, flush_on_done=flush))
    audio = marker.generate([(True, 30), (False, 40), (True, 20)])
    seen = await transcribe(marker_server.url, audio, endpointing=300)
    speech_finals = [e for e in seen.of_type("transcript.partial") if e["speech_final"]]
    (done,) = seen.of_type("transcript.done")
    first, pending = [str(i) for i in range(30)], [str(i) for i in range(70, 90)]
    assert speech_finals[0]["text"].split() == first
    assert done["text"] == " ".join(w["text"] for w in done["words"])
    if done_text == "whole":
        assert speech_finals[1]["text"].split() == pending  # flushed at audio.done
        assert done["text"].split() == first + pending
    elif done_text == "pending":
        assert len(speech_finals) == 1  # not flushed: the done text carries it
        assert done["text"].split() == pending
    else:
        assert speech_finals[1]["text"].split() == pending
        assert done["text"] == "" and done["words"] == []


async def test_server_wide_done_text_default() -> None:
    async with STTServer(recognizer="marker", done_text="pending") as server:
        audio = marker.generate([(True, 10), (False, 40)])
        seen = await transcribe(server.url, audio, endpointing=200)
        assert seen.of_type("transcript.done")[0]["text"] == ""


async def test_done_delay_holds_back_transcript_done(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(done_delay_ms=300))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await send_audio(ws, marker.generate([(True, 10)]))
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        await send_done(ws)
        # The flushed finals come at once; transcript.done after the delay.
        for kind in ("transcript.partial", "transcript.partial"):
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == kind
        seen = await receive_all(ws)
        assert seen.types == ["transcript.done"]
        assert loop.time() - sent_at >= 0.3


async def test_times_are_relative_to_each_connection(marker_server: STTServer) -> None:
    # One stream of 900 frames, sent over three connections in slices that
    # end on frame boundaries: every frame arrives exactly once, in order,
    # and each connection's times start at zero.
    pattern = [(True, 120), (False, 60)] * 5
    stream = marker.generate(pattern)
    cuts = [0, 250 * 320, 610 * 320, len(stream)]
    for number in range(3):
        piece = stream[cuts[number] : cuts[number + 1]]
        seen = await transcribe(marker_server.url, piece, endpointing=300)
        first_frame = cuts[number] // 320
        for event in seen.of_type("transcript.partial"):
            for word in event["words"]:
                assert word["start"] == (int(word["text"]) - first_frame) / 100
    all_indices = [i for rec in marker_server.connections for i in rec.marker_indices]
    assert all_indices == list(range(900))
    assert sum(rec.marker_errors for rec in marker_server.connections) == 0


async def test_lost_bytes_are_caught_by_the_marker_record(marker_server: STTServer) -> None:
    audio = marker.generate([(True, 50)])
    await transcribe(marker_server.url, audio[:3201] + audio[3202:])
    record = marker_server.connection(1)
    assert record.marker_indices[:10] == list(range(10))
    assert record.marker_errors > 0


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
async def test_g711_audio_is_decoded(marker_server: STTServer, encoding: str) -> None:
    audio = marker.generate([(True, 40), (False, 40)], 8000)
    wire = g711.encode(audio, encoding)
    seen = await transcribe(
        marker_server.url, wire, chunk=800, sample_rate=8000, encoding=encoding, endpointing=300
    )
    chunk_final, utterance_final = seen.of_type("transcript.partial")
    assert indices(chunk_final) == indices(utterance_final) == list(range(40))
    assert seen.of_type("transcript.done")[0]["duration"] == 0.8
    assert marker_server.connection(1).marker_errors == 0


@pytest.mark.parametrize("rate", [22050, 48000])
async def test_other_sample_rates(marker_server: STTServer, rate: int) -> None:
    audio = marker.generate([(True, 30), (False, 40)], rate)
    seen = await transcribe(marker_server.url, audio, sample_rate=rate, endpointing=300)
    assert indices(seen.of_type("transcript.partial")[0]) == list(range(30))
    assert seen.of_type("transcript.done")[0]["duration"] == 0.7


async def test_multichannel_events_carry_channel_index(marker_server: STTServer) -> None:
    channels = [
        marker.generate([(True, 20), (False, 60)], start_index=0),
        marker.generate([(False, 20), (True, 20), (False, 40)], start_index=1000),
        marker.generate([(False, 80)], start_index=2000),
    ]
    interleaved = np.stack([np.frombuffer(c, "<i2") for c in channels], axis=1)
    audio = interleaved.reshape(-1).astype("<i2").tobytes()
    seen = await transcribe(
        marker_server.url, audio, multichannel=True, channels=3, endpointing=300
    )
    partials = seen.of_type("transcript.partial")
    assert [(e["channel_index"], e["speech_final"]) for e in partials] == [
        (0, False),
        (0, True),
        (1, False),
        (1, True),
    ]
    assert {e["channel_index"]: indices(e) for e in partials} == {
        0: list(range(0, 20)),
        1: list(range(1020, 1040)),
    }
    done = seen.of_type("transcript.done")
    assert [(d["channel_index"], d["text"]) for d in done] == [(0, ""), (1, ""), (2, "")]
    record = marker_server.connection(1)
    assert [len(channel) for channel in record.marker_channels] == [80, 80, 80]


async def test_audio_before_created_is_counted(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(created_delay_ms=300))
    async with open_client(marker_server.url) as ws:
        await send_audio(ws, marker.generate([(True, 10)]))
        await expect_created(ws)
        await send_done(ws)
        seen = await receive_all(ws)
    assert seen.types == ["transcript.partial", "transcript.partial", "transcript.done"]
    record = marker_server.connection(1)
    assert record.bytes_before_created == 3200


async def test_the_record_keeps_the_request_without_the_key(marker_server: STTServer) -> None:
    url = url_with(marker_server.url, sample_rate=16000, language="en")
    async with open_client(url, api_key="sk-secret-value") as ws:
        await expect_created(ws)
        await ws.send(json.dumps({"type": "hello"}))
        await send_done(ws)
        await receive_all(ws)
    record = marker_server.connection(1)
    assert record.path == "/v1/stt"
    assert record.query == {"sample_rate": "16000", "language": "en"}
    assert record.headers["authorization"] == "<redacted>"
    assert "sk-secret-value" not in repr(record)
    assert record.text_messages == ['{"type": "hello"}', '{"type": "audio.done"}']


async def test_the_key_is_never_logged(
    marker_server: STTServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stt_server")
    caplog.set_level(logging.DEBUG, logger="stt_server.websockets")
    async with open_client(marker_server.url, api_key="sk-do-not-log") as ws:
        await expect_created(ws)
    await marker_server.connection(1).wait_ended(WAIT)
    assert any("Authorization" in r.getMessage() for r in caplog.records)  # headers were logged
    assert not any("sk-do-not-log" in r.getMessage() for r in caplog.records)


# -- handshake refusals --------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"sample_rate": 11025}, "sample_rate"),
        ({"encoding": "opus"}, "encoding"),
        ({"interim_results": "True"}, "interim_results"),
        ({"endpointing": 6000}, "endpointing"),
        ({"multichannel": "true", "channels": 12}, "channels"),
    ],
)
async def test_bad_parameter_is_refused_with_400_naming_it(
    marker_server: STTServer, query: dict, field: str
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with open_client(
            marker_server.url + "?" + "&".join(f"{k}={v}" for k, v in query.items())
        ):
            pass
    response = caught.value.response
    assert response.status_code == 400
    assert field in response.body.decode()
    assert marker_server.connection(1).refused_status == 400


async def test_wrong_path_is_404(marker_server: STTServer) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with open_client(marker_server.url.replace("/v1/stt", "/v1/tts")):
            pass
    assert caught.value.response.status_code == 404


async def test_api_key_is_checked_when_the_server_has_one() -> None:
    async with STTServer(recognizer="marker", api_key="right") as server:
        for key in ("wrong", None):
            with pytest.raises(InvalidStatus) as caught:
                async with open_client(server.url, api_key=key):
                    pass
            assert caught.value.response.status_code == 401
        async with open_client(server.url, api_key="right") as ws:
            await expect_created(ws)
        # The key can change while the server runs.
        server.api_key = "rotated"
        with pytest.raises(InvalidStatus):
            async with open_client(server.url, api_key="right"):
                pass
        async with open_client(server.url, api_key="rotated") as ws:
            await expect_created(ws)
        assert [r.refused_status for r in server.connections] == [401, 401, None, 401, None]


async def test_without_a_server_key_any_key_or_none_is_accepted(marker_server: STTServer) -> None:
    for key in ("anything", None):
        async with open_client(marker_server.url, api_key=key) as ws:
            await expect_created(ws)


async def test_wait_for_connection_times_out_when_nobody_comes(marker_server: STTServer) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await marker_server.wait_for_connection(1, timeout=0.05)


async def test_stop_closes_open_connections_with_1001() -> None:
    server = STTServer(recognizer="marker")
    await server.start()
    async with open_client(server.url) as ws:
        await expect_created(ws)
        await asyncio.wait_for(server.stop(), 2)
        seen = await receive_all(ws)
    assert seen.close_code == 1001
    assert server.connection(1).ended.is_set()
