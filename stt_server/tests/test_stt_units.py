"""The sans-I/O parts: query validation, G.711, marker audio, utterance state machine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from stt_server import g711, marker
from stt_server.faults import Close, ErrorEvent, Fault, Malformed
from stt_server.protocol import QueryError, SessionConfig, parse_query, split_path
from stt_server.recognizers import (
    DEFAULT_VAD_THRESHOLD_DB,
    MarkerBackend,
    frame_level_db,
    resample_frame,
)
from stt_server.session import SessionStyle, STTSession

# -- query validation --------------------------------------------------------


def test_defaults_match_the_service() -> None:
    assert parse_query({}) == SessionConfig(
        sample_rate=16000, encoding="pcm", interim_results=False, endpointing_ms=0, channels=1
    )


def test_full_query_is_parsed() -> None:
    path, query = split_path(
        "/v1/stt?sample_rate=8000&encoding=mulaw&interim_results=true&endpointing=300"
        "&language=en-US&multichannel=true&channels=3&diarize=false"
    )
    assert path == "/v1/stt"
    config = parse_query(query)
    assert config == SessionConfig(8000, "mulaw", True, 300, "en-US", True, 3, False)
    assert config.bytes_per_second == 8000 * 1 * 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sample_rate", "12345"),
        ("sample_rate", "16000.0"),
        ("encoding", "opus"),
        ("interim_results", "True"),
        ("interim_results", "1"),
        ("endpointing", "-1"),
        ("endpointing", "5001"),
        ("endpointing", "abc"),
        ("diarize", "yes"),
        ("multichannel", "TRUE"),
        ("language", "english please"),
    ],
)
def test_bad_values_name_their_field(field: str, value: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query({field: value})
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize("channels", ["1", "9", "two"])
def test_channels_are_checked_only_with_multichannel(channels: str) -> None:
    assert parse_query({"channels": channels}).channels == 1
    with pytest.raises(QueryError, match="channels"):
        parse_query({"multichannel": "true", "channels": channels})


def test_endpointing_bounds_are_inclusive() -> None:
    assert parse_query({"endpointing": "0"}).endpointing_ms == 0
    assert parse_query({"endpointing": "5000"}).endpointing_ms == 5000


# -- G.711 ---------------------------------------------------------------------


def test_g711_known_values() -> None:
    assert g711.decode(bytes([0xFF, 0x7F, 0x00, 0x80]), "mulaw").tolist() == [0, 0, -32124, 32124]
    assert g711.decode(bytes([0xD5, 0x55, 0x2A, 0xAA]), "alaw").tolist() == [8, -8, -32256, 32256]


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_g711_matches_the_reference_codec(encoding: str) -> None:
    # audioop (deprecated, gone in 3.13) is the reference where it still exists.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    every_sample = np.arange(-32768, 32768, dtype=np.int16)
    pcm = every_sample.astype("<i2").tobytes()
    codes = bytes(range(256))
    if encoding == "mulaw":
        assert g711.encode(every_sample, encoding) == audioop.lin2ulaw(pcm, 2)
        assert g711.decode(codes, encoding).astype("<i2").tobytes() == audioop.ulaw2lin(codes, 2)
    else:
        assert g711.encode(every_sample, encoding) == audioop.lin2alaw(pcm, 2)
        assert g711.decode(codes, encoding).astype("<i2").tobytes() == audioop.alaw2lin(codes, 2)


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_g711_roundtrip_error_is_small(encoding: str) -> None:
    samples = np.linspace(-30000, 30000, 5001).astype(np.int16)
    back = g711.roundtrip(samples, encoding).astype(np.int32)
    # Logarithmic quantisation: the error grows with the level, about 3 %.
    assert np.all(np.abs(back - samples) <= np.abs(samples) * 0.04 + 16)


# -- marker audio --------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_marker_roundtrip_at_every_rate(rate: int) -> None:
    pattern = [(False, 3), (True, 5), (False, 2)]
    audio = marker.generate(pattern, rate, start_index=4_000_000_001)
    frames = marker.decode(audio, rate)
    assert [f.index for f in frames] == list(range(4_000_000_001, 4_000_000_011))
    assert [f.is_speech for f in frames] == [False] * 3 + [True] * 5 + [False] * 2
    assert all(f.ok for f in frames)
    assert len(audio) == 2 * sum(
        marker.frame_samples(i, rate) for i in range(4_000_000_001, 4_000_000_011)
    )


def test_marker_frames_at_22050_alternate_by_global_index() -> None:
    assert [marker.frame_samples(i, 22050) for i in range(4)] == [220, 221, 220, 221]
    # A stream cut at an odd index still decodes: sizes follow the index, not the position.
    audio = marker.generate([(True, 6)], 22050, start_index=7)
    assert [f.index for f in marker.decode(audio, 22050)] == list(range(7, 13))


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_marker_survives_g711(encoding: str) -> None:
    audio = marker.generate([(True, 10), (False, 10)], 8000, start_index=123)
    wire = g711.encode(audio, encoding)
    frames = marker.decode(wire, 8000, encoding)
    assert [f.index for f in frames] == list(range(123, 143)) and all(f.ok for f in frames)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_marker_silence_is_quiet_and_speech_is_loud(rate: int) -> None:
    # So an energy VAD (the pocketsphinx recogniser's) agrees with the flags.
    silence = np.frombuffer(marker.generate([(False, 1)], rate), "<i2")
    speech = np.frombuffer(marker.generate([(True, 1)], rate), "<i2")
    assert frame_level_db(silence) < DEFAULT_VAD_THRESHOLD_DB - 3
    assert frame_level_db(speech) > DEFAULT_VAD_THRESHOLD_DB + 20


def test_a_lost_byte_is_reported_as_misalignment() -> None:
    audio = marker.generate([(True, 20)])
    frames = marker.decode(audio[:1001] + audio[1002:])
    assert frames[0].ok and frames[1].ok  # bytes 0..959 are untouched
    assert any(f.error == "bad header" for f in frames)
    assert not frames[-1].ok  # the stream never realigns on its own


def test_a_duplicated_frame_shows_in_the_indices() -> None:
    audio = marker.generate([(True, 5)])
    frame_bytes = 320
    duplicated = audio[: 3 * frame_bytes] + audio[2 * frame_bytes :]
    frames = marker.decode(duplicated)
    assert all(f.ok for f in frames)
    assert [f.index for f in frames] == [0, 1, 2, 2, 3, 4]


def test_corrupted_payload_and_truncation_are_reported() -> None:
    audio = bytearray(marker.generate([(True, 3)]))
    audio[320 + 200] ^= 0x40  # inside frame 1's tone
    frames = marker.decode(bytes(audio) + b"\x01\x02\x03")
    assert [f.error for f in frames] == [None, "bad payload", None, "truncated"]


# -- the utterance state machine (marker recogniser, no sockets) --------------

LIVE = SessionStyle()
LEGACY = SessionStyle(utterance_final="tail", empty_partials=False)


def run_session(
    pattern: list[tuple[bool, int]],
    chunk: int = 3200,
    done_text: str = "empty",
    *,
    style: SessionStyle = LIVE,
    flush: bool = True,
    **query: str,
) -> tuple[list[dict], list[dict]]:
    """(partials, including those flushed at audio.done; the transcript.done events)."""
    session = STTSession(parse_query(query), MarkerBackend(), style)
    audio = marker.generate(pattern)
    events: list[dict] = []
    for offset in range(0, len(audio), chunk):
        events += session.feed_audio(audio[offset : offset + chunk])
    answer = session.finish(done_text, flush)
    session.close()
    events += [e for e in answer if e["type"] != "transcript.done"]
    return events, [e for e in answer if e["type"] == "transcript.done"]


def words_of(event: dict) -> list[str]:
    return [w["text"] for w in event["words"]]


def numbers(first: int, stop: int) -> list[str]:
    return [str(i) for i in range(first, stop)]


def kinds(events: list[dict]) -> list[tuple[bool, bool]]:
    return [(e["is_final"], e["speech_final"]) for e in events]


CHUNK_FINAL, UTTERANCE_FINAL = (True, False), (True, True)


def test_interim_partials_every_500_ms_of_chunk_audio() -> None:
    events, _ = run_session([(False, 30), (True, 170)], interim_results="true")
    interim = [e for e in events if not e["is_final"]]
    assert [e["duration"] for e in interim] == [0.5, 1.0, 1.5]
    assert all(e["start"] == 0.3 for e in interim)
    assert words_of(interim[0]) == numbers(30, 80)


def test_no_partials_unless_asked_until_audio_done() -> None:
    events, _ = run_session([(True, 170)], flush=False)
    assert events == []


def test_audio_done_flushes_the_open_utterance() -> None:
    events, done = run_session([(True, 170)])
    assert kinds(events) == [CHUNK_FINAL, UTTERANCE_FINAL]
    assert words_of(events[0]) == words_of(events[1]) == numbers(0, 170)
    assert [(e["start"], e["duration"]) for e in events] == [(0.0, 1.7)] * 2
    assert done == [
        {"type": "transcript.done", "text": "", "words": [], "duration": 1.7, "channel_index": 0}
    ]


def test_speech_final_after_endpointing_silence() -> None:
    events, _ = run_session([(True, 40), (False, 29), (True, 10), (False, 30)], endpointing="300")
    # Even a one-chunk utterance comes twice: its chunk final, then the utterance final.
    assert kinds(events) == [CHUNK_FINAL, UTTERANCE_FINAL]
    # A 290 ms pause does not end the utterance; 300 ms does.
    for event in events:
        assert words_of(event) == numbers(0, 40) + numbers(69, 79)
        assert event["start"] == 0.0 and event["duration"] == 1.09
        assert event["words"][0] == {"text": "0", "start": 0.0, "end": 0.01}
        assert event["words"][-1] == {"text": "78", "start": 0.78, "end": 0.79}


def test_endpointing_zero_never_ends_an_utterance() -> None:
    events, done = run_session(
        [(True, 40), (False, 200), (True, 10)], endpointing="0", done_text="whole", flush=False
    )
    assert events == []
    assert done[0]["text"].split() == numbers(0, 40) + numbers(240, 250)


def test_chunk_locks_at_3_5_s_of_continuous_speech() -> None:
    events, _ = run_session([(True, 750)])
    # Chunk finals carry their own chunk but start at the utterance's start.
    assert [(e["start"], e["duration"], e["speech_final"]) for e in events] == [
        (0.0, 3.5, False),
        (0.0, 7.0, False),
        (0.0, 7.5, False),
        (0.0, 7.5, True),
    ]
    assert [words_of(e) for e in events] == [
        numbers(0, 350),
        numbers(350, 700),
        numbers(700, 750),
        numbers(0, 750),
    ]


def test_chunk_locks_at_3_5_s_legacy_times() -> None:
    events, _ = run_session([(True, 750)], style=LEGACY, flush=False)
    assert [(e["start"], e["duration"], e["speech_final"]) for e in events] == [
        (0.0, 3.5, False),
        (3.5, 3.5, False),
    ]
    assert words_of(events[1])[0] == "350"


def test_chunk_locks_at_a_pause_after_2_5_s() -> None:
    events, _ = run_session([(True, 260), (False, 15), (True, 100)], flush=False)
    (locked,) = events
    assert locked["duration"] == 2.7  # cut 100 ms into the pause
    assert words_of(locked)[-1] == "259"


def test_a_pause_before_2_5_s_does_not_lock() -> None:
    events, _ = run_session([(True, 200), (False, 20), (True, 200)], flush=False)
    (locked,) = events
    assert locked["duration"] == 3.5


def test_the_utterance_final_restates_a_chunk_locked_before_the_silence() -> None:
    events, _ = run_session([(True, 300), (False, 60)], endpointing="500")
    assert kinds(events) == [CHUNK_FINAL, UTTERANCE_FINAL]
    assert [(e["start"], e["duration"]) for e in events] == [(0.0, 3.1), (0.0, 3.5)]
    assert words_of(events[0]) == words_of(events[1]) == numbers(0, 300)


def test_legacy_speech_final_can_be_empty_after_a_lock() -> None:
    events, _ = run_session([(True, 300), (False, 60)], style=LEGACY, endpointing="500")
    assert [(e["is_final"], e["speech_final"], e["text"] != "") for e in events] == [
        (True, False, True),
        (True, True, False),
    ]
    assert (events[0]["start"], events[0]["duration"]) == (0.0, 3.1)
    assert (events[1]["start"], events[1]["duration"]) == (3.1, 0.4)


@pytest.mark.parametrize("style", [LIVE, LEGACY])
@pytest.mark.parametrize("chunk", [1, 7, 320, 4000])
def test_results_do_not_depend_on_how_audio_is_chunked(chunk: int, style: SessionStyle) -> None:
    pattern = [(False, 60), (True, 80), (False, 40), (True, 300), (False, 160)]
    query = {"endpointing": "300", "interim_results": "true"}
    reference = run_session(pattern, 3200, style=style, **query)
    assert run_session(pattern, chunk, style=style, **query) == reference


@pytest.mark.parametrize("flush", [True, False])
def test_done_text_modes(flush: bool) -> None:
    pattern = [(True, 20), (False, 40), (True, 10)]
    texts = {}
    for mode in ("empty", "whole", "pending"):
        events, done = run_session(pattern, endpointing="300", done_text=mode, flush=flush)
        assert words_of(events[0]) == numbers(0, 20)
        assert done[0]["duration"] == 0.7 and done[0]["channel_index"] == 0
        assert done[0]["text"] == " ".join(words_of(done[0]))
        texts[mode] = done[0]["text"].split()
    assert texts["empty"] == []
    assert texts["whole"] == numbers(0, 20) + numbers(60, 70)
    # Flushed, the open utterance ended with a speech_final: nothing is pending.
    assert texts["pending"] == ([] if flush else numbers(60, 70))


def test_pending_includes_locked_chunks_of_the_open_utterance() -> None:
    events, pending = run_session([(True, 400)], done_text="pending", flush=False)
    assert events[0]["is_final"] and not events[0]["speech_final"]
    assert pending[0]["text"].split() == numbers(0, 400)


def test_multichannel_recognises_each_channel() -> None:
    left = np.frombuffer(marker.generate([(True, 30), (False, 60)], start_index=0), "<i2")
    right = np.frombuffer(
        marker.generate([(False, 30), (True, 30), (False, 30)], start_index=500), "<i2"
    )
    interleaved = np.stack([left, right], axis=1).reshape(-1).astype("<i2").tobytes()
    session = STTSession(
        parse_query({"multichannel": "true", "channels": "2", "endpointing": "200"}),
        MarkerBackend(),
    )
    events = []
    for offset in range(0, len(interleaved), 999):  # odd slices split samples and channels
        events += session.feed_audio(interleaved[offset : offset + 999])
    answer = session.finish()
    events += answer
    done = [e for e in answer if e["type"] == "transcript.done"]
    finals = {e["channel_index"]: e for e in events if e.get("speech_final")}
    assert words_of(finals[0]) == [str(i) for i in range(30)]
    assert words_of(finals[1]) == [str(i) for i in range(530, 560)]
    assert finals[1]["words"][0]["start"] == 0.3
    assert [(d["channel_index"], d["duration"]) for d in done] == [(0, 0.9), (1, 0.9)]


# -- resampling for pocketsphinx ----------------------------------------------


@pytest.mark.parametrize("rate", [8000, 22050, 24000, 44100, 48000])
def test_resampling_keeps_a_tone_and_its_level(rate: int) -> None:
    n = marker.frame_samples(1, rate)
    t = np.arange(n) / rate
    frame = np.round(10000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    out = resample_frame(frame, rate)
    expected = 10000 * np.sin(2 * np.pi * 500 * ((np.arange(160) + 0.5) / 16000 - 0.5 / rate))
    assert len(out) == 160
    # Same tone, same level: frames of 220/221 samples at 22050 Hz and the
    # box filter shift phase by a fraction of a sample, nothing more.
    assert np.corrcoef(out, expected)[0, 1] > 0.99
    assert 0.9 < np.std(out) / np.std(expected) < 1.1


# -- fault declarations -------------------------------------------------------


def test_fault_parts_reject_contradictions() -> None:
    with pytest.raises(ValueError):
        ErrorEvent(after_ms=10, after_bytes=10)
    with pytest.raises(ValueError):
        Close(code="explode")
    with pytest.raises(ValueError):
        Malformed(kinds=("gibberish",))
    with pytest.raises(ValueError):
        Fault(done_text="everything")
    with pytest.raises(ValueError):
        Fault(refuse_status=200)
    assert Fault(close=Close(code="abort")).close.abort  # type: ignore[union-attr]
    assert Fault(no_created=True).describe() == "Fault(no_created=True)"
