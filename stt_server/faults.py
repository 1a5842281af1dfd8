"""Declarative fault injection: what one connection should do wrong.

A Fault is a frozen dataclass of independent, composable fields; the server
reads it once, when the connection's upgrade request arrives. Each part
that fires at a moment has at most one trigger: after_ms (from the moment
the WebSocket opened), after_bytes (once that many audio bytes arrived, after
the frame that reached the count was recognised) or on_audio_done.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from stt_server.wire import DONE_TEXT_MODES, FINALIZE_MODES, UTTERANCE_FINALS, WIRES

MALFORMED_KINDS = ("not_json", "unknown_type", "missing_fields", "binary")
ERROR_THEN = ("stay_open", "close", "continue")


def _check_trigger(
    owner: str, after_ms: int | None, after_bytes: int | None, on_audio_done: bool = False
) -> None:
    given = [after_ms is not None, after_bytes is not None, on_audio_done]
    if sum(given) > 1:
        raise ValueError(f"{owner}: give at most one of after_ms, after_bytes, on_audio_done")
    for name, value in (("after_ms", after_ms), ("after_bytes", after_bytes)):
        if value is not None and value < 0:
            raise ValueError(f"{owner}: {name} must be >= 0")


@dataclass(frozen=True)
class ErrorEvent:
    """Send {"type": "error", "message": ..., "code": ...} (code omitted when None).

    No trigger: right after transcript.created. Then:
    - "stay_open": the session is dead (audio ignored, nothing more sent,
      audio.done unanswered) but the socket stays open;
    - "close": close the WebSocket with close_code;
    - "continue": carry on normally.
    """

    message: str = "Cannot continue request"
    code: int | str | None = None
    after_ms: int | None = None
    after_bytes: int | None = None
    on_audio_done: bool = False
    then: str = "stay_open"
    close_code: int = 1011

    def __post_init__(self) -> None:
        _check_trigger("ErrorEvent", self.after_ms, self.after_bytes, self.on_audio_done)
        if self.then not in ERROR_THEN:
            raise ValueError(f"ErrorEvent.then must be one of {ERROR_THEN}")


@dataclass(frozen=True)
class Close:
    """Close the connection from the server side.

    code: a close code (1000, 1001, 1011, ...) or "abort" to drop the TCP
    connection without a close frame (the client sees 1006). No trigger:
    right after the socket opened (after transcript.created unless no_created).
    """

    code: int | str = 1011
    reason: str = ""
    after_ms: int | None = None
    after_bytes: int | None = None

    def __post_init__(self) -> None:
        _check_trigger("Close", self.after_ms, self.after_bytes)
        if isinstance(self.code, str) and self.code != "abort":
            raise ValueError('Close.code must be an int or "abort"')

    @property
    def abort(self) -> bool:
        return self.code == "abort"


@dataclass(frozen=True)
class Malformed:
    """Send junk frames, one per kind, in order; the session then goes on normally.

    kinds: "not_json" (a text frame that is not JSON), "unknown_type" (JSON
    with an unknown "type"), "missing_fields" (a transcript.partial without
    its fields), "binary" (a binary frame). No trigger: right after
    transcript.created; on_audio_done: just before answering audio.done.
    """

    kinds: tuple[str, ...] = MALFORMED_KINDS
    after_ms: int | None = None
    after_bytes: int | None = None
    on_audio_done: bool = False

    def __post_init__(self) -> None:
        _check_trigger("Malformed", self.after_ms, self.after_bytes, self.on_audio_done)
        object.__setattr__(self, "kinds", tuple(self.kinds))
        unknown = set(self.kinds) - set(MALFORMED_KINDS)
        if unknown:
            raise ValueError(f"unknown Malformed kinds {sorted(unknown)}; use {MALFORMED_KINDS}")


@dataclass(frozen=True)
class Partition:
    """The network between client and server goes silent, TCP stays open.

    From the trigger on the server reads nothing (so it answers no ping and,
    once the socket buffers fill, the client's sends block) and sends nothing
    (events, pings and close frames are held back), with no FIN and no RST:
    what a network partition, a NAT or proxy dropping an idle flow, or a hung
    vendor process looks like to the client. for_ms: the partition heals after
    that long (what was held back is then sent, as TCP would retransmit it, and
    reading resumes); None: for good. No trigger: right after transcript.created.
    A client that leaves meanwhile (RST or FIN) is noticed and the connection ends.
    """

    after_ms: int | None = None
    after_bytes: int | None = None
    for_ms: int | None = None

    def __post_init__(self) -> None:
        _check_trigger("Partition", self.after_ms, self.after_bytes)
        if self.for_ms is not None and self.for_ms < 0:
            raise ValueError("Partition: for_ms must be >= 0")


OUTAGE_MODES = ("refuse", "hang")


@dataclass(frozen=True)
class Outage:
    """The whole service is down for `for_ms` (STTServer.begin_outage): every upgrade
    request that arrives meanwhile is refused with `status` ("refuse") or left
    unanswered until the outage is over and then handled as usual ("hang")."""

    for_ms: int
    mode: str = "refuse"
    status: int = 503

    def __post_init__(self) -> None:
        if self.for_ms < 0:
            raise ValueError("Outage: for_ms must be >= 0")
        if self.mode not in OUTAGE_MODES:
            raise ValueError(f"Outage.mode must be one of {OUTAGE_MODES}")
        if not 400 <= self.status <= 599:
            raise ValueError("Outage.status must be an HTTP error status (400-599)")


@dataclass(frozen=True)
class Fault:
    """Everything a connection may do wrong; the defaults do nothing wrong.

    Upgrade: refuse_status (+ retry_after seconds as Retry-After),
    handshake_delay_ms. Session: no_created, created_delay_ms, error_event,
    close, malformed, ignore_audio_done, done_without_close,
    close_before_done (close 1000 instead of answering audio.done),
    stop_reading_after_bytes (+ stop_reading_for_ms, None = for good),
    partition (stop reading and sending, TCP kept open),
    idle_end_after_s (end the session after that long without audio: socket
    stays open, audio ignored, nothing more sent), stream_timeout_s (after
    that long without audio: the error "ASR stream timed out", then close
    1011). Answer shape (stt_server.wire): wire (a preset, "live" |
    "legacy"), utterance_final, done_text, finalize, empty_partials,
    flush_on_done, done_delay_ms; None = the server's default (a field given
    here wins over this fault's preset, which wins over the server's options).
    """

    refuse_status: int | None = None
    retry_after: int | None = None
    handshake_delay_ms: int = 0
    no_created: bool = False
    created_delay_ms: int = 0
    error_event: ErrorEvent | None = None
    close: Close | None = None
    malformed: Malformed | None = None
    ignore_audio_done: bool = False
    done_without_close: bool = False
    close_before_done: bool = False
    stop_reading_after_bytes: int | None = None
    stop_reading_for_ms: int | None = None
    idle_end_after_s: float | None = None
    partition: Partition | None = None
    done_text: str | None = None
    done_delay_ms: int | None = None
    wire: str | None = None
    utterance_final: str | None = None
    finalize: str | None = None
    empty_partials: bool | None = None
    flush_on_done: bool | None = None
    stream_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.refuse_status is not None and not 400 <= self.refuse_status <= 599:
            raise ValueError("refuse_status must be an HTTP error status (400-599)")
        for name, allowed in (
            ("wire", WIRES),
            ("utterance_final", UTTERANCE_FINALS),
            ("done_text", DONE_TEXT_MODES),
            ("finalize", FINALIZE_MODES),
        ):
            if getattr(self, name) not in (None, *allowed):
                raise ValueError(f"{name} must be one of {allowed} or None")
        for name in ("empty_partials", "flush_on_done"):
            if getattr(self, name) not in (None, True, False):
                raise ValueError(f"{name} must be True, False or None")
        if self.stream_timeout_s is not None and not self.stream_timeout_s > 0:
            raise ValueError("stream_timeout_s must be > 0 (or None)")
        if self.stop_reading_for_ms is not None and self.stop_reading_after_bytes is None:
            raise ValueError("stop_reading_for_ms needs stop_reading_after_bytes")

    def describe(self) -> str:
        """The fields that differ from the defaults, for log lines."""
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != f.default
        ]
        return "Fault(" + ", ".join(changed) + ")"
