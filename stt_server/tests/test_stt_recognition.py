"""Real recognition (pocketsphinx) of the committed clips.

Assertions are on robust expectations: most of the expected words, in
order, and word times that sit where the speech is, not exact strings.
"""

from __future__ import annotations

import difflib
import math

import numpy as np
import pytest
from server_support import Observed, load_clip, transcribe

from stt_server import STTServer, g711

HELLO = "hello world the weather is nice today".split()
NUMBERS = "one two three four five six seven eight nine ten".split()
DOOR = "please open the door".split()
THANKS = "thank you very much".split()
MORNING = "good morning how are you doing today".split()
FLIGHT = "i would like to book a flight from boston to new york".split()


def assert_mostly(expected: list[str], text: str, share: float = 0.8) -> None:
    """At least `share` of the expected words come back, in order."""
    got = text.split()
    blocks = difflib.SequenceMatcher(None, expected, got).get_matching_blocks()
    matched = sum(block.size for block in blocks)
    assert matched >= math.ceil(share * len(expected)), f"expected ~{expected}, got {got}"


def done_text(seen: Observed) -> str:
    (done,) = seen.of_type("transcript.done")
    assert seen.close_code == 1000
    return done["text"]


def all_words(seen: Observed) -> list[dict]:
    return [w for e in seen.of_type("transcript.partial") if e["is_final"] for w in e["words"]]


def speech_span(pcm: bytes, rate: int = 16000) -> tuple[float, float]:
    """First and last 10 ms frame louder than -40 dBFS, in seconds."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    frames = samples[: len(samples) // (rate // 100) * (rate // 100)].reshape(-1, rate // 100)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 32768 * 10 ** (-40 / 20))
    return loud[0] / 100, (loud[-1] + 1) / 100


async def test_hello_world_words_and_times(sphinx_server: STTServer) -> None:
    pcm = load_clip("hello_world.wav")
    seen = await transcribe(sphinx_server.url, pcm, endpointing=500, interim_results=True)
    assert_mostly(HELLO, done_text(seen))
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
    seen = await transcribe(sphinx_server.url, pcm, endpointing=300)
    finals = [e for e in seen.of_type("transcript.partial") if e["speech_final"]]
    assert len(finals) == 2
    assert_mostly(DOOR, finals[0]["text"])
    assert_mostly(THANKS, finals[1]["text"])
    # The first sentence is over by 1.62 s, the second starts after the 1.5 s gap.
    assert all(w["end"] <= 1.7 for w in finals[0]["words"])
    assert all(w["start"] >= 3.1 for w in finals[1]["words"])
    assert finals[1]["start"] >= 3.1
    assert_mostly(DOOR + THANKS, done_text(seen))


async def test_pending_done_text_with_real_speech() -> None:
    async with STTServer(done_text="pending") as server:
        pcm = load_clip("two_sentences.wav")
        # Cut in the silence after the first sentence's speech_final.
        seen = await transcribe(
            server.url, pcm[: 2 * 16000 * 3] + pcm[-2 * 16000 * 2 :], endpointing=500
        )
        finals = [e for e in seen.of_type("transcript.partial") if e["speech_final"]]
        assert_mostly(DOOR, finals[0]["text"])
        text = done_text(seen)
        assert "door" not in text.split()  # already delivered by the speech_final


async def test_numbers_without_endpointing(sphinx_server: STTServer) -> None:
    seen = await transcribe(sphinx_server.url, load_clip("numbers.wav"))
    assert not [e for e in seen.of_type("transcript.partial") if e["speech_final"]]
    assert_mostly(NUMBERS, done_text(seen))


def utterances(seen: Observed) -> list[str]:
    """Texts of the utterances: locked chunks joined up to each speech_final."""
    texts, current = [], []
    for event in seen.of_type("transcript.partial"):
        if event["is_final"]:
            current += event["text"].split()
            if event["speech_final"]:
                texts.append(" ".join(current))
                current = []
    return texts


async def test_demo_clip(sphinx_server: STTServer) -> None:
    seen = await transcribe(sphinx_server.url, load_clip("demo.wav"), endpointing=300)
    assert_mostly(MORNING + FLIGHT, done_text(seen))
    first, second = utterances(seen)
    assert_mostly(MORNING, first)
    assert_mostly(FLIGHT, second)


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
async def test_telephone_audio_8khz_g711(sphinx_server: STTServer, encoding: str) -> None:
    pcm = np.frombuffer(load_clip("hello_world.wav"), "<i2").astype(np.int32)
    narrowband = ((pcm[0::2] + pcm[1::2]) // 2).astype(np.int16)  # simple 2:1 decimation
    wire = g711.encode(narrowband, encoding)
    seen = await transcribe(sphinx_server.url, wire, chunk=800, sample_rate=8000, encoding=encoding)
    assert_mostly(HELLO, done_text(seen))


async def test_48khz_audio(sphinx_server: STTServer) -> None:
    pcm = np.frombuffer(load_clip("hello_world.wav"), "<i2").astype(np.float64)
    wideband = np.interp(np.arange(len(pcm) * 3) / 3, np.arange(len(pcm)), pcm)
    seen = await transcribe(
        sphinx_server.url, wideband.astype("<i2").tobytes(), chunk=9600, sample_rate=48000
    )
    assert_mostly(HELLO, done_text(seen))


async def test_multichannel_real_speech(sphinx_server: STTServer) -> None:
    left = np.frombuffer(load_clip("hello_world.wav"), "<i2")
    right = np.frombuffer(load_clip("numbers.wav"), "<i2")
    left = np.concatenate([left, np.zeros(len(right) - len(left), np.int16)])
    stereo = np.stack([left, right], axis=1).reshape(-1).astype("<i2").tobytes()
    seen = await transcribe(sphinx_server.url, stereo, chunk=6400, multichannel=True, channels=2)
    done = {d["channel_index"]: d["text"] for d in seen.of_type("transcript.done")}
    assert_mostly(HELLO, done[0])
    assert_mostly(NUMBERS, done[1])
