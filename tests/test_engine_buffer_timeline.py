"""The outage buffer and the session timeline with plain data."""

from __future__ import annotations

import math
import random
import struct
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xai_asr_python.audio_buffer import (
    SPEECH_THRESHOLD_DBFS,
    AudioBuffer,
    AudioFrame,
    FinalizeMarker,
    is_speech,
    level_dbfs,
)
from xai_asr_python.timeline import TICKS_PER_MS, AudioFormat, ConnectionTimeline, round_ms

PCM16K = AudioFormat(16000, "pcm", 1)


def pcm_ms(ms: int, value: int = 0, fmt: AudioFormat = PCM16K) -> bytes:
    samples = fmt.sample_rate * ms // 1000 * fmt.channels
    return struct.pack(f"<{samples}h", *([value] * samples))


def audio_items(buffer: AudioBuffer) -> list[AudioFrame]:
    return [item for item in buffer if isinstance(item, AudioFrame)]


def test_format_arithmetic() -> None:
    assert PCM16K.bytes_per_frame == 2 and PCM16K.bytes_per_second == 32000
    assert PCM16K.duration_ms(3200) == 100
    stereo_mulaw = AudioFormat(8000, "mulaw", 2)
    assert stereo_mulaw.bytes_per_frame == 2
    assert stereo_mulaw.duration_ms(1600) == 100
    # 22050 Hz: a 10 ms frame is not a whole number of samples; durations stay exact.
    odd = AudioFormat(22050, "pcm", 1)
    assert odd.duration_ms(441 * 2) == 20
    assert odd.duration_ms(2) == Fraction(1000, 22050)
    with pytest.raises(ValueError):
        AudioFormat(16000, "opus", 1).bytes_per_frame  # noqa: B018


def test_frames_keep_their_stream_position_in_order() -> None:
    buffer = AudioBuffer(PCM16K, max_ms=1000)
    for _ in range(3):
        assert buffer.push(pcm_ms(100)) is None
    frames = audio_items(buffer)
    assert [f.start_ms for f in frames] == [0, 100, 200]
    assert buffer.queued_ms == 300 and buffer.position_ms == 300


def test_partial_sample_is_carried_to_the_next_chunk_never_split() -> None:
    stereo = AudioFormat(16000, "pcm", 2)  # 4 bytes per sample frame
    buffer = AudioBuffer(stereo, max_ms=1000)
    buffer.push(b"\x01\x02\x03\x04\x05\x06")  # 1.5 sample frames
    buffer.push(b"\x07\x08")
    data = b"".join(f.data for f in audio_items(buffer))
    assert data == b"\x01\x02\x03\x04\x05\x06\x07\x08"
    assert all(len(f.data) % 4 == 0 for f in audio_items(buffer))


def test_bound_drops_the_oldest_whole_frames_and_reports_it() -> None:
    buffer = AudioBuffer(PCM16K, max_ms=250)
    reports = [buffer.push(pcm_ms(100)) for _ in range(5)]
    assert reports[:2] == [None, None]
    assert all(r is not None for r in reports[2:])
    last = reports[-1]
    assert last is not None and last.dropped_ms == 100 and last.frames == 1
    dropped = [r for r in reports if r is not None]
    assert sum(r.dropped_ms for r in dropped) == 300 and sum(r.frames for r in dropped) == 3
    # The newest audio survives, and positions still count the dropped audio.
    assert [f.start_ms for f in audio_items(buffer)] == [300, 400]
    assert buffer.queued_ms == 200


def test_markers_keep_their_place_and_survive_drops() -> None:
    buffer = AudioBuffer(PCM16K, max_ms=200)
    buffer.push(pcm_ms(100))
    buffer.mark_finalize("f1")
    buffer.push(pcm_ms(100))
    buffer.push(pcm_ms(100))  # over the bound: the frame before the marker goes
    kinds = [type(item).__name__ for item in buffer]
    assert kinds == ["FinalizeMarker", "AudioFrame", "AudioFrame"]
    assert isinstance(buffer.peek(), FinalizeMarker)


def test_push_front_puts_a_failed_frame_first() -> None:
    buffer = AudioBuffer(PCM16K, max_ms=1000)
    buffer.push(pcm_ms(100, 1))
    buffer.push(pcm_ms(100, 2))
    first = buffer.pop()
    assert isinstance(first, AudioFrame) and first.start_ms == 0
    buffer.push_front(first)
    assert buffer.pop() == first
    assert buffer.queued_ms == 100


def test_remove_marker() -> None:
    buffer = AudioBuffer(PCM16K, max_ms=1000)
    buffer.mark_finalize("a")
    assert buffer.remove_marker("a") and not buffer.remove_marker("a")
    assert len(buffer) == 0


def test_speech_detection_pcm_and_g711() -> None:
    assert not is_speech(pcm_ms(100, 0), "pcm")
    assert level_dbfs(b"", "pcm") == -math.inf
    assert not is_speech(pcm_ms(100, 200), "pcm")  # about -44 dBFS: background
    assert is_speech(pcm_ms(100, 8000), "pcm")  # about -12 dBFS: speech
    # G.711 silence bytes decode to (nearly) zero; loud codes to large values.
    assert not is_speech(bytes([0xFF]) * 800, "mulaw")
    assert is_speech(bytes([0x80]) * 800, "mulaw")  # mu-law max magnitude
    assert not is_speech(bytes([0xD5]) * 800, "alaw")
    assert is_speech(bytes([0xAA]) * 800, "alaw")  # A-law max magnitude


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=1200),  # samples: short frames and long ones
    st.floats(0.0, 1.0),  # the share of loud samples (around the shortcut's 0.41)
    st.integers(513, 33000),  # how loud they may be (from just past the shortcut's 512)
    st.integers(0, 520),  # how loud the others may be
    st.integers(0, 2**32),
    st.booleans(),  # an odd byte count
)
def test_speech_shortcuts_decide_as_the_level_does(
    n: int, share: float, loud: int, quiet: int, seed: int, odd: bool
) -> None:
    # is_speech decides most frames from their high bytes; it must agree with the
    # measured level on every frame.
    rng = random.Random(seed)
    samples = [
        rng.choice((1, -1)) * rng.randint(513, loud)
        if rng.random() < share
        else rng.randint(-quiet, quiet)
        for _ in range(n)
    ]
    samples = [max(-32768, min(32767, v)) for v in samples]
    data = struct.pack(f"<{n}h", *samples) + (b"\x7f" if odd else b"")
    assert is_speech(data, "pcm") == (level_dbfs(data, "pcm") > SPEECH_THRESHOLD_DBFS)


# ----------------------------------------------------------------- timeline


def ticks(ms: int) -> int:
    return ms * TICKS_PER_MS


def test_round_ms_is_half_up() -> None:
    assert round_ms(Fraction(1, 2)) == 1 and round_ms(Fraction(3, 2)) == 2
    assert round_ms(Fraction(49, 100)) == 0


def test_offset_is_the_user_time_of_the_first_byte() -> None:
    timeline = ConnectionTimeline(16000)
    timeline.record_sent(ticks(12_340), ticks(100))
    timeline.record_sent(ticks(12_440), ticks(100))
    assert timeline.offset_ms == 12_340 and timeline.sent_ms == 200
    assert timeline.span(0.05, 0.06) == (12_390, 10)


def test_gap_from_dropped_audio_inside_one_connection_is_mapped_exactly() -> None:
    timeline = ConnectionTimeline(16000)
    timeline.record_sent(ticks(0), ticks(100))
    timeline.record_sent(ticks(500), ticks(100))  # 400 ms dropped in between
    assert timeline.to_user_ms(0.05) == 50
    assert timeline.to_user_ms(0.1) == 500  # a start on the boundary: the later stretch
    assert timeline.to_user_ms(0.1, end=True) == 100  # an end on the boundary: the earlier
    assert timeline.span(0.12, 0.13) == (520, 10)
    assert timeline.user_end_ms == 600


def test_vendor_float_noise_snaps_to_the_sample_grid() -> None:
    timeline = ConnectionTimeline(16000)
    timeline.record_sent(ticks(1000), ticks(10_000))
    assert timeline.span(0.1 * 3, 0.1 * 3 + 0.01) == (1300, 10)
    assert timeline.span(2.9999999, 3.0100001) == (4000, 10)


def test_span_is_clamped_to_the_audio_sent() -> None:
    timeline = ConnectionTimeline(16000)
    timeline.record_sent(ticks(2000), ticks(500))
    assert timeline.span(0.4, 0.9) == (2400, 100)


def test_odd_sample_rate_stays_exact() -> None:
    fmt = AudioFormat(22050, "pcm", 1)
    timeline = ConnectionTimeline(22050)
    position = 0
    for _ in range(100):
        length = fmt.ticks(220 * 2)
        timeline.record_sent(position, length)
        position += length
    # 100 frames of 220 samples: 22000 samples = 997.73 ms; no drift.
    assert timeline.sent_ms == Fraction(22000 * 1000, 22050)
    start, duration = timeline.span(0.5, 0.6)
    assert (start, duration) == (500, 100)


def test_no_audio_sent_maps_to_the_base() -> None:
    timeline = ConnectionTimeline(16000, base_user=ticks(7000))
    assert timeline.offset_ms == 7000
    assert timeline.span(0.0, 0.5) == (7000, 0)


def test_speech_detection_cannot_alias_a_tone_away() -> None:
    # A 2 kHz tone at 48 kHz stereo: a strided subsample could land on its zero crossings.
    fmt = AudioFormat(48000, "pcm", 2)
    frames = fmt.sample_rate // 10
    samples = []
    for n in range(frames):
        value = round(8000 * math.sin(2 * math.pi * 2000 * n / fmt.sample_rate))
        samples += [value, value]
    data = struct.pack(f"<{len(samples)}h", *samples)
    assert is_speech(data, "pcm")
    assert level_dbfs(data, "pcm") == pytest.approx(
        20 * math.log10(8000 / 32768 / math.sqrt(2)), abs=0.5
    )


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 22050, 24000, 44100, 48000]),
    stretches=st.lists(
        st.tuples(st.integers(0, 5000), st.integers(1, 3000)), min_size=0, max_size=4
    ),
    start_s=st.floats(-1, 20, allow_nan=False),
    length_s=st.floats(-1, 5, allow_nan=False),
)
def test_span_in_ticks_is_the_exact_rational_mapping_rounded_once(
    rate: int, stretches: list[tuple[int, int]], start_s: float, length_s: float
) -> None:
    """span() works in integer ticks (it runs for every word); it gives what the exact
    rational mapping (to_user_ms, clamped, rounded half-up once) gives."""
    fmt = AudioFormat(rate, "pcm", 1)
    timeline = ConnectionTimeline(rate, base_user=ticks(300))
    position = 0
    for gap_samples, samples in stretches:  # stretches of audio, with dropped gaps
        position += gap_samples * fmt.ticks_per_frame
        timeline.record_sent(position, samples * fmt.ticks_per_frame)
        position += samples * fmt.ticks_per_frame
    end_s = start_s + length_s
    low, high = timeline.offset_ms, timeline.user_end_ms
    start = min(max(timeline.to_user_ms(start_s), low), high)
    stop = min(max(timeline.to_user_ms(max(start_s, end_s), end=True), start), high)
    assert timeline.span(start_s, end_s) == (
        round_ms(start),
        max(0, round_ms(stop) - round_ms(start)),
    )
