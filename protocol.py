"""The xAI streaming STT wire protocol, without I/O.

Everything here is a plain function or a small state machine over plain data,
in the style of h11 and the websockets library's sans-I/O core: building the
URL, query and headers; parsing server frames into events; deciding what a
refused handshake or a closed socket means. The asyncio code in
recognition.py and session.py only moves bytes and awaits; every decision it
acts on is made here and can be tested with plain values
(shared/docs/xai-stt-protocol.md is the wire contract).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

AUDIO_DONE_MESSAGE = '{"type": "audio.done"}'
# Ends the current utterance (every channel) and keeps the session open.
FINALIZE_MESSAGE = '{"type": "finalize"}'

# How much of an unparseable frame goes into a log line: enough to recognise
# it, never enough to flood the log.
_PREVIEW_CHARS = 120
# A vendor body or close reason is quoted at most this long.
_VENDOR_TEXT_CHARS = 300

ENCODING_BYTES_PER_SAMPLE: dict[str, int] = {"pcm": 2, "mulaw": 1, "alaw": 1}

# The largest time (seconds) accepted from the vendor; larger reads as missing.
MAX_VENDOR_SECONDS = 86_400.0


def bytes_per_sample(encoding: str) -> int:
    """Bytes of one sample of one channel in the negotiated encoding."""
    try:
        return ENCODING_BYTES_PER_SAMPLE[encoding]
    except KeyError:
        raise ValueError(f"unknown encoding {encoding!r} (pcm, mulaw or alaw)") from None


# --------------------------------------------------------------------------- handshake


def _bool(value: bool) -> str:
    # xAI reads only lower-case booleans.
    return "true" if value else "false"


def _number(value: float) -> str:
    """A float as plain decimal digits (1e-05 -> "0.00001"), never in exponent form."""
    return format(Decimal(repr(float(value))), "f")


# A query parameter's value: one string, or a list of them sent as repeated keys
# (`keyterm=A&keyterm=B`).
QueryValue = str | Sequence[str]


def build_query(
    *,
    sample_rate: int,
    encoding: str,
    interim_results: bool,
    endpointing_ms: int | None,
    language: str | None,
    diarize: bool,
    multichannel: bool,
    channels: int,
    keyterms: Sequence[str] = (),
    filler_words: bool | None = None,
    smart_turn: float | None = None,
    smart_turn_timeout_ms: int | None = None,
    vad_threshold: float | None = None,
) -> dict[str, QueryValue]:
    """The query parameters that configure one xAI session (there is no setup message).

    The optional ones are sent only when set (None, or no keyterms: the server's
    default applies); `keyterms` become one `keyterm` parameter per term.
    """
    query: dict[str, QueryValue] = {
        "sample_rate": str(sample_rate),
        "encoding": encoding,
        "interim_results": _bool(interim_results),
        "diarize": _bool(diarize),
        "multichannel": _bool(multichannel),
    }
    if endpointing_ms is not None:
        query["endpointing"] = str(endpointing_ms)
    if language:
        query["language"] = language
    if multichannel:
        # xAI reads `channels` only in multichannel mode.
        query["channels"] = str(channels)
    if keyterms:
        query["keyterm"] = list(keyterms)
    if filler_words is not None:
        query["filler_words"] = _bool(filler_words)
    if smart_turn is not None:
        query["smart_turn"] = _number(smart_turn)
    if smart_turn_timeout_ms is not None:
        query["smart_turn_timeout"] = str(smart_turn_timeout_ms)
    if vad_threshold is not None:
        query["vad_threshold"] = _number(vad_threshold)
    return query


def build_url(base_url: str, query: Mapping[str, QueryValue]) -> str:
    """`base_url` with `query` merged into its query string (ours wins on a clash: a key
    of ours replaces every value the base URL gives it). A list value is sent as the key
    repeated once per item, in order."""
    parts = urlsplit(base_url)
    pairs = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in query
    ]
    for key, value in query.items():
        if isinstance(value, str):
            pairs.append((key, value))
        else:
            pairs.extend((key, item) for item in value)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), parts.fragment))


def auth_headers(api_key: str) -> list[tuple[str, str]]:
    """Headers of the upgrade request. The key travels only here, never in the URL."""
    if not api_key:
        return []
    return [("Authorization", f"Bearer {api_key}")]


def url_for_log(url: str) -> str:
    """The URL without query or credentials: what a log line may show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class WordTiming:
    """One word as the vendor timed it: seconds on the connection's own timeline."""

    text: str
    start_s: float
    end_s: float
    confidence: float | None = None
    speaker: int | None = None


@dataclass(frozen=True)
class TranscriptCreated:
    """The session is ready for audio. `session_id`: the vendor's name for it (worth
    logging, never a secret)."""

    session_id: str | None = None


@dataclass(frozen=True)
class TranscriptPartial:
    text: str
    words: tuple[WordTiming, ...]
    is_final: bool
    speech_final: bool
    start_s: float
    duration_s: float
    channel: int | None
    # Fields that were absent or of the wrong type and got their defaults.
    defaulted: tuple[str, ...] = ()
    end_of_turn_confidence: float | None = None  # with smart_turn


@dataclass(frozen=True)
class TranscriptDone:
    text: str
    duration_s: float | None
    channel: int | None
    defaulted: tuple[str, ...] = ()
    words: tuple[WordTiming, ...] = ()


@dataclass(frozen=True)
class VendorError:
    message: str
    code: str | None


@dataclass(frozen=True)
class IgnoredFrame:
    """A frame we survive but cannot use: not JSON, binary, not an event, unknown type."""

    reason: str
    preview: str


ServerEvent = TranscriptCreated | TranscriptPartial | TranscriptDone | VendorError | IgnoredFrame


def _preview(frame: str | bytes) -> str:
    if isinstance(frame, bytes):
        return f"<{len(frame)} bytes: {frame[: _PREVIEW_CHARS // 3].hex()}>"
    return frame if len(frame) <= _PREVIEW_CHARS else frame[:_PREVIEW_CHARS] + "..."


class _Fields:
    """Reads fields of one event, recording which ones fell back to a default."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self._obj = obj
        self.defaulted: list[str] = []

    def text(self, name: str) -> str:
        value = self._obj.get(name)
        if isinstance(value, str):
            return value
        self.defaulted.append(name)
        return ""

    def flag(self, name: str) -> bool:
        value = self._obj.get(name)
        if isinstance(value, bool):
            return value
        self.defaulted.append(name)
        return False

    def seconds(self, name: str) -> float | None:
        value = self._obj.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            # A connection lasts hours at most: a time past a day is garbage, and
            # sums of such times (start + duration) must stay finite.
            if 0 <= number <= MAX_VENDOR_SECONDS:
                return number
        self.defaulted.append(name)
        return None

    def channel(self) -> int | None:
        value = self._obj.get("channel_index")
        if value is None:
            return None  # absent is normal outside multichannel mode
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        self.defaulted.append("channel_index")
        return None


def _parse_words(raw: Any) -> tuple[WordTiming, ...]:
    if not isinstance(raw, list):
        return ()
    words: list[WordTiming] = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        fields = _Fields(item)
        text = fields.text("text")
        if not text:
            continue
        start = fields.seconds("start")
        end = fields.seconds("end")
        start_s = start if start is not None else (end or 0.0)
        end_s = end if end is not None and end >= start_s else start_s
        words.append(
            WordTiming(
                text=text,
                start_s=start_s,
                end_s=end_s,
                confidence=_unit(item.get("confidence")),
                speaker=_speaker(item.get("speaker")),
            )
        )
    return tuple(words)


def _unit(value: Any) -> float | None:
    """A probability in [0, 1], or None when absent or not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None


def _speaker(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def parse_event(frame: str | bytes) -> ServerEvent:
    """One server frame -> one event. Never raises: junk becomes `IgnoredFrame`."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return IgnoredFrame("binary frame", _preview(bytes(frame)))
    try:
        obj = json.loads(frame)
    except ValueError:
        return IgnoredFrame("not JSON", _preview(frame))
    if not isinstance(obj, dict):
        return IgnoredFrame("JSON that is not an object", _preview(frame))
    kind = obj.get("type")
    fields = _Fields(obj)
    if kind == "transcript.created":
        session_id = obj.get("id")
        return TranscriptCreated(
            session_id=session_id[:100] if isinstance(session_id, str) and session_id else None
        )
    if kind == "transcript.partial":
        text = fields.text("text")
        words = _parse_words(obj.get("words"))
        is_final = fields.flag("is_final")
        speech_final = fields.flag("speech_final")
        start = fields.seconds("start")
        duration = fields.seconds("duration")
        # Missing times are taken from the words when there are any.
        if start is None:
            start = words[0].start_s if words else 0.0
        if duration is None:
            duration = max(0.0, words[-1].end_s - start) if words else 0.0
        return TranscriptPartial(
            text=text.strip(),
            words=words,
            is_final=is_final,
            speech_final=speech_final,
            start_s=start,
            duration_s=duration,
            channel=fields.channel(),
            defaulted=tuple(fields.defaulted),
            end_of_turn_confidence=_unit(obj.get("end_of_turn_confidence")),
        )
    if kind == "transcript.done":
        text = fields.text("text")
        duration = fields.seconds("duration")
        return TranscriptDone(
            text=text.strip(),
            duration_s=duration,
            channel=fields.channel(),
            defaulted=tuple(fields.defaulted),
            words=_parse_words(obj.get("words")),
        )
    if kind == "error":
        message = obj.get("message")
        code = obj.get("code")
        return VendorError(
            message=message if isinstance(message, str) else json.dumps(message),
            code=None if code is None else str(code),
        )
    if kind is None:
        return IgnoredFrame("event without a type", _preview(frame))
    return IgnoredFrame(f"unknown event type {str(kind)[:40]!r}", _preview(frame))


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class PlannedClose:
    """A connection ended as intended: no error, no backoff."""

    reason: str  # "done" (after transcript.done), "idle", "drained", "stopped", ...


@dataclass(frozen=True)
class Failure:
    """A connection (or an attempt at one) failed. What the engine reports and how it retries."""

    kind: str
    message: str
    vendor_code: str | None = None
    vendor_message: str | None = None
    fatal: bool = False  # True: retrying cannot help (bad key, bad config)
    retry_after_s: float | None = None  # the server asked us to wait at least this long


CloseVerdict = PlannedClose | Failure

# Statuses that mean "our request is wrong": retrying the same request cannot
# succeed, so they are fatal at once. 401/403: the key; 400: the query;
# 404: the URL.
FATAL_HANDSHAKE_STATUSES = frozenset({400, 401, 403, 404})


def _vendor_text(text: str | bytes | None) -> str | None:
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    if not text:
        return None
    return text if len(text) <= _VENDOR_TEXT_CHARS else text[:_VENDOR_TEXT_CHARS] + "..."


def parse_retry_after(value: str | None, *, now_epoch_s: float) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_s)


def classify_handshake_rejection(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | None,
    *,
    now_epoch_s: float,
) -> Failure:
    """The upgrade was answered with an HTTP status instead of 101."""
    vendor_message = _vendor_text(body)
    lowered = {k.lower(): v for k, v in headers.items()}
    if status in (401, 403):
        return Failure(
            kind="handshake_refused",
            message=f"the server rejected the API key (HTTP {status})",
            vendor_code=str(status),
            vendor_message=vendor_message,
            fatal=True,
        )
    if status in FATAL_HANDSHAKE_STATUSES:
        return Failure(
            kind="handshake_refused",
            message=f"the server rejected the request as invalid (HTTP {status}): "
            "check the configuration",
            vendor_code=str(status),
            vendor_message=vendor_message,
            fatal=True,
        )
    retry_after = parse_retry_after(lowered.get("retry-after"), now_epoch_s=now_epoch_s)
    what = "rate limited" if status == 429 else "refused"
    return Failure(
        kind="handshake_refused",
        message=f"the server {what} the connection (HTTP {status})",
        vendor_code=str(status),
        vendor_message=vendor_message,
        retry_after_s=retry_after,
    )


def handshake_timeout(timeout_s: float, *, opened: bool) -> Failure:
    """No usable session within the connect timeout."""
    if opened:
        return Failure(
            kind="no_created",
            message=f"the WebSocket opened but transcript.created did not arrive "
            f"within {timeout_s:g} s",
        )
    return Failure(
        kind="handshake_timeout",
        message=f"the WebSocket handshake did not complete within {timeout_s:g} s",
    )


# The largest message the client accepts from the server. xAI's largest messages are
# transcript.done, with the whole text of a connection (about 55 KB an hour of
# continuous speech), and partials, with the words of one ~3 s chunk. 4 MiB leaves
# room for hours of speech on one connection even if done carried word timings
# (~60 bytes a word); a larger message is a broken server, and is reported as such.
MAX_MESSAGE_BYTES = 4 * 2**20

# Close codes the client's WebSocket library sends when it fails a connection itself.
CLIENT_FAILURE_CLOSES = {
    1002: "the server broke the WebSocket protocol",
    1007: "the server sent a text message that is not valid UTF-8",
    1009: f"a server message was larger than the client's limit ({MAX_MESSAGE_BYTES // 2**20} MiB)",
    1011: "the client failed the connection",
}


def transport_failure(detail: str) -> Failure:
    """TCP connect refused, DNS failure, TLS failure, a broken HTTP answer."""
    return Failure(kind="handshake_failed", message=f"could not connect: {detail}")


def vendor_error_failure(event: VendorError) -> Failure:
    if is_stream_timeout(event):
        # The service ends a session that heard no audio for minutes (pings do not
        # count) and closes: a new connection takes over, with nothing to report.
        return Failure(
            kind="stream_timeout",
            message=f"the server ended the idle stream: {event.message}",
            vendor_code=event.code,
            vendor_message=_vendor_text(event.message),
        )
    return Failure(
        kind="vendor_error",
        message=f"the server reported an error: {event.message}",
        vendor_code=event.code,
        vendor_message=_vendor_text(event.message),
    )


# xAI's error events carry no code: what an error means is in its words. A client
# message the server could not parse (an unknown type: `finalize` on an older
# deployment) is answered with an error and the connection stays open; every other
# error ends the session (shared/docs/xai-stt-protocol.md).
_CLIENT_MESSAGE_WORDS = ("invalid", "expected", "unknown", "unrecognized", "unsupported", "parse")


def is_client_message_error(event: VendorError) -> bool:
    """The server refused a text message we sent; the session goes on."""
    if event.code is not None and event.code not in ("400", "invalid_request"):
        return False
    text = event.message.lower()
    return "message" in text and any(word in text for word in _CLIENT_MESSAGE_WORDS)


def is_stream_timeout(event: VendorError) -> bool:
    text = event.message.lower()
    return "stream" in text and "timed out" in text


class ConnectionPhase(str, enum.Enum):
    AWAITING_CREATED = "awaiting_created"
    STREAMING = "streaming"  # takes audio
    DRAINING = "draining"  # audio.done sent, waiting for transcript.done
    DONE = "done"  # transcript.done received (for every channel)
    CLOSED = "closed"


@dataclass
class ConnectionTracker:
    """What one connection has been through, and so what its close means.

    The first failure recorded wins: a vendor error followed by an abnormal
    close is reported as the vendor error, with the vendor's text.
    """

    expected_dones: int = 1  # one transcript.done per channel in multichannel mode
    phase: ConnectionPhase = ConnectionPhase.AWAITING_CREATED
    dones_received: int = 0
    failure: Failure | None = None
    planned: PlannedClose | None = None
    close_code: int | None = None
    close_reason: str | None = None
    refusals: int = 0  # client messages the server refused, the connection staying open
    _channels_done: set[int | None] = field(default_factory=set)

    @property
    def done(self) -> bool:
        return self.dones_received >= self.expected_dones

    def receive(self, event: ServerEvent) -> None:
        if self.phase is ConnectionPhase.CLOSED:
            return
        if isinstance(event, TranscriptCreated):
            if self.phase is ConnectionPhase.AWAITING_CREATED:
                self.phase = ConnectionPhase.STREAMING
        elif isinstance(event, TranscriptDone):
            if event.channel not in self._channels_done:
                self._channels_done.add(event.channel)
                self.dones_received += 1
            if self.done:
                self.phase = ConnectionPhase.DONE
        elif isinstance(event, VendorError):
            if is_client_message_error(event):
                # A message of ours refused (e.g. finalize on an older deployment): the
                # connection goes on; the session core decides what the refusal means.
                self.refusals += 1
                return
            # The live service can send an error and then nothing: the session is dead.
            self.fail(vendor_error_failure(event))

    def audio_done_sent(self) -> None:
        if self.phase in (ConnectionPhase.AWAITING_CREATED, ConnectionPhase.STREAMING):
            self.phase = ConnectionPhase.DRAINING

    def fail(self, failure: Failure) -> None:
        """We decided this connection is dead (stall, missed deadline, vendor error, send error)."""
        if (
            self.failure is None
            and self.planned is None
            and self.phase is not ConnectionPhase.CLOSED
        ):
            self.failure = failure

    def close_planned(self, reason: str) -> None:
        """We are closing this connection on purpose (idle, after done, stop)."""
        if self.failure is None and self.planned is None:
            self.planned = PlannedClose(reason)

    def closed(
        self,
        code: int | None,
        reason: str | None,
        *,
        sent_code: int | None = None,
        sent_reason: str | None = None,
    ) -> CloseVerdict:
        """The socket is gone. `code`/`reason`: the close frame received (None: none,
        e.g. a TCP abort); `sent_code`/`sent_reason`: the one this client sent, if any
        (the client's WebSocket library fails a connection itself, e.g. with 1009)."""
        self.phase = ConnectionPhase.CLOSED
        self.close_code = code
        self.close_reason = reason
        if self.failure is not None:
            return self.failure
        if self.done:
            # The turn is complete; how the socket went away afterwards loses nothing.
            return PlannedClose("done")
        if self.planned is not None:
            return self.planned
        if sent_code in CLIENT_FAILURE_CLOSES:
            # We ended it (the server may have echoed our code): say why, not "lost".
            self.failure = Failure(
                kind="abnormal_close",
                message=f"the client closed the connection ({sent_code}): "
                f"{CLIENT_FAILURE_CLOSES[sent_code]}"
                + (f" [{sent_reason}]" if sent_reason else ""),
            )
            return self.failure
        if code is None or code == 1006:
            message = "the connection was lost without a close frame"
        elif code == 1000:
            message = "the server closed the connection (1000) without transcript.done"
        else:
            message = f"the server closed the connection ({code})"
        self.failure = Failure(
            kind="abnormal_close",
            message=message,
            vendor_code=str(code if code is not None else 1006),
            vendor_message=_vendor_text(reason),
        )
        return self.failure
