"""The main job's audio input: every format it promises comes back as the same sound."""

from __future__ import annotations

import importlib.util
import sys
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
    sys.modules[spec.name] = module  # dataclasses look their module up there
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


# ------------------------------------------------ files that end early (issue 23)

DEMO = ROOT / "stt_server" / "audio" / "demo.wav"  # 7.94 s


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """demo.wav as MP3, FLAC and OGG/Vorbis (made here, never committed)."""
    audio, rate = soundfile.read(DEMO)
    folder = tmp_path_factory.mktemp("encoded")
    files = {}
    for kind in ("MP3", "FLAC", "OGG"):
        path = folder / f"demo.{kind.lower()}"
        soundfile.write(path, audio, rate, format=kind)
        files[kind] = path.read_bytes()
    files["WAV"] = DEMO.read_bytes()
    return files


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", ["MP3", "FLAC", "OGG", "WAV"])
def test_whole_files_do_not_end_early(
    tmp_path: Path, encoded: dict[str, bytes], kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    decoded = audio_io.decode(write(tmp_path, f"whole.{kind.lower()}", encoded[kind]), 16000)
    assert decoded.kind == kind
    assert not decoded.ends_early and decoded.notes == ()
    assert abs(decoded.seconds - 7.94) < 0.05
    assert capfd.readouterr().err == ""


def test_the_first_3_kb_of_an_mp3_say_how_much_is_missing_once(
    tmp_path: Path, encoded: dict[str, bytes], capfd: pytest.CaptureFixture[str]
) -> None:
    decoded = audio_io.decode(write(tmp_path, "cut.mp3", encoded["MP3"][:3000]), 16000)
    assert decoded.ends_early
    assert decoded.seconds < 1.0 and abs((decoded.declared_seconds or 0) - 7.94) < 0.05
    assert len(decoded.pcm) == round(decoded.seconds * 16000) * 2
    # libmpg123's own line ("Warning: Xing stream size off by more than 1%, ...") is
    # caught: it comes back once, in plain words, and not on the process's stderr.
    assert decoded.notes == ("its length header (Xing) does not match the file's size",)
    assert capfd.readouterr().err == ""


def test_a_cut_flac_keeps_what_decoded_before_the_cut(
    tmp_path: Path, encoded: dict[str, bytes]
) -> None:
    content = encoded["FLAC"]
    decoded = audio_io.decode(write(tmp_path, "cut.flac", content[: len(content) // 2]), 16000)
    assert decoded.ends_early and 2.0 < decoded.seconds < 5.0, decoded.seconds
    [note] = decoded.notes
    assert note.startswith("decoding stopped: ") and "psf_" not in note, note


def test_a_flac_cut_before_its_first_audio_is_unusable(
    tmp_path: Path, encoded: dict[str, bytes]
) -> None:
    path = write(tmp_path, "cut.flac", encoded["FLAC"][:3000])
    with pytest.raises(audio_io.AudioInputError) as caught:
        audio_io.decode(path, 16000)
    message = str(caught.value)
    assert "ends before any of its audio" in message and "7.9 s" in message, message
    assert "psf_" not in message  # no library internals


def test_a_cut_wav_is_told_by_its_data_chunk(tmp_path: Path, encoded: dict[str, bytes]) -> None:
    content = encoded["WAV"]
    decoded = audio_io.decode(write(tmp_path, "cut.wav", content[: len(content) // 2]), 16000)
    assert decoded.ends_early and abs(decoded.seconds - 3.97) < 0.01
    assert abs((decoded.declared_seconds or 0) - 7.94) < 0.01


def test_a_streamed_wav_with_no_length_is_not_called_cut(
    tmp_path: Path, encoded: dict[str, bytes]
) -> None:
    # A writer that streams puts a placeholder where the length goes.
    content = bytearray(encoded["WAV"])
    data = content.find(b"data")
    content[4:8] = content[data + 4 : data + 8] = b"\xff\xff\xff\xff"
    decoded = audio_io.decode(write(tmp_path, "stream.wav", bytes(content)), 16000)
    assert decoded.declared_seconds is None and not decoded.ends_early
    assert abs(decoded.seconds - 7.94) < 0.01


def test_header_format_names_what_soundfile_recognises(
    tmp_path: Path, encoded: dict[str, bytes], clip: np.ndarray
) -> None:
    assert audio_io.header_format(write(tmp_path, "a.flac", encoded["FLAC"])) == "FLAC"
    assert audio_io.header_format(write(tmp_path, "a.bin", encoded["FLAC"])) == "FLAC"
    assert audio_io.header_format(write(tmp_path, "speech.raw", clip.tobytes())) is None
    assert audio_io.header_format(tmp_path / "missing.wav") is None
