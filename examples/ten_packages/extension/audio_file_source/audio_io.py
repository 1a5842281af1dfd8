"""Read an audio file as 16-bit mono PCM at the rate the recognizer wants.

WAV of any common rate, sample width and channel count is decoded with the
standard library and converted with soxr (a well-kept resampler); raw PCM
(16-bit little-endian mono) needs its rate given.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


class AudioInputError(Exception):
    """The file cannot be used; the message says why, in one line."""


def load_pcm16_mono(path: str | Path, sample_rate: int, raw_sample_rate: int = 0) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise AudioInputError(f"no such file: {path}")
    if raw_sample_rate:
        data = path.read_bytes()
        if len(data) % 2:
            data = data[:-1]
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        return _to_pcm16(_resample(samples, raw_sample_rate, sample_rate))
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        reason = str(exc) or "the header is truncated"
        raise AudioInputError(
            f"{path}: not a readable PCM WAV file ({reason}); "
            "for raw 16-bit PCM give its rate with --rate"
        )
    samples = _decode(frames, width, path)
    if channels > 1:
        samples = samples[: len(samples) - len(samples) % channels]
        samples = samples.reshape(-1, channels).mean(axis=1)
    return _to_pcm16(_resample(samples, rate, sample_rate))


def _decode(frames: bytes, width: int, path: Path) -> np.ndarray:
    if width == 1:  # unsigned 8-bit
        return (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if width == 3:
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value & 0x800000, value - 0x1000000, value)
        return value.astype(np.float32) / 8388608.0
    if width == 4:
        return np.frombuffer(frames, dtype="<i4").astype(np.float32) / 2147483648.0
    raise AudioInputError(f"{path}: unsupported WAV sample width {width * 8} bits")


def _resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate or samples.size == 0:
        return samples
    import soxr

    return soxr.resample(samples, from_rate, to_rate, quality="HQ")


def _to_pcm16(samples: np.ndarray) -> bytes:
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()
