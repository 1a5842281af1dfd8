"""The live xAI wire (the default) and the older behaviours kept as options.

Marker audio throughout: every word is a frame index at its exact time, so a
test can check that each word is carried exactly where the live service
would carry it, and how often.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

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
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from stt_server import Fault, STTServer, WireOptions, marker
from stt_server.__main__ import build_parser
from stt_server.protocol import INVALID_MESSAGE, STREAM_TIMED_OUT

INVALID = {"type": "error", "message": INVALID_MESSAGE}


def indices(event: dict) -> list[int]:
    return [int(w["text"]) for w in event["words"]]


def kind(event: dict) -> str:
    """ "interim", "chunk" (chunk final) or "utterance" (utterance final)."""
    if not event["is_final"]:
        return "interim"
    return "utterance" if event["speech_final"] else "chunk"


def assert_exact_times(event: dict) -> None:
    for word in event["words"]:
        frame = int(word["text"])
        assert (word["start"], word["end"]) == (frame / 100, (frame + 1) / 100), word


async def next_event(ws: ClientConnection) -> Any:
    message = await asyncio.wait_for(ws.recv(), WAIT)
    return json.loads(message) if isinstance(message, str) else message


async def events_until(ws: ClientConnection, last: Any) -> list[dict]:
    """Events up to and including the first for which last(event) holds."""
    events = []
    while True:
        event = await next_event(ws)
        events.append(event)
        if last(event):
            return events


def is_utterance_final(event: dict) -> bool:
    return event.get("type") == "transcript.partial" and event["speech_final"]


async def send_json(ws: ClientConnection, payload: Any) -> None:
    await asyncio.wait_for(ws.send(json.dumps(payload)), WAIT)


# -- restatement and times ----------------------------------------------------


async def test_the_utterance_final_restates_every_word_with_exact_times(
    marker_server: STTServer,
) -> None:
    # 0.2 s of silence, 4 s of speech (a chunk locks at 3.5 s), 0.4 s of silence.
    audio = marker.generate([(False, 20), (True, 400), (False, 40)])
    seen = await transcribe(marker_server.url, audio, endpointing=300, interim_results=True)
    partials = seen.of_type("transcript.partial")
    assert [kind(e) for e in partials] == ["interim"] * 6 + ["chunk", "interim", "chunk"] + [
        "utterance"
    ]
    for event in partials:
        assert event["start"] == 0.2  # the utterance's start, every time
        assert_exact_times(event)
    # Interims grow from the utterance start; the chunk locks at 3.5 s of chunk audio.
    assert [e["duration"] for e in partials[:6]] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert indices(partials[5]) == list(range(20, 320))
    first_chunk, after_lock, tail_chunk, utterance = partials[6:]
    assert (indices(first_chunk), first_chunk["duration"]) == (list(range(20, 370)), 3.5)
    # An interim after a chunk final carries only the words after the locked point.
    assert (indices(after_lock), after_lock["duration"]) == (list(range(370, 420)), 4.0)
    assert (indices(tail_chunk), tail_chunk["duration"]) == (list(range(370, 420)), 4.3)
    # The utterance final carries every word again: each exactly once, in order.
    assert (indices(utterance), utterance["duration"]) == (list(range(20, 420)), 4.3)
    assert utterance["text"] == " ".join(str(i) for i in range(20, 420))
    assert indices(first_chunk) + indices(tail_chunk) == indices(utterance)
    assert seen.of_type("transcript.done")[0]["text"] == ""


async def test_a_one_chunk_utterance_comes_twice(marker_server: STTServer) -> None:
    audio = marker.generate([(False, 10), (True, 30), (False, 40)])
    seen = await transcribe(marker_server.url, audio, endpointing=300)
    chunk, utterance = seen.of_type("transcript.partial")
    assert (kind(chunk), kind(utterance)) == ("chunk", "utterance")
    for event in (chunk, utterance):
        assert indices(event) == list(range(10, 40))
        assert (event["start"], event["duration"]) == (0.1, 0.6)
        assert_exact_times(event)


async def test_the_tail_option_keeps_the_older_utterance_final(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(utterance_final="tail"))
    audio = marker.generate([(False, 20), (True, 400), (False, 40)])
    seen = await transcribe(marker_server.url, audio, endpointing=300, interim_results=True)
    partials = seen.of_type("transcript.partial")
    assert [kind(e) for e in partials] == ["interim"] * 6 + ["chunk", "interim", "utterance"]
    first_chunk, after_lock, utterance = partials[6:]
    assert (first_chunk["start"], first_chunk["duration"]) == (0.2, 3.5)
    # Chunk-start times, and the utterance final carries only the tail.
    assert (after_lock["start"], after_lock["duration"]) == (3.7, 0.5)
    assert indices(utterance) == list(range(370, 420))
    assert (utterance["start"], utterance["duration"]) == (3.7, 0.8)


# -- transcript.done -------------------------------------------------------------


async def test_transcript_done_is_empty_one_per_channel(marker_server: STTServer) -> None:
    left = marker.generate([(True, 30), (False, 20)])
    right = marker.generate([(False, 10), (True, 30), (False, 10)], start_index=1000)
    stereo = np.stack([np.frombuffer(left, "<i2"), np.frombuffer(right, "<i2")], axis=1)
    seen = await transcribe(
        marker_server.url, stereo.reshape(-1).tobytes(), multichannel=True, channels=2
    )
    assert seen.of_type("transcript.done") == [
        {"type": "transcript.done", "text": "", "words": [], "duration": 0.5, "channel_index": 0},
        {"type": "transcript.done", "text": "", "words": [], "duration": 0.5, "channel_index": 1},
    ]
    # The words came in the flushed utterance finals before it.
    finals = {e["channel_index"]: indices(e) for e in seen.of_type("transcript.partial")}
    assert finals == {0: list(range(30)), 1: list(range(1010, 1040))}
    assert seen.close_code == 1000


async def test_done_text_whole_repeats_the_connection(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(done_text="whole"))
    audio = marker.generate([(True, 30), (False, 40), (True, 20)])
    seen = await transcribe(marker_server.url, audio, endpointing=300)
    (done,) = seen.of_type("transcript.done")
    expected = [*range(30), *range(70, 90)]
    assert [int(t) for t in done["text"].split()] == expected
    assert indices(done) == expected
    assert_exact_times(done)


# -- silence and noise -----------------------------------------------------------


async def test_empty_partials_in_silence(marker_server: STTServer) -> None:
    # 2.1 s of silence, a short utterance, then 2.6 s of silence.
    audio = marker.generate([(False, 210), (True, 20), (False, 260)])
    seen = await transcribe(marker_server.url, audio, endpointing=300, interim_results=True)
    partials = seen.of_type("transcript.partial")
    empty = [e for e in partials if e["text"] == ""]
    assert all(e["words"] == [] and not e["speech_final"] for e in empty)
    # Every 500 ms of non-speech audio between utterances; every fourth is_final,
    # which locks the silence so far.
    assert [(e["start"], e["duration"], e["is_final"]) for e in empty] == [
        (0.0, 0.5, False),
        (0.0, 1.0, False),
        (0.0, 1.5, False),
        (0.0, 2.0, True),
        # the utterance (2.1-2.3 s) ends at 2.6 s; counting starts again there
        (2.6, 0.5, False),
        (2.6, 1.0, False),
        (2.6, 1.5, False),
        (2.6, 2.0, True),
    ]
    words = [e for e in partials if e["text"]]
    assert [kind(e) for e in words] == ["chunk", "utterance"]
    assert indices(words[1]) == list(range(210, 230))


@pytest.mark.parametrize(
    ("fault", "query"),
    [
        (Fault(empty_partials=False), {"interim_results": True}),
        (None, {"interim_results": False}),
    ],
)
async def test_no_empty_partials_when_off_or_without_interim_results(
    marker_server: STTServer, fault: Fault | None, query: dict
) -> None:
    marker_server.set_default_fault(fault)
    audio = marker.generate([(False, 300)])
    seen = await transcribe(marker_server.url, audio, endpointing=300, **query)
    assert seen.types == ["transcript.done"]


# -- transcript.created --------------------------------------------------------


async def test_created_carries_a_session_id(marker_server: STTServer) -> None:
    ids = []
    for number in (1, 2):
        async with open_client(marker_server.url) as ws:
            ids.append(await expect_created(ws))
        record = marker_server.connection(number)
        assert record.session_id == ids[-1]
        assert uuid.UUID(ids[-1]).version == 4
    assert ids[0] != ids[1]


# -- finalize --------------------------------------------------------------------


async def test_finalize_ends_the_utterance_and_the_connection_goes_on(
    marker_server: STTServer,
) -> None:
    first = marker.generate([(False, 10), (True, 30)])
    second = marker.generate([(False, 10), (True, 20)], start_index=40)
    async with open_client(url_with(marker_server.url, endpointing=0)) as ws:
        await expect_created(ws)
        await send_audio(ws, first)
        await send_json(ws, {"type": "finalize"})
        chunk, utterance = await events_until(ws, is_utterance_final)
        assert (kind(chunk), kind(utterance)) == ("chunk", "utterance")
        assert indices(chunk) == indices(utterance) == list(range(10, 40))
        assert (utterance["start"], utterance["duration"]) == (0.1, 0.3)
        # The connection stays open; audio goes on and makes the next utterance.
        await send_audio(ws, second)
        await send_json(ws, {"type": "Finalize"})
        chunk, utterance = await events_until(ws, is_utterance_final)
        assert indices(chunk) == indices(utterance) == list(range(50, 70))
        assert (utterance["start"], utterance["duration"]) == (0.5, 0.2)
        assert_exact_times(utterance)
        await send_done(ws)
        seen = await receive_all(ws)
    assert seen.types == ["transcript.done"]  # nothing was left to flush
    assert seen.close_code == 1000
    record = marker_server.connection(1)
    assert record.finalizes_received == 2
    assert record.marker_indices == list(range(70))


async def test_finalize_with_nothing_pending_answers_an_empty_utterance_final(
    marker_server: STTServer,
) -> None:
    async with open_client(url_with(marker_server.url, endpointing=200)) as ws:
        await expect_created(ws)
        await send_audio(ws, marker.generate([(False, 30)]))
        await send_json(ws, {"type": "finalize"})
        (answer,) = await events_until(ws, is_utterance_final)
        assert answer == {
            "type": "transcript.partial",
            "text": "",
            "words": [],
            "is_final": True,
            "speech_final": True,
            "start": 0.0,
            "duration": 0.3,
        }
        # After an utterance ended by endpointing: the span starts at its end.
        await send_audio(ws, marker.generate([(True, 20), (False, 40)], start_index=30))
        _, utterance = await events_until(ws, is_utterance_final)
        assert (utterance["start"], utterance["duration"]) == (0.3, 0.4)
        await send_json(ws, {"type": "finalize"})
        (answer,) = await events_until(ws, is_utterance_final)
        assert (answer["text"], answer["start"], answer["duration"]) == ("", 0.7, 0.2)


async def test_finalize_per_channel(marker_server: STTServer) -> None:
    left = marker.generate([(True, 20)])
    right = marker.generate([(False, 5), (True, 15)], start_index=500)
    stereo = np.stack([np.frombuffer(left, "<i2"), np.frombuffer(right, "<i2")], axis=1)
    url = url_with(marker_server.url, multichannel=True, channels=2)
    async with open_client(url) as ws:
        await expect_created(ws)
        await send_audio(ws, stereo.reshape(-1).tobytes())
        await send_json(ws, {"type": "finalize", "channel": 1})
        events = await events_until(ws, is_utterance_final)
        assert [(e["channel_index"], kind(e)) for e in events] == [(1, "chunk"), (1, "utterance")]
        assert indices(events[1]) == list(range(505, 520))
        # A channel that does not exist: a parse error, nothing ends.
        await send_json(ws, {"type": "finalize", "channel": 2})
        error = await next_event(ws)
        assert error["type"] == "error" and "channel" in error["message"]
        assert "code" not in error
        # Without a channel: every channel (channel 1 has nothing pending).
        await send_json(ws, {"type": "finalize"})
        events = await events_until(ws, lambda e: e.get("channel_index") == 1)
        assert [(e["channel_index"], kind(e), e["text"] == "") for e in events] == [
            (0, "chunk", False),
            (0, "utterance", False),
            (1, "utterance", True),
        ]
        assert indices(events[1]) == list(range(20))


async def test_finalize_refused_by_an_older_deployment(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(finalize="refuse"))
    async with open_client(url_with(marker_server.url, endpointing=300)) as ws:
        await expect_created(ws)
        await send_audio(ws, marker.generate([(True, 30)]))
        await send_json(ws, {"type": "finalize"})
        assert await next_event(ws) == INVALID  # no code
        # The connection stays open and the utterance was NOT ended: endpointing
        # ends it, as if no finalize had come.
        await send_audio(ws, marker.generate([(False, 40)], start_index=30))
        chunk, utterance = await events_until(ws, is_utterance_final)
        assert indices(chunk) == indices(utterance) == list(range(30))
        assert utterance["duration"] == 0.6
        await send_done(ws)
        seen = await receive_all(ws)
    assert seen.types == ["transcript.done"] and seen.close_code == 1000
    assert marker_server.connection(1).finalizes_received == 1


async def test_finalize_ignored(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(finalize="ignore"))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await send_audio(ws, marker.generate([(True, 30)]))
        await send_json(ws, {"type": "finalize"})
        # Messages are handled in order: the next answer is the one to a later
        # message, so the finalize got none.
        await send_json(ws, {"type": "hello"})
        assert await next_event(ws) == INVALID
        await send_done(ws)
        seen = await receive_all(ws)
    # The utterance ends only at audio.done (flushed).
    assert [kind(e) for e in seen.of_type("transcript.partial")] == ["chunk", "utterance"]
    assert seen.types[-1] == "transcript.done" and seen.close_code == 1000
    assert marker_server.connection(1).finalizes_received == 1


# -- client messages the service cannot parse ---------------------------------


async def test_an_unparseable_message_is_an_error_and_the_connection_goes_on(
    marker_server: STTServer,
) -> None:
    async with open_client(url_with(marker_server.url, endpointing=300)) as ws:
        await expect_created(ws)
        for junk in ("not json {", json.dumps({"type": "hello"}), "[1, 2]", "{}"):
            await asyncio.wait_for(ws.send(junk), WAIT)
            assert await next_event(ws) == INVALID
        await send_audio(ws, marker.generate([(True, 20), (False, 40)]))
        await send_done(ws)
        seen = await receive_all(ws)
    assert seen.types == ["transcript.partial", "transcript.partial", "transcript.done"]
    assert seen.close_code == 1000
    assert marker_server.connection(1).session_end == "done"


# -- the stream timeout --------------------------------------------------------


async def test_the_stream_times_out_without_audio(marker_server: STTServer) -> None:
    marker_server.set_default_fault(Fault(stream_timeout_s=0.3))
    async with open_client(marker_server.url) as ws:
        await expect_created(ws)
        await send_audio(ws, marker.generate([(True, 20)]))
        loop = asyncio.get_running_loop()
        last_audio = loop.time()
        seen = await receive_all(ws)
        assert loop.time() - last_audio >= 0.3
    assert seen.events == [{"type": "error", "message": STREAM_TIMED_OUT}]
    assert (seen.close_code, seen.close_reason) == (1011, STREAM_TIMED_OUT)
    record = marker_server.connection(1)
    await record.wait_ended(WAIT)
    assert record.session_end == "timeout"
    assert (record.closed_by, record.close_code) == ("server", 1011)


async def test_the_stream_timeout_is_off_by_default_and_server_wide() -> None:
    assert STTServer(recognizer="marker").stream_timeout_s is None
    async with STTServer(recognizer="marker", stream_timeout_s=0.2) as server:
        async with open_client(server.url) as ws:
            await expect_created(ws)
            seen = await receive_all(ws)
        assert seen.events == [{"type": "error", "message": STREAM_TIMED_OUT}]


# -- the new query parameters --------------------------------------------------


async def test_new_query_parameters_are_accepted_and_recorded(marker_server: STTServer) -> None:
    url = (
        marker_server.url
        + "?keyterm=TEN+Framework&keyterm=xAI&keyterm=Grok&filler_words=true"
        + "&smart_turn=0.5&smart_turn_timeout=2000&vad_threshold=0.2&diarize=true"
        + "&interim_results=true&endpointing=300"
    )
    async with open_client(url) as ws:
        await expect_created(ws)
        await send_audio(ws, marker.generate([(True, 60), (False, 40)]))
        await send_done(ws)
        seen = await receive_all(ws)
    record = marker_server.connection(1)
    config = record.config
    assert config is not None
    assert config.keyterms == ("TEN Framework", "xAI", "Grok")
    assert record.query_lists["keyterm"] == ["TEN Framework", "xAI", "Grok"]
    assert record.query["keyterm"] == "Grok"  # last value wins there
    assert (config.filler_words, config.smart_turn, config.smart_turn_timeout_ms) == (
        True,
        0.5,
        2000,
    )
    assert config.vad_threshold == 0.2
    # Recognition is unchanged; smart_turn adds end_of_turn_confidence, diarize a speaker.
    interim, chunk, utterance = seen.of_type("transcript.partial")
    assert indices(utterance) == list(range(60))
    assert [e["end_of_turn_confidence"] for e in (interim, chunk, utterance)] == [0.0, 1.0, 1.0]
    assert all(w["speaker"] == 0 for e in (interim, chunk, utterance) for w in e["words"])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("keyterm=" + "x" * 51, "keyterm"),
        ("keyterm=", "keyterm"),
        ("&".join(["keyterm=a"] * 101), "keyterm"),
        ("filler_words=yes", "filler_words"),
        ("smart_turn=1.5", "smart_turn"),
        ("smart_turn=high", "smart_turn"),
        ("smart_turn=0.5&smart_turn_timeout=0", "smart_turn_timeout"),
        ("smart_turn=0.5&smart_turn_timeout=5001", "smart_turn_timeout"),
        ("smart_turn_timeout=100", "smart_turn_timeout"),
        ("vad_threshold=-0.1", "vad_threshold"),
        ("vad_threshold=2", "vad_threshold"),
    ],
)
async def test_bad_new_query_parameters_are_refused(
    marker_server: STTServer, query: str, field: str
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with open_client(marker_server.url + "?" + query):
            pass
    assert caught.value.response.status_code == 400
    assert field in caught.value.response.body.decode()


# -- presets and where the options are set --------------------------------------


OLD_EVENTS = [
    # What this server sent before it spoke the live wire, for
    # [(False, 20), (True, 120), (False, 40)], endpointing 300, interim results.
    {"is_final": False, "speech_final": False, "start": 0.2, "duration": 0.5, "words": (20, 70)},
    {"is_final": False, "speech_final": False, "start": 0.2, "duration": 1.0, "words": (20, 120)},
    {"is_final": True, "speech_final": True, "start": 0.2, "duration": 1.5, "words": (20, 140)},
]


def old_partial(spec: dict) -> dict:
    words = [
        {"text": str(i), "start": i / 100, "end": (i + 1) / 100} for i in range(*spec["words"])
    ]
    return {
        "type": "transcript.partial",
        "text": " ".join(w["text"] for w in words),
        "words": words,
        "is_final": spec["is_final"],
        "speech_final": spec["speech_final"],
        "start": spec["start"],
        "duration": spec["duration"],
    }


@pytest.mark.parametrize("where", ["server", "fault"])
async def test_the_legacy_preset_is_the_old_behaviour(where: str) -> None:
    async with STTServer(recognizer="marker", wire="legacy" if where == "server" else "live") as s:
        if where == "fault":
            s.set_default_fault(Fault(wire="legacy"))
        audio = marker.generate([(False, 20), (True, 120), (False, 40), (False, 300)])
        seen = await transcribe(s.url, audio, endpointing=300, interim_results=True)
        whole = [w for e in seen.events[2:3] for w in e["words"]]
        # No empty partials in the 3.4 s of silence; done repeats the whole text.
        assert seen.events == [
            *(old_partial(spec) for spec in OLD_EVENTS),
            {
                "type": "transcript.done",
                "text": " ".join(str(i) for i in range(20, 140)),
                "words": whole,
                "duration": 4.8,
                "channel_index": 0,
            },
        ]
        # The older service refuses finalize (and the open utterance is not flushed).
        async with open_client(s.url) as ws:
            await expect_created(ws)
            await send_audio(ws, marker.generate([(True, 30)]))
            await send_json(ws, {"type": "finalize"})
            assert await next_event(ws) == INVALID
            await send_done(ws)
            seen = await receive_all(ws)
        assert seen.types == ["transcript.done"]
        assert seen.events[0]["text"] == " ".join(str(i) for i in range(30))
        assert s.connection(2).wire == WireOptions(
            utterance_final="tail",
            done_text="whole",
            finalize="refuse",
            empty_partials=False,
            flush_on_done=False,
        )


async def test_options_override_the_preset_and_faults_override_the_server() -> None:
    server = STTServer(recognizer="marker", wire="legacy", done_text="empty")
    assert server.wire_options == WireOptions(
        utterance_final="tail",
        done_text="empty",
        finalize="refuse",
        empty_partials=False,
        flush_on_done=False,
    )
    server.finalize = "answer"
    assert server.wire_options.finalize == "answer"
    with pytest.raises(ValueError):
        server.finalize = "maybe"
    assert server.wire_for(Fault(utterance_final="restate")).utterance_final == "restate"
    assert server.wire_for(Fault(utterance_final="restate")).done_text == "empty"
    # A fault's preset starts from that preset, its own fields win over it.
    assert server.wire_for(Fault(wire="live", finalize="ignore")) == WireOptions(finalize="ignore")
    server.wire = "live"
    assert server.wire_options == WireOptions() and server.wire == "live"
    with pytest.raises(ValueError):
        STTServer(recognizer="marker", wire="future")
    with pytest.raises(ValueError):
        Fault(finalize="sometimes")
    with pytest.raises(ValueError):
        Fault(stream_timeout_s=0)


def test_the_command_line_sets_every_wire_option() -> None:
    parser = build_parser()
    args = parser.parse_args([])
    assert (args.wire, args.utterance_final, args.done_text, args.finalize) == (
        "live",
        None,
        None,
        None,
    )
    assert (args.empty_partials, args.flush_on_done, args.stream_timeout_s) == (None, None, None)
    args = parser.parse_args(
        [
            "--wire",
            "legacy",
            "--utterance-final",
            "restate",
            "--done-text",
            "empty",
            "--finalize",
            "ignore",
            "--empty-partials",
            "--no-flush-on-done",
            "--stream-timeout-s",
            "600",
        ]
    )
    assert (args.wire, args.utterance_final, args.done_text, args.finalize) == (
        "legacy",
        "restate",
        "empty",
        "ignore",
    )
    assert (args.empty_partials, args.flush_on_done, args.stream_timeout_s) == (True, False, 600.0)
