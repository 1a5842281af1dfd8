"""Real recognition (pocketsphinx) of the committed clips.

Assertions are on robust expectations: most of the expected words, in
order, and word times that sit where the speech is, not exact strings.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import math

import numpy as np
import pytest
from server_support import (
    Observed,
    expect_created,
    load_clip,
    open_client,
    receive_all,
    send_audio,
    send_done,
    transcribe,
)

from stt_server import STTServer, g711

HELLO = "hello world the weather is nice today".split()
NUMBERS = "one two three four five six seven eight nine ten".split()
DOOR = "please open the door".split()
THANKS = "thank you very much".split()
MORNING = "good morning how are you doing today".split()
# A hang guard, not a timing: decoding seconds of speech sent at once can take
# several seconds on a loaded 2-core machine.
SLOW = 30.0
FLIGHT = "i would like to book a flight from boston to new york".split()


def assert_mostly(expected: list[str], text: str, share: float = 0.8) -> None:
    """At least `share` of the expected words come back, in order."""
    got = text.split()
    blocks = difflib.SequenceMatcher(None, expected, got).get_matching_blocks()
    matched = sum(block.size for block in blocks)
    assert matched >= math.ceil(share * len(expected)), f"expected ~{expected}, got {got}"


def utterance_finals(seen: Observed) -> list[dict]:
    return [e for e in seen.of_type("transcript.partial") if e["speech_final"]]


def final_text(seen: Observed) -> str:
    """The connection's text on the live wire: its utterance finals (each restates its
    utterance; the open one is flushed at audio.done), once transcript.done came with
    empty text and the server closed normally."""
    (done,) = seen.of_type("transcript.done")
    assert (done["text"], done["words"]) == ("", [])
    assert seen.close_code == 1000
    return " ".join(e["text"] for e in utterance_finals(seen) if e["text"])


def all_words(seen: Observed) -> list[dict]:
    """Every word once: those of the utterance finals."""
    return [w for e in utterance_finals(seen) for w in e["words"]]


def speech_span(pcm: bytes, rate: int = 16000) -> tuple[float, float]:
    """First and last 10 ms frame louder than -40 dBFS, in seconds."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    frames = samples[: len(samples) // (rate // 100) * (rate // 100)].reshape(-1, rate // 100)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 32768 * 10 ** (-40 / 20))
    return loud[0] / 100, (loud[-1] + 1) / 100


async def test_hello_world_words_and_times(sphinx_server: STTServer) -> None:
    pcm = load_clip("hello_world.wav")
    seen = await transcribe(
        sphinx_server.url, pcm, endpointing=500, interim_results=True, timeout=SLOW
    )
    assert_mostly(HELLO, final_text(seen))
    # Interim partials came before the first locked text.
    first_final = next(i for i, e in enumerate(seen.events) if e.get("is_final"))
    assert any(e.get("is_final") is False for e in seen.events[:first_final])
    words = all_words(seen)
    assert_mostly(HELLO, " ".join(w["text"] for w in words))
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(w["start"] < w["end"] for w in words)
    begin, end = speech_span(pcm)
    assert abs(words[0]["start"] - begin) < 0.3
    assert abs(words[-1]["end"] - end) < 0.3


async def test_two_sentences_end_in_two_speech_finals(sphinx_server: STTServer) -> None:
    pcm = load_clip("two_sentences.wav")
    seen = await transcribe(sphinx_server.url, pcm, endpointing=300, timeout=SLOW)
    finals = [e for e in seen.of_type("transcript.partial") if e["speech_final"]]
    assert len(finals) == 2
    assert_mostly(DOOR, finals[0]["text"])
    assert_mostly(THANKS, finals[1]["text"])
    # The first sentence is over by 1.62 s, the second starts after the 1.5 s gap.
    assert all(w["end"] <= 1.7 for w in finals[0]["words"])
    assert all(w["start"] >= 3.1 for w in finals[1]["words"])
    assert finals[1]["start"] >= 3.1
    assert_mostly(DOOR + THANKS, final_text(seen))


async def test_pending_done_text_with_real_speech() -> None:
    # Without the flush at audio.done, the open utterance reaches only the done text.
    async with STTServer(done_text="pending", flush_on_done=False) as server:
        pcm = load_clip("two_sentences.wav")
        # Cut in the silence after the first sentence's speech_final.
        seen = await transcribe(
            server.url, pcm[: 2 * 16000 * 3] + pcm[-2 * 16000 * 2 :], endpointing=500, timeout=SLOW
        )
        finals = [e for e in seen.of_type("transcript.partial") if e["speech_final"]]
        assert_mostly(DOOR, finals[0]["text"])
        (done,) = seen.of_type("transcript.done")
        assert seen.close_code == 1000
        assert "door" not in done["text"].split()  # already delivered by the speech_final


async def test_numbers_without_endpointing(sphinx_server: STTServer) -> None:
    seen = await transcribe(sphinx_server.url, load_clip("numbers.wav"), timeout=SLOW)
    # One utterance, ended only by the flush at audio.done.
    (final,) = utterance_finals(seen)
    assert final is seen.events[-2]
    assert_mostly(NUMBERS, final_text(seen))


def utterances(seen: Observed) -> list[str]:
    """Texts of the utterances: each utterance final restates its locked chunks."""
    return [e["text"] for e in utterance_finals(seen)]


def chunks_joined(seen: Observed) -> list[str]:
    """Texts of the utterances from their chunk finals, joined up to each utterance final."""
    texts, current = [], []
    for event in seen.of_type("transcript.partial"):
        if event["is_final"] and not event["speech_final"]:
            current += event["text"].split()
        elif event["speech_final"]:
            texts.append(" ".join(current))
            current = []
    return texts


async def test_demo_clip(sphinx_server: STTServer) -> None:
    seen = await transcribe(sphinx_server.url, load_clip("demo.wav"), endpointing=300, timeout=SLOW)
    assert_mostly(MORNING + FLIGHT, final_text(seen))
    # The utterance finals restate exactly what the chunk finals locked.
    assert chunks_joined(seen) == utterances(seen)
    first, second = utterances(seen)
    assert_mostly(MORNING, first)
    assert_mostly(FLIGHT, second)


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
async def test_telephone_audio_8khz_g711(sphinx_server: STTServer, encoding: str) -> None:
    pcm = np.frombuffer(load_clip("hello_world.wav"), "<i2").astype(np.int32)
    narrowband = ((pcm[0::2] + pcm[1::2]) // 2).astype(np.int16)  # simple 2:1 decimation
    wire = g711.encode(narrowband, encoding)
    seen = await transcribe(
        sphinx_server.url, wire, chunk=800, sample_rate=8000, encoding=encoding, timeout=SLOW
    )
    assert_mostly(HELLO, final_text(seen))


async def test_48khz_audio(sphinx_server: STTServer) -> None:
    pcm = np.frombuffer(load_clip("hello_world.wav"), "<i2").astype(np.float64)
    wideband = np.interp(np.arange(len(pcm) * 3) / 3, np.arange(len(pcm)), pcm)
    seen = await transcribe(
        sphinx_server.url,
        wideband.astype("<i2").tobytes(),
        chunk=9600,
        sample_rate=48000,
        timeout=SLOW,
    )
    assert_mostly(HELLO, final_text(seen))


async def test_multichannel_real_speech(sphinx_server: STTServer) -> None:
    left = np.frombuffer(load_clip("hello_world.wav"), "<i2")
    right = np.frombuffer(load_clip("numbers.wav"), "<i2")
    left = np.concatenate([left, np.zeros(len(right) - len(left), np.int16)])
    stereo = np.stack([left, right], axis=1).reshape(-1).astype("<i2").tobytes()
    seen = await transcribe(
        sphinx_server.url, stereo, chunk=6400, multichannel=True, channels=2, timeout=SLOW
    )
    text = {0: "", 1: ""}
    for final in utterance_finals(seen):
        text[final["channel_index"]] += " " + final["text"]
    assert_mostly(HELLO, text[0])
    assert_mostly(NUMBERS, text[1])
    assert [d["text"] for d in seen.of_type("transcript.done")] == ["", ""]


async def test_the_legacy_wire_still_carries_everything_in_the_done_text() -> None:
    async with STTServer(wire="legacy") as server:
        seen = await transcribe(server.url, load_clip("demo.wav"), endpointing=300, timeout=SLOW)
    (done,) = seen.of_type("transcript.done")
    assert_mostly(MORNING + FLIGHT, done["text"])
    # Tail utterance finals: the chunk finals and utterance finals together carry it once.
    carried = [e["text"] for e in seen.of_type("transcript.partial") if e["is_final"]]
    assert " ".join(t for t in carried if t).split() == done["text"].split()


async def test_finalize_with_real_speech_in_a_worker(sphinx_server: STTServer) -> None:
    # pocketsphinx sessions live in worker processes: finalize goes there too.
    pcm = load_clip("hello_world.wav")
    async with open_client(sphinx_server.url) as ws:
        await expect_created(ws)
        await send_audio(ws, pcm)
        await ws.send(json.dumps({"type": "finalize"}))
        events = []
        while not events or not events[-1].get("speech_final"):
            events.append(json.loads(await asyncio.wait_for(ws.recv(), SLOW)))
        assert_mostly(HELLO, events[-1]["text"])
        await send_audio(ws, pcm)
        await send_done(ws)
        seen = await receive_all(ws, SLOW)
    assert_mostly(HELLO, final_text(seen))
