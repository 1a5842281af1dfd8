"""Read an audio file as 16-bit mono PCM at the rate the recognizer wants.

Audio files are decoded by soundfile (libsndfile, bundled in its wheel): WAV
of any sample width (8/16/24/32-bit integer, 32/64-bit float), FLAC,
OGG/Vorbis, MP3 and the other formats libsndfile reads. Channels are
averaged and the rate converted with soxr (a well-kept resampler). Raw PCM
(16-bit little-endian mono, no header) needs its rate given.

A file that ends before its header says (a cut download, a damaged copy) is
decoded as far as it goes, and `decode` says so: the length decoded against
the length declared. What the decoder libraries print on the process's
stderr themselves (libmpg123's "Warning: Xing stream size off by more than
1%...") is caught and handed back once, in plain words, as `notes`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# What a user most likely has; libsndfile reads more (AIFF, CAF, W64, ...).
FORMATS = "WAV, FLAC, OGG/Vorbis or MP3"
# Names that suggest header-less PCM: only these get the --rate hint.
RAW_SUFFIXES = {"", ".raw", ".pcm", ".s16", ".s16le", ".bin"}
# A file is said to end early when its header declares more than this beyond what
# decodes (lossy codecs pad by a frame or two; a cut file lacks far more).
EARLY_END_TOLERANCE_S = 0.1
# Frames read at a time from a damaged stream: it keeps what decoded before the damage.
BLOCK_FRAMES = 4096


class AudioInputError(Exception):
    """The file cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class Decoded:
    """A file's audio and what decoding it showed."""

    pcm: bytes  # 16-bit little-endian mono, at the rate asked for (b"": no audio)
    kind: str  # the format soundfile recognised ("WAV", "MP3", ...), or "raw PCM"
    seconds: float  # the audio decoded
    declared_seconds: float | None  # the length the header gives, when it gives one
    notes: tuple[str, ...] = ()  # what the decoder said, once each, in plain words

    @property
    def ends_early(self) -> bool:
        """The file holds less audio than its header says (cut short or damaged)."""
        return (
            self.declared_seconds is not None
            and self.declared_seconds - self.seconds > EARLY_END_TOLERANCE_S
        )


def load_pcm16_mono(path: str | Path, sample_rate: int, raw_sample_rate: int = 0) -> bytes:
    return decode(path, sample_rate, raw_sample_rate).pcm


def decode(path: str | Path, sample_rate: int, raw_sample_rate: int = 0) -> Decoded:
    path = Path(path)
    _check_readable(path)
    if raw_sample_rate:
        data = path.read_bytes()
        if len(data) % 2:
            data = data[:-1]
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        pcm = _to_pcm16(_resample(samples, raw_sample_rate, sample_rate))
        return Decoded(pcm, "raw PCM", samples.size / raw_sample_rate, None)
    # From the bytes: the format is told by the content, not the name
    # (soundfile takes a .raw name for header-less audio of unknown rate).
    content = path.read_bytes()
    chatter: list[str] = []
    try:
        with _decoder_chatter(chatter):
            kind, rate, frames, audio, broke_off = _read_blocks(content)
    except (RuntimeError, ValueError) as exc:
        import soundfile

        if not isinstance(exc, soundfile.LibsndfileError):
            raise AudioInputError(f"{path}: cannot decode the audio: {exc}") from exc
        hint = (
            "; for raw 16-bit PCM give its rate with --rate"
            if _maybe_raw_pcm(path, content)
            else ""
        )
        raise AudioInputError(
            f"{path}: not a readable audio file ({FORMATS}): {_reason(exc)}{hint}"
        ) from exc
    notes = _plain_notes(chatter)
    if broke_off:
        notes = (*notes, f"decoding stopped: {broke_off}")
    declared = _declared_frames(kind, content, frames, broken=broke_off is not None)
    declared_s = None if declared is None else declared / rate
    if not len(audio):
        if declared_s is not None and declared_s > EARLY_END_TOLERANCE_S:
            raise AudioInputError(
                f"{path}: the {kind} file ends before any of its audio: its header says "
                f"{declared_s:.1f} s (cut short or damaged"
                + (f": {broke_off}" if broke_off else "")
                + ")"
            )
        return Decoded(b"", kind, 0.0, declared_s, notes)
    samples = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    pcm = _to_pcm16(_resample(samples, int(rate), sample_rate))
    return Decoded(pcm, kind, len(audio) / rate, declared_s, notes)


def _read_blocks(content: bytes) -> tuple[str, int, int, np.ndarray, str | None]:
    """Decode: (format, rate, frames the library counts, the audio as float32 frames x
    channels, why decoding broke off or None). Opening errors raise.

    In one read when the stream is sound (libsndfile's MP3 decoder loses its bit
    reservoir between reads, so reading in blocks alters the samples); a stream that
    breaks off is read again in small blocks, keeping what decodes before the damage.
    """
    import soundfile

    with soundfile.SoundFile(io.BytesIO(content)) as sound:
        kind, rate, frames = str(sound.format), int(sound.samplerate), int(sound.frames)
        channels = max(1, sound.channels)
        try:
            return kind, rate, frames, sound.read(dtype="float32", always_2d=True), None
        except (RuntimeError, ValueError):
            pass
    blocks: list[np.ndarray] = []
    broke_off = None
    with soundfile.SoundFile(io.BytesIO(content)) as sound:
        try:
            while True:
                block = sound.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    break
                blocks.append(block)
        except (RuntimeError, ValueError) as exc:
            broke_off = _reason(exc)
    audio = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    return kind, rate, frames, audio, broke_off or "the stream is damaged"


def header_format(path: str | Path) -> str | None:
    """The format a file's header names ("WAV", "FLAC", "MP3", ...), or None when
    soundfile recognises no header (raw PCM) or the file cannot be read."""
    import soundfile

    try:
        content = Path(path).read_bytes()
    except OSError:
        return None
    with _decoder_chatter([]):
        try:
            return str(soundfile.info(io.BytesIO(content)).format)
        except (soundfile.LibsndfileError, RuntimeError, ValueError):
            return None


def _reason(exc: BaseException) -> str:
    error_string = getattr(exc, "error_string", None)
    text = (error_string or str(exc)).strip().rstrip(".")
    text = re.sub(r"^error\s*:\s*", "", text, flags=re.IGNORECASE)
    if re.search(r"\bpsf_\w+", text):  # libsndfile's internals: its reads ran out
        return "the data ran out"
    return text.lower()


def _declared_frames(kind: str, content: bytes, frames: int, *, broken: bool) -> int | None:
    """The frames the file's header declares, when it truly declares a length."""
    if kind == "WAV":
        # libsndfile shortens a WAV's length to the bytes present; the data chunk
        # still says what the file should hold.
        return _wav_declared_frames(content)
    if kind == "MP3":
        # Only a Xing/Info/VBRI header states the length; without one libmpg123
        # estimates it from the file size (wrong for VBR, right for a cut CBR file).
        return frames if frames > 0 and _mp3_has_length_header(content) else None
    if kind == "FLAC":
        return frames if frames > 0 else None  # STREAMINFO's total samples (0: unknown)
    # Other formats declare no length of their own; one found by scanning the file
    # counts only when decoding broke off before it.
    return frames if broken and frames > 0 else None


def _wav_declared_frames(content: bytes) -> int | None:
    if len(content) < 12 or content[:4] != b"RIFF" or content[8:12] != b"WAVE":
        return None
    offset, block_align = 12, 0
    while offset + 8 <= len(content):
        chunk, size = content[offset : offset + 4], struct.unpack_from("<I", content, offset + 4)[0]
        if chunk == b"fmt " and offset + 22 <= len(content):
            block_align = struct.unpack_from("<H", content, offset + 20)[0]
        elif chunk == b"data":
            # Streaming writers put a placeholder here (0, 0x7FFFFFFF, 0xFFFFFFFF):
            # no length is declared then.
            if not block_align or size == 0 or size >= 0x7F000000:
                return None
            return size // block_align
        offset += 8 + size + (size & 1)
    return None


def _mp3_has_length_header(content: bytes) -> bool:
    start = 0
    if content[:3] == b"ID3" and len(content) >= 10:  # skip an ID3v2 tag (syncsafe size)
        size = 0
        for byte in content[6:10]:
            size = (size << 7) | (byte & 0x7F)
        start = 10 + size
    first_frame = content[start : start + 200]
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))


# What libmpg123 says, in plain words; anything else is passed on as it was said.
_PLAIN_WORDS = (
    (
        re.compile(r"Xing stream size off", re.IGNORECASE),
        "its length header (Xing) does not match the file's size",
    ),
    (
        re.compile(r"part2_3_length .* too large", re.IGNORECASE),
        "a damaged MP3 frame was skipped",
    ),
    (
        re.compile(r"Illegal Audio-MPEG-Header|Giving up resync|resync", re.IGNORECASE),
        "the MP3 stream is damaged (the decoder lost its place)",
    ),
)
# A line a decoder library printed: libmpg123's "Warning: ...", "Note: ...",
# "[src/libmpg123/layer3.c:...] error: ...".
_DECODER_LINE = re.compile(r"^(\[src/[^\]]*\]\s*)?(warning|note|error)\b\s*:?", re.IGNORECASE)


def _plain_notes(chatter: list[str]) -> tuple[str, ...]:
    notes: list[str] = []
    for line in chatter:
        for pattern, words in _PLAIN_WORDS:
            if pattern.search(line):
                note = words
                break
        else:
            note = _DECODER_LINE.sub("", line).strip().rstrip(".!") or line
        if note not in notes:
            notes.append(note)
    return tuple(notes)


@contextlib.contextmanager
def _decoder_chatter(lines: list[str]) -> Iterator[None]:
    """Catch what C libraries write to the process's stderr (fd 2) meanwhile: the
    decoder's lines go into `lines`, anything else back to stderr as it was."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield  # no stderr to catch
        return
    with tempfile.TemporaryFile() as caught:
        try:
            os.dup2(caught.fileno(), 2)
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            other: list[str] = []
            for line in caught.read().decode("utf-8", "replace").splitlines():
                if _DECODER_LINE.match(line):
                    lines.append(line.strip())
                elif line.strip():
                    other.append(line)
            if other:
                with contextlib.suppress(OSError):
                    os.write(2, ("\n".join(other) + "\n").encode())


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
