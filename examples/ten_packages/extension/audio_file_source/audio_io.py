"""Read an audio file as 16-bit mono PCM at the rate the recognizer wants.

Audio files are decoded by soundfile (libsndfile, bundled in its wheel): WAV
of any sample width (8/16/24/32-bit integer, 32/64-bit float), FLAC,
OGG/Vorbis, MP3 and the other formats libsndfile reads. Channels are
averaged and the rate converted with soxr (a well-kept resampler). Raw PCM
(16-bit little-endian mono, no header) needs its rate given.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

# What a user most likely has; libsndfile reads more (AIFF, CAF, W64, ...).
FORMATS = "WAV, FLAC, OGG/Vorbis or MP3"
# Names that suggest header-less PCM: only these get the --rate hint.
RAW_SUFFIXES = {"", ".raw", ".pcm", ".s16", ".s16le", ".bin"}


class AudioInputError(Exception):
    """The file cannot be used; the message says why, in one line."""


def load_pcm16_mono(path: str | Path, sample_rate: int, raw_sample_rate: int = 0) -> bytes:
    path = Path(path)
    _check_readable(path)
    if raw_sample_rate:
        data = path.read_bytes()
        if len(data) % 2:
            data = data[:-1]
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        return _to_pcm16(_resample(samples, raw_sample_rate, sample_rate))
    import soundfile

    try:
        # From the bytes: the format is told by the content, not the name
        # (soundfile takes a .raw name for header-less audio of unknown rate).
        content = path.read_bytes()
        audio, rate = soundfile.read(io.BytesIO(content), dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as exc:
        reason = (exc.error_string or str(exc)).strip().rstrip(".")
        hint = (
            "; for raw 16-bit PCM give its rate with --rate"
            if _maybe_raw_pcm(path, content)
            else ""
        )
        raise AudioInputError(
            f"{path}: not a readable audio file ({FORMATS}): {reason.lower()}{hint}"
        ) from exc
    except (RuntimeError, ValueError) as exc:  # a damaged stream inside a known format
        raise AudioInputError(f"{path}: cannot decode the audio: {exc}") from exc
    samples = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    return _to_pcm16(_resample(samples, int(rate), sample_rate))


def _maybe_raw_pcm(path: Path, content: bytes) -> bool:
    """A header-less PCM name, and bytes that are not plain text."""
    if path.suffix.lower() not in RAW_SUFFIXES or not content:
        return False
    head = content[:4096]
    printable = sum(32 <= byte < 127 or byte in (9, 10, 13) for byte in head)
    return printable < 0.95 * len(head)


def _check_readable(path: Path) -> None:
    if path.is_dir():
        raise AudioInputError(f"{path}: is a directory, not an audio file")
    if not path.exists():
        raise AudioInputError(f"no such file: {path}")
    if not path.is_file():
        raise AudioInputError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise AudioInputError(f"{path}: permission denied")


def _resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate or samples.size == 0:
        return samples
    import soxr

    return soxr.resample(samples, from_rate, to_rate, quality="HQ")


def _to_pcm16(samples: np.ndarray) -> bytes:
    # x 32768: 16-bit input comes back bit for bit.
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()
