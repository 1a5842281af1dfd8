"""The main job's audio input: every format it promises comes back as the same sound."""

from __future__ import annotations

import importlib.util
import wave
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "stt_server" / "audio" / "hello_world.wav"


def _audio_io() -> ModuleType:
    path = ROOT / "examples" / "ten_packages" / "extension" / "audio_file_source" / "audio_io.py"
    spec = importlib.util.spec_from_file_location("audio_io_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audio_io = _audio_io()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    with wave.open(str(CLIP)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def load(path: Path) -> np.ndarray:
    return np.frombuffer(audio_io.load_pcm16_mono(path, 16000), "<i2")


def similarity(expected: np.ndarray, got: np.ndarray, max_lag: int = 2000) -> float:
    """Best normalised correlation over small lags (lossy codecs add a delay)."""
    a = expected.astype(np.float64)
    b = got.astype(np.float64)
    best = 0.0
    for lag in range(0, max_lag + 1, 1):
        n = min(len(a), len(b) - lag)
        if n <= 0:
            break
        x, y = a[:n], b[lag : lag + n]
        best = max(best, float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9)))
        if best > 0.999:
            break
    return best


@pytest.mark.parametrize(
    ("subtype", "tolerance"),
    [("PCM_16", 0), ("PCM_U8", 260), ("PCM_24", 1), ("PCM_32", 1), ("FLOAT", 1), ("DOUBLE", 1)],
)
def test_wav_of_any_sample_format(
    tmp_path: Path, clip: np.ndarray, subtype: str, tolerance: int
) -> None:
    path = tmp_path / f"clip_{subtype}.wav"
    soundfile.write(path, clip.astype(np.float64) / 32768.0, 16000, subtype=subtype)
    got = load(path)
    assert len(got) == len(clip)
    assert int(np.max(np.abs(got.astype(np.int32) - clip))) <= tolerance


def test_flac_is_lossless(tmp_path: Path, clip: np.ndarray) -> None:
    path = tmp_path / "clip.flac"
    soundfile.write(path, clip, 16000, subtype="PCM_16")
    assert np.array_equal(load(path), clip)


@pytest.mark.parametrize(
    ("name", "rate", "channels", "subtype", "least"),
    [
        ("stereo_44k.wav", 44100, 2, "PCM_16", 0.999),
        ("stereo_48k.flac", 48000, 2, "PCM_24", 0.999),
        ("mono_22k.ogg", 22050, 1, "VORBIS", 0.95),
        ("stereo_44k.mp3", 44100, 2, "MPEG_LAYER_III", 0.95),
    ],
)
def test_other_rates_channels_and_lossy_codecs(
    tmp_path: Path,
    clip: np.ndarray,
    name: str,
    rate: int,
    channels: int,
    subtype: str,
    least: float,
) -> None:
    import soxr

    signal = soxr.resample(clip.astype(np.float32) / 32768.0, 16000, rate)
    if channels == 2:
        signal = np.stack([signal, signal], axis=1)
    path = tmp_path / name
    soundfile.write(path, signal, rate, subtype=subtype)
    got = load(path)
    assert abs(len(got) - len(clip)) <= 0.1 * 16000  # codec padding at most
    assert similarity(clip, got) >= least


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    with pytest.raises(audio_io.AudioInputError, match="is a directory"):
        load(tmp_path)


def test_text_in_a_wav_name_is_unreadable_without_a_rate_hint(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples")
    with pytest.raises(audio_io.AudioInputError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message and "not a readable audio file" in message
    assert "--rate" not in message


def test_a_raw_file_without_a_rate_is_told_about_rate(tmp_path: Path, clip: np.ndarray) -> None:
    path = tmp_path / "speech.raw"
    path.write_bytes(clip.tobytes())
    with pytest.raises(audio_io.AudioInputError, match="--rate"):
        load(path)
    same = np.frombuffer(audio_io.load_pcm16_mono(path, 16000, 16000), "<i2")
    assert np.array_equal(same, clip)


def test_text_without_a_name_suffix_gets_no_rate_hint(tmp_path: Path) -> None:
    path = tmp_path / "README"
    path.write_text("plain words, not samples\n" * 20)
    with pytest.raises(audio_io.AudioInputError) as caught:
        load(path)
    assert "--rate" not in str(caught.value)
