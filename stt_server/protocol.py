"""The xAI streaming STT wire protocol, without any I/O.

Query validation (what the HTTP upgrade accepts), the session configuration
it yields, and the JSON events the server sends. The asyncio server only
moves these values over a socket.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

STT_PATH = "/v1/stt"
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
ENCODINGS = ("pcm", "mulaw", "alaw")
MAX_ENDPOINTING_MS = 5000
MIN_CHANNELS = 2
MAX_CHANNELS = 8
MAX_KEYTERMS = 100
MAX_KEYTERM_CHARS = 50
MAX_SMART_TURN_TIMEOUT_MS = 5000
# What the service answers a client text message it cannot parse (the
# connection stays open); an older deployment answers `finalize` with it too.
INVALID_MESSAGE = 'Invalid message: expected {"type": "audio.done"}'
STREAM_TIMED_OUT = "ASR stream timed out"

_INTEGER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*")


class QueryError(ValueError):
    """A query parameter the service refuses (HTTP 400 at the upgrade)."""

    def __init__(self, field: str, value: str, expected: str) -> None:
        super().__init__(f"invalid query parameter {field}={value!r}: expected {expected}")
        self.field = field
        self.value = value
        self.expected = expected


@dataclass(frozen=True)
class SessionConfig:
    """What one connection negotiated in its query string."""

    sample_rate: int = 16000
    encoding: str = "pcm"
    interim_results: bool = False
    endpointing_ms: int = 0
    language: str | None = None
    multichannel: bool = False
    channels: int = 1  # channels actually interleaved in the audio (1 unless multichannel)
    diarize: bool = False
    # Accepted and recorded; they do not change recognition (smart_turn only adds
    # end_of_turn_confidence to partials).
    keyterms: tuple[str, ...] = ()
    filler_words: bool = False
    smart_turn: float | None = None
    smart_turn_timeout_ms: int | None = None
    vad_threshold: float | None = None  # None: not given (the service's default is 0.08)

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm" else 1

    @property
    def bytes_per_second(self) -> int:
        return self.sample_rate * self.bytes_per_sample * self.channels


def split_path(target: str) -> tuple[str, dict[str, str]]:
    """Split a request target into its path and query parameters (last value wins)."""
    path, _, query = target.partition("?")
    return path, dict(parse_qsl(query, keep_blank_values=True))


def query_lists(target: str) -> dict[str, list[str]]:
    """Every value of every query parameter of a request target, in order."""
    lists: dict[str, list[str]] = {}
    for name, value in parse_qsl(target.partition("?")[2], keep_blank_values=True):
        lists.setdefault(name, []).append(value)
    return lists


def _boolean(query: Mapping[str, str], field: str) -> bool:
    value = query.get(field)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise QueryError(field, value, "true or false")
    return value == "true"


def _integer(query: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    value = query.get(field)
    if value is None:
        return default
    if not _INTEGER.fullmatch(value) or not low <= int(value) <= high:
        raise QueryError(field, value, f"an integer from {low} to {high}")
    return int(value)


def _fraction(query: Mapping[str, str], field: str) -> float | None:
    value = query.get(field)
    if value is None:
        return None
    if not _DECIMAL.fullmatch(value) or not 0.0 <= float(value) <= 1.0:
        raise QueryError(field, value, "a number from 0.0 to 1.0")
    return float(value)


def _keyterms(terms: Sequence[str]) -> tuple[str, ...]:
    if len(terms) > MAX_KEYTERMS:
        raise QueryError(
            "keyterm", f"{len(terms)} terms", f"at most {MAX_KEYTERMS} keyterm parameters"
        )
    for term in terms:
        if not 1 <= len(term) <= MAX_KEYTERM_CHARS:
            raise QueryError("keyterm", term, f"a term of 1 to {MAX_KEYTERM_CHARS} characters")
    return tuple(terms)


def parse_query(
    query: Mapping[str, str], lists: Mapping[str, Sequence[str]] | None = None
) -> SessionConfig:
    """Validate query parameters as the service does; raise QueryError naming the field.

    query: one value per parameter (the last one); lists: every value of each
    parameter (see query_lists), for the repeated `keyterm`.
    """
    rate_text = query.get("sample_rate", "16000")
    if not _INTEGER.fullmatch(rate_text) or int(rate_text) not in SAMPLE_RATES:
        raise QueryError("sample_rate", rate_text, "one of " + ", ".join(map(str, SAMPLE_RATES)))
    encoding = query.get("encoding", "pcm")
    if encoding not in ENCODINGS:
        raise QueryError("encoding", encoding, "one of " + ", ".join(ENCODINGS))
    interim_results = _boolean(query, "interim_results")
    endpointing_ms = _integer(query, "endpointing", 0, 0, MAX_ENDPOINTING_MS)
    language = query.get("language")
    if language is not None and not _LANGUAGE.fullmatch(language):
        raise QueryError("language", language, "a language code such as en or en-US")
    multichannel = _boolean(query, "multichannel")
    channels = 1
    if multichannel:
        channels = _integer(query, "channels", MIN_CHANNELS, MIN_CHANNELS, MAX_CHANNELS)
    diarize = _boolean(query, "diarize")
    if lists is not None and "keyterm" in lists:
        keyterms = _keyterms(lists["keyterm"])
    else:
        keyterms = _keyterms([query["keyterm"]] if "keyterm" in query else [])
    filler_words = _boolean(query, "filler_words")
    smart_turn = _fraction(query, "smart_turn")
    smart_turn_timeout_ms = None
    if "smart_turn_timeout" in query:
        if smart_turn is None:
            raise QueryError(
                "smart_turn_timeout", query["smart_turn_timeout"], "smart_turn to be given too"
            )
        smart_turn_timeout_ms = _integer(
            query, "smart_turn_timeout", 0, 1, MAX_SMART_TURN_TIMEOUT_MS
        )
    vad_threshold = _fraction(query, "vad_threshold")
    return SessionConfig(
        sample_rate=int(rate_text),
        encoding=encoding,
        interim_results=interim_results,
        endpointing_ms=endpointing_ms,
        language=language,
        multichannel=multichannel,
        channels=channels,
        diarize=diarize,
        keyterms=keyterms,
        filler_words=filler_words,
        smart_turn=smart_turn,
        smart_turn_timeout_ms=smart_turn_timeout_ms,
        vad_threshold=vad_threshold,
    )


@dataclass(frozen=True)
class Word:
    """A recognised word; times in seconds on the connection's audio timeline."""

    text: str
    start: float
    end: float


def seconds(frames: int) -> float:
    """10 ms frame count to seconds, without float noise (7 -> 0.07)."""
    return round(frames / 100, 2)


def join_words(words: Sequence[Word]) -> str:
    return " ".join(word.text for word in words)


def created_event(session_id: str) -> dict[str, Any]:
    return {"type": "transcript.created", "id": session_id}


def word_dicts(words: Sequence[Word], speaker: int | None = None) -> list[dict[str, Any]]:
    """Words as the wire carries them; `speaker` added to each when given (diarize)."""
    out: list[dict[str, Any]] = []
    for word in words:
        entry: dict[str, Any] = {"text": word.text, "start": word.start, "end": word.end}
        if speaker is not None:
            entry["speaker"] = speaker
        out.append(entry)
    return out


def partial_event(
    words: Sequence[Word],
    *,
    is_final: bool,
    speech_final: bool,
    start: float,
    duration: float,
    channel_index: int | None = None,
    speaker: int | None = None,
    end_of_turn_confidence: float | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "transcript.partial",
        "text": join_words(words),
        "words": word_dicts(words, speaker),
        "is_final": is_final,
        "speech_final": speech_final,
        "start": start,
        "duration": duration,
    }
    if channel_index is not None:
        event["channel_index"] = channel_index
    if end_of_turn_confidence is not None:
        event["end_of_turn_confidence"] = end_of_turn_confidence
    return event


def done_event(
    words: Sequence[Word], duration: float, channel_index: int = 0, speaker: int | None = None
) -> dict[str, Any]:
    return {
        "type": "transcript.done",
        "text": join_words(words),
        "words": word_dicts(words, speaker),
        "duration": duration,
        "channel_index": channel_index,
    }


def error_event(message: str, code: int | str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "error", "message": message}
    if code is not None:
        event["code"] = code
    return event
